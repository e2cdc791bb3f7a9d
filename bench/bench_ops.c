/*
 * bench_ops.c: the memory-bound CUDA ops at BERT-base scale (B=64, T=256, C=768) in bf16: layernorm (+residual,
 * in place as the model calls it), gelu, add, softmax, embed (and the fused embed+LayerNorm launcher), mean pool,
 * l2norm; plus a device-to-device copy as the bandwidth ceiling measured in the same run.
 *
 *   build/bench/bench_ops [op] [--reps N] [--variant N|all] [--check]
 *       op: copy layernorm gelu add softmax embed embed_ln pool l2norm
 *       --variant: the kernel variants of gelu and layernorm to run (kernels/cuda_ops.h, RK_GELU_N_VARIANTS and
 *                  RK_LAYERNORM_N_VARIANTS; 0 = the default, what the models run; all = 0 and every numbered one).
 *                  Variant 0 prints the usual `RESULT <key>`; a numbered variant N prints `RESULT <key>@v<N>`
 *                  (variant 1, the reference kernel, is timed again under its own key even when it is the default:
 *                  the two lines show the run-to-run noise). Without --variant: the default only.
 *       --check:   the correctness checks only, nothing timed.
 *
 * Each op is first checked against its CPU reference on the first rows (a failing op is not timed), then timed with
 * CUDA events on the backend's stream: 3 warm-ups, median of N (default 30), L2 flushed before each repetition.
 * GB/s counts the bytes each op must move at least (reads + writes, formula beside each entry), so it compares
 * directly with the copy line. Prints `RESULT <key> <GB/s> GB/s` per op; bench/peers/ops_torch.py prints the same
 * keys for the PyTorch equivalents. Without CUDA in the build, or without a device, prints one line and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "kernels/elementwise.h"
#include "kernels/embed.h"
#include "kernels/layernorm.h"
#include "kernels/pool.h"
#include "kernels/softmax.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RK_HAVE_CUDA
int main(void) {
    printf("bench_ops: this build has no CUDA backend; nothing to time\n");
    return 0;
}
#else

#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#define B_  64
#define T_  256
#define C_  768
#define NH_ 12
#define V_  30522

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float    urand(void) { return rk_bench_urand(&rng_state); }


/* A device tensor of random values (bf16-rounded); *host receives the f32 copy when host != NULL. */
static struct rk_tensor * rand_tensor(struct rk_backend * be, enum rk_dtype dt, int ndim, const int64_t * ne,
                                      const char * name, float ** host) {
    struct rk_tensor * t = rk_tensor_new(be, dt, ndim, ne, name);
    if (!t) {
        fprintf(stderr, "bench_ops: %s\n", rk_last_error());
        exit(1);
    }
    const int64_t n = rk_tensor_nelements(t);
    float *       v = rk_xmalloc((size_t) n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = rk_bf16_to_f32(rk_f32_to_bf16(urand()));
    RK_ASSERT(rk_tensor_set_f32(t, v) == RK_OK);
    if (host) {
        *host = v;
    } else {
        free(v);
    }
    return t;
}

static struct rk_tensor * int_tensor(struct rk_backend * be, int64_t B, int64_t T, int32_t mod, int32_t ** host) {
    struct rk_tensor * t = rk_tensor_new(be, RK_DTYPE_I32, 2, (int64_t[]) { B, T }, "ints");
    RK_ASSERT(t != NULL);
    int32_t * v = rk_xmalloc((size_t) (B * T) * sizeof(int32_t));
    for (int64_t i = 0; i < B * T; i++) v[i] = (int32_t) (((uint64_t) ((urand() + 1.0f) * 1e6f)) % (uint64_t) mod);
    if (mod == 2) { /* a mask: right padding, lengths between T/2 and T */
        for (int64_t b = 0; b < B; b++) {
            const int64_t len = T / 2 + (b * 7919) % (T / 2 + 1);
            for (int64_t t2 = 0; t2 < T; t2++) v[b * T + t2] = t2 < len;
        }
    }
    RK_ASSERT(rk_tensor_set(t, v, (size_t) (B * T) * 4) == RK_OK);
    *host = v;
    return t;
}

struct op_ud {
    struct rk_backend * be;
    struct rk_op_call   call;
    /* the fused embed+LN launcher */
    struct rk_tensor *  ln_w, *ln_b;
    /* copy */
    void *              a, *b;
    size_t              n;
};

static void run_call(void * p) {
    struct op_ud * u = p;
    RK_ASSERT(rk_op(u->be, &u->call) == RK_OK);
}
static void run_embed_ln(void * p) {
    struct op_ud * u = p;
    const struct rk_op_call * c = &u->call;
    RK_ASSERT(rk_cuda_embed(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], c->src[4], &c->p.embed, u->ln_w,
                            u->ln_b, 1e-12f, rk_backend_cuda_stream(u->be)) == RK_OK);
}
static void run_copy(void * p) {
    struct op_ud * u = p;
    RK_CUDA_CHECK(cudaMemcpyAsync(u->b, u->a, u->n, cudaMemcpyDeviceToDevice, rk_backend_cuda_stream(u->be)));
}

/* Compares the first n values of the device tensor d (fetched whole) with ref; bf16 tolerance. */
static bool check(const char * what, const struct rk_tensor * d, const float * ref, int64_t n) {
    const int64_t total = rk_tensor_nelements(d);
    float *       got   = rk_xmalloc((size_t) total * sizeof(float));
    RK_ASSERT(rk_tensor_get_f32(d, got) == RK_OK);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double) got[i] - ref[i]), q = isnan(e) ? INFINITY : e / (1e-2 + 2e-2 * fabs(ref[i]));
        if (q > worst) worst = q;
    }
    free(got);
    printf("check %-10s first %lld values: worst %.3g of tolerance %s\n", what, (long long) n, worst,
           worst <= 1.0 ? "ok" : "FAILED (not timed)");
    return worst <= 1.0;
}

static void report(const char * op, const char * key, double ms, double bytes) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    printf("op %-10s %-40s median_ms=%.4f %.0f GB/s\n", op, key, ms, gbs);
    printf("RESULT %s %.0f GB/s\n", key, gbs);
}

static bool check_only; /* --check: nothing is timed */

/* Times fn(ud) and reports it under key; nothing with --check. */
static void timed(struct rk_bench_timer * tm, const char * op, const char * key, rk_bench_fn fn, void * ud,
                  double bytes) {
    if (!check_only) report(op, key, rk_bench_time_ms(tm, fn, ud), bytes);
}

/* "<base>" for variant 0 (the default), "<base>@v<N>" for variant N. */
static void variant_key(char * key, size_t n, const char * base, int v) {
    if (v == 0) {
        snprintf(key, n, "%s", base);
    } else {
        snprintf(key, n, "%s@v%d", base, v);
    }
}

int main(int argc, char ** argv) {
    const char * only = NULL;
    int          reps = 30, v_lo = 0, v_hi = 0; /* --variant: 0 only unless given */
    bool         all = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc) {
            i++;
            all  = strcmp(argv[i], "all") == 0;
            v_lo = all ? 0 : atoi(argv[i]);
            v_hi = v_lo;
            if (!all && (v_lo < 0 || (v_lo == 0 && strcmp(argv[i], "0") != 0))) v_lo = -1; /* usage below */
        } else if (strcmp(argv[i], "--check") == 0) {
            check_only = true;
        } else if (argv[i][0] != '-') {
            only = argv[i];
        } else {
            v_lo = -1;
            break;
        }
    }
    if (v_lo < 0) {
        fprintf(stderr, "usage: %s [op] [--reps N] [--variant N|all] [--check]\n", argv[0]);
        return 2;
    }
    if (reps < 1) reps = 1;
    struct rk_backend * be = rk_bench_cuda_backend("bench_ops", false);
    if (!be) return 0;
    const enum rk_dtype dt = be->act_dtype;
    const char *        dn = rk_dtype_traits[dt].name;
    const double        es = (double) rk_dtype_traits[dt].type_size;

    /* the variants each op runs: [v_lo, hi] clipped to the op's count (a variant past it is an error) */
    const int gelu_hi = all ? RK_GELU_N_VARIANTS - 1 : v_hi, ln_hi = all ? RK_LAYERNORM_N_VARIANTS - 1 : v_hi;
    if (gelu_hi >= RK_GELU_N_VARIANTS || ln_hi >= RK_LAYERNORM_N_VARIANTS) {
        fprintf(stderr, "bench_ops: --variant %d: gelu has variants 0..%d, layernorm 0..%d\n", v_hi,
                RK_GELU_N_VARIANTS - 1, RK_LAYERNORM_N_VARIANTS - 1);
        rk_backend_free(be);
        return 2;
    }

    struct rk_bench_timer tm;
    rk_bench_timer_init(&tm, be, reps);

    const int64_t N = (int64_t) B_ * T_, C = C_;
    char          key[128];
    int           failed = 0;
#define WANT(name) (!only || strcmp(only, name) == 0)

    if (WANT("copy")) { /* bytes: n read + n written */
        struct op_ud u = { .be = be, .n = (size_t) 1 << 30 };
        u.a = be->alloc(be, u.n);
        u.b = be->alloc(be, u.n);
        RK_ASSERT(u.a && u.b);
        RK_CUDA_CHECK(cudaMemsetAsync(u.a, 1, u.n, tm.st));
        timed(&tm, "copy", "d2d_copy_1GiB", run_copy, &u, 2.0 * (double) u.n);
        be->free(be, u.a);
        be->free(be, u.b);
    }
    if (WANT("layernorm")) { /* x = LN(tmp + x): bytes 3 N C (tmp, x read; x written) */
        float *            hx, *hr, *hw, *hb;
        struct rk_tensor * x = rand_tensor(be, dt, 2, (int64_t[]) { N, C }, "x", &hx);
        struct rk_tensor * r = rand_tensor(be, dt, 2, (int64_t[]) { N, C }, "tmp", &hr);
        struct rk_tensor * w = rand_tensor(be, dt, 1, (int64_t[]) { C }, "w", &hw);
        struct rk_tensor * b = rand_tensor(be, dt, 1, (int64_t[]) { C }, "b", &hb);
        struct op_ud       u = { .be = be, .call = { .op = RK_OP_LAYERNORM, .dst = x, .src = { r, w, b, x } } };
        u.call.p.layernorm.eps = 1e-12f;
        const int64_t    R   = 64;
        float *          ref = rk_xmalloc((size_t) (R * C) * sizeof(float));
        struct rk_tensor hX = rk_tensor_host(hr, RK_DTYPE_F32, 2, (int64_t[]) { R, C });
        struct rk_tensor hR = rk_tensor_host(hx, RK_DTYPE_F32, 2, (int64_t[]) { R, C });
        struct rk_tensor hW = rk_tensor_host(hw, RK_DTYPE_F32, 1, (int64_t[]) { C });
        struct rk_tensor hB = rk_tensor_host(hb, RK_DTYPE_F32, 1, (int64_t[]) { C });
        struct rk_tensor hD = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { R, C });
        rk_cpu_layernorm(&hD, &hX, &hW, &hB, &hR, &u.call.p.layernorm);
        char base[96], what[32];
        snprintf(base, sizeof(base), "layernorm_%s_N%lld_C%lld_residual", dn, (long long) N, (long long) C);
        for (int v = v_lo; v <= ln_hi; v++) {
            /* in place, so each variant starts from the original x (the reference's residual input) */
            RK_ASSERT(rk_tensor_set_f32(x, hx) == RK_OK);
            RK_ASSERT(rk_cuda_layernorm_set_variant(v) == RK_OK);
            run_call(&u);
            snprintf(what, sizeof(what), "layernorm@v%d", v);
            if (check(v == 0 ? "layernorm" : what, x, ref, R * C)) {
                variant_key(key, sizeof(key), base, v);
                timed(&tm, "layernorm", key, run_call, &u, 3.0 * N * C * es);
            } else {
                failed++;
            }
        }
        RK_ASSERT(rk_cuda_layernorm_set_variant(0) == RK_OK);
        free(hx), free(hr), free(hw), free(hb), free(ref);
        rk_tensor_free(x), rk_tensor_free(r), rk_tensor_free(w), rk_tensor_free(b);
    }
    if (WANT("gelu") || WANT("add")) {
        const int64_t      I = 4 * C; /* FFN width */
        float *            ha, *hb2;
        struct rk_tensor * a = rand_tensor(be, dt, 2, (int64_t[]) { N, I }, "a", &ha);
        struct rk_tensor * b = rand_tensor(be, dt, 2, (int64_t[]) { N, I }, "b", &hb2);
        struct rk_tensor * d = rk_tensor_new(be, dt, 2, (int64_t[]) { N, I }, "d");
        RK_ASSERT(d != NULL);
        float *          ref = rk_xmalloc((size_t) (64 * I) * sizeof(float));
        struct rk_tensor hA  = rk_tensor_host(ha, RK_DTYPE_F32, 2, (int64_t[]) { 64, I });
        struct rk_tensor hB  = rk_tensor_host(hb2, RK_DTYPE_F32, 2, (int64_t[]) { 64, I });
        struct rk_tensor hD  = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { 64, I });
        if (WANT("gelu")) { /* bytes: 2 N I */
            struct op_ud u = { .be = be, .call = { .op = RK_OP_GELU, .dst = d, .src = { a } } };
            rk_cpu_gelu(&hD, &hA);
            char base[96], what[32];
            snprintf(base, sizeof(base), "gelu_%s_N%lld_C%lld", dn, (long long) N, (long long) I);
            for (int v = v_lo; v <= gelu_hi; v++) {
                RK_ASSERT(rk_cuda_gelu_set_variant(v) == RK_OK);
                RK_ASSERT(rk_tensor_set_f32(d, ha) == RK_OK); /* not the previous variant's output */
                run_call(&u);
                snprintf(what, sizeof(what), "gelu@v%d", v);
                if (check(v == 0 ? "gelu" : what, d, ref, 64 * I)) {
                    variant_key(key, sizeof(key), base, v);
                    timed(&tm, "gelu", key, run_call, &u, 2.0 * N * I * es);
                } else {
                    failed++;
                }
            }
            RK_ASSERT(rk_cuda_gelu_set_variant(0) == RK_OK);
        }
        if (WANT("add")) { /* bytes: 3 N I */
            struct op_ud u = { .be = be, .call = { .op = RK_OP_ADD, .dst = d, .src = { a, b } } };
            run_call(&u);
            rk_cpu_add(&hD, &hA, &hB);
            if (check("add", d, ref, 64 * I)) {
                snprintf(key, sizeof(key), "add_%s_N%lld_C%lld", dn, (long long) N, (long long) I);
                timed(&tm, "add", key, run_call, &u, 3.0 * N * I * es);
            } else {
                failed++;
            }
        }
        free(ha), free(hb2), free(ref);
        rk_tensor_free(a), rk_tensor_free(b), rk_tensor_free(d);
    }
    if (WANT("softmax")) { /* attention-score-shaped rows (B*NH*T, T): bytes 2 R T */
        const int64_t      R = (int64_t) B_ * NH_ * T_;
        float *            hx;
        struct rk_tensor * x = rand_tensor(be, dt, 2, (int64_t[]) { R, T_ }, "x", &hx);
        struct rk_tensor * d = rk_tensor_new(be, dt, 2, (int64_t[]) { R, T_ }, "d");
        RK_ASSERT(d != NULL);
        struct op_ud u = { .be = be, .call = { .op = RK_OP_SOFTMAX, .dst = d, .src = { x } } };
        u.call.p.softmax.scale = 0.125f;
        run_call(&u);
        float *          ref = rk_xmalloc((size_t) (64 * T_) * sizeof(float));
        struct rk_tensor hX  = rk_tensor_host(hx, RK_DTYPE_F32, 2, (int64_t[]) { 64, T_ });
        struct rk_tensor hD  = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { 64, T_ });
        rk_cpu_softmax(&hD, &hX, &u.call.p.softmax);
        if (check("softmax", d, ref, 64 * T_)) {
            snprintf(key, sizeof(key), "softmax_%s_N%lld_C%d", dn, (long long) R, T_);
            timed(&tm, "softmax", key, run_call, &u, 2.0 * R * T_ * es);
        } else {
            failed++;
        }
        free(hx), free(ref);
        rk_tensor_free(x), rk_tensor_free(d);
    }
    if (WANT("embed") || WANT("embed_ln")) { /* bytes: N C (word rows) + N C (written); position/type rows stay in L2 */
        float *            hte, *hpe, *htt, *hw, *hb;
        int32_t *          hid, *htid;
        struct rk_tensor * wte = rand_tensor(be, dt, 2, (int64_t[]) { V_, C }, "wte", &hte);
        struct rk_tensor * wpe = rand_tensor(be, dt, 2, (int64_t[]) { 512, C }, "wpe", &hpe);
        struct rk_tensor * wtt = rand_tensor(be, dt, 2, (int64_t[]) { 2, C }, "wtt", &htt);
        struct rk_tensor * w   = rand_tensor(be, dt, 1, (int64_t[]) { C }, "w", &hw);
        struct rk_tensor * b   = rand_tensor(be, dt, 1, (int64_t[]) { C }, "b", &hb);
        struct rk_tensor * ids = int_tensor(be, B_, T_, V_, &hid);
        struct rk_tensor * tid = int_tensor(be, B_, T_, 2, &htid); /* 0/1 pattern; fine as type ids */
        struct rk_tensor * d   = rk_tensor_new(be, dt, 3, (int64_t[]) { B_, T_, C }, "d");
        RK_ASSERT(d != NULL);
        struct op_ud u = { .be = be, .call = { .op = RK_OP_EMBED, .dst = d, .src = { wte, ids, wpe, wtt, tid } },
                           .ln_w = w, .ln_b = b };
        /* reference for the first sequence */
        float *          ref = rk_xmalloc((size_t) (T_ * C) * sizeof(float));
        struct rk_tensor hD  = rk_tensor_host(ref, RK_DTYPE_F32, 3, (int64_t[]) { 1, T_, C });
        struct rk_tensor hE  = rk_tensor_host(hte, RK_DTYPE_F32, 2, (int64_t[]) { V_, C });
        struct rk_tensor hP  = rk_tensor_host(hpe, RK_DTYPE_F32, 2, (int64_t[]) { 512, C });
        struct rk_tensor hT  = rk_tensor_host(htt, RK_DTYPE_F32, 2, (int64_t[]) { 2, C });
        struct rk_tensor hI  = rk_tensor_host(hid, RK_DTYPE_I32, 2, (int64_t[]) { 1, T_ });
        struct rk_tensor hTI = rk_tensor_host(htid, RK_DTYPE_I32, 2, (int64_t[]) { 1, T_ });
        RK_ASSERT(rk_cpu_embed(&hD, &hE, &hI, &hP, &hT, &hTI, &u.call.p.embed) == RK_OK);
        if (WANT("embed")) {
            run_call(&u);
            if (check("embed", d, ref, T_ * C)) {
                snprintf(key, sizeof(key), "embed_%s_B%d_T%d_C%lld", dn, B_, T_, (long long) C);
                timed(&tm, "embed", key, run_call, &u, 2.0 * N * C * es);
            } else {
                failed++;
            }
        }
        if (WANT("embed_ln")) {
            struct rk_tensor           h2 = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { T_, C });
            struct rk_tensor           hW = rk_tensor_host(hw, RK_DTYPE_F32, 1, (int64_t[]) { C });
            struct rk_tensor           hB = rk_tensor_host(hb, RK_DTYPE_F32, 1, (int64_t[]) { C });
            struct rk_layernorm_params lp = { .eps = 1e-12f };
            rk_cpu_layernorm(&h2, &h2, &hW, &hB, NULL, &lp);
            run_embed_ln(&u);
            RK_ASSERT(be->synchronize(be) == RK_OK);
            if (check("embed_ln", d, ref, T_ * C)) {
                snprintf(key, sizeof(key), "embed_ln_%s_B%d_T%d_C%lld", dn, B_, T_, (long long) C);
                timed(&tm, "embed_ln", key, run_embed_ln, &u, 2.0 * N * C * es);
            } else {
                failed++;
            }
        }
        free(hte), free(hpe), free(htt), free(hw), free(hb), free(hid), free(htid), free(ref);
        rk_tensor_free(wte), rk_tensor_free(wpe), rk_tensor_free(wtt), rk_tensor_free(w), rk_tensor_free(b);
        rk_tensor_free(ids), rk_tensor_free(tid), rk_tensor_free(d);
    }
    if (WANT("pool") || WANT("l2norm")) { /* pool bytes: B T C read (masked tokens too) + B C written */
        float *            hx;
        int32_t *          hm;
        struct rk_tensor * x = rand_tensor(be, dt, 3, (int64_t[]) { B_, T_, C }, "x", &hx);
        struct rk_tensor * m = int_tensor(be, B_, T_, 2, &hm);
        struct rk_tensor * d = rk_tensor_new(be, dt, 2, (int64_t[]) { B_, C }, "pooled");
        RK_ASSERT(d != NULL);
        float *          ref = rk_xmalloc((size_t) (B_ * C) * sizeof(float));
        struct rk_tensor hX  = rk_tensor_host(hx, RK_DTYPE_F32, 3, (int64_t[]) { B_, T_, C });
        struct rk_tensor hM  = rk_tensor_host(hm, RK_DTYPE_I32, 2, (int64_t[]) { B_, T_ });
        struct rk_tensor hD  = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { B_, C });
        struct op_ud u = { .be = be, .call = { .op = RK_OP_POOL, .dst = d, .src = { x, m } } };
        u.call.p.pool.mode = RK_POOL_MEAN;
        run_call(&u);
        rk_cpu_pool(&hD, &hX, &hM, &u.call.p.pool);
        if (WANT("pool")) {
            if (check("pool", d, ref, B_ * C)) {
                snprintf(key, sizeof(key), "pool_mean_%s_B%d_T%d_C%lld", dn, B_, T_, (long long) C);
                timed(&tm, "pool", key, run_call, &u, ((double) B_ * T_ * C + (double) B_ * C) * es);
            } else {
                failed++;
            }
        }
        if (WANT("l2norm")) { /* bytes: 2 B C (tiny: launch-bound, as in the model) */
            struct rk_tensor * e = rk_tensor_new(be, dt, 2, (int64_t[]) { B_, C }, "normed");
            RK_ASSERT(e != NULL);
            struct op_ud v = { .be = be, .call = { .op = RK_OP_L2NORM, .dst = e, .src = { d } } };
            v.call.p.l2norm.eps = 1e-12f;
            run_call(&v);
            float * pooled = rk_xmalloc((size_t) (B_ * C) * sizeof(float));
            float * ref2   = rk_xmalloc((size_t) (B_ * C) * sizeof(float));
            RK_ASSERT(rk_tensor_get_f32(d, pooled) == RK_OK);
            struct rk_tensor hP = rk_tensor_host(pooled, RK_DTYPE_F32, 2, (int64_t[]) { B_, C });
            struct rk_tensor hE = rk_tensor_host(ref2, RK_DTYPE_F32, 2, (int64_t[]) { B_, C });
            rk_cpu_l2norm(&hE, &hP, &v.call.p.l2norm);
            if (check("l2norm", e, ref2, B_ * C)) {
                snprintf(key, sizeof(key), "l2norm_%s_B%d_C%lld", dn, B_, (long long) C);
                timed(&tm, "l2norm", key, run_call, &v, 2.0 * B_ * C * es);
            } else {
                failed++;
            }
            free(pooled), free(ref2);
            rk_tensor_free(e);
        }
        free(hx), free(hm), free(ref);
        rk_tensor_free(x), rk_tensor_free(m), rk_tensor_free(d);
    }
    rk_bench_timer_free(&tm);
    rk_backend_free(be);
    return failed ? 1 : 0;
}
#endif
