/*
 * layernorm_bwd.cu: CUDA RK_OP_LAYERNORM_BWD, the backward of torch.nn.LayerNorm over s = x (+ residual). With
 * xhat = (s - mean) rstd and g = dout * w:
 *   dx  = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))   (overwritten; may alias dout)
 *   dw += sum_n dout * xhat;   db += sum_n dout               (either may be NULL)
 * mean and rstd are recomputed from x and residual (fp32, two passes, as the forward): no statistics buffer.
 * The CPU reference is kernels/layernorm_bwd_cpu.c; parity cases LAYERNORM_BWD(...) in tests/test_ops_bwd.c.
 *
 * Two kernels on the stream, dw/db first (it reads dout, which dx may overwrite):
 *   layernorm_bwd_dwdb_kernel_v1<T, V>: block (32, 32) owns 32 columns. Warp y walks the rows y, y + 32, ...: for
 *       each it recomputes the row's mean and rstd (the whole row, V-vector loads), then lane l adds dout * xhat and
 *       dout of column c0 + l to its fp32 accumulators. At the end the 32 warps' sums are added in warp order
 *       (shared memory) and added to dw/db. Every element is summed in an order fixed by the shape alone:
 *       deterministic, no atomics, no scratch. Cost: every block reads every row of x (+ residual) for the
 *       statistics, so L2 traffic is ceil(C/32) * N*C elements of x (+ residual) on top of one read of the block's
 *       columns, and the kernel's time is about N*C*bytes / (one SM's L2 bandwidth), with ceil(C/32) SMs busy:
 *       several times the one-pass bound (an estimate, not measured: ~0.1 ms for N = 4096, C = 768 bf16 with a
 *       residual, against ~10 us for one pass). A per-CTA-partials scheme would reach the bound but needs a
 *       workspace of (row blocks x C) floats. With db only (dw NULL) no statistics are computed.
 *   layernorm_bwd_dx_kernel_v1<T, V>: one warp per row, 8 rows per 256-thread block: statistics (two passes),
 *       the sums of g and g*xhat (third pass), then dx (fourth pass); the row stays in L1 after the first pass.
 *       Each dx element is written by the lane that read dout there, after the row's reads: dx may alias dout.
 * V = 16-byte vectors when every pointer and row stride allows it (C % 8 == 0 for 16-bit types), else scalar.
 * Bench: none yet (time it inside a training step).
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#define RK_LAYERNORM_BWD_BLOCK_SIZE    256
#define RK_LAYERNORM_BWD_ROWS_PER_BLOCK (RK_LAYERNORM_BWD_BLOCK_SIZE / 32)
#define RK_LAYERNORM_BWD_DWDB_WARPS    32

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

/* dout, x, residual: N rows of C with row strides (elements); dw, db (C) or NULL, accumulated. */
template <typename T, int V>
static __global__ void __launch_bounds__(32 * RK_LAYERNORM_BWD_DWDB_WARPS) layernorm_bwd_dwdb_kernel_v1(T * dw, T * db, const T * dout, const T * x, const T * residual,
                                                    int64_t N, int64_t C, int64_t dout_stride, int64_t x_stride,
                                                    int64_t res_stride, float eps) {
    __shared__ float sm[RK_LAYERNORM_BWD_DWDB_WARPS][32];
    const int     lane = threadIdx.x, warp = threadIdx.y;
    const int64_t c    = (int64_t) blockIdx.x * 32 + lane;
    float         sw = 0.0f, sb = 0.0f;
    for (int64_t n = warp; n < N; n += RK_LAYERNORM_BWD_DWDB_WARPS) {
        const T *            xr   = x + n * x_stride;
        const T *            rr   = residual ? residual + n * res_stride : nullptr;
        rk_ln_load_sum<T, V> load = { xr, rr };
        float                mean = 0.0f, rstd = 0.0f;
        if (dw) rk_layernorm_stats_warp<V>(load, C, eps, lane, mean, rstd); /* warp-uniform branch */
        if (c < C) {
            const float g = rk_to_f32(dout[n * dout_stride + c]);
            if (dw) {
                const float s = rk_to_f32(xr[c]) + (rr ? rk_to_f32(rr[c]) : 0.0f);
                sw += g * ((s - mean) * rstd);
            }
            sb += g;
        }
    }
    sw = rk_sum_over_warps<RK_LAYERNORM_BWD_DWDB_WARPS>(sw, sm);
    sb = rk_sum_over_warps<RK_LAYERNORM_BWD_DWDB_WARPS>(sb, sm);
    if (warp == 0 && c < C) {
        if (dw) dw[c] = rk_from_f32<T>(rk_to_f32(dw[c]) + sw);
        if (db) db[c] = rk_from_f32<T>(rk_to_f32(db[c]) + sb);
    }
}

/* dx, dout, x, residual: N rows of C with row strides (elements); w (C). No __restrict__: dx may alias dout. */
template <typename T, int V>
static __global__ void layernorm_bwd_dx_kernel_v1(T * dx, const T * dout, const T * x, const T * residual,
                                                  const T * w, int64_t N, int64_t C, int64_t dx_stride,
                                                  int64_t dout_stride, int64_t x_stride, int64_t res_stride,
                                                  float eps) {
    const int64_t row  = (int64_t) blockIdx.x * RK_LAYERNORM_BWD_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= N) return; /* whole warps leave together: the shuffles below stay full-warp */
    rk_ln_load_sum<T, V> load = { x + row * x_stride, residual ? residual + row * res_stride : nullptr };
    const T *            gr   = dout + row * dout_stride;
    float                mean, rstd;
    rk_layernorm_stats_warp<V>(load, C, eps, lane, mean, rstd);
    /* xhat and g = dout * w at column c, V at a time */
    auto load_xg = [&](int64_t c, float (&xh)[V], float (&g)[V]) {
        float wv[V];
        load(c, xh);
        rk_load_f32<V>(gr + c, g);
        rk_load_f32<V>(w + c, wv);
#pragma unroll
        for (int i = 0; i < V; i++) {
            xh[i] = (xh[i] - mean) * rstd;
            g[i] *= wv[i];
        }
    };
    float sg = 0.0f, sgx = 0.0f;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float xh[V], g[V];
        load_xg(c, xh, g);
#pragma unroll
        for (int i = 0; i < V; i++) {
            sg += g[i];
            sgx += g[i] * xh[i];
        }
    }
    const float mg  = rk_warp_sum(sg) / (float) C;
    const float mgx = rk_warp_sum(sgx) / (float) C;
    T *         o   = dx + row * dx_stride;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float xh[V], g[V];
        load_xg(c, xh, g);
#pragma unroll
        for (int i = 0; i < V; i++) xh[i] = rstd * (g[i] - mg - xh[i] * mgx);
        rk_store_f32<V>(o + c, xh);
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

template <typename T>
static void layernorm_bwd_launch(T * dx, T * dw, T * db, const T * dout, const T * x, const T * res, const T * w,
                                 const rk_rows & rdx, const rk_rows & rg, const rk_rows & rx, const rk_rows * rr,
                                 float eps, cudaStream_t stream) {
    const int64_t N = rx.nrows, C = rx.ncols, rs = rr ? rr->stride : 0;
    constexpr int VW = 16 / sizeof(T);
    if (dw || db) {
        /* the statistics read only x and residual: their layout alone picks the vector width */
        const void *  ptrs[2]    = { x, res };
        const int64_t strides[2] = { rx.stride, rs };
        const dim3    grid((unsigned) RK_CEIL_DIV(C, (int64_t) 32));
        const dim3    block(32, RK_LAYERNORM_BWD_DWDB_WARPS);
        if (rk_vec_width(sizeof(T), C, 2, ptrs, strides) == VW) {
            layernorm_bwd_dwdb_kernel_v1<T, VW><<<grid, block, 0, stream>>>(dw, db, dout, x, res, N, C, rg.stride,
                                                                            rx.stride, rs, eps);
        } else {
            layernorm_bwd_dwdb_kernel_v1<T, 1><<<grid, block, 0, stream>>>(dw, db, dout, x, res, N, C, rg.stride,
                                                                           rx.stride, rs, eps);
        }
        RK_CUDA_CHECK(cudaGetLastError());
    }
    const void *  ptrs[5]    = { dx, dout, x, res, w };
    const int64_t strides[5] = { rdx.stride, rg.stride, rx.stride, rs, 0 };
    const dim3    grid((unsigned) RK_CEIL_DIV(N, (int64_t) RK_LAYERNORM_BWD_ROWS_PER_BLOCK));
    if (rk_vec_width(sizeof(T), C, 5, ptrs, strides) == VW) {
        layernorm_bwd_dx_kernel_v1<T, VW><<<grid, RK_LAYERNORM_BWD_BLOCK_SIZE, 0, stream>>>(
            dx, dout, x, res, w, N, C, rdx.stride, rg.stride, rx.stride, rs, eps);
    } else {
        layernorm_bwd_dx_kernel_v1<T, 1><<<grid, RK_LAYERNORM_BWD_BLOCK_SIZE, 0, stream>>>(
            dx, dout, x, res, w, N, C, rdx.stride, rg.stride, rx.stride, rs, eps);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

/* True when t is NULL or a contiguous (C) vector (any number of leading 1-dims). */
static bool vec_of(const struct rk_tensor * t, int64_t C) {
    rk_rows r;
    return !t || (rk_rows_of(t, &r) && r.nrows == 1 && r.ncols == C);
}

/*
 * dx, dout, x, residual (N,C) rows (any row strides, last dim contiguous); w, dw, db (C) contiguous; residual, dw,
 * db may be NULL. One float dtype. Returns RK_STATUS_UNSUPPORTED/ARG without launching when the layout or shapes
 * do not fit.
 */
extern "C" enum rk_status rk_cuda_layernorm_bwd(struct rk_tensor * dx, struct rk_tensor * dw, struct rk_tensor * db,
                                                const struct rk_tensor * dout, const struct rk_tensor * x,
                                                const struct rk_tensor * w, const struct rk_tensor * residual,
                                                const struct rk_layernorm_params * p, cudaStream_t stream) {
    const enum rk_dtype dt = x->dtype;
    rk_rows             rdx, rg, rx, rr;
    if (!rk_is_float_dtype(dt) || dx->dtype != dt || dout->dtype != dt || w->dtype != dt ||
        (residual && residual->dtype != dt) || (dw && dw->dtype != dt) || (db && db->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda layernorm_bwd: all tensors must share one float dtype");
    }
    if (!rk_rows_of(dx, &rdx) || !rk_rows_of(dout, &rg) || !rk_rows_of(x, &rx) ||
        (residual && !rk_rows_of(residual, &rr))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda layernorm_bwd: tensors must be rows with a contiguous last dim");
    }
    const int64_t N = rx.nrows, C = rx.ncols;
    if (rdx.nrows != N || rdx.ncols != C || rg.nrows != N || rg.ncols != C ||
        (residual && (rr.nrows != N || rr.ncols != C))) {
        return rk_set_error(RK_STATUS_ARG, "cuda layernorm_bwd: shape mismatch (x %lld x %lld)", (long long) N,
                            (long long) C);
    }
    if (!vec_of(w, C) || !vec_of(dw, C) || !vec_of(db, C)) {
        return rk_set_error(RK_STATUS_ARG, "cuda layernorm_bwd: w, dw and db must be contiguous (%lld)", (long long) C);
    }
    if (N == 0 || C == 0) return RK_OK; /* nothing to add to dw/db */
    if (N / RK_LAYERNORM_BWD_ROWS_PER_BLOCK >= (int64_t) INT32_MAX) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda layernorm_bwd: too many rows");
    }
    RK_DISPATCH_FLOAT(dt, T,
        layernorm_bwd_launch<T>((T *) dx->data, dw ? (T *) dw->data : nullptr, db ? (T *) db->data : nullptr,
                                (const T *) dout->data, (const T *) x->data,
                                residual ? (const T *) residual->data : nullptr, (const T *) w->data, rdx, rg, rx,
                                residual ? &rr : nullptr, p->eps, stream));
    return RK_OK;
}
