/*
 * attn_cuda.h: C ABI of the CUDA attention forward launchers (kernels/attn.cu). Only translation units built
 * with CUDA include it (the CUDA backend's dispatcher, bench/bench_attn.c, the parity tests).
 * Shapes and semantics: see RK_OP_ATTN_FWD in host/backend.h; the design is described in docs/ATTN.md.
 */
#ifndef RK_KERNELS_ATTN_CUDA_H
#define RK_KERNELS_ATTN_CUDA_H

#include <cuda_runtime_api.h>
#include <stdbool.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Attention forward on the GPU, the same op as rk_cpu_attn_fwd (kernels/attn.h).
 *   q   (B, NH,  Tq, HS)   k, v (B, NKV, Tk, HS)   dst (B, NH, Tq, HS)
 *   strided views (byte strides in nb, device pointers in data); the innermost stride must be the element size.
 *   q, k, v, dst: all RK_DTYPE_BF16 or all RK_DTYPE_F16.
 *   mask (B, Tk) i32 device (1 = attend, 0 = padding) or NULL;  lse (B, NH, Tq) f32 device or NULL.
 * Enqueues the work on `stream` and returns without synchronizing; the memory stays the caller's.
 * force_sm75: use the sm_75 code path (fp16 mma.sync m16n8k8, synchronous tile loads) on a newer card too,
 * so that path can be tested; bf16 on that path (and on a real sm_75 card) goes to the plain fp32 kernel.
 * Returns RK_OK once launched, or RK_STATUS_UNSUPPORTED without launching anything (error message set) for a
 * combination it does not handle: f32 or mixed dtypes, an inner stride other than the element size, HS > 256,
 * a device older than sm_75, dimensions past the grid limits. A CUDA launch error aborts (RK_CUDA_CHECK).
 */
enum rk_status rk_cuda_attn_fwd(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                                const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                                const struct rk_attn_params * p, bool force_sm75, cudaStream_t stream);

/*
 * Kernel variants, selected by number for the benchmark and the parity tests (see the header of attn.cu):
 *   0  automatic (what rk_cuda_attn_fwd uses): 5 at HS = 32, 3 at HS = 64, 4 at HS = 128, 1 otherwise
 *   1  plain kernel: one warp per query row, fp32 math, any HS <= 256, any 2-byte alignment
 *   2  tensor cores, 64 query rows x 64 keys per tile (4 warps x 16 rows)
 *   3  tensor cores, 128 query rows x 64 keys (4 warps x 32 rows)
 *   4  tensor cores, 64 query rows x 64 keys, Q re-read from shared memory, 3 CTAs per SM (HS = 128 only)
 *   5  tensor cores, 128 query rows x 128 keys (HS <= 64 only)
 * Variants 2..5 need HS in {32, 64, 128} (4: HS = 128 only; 5: HS <= 64), 16-byte aligned rows and scale > 0;
 * otherwise they return RK_STATUS_UNSUPPORTED. Same contract as rk_cuda_attn_fwd otherwise.
 */
#define RK_ATTN_FWD_N_VARIANTS 6

enum rk_status rk_cuda_attn_fwd_variant(struct rk_tensor * dst, const struct rk_tensor * q,
                                        const struct rk_tensor * k, const struct rk_tensor * v,
                                        const struct rk_tensor * mask, struct rk_tensor * lse,
                                        const struct rk_attn_params * p, bool force_sm75, int variant,
                                        cudaStream_t stream);

/* A short name for a variant ("plain", "tc64x64", ...); "?" when out of range. Cannot fail. */
const char * rk_cuda_attn_fwd_variant_name(int variant);

#ifdef __cplusplus
}
#endif
#endif
