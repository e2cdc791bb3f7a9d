/*
 * cublasLt.h (host emulation, tests/emu): the subset of cuBLASLt that rk calls (matmul descriptors, matrix layouts,
 * preferences, the heuristic and cublasLtMatmul), implemented by tests/emu/emu_blas.cpp with the documented
 * semantics. An attribute or value emu_blas.cpp does not implement makes it abort with a message.
 */
#ifndef RK_EMU_CUBLASLT_H
#define RK_EMU_CUBLASLT_H

#include "cublas_api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cublasLtContext *          cublasLtHandle_t;
typedef struct cublasLtMatmulDescOpaque * cublasLtMatmulDesc_t;
typedef struct cublasLtMatrixLayoutOpaque * cublasLtMatrixLayout_t;
typedef struct cublasLtMatmulPreferenceOpaque * cublasLtMatmulPreference_t;

typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t               workspaceSize;
    cublasStatus_t       state;
    float                wavesCount;
    int                  reserved[4];
} cublasLtMatmulHeuristicResult_t;

typedef enum {
    CUBLASLT_EPILOGUE_DEFAULT   = 1,
    CUBLASLT_EPILOGUE_RELU      = 2,
    CUBLASLT_EPILOGUE_BIAS      = 4,
    CUBLASLT_EPILOGUE_RELU_BIAS = 6,
    CUBLASLT_EPILOGUE_GELU      = 32,
    CUBLASLT_EPILOGUE_GELU_BIAS = 36,
    CUBLASLT_EPILOGUE_BGRADA    = 256,
    CUBLASLT_EPILOGUE_BGRADB    = 512,
} cublasLtEpilogue_t;

typedef enum {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE   = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE     = 1,
    CUBLASLT_MATMUL_DESC_POINTER_MODE   = 2,
    CUBLASLT_MATMUL_DESC_TRANSA         = 3,
    CUBLASLT_MATMUL_DESC_TRANSB         = 4,
    CUBLASLT_MATMUL_DESC_TRANSC         = 5,
    CUBLASLT_MATMUL_DESC_FILL_MODE      = 6,
    CUBLASLT_MATMUL_DESC_EPILOGUE       = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER   = 8,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
} cublasLtMatmulDescAttributes_t;

typedef enum {
    CUBLASLT_MATRIX_LAYOUT_TYPE        = 0,
    CUBLASLT_MATRIX_LAYOUT_ORDER       = 1,
    CUBLASLT_MATRIX_LAYOUT_ROWS        = 2,
    CUBLASLT_MATRIX_LAYOUT_COLS        = 3,
    CUBLASLT_MATRIX_LAYOUT_LD          = 4,
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
} cublasLtMatrixLayoutAttribute_t;

typedef enum {
    CUBLASLT_MATMUL_PREF_SEARCH_MODE           = 0,
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES   = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

cublasStatus_t cublasLtCreate(cublasLtHandle_t * handle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t * desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void * buf, size_t size);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t * layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout);
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                const void * buf, size_t size);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t * pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void * buf,
                                                    size_t size);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int * returnAlgoCount);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void * alpha, const void * A,
                              cublasLtMatrixLayout_t Adesc, const void * B, cublasLtMatrixLayout_t Bdesc,
                              const void * beta, const void * C, cublasLtMatrixLayout_t Cdesc, void * D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t * algo, void * workspace,
                              size_t workspaceSizeInBytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
