/*
 * emu_blas.cpp: the cuBLAS and cuBLASLt calls rk makes, on the host, with the semantics the NVIDIA documentation
 * gives them (tests/emu/README.md):
 *   - column-major matrices; op(X) = X or X^T (CUBLAS_OP_C on real types is X^T); lda >= rows of A as stored, ldb,
 *     ldc likewise (else CUBLAS_STATUS_INVALID_VALUE, as cuBLAS returns);
 *   - D = alpha op(A) op(B) + beta C (+ bias[i] on row i with CUBLASLT_EPILOGUE_BIAS), alpha and beta host floats
 *     (CUBLAS_COMPUTE_32F, scale type CUDA_R_32F); beta == 0 never reads C (NaN in C does not propagate); one
 *     rounding to the output type at the end;
 *   - types: A, B, C one of f32, f16, bf16 (bf16 needs sm_80: CUBLAS_STATUS_ARCH_MISMATCH below); compute
 *     CUBLAS_COMPUTE_32F only, never TF32 (the default math mode);
 *   - the product itself: inputs widened to f32 exactly, multiplied by OpenBLAS sgemm (fp32 accumulation).
 * cuBLASLt: descriptor attributes TRANSA, TRANSB, EPILOGUE (DEFAULT or BIAS), BIAS_POINTER, COMPUTE_TYPE and
 * SCALE_TYPE; layouts with ORDER column-major and batch count 1; preferences MAX_WORKSPACE_BYTES and the four
 * MIN_ALIGNMENT_*. The heuristic offers one algorithm (EMU_LT_HEURISTIC=0: none, to exercise the callers' fallback)
 * that needs the pointer alignments the preferences promised; cublasLtMatmul refuses pointers less aligned than that
 * with CUBLAS_STATUS_NOT_SUPPORTED. Any other attribute, value, type or epilogue aborts with a message: the
 * emulation does not guess.
 */
#include "emu_internal.h"

#include "cublasLt.h"

#include <cblas.h>
#include <vector>

using namespace emu;

[[noreturn]] static void unsupported(const char * fmt, ...) __attribute__((format(printf, 1, 2)));
static void unsupported(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: cuBLAS emulation: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (not emulated: extend tests/emu/emu_blas.cpp from the cuBLAS documentation)\n");
    va_end(ap);
    abort();
}

static cublasStatus_t refuse(cublasStatus_t s, const char * fmt, ...) __attribute__((format(printf, 2, 3)));
static cublasStatus_t refuse(cublasStatus_t s, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: cuBLAS: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " -> %s\n", cublasGetStatusString(s));
    va_end(ap);
    return s;
}

struct cublasContext {
    cudaStream_t stream;
    void *       ws;
    size_t       ws_bytes;
};
struct cublasLtContext {
    int magic;
};
struct cublasLtMatmulDescOpaque {
    cublasComputeType_t compute;
    cudaDataType_t      scale;
    cublasOperation_t   ta, tb;
    cublasLtEpilogue_t  epilogue;
    const void *        bias;
};
struct cublasLtMatrixLayoutOpaque {
    cudaDataType_t type;
    uint64_t       rows, cols;
    int64_t        ld;
};
struct cublasLtMatmulPreferenceOpaque {
    uint64_t max_ws;
    uint32_t align[4]; /* A, B, C, D */
};

namespace {

size_t type_size(cudaDataType_t t) {
    switch (t) {
        case CUDA_R_32F: return 4;
        case CUDA_R_16F:
        case CUDA_R_16BF: return 2;
        default: unsupported("data type %d", (int) t);
    }
}

float load(cudaDataType_t t, const void * base, int64_t i) {
    switch (t) {
        case CUDA_R_32F: return ((const float *) base)[i];
        case CUDA_R_16F: return rk_f16_to_f32(((const uint16_t *) base)[i]);
        default: return rk_bf16_to_f32(((const uint16_t *) base)[i]);
    }
}

void store(cudaDataType_t t, void * base, int64_t i, float v) {
    switch (t) {
        case CUDA_R_32F: ((float *) base)[i] = v; break;
        case CUDA_R_16F: ((uint16_t *) base)[i] = __half_as_ushort(__float2half_rn(v)); break;
        default: ((uint16_t *) base)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v)); break;
    }
}

cublasStatus_t type_ok(cudaDataType_t t, const char * what) {
    if (t != CUDA_R_32F && t != CUDA_R_16F && t != CUDA_R_16BF) unsupported("%s type %d", what, (int) t);
    if (t == CUDA_R_16BF && cfg().cc < 80) {
        return refuse(CUBLAS_STATUS_ARCH_MISMATCH, "%s is bf16 on sm_%d (bf16 GEMMs need sm_80)", what, cfg().cc);
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* A stored matrix (rows x cols, column-major, leading dimension ld) must lie inside one device allocation. */
bool matrix_in_device(const void * p, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld) {
    if (rows == 0 || cols == 0) return true;
    return is_device(p, (size_t) (((cols - 1) * ld + rows) * (int64_t) type_size(t)));
}

/*
 * The GEMM both APIs end in: D (m x n, ldd) = alpha op(A) op(B) + beta C (+ bias[i]), column-major; A is stored
 * (ta == N ? m x k : k x m) with lda, B (tb == N ? k x n : n x k) with ldb. C may be D itself.
 */
void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha, const void * A,
          cudaDataType_t at, int64_t lda, const void * B, cudaDataType_t bt, int64_t ldb, float beta, const void * C,
          cudaDataType_t ct, int64_t ldc, void * D, cudaDataType_t dt, int64_t ldd, const void * bias) {
    if (m == 0 || n == 0) return;
    device_scope ds;
    std::vector<float> acc((size_t) (m * n), 0.0f);
    if (k > 0 && alpha != 0.0f) {
        /* op(A) as a dense m x k f32 matrix, op(B) as k x n (exact widening), then one sgemm */
        std::vector<float> a((size_t) (m * k)), b((size_t) (k * n));
        for (int64_t j = 0; j < k; j++) {
            for (int64_t i = 0; i < m; i++) a[(size_t) (j * m + i)] = load(at, A, ta == CUBLAS_OP_N ? j * lda + i : i * lda + j);
        }
        for (int64_t j = 0; j < n; j++) {
            for (int64_t i = 0; i < k; i++) b[(size_t) (j * k + i)] = load(bt, B, tb == CUBLAS_OP_N ? j * ldb + i : i * ldb + j);
        }
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int) m, (int) n, (int) k, 1.0f, a.data(), (int) m,
                    b.data(), (int) k, 0.0f, acc.data(), (int) m);
    }
    const bool read_c = beta != 0.0f;
    for (int64_t j = 0; j < n; j++) {
        for (int64_t i = 0; i < m; i++) {
            float v = alpha * acc[(size_t) (j * m + i)];
            if (read_c) v += beta * load(ct, C, j * ldc + i);
            if (bias) v += load(dt, bias, i);
            store(dt, D, j * ldd + i, v);
        }
    }
}

template <class T> static cublasStatus_t attr_read(T * out, const void * buf, size_t size, const char * what) {
    if (size != sizeof(T)) return refuse(CUBLAS_STATUS_INVALID_VALUE, "%s: %zu bytes, expected %zu", what, size, sizeof(T));
    memcpy(out, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

extern "C" {

const char * cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasCreate(cublasHandle_t * handle) {
    init();
    *handle = new cublasContext{ nullptr, nullptr, 0 };
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_valid(stream)) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasSetStream: %p is not a live stream", (void *) stream);
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t * stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void * ws, size_t bytes) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && !is_device(ws, bytes)) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasSetWorkspace: not device memory");
    if ((uintptr_t) ws % 256) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasSetWorkspace: not 256-byte aligned");
    handle->ws       = ws;
    handle->ws_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (mode != CUBLAS_DEFAULT_MATH) unsupported("cublasSetMathMode(%d)", (int) mode);
    return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void * alpha, const void * A, cudaDataType_t Atype, int lda, const void * B,
                            cudaDataType_t Btype, int ldb, const void * beta, void * C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (computeType != CUBLAS_COMPUTE_32F) unsupported("cublasGemmEx compute type %d", (int) computeType);
    if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP) unsupported("cublasGemmEx algo %d", (int) algo);
    for (cublasOperation_t t : { transa, transb }) {
        if (t != CUBLAS_OP_N && t != CUBLAS_OP_T && t != CUBLAS_OP_C) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: op %d", (int) t);
    }
    cublasStatus_t s;
    if ((s = type_ok(Atype, "A")) || (s = type_ok(Btype, "B")) || (s = type_ok(Ctype, "C"))) return s;
    /* COMPUTE_32F takes A and B of one type and C of that type or f32 */
    if (Atype != Btype || (Ctype != Atype && Ctype != CUDA_R_32F)) {
        return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx: types A %d B %d C %d", (int) Atype, (int) Btype, (int) Ctype);
    }
    const int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) ||
        ldc < (m > 1 ? m : 1)) {
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: m %d n %d k %d lda %d ldb %d ldc %d (ops %d %d)", m,
                      n, k, lda, ldb, ldc, (int) transa, (int) transb);
    }
    if (!stream_valid(handle->stream)) return refuse(CUBLAS_STATUS_EXECUTION_FAILED, "cublasGemmEx: the handle's stream was destroyed");
    const float al = *(const float *) alpha, be = *(const float *) beta;
    if (m && n && k && al != 0.0f &&
        (!matrix_in_device(A, Atype, a_rows, transa == CUBLAS_OP_N ? k : m, lda) ||
         !matrix_in_device(B, Btype, b_rows, transb == CUBLAS_OP_N ? n : k, ldb))) {
        fault("cublasGemmEx: A or B is not inside one device allocation");
    }
    if (m && n && !matrix_in_device(C, Ctype, m, n, ldc)) fault("cublasGemmEx: C is not inside one device allocation");
    gemm(transa, transb, m, n, k, al, A, Atype, lda, B, Btype, ldb, be, C, Ctype, ldc, C, Ctype, ldc, nullptr);
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuBLASLt ------------------------------------------------------------------------------------------------ */

cublasStatus_t cublasLtCreate(cublasLtHandle_t * handle) {
    init();
    *handle = new cublasLtContext{ 1 };
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F) unsupported("cublasLtMatmulDescCreate compute type %d", (int) compute);
    if (scale != CUDA_R_32F) unsupported("cublasLtMatmulDescCreate scale type %d", (int) scale);
    *desc = new cublasLtMatmulDescOpaque{ compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr };
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}


cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void * buf, size_t size) {
    switch (attr) {
        case CUBLASLT_MATMUL_DESC_TRANSA:
        case CUBLASLT_MATMUL_DESC_TRANSB: {
            int32_t op = 0;
            if (cublasStatus_t s = attr_read(&op, buf, size, "TRANSA/TRANSB")) return s;
            if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) unsupported("matmul desc transpose %d", op);
            (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->ta : desc->tb) = (cublasOperation_t) op;
            return CUBLAS_STATUS_SUCCESS;
        }
        case CUBLASLT_MATMUL_DESC_EPILOGUE: {
            uint32_t ep = 0;
            if (cublasStatus_t s = attr_read(&ep, buf, size, "EPILOGUE")) return s;
            if (ep != CUBLASLT_EPILOGUE_DEFAULT && ep != CUBLASLT_EPILOGUE_BIAS) unsupported("epilogue %u", ep);
            desc->epilogue = (cublasLtEpilogue_t) ep;
            return CUBLAS_STATUS_SUCCESS;
        }
        case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return attr_read(&desc->bias, buf, size, "BIAS_POINTER");
        case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: {
            int32_t v = 0;
            if (cublasStatus_t s = attr_read(&v, buf, size, "COMPUTE_TYPE")) return s;
            if (v != CUBLAS_COMPUTE_32F) unsupported("compute type %d", v);
            return CUBLAS_STATUS_SUCCESS;
        }
        case CUBLASLT_MATMUL_DESC_SCALE_TYPE: {
            int32_t v = 0;
            if (cublasStatus_t s = attr_read(&v, buf, size, "SCALE_TYPE")) return s;
            if (v != CUDA_R_32F) unsupported("scale type %d", v);
            return CUBLAS_STATUS_SUCCESS;
        }
        default: unsupported("cublasLtMatmulDescSetAttribute attribute %d", (int) attr);
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t * layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    (void) type_size(type);
    *layout = new cublasLtMatrixLayoutOpaque{ type, rows, cols, ld };
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void * buf, size_t size) {
    (void) layout;
    if (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) {
        int32_t v = 0;
        if (cublasStatus_t s = attr_read(&v, buf, size, "BATCH_COUNT")) return s;
        if (v != 1) unsupported("batch count %d", v);
        return CUBLAS_STATUS_SUCCESS;
    }
    unsupported("cublasLtMatrixLayoutSetAttribute attribute %d", (int) attr);
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t * pref) {
    *pref = new cublasLtMatmulPreferenceOpaque{ 0, { 256, 256, 256, 256 } }; /* documented defaults */
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void * buf,
                                                    size_t size) {
    switch (attr) {
        case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return attr_read(&pref->max_ws, buf, size, "MAX_WORKSPACE_BYTES");
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
        case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
            return attr_read(&pref->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size, "MIN_ALIGNMENT");
        default: unsupported("cublasLtMatmulPreferenceSetAttribute attribute %d", (int) attr);
    }
}

/* m, n, k of D = op(A) op(B) from the layouts; false (with a message) when they do not fit together. */
static bool lt_shape(const cublasLtMatmulDescOpaque * d, const cublasLtMatrixLayoutOpaque * A,
                     const cublasLtMatrixLayoutOpaque * B, const cublasLtMatrixLayoutOpaque * C,
                     const cublasLtMatrixLayoutOpaque * D, int64_t * m, int64_t * n, int64_t * k) {
    *m                 = (int64_t) (d->ta == CUBLAS_OP_N ? A->rows : A->cols);
    *k                 = (int64_t) (d->ta == CUBLAS_OP_N ? A->cols : A->rows);
    const int64_t kb   = (int64_t) (d->tb == CUBLAS_OP_N ? B->rows : B->cols);
    *n                 = (int64_t) (d->tb == CUBLAS_OP_N ? B->cols : B->rows);
    const bool ok      = kb == *k && (int64_t) D->rows == *m && (int64_t) D->cols == *n && C->rows == D->rows &&
                    C->cols == D->cols && A->ld >= (int64_t) (A->rows > 1 ? A->rows : 1) &&
                    B->ld >= (int64_t) (B->rows > 1 ? B->rows : 1) && C->ld >= (int64_t) (C->rows > 1 ? C->rows : 1) &&
                    D->ld >= (int64_t) (D->rows > 1 ? D->rows : 1);
    if (!ok) {
        refuse(CUBLAS_STATUS_INVALID_VALUE, "cuBLASLt layouts: A %llux%llu ld %lld, B %llux%llu ld %lld, C %llux%llu, "
               "D %llux%llu ld %lld with ops %d %d", (unsigned long long) A->rows, (unsigned long long) A->cols,
               (long long) A->ld, (unsigned long long) B->rows, (unsigned long long) B->cols, (long long) B->ld,
               (unsigned long long) C->rows, (unsigned long long) C->cols, (unsigned long long) D->rows,
               (unsigned long long) D->cols, (long long) D->ld, (int) d->ta, (int) d->tb);
    }
    return ok;
}

/* The one algorithm: algo.data[0] marks it, data[1..4] the alignments (A, B, C, D) it was chosen for. */
static const uint64_t ALGO_MAGIC = 0x656d75616c676fULL;

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int * returned) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    *returned = 0;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    int64_t m, n, k;
    if (!lt_shape(desc, Adesc, Bdesc, Cdesc, Ddesc, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t s;
    if ((s = type_ok(Adesc->type, "A")) || (s = type_ok(Bdesc->type, "B")) || (s = type_ok(Ddesc->type, "D"))) return s;
    if (Adesc->type != Bdesc->type || Cdesc->type != Ddesc->type || Ddesc->type != Adesc->type) {
        unsupported("cuBLASLt types A %d B %d C %d D %d", (int) Adesc->type, (int) Bdesc->type, (int) Cdesc->type,
                    (int) Ddesc->type);
    }
    for (int i = 0; i < 4; i++) {
        const uint32_t a = pref->align[i];
        if (a == 0 || (a & (a - 1))) return refuse(CUBLAS_STATUS_INVALID_VALUE, "MIN_ALIGNMENT %u", a);
    }
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS && !desc->bias) {
        return refuse(CUBLAS_STATUS_INVALID_VALUE, "EPILOGUE_BIAS without a bias pointer");
    }
    if (!cfg().lt_algos) return CUBLAS_STATUS_NOT_SUPPORTED; /* EMU_LT_HEURISTIC=0: "no algorithm" */
    memset(&results[0], 0, sizeof(results[0]));
    results[0].algo.data[0]  = ALGO_MAGIC;
    for (int i = 0; i < 4; i++) results[0].algo.data[1 + i] = pref->align[i];
    results[0].workspaceSize = 0;
    results[0].state         = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount    = 1.0f;
    *returned                = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static uint32_t ptr_align(const void * p) {
    uint32_t a = 1;
    while (a < 256 && ((uintptr_t) p & (2 * a - 1)) == 0) a *= 2;
    return a;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void * alpha, const void * A,
                              cublasLtMatrixLayout_t Adesc, const void * B, cublasLtMatrixLayout_t Bdesc,
                              const void * beta, const void * C, cublasLtMatrixLayout_t Cdesc, void * D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t * algo, void * workspace,
                              size_t ws_bytes, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!algo) unsupported("cublasLtMatmul without an algorithm (the library's own heuristic)");
    if (algo->data[0] != ALGO_MAGIC) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: not a heuristic's algorithm");
    if (!stream_valid(stream)) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: stream %p", (void *) stream);
    if (ws_bytes && !is_device(workspace, ws_bytes)) fault("cublasLtMatmul: workspace is not device memory");
    int64_t m, n, k;
    if (!lt_shape(desc, Adesc, Bdesc, Cdesc, Ddesc, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    const void * ptrs[4] = { A, B, C, D };
    for (int i = 0; i < 4; i++) {
        if (ptr_align(ptrs[i]) < algo->data[1 + i]) {
            return refuse(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmul: operand %c is %u-byte aligned, the algorithm "
                          "was chosen for %llu", "ABCD"[i], ptr_align(ptrs[i]), (unsigned long long) algo->data[1 + i]);
        }
    }
    const float al = *(const float *) alpha, be = *(const float *) beta;
    if (be != 0.0f && C != D && (Cdesc->ld != Ddesc->ld)) unsupported("cublasLtMatmul with C != D and beta != 0");
    if (m && n) {
        if (k && al != 0.0f && (!matrix_in_device(A, Adesc->type, (int64_t) Adesc->rows, (int64_t) Adesc->cols, Adesc->ld) ||
                                !matrix_in_device(B, Bdesc->type, (int64_t) Bdesc->rows, (int64_t) Bdesc->cols, Bdesc->ld))) {
            fault("cublasLtMatmul: A or B is not inside one device allocation");
        }
        if (!matrix_in_device(D, Ddesc->type, m, n, Ddesc->ld)) fault("cublasLtMatmul: D is not inside one device allocation");
        if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS && !is_device(desc->bias, (size_t) m * type_size(Ddesc->type))) {
            fault("cublasLtMatmul: the bias (%lld elements) is not inside one device allocation", (long long) m);
        }
    }
    gemm(desc->ta, desc->tb, m, n, k, al, A, Adesc->type, Adesc->ld, B, Bdesc->type, Bdesc->ld, be, C, Cdesc->type,
         Cdesc->ld, D, Ddesc->type, Ddesc->ld, desc->epilogue == CUBLASLT_EPILOGUE_BIAS ? desc->bias : nullptr);
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
