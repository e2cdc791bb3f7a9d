/*
 * bench_attn_bwd: attention forward + backward on CUDA (rk_cuda_attn_fwd, then rk_cuda_attn_bwd), checked against the
 * CPU reference, then timed.
 *
 *   build/bench/bench_attn_bwd [--variant N|all] [--shape NAME] [--reps 30] [--seed S]
 *   build/bench/bench_attn_bwd --check [--variant N|all]      the small-shape checks only, no timing
 *
 * --variant picks the backward variant (kernels/attn_cuda.h: 0 auto, 1 plain, 2 tensor cores); the forward always
 * runs its automatic choice. First, every chosen variant is checked on small awkward shapes (grouped-query heads
 * with a causal and a padding mask, HS 32, 80 and 128, T not a multiple of the tiles); a variant that fails any
 * check is not timed. Then for each timed shape (bf16, (B, NH, T, HS) contiguous, inputs uniform in [-1, 1]):
 * bert_base B64 T256 H12 D64, bert_large B32 T512 H16 D64, llama7b_causal B4 T2048 H32 D128 causal:
 *   - check: dq, dk, dv of batch 0 (llama: heads 0 and 1) against rk_cpu_attn_bwd run on the GPU forward's o and
 *     lse: normalized MSE and max |diff| relative to the largest |ref|, NaN, a guard after each output;
 *   - time: CUDA events around the forward and the backward, 5 warm-ups, the median of --reps runs, the L2 flushed
 *     by writing a 256 MB buffer before each run.
 * One line per shape and variant:
 *   attn_bwd <shape> variant=N(name) fwd_ms=... bwd_ms=... fwdbwd_ms=... tflops=... bwd_tflops=... max_err=... nmse=...
 * and for the default variant `RESULT attn_fwdbwd_<shape>_B.._T.._H.._D.. <ms> ms` and
 * `RESULT attn_bwd_<shape>_B.._T.._H.._D.. <ms> ms`: bench_attn's key scheme, joined by .ci/device_check.sh with
 * the peer's lines (bench/peers/attn_bwd_sdpa.py: torch SDPA flash, same shapes and method).
 * Without CUDA in the build it prints "no CUDA in this build" and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef RK_HAVE_CUDA
int main(void) {
    printf("no CUDA in this build\n");
    return 0;
}
#else

#include "cuda_check.h"
#include "kernels/attn.h"
#include "kernels/attn_cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <string.h>

struct bwd_shape {
    const char * name;
    int64_t      B, NH, NKV, T, HS;
    bool         causal;
    bool         mask; /* batch b pads its last 5 b + 3 keys (batch 0 of a B = 1 problem pads 3) */
};

static const struct bwd_shape check_shapes[] = {
    { "gqa_causal_pad", 2, 8, 2, 77, 64, true, true },
    { "hs128_pad", 2, 4, 4, 130, 128, false, true },
    { "hs32_causal", 2, 4, 4, 100, 32, true, false },
    { "hs80_pad", 1, 2, 2, 50, 80, false, true },
};

static const struct bwd_shape bench_shapes[] = {
    { "bert_base", 64, 12, 12, 256, 64, false, false },
    { "bert_large", 32, 16, 16, 512, 64, false, false },
    { "llama7b_causal", 4, 32, 32, 2048, 128, true, false },
};

#define GUARD_BYTES 4096
#define GUARD_BYTE  0x5a

static uint64_t rng_state = 0x5eed0002ull;

/* One problem on the device: bf16 q, k, v, dout (inputs), o, lse (forward outputs), dq, dk, dv (each followed by a
 * guard), the mask, the backward's scratch; the host keeps the logical inputs for the CPU reference. */
struct bwd_problem {
    struct bwd_shape s;
    float *          q, * k, * v, * dout;
    int32_t *        mask;
    void *           dev[10]; /* q k v dout o dq dk dv lse mask */
    struct rk_tensor t[10];
    void *           scratch;
    size_t           scratch_bytes;
};
enum { T_Q = 0, T_K, T_V, T_DOUT, T_O, T_DQ, T_DK, T_DV, T_LSE, T_MASK };

/* n values uniform in [-1, 1] rounded to bf16, and their bf16 bits in bits[] */
static float * rand_bf16(int64_t n, uint16_t * bits) {
    float * x = rk_xmalloc((size_t) n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        bits[i] = rk_f32_to_bf16(rk_bench_urand(&rng_state));
        x[i]    = rk_bf16_to_f32(bits[i]);
    }
    return x;
}

static void problem_init(struct bwd_problem * P, const struct bwd_shape * s) {
    memset(P, 0, sizeof(*P));
    P->s              = *s;
    const int64_t B   = s->B, T = s->T, HS = s->HS;
    const int64_t nq  = B * s->NH * T * HS, nk = B * s->NKV * T * HS;
    const int64_t neq[4] = { B, s->NH, T, HS }, nek[4] = { B, s->NKV, T, HS }, nel[3] = { B, s->NH, T },
                  nem[2] = { B, T };
    const int64_t n[10]  = { nq, nk, nk, nq, nq, nq, nk, nk, B * s->NH * T, B * T };
    uint16_t *    bits   = rk_xmalloc((size_t) nq * sizeof(uint16_t));
    float **      host[4] = { &P->q, &P->k, &P->v, &P->dout };
    for (int i = 0; i < 10; i++) {
        if (i == T_MASK && !s->mask) continue;
        const size_t es = i >= T_LSE ? 4 : 2, guard = (i >= T_DQ && i <= T_DV) ? GUARD_BYTES : 0;
        RK_CUDA_CHECK(cudaMalloc(&P->dev[i], (size_t) n[i] * es + guard));
        if (guard) RK_CUDA_CHECK(cudaMemset((char *) P->dev[i] + n[i] * es, GUARD_BYTE, guard));
        const bool kv = i == T_K || i == T_V || i == T_DK || i == T_DV;
        if (i == T_LSE) {
            rk_tensor_init(&P->t[i], RK_DTYPE_F32, 3, nel, "lse");
        } else if (i == T_MASK) {
            rk_tensor_init(&P->t[i], RK_DTYPE_I32, 2, nem, "mask");
        } else {
            rk_tensor_init(&P->t[i], RK_DTYPE_BF16, 4, kv ? nek : neq, NULL);
        }
        P->t[i].data = P->dev[i];
        if (i <= T_DOUT) {
            *host[i] = rand_bf16(n[i], bits);
            RK_CUDA_CHECK(cudaMemcpy(P->dev[i], bits, (size_t) n[i] * 2, cudaMemcpyHostToDevice));
        }
    }
    free(bits);
    if (s->mask) {
        P->mask = rk_xmalloc((size_t) (B * T) * sizeof(int32_t));
        for (int64_t b = 0; b < B; b++) {
            for (int64_t j = 0; j < T; j++) P->mask[b * T + j] = j < T - (5 * b + 3);
        }
        RK_CUDA_CHECK(cudaMemcpy(P->dev[T_MASK], P->mask, (size_t) (B * T) * sizeof(int32_t), cudaMemcpyHostToDevice));
    }
    P->scratch_bytes = rk_cuda_attn_bwd_scratch_bytes(&P->t[T_Q], &P->t[T_K]);
    RK_CUDA_CHECK(cudaMalloc(&P->scratch, P->scratch_bytes ? P->scratch_bytes : 256));
}

static void problem_free(struct bwd_problem * P) {
    free(P->q);
    free(P->k);
    free(P->v);
    free(P->dout);
    free(P->mask);
    for (int i = 0; i < 10; i++) RK_CUDA_FREE(P->dev[i]);
    RK_CUDA_FREE(P->scratch);
}

static struct rk_attn_params problem_params(const struct bwd_problem * P) {
    return (struct rk_attn_params) { .scale = 1.0f / sqrtf((float) P->s.HS), .causal = P->s.causal };
}

static enum rk_status run_fwd(struct bwd_problem * P, cudaStream_t stream) {
    const struct rk_attn_params p = problem_params(P);
    return rk_cuda_attn_fwd(&P->t[T_O], &P->t[T_Q], &P->t[T_K], &P->t[T_V], P->s.mask ? &P->t[T_MASK] : NULL,
                            &P->t[T_LSE], &p, false, stream);
}

static enum rk_status run_bwd(struct bwd_problem * P, int variant, cudaStream_t stream) {
    const struct rk_attn_params p = problem_params(P);
    return rk_cuda_attn_bwd_variant(&P->t[T_DQ], &P->t[T_DK], &P->t[T_DV], &P->t[T_Q], &P->t[T_K], &P->t[T_V],
                                    &P->t[T_O], &P->t[T_DOUT], &P->t[T_LSE], P->s.mask ? &P->t[T_MASK] : NULL, &p,
                                    P->scratch, P->scratch_bytes, false, variant, stream);
}

struct bwd_err {
    double max_rel;  /* max |got - ref| / max |ref| over dq, dk, dv (each its own max) */
    double nmse;     /* the largest of the three normalized MSEs */
    bool   guard_ok;
    bool   nan;
};

/* bf16 elements [off, off + n) of device buffer d as f32 */
static float * fetch_bf16(const void * d, int64_t off, int64_t n) {
    uint16_t * bits = rk_xmalloc((size_t) n * sizeof(uint16_t));
    float *    x    = rk_xmalloc((size_t) n * sizeof(float));
    RK_CUDA_CHECK(cudaMemcpy(bits, (const uint16_t *) d + off, (size_t) n * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < n; i++) x[i] = rk_bf16_to_f32(bits[i]);
    free(bits);
    return x;
}

static void compare(struct bwd_err * e, const float * got, const float * ref, int64_t n) {
    double num = 0, den = 0, mx = 1e-3, err = 0; /* 1e-3: an all-zero reference gets an absolute bound */
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i])) e->nan = true;
        const double d = (double) got[i] - (double) ref[i];
        err = isnan(d) ? INFINITY : fmax(err, fabs(d));
        num += d * d;
        den += (double) ref[i] * ref[i];
        mx = fmax(mx, fabs((double) ref[i]));
    }
    e->max_rel = fmax(e->max_rel, err / mx);
    e->nmse    = fmax(e->nmse, den > 0 ? num / den : num);
}

/*
 * Checks dq, dk, dv of batch b0, query heads [0, nh) (kv heads [0, nh / group)) against rk_cpu_attn_bwd on the same
 * inputs and the GPU forward's o (bf16) and lse, after the forward and backward have run.
 */
static struct bwd_err problem_check(struct bwd_problem * P, int64_t b0, int64_t nh) {
    const struct bwd_shape * s = &P->s;
    const int64_t group = s->NH / s->NKV, nkv = (nh + group - 1) / group, T = s->T, HS = s->HS;
    const int64_t oq = b0 * s->NH * T * HS, okv = b0 * s->NKV * T * HS, nq = nh * T * HS, nk = nkv * T * HS;
    struct bwd_err e = { 0, 0, true, false };

    /* guards first: they cover the whole outputs */
    for (int i = T_DQ; i <= T_DV; i++) {
        const int64_t n   = rk_tensor_nelements(&P->t[i]);
        unsigned char * g = rk_xmalloc(GUARD_BYTES);
        RK_CUDA_CHECK(cudaMemcpy(g, (char *) P->dev[i] + n * 2, GUARD_BYTES, cudaMemcpyDeviceToHost));
        for (int j = 0; j < GUARD_BYTES; j++) e.guard_ok = e.guard_ok && g[j] == GUARD_BYTE;
        free(g);
    }
    float * o   = fetch_bf16(P->dev[T_O], oq, nq);
    float * lse = rk_xmalloc((size_t) (nh * T) * sizeof(float));
    RK_CUDA_CHECK(cudaMemcpy(lse, (float *) P->dev[T_LSE] + b0 * s->NH * T, (size_t) (nh * T) * sizeof(float),
                             cudaMemcpyDeviceToHost));
    float * rq = rk_xmalloc((size_t) nq * sizeof(float)), * rk = rk_xmalloc((size_t) nk * sizeof(float));
    float * rv = rk_xmalloc((size_t) nk * sizeof(float));
    const int64_t neq[4] = { 1, nh, T, HS }, nek[4] = { 1, nkv, T, HS }, nel[3] = { 1, nh, T }, nem[2] = { 1, T };
    struct rk_tensor tq = rk_tensor_host(P->q + oq, RK_DTYPE_F32, 4, neq), tk = rk_tensor_host(P->k + okv, RK_DTYPE_F32, 4, nek);
    struct rk_tensor tv = rk_tensor_host(P->v + okv, RK_DTYPE_F32, 4, nek), to = rk_tensor_host(o, RK_DTYPE_F32, 4, neq);
    struct rk_tensor tg = rk_tensor_host(P->dout + oq, RK_DTYPE_F32, 4, neq), tl = rk_tensor_host(lse, RK_DTYPE_F32, 3, nel);
    struct rk_tensor tdq = rk_tensor_host(rq, RK_DTYPE_F32, 4, neq), tdk = rk_tensor_host(rk, RK_DTYPE_F32, 4, nek);
    struct rk_tensor tdv = rk_tensor_host(rv, RK_DTYPE_F32, 4, nek);
    struct rk_tensor tm;
    if (s->mask) tm = rk_tensor_host(P->mask + b0 * T, RK_DTYPE_I32, 2, nem);
    const struct rk_attn_params p = problem_params(P);
    rk_cpu_attn_bwd(&tdq, &tdk, &tdv, &tq, &tk, &tv, &to, &tg, &tl, s->mask ? &tm : NULL, &p);

    float * gq = fetch_bf16(P->dev[T_DQ], oq, nq), * gk = fetch_bf16(P->dev[T_DK], okv, nk);
    float * gv = fetch_bf16(P->dev[T_DV], okv, nk);
    compare(&e, gq, rq, nq);
    compare(&e, gk, rk, nk);
    compare(&e, gv, rv, nk);
    free(o); free(lse); free(rq); free(rk); free(rv); free(gq); free(gk); free(gv);
    return e;
}

/* bf16 limits: P and dS reach the tensor cores as bf16, the outputs are bf16 */
static bool err_ok(const struct bwd_err * e) {
    return !e->nan && e->guard_ok && e->max_rel <= 2e-2 && e->nmse <= 5e-5;
}

/* Outputs to NaN (an unwritten row shows up) and the guards back to their pattern. */
static void problem_clear(struct bwd_problem * P) {
    for (int i = T_DQ; i <= T_DV; i++) {
        const size_t n = (size_t) rk_tensor_nelements(&P->t[i]) * 2;
        RK_CUDA_CHECK(cudaMemset(P->dev[i], 0xff, n));
        RK_CUDA_CHECK(cudaMemset((char *) P->dev[i] + n, GUARD_BYTE, GUARD_BYTES));
    }
}

enum { RUN_OK = 0, RUN_FAIL, RUN_SKIP };

/* Runs the forward and backward variant once and checks batch 0 (and batch B-1 of a small problem). RUN_SKIP when
 * the variant does not take the shape (message printed). */
static int problem_run_check(struct bwd_problem * P, int variant, cudaStream_t stream, struct bwd_err * e,
                             const char * tag) {
    problem_clear(P);
    enum rk_status st = run_fwd(P, stream);
    if (st == RK_OK) st = run_bwd(P, variant, stream);
    if (st != RK_OK) {
        printf("%s %s: %s\n", tag, rk_status_name(st), rk_last_error());
        return st == RK_STATUS_UNSUPPORTED ? RUN_SKIP : RUN_FAIL;
    }
    RK_CUDA_CHECK(cudaStreamSynchronize(stream));
    const bool big = P->s.T * P->s.T * P->s.HS > 64ll * 1024 * 1024;
    *e             = problem_check(P, 0, big ? 2 : P->s.NH);
    if (!big && P->s.B > 1) {
        const struct bwd_err e2 = problem_check(P, P->s.B - 1, P->s.NH);
        e->max_rel              = fmax(e->max_rel, e2.max_rel);
        e->nmse                 = fmax(e->nmse, e2.nmse);
        e->nan                  = e->nan || e2.nan;
    }
    return err_ok(e) ? RUN_OK : RUN_FAIL;
}

/* Checks variant on the small shapes; prints one line per shape. False when any check failed (a shape the variant
 * does not take is skipped). */
static bool check_variant(int variant, cudaStream_t stream) {
    bool all = true;
    for (size_t i = 0; i < sizeof(check_shapes) / sizeof(check_shapes[0]); i++) {
        struct bwd_problem P;
        problem_init(&P, &check_shapes[i]);
        char tag[160];
        snprintf(tag, sizeof(tag), "check %-14s B%lld NH%lld/%lld T%lld HS%lld%s variant=%d(%s)", P.s.name,
                 (long long) P.s.B, (long long) P.s.NH, (long long) P.s.NKV, (long long) P.s.T, (long long) P.s.HS,
                 P.s.causal ? " causal" : "", variant, rk_cuda_attn_bwd_variant_name(variant));
        struct bwd_err e  = { 0, 0, true, false };
        const int      rc = problem_run_check(&P, variant, stream, &e, tag);
        if (rc != RUN_SKIP) {
            printf("%s max_rel=%.3g nmse=%.3g%s%s %s\n", tag, e.max_rel, e.nmse,
                   e.guard_ok ? "" : " GUARD-OVERWRITTEN", e.nan ? " NaN" : "", rc == RUN_OK ? "ok" : "FAILED");
        }
        all = all && rc != RUN_FAIL;
        problem_free(&P);
    }
    return all;
}

static double median(double * x, int n) {
    qsort(x, (size_t) n, sizeof(double), rk_bench_cmp_double);
    return x[n / 2];
}

/* Checks every variant in [v_lo, v_hi] on the small shapes, then (unless check_only) checks and times the timed
 * shapes (only: just that one). Returns the exit status: 1 when a check failed. */
static int run_bench(const char * only, int v_lo, int v_hi, int reps, bool check_only) {
    cudaStream_t stream;
    RK_CUDA_CHECK(cudaStreamCreate(&stream));
    int  fails = 0;
    bool ok_variant[RK_ATTN_BWD_N_VARIANTS];
    for (int variant = v_lo; variant <= v_hi; variant++) {
        ok_variant[variant] = check_variant(variant, stream);
        fails += !ok_variant[variant];
    }
    if (check_only) {
        RK_CUDA_CHECK(cudaStreamDestroy(stream));
        printf("check: %d variant(s) failed\n", fails);
        return fails ? 1 : 0;
    }
    const size_t flush_bytes = (size_t) 256 << 20;
    void *       flush;
    RK_CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
    cudaEvent_t ev[3];
    for (int i = 0; i < 3; i++) RK_CUDA_CHECK(cudaEventCreate(&ev[i]));
    double * tf = rk_xmalloc((size_t) reps * sizeof(double)), * tb = rk_xmalloc((size_t) reps * sizeof(double));
    double * tt = rk_xmalloc((size_t) reps * sizeof(double));
    for (size_t si = 0; si < sizeof(bench_shapes) / sizeof(bench_shapes[0]); si++) {
        const struct bwd_shape * s = &bench_shapes[si];
        if (only && strcmp(only, s->name) != 0) continue;
        struct bwd_problem P;
        problem_init(&P, s);
        for (int variant = v_lo; variant <= v_hi; variant++) {
            char tag[96];
            snprintf(tag, sizeof(tag), "attn_bwd %s variant=%d(%s)", s->name, variant,
                     rk_cuda_attn_bwd_variant_name(variant));
            if (!ok_variant[variant]) {
                printf("%s not timed: failed the checks above\n", tag);
                continue;
            }
            struct bwd_err e  = { 0, 0, true, false };
            const int      rc = problem_run_check(&P, variant, stream, &e, tag);
            if (rc == RUN_SKIP) continue;
            if (rc == RUN_FAIL) {
                printf("%s FAILED check: max_rel=%.3g nmse=%.3g%s%s (not timed)\n", tag, e.max_rel, e.nmse,
                       e.guard_ok ? "" : " GUARD-OVERWRITTEN", e.nan ? " NaN" : "");
                fails++;
                continue;
            }
            for (int w = 0; w < 5; w++) RK_ASSERT(run_fwd(&P, stream) == RK_OK && run_bwd(&P, variant, stream) == RK_OK);
            for (int r = 0; r < reps; r++) {
                RK_CUDA_CHECK(cudaMemsetAsync(flush, r & 0xff, flush_bytes, stream)); /* evict the inputs from L2 */
                RK_CUDA_CHECK(cudaEventRecord(ev[0], stream));
                RK_ASSERT(run_fwd(&P, stream) == RK_OK);
                RK_CUDA_CHECK(cudaEventRecord(ev[1], stream));
                RK_ASSERT(run_bwd(&P, variant, stream) == RK_OK);
                RK_CUDA_CHECK(cudaEventRecord(ev[2], stream));
                RK_CUDA_CHECK(cudaEventSynchronize(ev[2]));
                float a, b;
                RK_CUDA_CHECK(cudaEventElapsedTime(&a, ev[0], ev[1]));
                RK_CUDA_CHECK(cudaEventElapsedTime(&b, ev[1], ev[2]));
                tf[r] = a;
                tb[r] = b;
                tt[r] = (double) a + b;
            }
            const double ms_f = median(tf, reps), ms_b = median(tb, reps), ms_t = median(tt, reps);
            /* forward flops 4 B NH T^2 HS (two matmuls, 2 flops per multiply-add), halved under a causal mask; the
               backward counts 2.5 times that (five matmuls), forward + backward 3.5 times (the FlashAttention-2
               convention: the recomputation of S in the backward is not counted) */
            const double f_fwd = 4.0 * (double) s->B * s->NH * s->T * s->T * s->HS * (s->causal ? 0.5 : 1.0);
            printf("%s fwd_ms=%.4f bwd_ms=%.4f fwdbwd_ms=%.4f tflops=%.1f bwd_tflops=%.1f max_rel=%.3g nmse=%.3g\n", tag,
                   ms_f, ms_b, ms_t, 3.5 * f_fwd / (ms_t * 1e-3) / 1e12, 2.5 * f_fwd / (ms_b * 1e-3) / 1e12, e.max_rel,
                   e.nmse);
            if (variant == 0) { /* the keys .ci/device_check.sh joins with bench/peers/attn_bwd_sdpa.py's flash lines */
                printf("RESULT attn_fwdbwd_%s_B%lld_T%lld_H%lld_D%lld %.4f ms\n", s->name, (long long) s->B,
                       (long long) s->T, (long long) s->NH, (long long) s->HS, ms_t);
                printf("RESULT attn_bwd_%s_B%lld_T%lld_H%lld_D%lld %.4f ms\n", s->name, (long long) s->B,
                       (long long) s->T, (long long) s->NH, (long long) s->HS, ms_b);
            }
            fflush(stdout);
        }
        problem_free(&P);
    }
    free(tf);
    free(tb);
    free(tt);
    for (int i = 0; i < 3; i++) RK_CUDA_CHECK(cudaEventDestroy(ev[i]));
    RK_CUDA_FREE(flush);
    RK_CUDA_CHECK(cudaStreamDestroy(stream));
    return fails ? 1 : 0;
}

int main(int argc, char ** argv) {
    struct rk_bench_args args;
    if (!rk_bench_parse_args(argc, argv, RK_ATTN_BWD_N_VARIANTS, &args)) return 2;
    if (args.seed) rng_state = args.seed;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: nothing to do\n");
        return 0;
    }
    rk_bench_print_device("");
    printf("seed=0x%llx\n", (unsigned long long) rng_state);
    return run_bench(args.shape, args.v_lo, args.v_hi, args.reps, args.check);
}
#endif
