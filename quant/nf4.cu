/*
 * nf4.cu: CUDA kernels for bitsandbytes-compatible NF4 / FP4 weights (quant/nf4.h; C ABI in quant/nf4_cuda.h).
 *
 * Kernels:
 *   nf4_absmax_kernel    double-quantized absmax -> fp32 (one thread per block)
 *   nf4_dequant_kernel   4-bit -> f32/bf16/f16; one thread per 16 packed bytes (32 values), one 16-byte load
 *   nf4_gemv_kernel      y = x W^T, batch 1..8; one warp per output row, 16-byte weight loads, codebook in
 *                        shared memory, fp32 accumulation, warp-shuffle reduction
 * Products use __fmul_rn / __fadd_rn so nvcc cannot contract them into FMAs: dequantization is then bit-exact
 * with the CPU reference. Verified only by compilation so far (tests/test_quant.c has the parity cases).
 */
#include "quant/nf4_cuda.h"

#include "cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define RK_NF4_BLOCK_SIZE 256 /* threads per block for the elementwise kernels */
#define RK_NF4_GEMV_WARPS 4   /* output rows per thread block in the GEMV */

/* ------------------------------------------------------------------------------------------------------------
 * CUDA kernels */

static __device__ __forceinline__ const float * nf4_table(int kind) {
    return kind == RK_QUANT4_NF4 ? rk_nf4_code : rk_fp4_code;
}

static __global__ void nf4_absmax_kernel(const uint8_t * q, const float * scale, const float * code8, float offset,
                                         int64_t n_blocks, int64_t nested_bs, float * absmax) {
    int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_blocks) return;
    absmax[i] = __fadd_rn(__fmul_rn(code8[q[i]], scale[i / nested_bs]), offset);
}

template <typename T> static __device__ __forceinline__ T nf4_from_f32(float v);
template <> __device__ __forceinline__ float nf4_from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 nf4_from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half nf4_from_f32<__half>(float v) { return __float2half_rn(v); }

// packed is (n+1)/2 bytes, absmax (ceil(n/blocksize)), out (n)
template <typename T>
static __global__ void nf4_dequant_kernel(int kind, const uint8_t * packed, const float * absmax, int64_t n,
                                          int64_t blocksize, T * out, bool vec16) {
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = nf4_table(kind)[threadIdx.x];
    __syncthreads();
    const int64_t g    = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; /* group of 16 bytes = 32 values */
    const int64_t base = g * 32;
    if (base >= n) return;
    uint8_t bytes[16];
    if (vec16) {
        /* n % 32 == 0 and aligned: the whole group is in range; blocksize >= 64 so one absmax covers it */
        uint4 v = *reinterpret_cast<const uint4 *>(packed + g * 16);
        memcpy(bytes, &v, 16);
    } else {
        for (int j = 0; j < 16; j++) bytes[j] = base + 2 * j < n ? packed[g * 16 + j] : 0;
    }
    const float am = absmax[base / blocksize];
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int64_t i = base + 2 * j;
        if (i < n) out[i] = nf4_from_f32<T>(__fmul_rn(code[bytes[j] >> 4], am));
        if (i + 1 < n) out[i + 1] = nf4_from_f32<T>(__fmul_rn(code[bytes[j] & 0x0F], am));
    }
}

// x is (B, n_cols), packed rows of n_cols/2 bytes, y is (B, n_rows)
static __global__ void nf4_gemv_kernel(int kind, const uint8_t * packed, const float * absmax, int64_t n_rows,
                                       int64_t n_cols, int64_t blocksize, const float * x, int B, float * y,
                                       bool vec16) {
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = nf4_table(kind)[threadIdx.x];
    __syncthreads();
    const int     lane = threadIdx.x % 32;
    const int64_t row  = (int64_t) blockIdx.x * RK_NF4_GEMV_WARPS + threadIdx.x / 32;
    if (row >= n_rows) return;
    const uint8_t * wrow = packed + row * (n_cols / 2);
    const int64_t   e0   = row * n_cols; /* flat index of the row's first element (absmax blocks are flat) */
    float           acc[RK_NF4_GEMV_MAX_B];
#pragma unroll
    for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) acc[b] = 0.0f;

    if (vec16) {
        /* each lane: 16 bytes = 32 consecutive columns per step; a warp covers 1024 columns per step */
        for (int64_t c0 = (int64_t) lane * 32; c0 < n_cols; c0 += 32 * 32) {
            uint4   v = *reinterpret_cast<const uint4 *>(wrow + c0 / 2);
            uint8_t bytes[16];
            memcpy(bytes, &v, 16);
            const float am = absmax[(e0 + c0) / blocksize];
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float w0 = __fmul_rn(code[bytes[j] >> 4], am);
                const float w1 = __fmul_rn(code[bytes[j] & 0x0F], am);
#pragma unroll
                for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) {
                    if (b < B) {
                        const float * xb = x + (int64_t) b * n_cols + c0 + 2 * j;
                        acc[b] += w0 * xb[0] + w1 * xb[1];
                    }
                }
            }
        }
    } else {
        for (int64_t k = lane; k < n_cols / 2; k += 32) {
            const uint8_t byte = wrow[k];
            const float   w0   = __fmul_rn(code[byte >> 4], absmax[(e0 + 2 * k) / blocksize]);
            const float   w1   = __fmul_rn(code[byte & 0x0F], absmax[(e0 + 2 * k + 1) / blocksize]);
#pragma unroll
            for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) {
                if (b < B) acc[b] += w0 * x[(int64_t) b * n_cols + 2 * k] + w1 * x[(int64_t) b * n_cols + 2 * k + 1];
            }
        }
    }
#pragma unroll
    for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) {
        float s = acc[b];
        for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
        if (lane == 0 && b < B) y[(int64_t) b * n_rows + row] = s;
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * kernel launchers */

extern "C" void rk_cuda_nf4_absmax(const uint8_t * q, const float * scale, const float * code8, float offset,
                                   int64_t n_blocks, int64_t nested_bs, float * absmax, cudaStream_t stream) {
    if (n_blocks <= 0) return;
    const unsigned grid = (unsigned) ((n_blocks + RK_NF4_BLOCK_SIZE - 1) / RK_NF4_BLOCK_SIZE);
    nf4_absmax_kernel<<<grid, RK_NF4_BLOCK_SIZE, 0, stream>>>(q, scale, code8, offset, n_blocks, nested_bs, absmax);
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_nf4_dequantize(enum rk_quant4_kind kind, const uint8_t * packed,
                                                 const float * absmax, int64_t n, int64_t blocksize, void * out,
                                                 enum rk_dtype out_dtype, cudaStream_t stream) {
    if (n <= 0 || blocksize < 32 || (blocksize & (blocksize - 1)) != 0) {
        return rk_set_error(RK_STATUS_ARG, "nf4_dequantize: n %lld, blocksize %lld", (long long) n,
                            (long long) blocksize);
    }
    const int64_t  groups = (n + 31) / 32;
    const unsigned grid   = (unsigned) ((groups + RK_NF4_BLOCK_SIZE - 1) / RK_NF4_BLOCK_SIZE);
    const bool     vec16  = n % 32 == 0 && ((uintptr_t) packed % 16) == 0;
    switch (out_dtype) {
    case RK_DTYPE_F32:
        nf4_dequant_kernel<float><<<grid, RK_NF4_BLOCK_SIZE, 0, stream>>>((int) kind, packed, absmax, n, blocksize,
                                                                         (float *) out, vec16);
        break;
    case RK_DTYPE_BF16:
        nf4_dequant_kernel<__nv_bfloat16><<<grid, RK_NF4_BLOCK_SIZE, 0, stream>>>(
            (int) kind, packed, absmax, n, blocksize, (__nv_bfloat16 *) out, vec16);
        break;
    case RK_DTYPE_F16:
        nf4_dequant_kernel<__half><<<grid, RK_NF4_BLOCK_SIZE, 0, stream>>>((int) kind, packed, absmax, n, blocksize,
                                                                          (__half *) out, vec16);
        break;
    default:
        return rk_set_error(RK_STATUS_UNSUPPORTED, "nf4_dequantize: output dtype %d", (int) out_dtype);
    }
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

extern "C" enum rk_status rk_cuda_nf4_gemv(enum rk_quant4_kind kind, const uint8_t * packed, const float * absmax,
                                           int64_t n_rows, int64_t n_cols, int64_t blocksize, const float * x,
                                           int64_t B, float * y, cudaStream_t stream) {
    if (B < 1 || B > RK_NF4_GEMV_MAX_B || n_cols % 2 != 0 || n_rows < 1) {
        return rk_set_error(RK_STATUS_ARG, "nf4_gemv: B %lld (1..%d), n_cols %lld (even)", (long long) B,
                            RK_NF4_GEMV_MAX_B, (long long) n_cols);
    }
    const bool     vec16 = n_cols % 32 == 0 && ((uintptr_t) packed % 16) == 0 && blocksize >= 32;
    const unsigned grid  = (unsigned) ((n_rows + RK_NF4_GEMV_WARPS - 1) / RK_NF4_GEMV_WARPS);
    nf4_gemv_kernel<<<grid, 32 * RK_NF4_GEMV_WARPS, 0, stream>>>((int) kind, packed, absmax, n_rows, n_cols,
                                                                 blocksize, x, (int) B, y, vec16);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}
