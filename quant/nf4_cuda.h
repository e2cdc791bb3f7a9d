/*
 * nf4_cuda.h: C ABI of the NF4 / FP4 CUDA launchers in quant/nf4.cu (formats: quant/nf4.h, quant/README.md).
 * All pointers are device pointers; every launch is checked (RK_CUDA_CHECK) and aborts on a CUDA fault.
 * Not yet wired into host/backend_cuda.c: the dispatcher should call these for RK_OP_NF4_MATMUL / dequant.
 */
#ifndef RK_QUANT_NF4_CUDA_H
#define RK_QUANT_NF4_CUDA_H

#include "quant/nf4.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

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
 * rk_cpu_nf4_dequantize(_bf16). 16-byte loads when packed is 16-byte aligned and n % 32 == 0.
 */
enum rk_status rk_cuda_nf4_dequantize(enum rk_quant4_kind kind, const uint8_t * packed, const float * absmax,
                                      int64_t n, int64_t blocksize, void * out, enum rk_dtype out_dtype,
                                      cudaStream_t stream);

/*
 * y = x W^T for a small batch: x is (B, n_cols) fp32, W (n_rows, n_cols) 4-bit as above, y (B, n_rows) fp32;
 * 1 <= B <= RK_NF4_GEMV_MAX_B. One warp per output row reads the row's 4-bit weights once (16-byte loads when
 * n_cols % 32 == 0 and packed is 16-byte aligned), fp32 accumulation. n_cols must be even (rows start on a byte).
 * Returns RK_STATUS_ARG for B out of range or odd n_cols, else RK_OK.
 */
#define RK_NF4_GEMV_MAX_B 8
enum rk_status rk_cuda_nf4_gemv(enum rk_quant4_kind kind, const uint8_t * packed, const float * absmax,
                                int64_t n_rows, int64_t n_cols, int64_t blocksize, const float * x, int64_t B,
                                float * y, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
