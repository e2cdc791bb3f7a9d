/*
 * backend_cuda.c: the CUDA backend (STYLE.md 1.3). One stream per backend; every op runs on it asynchronously.
 *
 *   - compute:     one `switch (call->op)` calling one launcher per op (kernels/cuda_ops.h, kernels/attn_cuda.h),
 *                  then a check for a pending CUDA error that names the op. Each op is an NVTX range named by
 *                  rk_op_names. RK_SYNC_DEBUG=1 (environment, or -DRK_SYNC_DEBUG=1 at build time) synchronizes
 *                  after every op, so an asynchronous fault is reported against the op that caused it.
 *   - supports_op: a separate switch over op and dtypes; what it rejects makes rk_op return RK_STATUS_UNSUPPORTED.
 *   - activations: bf16 on sm_80+, f16 on sm_75. RK_CUDA_FORCE_SM75=1 forces the sm_75 path on a newer card
 *                  (f16 activations, bf16 GEMMs unsupported, force_sm75 passed to the attention launcher),
 *                  so that path is tested on the card we have.
 *   - memory:      cudaMalloc (never managed memory); copies are cudaMemcpyAsync on the stream; copy_to_host
 *                  synchronizes. A host source of copy_to_device may be reused as soon as the call returns
 *                  (pageable memory is staged before cudaMemcpyAsync returns); do not pass pinned buffers.
 *
 * Without CUDA in the build (no -DRK_HAVE_CUDA) this file provides rk_backend_cuda_init returning NULL with the
 * error set, rk_backend_cuda_compiled() = false, and no-op NVTX helpers.
 */
#include "backend.h"
#include "check.h"
#include "nvtx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RK_HAVE_CUDA

#include "cuda_check.h"
#include "kernels/attn_cuda.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"
#include "quant/nf4_cuda.h"
#include "lora/lora_cuda.h"

#include <nvtx3/nvToolsExt.h>


#ifndef RK_SYNC_DEBUG
#define RK_SYNC_DEBUG 0
#endif

/* RK_PROFILE=1: a pair of events around every op; the times are read back at synchronize (or when the pool is full)
   and summed per kind, printed when the backend is freed. Kinds: the ops, plus MATMUL with the GELU epilogue and
   MATMUL accumulating into dst, which run other kernels than the plain one. */
#define RK_CUDA_PROF_EVENTS 1024
#define RK_CUDA_PROF_KINDS  (RK_OP_COUNT + 2)

struct cuda_prof {
    cudaEvent_t ev[RK_CUDA_PROF_EVENTS][2];
    int         kind[RK_CUDA_PROF_EVENTS];
    int         n;                         /* pairs recorded and not read yet */
    double      ms[RK_CUDA_PROF_KINDS];    /* summed */
    long        calls[RK_CUDA_PROF_KINDS];
};

struct cuda_ctx {
    int                   device;
    int                   cc;          /* compute capability, major * 10 + minor */
    bool                  force_sm75;  /* RK_CUDA_FORCE_SM75=1 */
    bool                  sync_debug;  /* RK_SYNC_DEBUG=1 */
    cudaStream_t          stream;
    struct rk_cuda_blas * blas;
    float *               scratch;     /* device scratch of launchers that need one (cuda_scratch) */
    int64_t               scratch_n;   /* its size in floats */
    char                  name[320];
    struct cuda_prof *    prof;        /* RK_PROFILE=1, else NULL */
};

static const char * prof_kind_name(int k) {
    if (k == RK_OP_COUNT) return "MATMUL+GELU";
    if (k == RK_OP_COUNT + 1) return "MATMUL+acc";
    return rk_op_names[k];
}

/* Reads back every recorded pair (waits for the last one) into the sums. */
static void prof_drain(struct cuda_prof * pr) {
    if (pr->n == 0) return;
    RK_CUDA_CHECK(cudaEventSynchronize(pr->ev[pr->n - 1][1]));
    for (int i = 0; i < pr->n; i++) {
        float ms = 0.f;
        RK_CUDA_CHECK(cudaEventElapsedTime(&ms, pr->ev[i][0], pr->ev[i][1]));
        pr->ms[pr->kind[i]] += ms;
        pr->calls[pr->kind[i]]++;
    }
    pr->n = 0;
}

static void prof_report(const struct cuda_ctx * ctx) {
    const struct cuda_prof * pr    = ctx->prof;
    double                   total = 0.0;
    for (int k = 0; k < RK_CUDA_PROF_KINDS; k++) total += pr->ms[k];
    fprintf(stderr, "rk cuda profile (%s): %.3f ms in ops (events around each op, summed)\n", ctx->name, total);
    for (int k = 0; k < RK_CUDA_PROF_KINDS; k++) {
        if (pr->calls[k]) {
            fprintf(stderr, "  %-13s %8ld calls %10.3f ms %8.4f ms/call %5.1f%%\n", prof_kind_name(k), pr->calls[k],
                    pr->ms[k], pr->ms[k] / (double) pr->calls[k], 100.0 * pr->ms[k] / (total > 0 ? total : 1));
        }
    }
}

double rk_backend_cuda_profile_ms(struct rk_backend * be, enum rk_op op, long * calls) {
    RK_ASSERT(be && be->device == RK_DEVICE_CUDA);
    struct cuda_ctx * ctx = be->ctx;
    if (calls) *calls = 0;
    if (!ctx->prof || (int) op < 0 || (int) op >= RK_OP_COUNT) return 0.0;
    RK_CUDA_CHECK(cudaSetDevice(ctx->device));
    prof_drain(ctx->prof);
    double ms = ctx->prof->ms[op];
    long   n  = ctx->prof->calls[op];
    if (op == RK_OP_MATMUL) {
        for (int k = RK_OP_COUNT; k < RK_CUDA_PROF_KINDS; k++) {
            ms += ctx->prof->ms[k];
            n += ctx->prof->calls[k];
        }
    }
    if (calls) *calls = n;
    return ms;
}

void rk_fatal_cuda(const char * lib, const char * errstr, const char * expr, const char * func, const char * file,
                   int line) {
    int dev = -1;
    (void) cudaGetDevice(&dev); /* unchecked: we are already failing */
    fprintf(stderr, "rk: %s error '%s' in %s (%s at %s:%d, device %d)\n", lib, errstr ? errstr : "?", expr, func, file,
            line, dev);
    fflush(stderr);
    abort();
}

static bool env_flag(const char * name) {
    const char * v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* ------------------------------------------------------------------------------------------------
 * supports_op */

/* True when t is rows with a contiguous last dim (what every launcher but attention and pool takes). */
static bool rows_ok(const struct rk_tensor * t) {
    struct rk_rows r;
    return !t || rk_rows_of(t, &r);
}

/* dt is a float dtype and every present src[0..n) has dtype dt and a row layout. */
static bool srcs_float_rows(const struct rk_op_call * c, enum rk_dtype dt, int n) {
    if (!rk_is_float_dtype(dt)) return false;
    for (int i = 0; i < n; i++) {
        if (c->src[i] && (c->src[i]->dtype != dt || !rows_ok(c->src[i]))) return false;
    }
    return true;
}

/* dst is a float dtype and every present src[0..n) has dst's dtype and a row layout. */
static bool same_float_rows(const struct rk_op_call * c, int n) {
    return rows_ok(c->dst) && srcs_float_rows(c, c->dst->dtype, n);
}

/* cuBLAS/cuBLASLt GEMMs take bf16 only on sm_80+, and not on the forced sm_75 path. */
static bool tc_dtype_ok(const struct cuda_ctx * ctx, enum rk_dtype dt) {
    if (dt == RK_DTYPE_BF16) return ctx->cc >= 80 && !ctx->force_sm75;
    return dt == RK_DTYPE_F16 || dt == RK_DTYPE_F32;
}

static bool is_i32_or_null(const struct rk_tensor * t) { return !t || t->dtype == RK_DTYPE_I32; }

static bool attn_view_ok(const struct rk_tensor * t) {
    return t->ndim == 4 && (t->ne[3] == 1 || t->nb[3] == (int64_t) rk_dtype_traits[t->dtype].type_size);
}

/* A loss call: dst loss (1) f32; src[0] float logits rows; src[1] targets; src[d] dlogits (logits' dtype) or NULL. */
static bool loss_call_ok(const struct rk_op_call * c, int d) {
    const struct rk_tensor * x = c->src[0];
    return c->dst->dtype == RK_DTYPE_F32 && rk_tensor_nelements(c->dst) == 1 && x && rk_is_float_dtype(x->dtype) &&
           rows_ok(x) && c->src[1] && (!c->src[d] || (c->src[d]->dtype == x->dtype && rows_ok(c->src[d])));
}

static bool cuda_supports_op(struct rk_backend * be, const struct rk_op_call * c) {
    const struct cuda_ctx * ctx = be->ctx;
    const enum rk_dtype     dt  = c->dst->dtype;
    switch (c->op) {
        case RK_OP_EMBED:
            return rk_is_float_dtype(dt) && rows_ok(c->dst) && c->src[0] && c->src[0]->dtype == dt &&
                   rows_ok(c->src[0]) && c->src[1] && c->src[1]->dtype == RK_DTYPE_I32 &&
                   rk_tensor_is_contiguous(c->src[1]) && (!c->src[2] || (c->src[2]->dtype == dt && rows_ok(c->src[2]))) &&
                   (!c->src[3] || (c->src[3]->dtype == dt && rows_ok(c->src[3]))) && is_i32_or_null(c->src[4]) &&
                   (!c->src[4] || rk_tensor_is_contiguous(c->src[4]));
        case RK_OP_LAYERNORM: return c->src[0] && c->src[1] && same_float_rows(c, 4);
        case RK_OP_MATMUL:    return c->src[0] && c->src[1] && same_float_rows(c, 3) && tc_dtype_ok(ctx, dt) &&
                                     (c->p.matmul.act == RK_ACT_NONE || c->p.matmul.act == RK_ACT_GELU);
        case RK_OP_GELU:      return c->src[0] && same_float_rows(c, 1);
        case RK_OP_ADD:       return c->src[0] && c->src[1] && same_float_rows(c, 2);
        case RK_OP_SOFTMAX:   return c->src[0] && same_float_rows(c, 1);
        case RK_OP_ATTN_FWD:
            /* 16-bit inputs (bf16 on sm_75 runs the launcher's plain fp32 kernel); shapes the launcher cannot run
             * come back from it as RK_STATUS_UNSUPPORTED */
            return (dt == RK_DTYPE_F16 || dt == RK_DTYPE_BF16) && c->src[0] && c->src[1] &&
                   c->src[2] && c->src[0]->dtype == dt && c->src[1]->dtype == dt && c->src[2]->dtype == dt &&
                   attn_view_ok(c->dst) && attn_view_ok(c->src[0]) && attn_view_ok(c->src[1]) &&
                   attn_view_ok(c->src[2]) && is_i32_or_null(c->src[3]) &&
                   (!c->src[4] || c->src[4]->dtype == RK_DTYPE_F32);
        case RK_OP_POOL:
            return rk_is_float_dtype(dt) && rows_ok(c->dst) && c->src[0] && c->src[0]->dtype == dt &&
                   c->src[0]->ndim == 3 && is_i32_or_null(c->src[1]) &&
                   (c->p.pool.mode >= 0 && c->p.pool.mode < RK_POOL_COUNT);
        case RK_OP_L2NORM:    return c->src[0] && same_float_rows(c, 1);
        case RK_OP_EMBED_BWD: /* dst dwte; src: dout, ids, type ids, dwpe, dwtt (outputs of dwte's dtype) */
            return rk_is_float_dtype(dt) && rows_ok(c->dst) && c->src[0] && rk_is_float_dtype(c->src[0]->dtype) &&
                   rows_ok(c->src[0]) && c->src[1] && c->src[1]->dtype == RK_DTYPE_I32 &&
                   rk_tensor_is_contiguous(c->src[1]) && is_i32_or_null(c->src[2]) &&
                   (!c->src[2] || rk_tensor_is_contiguous(c->src[2])) &&
                   (!c->src[3] || (c->src[3]->dtype == dt && rows_ok(c->src[3]))) &&
                   (!c->src[4] || (c->src[4]->dtype == dt && rows_ok(c->src[4])));
        case RK_OP_BCE_LOGITS: /* src: logits, targets, pos_weight, dlogits: one float dtype */
            return loss_call_ok(c, 3) && c->src[1]->dtype == c->src[0]->dtype && rows_ok(c->src[1]) &&
                   (!c->src[2] || (c->src[2]->dtype == c->src[0]->dtype && rk_tensor_is_contiguous(c->src[2])));
        case RK_OP_SOFTMAX_XENT: /* src: logits, targets i32, dlogits */
            return loss_call_ok(c, 2) && c->src[1]->dtype == RK_DTYPE_I32 && rk_tensor_is_contiguous(c->src[1]);
        case RK_OP_ATTN_BWD: { /* q, k, v, o, dout, dq, dk, dv one 16-bit dtype; lse f32 */
            const struct rk_attn_bwd_params * ap = &c->p.attn_bwd;
            bool ok = (dt == RK_DTYPE_F16 || dt == RK_DTYPE_BF16) && ap->dk && ap->dv && ap->dk->dtype == dt &&
                      ap->dv->dtype == dt && attn_view_ok(c->dst) && attn_view_ok(ap->dk) && attn_view_ok(ap->dv) &&
                      c->src[5] && c->src[5]->dtype == RK_DTYPE_F32 && is_i32_or_null(ap->mask);
            for (int i = 0; i < 5; i++) ok = ok && c->src[i] && c->src[i]->dtype == dt && attn_view_ok(c->src[i]);
            return ok;
        }
        case RK_OP_DROPOUT:
            return c->src[0] && same_float_rows(c, 1) && c->p.dropout.p >= 0.0f && c->p.dropout.p <= 1.0f;
        case RK_OP_MATMUL_BWD: /* dtype from dout: dx (dst) is ignored with skip_dx */
            return c->src[0] && c->src[1] && c->src[2] && srcs_float_rows(c, c->src[0]->dtype, 5) &&
                   tc_dtype_ok(ctx, c->src[0]->dtype) &&
                   (c->p.matmul_bwd.skip_dx || (c->dst->dtype == c->src[0]->dtype && rows_ok(c->dst)));
        case RK_OP_GELU_BWD:      return c->src[0] && c->src[1] && same_float_rows(c, 2);
        case RK_OP_LAYERNORM_BWD: return c->src[0] && c->src[1] && c->src[2] && same_float_rows(c, 6);
        case RK_OP_SOFTMAX_BWD:   return c->src[0] && c->src[1] && same_float_rows(c, 2);
        case RK_OP_POOL_BWD:
            return rk_is_float_dtype(dt) && c->dst->ndim == 3 && c->src[0] && c->src[0]->dtype == dt &&
                   rows_ok(c->src[0]) && c->src[1] && c->src[1]->dtype == dt && c->src[1]->ndim == 3 &&
                   is_i32_or_null(c->src[2]) && c->p.pool.mode >= 0 && c->p.pool.mode < RK_POOL_COUNT;
        case RK_OP_TANH:          return c->src[0] && same_float_rows(c, 1);
        case RK_OP_TANH_BWD:      return c->src[0] && c->src[1] && same_float_rows(c, 2);
        case RK_OP_FILL:          return (rk_is_float_dtype(dt) || dt == RK_DTYPE_I32) && rows_ok(c->dst);
        case RK_OP_NF4_MATMUL: /* shapes, the weight and the scratch are checked by the launcher (RK_STATUS_ARG) */
            return c->src[0] && c->p.nf4_matmul.w && same_float_rows(c, 2) && tc_dtype_ok(ctx, dt) &&
                   (c->p.nf4_matmul.act == RK_ACT_NONE || c->p.nf4_matmul.act == RK_ACT_GELU);
        /* 16-bit tensor-core kernels; shapes and ranks they cannot run come back from the launcher as unsupported */
        case RK_OP_LORA_FWD:  return (dt == RK_DTYPE_F16 || dt == RK_DTYPE_BF16) && tc_dtype_ok(ctx, dt) &&
                                     c->src[0] && c->src[1] && c->src[2] && same_float_rows(c, 4);
        case RK_OP_LORA_BWD:  return (dt == RK_DTYPE_F16 || dt == RK_DTYPE_BF16) && tc_dtype_ok(ctx, dt) &&
                                     c->src[0] && c->src[1] && c->src[2] && c->src[3] && c->src[4] &&
                                     same_float_rows(c, 5);
        case RK_OP_COUNT:     break;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------------
 * compute: one switch, one launcher per op */

/*
 * At least n floats of device scratch, kept in the context and grown on demand (after a stream synchronize, so no
 * earlier op still uses the old buffer). NULL when the device is out of memory (error not set).
 */
static float * cuda_scratch(struct cuda_ctx * ctx, int64_t n) {
    if (n <= ctx->scratch_n) return ctx->scratch;
    RK_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    RK_CUDA_FREE(ctx->scratch);
    ctx->scratch_n = 0;
    if (cudaMalloc((void **) &ctx->scratch, (size_t) n * sizeof(float)) != cudaSuccess) {
        (void) cudaGetLastError(); /* out of memory is not sticky: clear it */
        ctx->scratch = NULL;
        return NULL;
    }
    ctx->scratch_n = n;
    return ctx->scratch;
}

/* LORA_FWD / LORA_BWD, the variant rk_cuda_lora_pick chooses, with the backend's cuBLAS handle and scratch (cuda_scratch: the fused backward's partial sums,
 * the unfused path's dropout(x) and u or g). */
static enum rk_status lora_op(struct cuda_ctx * ctx, const struct rk_op_call * c, cudaStream_t st) {
    const bool               bwd = c->op == RK_OP_LORA_BWD;
    const struct rk_tensor * x = bwd ? c->src[1] : c->src[0], * A = bwd ? c->src[3] : c->src[1];
    const struct rk_tensor * B = bwd ? c->src[4] : c->src[2];
    if (!x || !A || !B || A->ndim < 1 || B->ndim < 1) {
        return rk_set_error(RK_STATUS_ARG, "%s: x, A and B are required", bwd ? "LORA_BWD" : "LORA_FWD");
    }
    const enum rk_lora_variant v = rk_cuda_lora_pick(bwd, c->p.lora.dropout);
    const int64_t K = A->ne[A->ndim - 1], M = K > 0 ? rk_tensor_nelements(x) / K : 0;
    const size_t  need = rk_cuda_lora_scratch_bytes(v, bwd, M, K, B->ne[0], A->ne[0], x->dtype);
    float *       sc   = need ? cuda_scratch(ctx, (int64_t) ((need + sizeof(float) - 1) / sizeof(float))) : NULL;
    if (need && !sc) {
        return rk_set_error(RK_STATUS_OOM, "%s: no device memory for %zu bytes of scratch", bwd ? "LORA_BWD" : "LORA_FWD",
                            need);
    }
    const struct rk_cuda_lora_ws ws = { v, v == RK_LORA_UNFUSED ? rk_cuda_blas_cublas(ctx->blas) : NULL, sc,
                                        sc ? (size_t) ctx->scratch_n * sizeof(float) : 0 };
    if (bwd) return rk_cuda_lora_bwd(c->dst, c->src[0], x, c->src[2], A, B, &c->p.lora, &ws, st);
    return rk_cuda_lora_fwd(c->dst, (struct rk_tensor *) c->src[3], x, A, B, &c->p.lora, &ws, st); /* u: an output */
}

/* ATTN_BWD with the backend's scratch (cuda_scratch: D and the log2 lse per query row). */
static enum rk_status cuda_attn_bwd(struct cuda_ctx * ctx, const struct rk_op_call * c) {
    const struct rk_attn_bwd_params * ap   = &c->p.attn_bwd;
    const size_t                      need = rk_cuda_attn_bwd_scratch_bytes(c->src[0], c->src[1]);
    float * sc = cuda_scratch(ctx, (int64_t) ((need + sizeof(float) - 1) / sizeof(float)));
    if (!sc) return rk_set_error(RK_STATUS_OOM, "ATTN_BWD: cannot allocate %zu bytes of scratch", need);
    return rk_cuda_attn_bwd(c->dst, ap->dk, ap->dv, c->src[0], c->src[1], c->src[2], c->src[3], c->src[4], c->src[5],
                            ap->mask, &ap->attn, sc, (size_t) ctx->scratch_n * sizeof(float), ctx->force_sm75,
                            ctx->stream);
}

static enum rk_status cuda_compute(struct rk_backend * be, const struct rk_op_call * c) {
    struct cuda_ctx * ctx = be->ctx;
    cudaStream_t      st  = ctx->stream;
    const char *      opn = (c->op >= 0 && c->op < RK_OP_COUNT) ? rk_op_names[c->op] : "?";
    enum rk_status    s;
    RK_CUDA_CHECK(cudaSetDevice(ctx->device));
    nvtxRangePushA(opn);
    struct cuda_prof * pr = ctx->prof;
    if (pr) {
        if (pr->n == RK_CUDA_PROF_EVENTS) prof_drain(pr);
        pr->kind[pr->n] = c->op >= 0 && c->op < RK_OP_COUNT ? (int) c->op : 0;
        if (c->op == RK_OP_MATMUL && c->p.matmul.act == RK_ACT_GELU) pr->kind[pr->n] = RK_OP_COUNT;
        if (c->op == RK_OP_MATMUL && c->p.matmul.accumulate) pr->kind[pr->n] = RK_OP_COUNT + 1;
        RK_CUDA_CHECK(cudaEventRecord(pr->ev[pr->n][0], st));
    }
    switch (c->op) {
        case RK_OP_EMBED:
            s = rk_cuda_embed(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], c->src[4], &c->p.embed, NULL, NULL,
                              0.0f, st);
            break;
        case RK_OP_LAYERNORM:
            s = rk_cuda_layernorm(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], &c->p.layernorm, st);
            break;
        case RK_OP_MATMUL:
            s = rk_cuda_matmul(ctx->blas, c->dst, c->src[0], c->src[1], c->src[2], &c->p.matmul, st);
            break;
        case RK_OP_GELU:    s = rk_cuda_gelu(c->dst, c->src[0], st); break;
        case RK_OP_ADD:     s = rk_cuda_add(c->dst, c->src[0], c->src[1], st); break;
        case RK_OP_SOFTMAX: s = rk_cuda_softmax(c->dst, c->src[0], &c->p.softmax, st); break;
        case RK_OP_ATTN_FWD:
            /* lse (src[4]) is an output: the op interface carries it among the sources */
            s = rk_cuda_attn_fwd(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], (struct rk_tensor *) c->src[4],
                                 &c->p.attn, ctx->force_sm75, st);
            break;
        case RK_OP_POOL:   s = rk_cuda_pool(c->dst, c->src[0], c->src[1], &c->p.pool, st); break;
        case RK_OP_L2NORM: s = rk_cuda_l2norm(c->dst, c->src[0], &c->p.l2norm, st); break;
        /* extra outputs live among the sources, at the positions backend_cpu.c uses */
        case RK_OP_EMBED_BWD:
            s = rk_cuda_embed_bwd(c->dst, (struct rk_tensor *) c->src[3], (struct rk_tensor *) c->src[4], c->src[0],
                                  c->src[1], c->src[2], &c->p.embed, st);
            break;
        case RK_OP_BCE_LOGITS:
            s = rk_cuda_bce_logits(c->dst, (struct rk_tensor *) c->src[3], c->src[0], c->src[1], c->src[2],
                                   rk_loss_dlogits_scale(&c->p.loss), st);
            break;
        case RK_OP_SOFTMAX_XENT: {
            const int64_t n  = rk_cuda_softmax_xent_scratch_size(rk_tensor_nelements(c->src[1])); /* N rows */
            float *       sc = cuda_scratch(ctx, n);
            s = sc ? rk_cuda_softmax_xent(c->dst, (struct rk_tensor *) c->src[2], c->src[0], c->src[1],
                                          rk_loss_dlogits_scale(&c->p.loss), sc, n, st)
                   : rk_set_error(RK_STATUS_OOM, "%s: no device memory for %lld floats of scratch", be->name,
                                  (long long) n);
            break;
        }
        case RK_OP_DROPOUT: s = rk_cuda_dropout(c->dst, c->src[0], &c->p.dropout, st); break;
        /* multi-output ops carry their extra outputs among the sources (host/backend.h) */
        case RK_OP_MATMUL_BWD:
            s = rk_cuda_matmul_bwd(ctx->blas, c->dst, (struct rk_tensor *) c->src[3], (struct rk_tensor *) c->src[4],
                                   c->src[0], c->src[1], c->src[2], &c->p.matmul_bwd, st);
            break;
        case RK_OP_GELU_BWD: s = rk_cuda_gelu_bwd(c->dst, c->src[0], c->src[1], st); break;
        case RK_OP_LAYERNORM_BWD:
            s = rk_cuda_layernorm_bwd(c->dst, (struct rk_tensor *) c->src[4], (struct rk_tensor *) c->src[5], c->src[0],
                                      c->src[1], c->src[2], c->src[3], &c->p.layernorm, st);
            break;
        case RK_OP_SOFTMAX_BWD: s = rk_cuda_softmax_bwd(c->dst, c->src[0], c->src[1], &c->p.softmax, st); break;
        case RK_OP_POOL_BWD:    s = rk_cuda_pool_bwd(c->dst, c->src[0], c->src[1], c->src[2], &c->p.pool, st); break;
        case RK_OP_TANH:        s = rk_cuda_tanh(c->dst, c->src[0], st); break;
        case RK_OP_TANH_BWD:    s = rk_cuda_tanh_bwd(c->dst, c->src[0], c->src[1], st); break;
        case RK_OP_FILL:        s = rk_cuda_fill(c->dst, c->p.fill.value, st); break;
        case RK_OP_NF4_MATMUL:
            s = rk_cuda_nf4_matmul(ctx->blas, c->dst, c->src[0], c->src[1], &c->p.nf4_matmul, st);
            break;
        case RK_OP_LORA_FWD: /* fall through: u (src[3]) is an output */
        case RK_OP_LORA_BWD: s = lora_op(ctx, c, st); break;
        case RK_OP_ATTN_BWD: s = cuda_attn_bwd(ctx, c); break;
        case RK_OP_COUNT:
        default:           s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: unknown op %d", be->name, (int) c->op); break;
    }
    /* a launch error the launcher did not see (or a fault from an earlier op) is fatal, and named after this op */
    char what[96];
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        snprintf(what, sizeof(what), "op %s (pending CUDA error after the op)", opn);
        rk_fatal_cuda("CUDA", cudaGetErrorString(err), what, __func__, __FILE__, __LINE__);
    }
    if (ctx->sync_debug) {
        err = cudaStreamSynchronize(st);
        if (err != cudaSuccess) {
            snprintf(what, sizeof(what), "op %s (RK_SYNC_DEBUG synchronize after the op)", opn);
            rk_fatal_cuda("CUDA", cudaGetErrorString(err), what, __func__, __FILE__, __LINE__);
        }
    }
    if (pr) RK_CUDA_CHECK(cudaEventRecord(pr->ev[pr->n++][1], st));
    nvtxRangePop();
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * memory, copies, synchronize */

/* cudaMalloc; NULL (not an abort) when the device is out of memory, so callers can report RK_STATUS_OOM. */
static void * cuda_alloc(struct rk_backend * be, size_t n) {
    struct cuda_ctx * ctx = be->ctx;
    void *            p   = NULL;
    RK_CUDA_CHECK(cudaSetDevice(ctx->device));
    if (cudaMalloc(&p, n ? n : 256) != cudaSuccess) {
        (void) cudaGetLastError(); /* out of memory is not sticky: clear it */
        return NULL;
    }
    return p;
}

static void cuda_free(struct rk_backend * be, void * p) {
    (void) be;
    RK_CUDA_FREE(p);
}

static enum rk_status cuda_copy_to_device(struct rk_backend * be, void * dst, const void * src, size_t n) {
    struct cuda_ctx * ctx = be->ctx;
    if (n == 0) return RK_OK;
    RK_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, ctx->stream));
    return RK_OK;
}

static enum rk_status cuda_copy_to_host(struct rk_backend * be, void * dst, const void * src, size_t n) {
    struct cuda_ctx * ctx = be->ctx;
    if (n == 0) return RK_OK;
    RK_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, ctx->stream));
    RK_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    return RK_OK;
}

static enum rk_status cuda_synchronize(struct rk_backend * be) {
    struct cuda_ctx * ctx = be->ctx;
    RK_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    if (ctx->prof) prof_drain(ctx->prof);
    return RK_OK;
}

static void cuda_destroy(struct rk_backend * be) {
    struct cuda_ctx * ctx = be->ctx;
    RK_CUDA_CHECK(cudaSetDevice(ctx->device));
    RK_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    if (ctx->prof) {
        prof_drain(ctx->prof);
        prof_report(ctx);
        for (int i = 0; i < RK_CUDA_PROF_EVENTS; i++) {
            RK_CUDA_CHECK(cudaEventDestroy(ctx->prof->ev[i][0]));
            RK_CUDA_CHECK(cudaEventDestroy(ctx->prof->ev[i][1]));
        }
        free(ctx->prof);
    }
    rk_cuda_blas_free(ctx->blas);
    RK_CUDA_FREE(ctx->scratch);
    RK_CUDA_CHECK(cudaStreamDestroy(ctx->stream));
    free(ctx);
    free(be);
}

/* ------------------------------------------------------------------------------------------------
 * construction */

struct rk_backend * rk_backend_cuda_init(int device) {
    int         n   = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        (void) cudaGetLastError();
        rk_set_error(RK_STATUS_DEVICE, "no CUDA device: %s", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return NULL;
    }
    if (device < 0 || device >= n) {
        rk_set_error(RK_STATUS_DEVICE, "CUDA device %d does not exist (%d present)", device, n);
        return NULL;
    }
    struct cudaDeviceProp prop;
    if ((err = cudaSetDevice(device)) != cudaSuccess || (err = cudaGetDeviceProperties(&prop, device)) != cudaSuccess) {
        (void) cudaGetLastError();
        rk_set_error(RK_STATUS_DEVICE, "CUDA device %d unusable: %s", device, cudaGetErrorString(err));
        return NULL;
    }
    const int cc = prop.major * 10 + prop.minor;
    if (cc < 75) {
        rk_set_error(RK_STATUS_DEVICE, "CUDA device %d (%s) is sm_%d; rk needs sm_75 or newer", device, prop.name, cc);
        return NULL;
    }
    struct cuda_ctx * ctx = rk_xcalloc(1, sizeof(*ctx));
    ctx->device     = device;
    ctx->cc         = cc;
    ctx->force_sm75 = env_flag("RK_CUDA_FORCE_SM75");
    ctx->sync_debug = RK_SYNC_DEBUG || env_flag("RK_SYNC_DEBUG");
    if ((err = cudaStreamCreate(&ctx->stream)) != cudaSuccess) {
        (void) cudaGetLastError();
        rk_set_error(RK_STATUS_DEVICE, "CUDA device %d: cannot create a stream: %s", device, cudaGetErrorString(err));
        free(ctx);
        return NULL;
    }
    ctx->blas = rk_cuda_blas_init();
    if (!ctx->blas) { /* error already set */
        RK_CUDA_CHECK(cudaStreamDestroy(ctx->stream));
        free(ctx);
        return NULL;
    }
    if (env_flag("RK_PROFILE")) {
        ctx->prof = rk_xcalloc(1, sizeof(*ctx->prof));
        for (int i = 0; i < RK_CUDA_PROF_EVENTS; i++) {
            RK_CUDA_CHECK(cudaEventCreate(&ctx->prof->ev[i][0]));
            RK_CUDA_CHECK(cudaEventCreate(&ctx->prof->ev[i][1]));
        }
    }
    snprintf(ctx->name, sizeof(ctx->name), "cuda:%d (%s, sm_%d%s)", device, prop.name, cc,
             ctx->force_sm75 ? ", forced sm_75 path" : "");

    struct rk_backend * be = rk_xcalloc(1, sizeof(*be));
    *be = (struct rk_backend) {
        .name           = ctx->name,
        .device         = RK_DEVICE_CUDA,
        .act_dtype      = (cc >= 80 && !ctx->force_sm75) ? RK_DTYPE_BF16 : RK_DTYPE_F16,
        .supports_op    = cuda_supports_op,
        .compute        = cuda_compute,
        .alloc          = cuda_alloc,
        .free           = cuda_free,
        .copy_to_device = cuda_copy_to_device,
        .copy_to_host   = cuda_copy_to_host,
        .synchronize    = cuda_synchronize,
        .destroy        = cuda_destroy,
        .ctx            = ctx,
    };
    return be;
}

bool rk_backend_cuda_compiled(void) { return true; }

cudaStream_t rk_backend_cuda_stream(struct rk_backend * be) {
    RK_ASSERT(be && be->device == RK_DEVICE_CUDA);
    return ((struct cuda_ctx *) be->ctx)->stream;
}

bool rk_backend_cuda_forced_sm75(struct rk_backend * be) {
    RK_ASSERT(be && be->device == RK_DEVICE_CUDA);
    return ((struct cuda_ctx *) be->ctx)->force_sm75;
}

int rk_backend_cuda_cc(struct rk_backend * be) {
    RK_ASSERT(be && be->device == RK_DEVICE_CUDA);
    return ((struct cuda_ctx *) be->ctx)->cc;
}

void rk_backend_nvtx_push(struct rk_backend * be, const char * name) {
    if (be && be->device == RK_DEVICE_CUDA) nvtxRangePushA(name);
}

void rk_backend_nvtx_pop(struct rk_backend * be) {
    if (be && be->device == RK_DEVICE_CUDA) nvtxRangePop();
}

#else /* !RK_HAVE_CUDA ------------------------------------------------------------------------------------ */

struct rk_backend * rk_backend_cuda_init(int device) {
    (void) device;
    rk_set_error(RK_STATUS_DEVICE, "this build has no CUDA backend");
    return NULL;
}

bool rk_backend_cuda_compiled(void) { return false; }

void rk_backend_nvtx_push(struct rk_backend * be, const char * name) {
    (void) be;
    (void) name;
}

void rk_backend_nvtx_pop(struct rk_backend * be) { (void) be; }

#endif
