/*
 * layernorm.cu: CUDA RK_OP_LAYERNORM, torch.nn.LayerNorm semantics (biased variance, eps inside the square root)
 * with an optional residual added first (post-LN BERT: LN(h + sublayer(h))). The CPU reference is
 * kernels/layernorm_cpu.c; parity cases are LAYERNORM(...) in tests/test_ops.c.
 *
 * Kernel variants:
 *   layernorm_kernel_v1<T, V>: one warp per row, 8 rows per 256-thread block, fp32 two-pass statistics
 *                              (rk_layernorm_row_warp in kernels/cuda_ops.h); V = 16-byte vectors when every
 *                              pointer and row stride allows it (C % 8 == 0 for 16-bit types), else scalar.
 *                              The row is read three times (mean, variance, output; L1 hits after the first).
 *   layernorm_kernel_v2<T, V, NV, G, R>: the row held in registers: a group of G lanes (32 / G groups per warp)
 *                              handles R rows; lane l of a group holds the V-vectors k G + l, k < NV, of each row,
 *                              loaded (x, then the residual) before any math: 2 R NV 16-byte loads in flight per
 *                              lane. The same two-pass fp32 statistics from the registers (mean, then the centred
 *                              sum of squares), reduced over the group with xor shuffles; dst written by the lane
 *                              that read it (dst may alias x or the residual). Needs NV V >= C / G, NV <= 8.
 *
 * Variants (RK_LAYERNORM_VARIANT=N or rk_cuda_layernorm_set_variant, kernels/cuda_ops.h):
 *   1  v1                                               (the reference; the default is v2, measured faster)
 *   2  v2, G = 32, R = 1: one row per warp in registers (C = 768 bf16: 3 vectors of x + 3 of residual per lane)
 *   3  v2, G = 32, R = 2: two rows per warp in flight   (NV <= 4: C <= 1024 for 16-bit types)
 *   4  v2, G = 8..32, R = 1: the largest G that leaves each lane >= 4 vectors (C = 768 bf16: G = 16, 6 vectors;
 *                              C = 384: G = 8): fewer lanes per row, more bytes per lane, shorter reductions
 * Rows too long for a variant (or, for 3, NV > 4) run v1. Why: on the H200, LayerNorm + residual (16384 x 768 bf16)
 * ran at 2,502 GB/s against 4,228 for a copy (docs/PERF.md): per warp, one 16-byte load of x and residual per lane
 * at a time.
 * Bench: build/bench/bench_ops layernorm;  build/bench/bench_ops layernorm --variant all  (every variant)
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"


#define RK_LAYERNORM_BLOCK_SIZE 256
#define RK_LAYERNORM_ROWS_PER_BLOCK (RK_LAYERNORM_BLOCK_SIZE / 32)

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

/* x, residual, dst: N rows of C with row strides (elements); w, b: (C). No __restrict__: dst may alias x/residual. */
template <typename T, int V>
static __global__ void layernorm_kernel_v1(T * dst, const T * x, const T * residual, const T * w, const T * b,
                                           int64_t N, int64_t C, int64_t dst_stride, int64_t x_stride,
                                           int64_t res_stride, float eps) {
    const int64_t row  = (int64_t) blockIdx.x * RK_LAYERNORM_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= N) return; /* whole warps leave together: the shuffles below stay full-warp */
    rk_ln_load_sum<T, V> load = { x + row * x_stride, residual ? residual + row * res_stride : nullptr };
    rk_layernorm_row_warp<T, V>(load, dst + row * dst_stride, w, b, C, eps, lane);
}

/* Sum over the G lanes of a lane group (G a power of two <= 32); every lane of the warp must call it. */
template <int G> __device__ __forceinline__ float group_sum(float v) {
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/*
 * x, residual, dst: N rows of C with row strides (elements); w, b: (C). Lane gl of group grp of a warp handles rows
 * row0 + r * (32 / G) + grp, r < R, and in each the V-vectors k G + gl, k < NV (those past C are zeros, not stored).
 * Rows past N are computed on zeros and not stored: the group's lanes stay in the shuffles.
 */
template <typename T, int V, int NV, int G, int R>
static __global__ void __launch_bounds__(RK_LAYERNORM_BLOCK_SIZE)
    layernorm_kernel_v2(T * dst, const T * x, const T * residual, const T * w, const T * b, int64_t N, int64_t C,
                        int64_t dst_stride, int64_t x_stride, int64_t res_stride, float eps) {
    constexpr int GPW  = 32 / G; /* groups per warp */
    const int     lane = threadIdx.x % 32, gl = lane % G, grp = lane / G;
    const int64_t row0 = ((int64_t) blockIdx.x * (RK_LAYERNORM_BLOCK_SIZE / 32) + threadIdx.x / 32) * (GPW * R);
    if (row0 >= N) return; /* whole warps leave together: the shuffles below stay full-warp */
    int64_t row[R];
    bool    row_ok[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        row[r]    = row0 + r * GPW + grp;
        row_ok[r] = row[r] < N;
    }
    bool col_ok[NV];
#pragma unroll
    for (int k = 0; k < NV; k++) col_ok[k] = (int64_t) (k * G + gl) * V < C;

    /* this lane's vectors of the R rows of src (row stride st) into t, zeros where out of range */
    auto load_rows = [&](const T * src, int64_t st, float (&t)[R][NV][V]) {
#pragma unroll
        for (int r = 0; r < R; r++) {
#pragma unroll
            for (int k = 0; k < NV; k++) {
                if (row_ok[r] && col_ok[k]) {
                    rk_load_f32<V>(src + row[r] * st + (k * G + gl) * V, t[r][k]);
                } else {
#pragma unroll
                    for (int i = 0; i < V; i++) t[r][k][i] = 0.0f;
                }
            }
        }
    };
    float v[R][NV][V];
    load_rows(x, x_stride, v);
    if (residual) {
        float rv[R][NV][V];
        load_rows(residual, res_stride, rv);
#pragma unroll
        for (int r = 0; r < R; r++) {
#pragma unroll
            for (int k = 0; k < NV; k++) {
#pragma unroll
                for (int i = 0; i < V; i++) v[r][k][i] += rv[r][k][i];
            }
        }
    }

    /* two-pass statistics, as rk_layernorm_stats_warp: the mean, then the centred sum of squares */
    float mean[R], rstd[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++) {
#pragma unroll
            for (int i = 0; i < V; i++) sum += v[r][k][i];
        }
        mean[r] = sum;
    }
#pragma unroll
    for (int r = 0; r < R; r++) mean[r] = group_sum<G>(mean[r]) / (float) C;
#pragma unroll
    for (int r = 0; r < R; r++) {
        float sq = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            if (col_ok[k]) {
#pragma unroll
                for (int i = 0; i < V; i++) sq += (v[r][k][i] - mean[r]) * (v[r][k][i] - mean[r]);
            }
        }
        rstd[r] = sq;
    }
#pragma unroll
    for (int r = 0; r < R; r++) rstd[r] = rsqrtf(group_sum<G>(rstd[r]) / (float) C + eps);

#pragma unroll
    for (int k = 0; k < NV; k++) {
        if (!col_ok[k]) continue;
        const int64_t c = (int64_t) (k * G + gl) * V;
        float         wv[V], bv[V];
        rk_load_ln_wb<V>(w, b, c, wv, bv);
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (!row_ok[r]) continue;
            float y[V];
#pragma unroll
            for (int i = 0; i < V; i++) y[i] = (v[r][k][i] - mean[r]) * rstd[r] * wv[i] + bv[i];
            rk_store_f32<V>(dst + row[r] * dst_stride + c, y);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * variant selection (kernels/cuda_ops.h) */

/* the default: $RK_LAYERNORM_VARIANT when it names a variant (read once), else 2 (row in registers: 1.22x variant 1
 * on an H200, LayerNorm + residual 16384 x 768 bf16; docs/PERF.md) */
static struct rk_variant_knob ln_knob = RK_VARIANT_KNOB("RK_LAYERNORM_VARIANT", "cuda layernorm",
                                                        RK_LAYERNORM_N_VARIANTS, 2);

extern "C" int rk_cuda_layernorm_variant(void) { return rk_variant_knob_get(&ln_knob); }

extern "C" enum rk_status rk_cuda_layernorm_set_variant(int variant) { return rk_variant_knob_set(&ln_knob, variant); }

extern "C" const char * rk_cuda_layernorm_variant_name(int variant) {
    static const char * const names[RK_LAYERNORM_N_VARIANTS] = { "default", "v1_warp", "v2_regs", "v2_regs_2rows",
                                                                 "v2_regs_group" };
    return variant >= 0 && variant < RK_LAYERNORM_N_VARIANTS ? names[variant] : "?";
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

template <typename T, int V, int NV, int G, int R>
static void layernorm_launch_v2(T * dst, const T * x, const T * res, const T * w, const T * b, int64_t N, int64_t C,
                                int64_t ds, int64_t xs, int64_t rs, float eps, cudaStream_t stream) {
    constexpr int64_t rows_per_block = (RK_LAYERNORM_BLOCK_SIZE / 32) * (32 / G) * R;
    const dim3        grid((unsigned) RK_CEIL_DIV(N, rows_per_block));
    layernorm_kernel_v2<T, V, NV, G, R><<<grid, RK_LAYERNORM_BLOCK_SIZE, 0, stream>>>(dst, x, res, w, b, N, C, ds, xs,
                                                                                      rs, eps);
    RK_CUDA_CHECK(cudaGetLastError());
}

/* The NV values v2 is instantiated for: 1, 2, 3, 4, 6, 8. */
static constexpr int ln_nv_at(int i) { return i < 4 ? i + 1 : i == 4 ? 6 : 8; }

/* v2 with the smallest instantiated NV in [NV_MIN, NV_MAX] that covers the row (NV G V >= C). False (nothing
 * launched) when none does. */
template <typename T, int V, int G, int R, int NV_MIN, int NV_MAX, int I = 0>
static bool layernorm_try_v2(T * dst, const T * x, const T * res, const T * w, const T * b, int64_t N, int64_t C,
                             int64_t ds, int64_t xs, int64_t rs, float eps, cudaStream_t stream) {
    if constexpr (I < 6) {
        constexpr int NV = ln_nv_at(I);
        if constexpr (NV >= NV_MIN && NV <= NV_MAX) {
            if ((int64_t) NV * G * V >= C) {
                layernorm_launch_v2<T, V, NV, G, R>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
                return true;
            }
        }
        return layernorm_try_v2<T, V, G, R, NV_MIN, NV_MAX, I + 1>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
    } else {
        return false;
    }
}

/* The variant in effect; a layout it cannot take runs v1. */
template <typename T, int V>
static void layernorm_launch_vw(T * dst, const T * x, const T * res, const T * w, const T * b, int64_t N, int64_t C,
                                int64_t ds, int64_t xs, int64_t rs, float eps, cudaStream_t stream) {
    const int     variant = rk_cuda_layernorm_variant();
    const int64_t nvec    = RK_CEIL_DIV(C, (int64_t) V);
    bool          done    = false;
    if (variant == 2) {
        done = layernorm_try_v2<T, V, 32, 1, 1, 8>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
    } else if (variant == 3) {
        done = layernorm_try_v2<T, V, 32, 2, 1, 4>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
    } else if (variant == 4) { /* the largest G leaving each lane >= 4 vectors; G = 8 for short rows */
        if (nvec >= 4 * 32) {
            done = layernorm_try_v2<T, V, 32, 1, 4, 8>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
        } else if (nvec >= 4 * 16) {
            done = layernorm_try_v2<T, V, 16, 1, 4, 8>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
        } else {
            done = layernorm_try_v2<T, V, 8, 1, 4, 8>(dst, x, res, w, b, N, C, ds, xs, rs, eps, stream);
        }
    }
    if (done) return;
    const dim3 grid((unsigned) RK_CEIL_DIV(N, (int64_t) RK_LAYERNORM_ROWS_PER_BLOCK));
    layernorm_kernel_v1<T, V><<<grid, RK_LAYERNORM_BLOCK_SIZE, 0, stream>>>(dst, x, res, w, b, N, C, ds, xs, rs, eps);
    RK_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
static void layernorm_launch(T * dst, const T * x, const T * res, const T * w, const T * b, const rk_rows & rd,
                             const rk_rows & rx, const rk_rows * rr, float eps, cudaStream_t stream) {
    const void *  ptrs[5]    = { dst, x, res, w, b };
    const int64_t strides[5] = { rd.stride, rx.stride, rr ? rr->stride : 0, 0, 0 };
    const int     v          = rk_vec_width(sizeof(T), rd.ncols, 5, ptrs, strides);
    const int64_t rs         = rr ? rr->stride : 0;
    if (v == 16 / (int) sizeof(T)) {
        layernorm_launch_vw<T, 16 / sizeof(T)>(dst, x, res, w, b, rd.nrows, rd.ncols, rd.stride, rx.stride, rs, eps,
                                               stream);
    } else {
        layernorm_launch_vw<T, 1>(dst, x, res, w, b, rd.nrows, rd.ncols, rd.stride, rx.stride, rs, eps, stream);
    }
}

/*
 * dst, x, residual (N,C) rows (any row strides, last dim contiguous); w, b (C) contiguous. All one float dtype.
 * Returns RK_STATUS_UNSUPPORTED/ARG without launching when the layout or shapes do not fit.
 */
extern "C" enum rk_status rk_cuda_layernorm(struct rk_tensor * dst, const struct rk_tensor * x,
                                            const struct rk_tensor * w, const struct rk_tensor * b,
                                            const struct rk_tensor * residual, const struct rk_layernorm_params * p,
                                            cudaStream_t stream) {
    const enum rk_dtype dt = x->dtype;
    rk_rows rd, rx, rr, rw, rb;
    if (!rk_is_float_dtype(dt) || dst->dtype != dt || w->dtype != dt || (b && b->dtype != dt) ||
        (residual && residual->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda layernorm: all tensors must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(x, &rx) || (residual && !rk_rows_of(residual, &rr)) ||
        !rk_rows_of(w, &rw) || (b && !rk_rows_of(b, &rb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda layernorm: tensors must be rows with a contiguous last dim");
    }
    const int64_t C = rx.ncols;
    if (rd.nrows != rx.nrows || rd.ncols != C || (residual && (rr.nrows != rx.nrows || rr.ncols != C)) ||
        rw.nrows * rw.ncols != C || rw.nrows != 1 || (b && (rb.nrows != 1 || rb.ncols != C))) {
        return rk_set_error(RK_STATUS_ARG, "cuda layernorm: shape mismatch (x %lld x %lld)", (long long) rx.nrows,
                            (long long) C);
    }
    if (rx.nrows == 0 || C == 0) return RK_OK;
    if (rd.nrows / RK_LAYERNORM_ROWS_PER_BLOCK >= (int64_t) INT32_MAX) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda layernorm: too many rows");
    }
    RK_DISPATCH_FLOAT(dt, T,
        layernorm_launch<T>((T *) dst->data, (const T *) x->data, residual ? (const T *) residual->data : nullptr,
                            (const T *) w->data, b ? (const T *) b->data : nullptr, rd, rx, residual ? &rr : nullptr,
                            p->eps, stream));
    return RK_OK;
}
