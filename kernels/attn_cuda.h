/*
 * attn_cuda.h: C ABI of the CUDA attention launchers, forward (kernels/attn.cu) and backward (kernels/attn_bwd.cu).
 * Only translation units built with CUDA include it (the CUDA backend's dispatcher, bench/bench_attn.c,
 * bench/bench_attn_bwd.c, the parity tests). Shapes and semantics: see RK_OP_ATTN_FWD and RK_OP_ATTN_BWD in
 * host/backend.h; the design is described in docs/ATTN.md.
 */
#ifndef RK_KERNELS_ATTN_CUDA_H
#define RK_KERNELS_ATTN_CUDA_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>

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
 *   6  Hopper warpgroup MMA (wgmma), 64 query rows x 128 keys at HS = 64, x 64 keys at HS = 128 (sm_90 only)
 *   7  wgmma, 64 query rows x 64 keys at HS = 64, x 128 keys at HS = 128 (sm_90 only)
 *   8  wgmma, two warpgroups: 128 query rows x 64 keys (sm_90 only)
 *   9  wgmma as 6, with the products of consecutive key tiles overlapped with the softmax (sm_90 only)
 *  10  wgmma as 9 with two warpgroups: 128 query rows x 128 keys, one CTA per SM (sm_90 only)
 *  11  wgmma, warp-specialized: TMA loads by a producer warpgroup, two consumer warpgroups, 128 x 128 (sm_90 only;
 *      also needs cuTensorMapEncodeTiled from the driver and 16-byte multiple strides)
 *  12  as 11, the two consumer warpgroups in ping-pong (named barriers; sm_90 only)
 * Variants 2..12 need HS in {32, 64, 128} (4: HS = 128 only; 5: HS <= 64; 6 to 12: HS 64 or 128 on an sm_90 device,
 * not on the sm_75 path), 16-byte aligned rows and scale > 0; otherwise they return RK_STATUS_UNSUPPORTED. Same
 * contract as rk_cuda_attn_fwd otherwise. The environment variable RK_ATTN_FWD_VARIANT=N makes the automatic choice
 * take variant N for every call that N takes (read once per process).
 */
#define RK_ATTN_FWD_N_VARIANTS 13

enum rk_status rk_cuda_attn_fwd_variant(struct rk_tensor * dst, const struct rk_tensor * q,
                                        const struct rk_tensor * k, const struct rk_tensor * v,
                                        const struct rk_tensor * mask, struct rk_tensor * lse,
                                        const struct rk_attn_params * p, bool force_sm75, int variant,
                                        cudaStream_t stream);

/* A short name for a variant ("plain", "tc64x64", ...); "?" when out of range. Cannot fail. */
const char * rk_cuda_attn_fwd_variant_name(int variant);

/*
 * Attention backward on the GPU, the same op as rk_cpu_attn_bwd (kernels/attn.h; RK_OP_ATTN_BWD in host/backend.h):
 *   q, o, dout, dq (B, NH, Tq, HS)   k, v, dk, dv (B, NKV, Tk, HS)   strided views as for the forward
 *   (device pointers, byte strides, innermost stride the element size); all eight bf16, or all eight f16.
 *   lse (B, NH, Tq) f32 device, strided, from the forward (rk_cuda_attn_fwd or rk_cpu_attn_fwd: -inf for a row
 *   with no key); mask (B, Tk) i32 device or NULL; p: exactly the forward's params.
 *   dq, dk, dv are overwritten; with grouped-query heads dk, dv hold the sum over the NH/NKV query heads that read
 *   each kv head. A query row with lse = -inf gets dq = 0; a key no query may attend gets dk = dv = 0.
 *   scratch: device memory of at least rk_cuda_attn_bwd_scratch_bytes(q, k) bytes, 16-byte aligned (NULL is
 *   fine when that is 0), owned by the caller, in use until the enqueued work has run.
 * Deterministic: no atomics; the same inputs give the same bits. Enqueues the work on `stream` and returns
 * without synchronizing. force_sm75: as for rk_cuda_attn_fwd (fp16 m16n8k8 tensor-core path; bf16 takes the plain
 * kernels there). Returns RK_OK once launched; RK_STATUS_ARG for shapes that do not match or a missing or too
 * small scratch; RK_STATUS_UNSUPPORTED (nothing launched, message set) for f32 or mixed dtypes, an inner stride
 * other than the element size, HS > 256, a device older than sm_75, dimensions past the grid limits. A CUDA launch
 * error aborts (RK_CUDA_CHECK).
 */
enum rk_status rk_cuda_attn_bwd(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv,
                                const struct rk_tensor * q, const struct rk_tensor * k, const struct rk_tensor * v,
                                const struct rk_tensor * o, const struct rk_tensor * dout, const struct rk_tensor * lse,
                                const struct rk_tensor * mask, const struct rk_attn_params * p, void * scratch,
                                size_t scratch_bytes, bool force_sm75, cudaStream_t stream);

/*
 * Bytes of device scratch rk_cuda_attn_bwd needs for these q (B, NH, Tq, HS) and k (B, NKV, Tk, HS): two fp32
 * values per query row (D = rowsum(dout * o) and lse * log2(e)), rounded up to 256 bytes; 0 when Tq is 0. The same
 * for every variant. k is not used today (kept so a later variant can size per-kv-head partials). Cannot fail.
 */
size_t rk_cuda_attn_bwd_scratch_bytes(const struct rk_tensor * q, const struct rk_tensor * k);

/*
 * Backward kernel variants (see the header of attn_bwd.cu):
 *   0  automatic (what rk_cuda_attn_bwd uses): 2 when HS is 32, 64 or 128, every row 16-byte aligned and the
 *      scale finite (f16 only on the sm_75 path); 1 otherwise
 *   1  plain kernels: one warp per query row (dq) and per key row (dk, dv), fp32 math, any HS <= 256, any 2-byte
 *      alignment
 *   2  tensor cores: dq kernel over 64-row query blocks, dk/dv kernel over 64-row key blocks
 * Same contract as rk_cuda_attn_bwd otherwise; a variant that cannot take the call returns RK_STATUS_UNSUPPORTED.
 */
#define RK_ATTN_BWD_N_VARIANTS 3

enum rk_status rk_cuda_attn_bwd_variant(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv,
                                        const struct rk_tensor * q, const struct rk_tensor * k,
                                        const struct rk_tensor * v, const struct rk_tensor * o,
                                        const struct rk_tensor * dout, const struct rk_tensor * lse,
                                        const struct rk_tensor * mask, const struct rk_attn_params * p, void * scratch,
                                        size_t scratch_bytes, bool force_sm75, int variant, cudaStream_t stream);

/* A short name for a backward variant ("auto", "plain", "tc64"); "?" when out of range. Cannot fail. */
const char * rk_cuda_attn_bwd_variant_name(int variant);

#ifdef __cplusplus
}
#endif
#endif
