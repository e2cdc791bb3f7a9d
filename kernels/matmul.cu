/*
 * matmul.cu: CUDA RK_OP_MATMUL: dst (M,N) = x (M,K) @ w (N,K)^T (+ bias) (then GELU), through cuBLASLt with a plain
 * cuBLAS fallback. The CPU reference is kernels/matmul_cpu.c (OpenBLAS sgemm); parity cases MATMUL(...) in
 * tests/test_ops.c. Bench: build/bench/bench_matmul (peer: bench/peers/gemm_torch.py).
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
 * epilogue and the erf GELU runs as a separate in-place kernel (rk_cuda_bias_act, kernels/elementwise.cu).
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
    rk_rows rx, rw, rd, rb;
    if (!rk_rows_of(x, &rx) || !rk_rows_of(w, &rw) || !rk_rows_of(dst, &rd) || (bias && !rk_rows_of(bias, &rb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda matmul: tensors must be rows with a contiguous last dim");
    }
    const int64_t M = rx.nrows, K = rx.ncols, N = rw.nrows;
    if (rw.ncols != K || rd.nrows != M || rd.ncols != N || (bias && (rb.nrows != 1 || rb.ncols != N))) {
        return rk_set_error(RK_STATUS_ARG, "cuda matmul: shape mismatch x (%lld,%lld) w (%lld,%lld) dst (%lld,%lld)",
                            (long long) M, (long long) K, (long long) rw.nrows, (long long) rw.ncols,
                            (long long) rd.nrows, (long long) rd.ncols);
    }
    if (M == 0 || N == 0) return RK_OK;
    if (K == 0) return rk_set_error(RK_STATUS_ARG, "cuda matmul: K = 0");
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

    const float alpha = 1.0f, beta = 0.0f;
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
