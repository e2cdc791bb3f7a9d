/*
 * cuda_check.h: checked CUDA / cuBLAS / cuBLASLt calls (STYLE.md 5). Usable from C (built with -DRK_HAVE_CUDA) and
 * from CUDA translation units. Only code that talks to the CUDA runtime includes this header.
 *
 *   RK_CUDA_CHECK(cudaMalloc(&p, n));           CUDA runtime call
 *   RK_CUBLAS_CHECK(cublasLtMatmul(...));       cuBLAS and cuBLASLt calls (both return cublasStatus_t)
 *   RK_CUDA_FREE(p);                            checked cudaFree, then p = NULL
 *
 * On failure they call rk_fatal_cuda(), which prints the library, the error string, the stringified expression,
 * the function, file:line and the current device to stderr, then abort()s so that a debugger or core dump
 * catches the fault where it happened. A recoverable condition (no device, out of memory in a caller that can
 * handle it) must not go through these macros: test the return value directly instead.
 */
#ifndef RK_CUDA_CHECK_H
#define RK_CUDA_CHECK_H

#include "check.h"

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Prints "rk: <lib> error '<errstr>' in <expr> (<func> at <file>:<line>, device <n>)" to stderr and aborts.
 * Never returns. Defined in host/backend_cuda.c.
 */
RK_NORETURN void rk_fatal_cuda(const char * lib, const char * errstr, const char * expr, const char * func,
                               const char * file, int line);

#ifdef __cplusplus
}
#endif

/* The one generic check: `type` is the library's status type, `ok` its success value, `strfn` maps a status to a
 * string (after [G] CUDA_CHECK_GEN). */
#define RK_CHECK_GEN(type, expr, ok, strfn, lib)                                              \
    do {                                                                                      \
        type rk_check_err_ = (expr);                                                          \
        if (rk_check_err_ != (ok)) {                                                          \
            rk_fatal_cuda((lib), strfn(rk_check_err_), #expr, __func__, __FILE__, __LINE__);  \
        }                                                                                     \
    } while (0)

#define RK_CUDA_CHECK(expr)   RK_CHECK_GEN(cudaError_t, expr, cudaSuccess, cudaGetErrorString, "CUDA")
#define RK_CUBLAS_CHECK(expr) RK_CHECK_GEN(cublasStatus_t, expr, CUBLAS_STATUS_SUCCESS, cublasGetStatusString, "cuBLAS")

/* Checked cudaFree of a device pointer (NULL is fine); sets the pointer to NULL ([L] cudaFreeCheck). */
#define RK_CUDA_FREE(ptr)                       \
    do {                                        \
        if ((ptr) != NULL) {                    \
            RK_CUDA_CHECK(cudaFree((void *) (ptr))); \
            (ptr) = NULL;                       \
        }                                       \
    } while (0)

#endif
