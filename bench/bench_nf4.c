/*
 * bench_nf4.c: RK_OP_NF4_MATMUL on the CUDA backend (quant/nf4.cu) against cuBLAS bf16 on the same shapes.
 *
 *   build/bench/bench_nf4 [--reps N]
 *
 * 1. Checks first: the CUDA op (and each GEMV variant, rk_cuda_nf4_gemv_ex) against the CPU op (rk_cpu_nf4_matmul)
 *    on small awkward shapes with bias and GELU, on the same bf16-rounded inputs. A failure exits 1; nothing is timed.
 * 2. Measures the device-to-device copy bandwidth (cudaMemcpyAsync of 512 MiB; bytes read + written per second),
 *    the yardstick of the percentages below.
 * 3. Per Llama-7B / Mistral-7B linear shape (N, K) in (4096, 4096), (14336, 4096), (4096, 14336), on random 4-bit
 *    weights (random packed bytes, absmax in [0.02, 0.06]: the timing does not depend on the values):
 *      - dequantization alone to bf16 (rk_cuda_nf4_dequantize), GB/s and % of the copy bandwidth;
 *      - for M in 1, 8, 2048, 4096 tokens: our op vs rk_cuda_matmul (cuBLASLt) on a bf16 copy of the dequantized
 *        weight (bias NULL, no activation), and their ratio; the two outputs are compared on the first rows;
 *      - for M <= 8: the bandwidth on the weight bytes (packed + fp32 absmax) of the op and of each GEMV variant.
 * Timing: CUDA events on the backend's stream, 3 warm-ups, median of N repetitions (default 20), the L2 flushed
 * before each one by writing a buffer twice its size. Prints `RESULT <key> <value> <unit>` lines that
 * .ci/device_check.sh joins with bench/peers/nf4_bnb.py (bitsandbytes matmul_4bit / dequantize_4bit and torch bf16
 * matmul on the same shapes, same keys). Without CUDA in the build, without a device, or without bf16 GEMMs
 * (before sm_80) it prints one line and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "quant/nf4.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RK_HAVE_CUDA
int main(void) {
    printf("bench_nf4: this build has no CUDA backend; nothing to time\n");
    return 0;
}
#else

#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "quant/nf4_cuda.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* ------------------------------------------------------------------------------------------------------------
 * 1. the check against the CPU op */

/* the bf16 tolerance of bench_matmul: |got - ref| <= 1e-2 + 2e-2 |ref| everywhere, normalized MSE <= 1e-4 */
static bool close_bf16(const float * got, const float * ref, int64_t n, double * worst, double * nmse) {
    rk_bench_compare(got, ref, n, 1e-2, 2e-2, worst, nmse);
    return *worst <= 1.0 && *nmse <= 1e-4;
}

/* One small case: variant -1 = rk_op (the op as the backend runs it), 1 / 2 = that GEMV kernel. */
static bool check_case(struct rk_backend * be, struct rk_backend * cpu, int64_t M, int64_t N, int64_t K, int variant) {
    float * w = rk_xmalloc((size_t) (N * K) * sizeof(float)), * x = rk_xmalloc((size_t) (M * K) * sizeof(float));
    float * b = rk_xmalloc((size_t) N * sizeof(float)), * ref = rk_xmalloc((size_t) (M * N) * sizeof(float));
    float * got = rk_xmalloc((size_t) (M * N) * sizeof(float));
    for (int64_t i = 0; i < N * K; i++) w[i] = rk_bench_urand(&rng_state) * 1.7f / sqrtf((float) K);
    for (int64_t i = 0; i < M * K; i++) x[i] = rk_bf16_to_f32(rk_f32_to_bf16(rk_bench_urand(&rng_state)));
    for (int64_t i = 0; i < N; i++) b[i] = rk_bf16_to_f32(rk_f32_to_bf16(rk_bench_urand(&rng_state)));
    struct rk_nf4_tensor t;
    RK_ASSERT(rk_cpu_nf4_quantize(w, N, K, 64, RK_QUANT4_NF4, true, &t) == RK_OK);
    struct rk_quant4_weight wc, wg;
    RK_ASSERT(rk_nf4_weight_upload(cpu, &t, &wc) == RK_OK && rk_nf4_weight_upload(be, &t, &wg) == RK_OK);

    struct rk_tensor  hx = rk_tensor_host(x, RK_DTYPE_F32, 2, (int64_t[]) { M, K });
    struct rk_tensor  hb = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { N });
    struct rk_tensor  hd = rk_tensor_host(ref, RK_DTYPE_F32, 2, (int64_t[]) { M, N });
    struct rk_op_call call = { .op = RK_OP_NF4_MATMUL, .dst = &hd, .src = { &hx, &hb } };
    call.p.nf4_matmul      = (struct rk_nf4_matmul_params) { .w = &wc, .act = RK_ACT_GELU };
    RK_ASSERT(rk_op(cpu, &call) == RK_OK);

    struct rk_tensor * tx = rk_tensor_new(be, RK_DTYPE_BF16, 2, (int64_t[]) { M, K }, "x");
    struct rk_tensor * tb = rk_tensor_new(be, RK_DTYPE_BF16, 1, (int64_t[]) { N }, "b");
    struct rk_tensor * td = rk_tensor_new(be, RK_DTYPE_BF16, 2, (int64_t[]) { M, N }, "dst");
    const size_t       scratch_bytes = (size_t) (N * K) * 2;
    void *             scratch       = be->alloc(be, scratch_bytes);
    RK_ASSERT(tx && tb && td && scratch);
    RK_ASSERT(rk_tensor_set_f32(tx, x) == RK_OK && rk_tensor_set_f32(tb, b) == RK_OK);
    struct rk_nf4_matmul_params p = { .w = &wg, .act = RK_ACT_GELU, .scratch = scratch, .scratch_bytes = scratch_bytes };
    enum rk_status              st;
    if (variant < 0) {
        struct rk_op_call c = { .op = RK_OP_NF4_MATMUL, .dst = td, .src = { tx, tb } };
        c.p.nf4_matmul      = p;
        st                  = rk_op(be, &c);
    } else {
        st = rk_cuda_nf4_gemv_ex(variant, td, tx, tb, &p, rk_backend_cuda_stream(be));
    }
    bool ok = true;
    if (st == RK_STATUS_UNSUPPORTED) {
        printf("check NF4_MATMUL M=%lld N=%lld K=%lld variant=%d: does not apply (%s)\n", (long long) M, (long long) N,
               (long long) K, variant, rk_last_error());
    } else {
        RK_ASSERT(st == RK_OK && rk_tensor_get_f32(td, got) == RK_OK);
        double worst, nmse;
        ok = close_bf16(got, ref, M * N, &worst, &nmse);
        printf("check NF4_MATMUL M=%lld N=%lld K=%lld bias=1 gelu=1 variant=%d: nmse=%.3g worst=%.3g of tolerance %s\n",
               (long long) M, (long long) N, (long long) K, variant, nmse, worst, ok ? "ok" : "FAILED");
    }
    be->free(be, scratch);
    rk_tensor_free(tx);
    rk_tensor_free(tb);
    rk_tensor_free(td);
    rk_nf4_weight_free(cpu, &wc);
    rk_nf4_weight_free(be, &wg);
    rk_nf4_tensor_free(&t);
    free(w), free(x), free(b), free(ref), free(got);
    return ok;
}

/* ------------------------------------------------------------------------------------------------------------
 * 2-3. timing */

enum job_kind { JOB_COPY, JOB_DEQUANT, JOB_NF4, JOB_GEMV, JOB_GEMM };

/* One timed call; the fields each kind uses are named after it. */
struct job {
    enum job_kind               kind;
    struct rk_backend *         be;
    struct rk_cuda_blas *       blas;        /* GEMM */
    const void *                src;         /* COPY */
    void *                      dst;         /* COPY, DEQUANT */
    size_t                      bytes;       /* COPY */
    struct rk_tensor *          x, * y, * w; /* NF4, GEMV, GEMM (w: GEMM) */
    struct rk_nf4_matmul_params p;           /* NF4, GEMV, DEQUANT (p.w) */
    int                         variant;     /* GEMV */
};

/* rk_bench_fn: enqueues one job on the backend's stream */
static void run_job(void * ud) {
    const struct job * j  = ud;
    cudaStream_t       st = rk_backend_cuda_stream(j->be);
    switch (j->kind) {
        case JOB_COPY: RK_CUDA_CHECK(cudaMemcpyAsync(j->dst, j->src, j->bytes, cudaMemcpyDeviceToDevice, st)); break;
        case JOB_DEQUANT:
            RK_ASSERT(rk_cuda_nf4_dequantize((enum rk_quant4_kind) j->p.w->kind, j->p.w->packed, j->p.w->absmax,
                                             j->p.w->n_rows * j->p.w->n_cols, j->p.w->blocksize, j->dst,
                                             RK_DTYPE_BF16, st) == RK_OK);
            break;
        case JOB_NF4: {
            struct rk_op_call c = { .op = RK_OP_NF4_MATMUL, .dst = j->y, .src = { j->x } };
            c.p.nf4_matmul      = j->p;
            RK_ASSERT(rk_op(j->be, &c) == RK_OK);
        } break;
        case JOB_GEMV: RK_ASSERT(rk_cuda_nf4_gemv_ex(j->variant, j->y, j->x, NULL, &j->p, st) == RK_OK); break;
        case JOB_GEMM: {
            struct rk_matmul_params mp = { .act = RK_ACT_NONE };
            RK_ASSERT(rk_cuda_matmul(j->blas, j->y, j->x, j->w, NULL, &mp, st) == RK_OK);
        } break;
    }
}

/* A (rows, cols) bf16 view of device memory at p. */
static struct rk_tensor dev_view(struct rk_backend * be, void * p, int64_t rows, int64_t cols, const char * name) {
    struct rk_tensor t;
    rk_tensor_init(&t, RK_DTYPE_BF16, 2, (int64_t[]) { rows, cols }, name);
    t.data    = p;
    t.backend = be;
    return t;
}

/* Copies the first `rows` rows of two (M, N) bf16 device tensors back and compares them (ours vs cuBLAS). */
static bool same_product(struct rk_backend * be, const struct rk_tensor * a, const struct rk_tensor * b, int64_t rows,
                         int64_t N, double * nmse_out) {
    uint16_t * ha = rk_xmalloc((size_t) (rows * N) * 2), * hb = rk_xmalloc((size_t) (rows * N) * 2);
    float *    fa = rk_xmalloc((size_t) (rows * N) * sizeof(float)), * fb = rk_xmalloc((size_t) (rows * N) * sizeof(float));
    RK_ASSERT(be->copy_to_host(be, ha, a->data, (size_t) (rows * N) * 2) == RK_OK);
    RK_ASSERT(be->copy_to_host(be, hb, b->data, (size_t) (rows * N) * 2) == RK_OK);
    for (int64_t i = 0; i < rows * N; i++) fa[i] = rk_bf16_to_f32(ha[i]), fb[i] = rk_bf16_to_f32(hb[i]);
    double     worst;
    const bool ok = close_bf16(fa, fb, rows * N, &worst, nmse_out);
    free(ha), free(hb), free(fa), free(fb);
    return ok;
}

struct shape {
    int64_t N, K;
};

static const struct shape shapes[] = { { 4096, 4096 }, { 14336, 4096 }, { 4096, 14336 } };
static const int64_t      Ms[]     = { 1, 8, 2048, 4096 };
#define MAX_M 4096
#define MAX_K 14336
#define MAX_NK ((int64_t) 14336 * 4096)

int main(int argc, char ** argv) {
    int reps = 20;
    if (!rk_bench_parse_reps(argc, argv, &reps)) return 2;
    struct rk_backend * be = rk_bench_cuda_backend("bench_nf4", true);
    if (!be) return 0;

    /* 1. checks: the GEMV kernels (K % 32 == 0 and not; a partial 128-column span) and the dequant + GEMM path */
    struct rk_backend * cpu = rk_backend_cpu_init(0);
    static const int64_t checks[][3] = { { 1, 97, 320 }, { 5, 130, 200 }, { 8, 64, 1056 }, { 77, 97, 320 } };
    bool                 ok          = true;
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        ok = check_case(be, cpu, checks[i][0], checks[i][1], checks[i][2], -1) && ok;
        for (int v = 1; v <= 2 && checks[i][0] <= RK_NF4_GEMV_MAX_B; v++) {
            ok = check_case(be, cpu, checks[i][0], checks[i][1], checks[i][2], v) && ok;
        }
    }
    rk_backend_free(cpu);
    if (!ok) {
        printf("bench_nf4: a check FAILED; nothing timed\n");
        rk_backend_free(be);
        return 1;
    }

    /* device buffers, sized for the largest shape */
    struct rk_bench_timer tm;
    rk_bench_timer_init(&tm, be, reps);
    const size_t copy_bytes = (size_t) 512 << 20;
    void *       copy_a = be->alloc(be, copy_bytes), * copy_b = be->alloc(be, copy_bytes);
    uint8_t *    packed  = be->alloc(be, (size_t) MAX_NK / 2);
    float *      absmax  = be->alloc(be, (size_t) MAX_NK / 64 * sizeof(float));
    void *       w_bf16  = be->alloc(be, (size_t) MAX_NK * 2);
    void *       scratch = be->alloc(be, (size_t) MAX_NK * 2);
    void *       x_buf   = be->alloc(be, (size_t) MAX_M * MAX_K * 2);
    void *       y_ours  = be->alloc(be, (size_t) MAX_M * MAX_K * 2);
    void *       y_ref   = be->alloc(be, (size_t) MAX_M * MAX_K * 2);
    RK_ASSERT(copy_a && copy_b && packed && absmax && w_bf16 && scratch && x_buf && y_ours && y_ref);
    {
        /* random packed bytes, absmax in [0.02, 0.06], x uniform in [-1, 1) in bf16 */
        uint8_t * hp = rk_xmalloc((size_t) MAX_NK / 2);
        uint64_t r = rng_state;
        for (int64_t i = 0; i < MAX_NK / 2; i += 8) { /* xorshift64: every bit random */
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            memcpy(hp + i, &r, 8);
        }
        RK_ASSERT(be->copy_to_device(be, packed, hp, (size_t) MAX_NK / 2) == RK_OK);
        free(hp);
        float * ha = rk_xmalloc((size_t) MAX_NK / 64 * sizeof(float));
        for (int64_t i = 0; i < MAX_NK / 64; i++) ha[i] = 0.04f + 0.02f * rk_bench_urand(&rng_state);
        RK_ASSERT(be->copy_to_device(be, absmax, ha, (size_t) MAX_NK / 64 * sizeof(float)) == RK_OK);
        free(ha);
        uint16_t * hx = rk_xmalloc((size_t) MAX_M * MAX_K * 2);
        for (int64_t i = 0; i < (int64_t) MAX_M * MAX_K; i++) hx[i] = rk_f32_to_bf16(rk_bench_urand(&rng_state));
        RK_ASSERT(be->copy_to_device(be, x_buf, hx, (size_t) MAX_M * MAX_K * 2) == RK_OK);
        free(hx);
        RK_CUDA_CHECK(cudaMemsetAsync(copy_a, 1, copy_bytes, tm.st));
    }

    /* 2. copy bandwidth: bytes read + written per second */
    struct job   copy     = { .kind = JOB_COPY, .be = be, .src = copy_a, .dst = copy_b, .bytes = copy_bytes };
    const double copy_gbs = 2.0 * (double) copy_bytes / (rk_bench_time_ms(&tm, run_job, &copy) * 1e-3) / 1e9;
    printf("copy d2d %zu MiB: %.1f GB/s (read + write)\n", copy_bytes >> 20, copy_gbs);
    printf("RESULT nf4_copy_d2d %.1f GB/s\n", copy_gbs);

    /* 3. per shape */
    struct rk_cuda_blas * blas   = rk_cuda_blas_init();
    int                   failed = 0;
    RK_ASSERT(blas != NULL);
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const int64_t           N = shapes[si].N, K = shapes[si].K;
        struct rk_quant4_weight w = { .kind = RK_QUANT4_NF4, .n_rows = N, .n_cols = K, .blocksize = 64,
                                      .packed = packed, .absmax = absmax };
        /* weight bytes a GEMV must read: the packed nibbles and the fp32 absmax */
        const double wbytes = (double) (N * K) / 2 + (double) (N * K) / 64 * 4;

        /* dequantization alone (also makes the bf16 weight cuBLAS multiplies): bytes read + written */
        struct job dq = { .kind = JOB_DEQUANT, .be = be, .dst = w_bf16, .p = { .w = &w } };
        const double dq_ms  = rk_bench_time_ms(&tm, run_job, &dq);
        const double dq_gbs = (wbytes + (double) (N * K) * 2) / (dq_ms * 1e-3) / 1e9;
        printf("dequant N=%lld K=%lld -> bf16: %.4f ms, %.1f GB/s = %.1f%% of copy\n", (long long) N, (long long) K,
               dq_ms, dq_gbs, 100.0 * dq_gbs / copy_gbs);
        printf("RESULT nf4_dequant_bf16_N%lld_K%lld %.1f GB/s\n", (long long) N, (long long) K, dq_gbs);
        printf("RESULT nf4_dequant_bf16_pct_copy_N%lld_K%lld %.1f %%\n", (long long) N, (long long) K,
               100.0 * dq_gbs / copy_gbs);
        struct rk_tensor wt = dev_view(be, w_bf16, N, K, "w_bf16");

        for (size_t mi = 0; mi < sizeof(Ms) / sizeof(Ms[0]); mi++) {
            const int64_t    M  = Ms[mi];
            struct rk_tensor tx = dev_view(be, x_buf, M, K, "x");
            struct rk_tensor yo = dev_view(be, y_ours, M, N, "y_ours"), yr = dev_view(be, y_ref, M, N, "y_ref");
            struct job       op = { .kind = JOB_NF4, .be = be, .x = &tx, .y = &yo,
                                    .p = { .w = &w, .scratch = scratch, .scratch_bytes = (size_t) MAX_NK * 2 } };
            struct job       gm = { .kind = JOB_GEMM, .be = be, .blas = blas, .x = &tx, .y = &yr, .w = &wt };
            const double     ours_ms = rk_bench_time_ms(&tm, run_job, &op), ref_ms = rk_bench_time_ms(&tm, run_job, &gm);
            double           nmse;
            const bool       same = same_product(be, &yo, &yr, M < 16 ? M : 16, N, &nmse);
            if (!same) failed++;
            /* FLOPs: 2 M N K; the dequantization is not counted */
            const double flop = 2.0 * (double) M * (double) N * (double) K;
            printf("M=%-5lld N=%-5lld K=%-5lld nf4 %.4f ms (%.1f TFLOP/s)  cuBLAS bf16 %.4f ms (%.1f TFLOP/s)  "
                   "speedup %.2fx  agree: nmse %.2g %s\n",
                   (long long) M, (long long) N, (long long) K, ours_ms, flop / (ours_ms * 1e9), ref_ms,
                   flop / (ref_ms * 1e9), ref_ms / ours_ms, nmse, same ? "ok" : "DIFFER");
            printf("RESULT nf4_matmul_bf16_M%lld_N%lld_K%lld %.4f ms\n", (long long) M, (long long) N, (long long) K,
                   ours_ms);
            printf("RESULT nf4_ref_gemm_bf16_M%lld_N%lld_K%lld %.4f ms\n", (long long) M, (long long) N, (long long) K,
                   ref_ms);
            printf("RESULT nf4_speedup_vs_bf16_M%lld_N%lld_K%lld %.2f x\n", (long long) M, (long long) N,
                   (long long) K, ref_ms / ours_ms);
            if (M > RK_NF4_GEMV_MAX_B) continue;
            /* GEMV: bandwidth on the weight bytes (x and y are < 0.1% of them) */
            const double gbs = wbytes / (ours_ms * 1e-3) / 1e9;
            printf("  gemv (op) %.1f GB/s on the weights = %.1f%% of copy\n", gbs, 100.0 * gbs / copy_gbs);
            printf("RESULT nf4_gemv_weight_bw_M%lld_N%lld_K%lld %.1f GB/s\n", (long long) M, (long long) N,
                   (long long) K, gbs);
            printf("RESULT nf4_gemv_pct_copy_M%lld_N%lld_K%lld %.1f %%\n", (long long) M, (long long) N, (long long) K,
                   100.0 * gbs / copy_gbs);
            for (int v = 1; v <= 2; v++) {
                struct job gv = op;
                gv.kind       = JOB_GEMV;
                gv.variant    = v;
                const double v_ms = rk_bench_time_ms(&tm, run_job, &gv);
                printf("  gemv variant %d: %.4f ms, %.1f GB/s on the weights = %.1f%% of copy\n", v, v_ms,
                       wbytes / (v_ms * 1e-3) / 1e9, 100.0 * wbytes / (v_ms * 1e-3) / 1e9 / copy_gbs);
            }
        }
    }
    rk_cuda_blas_free(blas);
    void * bufs[] = { copy_a, copy_b, packed, absmax, w_bf16, scratch, x_buf, y_ours, y_ref };
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) be->free(be, bufs[i]);
    rk_bench_timer_free(&tm);
    rk_backend_free(be);
    if (failed) printf("bench_nf4: %d shape(s) where our product and cuBLAS's DIFFER\n", failed);
    return failed ? 1 : 0;
}
#endif
