/*
 * nf4_cuda.h: C ABI of the NF4 / FP4 CUDA launchers in quant/nf4.cu (formats: quant/nf4.h, quant/README.md), among
 * them the CUDA RK_OP_NF4_MATMUL that host/backend_cuda.c dispatches to.
 * All pointers are device pointers; every launch is checked (RK_CUDA_CHECK) and aborts on a CUDA fault; every
 * launcher is asynchronous on `stream` and allocates nothing.
 */
#ifndef RK_QUANT_NF4_CUDA_H
#define RK_QUANT_NF4_CUDA_H

#include "backend.h"
#include "quant/nf4.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest M (tokens) that RK_OP_NF4_MATMUL runs as a GEMV over the 4-bit weights; above it, dequantize + GEMM. */
#define RK_NF4_GEMV_MAX_B 8

struct rk_cuda_blas; /* kernels/cuda_ops.h */

/*
 * Double-quantized absmax to fp32: absmax[i] = code8[q[i]] * scale[i / nested_bs] + offset, rounded in fp32 at
 * each step (no FMA), bit-exact with rk_cpu_nf4_absmax. code8 is 256 device floats (the tensor's nested_code).
 * Cannot fail (aborts on a CUDA fault).
 */
void rk_cuda_nf4_absmax(const uint8_t * q, const float * scale, const float * code8, float offset, int64_t n_blocks,
                        int64_t nested_bs, float * absmax, cudaStream_t stream);

/*
 * Dequantizes n 4-bit values (packed as bnb stores them, fp32 absmax per block of blocksize) into out, whose
 * dtype is RK_DTYPE_F32, RK_DTYPE_BF16 or RK_DTYPE_F16 (others: RK_STATUS_UNSUPPORTED). out[i] =
 * code[nibble(i)] * absmax[i / blocksize] in fp32, then rounded to nearest even: bit-exact with
 * rk_cpu_nf4_dequantize(_bf16). Vector loads and stores when packed is 4-byte and out 8-element aligned; any n.
 * Returns RK_STATUS_ARG for n < 1 or a blocksize that is not a power of two >= 32.
 */
enum rk_status rk_cuda_nf4_dequantize(enum rk_quant4_kind kind, const uint8_t * packed, const float * absmax,
                                      int64_t n, int64_t blocksize, void * out, enum rk_dtype out_dtype,
                                      cudaStream_t stream);

/*
 * y = x W^T for a small batch in fp32: x is (B, n_cols), W (n_rows, n_cols) 4-bit as above, y (B, n_rows), all
 * contiguous; 1 <= B <= RK_NF4_GEMV_MAX_B. The CUDA-core GEMV (variant 1 below) without bias or activation.
 * Returns RK_STATUS_ARG for B out of range, n_rows or n_cols < 1, or a blocksize that is not a power of two; else
 * RK_OK.
 */
enum rk_status rk_cuda_nf4_gemv(enum rk_quant4_kind kind, const uint8_t * packed, const float * absmax,
                                int64_t n_rows, int64_t n_cols, int64_t blocksize, const float * x, int64_t B,
                                float * y, cudaStream_t stream);

/*
 * RK_OP_NF4_MATMUL (host/backend.h): dst (M,N) = x (M,K) @ dequant(W)^T (+ bias (N)), then p->act (GELU: erf form).
 * x, dst and bias share one dtype: bf16 or f16 (f32 works too); x and dst are rows with a contiguous last dim (outer
 * dims collapse, row strides may exceed the width); p->w lives on the device (rk_nf4_weight_upload).
 *   M <= RK_NF4_GEMV_MAX_B: a GEMV that reads the 4-bit weights once (rk_cuda_nf4_gemv_ex, variant 0).
 *   larger M: W is dequantized into p->scratch (N*K elements of x's dtype, bit-exact with the CPU) and multiplied by
 *   rk_cuda_matmul (cuBLASLt, bias in its epilogue); RK_STATUS_ARG when scratch is NULL or smaller than that.
 * dst must not overlap x, bias or the scratch. Returns RK_STATUS_UNSUPPORTED (message set) for mixed or non-float
 * dtypes, layouts that are not rows, a blocksize that is not a power of two, or what rk_cuda_matmul refuses;
 * RK_STATUS_ARG as rk_nf4_matmul_check. Not thread-safe on one blas context (rk_cuda_matmul's plan cache).
 */
enum rk_status rk_cuda_nf4_matmul(struct rk_cuda_blas * blas, struct rk_tensor * dst, const struct rk_tensor * x,
                                  const struct rk_tensor * bias, const struct rk_nf4_matmul_params * p,
                                  cudaStream_t stream);

/*
 * The GEMV half of rk_cuda_nf4_matmul (1 <= M <= RK_NF4_GEMV_MAX_B), with the kernel variant chosen by the caller
 * (benches and tests run each one; STYLE.md 7):
 *   0  automatic: 2 where it applies, else 1
 *   1  CUDA cores: any arch, dtype, K and alignment (16-byte weight loads when K % 32 == 0)
 *   2  tensor cores: sm_80+, bf16/f16, K % 32 == 0, packed and x 16-byte aligned, x's row stride a multiple of 8
 * Returns RK_STATUS_UNSUPPORTED when the chosen variant does not apply, RK_STATUS_ARG for M outside 1..8 and as
 * rk_cuda_nf4_matmul.
 */
enum rk_status rk_cuda_nf4_gemv_ex(int variant, struct rk_tensor * dst, const struct rk_tensor * x,
                                   const struct rk_tensor * bias, const struct rk_nf4_matmul_params * p,
                                   cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
