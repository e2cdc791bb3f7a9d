/*
 * optim.cu: the CUDA twins of the element-wise optimizer kernels of host/train/optim.h: AdamW (rk_cpu_adamw_update,
 * with the gradient in f32/bf16/f16, a gradient multiplier and an optional compute copy), the sum of squares behind
 * the global-norm clip (rk_cpu_sumsq) and the scaling of a buffer (rk_cpu_scale). The per-step scalars are computed
 * on the host exactly as for the CPU (rk_adamw_scalars). Launchers only: they work on flat device buffers, not
 * tensors, and are not ops. Parity cases ADAMW(...), SUMSQ(...), SCALE(...) in tests/test_ops_train.c.
 *
 * AdamW uses the round-to-nearest intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn) for every operation the
 * CPU reference rounds separately, so nvcc cannot contract a product and a sum into an FMA (which the CPU, built as
 * ISO C11 without contraction, does not do): f32 results are bit-identical to rk_cpu_adamw_update.
 *
 * Kernel variants:
 *   adamw_kernel_v1<TG, TC>:     grid-stride over the elements, one thread per element per step.
 *   sumsq_partial_kernel_v1<T>:  G blocks (G from n only, at most RK_CUDA_SUMSQ_MAX_BLOCKS), each summing a fixed
 *                                strided share in double; one partial per block into scratch.
 *   sumsq_final_kernel_v1:       one block adds the G partials in double in a fixed tree.
 *   scale_kernel_v1<T>:          grid-stride x *= s.
 * Bench: none yet.
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"

#define RK_OPTIM_BLOCK_SIZE 256
#define RK_SUMSQ_BLOCK_SIZE 256
#define RK_SUMSQ_PER_THREAD 16 /* elements per thread before another block is added */
#define RK_OPTIM_MAX_GRID (1 << 16)

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

template <typename TG, typename TC>
static __global__ void adamw_kernel_v1(float * p, const TG * g, float * m, float * v, int64_t n,
                                       const struct rk_adamw_scalars s, float grad_mul, TC * compute) {
    for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        // rk_cpu_adamw_update, operation for operation
        const float gi    = __fmul_rn(rk_to_f32(g[i]), grad_mul);
        const float pi    = __fmul_rn(p[i], s.decay_mul);
        const float mi    = fmaf(s.one_minus_beta1, __fsub_rn(gi, m[i]), m[i]);
        const float vi    = fmaf(__fmul_rn(s.one_minus_beta2, gi), gi, __fmul_rn(v[i], s.beta2));
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
        const float pn    = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, mi), denom));
        m[i] = mi;
        v[i] = vi;
        p[i] = pn;
        if (compute) compute[i] = rk_from_f32<TC>(pn);
    }
}

/* scratch[blockIdx.x] = sum over this block's share of x[i]^2 (double inside, rounded to float). */
template <typename T>
static __global__ void sumsq_partial_kernel_v1(const T * x, int64_t n, float * partial) {
    __shared__ double smem[32];
    double            sum = 0.0;
    for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        const double xi = (double) rk_to_f32(x[i]);
        sum += xi * xi;
    }
    const double total = rk_block_sum(sum, smem);
    if (threadIdx.x == 0) partial[blockIdx.x] = (float) total;
}

static __global__ void sumsq_final_kernel_v1(const float * partial, int64_t n_partial, float * out) {
    __shared__ double smem[32];
    double            sum = 0.0;
    for (int64_t i = threadIdx.x; i < n_partial; i += blockDim.x) sum += (double) partial[i];
    const double total = rk_block_sum(sum, smem);
    if (threadIdx.x == 0) *out = (float) total;
}

template <typename T> static __global__ void scale_kernel_v1(T * x, int64_t n, float s) {
    for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        x[i] = rk_from_f32<T>(rk_to_f32(x[i]) * s);
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* Blocks for a grid-stride loop over n elements. */
static unsigned grid_for(int64_t n, int block) {
    const int64_t b = RK_CEIL_DIV(n, (int64_t) block);
    return (unsigned) (b < 1 ? 1 : b > RK_OPTIM_MAX_GRID ? RK_OPTIM_MAX_GRID : b);
}

template <typename TG, typename TC>
static void adamw_launch(float * p, const TG * g, float * m, float * v, int64_t n, const struct rk_adamw_scalars & s,
                         float grad_mul, TC * compute, cudaStream_t stream) {
    adamw_kernel_v1<TG, TC><<<grid_for(n, RK_OPTIM_BLOCK_SIZE), RK_OPTIM_BLOCK_SIZE, 0, stream>>>(p, g, m, v, n, s,
                                                                                                 grad_mul, compute);
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_adamw_update(float * p, const void * g, enum rk_dtype g_dtype, float * m, float * v,
                                               int64_t n, const struct rk_adamw_scalars * s, float grad_mul,
                                               void * compute, enum rk_dtype compute_dtype, cudaStream_t stream) {
    // p, m, v (n) f32; g (n) g_dtype; compute (n) compute_dtype or NULL; all on the device
    if (!rk_is_float_dtype(g_dtype) || (compute && !rk_is_float_dtype(compute_dtype))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda adamw: gradient %s / compute copy %s: want f32, bf16 or f16",
                            rk_dtype_traits[g_dtype].name, compute ? rk_dtype_traits[compute_dtype].name : "none");
    }
    if (n <= 0) return RK_OK;
    const enum rk_dtype cdt = compute ? compute_dtype : RK_DTYPE_F32; /* no copy: TC is a placeholder */
    RK_DISPATCH_FLOAT(g_dtype, TG, RK_DISPATCH_FLOAT(cdt, TC,
        adamw_launch<TG, TC>(p, (const TG *) g, m, v, n, *s, grad_mul, (TC *) compute, stream)));
    return RK_OK;
}

extern "C" int64_t rk_cuda_sumsq_scratch_size(int64_t n) {
    const int64_t b = RK_CEIL_DIV(n, (int64_t) RK_SUMSQ_BLOCK_SIZE * RK_SUMSQ_PER_THREAD);
    return b < 1 ? 1 : b > RK_CUDA_SUMSQ_MAX_BLOCKS ? RK_CUDA_SUMSQ_MAX_BLOCKS : b;
}

extern "C" enum rk_status rk_cuda_sumsq(const void * x, enum rk_dtype dtype, int64_t n, float * out_dev,
                                        float * scratch, int64_t scratch_n, cudaStream_t stream) {
    // x (n) dtype; out_dev (1) f32; scratch (rk_cuda_sumsq_scratch_size(n)) f32; all on the device
    if (!rk_is_float_dtype(dtype)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda sumsq: dtype %s: want f32, bf16 or f16",
                            rk_dtype_traits[dtype].name);
    }
    const int64_t G = rk_cuda_sumsq_scratch_size(n);
    if (!scratch || scratch_n < G) {
        return rk_set_error(RK_STATUS_ARG, "cuda sumsq: scratch of %lld floats, %lld needed", (long long) scratch_n,
                            (long long) G);
    }
    const int64_t nn = n > 0 ? n : 0; /* n <= 0: every partial is 0 */
    RK_DISPATCH_FLOAT(dtype, T,
        sumsq_partial_kernel_v1<T><<<(unsigned) G, RK_SUMSQ_BLOCK_SIZE, 0, stream>>>((const T *) x, nn, scratch);
        RK_CUDA_CHECK(cudaGetLastError()));
    sumsq_final_kernel_v1<<<1, 1024, 0, stream>>>(scratch, G, out_dev);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

extern "C" enum rk_status rk_cuda_scale(void * x, enum rk_dtype dtype, int64_t n, float s, cudaStream_t stream) {
    // x (n) dtype on the device, in place
    if (!rk_is_float_dtype(dtype)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda scale: dtype %s: want f32, bf16 or f16",
                            rk_dtype_traits[dtype].name);
    }
    if (n <= 0) return RK_OK;
    RK_DISPATCH_FLOAT(dtype, T,
        scale_kernel_v1<T><<<grid_for(n, RK_OPTIM_BLOCK_SIZE), RK_OPTIM_BLOCK_SIZE, 0, stream>>>((T *) x, n, s);
        RK_CUDA_CHECK(cudaGetLastError()));
    return RK_OK;
}
