/*
 * bench_lora.c: RK_OP_LORA_FWD / RK_OP_LORA_BWD on CUDA in bf16, the fused kernels of lora/lora.cu against the unfused
 * reference (cuBLAS GEMMs + elementwise dropout, RK_LORA_UNFUSED), at Llama-7B adapter shapes: K = N = 4096 (q/k/v/o)
 * and 4096 -> 14336 (an MLP up projection of that width), r = 16, M = 2048 and 4096 tokens, dropout 0 and 0.1.
 *
 *   build/bench/bench_lora [--reps N]
 *
 * First checks both variants, forward and backward, against the CPU op (rk_cpu_lora_fwd_op / rk_cpu_lora_bwd_op) on
 * an awkward small case with dropout; a failing check exits 1 and nothing is timed. Each timed shape also checks the
 * first rows of the fused forward's y and u against the CPU. Timing: CUDA events on the backend's stream, 3 warm-ups,
 * median of N repetitions (30), the L2 flushed before each by writing a buffer twice its size. The backward's timing
 * includes the reductions (all 4 launches of the fused path; all GEMMs and dropout kernels of the unfused one).
 *
 * Prints per shape and variant the median time, GB/s and TFLOP/s, and machine-readable lines
 *     RESULT lora_{fwd,bwd}_bf16_M<M>_K<K>_N<N>_r<r>_p<p> <ms> ms            (the variant the backend runs:
 *                                                                             rk_cuda_lora_pick)
 *     RESULT lora_{fwd,bwd}_{fused,unfused}_bf16_M<M>_K<K>_N<N>_r<r>_p<p> <ms> ms   (each variant: no peer line)
 * .ci/device_check.sh joins the first kind with bench/peers/lora_peft.py, which times PEFT's lora.Linear adapter path
 * (lora_B(lora_A(dropout(x))) * scaling added to the base output, and its autograd backward) on the same shapes.
 * Without CUDA in the build, or without a device, it prints one line and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "lora/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RK_HAVE_CUDA
int main(void) {
    printf("bench_lora: this build has no CUDA backend; nothing to time\n");
    return 0;
}
#else

#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "lora/lora_cuda.h"

#include <cublas_v2.h>

struct shape {
    const char * what;
    int64_t      M, K, N, r;
    float        p;
};

static const struct shape shapes[] = {
    { "llama7b_qkvo_2ktok", 2048, 4096, 4096, 16, 0.0f },   { "llama7b_qkvo_2ktok", 2048, 4096, 4096, 16, 0.1f },
    { "llama7b_qkvo_4ktok", 4096, 4096, 4096, 16, 0.0f },   { "llama7b_qkvo_4ktok", 4096, 4096, 4096, 16, 0.1f },
    { "llama7b_up14k_2ktok", 2048, 4096, 14336, 16, 0.0f }, { "llama7b_up14k_2ktok", 2048, 4096, 14336, 16, 0.1f },
    { "llama7b_up14k_4ktok", 4096, 4096, 14336, 16, 0.0f }, { "llama7b_up14k_4ktok", 4096, 4096, 14336, 16, 0.1f },
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* n values uniform in [-scale, scale), rounded to bf16 (what the device holds). */
static float * rand_bf16(int64_t n, float scale) {
    float * v = rk_xmalloc((size_t) n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = rk_bf16_to_f32(rk_f32_to_bf16(rk_bench_urand(&rng_state) * scale));
    return v;
}

/*
 * Worst |got - ref| / (atol + rtol |ref|) over n values (<= 1 passes; NaN gives infinity), bf16 tolerances. rounded_g:
 * a sum over rows of products with g = dy B, which the device rounds to bf16 (the CPU does not): atol grows to
 * 4 * 2^-8 * rms(ref), as in tests/test_lora.c (close_dt) where the reasoning is.
 */
static double worst_of(const float * got, const float * ref, int64_t n, bool rounded_g) {
    double w = 0, atol = 1e-2, sq = 0;
    for (int64_t i = 0; i < n && rounded_g; i++) sq += (double) ref[i] * ref[i];
    if (rounded_g && n > 0 && 4 * 0x1p-8 * sqrt(sq / (double) n) > atol) atol = 4 * 0x1p-8 * sqrt(sq / (double) n);
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double) got[i] - ref[i]);
        const double q = isnan(e) ? INFINITY : e / (atol + 2e-2 * fabs((double) ref[i]));
        if (q > w) w = q;
    }
    return w;
}

/* The tensors of one problem on the device and its host copies (inputs rounded to bf16). */
struct problem {
    struct shape       s;
    float *            x, * A, * B, * y0, * dy, * u;                /* host */
    struct rk_tensor * tx, * tA, * tB, * ty, * tu, * tdy, * tdx, * tdA, * tdB; /* device */
};

static struct rk_tensor * dev_tensor(struct rk_backend * be, enum rk_dtype dt, int64_t a, int64_t b, const float * v,
                                     const char * name) {
    struct rk_tensor * t = rk_tensor_new(be, dt, 2, (int64_t[]) { a, b }, name);
    if (!t) {
        fprintf(stderr, "bench_lora: %s\n", rk_last_error());
        exit(1);
    }
    if (v) RK_ASSERT(rk_tensor_set_f32(t, v) == RK_OK);
    return t;
}

static void problem_init(struct problem * P, struct rk_backend * be, const struct shape * s) {
    const int64_t M = s->M, K = s->K, N = s->N, r = s->r;
    memset(P, 0, sizeof(*P));
    P->s  = *s;
    P->x  = rand_bf16(M * K, 1.0f);
    P->A  = rand_bf16(r * K, 1.0f / sqrtf((float) K));
    P->B  = rand_bf16(N * r, 1.0f / sqrtf((float) r));
    P->y0 = rand_bf16(M * N, 1.0f);
    P->dy = rand_bf16(M * N, 1.0f / sqrtf((float) N));
    P->u  = rand_bf16(M * r, 0.5f);
    float * z = rk_xcalloc((size_t) (M * K > N * r ? M * K : N * r), sizeof(float));
    P->tx  = dev_tensor(be, RK_DTYPE_BF16, M, K, P->x, "x");
    P->tA  = dev_tensor(be, RK_DTYPE_BF16, r, K, P->A, "A");
    P->tB  = dev_tensor(be, RK_DTYPE_BF16, N, r, P->B, "B");
    P->ty  = dev_tensor(be, RK_DTYPE_BF16, M, N, P->y0, "y");
    P->tu  = dev_tensor(be, RK_DTYPE_BF16, M, r, P->u, "u");
    P->tdy = dev_tensor(be, RK_DTYPE_BF16, M, N, P->dy, "dy");
    P->tdx = dev_tensor(be, RK_DTYPE_BF16, M, K, z, "dx");
    P->tdA = dev_tensor(be, RK_DTYPE_F32, r, K, z, "dA");
    P->tdB = dev_tensor(be, RK_DTYPE_F32, N, r, z, "dB");
    free(z);
}

static void problem_free(struct problem * P) {
    float * h[] = { P->x, P->A, P->B, P->y0, P->dy, P->u };
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) free(h[i]);
    struct rk_tensor * t[] = { P->tx, P->tA, P->tB, P->ty, P->tu, P->tdy, P->tdx, P->tdA, P->tdB };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) rk_tensor_free(t[i]);
}

static struct rk_lora_params params_of(const struct problem * P, bool with_grads) {
    struct rk_lora_params p = { .scale = 2.0f, .dropout = P->s.p, .seed = 42, .offset = 7 };
    if (with_grads) {
        p.dA = P->tdA;
        p.dB = P->tdB;
    }
    return p;
}

/* Runs one direction (bwd false: forward) with one variant (ws NULL: the backend's fused op). */
static enum rk_status run(struct rk_backend * be, struct problem * P, bool bwd, const struct rk_cuda_lora_ws * ws) {
    const struct rk_lora_params p = params_of(P, bwd);
    if (!ws) {
        struct rk_op_call c = { .op = bwd ? RK_OP_LORA_BWD : RK_OP_LORA_FWD };
        if (bwd) {
            c.dst = P->tdx;
            const struct rk_tensor * src[] = { P->tdy, P->tx, P->tu, P->tA, P->tB };
            memcpy(c.src, src, sizeof(src));
        } else {
            c.dst = P->ty;
            const struct rk_tensor * src[] = { P->tx, P->tA, P->tB, P->tu };
            memcpy(c.src, src, sizeof(src));
        }
        c.p.lora = p;
        return rk_op(be, &c);
    }
    cudaStream_t st = rk_backend_cuda_stream(be);
    return bwd ? rk_cuda_lora_bwd(P->tdx, P->tdy, P->tx, P->tu, P->tA, P->tB, &p, ws, st)
               : rk_cuda_lora_fwd(P->ty, P->tu, P->tx, P->tA, P->tB, &p, ws, st);
}

/*
 * The full check on one problem: resets the outputs, runs forward and backward with the variant, compares y, u, dx,
 * dA, dB with the CPU op on the same inputs. Prints one line; false on a failure.
 */
static bool check_full(struct rk_backend * be, struct problem * P, const struct rk_cuda_lora_ws * ws, const char * vn) {
    const struct shape * s = &P->s;
    const int64_t        M = s->M, K = s->K, N = s->N, r = s->r;
    float * y = rk_xmalloc(sizeof(float) * (size_t) (M * N)), * u = rk_xcalloc((size_t) (M * r), sizeof(float));
    float * dx = rk_xcalloc((size_t) (M * K), sizeof(float)), * dA = rk_xcalloc((size_t) (r * K), sizeof(float));
    float * dB = rk_xcalloc((size_t) (N * r), sizeof(float));
    memcpy(y, P->y0, sizeof(float) * (size_t) (M * N));
    RK_ASSERT(rk_tensor_set_f32(P->ty, P->y0) == RK_OK && rk_tensor_set_f32(P->tdx, dx) == RK_OK &&
              rk_tensor_set_f32(P->tdA, dA) == RK_OK && rk_tensor_set_f32(P->tdB, dB) == RK_OK);
    /* CPU: forward, then the backward on the forward's u rounded to bf16 (what the device keeps) */
    struct rk_tensor hy = rk_tensor_host(y, RK_DTYPE_F32, 2, (int64_t[]) { M, N });
    struct rk_tensor hu = rk_tensor_host(u, RK_DTYPE_F32, 2, (int64_t[]) { M, r });
    struct rk_tensor hx = rk_tensor_host(P->x, RK_DTYPE_F32, 2, (int64_t[]) { M, K });
    struct rk_tensor hA = rk_tensor_host(P->A, RK_DTYPE_F32, 2, (int64_t[]) { r, K });
    struct rk_tensor hB = rk_tensor_host(P->B, RK_DTYPE_F32, 2, (int64_t[]) { N, r });
    struct rk_tensor hdy = rk_tensor_host(P->dy, RK_DTYPE_F32, 2, (int64_t[]) { M, N });
    struct rk_tensor hdx = rk_tensor_host(dx, RK_DTYPE_F32, 2, (int64_t[]) { M, K });
    struct rk_tensor hdA = rk_tensor_host(dA, RK_DTYPE_F32, 2, (int64_t[]) { r, K });
    struct rk_tensor hdB = rk_tensor_host(dB, RK_DTYPE_F32, 2, (int64_t[]) { N, r });
    struct rk_lora_params p = params_of(P, false);
    RK_ASSERT(rk_cpu_lora_fwd_op(&hy, &hu, &hx, &hA, &hB, &p) == RK_OK);
    for (int64_t i = 0; i < M * r; i++) u[i] = rk_bf16_to_f32(rk_f32_to_bf16(u[i]));
    p.dA = &hdA;
    p.dB = &hdB;
    RK_ASSERT(rk_cpu_lora_bwd_op(&hdx, &hdy, &hx, &hu, &hA, &hB, &p) == RK_OK);
    /* device */
    RK_ASSERT(rk_tensor_set_f32(P->tu, u) == RK_OK); /* bwd input; the forward overwrites it first */
    enum rk_status st = run(be, P, false, ws);
    float *        got_u = rk_xmalloc(sizeof(float) * (size_t) (M * r));
    if (st == RK_OK) RK_ASSERT(rk_tensor_get_f32(P->tu, got_u) == RK_OK);
    RK_ASSERT(rk_tensor_set_f32(P->tu, u) == RK_OK);
    if (st == RK_OK) st = run(be, P, true, ws);
    bool ok = st == RK_OK;
    if (!ok) printf("check %-8s %s: FAILED to run: %s: %s\n", vn, s->what, rk_status_name(st), rk_last_error());
    double w[5] = { 0, 0, 0, 0, 0 };
    if (ok) {
        const int64_t n_max = M * (K > N ? K : N) + r * K + N * r;
        float *       got   = rk_xmalloc(sizeof(float) * (size_t) n_max);
        RK_ASSERT(rk_tensor_get_f32(P->ty, got) == RK_OK);
        w[0] = worst_of(got, y, M * N, false);
        w[1] = worst_of(got_u, u, M * r, false);
        RK_ASSERT(rk_tensor_get_f32(P->tdx, got) == RK_OK);
        w[2] = worst_of(got, dx, M * K, true);
        RK_ASSERT(rk_tensor_get_f32(P->tdA, got) == RK_OK);
        w[3] = worst_of(got, dA, r * K, true);
        RK_ASSERT(rk_tensor_get_f32(P->tdB, got) == RK_OK);
        w[4] = worst_of(got, dB, N * r, false);
        free(got);
        for (int i = 0; i < 5; i++) ok = ok && w[i] <= 1.0;
        printf("check %-8s %s M=%lld K=%lld N=%lld r=%lld p=%g: worst of tolerance y %.3g u %.3g dx %.3g dA %.3g dB "
               "%.3g %s\n", vn, s->what, (long long) M, (long long) K, (long long) N, (long long) r, (double) s->p,
               w[0], w[1], w[2], w[3], w[4], ok ? "ok" : "FAILED (nothing timed)");
    }
    float * h[] = { y, u, dx, dA, dB, got_u };
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) free(h[i]);
    return ok;
}

/* The fused forward on a timed shape: its first rows of y and u against the CPU. */
static bool check_rows(struct rk_backend * be, struct problem * P, int64_t rows) {
    const struct shape * s = &P->s;
    const int64_t        R = rows < s->M ? rows : s->M, K = s->K, N = s->N, r = s->r;
    RK_ASSERT(rk_tensor_set_f32(P->ty, P->y0) == RK_OK);
    if (run(be, P, false, NULL) != RK_OK) {
        printf("check %s: FAILED to run: %s\n", s->what, rk_last_error());
        return false;
    }
    float * y = rk_xmalloc(sizeof(float) * (size_t) (R * N)), * u = rk_xmalloc(sizeof(float) * (size_t) (R * r));
    memcpy(y, P->y0, sizeof(float) * (size_t) (R * N));
    struct rk_tensor hy = rk_tensor_host(y, RK_DTYPE_F32, 2, (int64_t[]) { R, N });
    struct rk_tensor hu = rk_tensor_host(u, RK_DTYPE_F32, 2, (int64_t[]) { R, r });
    struct rk_tensor hx = rk_tensor_host(P->x, RK_DTYPE_F32, 2, (int64_t[]) { R, K });
    struct rk_tensor hA = rk_tensor_host(P->A, RK_DTYPE_F32, 2, (int64_t[]) { r, K });
    struct rk_tensor hB = rk_tensor_host(P->B, RK_DTYPE_F32, 2, (int64_t[]) { N, r });
    const struct rk_lora_params p = params_of(P, false); /* rows m < R draw the same mask: index m*K + k */
    RK_ASSERT(rk_cpu_lora_fwd_op(&hy, &hu, &hx, &hA, &hB, &p) == RK_OK);
    float * gy = rk_xmalloc(sizeof(float) * (size_t) (s->M * N)), * gu = rk_xmalloc(sizeof(float) * (size_t) (s->M * r));
    RK_ASSERT(rk_tensor_get_f32(P->ty, gy) == RK_OK && rk_tensor_get_f32(P->tu, gu) == RK_OK);
    const double wy = worst_of(gy, y, R * N, false), wu = worst_of(gu, u, R * r, false);
    const bool   ok = wy <= 1.0 && wu <= 1.0;
    printf("check fused    %s M=%lld K=%lld N=%lld r=%lld p=%g rows=%lld: worst of tolerance y %.3g u %.3g %s\n",
           s->what, (long long) s->M, (long long) K, (long long) N, (long long) r, (double) s->p, (long long) R, wy,
           wu, ok ? "ok" : "FAILED (not timed)");
    free(y);
    free(u);
    free(gy);
    free(gu);
    return ok;
}

/* One timed direction and variant, for rk_bench_time_ms. */
struct timed_run {
    struct rk_backend *            be;
    struct problem *               P;
    bool                           bwd;
    const struct rk_cuda_lora_ws * ws;
};

static void run_timed(void * ud) {
    const struct timed_run * t = ud;
    RK_ASSERT(run(t->be, t->P, t->bwd, t->ws) == RK_OK);
}

int main(int argc, char ** argv) {
    int reps = 30;
    if (!rk_bench_parse_reps(argc, argv, &reps)) return 2;
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) {
        printf("bench_lora: no CUDA device (%s); nothing to time\n", rk_last_error());
        return 0;
    }
    rk_bench_print_device(be->name);
    if (be->act_dtype != RK_DTYPE_BF16) {
        printf("bench_lora: activations are %s on this device; the bf16 kernels need sm_80+\n",
               rk_dtype_traits[be->act_dtype].name);
        rk_backend_free(be);
        return 0;
    }
    cublasHandle_t cublas;
    RK_CUBLAS_CHECK(cublasCreate(&cublas));
    const struct shape big = shapes[sizeof(shapes) / sizeof(shapes[0]) - 1];
    size_t             scratch_bytes = 0;
    for (int bwd = 0; bwd < 2; bwd++) {
        const size_t b = rk_cuda_lora_scratch_bytes(RK_LORA_UNFUSED, bwd, big.M, big.K, big.N, big.r, RK_DTYPE_BF16);
        if (b > scratch_bytes) scratch_bytes = b;
    }
    void * scratch = be->alloc(be, scratch_bytes);
    RK_ASSERT(scratch != NULL);
    const struct rk_cuda_lora_ws unfused = { RK_LORA_UNFUSED, cublas, scratch, scratch_bytes };

    /* 1. the full check of both variants on an awkward case with dropout */
    {
        const struct shape small = { "check_small", 77, 1000, 384, 16, 0.1f };
        struct problem     P;
        problem_init(&P, be, &small);
        const bool ok = check_full(be, &P, NULL, "fused") & check_full(be, &P, &unfused, "unfused");
        problem_free(&P);
        if (!ok) {
            be->free(be, scratch);
            RK_CUBLAS_CHECK(cublasDestroy(cublas));
            rk_backend_free(be);
            return 1;
        }
    }

    /* 2. timed shapes */
    struct rk_bench_timer tm;
    rk_bench_timer_init(&tm, be, reps);
    int failed = 0;
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const struct shape * s = &shapes[si];
        struct problem       P;
        problem_init(&P, be, s);
        if (!check_rows(be, &P, 16)) {
            failed++;
            problem_free(&P);
            continue;
        }
        const double M = (double) s->M, K = (double) s->K, N = (double) s->N, r = (double) s->r;
        for (int bwd = 0; bwd < 2; bwd++) {
            /* bf16 bytes each direction must move at least once: forward x, y read + written, u written, A, B;
             * backward dy, x, dx read + written, u, A, B, and fp32 dA, dB read + written. FLOPs: forward
             * 2 M r (K + N); backward 4 M r (K + N) (g, dB, dA, dx). */
            const double bytes = bwd ? 2 * (M * N + M * K + 2 * M * K + M * r + r * K + N * r) + 8 * (r * K + N * r)
                                     : 2 * (M * K + 2 * M * N + M * r + r * K + N * r);
            const double flops = (bwd ? 4 : 2) * M * r * (K + N);
            double       ms[2];
            char         key[2][160];
            for (int v = 0; v < 2; v++) {
                struct timed_run tr = { be, &P, bwd, v ? &unfused : NULL };
                ms[v]               = rk_bench_time_ms(&tm, run_timed, &tr);
                snprintf(key[v], sizeof(key[v]), "lora_%s%s_bf16_M%lld_K%lld_N%lld_r%lld_p%g", bwd ? "bwd" : "fwd",
                         v ? "_unfused" : "_fused", (long long) s->M, (long long) s->K, (long long) s->N,
                         (long long) s->r, (double) s->p);
                printf("lora %-20s %-8s %-46s median_ms=%.4f (min %.4f) %7.1f GB/s %5.1f TFLOP/s\n", s->what,
                       v ? "unfused" : "fused", key[v], ms[v], (double) tm.ms[0], bytes / (ms[v] * 1e-3) / 1e9,
                       flops / (ms[v] * 1e-3) / 1e12);
                printf("RESULT %s %.4f ms\n", key[v], ms[v]);
            }
            /* the op as the backend runs it: the peer's key */
            const int pick = rk_cuda_lora_pick(bwd, s->p) == RK_LORA_UNFUSED;
            printf("RESULT lora_%s_bf16_M%lld_K%lld_N%lld_r%lld_p%g %.4f ms\n", bwd ? "bwd" : "fwd", (long long) s->M,
                   (long long) s->K, (long long) s->N, (long long) s->r, (double) s->p, ms[pick]);
            printf("lora %-20s %s p=%g: fused is %.2fx the unfused speed; the backend runs %s\n", s->what,
                   bwd ? "bwd" : "fwd", (double) s->p, ms[1] / ms[0], pick ? "unfused" : "fused");
        }
        problem_free(&P);
    }
    rk_bench_timer_free(&tm);
    be->free(be, scratch);
    RK_CUBLAS_CHECK(cublasDestroy(cublas));
    rk_backend_free(be);
    return failed ? 1 : 0;
}
#endif
