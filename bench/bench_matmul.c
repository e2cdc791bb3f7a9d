/*
 * bench_matmul.c: RK_OP_MATMUL on the CUDA backend (cuBLASLt, kernels/matmul.cu) in bf16.
 *
 *   build/bench/bench_matmul [--reps N]
 *
 * The shapes with GELU are timed with the default path (key without suffix) and then with every matmul + GELU
 * variant (kernels/matmul_gelu.cu header: 1 cuBLASLt + GELU pass, 2 to 4 and 6 the fused wgmma kernels, sm_90 only,
 * 5 the fused mma.sync kernel, sm_80 and newer),
 * keys "<key>@vN", each checked against the CPU first; a fused variant the device cannot run is reported, not timed.
 *
 * First checks the CUDA op against the CPU reference (rk_cpu_matmul) on a small awkward case with bias and GELU;
 * a failing check exits 1 and nothing is timed. Then, per shape: uploads random bf16 data, checks the first rows of
 * the product against the CPU, and times the op with CUDA events on the backend's stream (3 warm-ups, median of N
 * repetitions, L2 flushed before each by writing a buffer twice the L2 size). Prints one line per shape and a
 * machine-readable line `RESULT <key> <TFLOP/s> TFLOP/s` that .ci/device_check.sh joins with the peer
 * (bench/peers/gemm_torch.py prints the same keys, timing torch.nn.functional.linear the same way).
 * Without CUDA in the build, or without a device, it prints one line and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "kernels/matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RK_HAVE_CUDA
int main(void) {
    printf("bench_matmul: this build has no CUDA backend; nothing to time\n");
    return 0;
}
#else

#include "cuda_check.h"
#include "kernels/cuda_ops.h"

struct shape {
    const char * what;
    int64_t      M, N, K;
    bool         bias;
    enum rk_act  act;
};

static const struct shape shapes[] = {
    { "llama7b_up_4ktok", 4096, 11008, 4096, false, RK_ACT_NONE },
    { "bert_large_proj_16ktok", 16384, 1024, 1024, false, RK_ACT_NONE },
    { "bert_base_qkv_B64_T256", 16384, 2304, 768, true, RK_ACT_NONE },
    { "bert_base_attn_out_B64_T256", 16384, 768, 768, true, RK_ACT_NONE },
    { "bert_base_ffn_up_gelu_B64_T256", 16384, 3072, 768, true, RK_ACT_GELU },
    { "bert_base_ffn_down_B64_T256", 16384, 768, 3072, true, RK_ACT_NONE },
    { "bert_large_ffn_up_gelu_B32_T512", 16384, 4096, 1024, true, RK_ACT_GELU },
};

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float    urand(void) { return rk_bench_urand(&rng_state); }

/* n values uniform in [-scale, scale), rounded to bf16 (what the device holds). */
static float * rand_bf16(int64_t n, float scale) {
    float * v = rk_xmalloc((size_t) n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = rk_bf16_to_f32(rk_f32_to_bf16(urand() * scale));
    return v;
}


/* rk_bench_fn: one rk_op on the backend (asserted to succeed) */
struct op_run {
    struct rk_backend *       be;
    const struct rk_op_call * call;
};
static void run_op(void * ud) {
    const struct op_run * r = ud;
    RK_ASSERT(rk_op(r->be, r->call) == RK_OK);
}

/*
 * Runs dst = x w^T (+ b) (act) for M x N x K on the device, then checks the first `check_rows` rows against the
 * CPU reference. Returns false on a failed check (message printed).
 */
static bool run_and_check(struct rk_backend * be, const struct shape * s, int64_t check_rows, struct rk_tensor ** out_x,
                          struct rk_tensor ** out_w, struct rk_tensor ** out_b, struct rk_tensor ** out_d) {
    const int64_t M = s->M, N = s->N, K = s->K;
    float *       x = rand_bf16(M * K, 1.0f);
    float *       w = rand_bf16(N * K, 1.0f / sqrtf((float) K) * 1.7f); /* outputs of order 1 */
    float *       b = rand_bf16(N, 1.0f);
    struct rk_tensor * tx = rk_tensor_new(be, RK_DTYPE_BF16, 2, (int64_t[]) { M, K }, "x");
    struct rk_tensor * tw = rk_tensor_new(be, RK_DTYPE_BF16, 2, (int64_t[]) { N, K }, "w");
    struct rk_tensor * tb = rk_tensor_new(be, RK_DTYPE_BF16, 1, (int64_t[]) { N }, "b");
    struct rk_tensor * td = rk_tensor_new(be, RK_DTYPE_BF16, 2, (int64_t[]) { M, N }, "dst");
    if (!tx || !tw || !tb || !td) {
        fprintf(stderr, "bench_matmul: %s\n", rk_last_error());
        exit(1);
    }
    RK_ASSERT(rk_tensor_set_f32(tx, x) == RK_OK && rk_tensor_set_f32(tw, w) == RK_OK && rk_tensor_set_f32(tb, b) == RK_OK);
    struct rk_op_call call = { .op = RK_OP_MATMUL, .dst = td, .src = { tx, tw, s->bias ? tb : NULL } };
    call.p.matmul.act      = s->act;
    enum rk_status st      = rk_op(be, &call);
    if (st != RK_OK) {
        printf("%-32s FAILED to run: %s: %s\n", s->what, rk_status_name(st), rk_last_error());
        exit(1);
    }
    /* CPU reference on the first rows */
    const int64_t    R   = check_rows < M ? check_rows : M;
    float *          ref = rk_xmalloc((size_t) (R * N) * sizeof(float));
    float *          got = rk_xmalloc((size_t) (M * N) * sizeof(float));
    struct rk_tensor hx  = rk_tensor_host(x, RK_DTYPE_F32, 2, (int64_t[]) { R, K });
    struct rk_tensor hw  = rk_tensor_host(w, RK_DTYPE_F32, 2, (int64_t[]) { N, K });
    struct rk_tensor hb  = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { N });
    struct rk_tensor hd  = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { R, N });
    rk_cpu_matmul(&hd, &hx, &hw, s->bias ? &hb : NULL, &call.p.matmul);
    RK_ASSERT(rk_tensor_get_f32(td, got) == RK_OK);
    double worst, nmse;
    rk_bench_compare(got, ref, R * N, 1e-2, 2e-2, &worst, &nmse);
    const bool ok = worst <= 1.0 && nmse <= 1e-4;
    printf("check %-32s M=%lld N=%lld K=%lld bias=%d gelu=%d rows=%lld: nmse=%.3g worst=%.3g of tolerance %s\n", s->what,
           (long long) M, (long long) N, (long long) K, s->bias, s->act == RK_ACT_GELU, (long long) R, nmse, worst,
           ok ? "ok" : "FAILED (not timed)");
    free(x);
    free(w);
    free(b);
    free(ref);
    free(got);
    *out_x = tx;
    *out_w = tw;
    *out_b = tb;
    *out_d = td;
    return ok;
}

int main(int argc, char ** argv) {
    int reps = 30;
    if (!rk_bench_parse_reps(argc, argv, &reps)) return 2;
    struct rk_backend * be = rk_bench_cuda_backend("bench_matmul", true);
    if (!be) return 0;

    /* 1. the small awkward check: nothing a multiple of 8, bias and GELU */
    {
        const struct shape small = { "check_small", 77, 385, 129, true, RK_ACT_GELU };
        struct rk_tensor * t[4];
        const bool ok = run_and_check(be, &small, 77, &t[0], &t[1], &t[2], &t[3]);
        for (int i = 0; i < 4; i++) rk_tensor_free(t[i]);
        if (!ok) {
            rk_backend_free(be);
            return 1;
        }
    }

    /* 2. timed shapes */
    struct rk_bench_timer tm;
    rk_bench_timer_init(&tm, be, reps);
    int     failed = 0;
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const struct shape * s = &shapes[si];
        /* GELU shapes: the default, then every matmul + GELU variant (kernels/matmul_gelu.cu), keys "@vN" */
        const int nv = s->act == RK_ACT_GELU ? RK_MATMUL_GELU_N_VARIANTS : 1;
        for (int v = 0; v < nv; v++) {
            RK_ASSERT(rk_cuda_matmul_gelu_set_variant(v) == RK_OK);
            struct rk_tensor * tx, *tw, *tb, *td;
            const uint64_t     fused0 = rk_cuda_matmul_gelu_fused_calls();
            if (!run_and_check(be, s, 16, &tx, &tw, &tb, &td)) {
                failed++;
            } else if (v >= 2 && rk_cuda_matmul_gelu_fused_calls() == fused0) {
                printf("matmul %-32s variant %s: not taken on this device (falls back to variant 1)\n", s->what,
                       rk_cuda_matmul_gelu_variant_name(v));
            } else {
                struct rk_op_call call = { .op = RK_OP_MATMUL, .dst = td, .src = { tx, tw, s->bias ? tb : NULL } };
                call.p.matmul.act      = s->act;
                struct op_run run = { be, &call };
                const double  med = rk_bench_time_ms(&tm, run_op, &run);
                /* FLOPs: 2 M N K multiply-adds; the bias and GELU epilogue are not counted */
                const double tflops = 2.0 * (double) s->M * (double) s->N * (double) s->K / (med * 1e-3) / 1e12;
                char key[160];
                snprintf(key, sizeof(key), "gemm_bf16_M%lld_N%lld_K%lld%s%s", (long long) s->M, (long long) s->N,
                         (long long) s->K, s->bias ? "_bias" : "", s->act == RK_ACT_GELU ? "_gelu" : "");
                if (v > 0) snprintf(key + strlen(key), sizeof(key) - strlen(key), "@v%d", v);
                printf("matmul %-32s %-40s median_ms=%.4f (min %.4f) %.1f TFLOP/s%s%s\n", s->what, key, med,
                       (double) tm.ms[0], tflops, v > 0 ? " " : "", v > 0 ? rk_cuda_matmul_gelu_variant_name(v) : "");
                printf("RESULT %s %.1f TFLOP/s\n", key, tflops);
            }
            rk_tensor_free(tx);
            rk_tensor_free(tw);
            rk_tensor_free(tb);
            rk_tensor_free(td);
        }
    }
    RK_ASSERT(rk_cuda_matmul_gelu_set_variant(0) == RK_OK);
    rk_bench_timer_free(&tm);
    rk_backend_free(be);
    return failed ? 1 : 0;
}
#endif
