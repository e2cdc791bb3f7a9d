/*
 * backend_cpu.c: the CPU backend, the reference for every other backend (STYLE.md 1.2). f32 only; dense
 * products through OpenBLAS, loops through OpenMP. One switch dispatches to the rk_cpu_* references in kernels/.
 */
#include "backend.h"
#include "check.h"
#include "kernels/attn.h"
#include "kernels/elementwise.h"
#include "kernels/embed.h"
#include "kernels/dropout.h"
#include "kernels/layernorm.h"
#include "kernels/loss.h"
#include "kernels/matmul.h"
#include "kernels/pool.h"
#include "kernels/softmax.h"
#include "quant/nf4.h"
#include "lora/lora.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cpu_ctx {
    int    threads;
    bool   profile;                 /* RK_PROFILE=1: time every op, print a summary when the backend is freed */
    double op_seconds[RK_OP_COUNT];
    long   op_calls[RK_OP_COUNT];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

static bool all_f32(const struct rk_op_call * c, int nsrc) {
    if (c->dst->dtype != RK_DTYPE_F32) return false;
    for (int i = 0; i < nsrc; i++) {
        if (c->src[i] && c->src[i]->dtype != RK_DTYPE_F32) return false;
    }
    return true;
}

/* 2-D rows with a contiguous last dimension (the row stride may exceed the width: views). */
static bool rows_ok(const struct rk_tensor * t) { return !t || (t->ndim == 2 && t->nb[1] == 4 && t->nb[0] % 4 == 0); }
static bool dense(const struct rk_tensor * t) { return !t || rk_tensor_is_contiguous(t); }
/* strided (B, NH, T, HS) views with a contiguous head dimension */
static bool heads_ok(const struct rk_tensor * t) { return t->ndim == 4 && t->nb[3] == 4 && t->nb[2] % 4 == 0; }

/* The layouts each CPU reference handles; anything else is reported unsupported rather than asserted. */
static bool cpu_supports_op(struct rk_backend * be, const struct rk_op_call * c) {
    (void) be;
    switch (c->op) {
        case RK_OP_EMBED:
            return c->dst->dtype == RK_DTYPE_F32 && c->src[0]->dtype == RK_DTYPE_F32 &&
                   c->src[1]->dtype == RK_DTYPE_I32 && (!c->src[4] || c->src[4]->dtype == RK_DTYPE_I32) &&
                   dense(c->dst) && dense(c->src[0]) && dense(c->src[1]) && dense(c->src[2]) && dense(c->src[3]) &&
                   dense(c->src[4]);
        case RK_OP_LAYERNORM:
            return all_f32(c, 4) && rows_ok(c->dst) && rows_ok(c->src[0]) && rows_ok(c->src[3]) && dense(c->src[1]) &&
                   dense(c->src[2]);
        case RK_OP_MATMUL:
            return all_f32(c, 3) && rows_ok(c->dst) && rows_ok(c->src[0]) && dense(c->src[1]) && dense(c->src[2]);
        case RK_OP_GELU:      return all_f32(c, 1) && dense(c->dst) && dense(c->src[0]);
        case RK_OP_ADD:       return all_f32(c, 2) && dense(c->dst) && dense(c->src[0]) && dense(c->src[1]);
        case RK_OP_SOFTMAX:   return all_f32(c, 1) && rows_ok(c->dst) && rows_ok(c->src[0]);
        case RK_OP_ATTN_FWD:
            return all_f32(c, 3) && (!c->src[3] || c->src[3]->dtype == RK_DTYPE_I32) &&
                   (!c->src[4] || c->src[4]->dtype == RK_DTYPE_F32) && heads_ok(c->dst) && heads_ok(c->src[0]) &&
                   heads_ok(c->src[1]) && heads_ok(c->src[2]) && dense(c->src[3]) && dense(c->src[4]);
        case RK_OP_POOL:
            return all_f32(c, 1) && (!c->src[1] || c->src[1]->dtype == RK_DTYPE_I32) && dense(c->dst) &&
                   dense(c->src[0]) && dense(c->src[1]);
        case RK_OP_L2NORM:    return all_f32(c, 1) && dense(c->dst) && dense(c->src[0]);
        case RK_OP_MATMUL_BWD:
            return c->src[0] && c->src[1] && c->src[2] && all_f32(c, 5) && c->src[0]->ndim == 2 &&
                   (c->p.matmul_bwd.skip_dx || rows_ok(c->dst)) && rows_ok(c->src[0]) && rows_ok(c->src[1]) &&
                   dense(c->src[2]) && dense(c->src[3]) && dense(c->src[4]);
        case RK_OP_GELU_BWD:
            return c->src[0] && c->src[1] && all_f32(c, 2) && dense(c->dst) && dense(c->src[0]) && dense(c->src[1]);
        case RK_OP_LAYERNORM_BWD:
            return c->src[0] && c->src[1] && c->src[2] && all_f32(c, 6) && rows_ok(c->dst) && rows_ok(c->src[0]) &&
                   rows_ok(c->src[1]) && dense(c->src[2]) && rows_ok(c->src[3]) && dense(c->src[4]) &&
                   dense(c->src[5]);
        case RK_OP_SOFTMAX_BWD:
            return c->src[0] && c->src[1] && all_f32(c, 2) && rows_ok(c->dst) && rows_ok(c->src[0]) &&
                   rows_ok(c->src[1]);
        case RK_OP_ATTN_BWD: {
            const struct rk_attn_bwd_params * ap = &c->p.attn_bwd;
            if (!ap->dk || !ap->dv || ap->dk->dtype != RK_DTYPE_F32 || ap->dv->dtype != RK_DTYPE_F32) return false;
            for (int i = 0; i < 6; i++) {
                if (!c->src[i]) return false;
            }
            return all_f32(c, 6) && (!ap->mask || (ap->mask->dtype == RK_DTYPE_I32 && dense(ap->mask))) &&
                   heads_ok(c->dst) && heads_ok(c->src[0]) && heads_ok(c->src[1]) && heads_ok(c->src[2]) &&
                   heads_ok(c->src[3]) && heads_ok(c->src[4]) && dense(c->src[5]) && heads_ok(ap->dk) &&
                   heads_ok(ap->dv);
        }
        case RK_OP_EMBED_BWD:
            return c->src[0] && c->src[1] && c->dst->dtype == RK_DTYPE_F32 && c->src[0]->dtype == RK_DTYPE_F32 &&
                   c->src[1]->dtype == RK_DTYPE_I32 && (!c->src[2] || c->src[2]->dtype == RK_DTYPE_I32) &&
                   (!c->src[3] || c->src[3]->dtype == RK_DTYPE_F32) && (!c->src[4] || c->src[4]->dtype == RK_DTYPE_F32) &&
                   dense(c->dst) && dense(c->src[0]) && dense(c->src[1]) && dense(c->src[2]) && dense(c->src[3]) &&
                   dense(c->src[4]);
        case RK_OP_POOL_BWD:
            return c->src[0] && c->src[1] && all_f32(c, 2) && (!c->src[2] || c->src[2]->dtype == RK_DTYPE_I32) &&
                   c->src[1]->ndim == 3 && dense(c->dst) && dense(c->src[0]) && dense(c->src[1]) && dense(c->src[2]) &&
                   c->p.pool.mode >= 0 && c->p.pool.mode < RK_POOL_COUNT;
        case RK_OP_BCE_LOGITS:
            return c->src[0] && c->src[1] && all_f32(c, 4) && dense(c->dst) && dense(c->src[0]) && dense(c->src[1]) &&
                   dense(c->src[2]) && dense(c->src[3]);
        case RK_OP_SOFTMAX_XENT:
            return c->src[0] && c->src[1] && c->dst->dtype == RK_DTYPE_F32 && c->src[0]->dtype == RK_DTYPE_F32 &&
                   c->src[1]->dtype == RK_DTYPE_I32 && (!c->src[2] || c->src[2]->dtype == RK_DTYPE_F32) &&
                   dense(c->dst) && rows_ok(c->src[0]) && dense(c->src[1]) && rows_ok(c->src[2]);
        case RK_OP_DROPOUT:
            return c->src[0] && all_f32(c, 1) && dense(c->dst) && dense(c->src[0]) && c->p.dropout.p >= 0.0f &&
                   c->p.dropout.p <= 1.0f;
        case RK_OP_TANH:      return c->src[0] && all_f32(c, 1) && dense(c->dst) && dense(c->src[0]);
        case RK_OP_TANH_BWD:
            return c->src[0] && c->src[1] && all_f32(c, 2) && dense(c->dst) && dense(c->src[0]) && dense(c->src[1]);
        case RK_OP_FILL:
            return (c->dst->dtype == RK_DTYPE_F32 || c->dst->dtype == RK_DTYPE_I32) && dense(c->dst);
        case RK_OP_NF4_MATMUL: /* shapes and the weight are checked by the op (RK_STATUS_ARG) */
            return c->src[0] && c->p.nf4_matmul.w && all_f32(c, 2) && rows_ok(c->dst) && rows_ok(c->src[0]) &&
                   dense(c->src[1]);
        case RK_OP_LORA_FWD: /* src[3] (u) optional */
            return c->src[0] && c->src[1] && c->src[2] && all_f32(c, 4) && dense(c->dst) && dense(c->src[0]) &&
                   dense(c->src[1]) && dense(c->src[2]) && dense(c->src[3]);
        case RK_OP_LORA_BWD: /* dst data NULL: no dx; dA, dB optional */
            return c->src[0] && c->src[1] && c->src[2] && c->src[3] && c->src[4] && all_f32(c, 5) && dense(c->dst) &&
                   dense(c->src[0]) && dense(c->src[1]) && dense(c->src[2]) && dense(c->src[3]) && dense(c->src[4]) &&
                   (!c->p.lora.dA || (c->p.lora.dA->dtype == RK_DTYPE_F32 && dense(c->p.lora.dA))) &&
                   (!c->p.lora.dB || (c->p.lora.dB->dtype == RK_DTYPE_F32 && dense(c->p.lora.dB)));
        case RK_OP_COUNT:     break;
    }
    return false;
}

static enum rk_status cpu_dispatch(const struct rk_op_call * c);

static enum rk_status cpu_compute(struct rk_backend * be, const struct rk_op_call * c) {
    struct cpu_ctx * ctx = be->ctx;
    omp_set_num_threads(ctx->threads);
    if (!ctx->profile) return cpu_dispatch(c);
    const double   t0 = now_s();
    enum rk_status s  = cpu_dispatch(c);
    ctx->op_seconds[c->op] += now_s() - t0;
    ctx->op_calls[c->op]++;
    return s;
}

static enum rk_status cpu_dispatch(const struct rk_op_call * c) {
    switch (c->op) {
        case RK_OP_EMBED:
            return rk_cpu_embed(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], c->src[4], &c->p.embed);
        case RK_OP_LAYERNORM:
            rk_cpu_layernorm(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], &c->p.layernorm);
            return RK_OK;
        case RK_OP_MATMUL:
            rk_cpu_matmul(c->dst, c->src[0], c->src[1], c->src[2], &c->p.matmul);
            return RK_OK;
        case RK_OP_GELU:
            rk_cpu_gelu(c->dst, c->src[0]);
            return RK_OK;
        case RK_OP_ADD:
            rk_cpu_add(c->dst, c->src[0], c->src[1]);
            return RK_OK;
        case RK_OP_SOFTMAX:
            rk_cpu_softmax(c->dst, c->src[0], &c->p.softmax);
            return RK_OK;
        case RK_OP_ATTN_FWD:
            rk_cpu_attn_fwd(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], (struct rk_tensor *) c->src[4],
                            &c->p.attn);
            return RK_OK;
        case RK_OP_POOL:
            rk_cpu_pool(c->dst, c->src[0], c->src[1], &c->p.pool);
            return RK_OK;
        case RK_OP_L2NORM:
            rk_cpu_l2norm(c->dst, c->src[0], &c->p.l2norm);
            return RK_OK;
        /* multi-output ops carry their extra outputs among the sources (see host/backend.h) */
        case RK_OP_MATMUL_BWD:
            rk_cpu_matmul_bwd(c->dst, (struct rk_tensor *) c->src[3], (struct rk_tensor *) c->src[4], c->src[0],
                              c->src[1], c->src[2], &c->p.matmul_bwd);
            return RK_OK;
        case RK_OP_GELU_BWD:
            rk_cpu_gelu_bwd(c->dst, c->src[0], c->src[1]);
            return RK_OK;
        case RK_OP_LAYERNORM_BWD:
            rk_cpu_layernorm_bwd(c->dst, (struct rk_tensor *) c->src[4], (struct rk_tensor *) c->src[5], c->src[0],
                                 c->src[1], c->src[2], c->src[3], &c->p.layernorm);
            return RK_OK;
        case RK_OP_SOFTMAX_BWD:
            rk_cpu_softmax_bwd(c->dst, c->src[0], c->src[1], &c->p.softmax);
            return RK_OK;
        case RK_OP_ATTN_BWD:
            rk_cpu_attn_bwd(c->dst, c->p.attn_bwd.dk, c->p.attn_bwd.dv, c->src[0], c->src[1], c->src[2], c->src[3],
                            c->src[4], c->src[5], c->p.attn_bwd.mask, &c->p.attn_bwd.attn);
            return RK_OK;
        case RK_OP_EMBED_BWD:
            return rk_cpu_embed_bwd(c->dst, (struct rk_tensor *) c->src[3], (struct rk_tensor *) c->src[4], c->src[0],
                                    c->src[1], c->src[2], &c->p.embed);
        case RK_OP_POOL_BWD:
            rk_cpu_pool_bwd(c->dst, c->src[0], c->src[1], c->src[2], &c->p.pool);
            return RK_OK;
        case RK_OP_BCE_LOGITS:
            rk_cpu_bce_logits(c->dst, (struct rk_tensor *) c->src[3], c->src[0], c->src[1], c->src[2],
                              rk_loss_dlogits_scale(&c->p.loss));
            return RK_OK;
        case RK_OP_SOFTMAX_XENT:
            return rk_cpu_softmax_xent(c->dst, (struct rk_tensor *) c->src[2], c->src[0], c->src[1],
                                       rk_loss_dlogits_scale(&c->p.loss));
        case RK_OP_DROPOUT:
            rk_cpu_dropout(c->dst, c->src[0], &c->p.dropout);
            return RK_OK;
        case RK_OP_TANH:
            rk_cpu_tanh(c->dst, c->src[0]);
            return RK_OK;
        case RK_OP_TANH_BWD:
            rk_cpu_tanh_bwd(c->dst, c->src[0], c->src[1]);
            return RK_OK;
        case RK_OP_FILL:
            rk_cpu_fill(c->dst, c->p.fill.value);
            return RK_OK;
        case RK_OP_NF4_MATMUL:
            return rk_cpu_nf4_matmul(c->dst, c->src[0], c->src[1], &c->p.nf4_matmul);
        case RK_OP_LORA_FWD: /* u (src[3]) is an output */
            return rk_cpu_lora_fwd_op(c->dst, (struct rk_tensor *) c->src[3], c->src[0], c->src[1], c->src[2], &c->p.lora);
        case RK_OP_LORA_BWD:
            return rk_cpu_lora_bwd_op(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], c->src[4], &c->p.lora);
        case RK_OP_COUNT: break;
    }
    return rk_set_error(RK_STATUS_UNSUPPORTED, "cpu backend: unknown op %d", (int) c->op);
}

/* 64-byte aligned host memory, so SIMD loops and OpenBLAS see aligned rows. */
static void * cpu_alloc(struct rk_backend * be, size_t n) {
    (void) be;
    void * p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}
static void cpu_free(struct rk_backend * be, void * p) { (void) be; free(p); }
static enum rk_status cpu_copy(struct rk_backend * be, void * dst, const void * src, size_t n) {
    (void) be;
    memcpy(dst, src, n);
    return RK_OK;
}
static enum rk_status cpu_sync(struct rk_backend * be) { (void) be; return RK_OK; }
static void cpu_destroy(struct rk_backend * be) {
    struct cpu_ctx * ctx = be->ctx;
    if (ctx->profile) {
        double total = 0.0;
        for (int i = 0; i < RK_OP_COUNT; i++) total += ctx->op_seconds[i];
        fprintf(stderr, "rk cpu profile (%d threads): %.3f s in ops\n", ctx->threads, total);
        for (int i = 0; i < RK_OP_COUNT; i++) {
            if (ctx->op_calls[i]) {
                fprintf(stderr, "  %-10s %8ld calls %9.3f s %5.1f%%\n", rk_op_names[i], ctx->op_calls[i],
                        ctx->op_seconds[i], 100.0 * ctx->op_seconds[i] / (total > 0 ? total : 1));
            }
        }
    }
    free(be->ctx);
    free(be);
}

struct rk_backend * rk_backend_cpu_init(int threads) {
    struct rk_backend * be  = rk_xcalloc(1, sizeof(*be));
    struct cpu_ctx *    ctx = rk_xcalloc(1, sizeof(*ctx));
    ctx->threads = threads > 0 ? threads : omp_get_num_procs();
    ctx->profile = getenv("RK_PROFILE") && getenv("RK_PROFILE")[0] == '1';
    openblas_set_num_threads(ctx->threads);
    *be = (struct rk_backend) {
        .name           = "cpu",
        .device         = RK_DEVICE_CPU,
        .act_dtype      = RK_DTYPE_F32,
        .supports_op    = cpu_supports_op,
        .compute        = cpu_compute,
        .alloc          = cpu_alloc,
        .free           = cpu_free,
        .copy_to_device = cpu_copy,
        .copy_to_host   = cpu_copy,
        .synchronize    = cpu_sync,
        .destroy        = cpu_destroy,
        .ctx            = ctx,
    };
    return be;
}
