/*
 * elementwise.cu: CUDA RK_OP_GELU (erf form, as torch.nn.functional.gelu(approximate="none")), RK_OP_ADD, RK_OP_TANH,
 * the backward ops RK_OP_GELU_BWD and RK_OP_TANH_BWD, RK_OP_FILL, and the matmul epilogue rk_cuda_bias_act
 * (dst = act(dst + bias)) used when cuBLASLt cannot fuse it. CPU references: kernels/elementwise_cpu.c and
 * kernels/elementwise_bwd_cpu.c; parity cases GELU(...), ADD(...) in tests/test_ops.c (bias_act through MATMUL cases),
 * GELU_BWD(...), TANH(...), TANH_BWD(...), FILL(...) in tests/test_ops_bwd.c.
 *
 * Kernel variants:
 *   elementwise_kernel_v1<T, V, Op, NIN>: grid-stride loop over (row, V-vector) of up to two inputs, fp32 math,
 *                                         one rounding; V = 16-byte vectors when pointers and strides allow.
 *                                         A row stride of 0 broadcasts an input over rows (the bias).
 *   fill_kernel_v1<T, V>:                 the same loop with no input; a zero fill of a dense tensor is a
 *                                         cudaMemsetAsync instead.
 * Bench: build/bench/bench_ops gelu | add
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#include <string.h>

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

/* d gelu(x) / dx, erf form: Phi(x) + x phi(x) (rk_gelu_grad_f32 in kernels/elementwise.h) */
__device__ __forceinline__ float gelu_erf_grad(float x) {
    const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

struct op_gelu_bwd { /* a = dout, b = x */
    __device__ __forceinline__ float operator()(float a, float b) const { return a * gelu_erf_grad(b); }
};
struct op_tanh {
    __device__ __forceinline__ float operator()(float a, float) const { return tanhf(a); }
};
struct op_tanh_bwd { /* a = dout, b = y = tanh(x) */
    __device__ __forceinline__ float operator()(float a, float b) const { return a * (1.0f - b * b); }
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

/* The value a FILL stores, in T: rounded once; i32 truncates toward zero (as the CPU reference's cast). */
template <typename T> __device__ __forceinline__ T fill_value(float v) { return rk_from_f32<T>(v); }
template <> __device__ __forceinline__ int32_t fill_value<int32_t>(float v) { return (int32_t) v; }

/* dst = value over nrows x (ncv * V); row stride in elements. */
template <typename T, int V>
static __global__ void fill_kernel_v1(T * dst, int64_t nrows, int64_t ncv, int64_t stride, float value) {
    rk_pack<T, V> pk;
#pragma unroll
    for (int k = 0; k < V; k++) pk.v[k] = fill_value<T>(value);
    const int64_t n = nrows * ncv;
    for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        const int64_t row = i / ncv;
        *reinterpret_cast<rk_pack<T, V> *>(dst + row * stride + (i - row * ncv) * V) = pk;
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* Blocks for n grid-stride items: one per item up to 2^20 blocks. */
static dim3 grid_for(int64_t n) {
    const int64_t blocks = RK_CEIL_DIV(n, (int64_t) RK_ELEMENTWISE_BLOCK_SIZE);
    return dim3((unsigned) (blocks < (1 << 20) ? blocks : (1 << 20)));
}

template <typename T, int V, typename Op, int NIN>
static void elementwise_launch_v(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncols, int64_t ds,
                                 int64_t as, int64_t bs, Op op, cudaStream_t stream) {
    const int64_t ncv = ncols / V;
    elementwise_kernel_v1<T, V, Op, NIN><<<grid_for(nrows * ncv), RK_ELEMENTWISE_BLOCK_SIZE, 0, stream>>>(
        dst, a, b, nrows, ncv, ds, as, bs, op);
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

/*
 * The same-shape ops: dst = Op(a[, b]) with dst, a (and b when NIN = 2) one float dtype and the same (rows, cols),
 * any row strides. what names the op and its operands in messages ("gelu", "dst and x").
 */
template <typename Op, int NIN>
static enum rk_status elementwise_op(const char * what, const char * operands, struct rk_tensor * dst,
                                     const struct rk_tensor * a, const struct rk_tensor * b, cudaStream_t stream) {
    rk_rows rd, ra, rb = { 0, 0, 0 };
    if (!rk_is_float_dtype(a->dtype) || dst->dtype != a->dtype || (NIN == 2 && b->dtype != a->dtype)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda %s: %s must share one float dtype", what, operands);
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(a, &ra) || (NIN == 2 && !rk_rows_of(b, &rb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda %s: tensors must be rows with a contiguous last dim", what);
    }
    if (!same_rows(rd, ra) || (NIN == 2 && !same_rows(rd, rb))) {
        return rk_set_error(RK_STATUS_ARG, "cuda %s: %s differ in shape", what, operands);
    }
    RK_DISPATCH_FLOAT(a->dtype, T,
        (elementwise_launch<T, Op, NIN>((T *) dst->data, (const T *) a->data, NIN == 2 ? (const T *) b->data : nullptr,
                                        ra.nrows, ra.ncols, rd.stride, ra.stride, rb.stride, Op(), stream)));
    return RK_OK;
}

extern "C" enum rk_status rk_cuda_gelu(struct rk_tensor * dst, const struct rk_tensor * x, cudaStream_t stream) {
    return elementwise_op<op_gelu, 1>("gelu", "dst and x", dst, x, nullptr, stream);
}

extern "C" enum rk_status rk_cuda_add(struct rk_tensor * dst, const struct rk_tensor * a, const struct rk_tensor * b,
                                      cudaStream_t stream) {
    return elementwise_op<op_add, 2>("add", "dst, a and b", dst, a, b, stream);
}

extern "C" enum rk_status rk_cuda_gelu_bwd(struct rk_tensor * dx, const struct rk_tensor * dout,
                                           const struct rk_tensor * x, cudaStream_t stream) {
    return elementwise_op<op_gelu_bwd, 2>("gelu_bwd", "dx, dout and x", dx, dout, x, stream);
}

extern "C" enum rk_status rk_cuda_tanh(struct rk_tensor * dst, const struct rk_tensor * x, cudaStream_t stream) {
    return elementwise_op<op_tanh, 1>("tanh", "dst and x", dst, x, nullptr, stream);
}

extern "C" enum rk_status rk_cuda_tanh_bwd(struct rk_tensor * dx, const struct rk_tensor * dout,
                                           const struct rk_tensor * y, cudaStream_t stream) {
    return elementwise_op<op_tanh_bwd, 2>("tanh_bwd", "dx, dout and y", dx, dout, y, stream);
}

template <typename T>
static void fill_launch(T * dst, const rk_rows & rd, float value, cudaStream_t stream) {
    int64_t nrows = rd.nrows, ncols = rd.ncols, stride = rd.stride;
    if (nrows == 1 || stride == ncols) { /* dense: one long row */
        ncols *= nrows;
        nrows  = 1;
        stride = ncols;
    }
    uint32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    if (nrows == 1 && bits == 0) { /* +0.0 is all-zero bytes in every dtype (and 0 in i32) */
        RK_CUDA_CHECK(cudaMemsetAsync(dst, 0, (size_t) ncols * sizeof(T), stream));
        return;
    }
    const void *  ptrs[1]    = { dst };
    const int64_t strides[1] = { stride };
    if (rk_vec_width(sizeof(T), ncols, 1, ptrs, strides) > 1) {
        constexpr int V = 16 / sizeof(T);
        fill_kernel_v1<T, V><<<grid_for(nrows * (ncols / V)), RK_ELEMENTWISE_BLOCK_SIZE, 0, stream>>>(
            dst, nrows, ncols / V, stride, value);
    } else {
        fill_kernel_v1<T, 1><<<grid_for(nrows * ncols), RK_ELEMENTWISE_BLOCK_SIZE, 0, stream>>>(dst, nrows, ncols,
                                                                                                 stride, value);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

/* dst rows with any row stride; f32, f16, bf16 or i32. */
extern "C" enum rk_status rk_cuda_fill(struct rk_tensor * dst, float value, cudaStream_t stream) {
    rk_rows rd;
    if (!rk_is_float_dtype(dst->dtype) && dst->dtype != RK_DTYPE_I32) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda fill: dtype %s", rk_dtype_traits[dst->dtype].name);
    }
    if (!rk_rows_of(dst, &rd)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda fill: dst must be rows with a contiguous last dim");
    }
    if (rd.nrows == 0 || rd.ncols == 0) return RK_OK;
    if (dst->dtype == RK_DTYPE_I32) {
        fill_launch<int32_t>((int32_t *) dst->data, rd, value, stream);
    } else {
        RK_DISPATCH_FLOAT(dst->dtype, T, fill_launch<T>((T *) dst->data, rd, value, stream));
    }
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
