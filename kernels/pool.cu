/*
 * pool.cu: CUDA RK_OP_POOL (CLS / MEAN / MAX / LAST over the valid tokens of each sequence) and RK_OP_L2NORM
 * (x / max(||x||, eps), torch.nn.functional.normalize). CPU references: kernels/pool_cpu.c; parity cases POOL(...)
 * and L2NORM(...) in tests/test_ops.c.
 *
 * Also RK_OP_POOL_BWD (kernels/pool_bwd_cpu.c; POOL_BWD(...) in tests/test_ops_bwd.c).
 *
 * Kernel variants:
 *   pool_kernel_v1<T>:      one thread per (sequence, channel); each thread scans the sequence's mask (broadcast
 *                           loads) for the count and the last valid token, then reduces its channel in fp32.
 *                           A sequence with no valid token gives zeros in every mode.
 *   pool_bwd_kernel_v1<T>:  one thread per (sequence, channel), the same mask scan; MAX then finds the first valid
 *                           token holding the maximum (strict >, so ties go to the lowest t, as the CPU reference);
 *                           then the thread writes its channel of every token (the gradient or 0), coalesced across
 *                           the warp's channels.
 *   l2norm_kernel_v1<T, V>: one warp per row, fp32 sum of squares, then one pass that scales.
 * Bench: build/bench/bench_ops pool | l2norm
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#define RK_POOL_BLOCK_SIZE 128
#define RK_L2NORM_BLOCK_SIZE 256
#define RK_L2NORM_ROWS_PER_BLOCK (RK_L2NORM_BLOCK_SIZE / 32)

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

/* Row b of the (B,T_) mask (NULL when mask is: all valid); n = its number of valid tokens, last = the last valid one
 * (-1: none). */
__device__ __forceinline__ const int32_t * mask_row(const int32_t * mask, int64_t b, int64_t T_, int64_t & n,
                                                   int64_t & last) {
    const int32_t * mk = mask ? mask + b * T_ : nullptr;
    n                  = 0;
    last               = -1;
    for (int64_t t = 0; t < T_; t++) {
        if (!mk || mk[t] != 0) {
            n++;
            last = t;
        }
    }
    return mk;
}

/* x: element (b, t, c) at x + b*xs0 + t*xs1 + c; mask (B,T) i32 contiguous or NULL; dst row b at dst + b*ds. */
template <typename T>
static __global__ void pool_kernel_v1(T * dst, const T * x, const int32_t * mask, int64_t T_, int64_t C,
                                      int64_t xs0, int64_t xs1, int64_t ds, int mode) {
    const int64_t b = blockIdx.y;
    const int64_t c = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int64_t         n, last;
    const int32_t * mk = mask_row(mask, b, T_, n, last);
    const T * xb  = x + b * xs0 + c;
    float     out = 0.0f;
    if (n > 0) {
        switch (mode) {
            case RK_POOL_CLS: out = rk_to_f32(xb[0]); break;
            case RK_POOL_LAST: out = rk_to_f32(xb[last * xs1]); break;
            case RK_POOL_MEAN: {
                for (int64_t t = 0; t < T_; t++) {
                    if (!mk || mk[t] != 0) out += rk_to_f32(xb[t * xs1]);
                }
                out *= 1.0f / (float) n;
                break;
            }
            case RK_POOL_MAX: {
                out = -INFINITY;
                for (int64_t t = 0; t < T_; t++) {
                    if (!mk || mk[t] != 0) out = fmaxf(out, rk_to_f32(xb[t * xs1]));
                }
                break;
            }
            default: break;
        }
    }
    dst[b * ds + c] = rk_from_f32<T>(out);
}

/* dout row b at dout + b*gs; x element (b, t, c) at x + b*xs0 + t*xs1 + c; dx likewise with dxs0, dxs1; mask (B,T)
 * i32 contiguous or NULL. */
template <typename T>
static __global__ void pool_bwd_kernel_v1(T * dx, const T * dout, const T * x, const int32_t * mask, int64_t T_,
                                          int64_t C, int64_t gs, int64_t xs0, int64_t xs1, int64_t dxs0,
                                          int64_t dxs1, int mode) {
    const int64_t b = blockIdx.y;
    const int64_t c = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int64_t         n, last;
    const int32_t * mk = mask_row(mask, b, T_, n, last);
    const float g      = rk_to_f32(dout[b * gs + c]);
    int64_t     target = -1; /* the one token that gets g (CLS, LAST, MAX) */
    float       mean_g = 0.0f;
    if (n > 0) {
        switch (mode) {
            case RK_POOL_CLS: target = 0; break;
            case RK_POOL_LAST: target = last; break;
            case RK_POOL_MEAN: mean_g = g * (1.0f / (float) n); break;
            case RK_POOL_MAX: {
                const T * xb = x + b * xs0 + c;
                float     mx = 0.0f;
                for (int64_t t = 0; t < T_; t++) {
                    if (mk && mk[t] == 0) continue;
                    const float v = rk_to_f32(xb[t * xs1]);
                    if (target < 0 || v > mx) { /* strict: the first maximum wins */
                        target = t;
                        mx     = v;
                    }
                }
                break;
            }
            default: break;
        }
    }
    T * d = dx + b * dxs0 + c;
    for (int64_t t = 0; t < T_; t++) {
        float v;
        if (mode == RK_POOL_MEAN) {
            v = (n > 0 && (!mk || mk[t] != 0)) ? mean_g : 0.0f;
        } else {
            v = t == target ? g : 0.0f;
        }
        d[t * dxs1] = rk_from_f32<T>(v);
    }
}

template <typename T, int V>
static __global__ void l2norm_kernel_v1(T * dst, const T * x, int64_t N, int64_t C, int64_t dst_stride,
                                        int64_t x_stride, float eps) {
    const int64_t row  = (int64_t) blockIdx.x * RK_L2NORM_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= N) return;
    const T * xr = x + row * x_stride;
    T *       o  = dst + row * dst_stride;
    float     ss = 0.0f;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float v[V];
        rk_load_f32<V>(xr + c, v);
#pragma unroll
        for (int i = 0; i < V; i++) ss += v[i] * v[i];
    }
    const float inv = 1.0f / fmaxf(sqrtf(rk_warp_sum(ss)), eps);
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) { /* same lane reads then writes: dst may alias x */
        float v[V];
        rk_load_f32<V>(xr + c, v);
#pragma unroll
        for (int i = 0; i < V; i++) v[i] *= inv;
        rk_store_f32<V>(o + c, v);
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* x (and dx) (B,T,C) with a contiguous last dim and element-multiple outer strides; *s0, *s1 their strides. */
static bool btc_of(const struct rk_tensor * t, int64_t es, int64_t * s0, int64_t * s1) {
    if (t->ndim != 3 || (t->ne[2] > 1 && t->nb[2] != es) || t->nb[0] % es != 0 || t->nb[1] % es != 0) return false;
    *s0 = t->nb[0] / es;
    *s1 = t->nb[1] / es;
    return true;
}

/* x (B,T,C), last dim contiguous, any outer strides; mask (B,T) i32 contiguous or NULL; dst (B,C) rows. */
extern "C" enum rk_status rk_cuda_pool(struct rk_tensor * dst, const struct rk_tensor * x,
                                       const struct rk_tensor * mask, const struct rk_pool_params * p,
                                       cudaStream_t stream) {
    const enum rk_dtype dt = x->dtype;
    if (!rk_is_float_dtype(dt) || dst->dtype != dt) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool: dst and x must share one float dtype");
    }
    if (p->mode < 0 || p->mode >= RK_POOL_COUNT) return rk_set_error(RK_STATUS_ARG, "cuda pool: bad mode %d", (int) p->mode);
    const int64_t es = (int64_t) rk_dtype_traits[dt].type_size;
    int64_t       xs0, xs1;
    rk_rows       rd;
    if (!btc_of(x, es, &xs0, &xs1) || !rk_rows_of(dst, &rd)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool: x must be (B,T,C) with a contiguous last dim");
    }
    const int64_t B = x->ne[0], T = x->ne[1], C = x->ne[2];
    if (rd.nrows != B || rd.ncols != C) return rk_set_error(RK_STATUS_ARG, "cuda pool: dst must be (B,C)");
    if (mask && (mask->dtype != RK_DTYPE_I32 || !rk_tensor_is_contiguous(mask) || rk_tensor_nelements(mask) != B * T)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool: mask must be contiguous i32 (B,T)");
    }
    if (B == 0 || C == 0) return RK_OK;
    if (B > 65535) return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool: batch above 65535");
    const dim3 grid((unsigned) RK_CEIL_DIV(C, (int64_t) RK_POOL_BLOCK_SIZE), (unsigned) B);
    RK_DISPATCH_FLOAT(dt, T_,
        pool_kernel_v1<T_><<<grid, RK_POOL_BLOCK_SIZE, 0, stream>>>(
            (T_ *) dst->data, (const T_ *) x->data, mask ? (const int32_t *) mask->data : nullptr, T, C,
            xs0, xs1, rd.stride, (int) p->mode);
        RK_CUDA_CHECK(cudaGetLastError()));
    return RK_OK;
}

/* dout (B,C) rows; x, dx (B,T,C), last dim contiguous, any outer strides; mask (B,T) i32 contiguous or NULL. */
extern "C" enum rk_status rk_cuda_pool_bwd(struct rk_tensor * dx, const struct rk_tensor * dout,
                                           const struct rk_tensor * x, const struct rk_tensor * mask,
                                           const struct rk_pool_params * p, cudaStream_t stream) {
    const enum rk_dtype dt = x->dtype;
    if (!rk_is_float_dtype(dt) || dx->dtype != dt || dout->dtype != dt) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool_bwd: dx, dout and x must share one float dtype");
    }
    if (p->mode < 0 || p->mode >= RK_POOL_COUNT) {
        return rk_set_error(RK_STATUS_ARG, "cuda pool_bwd: bad mode %d", (int) p->mode);
    }
    const int64_t es = (int64_t) rk_dtype_traits[dt].type_size;
    int64_t       xs0, xs1, ds0, ds1;
    rk_rows       rg;
    if (!btc_of(x, es, &xs0, &xs1) || !btc_of(dx, es, &ds0, &ds1) || !rk_rows_of(dout, &rg)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda pool_bwd: x and dx must be (B,T,C) with a contiguous last dim, dout rows");
    }
    const int64_t B = x->ne[0], T = x->ne[1], C = x->ne[2];
    if (dx->ne[0] != B || dx->ne[1] != T || dx->ne[2] != C || rg.nrows != B || rg.ncols != C) {
        return rk_set_error(RK_STATUS_ARG, "cuda pool_bwd: dx must be (B,T,C) as x, dout (B,C)");
    }
    if (mask && (mask->dtype != RK_DTYPE_I32 || !rk_tensor_is_contiguous(mask) || rk_tensor_nelements(mask) != B * T)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool_bwd: mask must be contiguous i32 (B,T)");
    }
    if (B == 0 || T == 0 || C == 0) return RK_OK;
    if (B > 65535) return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda pool_bwd: batch above 65535");
    const dim3 grid((unsigned) RK_CEIL_DIV(C, (int64_t) RK_POOL_BLOCK_SIZE), (unsigned) B);
    RK_DISPATCH_FLOAT(dt, T_,
        pool_bwd_kernel_v1<T_><<<grid, RK_POOL_BLOCK_SIZE, 0, stream>>>(
            (T_ *) dx->data, (const T_ *) dout->data, (const T_ *) x->data,
            mask ? (const int32_t *) mask->data : nullptr, T, C, rg.stride, xs0, xs1, ds0, ds1, (int) p->mode);
        RK_CUDA_CHECK(cudaGetLastError()));
    return RK_OK;
}

template <typename T>
static void l2norm_launch(T * dst, const T * x, const rk_rows & rd, const rk_rows & rx, float eps,
                          cudaStream_t stream) {
    const void *  ptrs[2]    = { dst, x };
    const int64_t strides[2] = { rd.stride, rx.stride };
    const dim3    grid((unsigned) RK_CEIL_DIV(rx.nrows, (int64_t) RK_L2NORM_ROWS_PER_BLOCK));
    if (rk_vec_width(sizeof(T), rx.ncols, 2, ptrs, strides) > 1) {
        l2norm_kernel_v1<T, 16 / sizeof(T)><<<grid, RK_L2NORM_BLOCK_SIZE, 0, stream>>>(dst, x, rx.nrows, rx.ncols,
                                                                                      rd.stride, rx.stride, eps);
    } else {
        l2norm_kernel_v1<T, 1><<<grid, RK_L2NORM_BLOCK_SIZE, 0, stream>>>(dst, x, rx.nrows, rx.ncols, rd.stride,
                                                                          rx.stride, eps);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

/* dst, x (N,C) rows; one float dtype; dst may alias x. */
extern "C" enum rk_status rk_cuda_l2norm(struct rk_tensor * dst, const struct rk_tensor * x,
                                         const struct rk_l2norm_params * p, cudaStream_t stream) {
    rk_rows rd, rx;
    if (!rk_is_float_dtype(x->dtype) || dst->dtype != x->dtype) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda l2norm: dst and x must share one float dtype");
    }
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(x, &rx)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda l2norm: tensors must be rows with a contiguous last dim");
    }
    if (rd.nrows != rx.nrows || rd.ncols != rx.ncols) return rk_set_error(RK_STATUS_ARG, "cuda l2norm: shapes differ");
    if (rx.nrows == 0 || rx.ncols == 0) return RK_OK;
    RK_DISPATCH_FLOAT(x->dtype, T, l2norm_launch<T>((T *) dst->data, (const T *) x->data, rd, rx, p->eps, stream));
    return RK_OK;
}
