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
 *   elementwise_kernel_v2<T, V, U, ...>:  block-per-chunk: a 2-D block covers (bx * U vectors of a row) x (by rows),
 *                                         U vectors per thread, all loads issued before any math (U * 16 bytes in
 *                                         flight per thread and input), no division in the index math, the
 *                                         broadcast input (bias) loaded once per thread. A dense tensor is one row.
 *   fill_kernel_v1<T, V>:                 the same loop as v1 with no input; a zero fill of a dense tensor is a
 *                                         cudaMemsetAsync instead.
 *
 * GELU variants (rk_cuda_gelu, and rk_cuda_bias_act with RK_ACT_GELU; RK_GELU_VARIANT=N or
 * rk_cuda_gelu_set_variant, kernels/cuda_ops.h). The other ops always run v1.
 *   1  v1, erff                                      (the reference; the default is v3, measured faster)
 *   2  v2 with U = 4, erff                           (memory-level parallelism alone)
 *   3  v2 with U = 4, rk_erf_ex2 for f16/bf16 outputs (kernels/erf_ex2.h: one ex2, no division; f32 outputs: as 2)
 *   4  v2 with U = 8, rk_erf_ex2 for f16/bf16 outputs    (f32 outputs: as 2)
 * Why: on the H200 the v1 GELU pass ran at 2,667 GB/s against 4,001 for ADD (docs/PERF.md): one 16-byte load per
 * thread, then ~30 instructions of erff per element, so the SMs are near issue-bound with few bytes in flight.
 * Bench: build/bench/bench_ops gelu | add;  build/bench/bench_ops gelu --variant all  (every GELU variant)
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/erf_ex2.h"

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
/* The same two through rk_erf_ex2 (kernels/erf_ex2.h): GELU variants 3 and 4, f16/bf16 outputs only. */
struct op_gelu_ex2 {
    __device__ __forceinline__ float operator()(float a, float) const { return rk_gelu_ex2(a); }
};
struct op_add_gelu_ex2 {
    __device__ __forceinline__ float operator()(float a, float b) const { return rk_gelu_ex2(a + b); }
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

/*
 * dst = op(a, b) like v1, block-per-chunk. Block (bx, by): thread (tx, ty) handles the vectors
 * j = blockIdx.x * bx * U + k * bx + tx (k < U, j < ncv) of rows blockIdx.y * by + ty, + gridDim.y * by, ...
 * All U loads of a row (and of b) are issued before the math; the broadcast b (b_stride 0) is loaded once.
 */
template <typename T, int V, int U, typename Op, int NIN>
static __global__ void __launch_bounds__(RK_ELEMENTWISE_BLOCK_SIZE)
    elementwise_kernel_v2(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncv, int64_t dst_stride,
                          int64_t a_stride, int64_t b_stride, Op op) {
    const int64_t j0     = (int64_t) blockIdx.x * blockDim.x * U + threadIdx.x;
    const bool    b_once = NIN == 2 && b_stride == 0;
    float         y[U][V];
#pragma unroll
    for (int k = 0; k < U; k++) {
#pragma unroll
        for (int i = 0; i < V; i++) y[k][i] = 0.0f;
    }
    if (b_once) {
#pragma unroll
        for (int k = 0; k < U; k++) {
            const int64_t j = j0 + (int64_t) k * blockDim.x;
            if (j < ncv) rk_load_f32<V>(b + j * V, y[k]);
        }
    }
    for (int64_t row = (int64_t) blockIdx.y * blockDim.y + threadIdx.y; row < nrows;
         row += (int64_t) gridDim.y * blockDim.y) {
        float x[U][V];
#pragma unroll
        for (int k = 0; k < U; k++) {
            const int64_t j = j0 + (int64_t) k * blockDim.x;
            if (j < ncv) {
                rk_load_f32<V>(a + row * a_stride + j * V, x[k]);
            } else {
#pragma unroll
                for (int i = 0; i < V; i++) x[k][i] = 0.0f;
            }
        }
        if (NIN == 2 && !b_once) {
#pragma unroll
            for (int k = 0; k < U; k++) {
                const int64_t j = j0 + (int64_t) k * blockDim.x;
                if (j < ncv) rk_load_f32<V>(b + row * b_stride + j * V, y[k]);
            }
        }
#pragma unroll
        for (int k = 0; k < U; k++) {
#pragma unroll
            for (int i = 0; i < V; i++) x[k][i] = op(x[k][i], y[k][i]);
        }
#pragma unroll
        for (int k = 0; k < U; k++) {
            const int64_t j = j0 + (int64_t) k * blockDim.x;
            if (j < ncv) rk_store_f32<V>(dst + row * dst_stride + j * V, x[k]);
        }
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

/* Which kernel an elementwise launch runs: v1, or v2 with U = 4 or 8 vectors per thread. */
enum ew_kernel { EW_V1 = 0, EW_V2_U4, EW_V2_U8 };

/* v2's launch shape for nrows x ncv vectors: a 256-thread block of bx threads along the row (a multiple of 32 that
 * covers the row's ncv / U threads when it is short) by 256 / bx rows; as many row blocks as rows need, up to the
 * grid's y limit (the kernel loops over the rest). */
template <int U>
static void v2_shape(int64_t nrows, int64_t ncv, dim3 * grid, dim3 * block) {
    const int64_t per_row = RK_CEIL_DIV(ncv, (int64_t) U);
    const int64_t bx      = per_row >= RK_ELEMENTWISE_BLOCK_SIZE ? RK_ELEMENTWISE_BLOCK_SIZE : RK_CEIL_DIV(per_row, (int64_t) 32) * 32;
    const int64_t by      = RK_ELEMENTWISE_BLOCK_SIZE / bx;
    const int64_t gy      = RK_CEIL_DIV(nrows, by);
    *block = dim3((unsigned) bx, (unsigned) by);
    *grid  = dim3((unsigned) RK_CEIL_DIV(ncv, bx * U), (unsigned) (gy < 65535 ? gy : 65535));
}

/* KERN is a template parameter so that only the GELU ops instantiate the v2 kernels. */
template <typename T, int V, typename Op, int NIN, enum ew_kernel KERN>
static void elementwise_launch_v(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncols, int64_t ds,
                                 int64_t as, int64_t bs, Op op, cudaStream_t stream) {
    const int64_t ncv = ncols / V;
    if constexpr (KERN == EW_V1) {
        elementwise_kernel_v1<T, V, Op, NIN><<<grid_for(nrows * ncv), RK_ELEMENTWISE_BLOCK_SIZE, 0, stream>>>(
            dst, a, b, nrows, ncv, ds, as, bs, op);
    } else {
        constexpr int U = KERN == EW_V2_U8 ? 8 : 4;
        dim3          grid, block;
        v2_shape<U>(nrows, ncv, &grid, &block);
        elementwise_kernel_v2<T, V, U, Op, NIN><<<grid, block, 0, stream>>>(dst, a, b, nrows, ncv, ds, as, bs, op);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

/* Picks the vector width, and runs dense tensors as one long row (no division per element). */
template <typename T, typename Op, int NIN, enum ew_kernel KERN = EW_V1>
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
        elementwise_launch_v<T, 16 / sizeof(T), Op, NIN, KERN>(dst, a, b, nrows, ncols, ds, as, bs, op, stream);
    } else {
        elementwise_launch_v<T, 1, Op, NIN, KERN>(dst, a, b, nrows, ncols, ds, as, bs, op, stream);
    }
}

/* ------------------------------------------------------------------------------------------------
 * GELU variant selection (kernels/cuda_ops.h) */

/* the default: $RK_GELU_VARIANT when it names a variant (read once), else 3 (rk_erf_ex2: 1.04x variant 1 on an H200,
 * GELU 16384 x 3072 bf16; docs/PERF.md) */
static struct rk_variant_knob gelu_knob = RK_VARIANT_KNOB("RK_GELU_VARIANT", "cuda gelu", RK_GELU_N_VARIANTS, 3);

extern "C" int rk_cuda_gelu_variant(void) { return rk_variant_knob_get(&gelu_knob); }

extern "C" enum rk_status rk_cuda_gelu_set_variant(int variant) { return rk_variant_knob_set(&gelu_knob, variant); }

extern "C" const char * rk_cuda_gelu_variant_name(int variant) {
    static const char * const names[RK_GELU_N_VARIANTS] = { "default", "v1_erff", "v2u4_erff", "v2u4_ex2",
                                                            "v2u8_ex2" };
    return variant >= 0 && variant < RK_GELU_N_VARIANTS ? names[variant] : "?";
}

/* GELU of a (with bias b broadcast over rows when NIN = 2) through the variant in effect: OpRef is the erff form,
 * OpEx2 the rk_erf_ex2 form (16-bit outputs of variants 3 and 4). */
template <typename T, typename OpRef, typename OpEx2, int NIN>
static void gelu_launch(T * dst, const T * a, const T * b, int64_t nrows, int64_t ncols, int64_t ds, int64_t as,
                        int64_t bs, cudaStream_t stream) {
    const int v = rk_cuda_gelu_variant();
    if (v == 2 || (v >= 3 && sizeof(T) != 2)) { /* f32 outputs of 3 and 4 keep erff (and U = 4) */
        elementwise_launch<T, OpRef, NIN, EW_V2_U4>(dst, a, b, nrows, ncols, ds, as, bs, OpRef(), stream);
    } else if (v == 3) {
        elementwise_launch<T, OpEx2, NIN, EW_V2_U4>(dst, a, b, nrows, ncols, ds, as, bs, OpEx2(), stream);
    } else if (v == 4) {
        elementwise_launch<T, OpEx2, NIN, EW_V2_U8>(dst, a, b, nrows, ncols, ds, as, bs, OpEx2(), stream);
    } else {
        elementwise_launch<T, OpRef, NIN, EW_V1>(dst, a, b, nrows, ncols, ds, as, bs, OpRef(), stream);
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
    rk_rows rd, rx;
    if (!rk_is_float_dtype(x->dtype) || dst->dtype != x->dtype) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda gelu: dst and x must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(x, &rx)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda gelu: tensors must be rows with a contiguous last dim");
    }
    if (!same_rows(rd, rx)) return rk_set_error(RK_STATUS_ARG, "cuda gelu: dst and x differ in shape");
    RK_DISPATCH_FLOAT(x->dtype, T,
        (gelu_launch<T, op_gelu, op_gelu_ex2, 1>((T *) dst->data, (const T *) x->data, nullptr, rx.nrows, rx.ncols,
                                                 rd.stride, rx.stride, 0, stream)));
    return RK_OK;
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

/* In place: dst (M,N) rows = act(dst + bias); bias (N) contiguous or NULL. GELU: the variant in effect. */
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
            gelu_launch<T, op_add_gelu, op_add_gelu_ex2, 2>(d, d, bp, rd.nrows, rd.ncols, rd.stride, rd.stride, 0,
                                                            stream);
        } else if (bias) {
            elementwise_launch<T, op_add, 2>(d, d, bp, rd.nrows, rd.ncols, rd.stride, rd.stride, 0, op_add(), stream);
        } else {
            gelu_launch<T, op_gelu, op_gelu_ex2, 1>(d, d, nullptr, rd.nrows, rd.ncols, rd.stride, rd.stride, 0,
                                                    stream);
        });
    return RK_OK;
}
