/*
 * layernorm.cu: CUDA RK_OP_LAYERNORM, torch.nn.LayerNorm semantics (biased variance, eps inside the square root)
 * with an optional residual added first (post-LN BERT: LN(h + sublayer(h))). The CPU reference is
 * kernels/layernorm_cpu.c; parity cases are LAYERNORM(...) in tests/test_ops.c.
 *
 * Kernel variants:
 *   layernorm_kernel_v1<T, V>: one warp per row, 8 rows per 256-thread block, fp32 two-pass statistics
 *                              (rk_layernorm_row_warp in kernels/cuda_ops.h); V = 16-byte vectors when every
 *                              pointer and row stride allows it (C % 8 == 0 for 16-bit types), else scalar.
 * Bench: build/bench/bench_ops layernorm
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

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

template <typename T>
static void layernorm_launch(T * dst, const T * x, const T * res, const T * w, const T * b, const rk_rows & rd,
                             const rk_rows & rx, const rk_rows * rr, float eps, cudaStream_t stream) {
    const void *  ptrs[5]    = { dst, x, res, w, b };
    const int64_t strides[5] = { rd.stride, rx.stride, rr ? rr->stride : 0, 0, 0 };
    const int     v          = rk_vec_width(sizeof(T), rd.ncols, 5, ptrs, strides);
    const dim3    grid((unsigned) RK_CEIL_DIV(rd.nrows, (int64_t) RK_LAYERNORM_ROWS_PER_BLOCK));
    const int64_t rs = rr ? rr->stride : 0;
    if (v == 16 / (int) sizeof(T)) {
        layernorm_kernel_v1<T, 16 / sizeof(T)><<<grid, RK_LAYERNORM_BLOCK_SIZE, 0, stream>>>(
            dst, x, res, w, b, rd.nrows, rd.ncols, rd.stride, rx.stride, rs, eps);
    } else {
        layernorm_kernel_v1<T, 1><<<grid, RK_LAYERNORM_BLOCK_SIZE, 0, stream>>>(
            dst, x, res, w, b, rd.nrows, rd.ncols, rd.stride, rx.stride, rs, eps);
    }
    RK_CUDA_CHECK(cudaGetLastError());
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
