/*
 * dropout.cu: CUDA RK_OP_DROPOUT (forward, and backward when applied to dout with the same params): y = x * keep /
 * (1 - p). The keep mask comes from the same Philox4x32-10 code as the CPU reference (kernels/dropout.h, compiled
 * here as __host__ __device__): element i (logical row-major index) is kept when the 24-bit uniform drawn from word
 * i % 4 of block (key = seed, counter = (i / 4, offset)) is >= p. The masks are therefore bit-identical to
 * rk_cpu_dropout's, and for f32 so are the values (x * scale, scale = 1.0f / (1.0f - p) in f32 on the host, as the
 * CPU computes it). Parity cases DROPOUT(...) in tests/test_ops_train.c compare the keep pattern exactly.
 *
 * Kernel variants:
 *   dropout_kernel_v1<T, DENSE>: one thread per Philox block (4 consecutive logical elements), grid-stride.
 *                                DENSE: one flat buffer (no row/column split of the index) and 4-element vector
 *                                access when aligned; otherwise rows with strides.
 * Bench: none yet.
 */
#define RK_HOST_DEVICE __host__ __device__
#include "kernels/dropout.h"

#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"

#define RK_DROPOUT_BLOCK_SIZE 256

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

struct dropout_args {
    int64_t  n;                    /* elements */
    int64_t  ncols;                /* row width (DENSE: n) */
    int64_t  x_stride, d_stride;   /* row strides, elements */
    float    p;
    float    scale;                /* 1 / (1 - p), rounded to f32 as the CPU computes it */
    uint64_t seed, offset;
    bool     zero;                 /* p >= 1: every element dropped */
};

template <typename T, bool DENSE>
static __global__ void dropout_kernel_v1(T * dst, const T * x, const dropout_args a, bool vec4) {
    const uint32_t key[2] = { (uint32_t) a.seed, (uint32_t) (a.seed >> 32) };
    const int64_t  nblk   = (a.n + 3) / 4;
    for (int64_t g = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; g < nblk; g += (int64_t) gridDim.x * blockDim.x) {
        uint32_t r[4] = { 0, 0, 0, 0 };
        if (!a.zero) {
            const uint32_t ctr[4] = { (uint32_t) g, (uint32_t) ((uint64_t) g >> 32), (uint32_t) a.offset,
                                      (uint32_t) (a.offset >> 32) };
            rk_philox4x32_10(ctr, key, r);
        }
        float keep[4];
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const float u = (float) (r[l] >> 8) * (1.0f / 16777216.0f); /* exactly rk_dropout_uniform */
            keep[l]       = !a.zero && u >= a.p ? a.scale : 0.0f;
        }
        const int64_t i0 = g * 4;
        if (DENSE && vec4 && i0 + 4 <= a.n) {
            float v[4];
            rk_load_f32<4>(x + i0, v);
#pragma unroll
            for (int l = 0; l < 4; l++) v[l] = keep[l] != 0.0f ? v[l] * keep[l] : 0.0f;
            rk_store_f32<4>(dst + i0, v);
            continue;
        }
        for (int l = 0; l < 4 && i0 + l < a.n; l++) {
            const int64_t i   = i0 + l;
            const int64_t row = DENSE ? 0 : i / a.ncols, col = DENSE ? i : i - row * a.ncols;
            const float   xv  = rk_to_f32(x[row * a.x_stride + col]);
            dst[row * a.d_stride + col] = rk_from_f32<T>(keep[l] != 0.0f ? xv * keep[l] : 0.0f);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

template <typename T>
static void dropout_launch(T * dst, const T * x, const dropout_args & a, bool dense, cudaStream_t stream) {
    const int64_t nblk   = (a.n + 3) / 4;
    const int64_t blocks = RK_CEIL_DIV(nblk, (int64_t) RK_DROPOUT_BLOCK_SIZE);
    const dim3    grid((unsigned) (blocks < (1 << 20) ? blocks : (1 << 20)));
    const bool    vec4 = rk_ptr_align(dst) >= 4 * sizeof(T) && rk_ptr_align(x) >= 4 * sizeof(T);
    if (dense) {
        dropout_kernel_v1<T, true><<<grid, RK_DROPOUT_BLOCK_SIZE, 0, stream>>>(dst, x, a, vec4);
    } else {
        dropout_kernel_v1<T, false><<<grid, RK_DROPOUT_BLOCK_SIZE, 0, stream>>>(dst, x, a, false);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_dropout(struct rk_tensor * dst, const struct rk_tensor * x,
                                          const struct rk_dropout_params * p, cudaStream_t stream) {
    // x, dst: same shape, rows of one float dtype; the mask index is the logical row-major element index
    const enum rk_dtype dt = x->dtype;
    if (!rk_is_float_dtype(dt) || dst->dtype != dt) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda dropout: dst and x must share one float dtype");
    }
    rk_rows rx, rd;
    if (!rk_rows_of(x, &rx) || !rk_rows_of(dst, &rd)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda dropout: tensors must be rows with a contiguous last dim");
    }
    if (rx.nrows != rd.nrows || rx.ncols != rd.ncols) return rk_set_error(RK_STATUS_ARG, "cuda dropout: shapes differ");
    if (!(p->p >= 0.0f && p->p <= 1.0f)) {
        return rk_set_error(RK_STATUS_ARG, "cuda dropout: p = %g outside [0, 1]", (double) p->p);
    }
    dropout_args a;
    a.n        = rx.nrows * rx.ncols;
    a.ncols    = rx.ncols;
    a.x_stride = rx.stride;
    a.d_stride = rd.stride;
    a.p        = p->p;
    a.zero     = p->p >= 1.0f;
    a.scale    = a.zero ? 0.0f : 1.0f / (1.0f - p->p);
    a.seed     = p->seed;
    a.offset   = p->offset;
    if (a.n == 0) return RK_OK;
    const bool dense = rx.nrows == 1 || (rx.stride == rx.ncols && rd.stride == rd.ncols);
    if (dense) {
        a.ncols = a.n;
        a.x_stride = a.d_stride = a.n;
    }
    RK_DISPATCH_FLOAT(dt, T, dropout_launch<T>((T *) dst->data, (const T *) x->data, a, dense, stream));
    return RK_OK;
}
