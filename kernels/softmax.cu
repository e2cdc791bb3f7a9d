/*
 * softmax.cu: CUDA RK_OP_SOFTMAX: dst = softmax(x * scale) along the last dim, numerically stable; a row of all
 * -inf gives zeros (never NaN), as the CPU reference kernels/softmax_cpu.c. Parity cases SOFTMAX(...) in
 * tests/test_ops.c. (Attention has its own fused softmax; this op serves classification heads and tests.)
 * Also RK_OP_SOFTMAX_BWD: dx = scale * y * (dy - sum_c dy*y) (kernels/softmax_bwd_cpu.c; SOFTMAX_BWD(...) in
 * tests/test_ops_bwd.c).
 *
 * Kernel variants:
 *   softmax_kernel_v1<T, V>:     one warp per row, 8 rows per 256-thread block; pass 1 an online max/sum in fp32
 *                                (each lane its own running pair, merged across the warp), pass 2 writes
 *                                exp(x - max)/sum. Any C; taken when a row does not fit v2's registers.
 *   softmax_kernel_v2<T, V, NV>: rows of up to 32 * V * NV elements (NV <= 8: 2048 at 16-byte vectors) held in
 *                                registers: every load of the row issued first, then the max, one exp per element,
 *                                the sum, and the stores. One read of x (v1 reads it twice) and no branchy online
 *                                update (v1 computes up to two exp per element). H200, 196608 x 256 bf16: v1 ran at
 *                                0.52x PyTorch, v2 1.28x (docs/PERF.md).
 *   softmax_bwd_kernel_v1<T, V>: one warp per row, 8 rows per block; pass 1 the fp32 dot product dy . y, pass 2
 *                                writes dx. Each lane writes only what it read in pass 2: dx may alias dy.
 * Bench: build/bench/bench_ops softmax
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#define RK_SOFTMAX_BLOCK_SIZE 256
#define RK_SOFTMAX_ROWS_PER_BLOCK (RK_SOFTMAX_BLOCK_SIZE / 32)

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

/* Adds value v to the running (max m, sum s of exp(. - m)); -inf values contribute nothing. */
__device__ __forceinline__ void online_add(float & m, float & s, float v) {
    if (v == -INFINITY) return;
    if (v > m) {
        s = (m == -INFINITY ? 0.0f : s * expf(m - v)) + 1.0f;
        m = v;
    } else {
        s += expf(v - m);
    }
}

template <typename T, int V>
static __global__ void softmax_kernel_v1(T * dst, const T * x, int64_t N, int64_t C, int64_t dst_stride,
                                         int64_t x_stride, float scale) {
    const int64_t row  = (int64_t) blockIdx.x * RK_SOFTMAX_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= N) return;
    const T * xr = x + row * x_stride;
    T *       o  = dst + row * dst_stride;
    float     m = -INFINITY, s = 0.0f;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float v[V];
        rk_load_f32<V>(xr + c, v);
#pragma unroll
        for (int i = 0; i < V; i++) online_add(m, s, v[i] * scale);
    }
    /* merge the lanes' (m, s) pairs */
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, off);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, off);
        const float mm = fmaxf(m, m2);
        if (mm != -INFINITY) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - mm)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mm));
        }
        m = mm;
    }
    const float inv = m == -INFINITY ? 0.0f : 1.0f / s;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float v[V];
        rk_load_f32<V>(xr + c, v);
#pragma unroll
        for (int i = 0; i < V; i++) {
            const float z = v[i] * scale;
            v[i]          = (m == -INFINITY || z == -INFINITY) ? 0.0f : expf(z - m) * inv;
        }
        rk_store_f32<V>(o + c, v);
    }
}

template <typename T, int V, int NV>
static __global__ void softmax_kernel_v2(T * dst, const T * x, int64_t N, int64_t C, int64_t dst_stride,
                                         int64_t x_stride, float scale) {
    const int64_t row  = (int64_t) blockIdx.x * RK_SOFTMAX_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= N) return;
    const T * xr = x + row * x_stride;
    T *       o  = dst + row * dst_stride;
    float     v[NV][V];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        const int64_t c = ((int64_t) j * 32 + lane) * V;
        if (c < C) {
            rk_load_f32<V>(xr + c, v[j]);
        } else {
#pragma unroll
            for (int i = 0; i < V; i++) v[j][i] = -INFINITY;
        }
    }
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < NV; j++) {
#pragma unroll
        for (int i = 0; i < V; i++) {
            v[j][i] *= scale;
            m = fmaxf(m, v[j][i]);
        }
    }
    m = rk_warp_max(m);
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < NV; j++) {
#pragma unroll
        for (int i = 0; i < V; i++) {
            v[j][i] = (m == -INFINITY || v[j][i] == -INFINITY) ? 0.0f : expf(v[j][i] - m); /* a row of -inf: 0 */
            s += v[j][i];
        }
    }
    s               = rk_warp_sum(s);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
#pragma unroll
    for (int j = 0; j < NV; j++) {
        const int64_t c = ((int64_t) j * 32 + lane) * V;
        if (c < C) {
#pragma unroll
            for (int i = 0; i < V; i++) v[j][i] *= inv;
            rk_store_f32<V>(o + c, v[j]);
        }
    }
}

template <typename T, int V>
static __global__ void softmax_bwd_kernel_v1(T * dx, const T * dy, const T * y, int64_t N, int64_t C,
                                             int64_t dx_stride, int64_t dy_stride, int64_t y_stride, float scale) {
    const int64_t row  = (int64_t) blockIdx.x * RK_SOFTMAX_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= N) return;
    const T * gr  = dy + row * dy_stride;
    const T * yr  = y + row * y_stride;
    T *       o   = dx + row * dx_stride;
    float     dot = 0.0f;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float g[V], yv[V];
        rk_load_f32<V>(gr + c, g);
        rk_load_f32<V>(yr + c, yv);
#pragma unroll
        for (int i = 0; i < V; i++) dot += g[i] * yv[i];
    }
    dot = rk_warp_sum(dot);
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float g[V], yv[V];
        rk_load_f32<V>(gr + c, g);
        rk_load_f32<V>(yr + c, yv);
#pragma unroll
        for (int i = 0; i < V; i++) g[i] = scale * yv[i] * (g[i] - dot);
        rk_store_f32<V>(o + c, g);
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* v2 with the smallest NV in {1, 2, 4, 8} that holds nv vectors of V per lane */
template <typename T, int V>
static void softmax_launch_v2(T * dst, const T * x, const rk_rows & rd, const rk_rows & rx, int64_t nv, float scale,
                              dim3 grid, cudaStream_t stream) {
    auto go = [&](auto kernel) {
        kernel<<<grid, RK_SOFTMAX_BLOCK_SIZE, 0, stream>>>(dst, x, rx.nrows, rx.ncols, rd.stride, rx.stride, scale);
    };
    if (nv <= 1) {
        go(softmax_kernel_v2<T, V, 1>);
    } else if (nv <= 2) {
        go(softmax_kernel_v2<T, V, 2>);
    } else if (nv <= 4) {
        go(softmax_kernel_v2<T, V, 4>);
    } else {
        go(softmax_kernel_v2<T, V, 8>);
    }
}

template <typename T>
static void softmax_launch(T * dst, const T * x, const rk_rows & rd, const rk_rows & rx, float scale,
                           cudaStream_t stream) {
    const void *  ptrs[2]    = { dst, x };
    const int64_t strides[2] = { rd.stride, rx.stride };
    const dim3    grid((unsigned) RK_CEIL_DIV(rx.nrows, (int64_t) RK_SOFTMAX_ROWS_PER_BLOCK));
    const int     vw = rk_vec_width(sizeof(T), rx.ncols, 2, ptrs, strides);
    const int64_t nv = RK_CEIL_DIV(rx.ncols, (int64_t) 32 * vw); /* vectors per lane for v2 */
    if (nv <= 8) {
        if (vw > 1) {
            softmax_launch_v2<T, 16 / sizeof(T)>(dst, x, rd, rx, nv, scale, grid, stream);
        } else {
            softmax_launch_v2<T, 1>(dst, x, rd, rx, nv, scale, grid, stream);
        }
    } else if (vw > 1) {
        softmax_kernel_v1<T, 16 / sizeof(T)><<<grid, RK_SOFTMAX_BLOCK_SIZE, 0, stream>>>(
            dst, x, rx.nrows, rx.ncols, rd.stride, rx.stride, scale);
    } else {
        softmax_kernel_v1<T, 1><<<grid, RK_SOFTMAX_BLOCK_SIZE, 0, stream>>>(dst, x, rx.nrows, rx.ncols, rd.stride,
                                                                            rx.stride, scale);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

/* dst, x (N,C) rows with any row strides; one float dtype; dst may alias x. */
extern "C" enum rk_status rk_cuda_softmax(struct rk_tensor * dst, const struct rk_tensor * x,
                                          const struct rk_softmax_params * p, cudaStream_t stream) {
    rk_rows rd, rx;
    if (!rk_is_float_dtype(x->dtype) || dst->dtype != x->dtype) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda softmax: dst and x must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(x, &rx)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda softmax: tensors must be rows with a contiguous last dim");
    }
    if (rd.nrows != rx.nrows || rd.ncols != rx.ncols) return rk_set_error(RK_STATUS_ARG, "cuda softmax: shapes differ");
    if (rx.nrows == 0 || rx.ncols == 0) return RK_OK;
    RK_DISPATCH_FLOAT(x->dtype, T,
        softmax_launch<T>((T *) dst->data, (const T *) x->data, rd, rx, p->scale, stream));
    return RK_OK;
}

template <typename T>
static void softmax_bwd_launch(T * dx, const T * dy, const T * y, const rk_rows & rdx, const rk_rows & rg,
                               const rk_rows & ry, float scale, cudaStream_t stream) {
    const void *  ptrs[3]    = { dx, dy, y };
    const int64_t strides[3] = { rdx.stride, rg.stride, ry.stride };
    const dim3    grid((unsigned) RK_CEIL_DIV(ry.nrows, (int64_t) RK_SOFTMAX_ROWS_PER_BLOCK));
    if (rk_vec_width(sizeof(T), ry.ncols, 3, ptrs, strides) > 1) {
        softmax_bwd_kernel_v1<T, 16 / sizeof(T)><<<grid, RK_SOFTMAX_BLOCK_SIZE, 0, stream>>>(
            dx, dy, y, ry.nrows, ry.ncols, rdx.stride, rg.stride, ry.stride, scale);
    } else {
        softmax_bwd_kernel_v1<T, 1><<<grid, RK_SOFTMAX_BLOCK_SIZE, 0, stream>>>(dx, dy, y, ry.nrows, ry.ncols,
                                                                                rdx.stride, rg.stride, ry.stride,
                                                                                scale);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

/* dx, dy, y (N,C) rows with any row strides; one float dtype; dx may alias dy (exactly, same rows). */
extern "C" enum rk_status rk_cuda_softmax_bwd(struct rk_tensor * dx, const struct rk_tensor * dy,
                                              const struct rk_tensor * y, const struct rk_softmax_params * p,
                                              cudaStream_t stream) {
    rk_rows rdx, rg, ry;
    if (!rk_is_float_dtype(y->dtype) || dx->dtype != y->dtype || dy->dtype != y->dtype) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda softmax_bwd: dx, dy and y must share one float dtype");
    }
    if (!rk_rows_of(dx, &rdx) || !rk_rows_of(dy, &rg) || !rk_rows_of(y, &ry)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda softmax_bwd: tensors must be rows with a contiguous last dim");
    }
    if (rdx.nrows != ry.nrows || rdx.ncols != ry.ncols || rg.nrows != ry.nrows || rg.ncols != ry.ncols) {
        return rk_set_error(RK_STATUS_ARG, "cuda softmax_bwd: shapes differ");
    }
    if (ry.nrows == 0 || ry.ncols == 0) return RK_OK;
    RK_DISPATCH_FLOAT(y->dtype, T,
        softmax_bwd_launch<T>((T *) dx->data, (const T *) dy->data, (const T *) y->data, rdx, rg, ry, p->scale,
                              stream));
    return RK_OK;
}
