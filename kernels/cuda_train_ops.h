/*
 * cuda_train_ops.h: C ABI of the CUDA launchers used by training: the backward of the embeddings, the two losses,
 * dropout (kernels/embed_bwd.cu, loss.cu, dropout.cu: ops RK_OP_EMBED_BWD, RK_OP_BCE_LOGITS, RK_OP_SOFTMAX_XENT,
 * RK_OP_DROPOUT, dispatched by host/backend_cuda.c) and the optimizer kernels (kernels/optim.cu: the CUDA twins of
 * rk_cpu_adamw_update, rk_cpu_sumsq and rk_cpu_scale in host/train/optim.h; launchers only, not ops).
 * Only built with CUDA (-DRK_HAVE_CUDA).
 *
 * The conventions of kernels/cuda_ops.h hold: f32/f16/bf16 tensors with fp32 math, RK_STATUS_UNSUPPORTED (message
 * set, nothing launched) for dtypes and layouts a launcher does not handle, RK_STATUS_ARG for inconsistent shapes,
 * every launch checked, asynchronous on `stream`, nothing allocated (a launcher that needs device scratch takes it
 * from the caller and says how much). Every result here is deterministic: the same inputs give the same bits on
 * every run (no order-dependent float atomics; fixed reduction trees whose shape depends on the sizes only).
 */
#ifndef RK_KERNELS_CUDA_TRAIN_OPS_H
#define RK_KERNELS_CUDA_TRAIN_OPS_H

#include "backend.h"
#include "train/optim.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * EMBED_BWD (kernels/embed_bwd.cu): dwte (V,C) += dout rows scattered by ids; dwpe (P,C) += by position
 * pos_offset + t (or NULL); dwtt (NTT,C) += by type_ids (type 0 when type_ids is NULL), or NULL.
 * dout (B,T,C) rows, any float dtype; the three tables rows of one float dtype (may differ from dout's); ids and
 * type_ids (B,T) contiguous i32 on the device.
 * Deterministic: each table element is owned by one thread, which adds the tokens of its row in token order to the
 * old value in fp32 and rounds once (f32 tables: bit-identical to rk_cpu_embed_bwd).
 * Ids are NOT range-checked on the host (they live on the device): a token whose id (or type id) is outside its
 * table is skipped for that table (nothing written out of bounds; the CPU reference returns RK_STATUS_ARG instead).
 * Positions are checked here: RK_STATUS_ARG when pos_offset + T exceeds the rows of dwpe.
 */
enum rk_status rk_cuda_embed_bwd(struct rk_tensor * dwte, struct rk_tensor * dwpe, struct rk_tensor * dwtt,
                                 const struct rk_tensor * dout, const struct rk_tensor * ids,
                                 const struct rk_tensor * type_ids, const struct rk_embed_params * p,
                                 cudaStream_t stream);

/*
 * BCE_LOGITS (kernels/loss.cu): loss (1) f32 = mean over N*L of pw*y*softplus(-x) + (1-y)*softplus(x) (stable
 * softplus); dlogits (N,L) = dlogits_scale * d loss / d logits, or NULL; may alias logits (exactly).
 * logits, targets, dlogits: rows of one float dtype; pos_weight (L) contiguous, same dtype, or NULL.
 * dlogits_scale multiplies the gradient only (not the loss): the dynamic loss scale of fp16 training, 1 otherwise.
 * One block does it all (a fixed reduction tree: deterministic); sized for classifier heads (N*L up to ~10^6).
 */
enum rk_status rk_cuda_bce_logits(struct rk_tensor * loss, struct rk_tensor * dlogits,
                                  const struct rk_tensor * logits, const struct rk_tensor * targets,
                                  const struct rk_tensor * pos_weight, float dlogits_scale, cudaStream_t stream);

/* Floats of device scratch rk_cuda_softmax_xent needs for N rows (N + 1). Cannot fail. */
int64_t rk_cuda_softmax_xent_scratch_size(int64_t N);

/*
 * SOFTMAX_XENT (kernels/loss.cu): loss (1) f32 = mean over the rows whose target is not RK_XENT_IGNORE_INDEX of
 * logsumexp(x) - x[target] (0 when every row is ignored); dlogits (N,V) = dlogits_scale * d loss / d logits (zero
 * rows for ignored targets), or NULL; may alias logits (exactly). logits, dlogits rows of one float dtype; targets
 * (N) contiguous i32 on the device. dlogits_scale as in rk_cuda_bce_logits.
 * One block per row: an online max / sum-of-exp pass over the row, then a second read writes dlogits (no
 * probability buffer, so V = 50000 costs two reads and one write of the row).
 * scratch: at least rk_cuda_softmax_xent_scratch_size(N) floats of device memory (row losses and the row count),
 * RK_STATUS_ARG when smaller. The row losses are summed by one block in row order: deterministic.
 * A target outside [0,V) that is not the ignore index cannot be reported from the device: that row's loss and its
 * dlogits row are NaN, so the mean loss is NaN (the CPU reference returns RK_STATUS_ARG instead).
 */
enum rk_status rk_cuda_softmax_xent(struct rk_tensor * loss, struct rk_tensor * dlogits,
                                    const struct rk_tensor * logits, const struct rk_tensor * targets,
                                    float dlogits_scale, float * scratch, int64_t scratch_n, cudaStream_t stream);

/*
 * DROPOUT (kernels/dropout.cu): dst = x * keep / (1 - p), keep = rk_dropout_uniform(seed, offset, i) >= p for the
 * logical (row-major) index i: the same Philox4x32-10 stream as rk_cpu_dropout, so the keep masks are
 * bit-identical; the product is taken in fp32 and rounded once to the dtype (f32: bit-identical values).
 * dst, x: rows of one float dtype, same shape; dst may alias x (exactly). p = 1 gives zeros. RK_STATUS_ARG when p
 * is outside [0, 1].
 */
enum rk_status rk_cuda_dropout(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_dropout_params * p,
                               cudaStream_t stream);

/* ---- optimizer kernels (kernels/optim.cu); flat device buffers, not ops -------------------------------------- */

/*
 * AdamW on n elements: p, m, v fp32 master weights and moments, updated in place; g the gradient in g_dtype
 * (f32, bf16 or f16), read as fp32 and multiplied by grad_mul first (fold 1/accum, the clip coefficient and the loss
 * scale's reciprocal into one factor; 1 for none). Then exactly rk_cpu_adamw_update's arithmetic, in its order and
 * rounding (correctly rounded sqrt and division, no contraction into FMAs beyond the one fma it has), so f32 results
 * match the CPU reference bit for bit (torch's MKL sqrt may differ in the last bit). When compute is not NULL the
 * updated p is written there rounded to nearest even in compute_dtype (bf16, f16 or f32).
 * RK_STATUS_UNSUPPORTED for another g_dtype or compute_dtype. Cannot fail otherwise.
 */
enum rk_status rk_cuda_adamw_update(float * p, const void * g, enum rk_dtype g_dtype, float * m, float * v, int64_t n,
                                    const struct rk_adamw_scalars * s, float grad_mul, void * compute,
                                    enum rk_dtype compute_dtype, cudaStream_t stream);

/* Floats of device scratch rk_cuda_sumsq needs for n elements (at most RK_CUDA_SUMSQ_MAX_BLOCKS). Cannot fail. */
#define RK_CUDA_SUMSQ_MAX_BLOCKS 1024
int64_t rk_cuda_sumsq_scratch_size(int64_t n);

/*
 * *out_dev (one float on the device) = sum of x[i]^2 over n elements of dtype (f32, bf16, f16). Each thread sums in
 * double, blocks reduce in double and leave one partial each in scratch (rounded to float), and one block adds the
 * partials in order: deterministic, the partition depending on n only. inf and NaN propagate (an inf or NaN in x
 * gives an inf or NaN sum), so the caller sees a non-finite gradient in the norm. scratch: at least
 * rk_cuda_sumsq_scratch_size(n) floats of device memory, else RK_STATUS_ARG. RK_STATUS_UNSUPPORTED for another dtype.
 */
enum rk_status rk_cuda_sumsq(const void * x, enum rk_dtype dtype, int64_t n, float * out_dev, float * scratch,
                             int64_t scratch_n, cudaStream_t stream);

/* x[i] = x[i] * s over n elements of dtype (f32, bf16, f16), in fp32, rounded once. RK_STATUS_UNSUPPORTED for
 * another dtype. */
enum rk_status rk_cuda_scale(void * x, enum rk_dtype dtype, int64_t n, float s, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

/* ================================================================================================
 * device helpers shared by the training kernels (C++ only)
 * ================================================================================================ */
#ifdef __CUDACC__

/*
 * Sum of v over the block (blockDim.x a multiple of 32, at most 1024) in a fixed tree: lanes by shuffles, then the
 * warps' sums by warp 0 in warp order. smem: 32 elements of shared memory. Every thread gets the total. Contains
 * __syncthreads(): call from all threads of the block.
 */
template <typename A> __device__ __forceinline__ A rk_block_sum(A v, A * smem) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* smem may still be read from an earlier call */
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nw ? smem[lane] : (A) 0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) smem[0] = v;
    }
    __syncthreads();
    return smem[0];
}

#endif /* __CUDACC__ */
#endif
