/*
 * elementwise.cu: CUDA RK_OP_GELU (erf form, as torch.nn.functional.gelu(approximate="none")), RK_OP_ADD, and the
 * matmul epilogue rk_cuda_bias_act (dst = act(dst + bias)) used when cuBLASLt cannot fuse it. CPU references:
 * kernels/elementwise_cpu.c; parity cases GELU(...), ADD(...) in tests/test_ops.c (bias_act through MATMUL cases).
 *
 * Kernel variants:
 *   elementwise_kernel_v1<T, V, Op, NIN>: grid-stride loop over (row, V-vector) of up to two inputs, fp32 math,
 *                                         one rounding; V = 16-byte vectors when pointers and strides allow.
 *                                         A row stride of 0 broadcasts an input over rows (the bias).
 * Bench: build/bench/bench_ops gelu | add
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#define RK_ELEMENTWISE_BLOCK_SIZE 256

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

struct op_gelu {
    __device__ __forceinline__ float operator()(float a, float) const { return gelu_erf(a); }
};
struct op_add {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct op_add_gelu {
    __device__ __forceinline__ float operator()(float a, float b) const { return gelu_erf(a + b); }
};

/* dst = op(a, b) over nrows x (ncv * V); strides in elements (0 broadcasts a row). NIN = 1 ignores b. */
template <typename T, int V, typename Op, int NIN>
static __global__ void elementwise_kernel_v1(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncv,
                                             int64_t dst_stride, int64_t a_stride, int64_t b_stride, Op op) {
    const int64_t n = nrows * ncv;
    for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        const int64_t row = i / ncv;
        const int64_t c   = (i - row * ncv) * V;
        float         x[V], y[V];
        rk_load_f32<V>(a + row * a_stride + c, x);
        if (NIN == 2) {
            rk_load_f32<V>(b + row * b_stride + c, y);
        } else {
#pragma unroll
            for (int k = 0; k < V; k++) y[k] = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < V; k++) x[k] = op(x[k], y[k]);
        rk_store_f32<V>(dst + row * dst_stride + c, x);
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

template <typename T, int V, typename Op, int NIN>
static void elementwise_launch_v(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncols, int64_t ds,
                                 int64_t as, int64_t bs, Op op, cudaStream_t stream) {
    const int64_t ncv    = ncols / V;
    const int64_t n      = nrows * ncv;
    const int64_t blocks = RK_CEIL_DIV(n, (int64_t) RK_ELEMENTWISE_BLOCK_SIZE);
    const dim3    grid((unsigned) (blocks < (1 << 20) ? blocks : (1 << 20)));
    elementwise_kernel_v1<T, V, Op, NIN><<<grid, RK_ELEMENTWISE_BLOCK_SIZE, 0, stream>>>(dst, a, b, nrows, ncv, ds, as,
                                                                                          bs, op);
    RK_CUDA_CHECK(cudaGetLastError());
}

/* Picks the vector width, and runs dense tensors as one long row (no division per element). */
template <typename T, typename Op, int NIN>
static void elementwise_launch(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncols, int64_t ds,
                               int64_t as, int64_t bs, Op op, cudaStream_t stream) {
    if (nrows == 0 || ncols == 0) return;
    const bool dense = nrows == 1 || (ds == ncols && as == ncols && (NIN == 1 || bs == ncols));
    if (dense) {
        ncols *= nrows;
        nrows = 1;
        ds = as = bs = ncols;
    }
    const void *  ptrs[3]    = { dst, a, NIN == 2 ? b : nullptr };
    const int64_t strides[3] = { ds, as, bs };
    if (rk_vec_width(sizeof(T), ncols, 3, ptrs, strides) > 1) {
        elementwise_launch_v<T, 16 / sizeof(T), Op, NIN>(dst, a, b, nrows, ncols, ds, as, bs, op, stream);
    } else {
        elementwise_launch_v<T, 1, Op, NIN>(dst, a, b, nrows, ncols, ds, as, bs, op, stream);
    }
}

static bool same_rows(const rk_rows & x, const rk_rows & y) { return x.nrows == y.nrows && x.ncols == y.ncols; }

/* dst, x: same shape, rows with any row strides; one float dtype. */
extern "C" enum rk_status rk_cuda_gelu(struct rk_tensor * dst, const struct rk_tensor * x, cudaStream_t stream) {
    rk_rows rd, rx;
    if (!rk_is_float_dtype(x->dtype) || dst->dtype != x->dtype) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda gelu: dst and x must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(x, &rx)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda gelu: tensors must be rows with a contiguous last dim");
    }
    if (!same_rows(rd, rx)) return rk_set_error(RK_STATUS_ARG, "cuda gelu: dst and x differ in shape");
    RK_DISPATCH_FLOAT(x->dtype, T,
        (elementwise_launch<T, op_gelu, 1>((T *) dst->data, (const T *) x->data, nullptr, rx.nrows, rx.ncols,
                                           rd.stride, rx.stride, 0, op_gelu(), stream)));
    return RK_OK;
}

/* dst, a, b: same shape, rows with any row strides; one float dtype. */
extern "C" enum rk_status rk_cuda_add(struct rk_tensor * dst, const struct rk_tensor * a, const struct rk_tensor * b,
                                      cudaStream_t stream) {
    rk_rows rd, ra, rb;
    if (!rk_is_float_dtype(a->dtype) || dst->dtype != a->dtype || b->dtype != a->dtype) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda add: dst, a and b must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(a, &ra) || !rk_rows_of(b, &rb)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda add: tensors must be rows with a contiguous last dim");
    }
    if (!same_rows(rd, ra) || !same_rows(rd, rb)) return rk_set_error(RK_STATUS_ARG, "cuda add: shapes differ");
    RK_DISPATCH_FLOAT(a->dtype, T,
        (elementwise_launch<T, op_add, 2>((T *) dst->data, (const T *) a->data, (const T *) b->data, ra.nrows,
                                          ra.ncols, rd.stride, ra.stride, rb.stride, op_add(), stream)));
    return RK_OK;
}

/* In place: dst (M,N) rows = act(dst + bias); bias (N) contiguous or NULL. */
extern "C" enum rk_status rk_cuda_bias_act(struct rk_tensor * dst, const struct rk_tensor * bias, enum rk_act act,
                                           cudaStream_t stream) {
    rk_rows rd, rb;
    if (!rk_is_float_dtype(dst->dtype) || (bias && bias->dtype != dst->dtype)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda bias_act: dst and bias must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || (bias && !rk_rows_of(bias, &rb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda bias_act: tensors must be rows with a contiguous last dim");
    }
    if (bias && (rb.nrows != 1 || rb.ncols != rd.ncols)) return rk_set_error(RK_STATUS_ARG, "cuda bias_act: bias shape");
    if (act != RK_ACT_NONE && act != RK_ACT_GELU) return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda bias_act: activation");
    if (!bias && act == RK_ACT_NONE) return RK_OK;
    RK_DISPATCH_FLOAT(dst->dtype, T,
        T * d = (T *) dst->data;
        const T * bp = bias ? (const T *) bias->data : nullptr;
        if (bias && act == RK_ACT_GELU) {
            elementwise_launch<T, op_add_gelu, 2>(d, d, bp, rd.nrows, rd.ncols, rd.stride, rd.stride, 0,
                                                  op_add_gelu(), stream);
        } else if (bias) {
            elementwise_launch<T, op_add, 2>(d, d, bp, rd.nrows, rd.ncols, rd.stride, rd.stride, 0, op_add(), stream);
        } else {
            elementwise_launch<T, op_gelu, 1>(d, d, nullptr, rd.nrows, rd.ncols, rd.stride, rd.stride, 0, op_gelu(),
                                              stream);
        });
    return RK_OK;
}
