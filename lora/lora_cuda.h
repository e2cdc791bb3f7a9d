/*
 * lora_cuda.h: C ABI of the CUDA launchers of RK_OP_LORA_FWD / RK_OP_LORA_BWD (lora/lora.cu). Shapes and semantics
 * are the op contract in host/backend.h; the CPU reference is rk_cpu_lora_fwd_op / rk_cpu_lora_bwd_op (lora/lora.h).
 * Only built with CUDA (-DRK_HAVE_CUDA); host/backend_cuda.c is the usual caller, bench/bench_lora.c times both
 * variants.
 *
 * Both launchers:
 *   - take f16 or bf16 tensors, all of x's dtype (bf16 needs sm_80: below that RK_STATUS_UNSUPPORTED), with fp32
 *     accumulation; dA / dB may also be f32 (master gradients). f32 activations are not supported on CUDA.
 *   - x, y, dy, dx are rows with a contiguous last dim and any row stride (rk_rows_of); u (M,r), A (r,K), B (N,r),
 *     dA, dB are contiguous. r <= 64 (RK_STATUS_UNSUPPORTED above), any M, K, N.
 *   - derive the dropout keep mask from (p->dropout, p->seed, p->offset) with the DROPOUT op's Philox rule for
 *     flat index m*K + k, as the CPU does, so the CPU and CUDA ops drop the same elements;
 *   - are deterministic (no float atomics: every reduction has one owner and a fixed order), asynchronous on
 *     `stream`, allocate nothing, check every launch, and return RK_STATUS_ARG / RK_STATUS_UNSUPPORTED (message
 *     set, nothing launched) for bad or unsupported arguments.
 */
#ifndef RK_LORA_CUDA_H
#define RK_LORA_CUDA_H

#include "backend.h"

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Implementations, for the benchmark's fused-versus-unfused comparison (lora/lora.cu's header describes them). */
enum rk_lora_variant {
    RK_LORA_FUSED = 0, /* lora.cu's own kernels: x read once in the forward; 4 launches in the backward */
    RK_LORA_UNFUSED,   /* the reference: cuBLAS GEMMs plus elementwise dropout kernels, as PEFT runs it */
    RK_LORA_VARIANT_COUNT
};

/* How to run a call: the variant and its resources. NULL where a launcher takes it = fused, no scratch. */
struct rk_cuda_lora_ws {
    enum rk_lora_variant variant;
    cublasHandle_t       cublas;        /* RK_LORA_UNFUSED: the caller's handle (its stream is set to `stream`) */
    void *               scratch;       /* device memory of at least rk_cuda_lora_scratch_bytes(...) bytes */
    size_t               scratch_bytes;
};

/*
 * The variant the CUDA backend's LORA_FWD / LORA_BWD run (host/backend_cuda.c): RK_LORA_VARIANT=1 (fused) or 2
 * (unfused) when set (read once); else the measured choice (lora/lora.cu header, docs/PERF.md): unfused, except the
 * fused backward with dropout > 0. Cannot fail.
 */
enum rk_lora_variant rk_cuda_lora_pick(bool backward, float dropout);

/*
 * Device scratch a call needs, in bytes (0: none), for x (M,K), B (N,r), activations of dtype dt:
 *   fused forward: 0;
 *   fused backward: the partial sums of g = dy B (per column split of N), of dB (per 128-row tile of M) and of
 *     dA (per row split of M), all fp32, plus g itself in dt: about 4 r (ns M + N M/128 + ms K) + 2 M r bytes,
 *     where ns, ms <= 256 come from the shape (lora.cu: plan_bwd);
 *   unfused: dropout(x) or (g A) (M,K) and u or g (M,r), in dt.
 * Cannot fail.
 */
size_t rk_cuda_lora_scratch_bytes(enum rk_lora_variant variant, bool backward, int64_t M, int64_t K, int64_t N,
                                  int64_t r, enum rk_dtype dt);

/*
 * LORA_FWD: y (M,N) += s * u B^T, u = dropout(x) A^T (M,r), written to u unless u is NULL. ws NULL or fused: one
 * launch that reads x once; unfused: ws->cublas and ws->scratch required (RK_STATUS_ARG without).
 */
enum rk_status rk_cuda_lora_fwd(struct rk_tensor * y, struct rk_tensor * u, const struct rk_tensor * x,
                                const struct rk_tensor * A, const struct rk_tensor * B,
                                const struct rk_lora_params * p, const struct rk_cuda_lora_ws * ws,
                                cudaStream_t stream);

/*
 * LORA_BWD: dx (M,K) += s ((dy B) A) * keep/(1-p) (dx NULL or dx->data NULL: skipped); p->dA (r,K) +=
 * s (dy B)^T dropout(x) and p->dB (N,r) += s dy^T u (either NULL: skipped). Every gradient accumulates. Both
 * variants need ws with scratch (RK_STATUS_ARG without).
 */
enum rk_status rk_cuda_lora_bwd(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * x,
                                const struct rk_tensor * u, const struct rk_tensor * A, const struct rk_tensor * B,
                                const struct rk_lora_params * p, const struct rk_cuda_lora_ws * ws,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
