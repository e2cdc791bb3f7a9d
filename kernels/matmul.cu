/*
 * matmul.cu: CUDA RK_OP_MATMUL: dst (M,N) = x (M,K) @ w (N,K)^T (+ bias) (+ dst with accumulate: beta = 1, C = D,
 * the residual of a post-LN block added in the GEMM's epilogue) (then GELU), through cuBLASLt with a plain cuBLAS
 * fallback. The CPU reference is kernels/matmul_cpu.c (OpenBLAS sgemm); parity cases MATMUL(...) in
 * tests/test_ops.c. Bench: build/bench/bench_matmul (peer: bench/peers/gemm_torch.py).
 * Also RK_OP_MATMUL_BWD (rk_cuda_matmul_bwd at the end; CPU reference kernels/matmul_bwd_cpu.c, parity cases
 * MATMUL_BWD(...) in tests/test_ops_bwd.c): dx and dw are two cublasGemmEx calls, db the kernel colsum_kernel_v1.
 *
 * Row-major through a column-major library (the transposed-problem trick): a row-major (R, C) matrix with row
 * stride ld is the column-major (C, R) matrix with leading dimension ld. So we ask cuBLAS for the column-major
 *     D^T (N, M) = W_cm^T (N, K) . X^T (K, M)
 * where W_cm is the column-major (K, N) view of the row-major weight (transa = T, lda = w's row stride), X^T is the
 * column-major (K, M) view of x (transb = N, ldb = x's row stride: strided rows cost nothing), and D^T is written
 * with ldc = dst's row stride. The bias (N) runs along D^T's rows, which is what CUBLASLT_EPILOGUE_BIAS adds.
 *
 * Numerics: f16/bf16 in, fp32 accumulation (CUBLAS_COMPUTE_32F), one rounding of the result; f32 in: fp32 compute
 * without TF32, so the f32 parity cases compare against OpenBLAS tightly.
 *
 * GELU: cuBLASLt's CUBLASLT_EPILOGUE_GELU(_BIAS) is the tanh approximation (PyTorch only routes
 * gelu(approximate="tanh") into it, and its non-Lt path applies gelu "tanh" to match). BERT uses the erf form,
 * which differs by up to ~5e-4 in absolute value, so we do NOT use that epilogue: the bias goes in the cuBLASLt
 * epilogue and the erf GELU runs as a separate in-place kernel (rk_cuda_bias_act, kernels/elementwise.cu), or, on
 * sm_90 when RK_MATMUL_GELU_VARIANT asks for it, the fused wgmma GEMM of kernels/matmul_gelu.cu does all three.
 *
 * Plans: the matmul descriptor, the three layouts and the heuristic's algorithm are cached per shape, strides,
 * dtype, epilogue and pointer alignment (the heuristic assumes 256-byte aligned buffers unless told otherwise, and
 * views into fused buffers are less aligned, so the actual alignments are passed as preferences and are part of the
 * key). When the heuristic finds no algorithm (odd leading dimensions, alignment), the plan falls back to
 * cublasGemmEx, with bias and activation applied by rk_cuda_bias_act. RK_MATMUL_VERBOSE=1 prints each new plan.
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RK_MATMUL_WORKSPACE_BYTES ((size_t) 32 << 20) /* 32 MiB: the size NVIDIA recommends for Hopper */
#define RK_MATMUL_PLAN_CACHE      64

/* Everything the heuristic's choice depends on. memset to zero before filling (compared with memcmp). */
struct plan_key {
    int32_t  dtype;
    int32_t  epilogue; /* cublasLtEpilogue_t */
    int64_t  M, N, K;
    int64_t  ldx, ldw, ldd;
    uint32_t align_x, align_w, align_d, align_bias;
};

struct plan {
    struct plan_key        key;
    bool                   valid;
    bool                   use_lt; /* false: cublasGemmEx fallback */
    cublasLtMatmulDesc_t   desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t   algo;
};

struct rk_cuda_blas {
    cublasHandle_t   cublas;
    cublasLtHandle_t lt;
    void *           ws;
    size_t           ws_size;
    struct plan      plans[RK_MATMUL_PLAN_CACHE];
    int              next; /* round-robin replacement */
    bool             verbose;
};

/* ------------------------------------------------------------------------------------------------
 * context */

extern "C" struct rk_cuda_blas * rk_cuda_blas_init(void) {
    struct rk_cuda_blas * b = (struct rk_cuda_blas *) calloc(1, sizeof(*b));
    if (!b) {
        rk_set_error(RK_STATUS_OOM, "cuda blas: out of host memory");
        return NULL;
    }
    cublasStatus_t st = cublasCreate(&b->cublas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        rk_set_error(RK_STATUS_DEVICE, "cuda blas: cublasCreate failed: %s", cublasGetStatusString(st));
        free(b);
        return NULL;
    }
    st = cublasLtCreate(&b->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        rk_set_error(RK_STATUS_DEVICE, "cuda blas: cublasLtCreate failed: %s", cublasGetStatusString(st));
        RK_CUBLAS_CHECK(cublasDestroy(b->cublas));
        free(b);
        return NULL;
    }
    b->ws_size = RK_MATMUL_WORKSPACE_BYTES;
    if (cudaMalloc(&b->ws, b->ws_size) != cudaSuccess) {
        (void) cudaGetLastError(); /* clear the (non-sticky) allocation error */
        rk_set_error(RK_STATUS_DEVICE, "cuda blas: cannot allocate a %zu-byte workspace", b->ws_size);
        RK_CUBLAS_CHECK(cublasLtDestroy(b->lt));
        RK_CUBLAS_CHECK(cublasDestroy(b->cublas));
        free(b);
        return NULL;
    }
    /* cuBLAS shares the workspace: every call runs on the backend's one stream, so they never overlap */
    RK_CUBLAS_CHECK(cublasSetWorkspace(b->cublas, b->ws, b->ws_size));
    const char * v = getenv("RK_MATMUL_VERBOSE");
    b->verbose     = v && *v && strcmp(v, "0") != 0;
    return b;
}

static void plan_release(struct plan * p) {
    if (!p->valid) return;
    if (p->d) RK_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->d));
    if (p->b) RK_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
    if (p->a) RK_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
    if (p->desc) RK_CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
    memset(p, 0, sizeof(*p));
}

extern "C" struct cublasContext * rk_cuda_blas_cublas(struct rk_cuda_blas * b) { return b ? b->cublas : NULL; }

extern "C" void rk_cuda_blas_free(struct rk_cuda_blas * b) {
    if (!b) return;
    for (int i = 0; i < RK_MATMUL_PLAN_CACHE; i++) plan_release(&b->plans[i]);
    RK_CUDA_FREE(b->ws);
    RK_CUBLAS_CHECK(cublasLtDestroy(b->lt));
    RK_CUBLAS_CHECK(cublasDestroy(b->cublas));
    free(b);
}

/* ------------------------------------------------------------------------------------------------
 * plans */

static cudaDataType_t cuda_type(enum rk_dtype t) {
    switch (t) {
        case RK_DTYPE_F16: return CUDA_R_16F;
        case RK_DTYPE_BF16: return CUDA_R_16BF;
        default: return CUDA_R_32F;
    }
}

/* Builds the Lt descriptors for key and asks the heuristic for one algorithm; use_lt = false when it has none. */
static void plan_build(struct rk_cuda_blas * blas, struct plan * p, const struct plan_key * k, const void * bias) {
    memset(p, 0, sizeof(*p));
    p->key   = *k;
    p->valid = true;
    const cudaDataType_t     t  = cuda_type((enum rk_dtype) k->dtype);
    const cublasOperation_t  ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cublasLtEpilogue_t ep = (cublasLtEpilogue_t) k->epilogue;
    RK_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    RK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    RK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    RK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
    if (ep == CUBLASLT_EPILOGUE_BIAS) {
        /* the heuristic reads the pointer's alignment, so set it before asking */
        RK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    RK_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, t, (uint64_t) k->K, (uint64_t) k->N, k->ldw)); /* w: (K,N) cm */
    RK_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, t, (uint64_t) k->K, (uint64_t) k->M, k->ldx)); /* x: (K,M) cm */
    RK_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, t, (uint64_t) k->N, (uint64_t) k->M, k->ldd)); /* D: (N,M) cm */

    cublasLtMatmulPreference_t pref;
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = blas->ws_size;
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->align_w,
                                                         sizeof(k->align_w)));
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->align_x,
                                                         sizeof(k->align_x)));
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->align_d,
                                                         sizeof(k->align_d)));
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->align_d,
                                                         sizeof(k->align_d)));
    cublasLtMatmulHeuristicResult_t res;
    int                             found = 0;
    memset(&res, 0, sizeof(res));
    /* "no algorithm" comes back as CUBLAS_STATUS_NOT_SUPPORTED or as 0 results: both mean fall back, not fail */
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(blas->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res,
                                                             &found);
    RK_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    p->use_lt = st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS &&
                res.workspaceSize <= blas->ws_size;
    if (p->use_lt) p->algo = res.algo;
    if (blas->verbose) {
        fprintf(stderr, "rk: matmul plan %s M=%lld N=%lld K=%lld ldx=%lld ldw=%lld ldd=%lld align x/w/d/bias=%u/%u/%u/%u "
                        "epilogue=%s: %s\n",
                rk_dtype_traits[k->dtype].name, (long long) k->M, (long long) k->N, (long long) k->K,
                (long long) k->ldx, (long long) k->ldw, (long long) k->ldd, k->align_x, k->align_w, k->align_d,
                k->align_bias, ep == CUBLASLT_EPILOGUE_BIAS ? "bias" : "none",
                p->use_lt ? "cublasLt" : "cublasGemmEx fallback");
    }
}

static struct plan * plan_get(struct rk_cuda_blas * blas, const struct plan_key * k, const void * bias) {
    for (int i = 0; i < RK_MATMUL_PLAN_CACHE; i++) {
        if (blas->plans[i].valid && memcmp(&blas->plans[i].key, k, sizeof(*k)) == 0) return &blas->plans[i];
    }
    struct plan * p = &blas->plans[blas->next];
    blas->next      = (blas->next + 1) % RK_MATMUL_PLAN_CACHE;
    plan_release(p);
    plan_build(blas, p, k, bias);
    return p;
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/*
 * x (M,K) rows (row stride >= K), w (N,K) rows, bias (N) or NULL, dst (M,N) rows; one float dtype.
 * dst must not overlap x, w or bias.
 */
extern "C" enum rk_status rk_cuda_matmul(struct rk_cuda_blas * blas, struct rk_tensor * dst,
                                         const struct rk_tensor * x, const struct rk_tensor * w,
                                         const struct rk_tensor * bias, const struct rk_matmul_params * p,
                                         cudaStream_t stream) {
    const enum rk_dtype dt = x->dtype;
    if (!rk_is_float_dtype(dt) || w->dtype != dt || dst->dtype != dt || (bias && bias->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul: x, w, bias and dst must share one float dtype");
    }
    if (p->act != RK_ACT_NONE && p->act != RK_ACT_GELU) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul: activation %d", (int) p->act);
    }
    rk_rows rx, rw, rd;
    RK_TRY(rk_matmul_rows("cuda matmul", dst, x, w, bias, &rx, &rw, &rd));
    const int64_t M = rx.nrows, K = rx.ncols, N = rw.nrows;
    if (M == 0 || N == 0) return RK_OK;
    if (K == 0) return rk_set_error(RK_STATUS_ARG, "cuda matmul: K = 0");
    if (p->act == RK_ACT_GELU && !p->accumulate) {
        /* the fused GEMM + bias + GELU (kernels/matmul_gelu.cu) when the variant asks for it and it takes the call */
        const int v = rk_cuda_matmul_gelu_variant();
        if (v >= 2) {
            const enum rk_status st = rk_cuda_matmul_gelu_fused(dst, x, w, bias, v, stream);
            if (st != RK_STATUS_UNSUPPORTED) return st;
            rk_clear_error();
        }
    }
    /* the fallback takes int dimensions; keep both paths to the same limits */
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || rx.stride > INT_MAX || rw.stride > INT_MAX ||
        rd.stride > INT_MAX) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul: a dimension exceeds INT_MAX");
    }

    struct plan_key k;
    memset(&k, 0, sizeof(k));
    k.dtype      = (int32_t) dt;
    k.epilogue   = bias ? (int32_t) CUBLASLT_EPILOGUE_BIAS : (int32_t) CUBLASLT_EPILOGUE_DEFAULT;
    k.M          = M;
    k.N          = N;
    k.K          = K;
    k.ldx        = rx.stride;
    k.ldw        = rw.stride;
    k.ldd        = rd.stride;
    k.align_x    = rk_ptr_align(x->data);
    k.align_w    = rk_ptr_align(w->data);
    k.align_d    = rk_ptr_align(dst->data);
    k.align_bias = bias ? rk_ptr_align(bias->data) : 0;
    struct plan * pl = plan_get(blas, &k, bias ? bias->data : NULL);

    const float alpha = 1.0f, beta = p->accumulate ? 1.0f : 0.0f; /* C is dst itself (same layout) */
    if (pl->use_lt) {
        if (bias) {
            const void * bp = bias->data;
            RK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
        }
        /* Checked by hand: an algorithm the heuristic offered but that refuses these arguments (a parameter check,
         * nothing launched, no CUDA error pending) demotes the plan to the cublasGemmEx path instead of aborting. */
        const cublasStatus_t st = cublasLtMatmul(blas->lt, pl->desc, &alpha, w->data, pl->a, x->data, pl->b, &beta,
                                                 dst->data, pl->d, dst->data, pl->d, &pl->algo, blas->ws,
                                                 blas->ws_size, stream);
        if (st == CUBLAS_STATUS_SUCCESS) {
            if (p->act == RK_ACT_GELU) RK_TRY(rk_cuda_bias_act(dst, NULL, RK_ACT_GELU, stream));
            return RK_OK;
        }
        if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE) {
            rk_fatal_cuda("cuBLASLt", cublasGetStatusString(st), "cublasLtMatmul(...)", __func__, __FILE__, __LINE__);
        }
        fprintf(stderr, "rk: cublasLtMatmul refused %s M=%lld N=%lld K=%lld (%s); using cublasGemmEx for this shape\n",
                rk_dtype_traits[dt].name, (long long) M, (long long) N, (long long) K, cublasGetStatusString(st));
        pl->use_lt = false;
    }
    const cudaDataType_t t = cuda_type(dt);
    RK_CUBLAS_CHECK(cublasSetStream(blas->cublas, stream));
    RK_CUBLAS_CHECK(cublasGemmEx(blas->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int) N, (int) M, (int) K, &alpha, w->data, t,
                                 (int) rw.stride, x->data, t, (int) rx.stride, &beta, dst->data, t, (int) rd.stride,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return rk_cuda_bias_act(dst, bias, p->act, stream);
}

/* ------------------------------------------------------------------------------------------------
 * MATMUL_BWD
 *
 * The same transposed-problem trick as the forward (row-major R x C with row stride ld = column-major C x R):
 *   dx (M,K) = dout (M,N) @ w (N,K):    column-major dx^T (K,M) = w_cm (K,N) . dout_cm (N,M)      (N, N)
 *   dw (N,K) = dout^T (N,M) @ x (M,K):  column-major dw^T (K,N) = x_cm (K,M) . dout_cm^T (M,N)    (N, T)
 * Both through cublasGemmEx with CUBLAS_COMPUTE_32F (fp32 accumulation; for f32 no TF32, the handle keeps the
 * default math mode), beta = 1 to accumulate; cuBLAS is bit-reproducible run to run on one GPU model with the
 * workspace set (rk_cuda_blas_init). cublasGemmEx rather than the forward's cuBLASLt plan cache: the backward GEMMs
 * have other transposes than those plans, and one GemmEx call per GEMM keeps this simple (a cuBLASLt plan cache for
 * the backward is an optimisation to measure first).
 *
 * db: not cuBLASLt's BGRADB epilogue, which overwrites db (the op must also accumulate) and ties db to the dw GEMM's
 * algorithm; instead colsum_kernel_v1: block (32, 32) owns 32 columns, warp y sums the rows y, y + 32, ... of its
 * lane's column in fp32, the 32 partial sums are added in warp order: deterministic, no atomics, no scratch. It
 * reads dout once (64-byte row segments for 16-bit types); its grid is ceil(N/32) blocks, small next to the GEMMs. */

#define RK_COLSUM_WARPS 32

/* db (N) (+)= sum over the M rows (stride ld) of dout. */
template <typename T>
static __global__ void __launch_bounds__(32 * RK_COLSUM_WARPS) colsum_kernel_v1(T * db, const T * dout, int64_t M, int64_t N, int64_t ld, bool accumulate) {
    __shared__ float sm[RK_COLSUM_WARPS][32];
    const int64_t    c = (int64_t) blockIdx.x * 32 + threadIdx.x;
    float            s = 0.0f;
    if (c < N) {
#pragma unroll 4
        for (int64_t m = threadIdx.y; m < M; m += RK_COLSUM_WARPS) s += rk_to_f32(dout[m * ld + c]);
    }
    s = rk_sum_over_warps<RK_COLSUM_WARPS>(s, sm);
    if (threadIdx.y == 0 && c < N) db[c] = rk_from_f32<T>((accumulate ? rk_to_f32(db[c]) : 0.0f) + s);
}

/*
 * C (m x n, column-major, ldc) = A . B (+ C): op(A) m x k, op(B) k x n; beta = accumulate. k = 0 is an empty sum:
 * C is zeroed (or left as it is), not passed to cuBLAS. Returns rk_cuda_fill's status there, else RK_OK.
 */
static enum rk_status gemm_bwd(struct rk_cuda_blas * blas, struct rk_tensor * c_t, int64_t ldc, cublasOperation_t tb, int64_t m,
                     int64_t n, int64_t k, const void * a, int64_t lda, const void * b, int64_t ldb, bool accumulate,
                     cudaStream_t stream) {
    if (m == 0 || n == 0) return RK_OK;
    if (k == 0) return accumulate ? RK_OK : rk_cuda_fill(c_t, 0.0f, stream);
    const cudaDataType_t t     = cuda_type(c_t->dtype);
    const float          alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    RK_CUBLAS_CHECK(cublasSetStream(blas->cublas, stream));
    RK_CUBLAS_CHECK(cublasGemmEx(blas->cublas, CUBLAS_OP_N, tb, (int) m, (int) n, (int) k, &alpha, a, t, (int) lda, b, t,
                                 (int) ldb, &beta, c_t->data, t, (int) ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return RK_OK;
}

/*
 * dout (M,N), x (M,K), dx (M,K) rows with any row strides; w (N,K), dw (N,K) rows; db (N) contiguous; one float dtype.
 */
extern "C" enum rk_status rk_cuda_matmul_bwd(struct rk_cuda_blas * blas, struct rk_tensor * dx, struct rk_tensor * dw,
                                             struct rk_tensor * db, const struct rk_tensor * dout,
                                             const struct rk_tensor * x, const struct rk_tensor * w,
                                             const struct rk_matmul_bwd_params * p, cudaStream_t stream) {
    const enum rk_dtype dt   = dout->dtype;
    const bool          do_dx = !p->skip_dx;
    if (do_dx && !dx) return rk_set_error(RK_STATUS_ARG, "cuda matmul_bwd: dx is NULL without skip_dx");
    if (!rk_is_float_dtype(dt) || x->dtype != dt || w->dtype != dt || (do_dx && dx->dtype != dt) ||
        (dw && dw->dtype != dt) || (db && db->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul_bwd: all tensors must share one float dtype");
    }
    rk_rows rg, rx, rw, rdx = { 0, 0, 0 }, rdw = { 0, 0, 0 }, rdb = { 0, 0, 0 };
    if (!rk_rows_of(dout, &rg) || !rk_rows_of(x, &rx) || !rk_rows_of(w, &rw) || (do_dx && !rk_rows_of(dx, &rdx)) ||
        (dw && !rk_rows_of(dw, &rdw)) || (db && !rk_rows_of(db, &rdb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul_bwd: tensors must be rows with a contiguous last dim");
    }
    const int64_t M = rg.nrows, N = rg.ncols, K = rx.ncols;
    if (rx.nrows != M || rw.nrows != N || rw.ncols != K || (do_dx && (rdx.nrows != M || rdx.ncols != K)) ||
        (dw && (rdw.nrows != N || rdw.ncols != K)) || (db && (rdb.nrows != 1 || rdb.ncols != N))) {
        return rk_set_error(RK_STATUS_ARG, "cuda matmul_bwd: shape mismatch dout (%lld,%lld) x (%lld,%lld) w (%lld,%lld)",
                            (long long) M, (long long) N, (long long) rx.nrows, (long long) K, (long long) rw.nrows,
                            (long long) rw.ncols);
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || rg.stride > INT_MAX || rx.stride > INT_MAX ||
        rw.stride > INT_MAX || rdx.stride > INT_MAX || rdw.stride > INT_MAX) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul_bwd: a dimension exceeds INT_MAX");
    }
    if (do_dx) {
        RK_TRY(gemm_bwd(blas, dx, rdx.stride, CUBLAS_OP_N, K, M, N, w->data, rw.stride, dout->data, rg.stride,
                        p->dx_accumulate, stream));
    }
    if (dw) {
        RK_TRY(gemm_bwd(blas, dw, rdw.stride, CUBLAS_OP_T, K, N, M, x->data, rx.stride, dout->data, rg.stride,
                        p->accumulate, stream));
    }
    if (db && N > 0) {
        const dim3 block(32, RK_COLSUM_WARPS);
        RK_DISPATCH_FLOAT(dt, T,
            colsum_kernel_v1<T><<<(unsigned) RK_CEIL_DIV(N, (int64_t) 32), block, 0, stream>>>(
                (T *) db->data, (const T *) dout->data, M, N, rg.stride, p->accumulate);
            RK_CUDA_CHECK(cudaGetLastError()));
    }
    return RK_OK;
}
