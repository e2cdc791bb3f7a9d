/*
 * loss.cu: CUDA RK_OP_BCE_LOGITS and RK_OP_SOFTMAX_XENT: the mean loss and, in the same pass, its gradient with
 * respect to the logits (optionally times a loss scale for fp16 training). CPU references kernels/loss_cpu.c;
 * parity cases BCE_LOGITS(...) and SOFTMAX_XENT(...) in tests/test_ops_train.c.
 *
 * BCE with logits as torch.nn.BCEWithLogitsLoss: with e = exp(-|x|), softplus(x) = max(x, 0) + log1p(e) and
 * softplus(-x) = max(-x, 0) + log1p(e) (each computed directly: no overflow, no cancellation); sigmoid(x) is 1/(1+e)
 * for x >= 0 and e/(1+e) below.
 * Softmax cross-entropy: per row an online (max, sum of exp(x - max)) pass, lse = max + log(sum), loss = lse -
 * x[target]; a second read of the row writes dlogits = (softmax - onehot) * scale / count.
 *
 * Kernel variants:
 *   bce_logits_kernel_v1<T>:   ONE block of 1024 threads for the whole (N,L): a strided loop summing in double, then
 *                              a fixed-tree block sum (deterministic; classifier heads have N*L ~ 10^3..10^6).
 *   xent_count_kernel_v1:      one block: the number of non-ignored rows, into scratch[N].
 *   xent_rows_kernel_v1<T, V>: one block per row (32..512 threads by V): the online max/sum per thread, merged in a
 *                              fixed tree; the row loss into scratch[row]; dlogits in a second read of the row.
 *   xent_mean_kernel_v1:       one block: the row losses summed in double in a fixed order, divided by the count.
 * V = 16-byte vectors when the rows allow it, else 1.
 * Bench: none yet.
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"

#define RK_BCE_BLOCK_SIZE 1024
#define RK_XENT_REDUCE_BLOCK_SIZE 1024
#define RK_XENT_MAX_ROW_BLOCK 512

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

struct bce_args {
    int64_t N, L;
    int64_t x_stride, y_stride, d_stride; /* row strides, elements */
    double  inv_n;                        /* 1 / (N L) */
    float   grad_coef;                    /* dlogits_scale / (N L) */
};

template <typename T>
static __global__ void bce_logits_kernel_v1(float * loss, T * dlogits, const T * logits, const T * targets,
                                            const T * pos_weight, const bce_args a) {
    __shared__ double smem[32];
    double            sum = 0.0; /* double: up to ~10^3 terms per thread */
    for (int64_t i = threadIdx.x; i < a.N * a.L; i += blockDim.x) {
        const int64_t r = i / a.L, c = i - r * a.L;
        const float   x = rk_to_f32(logits[r * a.x_stride + c]);
        const float   y = rk_to_f32(targets[r * a.y_stride + c]);
        const float   w = pos_weight ? rk_to_f32(pos_weight[c]) : 1.0f;
        const float   e = expf(-fabsf(x));
        const float   l = log1pf(e);
        const float   sp_pos = fmaxf(x, 0.0f) + l;  /* softplus(x)  = -log(1 - sigmoid(x)) */
        const float   sp_neg = fmaxf(-x, 0.0f) + l; /* softplus(-x) = -log(sigmoid(x))     */
        sum += (double) (w * y * sp_neg + (1.0f - y) * sp_pos);
        if (dlogits) {
            const float sg = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            dlogits[r * a.d_stride + c] = rk_from_f32<T>((w * y * (sg - 1.0f) + (1.0f - y) * sg) * a.grad_coef);
        }
    }
    const double total = rk_block_sum(sum, smem);
    if (threadIdx.x == 0) *loss = (float) (total * a.inv_n);
}

/* count[0] = number of targets that are not the ignore index (as a float: exact below 2^24 rows). */
static __global__ void xent_count_kernel_v1(const int32_t * targets, int64_t N, float * count) {
    __shared__ int smem[32];
    int            n = 0;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) n += targets[i] != RK_XENT_IGNORE_INDEX;
    const int total = rk_block_sum(n, smem);
    if (threadIdx.x == 0) *count = (float) total;
}

/* Merges (m2, s2) into the running (max m, sum s of exp(. - m)); -inf maxima contribute nothing, NaN propagates. */
__device__ __forceinline__ void lse_merge(float & m, float & s, float m2, float s2) {
    if (m2 > m) {
        s = s * expf(m - m2) + s2; /* m = -inf: s is 0 and exp(-inf) is 0 */
        m = m2;
    } else if (m2 != -INFINITY) {
        s += s2 * expf(m2 - m);
    }
}

template <typename T, int V>
static __global__ void xent_rows_kernel_v1(T * dlogits, const T * logits, const int32_t * targets, int64_t V_,
                                           int64_t x_stride, int64_t d_stride, float * row_loss, const float * count,
                                           float scale) {
    __shared__ float sm_m[32], sm_s[32], sm_xt;
    const int        tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nw = blockDim.x / 32;
    const int64_t    r   = blockIdx.x;
    const int64_t    t   = targets[r];
    const T *        x   = logits + r * x_stride;
    T *              d   = dlogits ? dlogits + r * d_stride : nullptr;
    if (t == RK_XENT_IGNORE_INDEX || t < 0 || t >= V_) {
        /* ignored: zero loss and gradient; out of range (not reportable from here): NaN, so it shows */
        const float fill = t == RK_XENT_IGNORE_INDEX ? 0.0f : __int_as_float(0x7fc00000);
        if (tid == 0) row_loss[r] = fill;
        if (d) {
            for (int64_t c = tid; c < V_; c += blockDim.x) d[c] = rk_from_f32<T>(fill);
        }
        return;
    }
    if (tid == 0) sm_xt = rk_to_f32(x[t]); /* read before any thread overwrites the row (dlogits may alias it) */
    float m = -INFINITY, s = 0.0f;
    for (int64_t c = (int64_t) tid * V; c < V_; c += (int64_t) blockDim.x * V) {
        float v[V];
        rk_load_f32<V>(x + c, v);
#pragma unroll
        for (int k = 0; k < V; k++) lse_merge(m, s, v[k], 1.0f);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < nw ? sm_m[lane] : -INFINITY;
        s = lane < nw ? sm_s[lane] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            lse_merge(m, s, m2, s2);
        }
        if (lane == 0) sm_m[0] = m + logf(s);
    }
    __syncthreads();
    const float lse = sm_m[0];
    if (tid == 0) row_loss[r] = lse - sm_xt;
    if (!d) return;
    const float cnt  = *count;
    const float coef = cnt > 0.0f ? scale / cnt : 0.0f;
    for (int64_t c = (int64_t) tid * V; c < V_; c += (int64_t) blockDim.x * V) {
        float v[V];
        rk_load_f32<V>(x + c, v);
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = (expf(v[k] - lse) - (c + k == t ? 1.0f : 0.0f)) * coef;
        rk_store_f32<V>(d + c, v);
    }
}

/* loss = sum of the N row losses (double, fixed order) / count; 0 when no row counts. */
static __global__ void xent_mean_kernel_v1(float * loss, const float * row_loss, int64_t N, const float * count) {
    __shared__ double smem[32];
    double            sum = 0.0;
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) sum += (double) row_loss[i];
    const double total = rk_block_sum(sum, smem);
    if (threadIdx.x == 0) *loss = *count > 0.0f ? (float) (total / (double) *count) : 0.0f;
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

static bool loss_ok(const struct rk_tensor * loss) {
    return loss->dtype == RK_DTYPE_F32 && rk_tensor_nelements(loss) == 1;
}

extern "C" enum rk_status rk_cuda_bce_logits(struct rk_tensor * loss, struct rk_tensor * dlogits,
                                             const struct rk_tensor * logits, const struct rk_tensor * targets,
                                             const struct rk_tensor * pos_weight, float dlogits_scale,
                                             cudaStream_t stream) {
    // logits, targets, dlogits (N,L) rows of one float dtype; pos_weight (L) or NULL; loss (1) f32
    const enum rk_dtype dt = logits->dtype;
    if (!rk_is_float_dtype(dt) || targets->dtype != dt || (dlogits && dlogits->dtype != dt) ||
        (pos_weight && pos_weight->dtype != dt) || !loss_ok(loss)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda bce_logits: logits, targets, dlogits, pos_weight one float dtype; loss (1) f32");
    }
    rk_rows rx, ry, rd = { 0, 0, 0 };
    if (!rk_rows_of(logits, &rx) || !rk_rows_of(targets, &ry) || (dlogits && !rk_rows_of(dlogits, &rd)) ||
        (pos_weight && !rk_tensor_is_contiguous(pos_weight))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda bce_logits: tensors must be rows with a contiguous last dim, pos_weight contiguous");
    }
    if (ry.nrows != rx.nrows || ry.ncols != rx.ncols || (dlogits && (rd.nrows != rx.nrows || rd.ncols != rx.ncols)) ||
        (pos_weight && rk_tensor_nelements(pos_weight) != rx.ncols)) {
        return rk_set_error(RK_STATUS_ARG, "cuda bce_logits: shape mismatch");
    }
    bce_args a;
    a.N         = rx.nrows;
    a.L         = rx.ncols;
    a.x_stride  = rx.stride;
    a.y_stride  = ry.stride;
    a.d_stride  = rd.stride;
    const int64_t n = a.N * a.L;
    a.inv_n     = n > 0 ? 1.0 / (double) n : 0.0;
    a.grad_coef = n > 0 ? (float) ((double) dlogits_scale / (double) n) : 0.0f;
    RK_DISPATCH_FLOAT(dt, T,
        bce_logits_kernel_v1<T><<<1, RK_BCE_BLOCK_SIZE, 0, stream>>>(
            (float *) loss->data, dlogits ? (T *) dlogits->data : nullptr, (const T *) logits->data,
            (const T *) targets->data, pos_weight ? (const T *) pos_weight->data : nullptr, a);
        RK_CUDA_CHECK(cudaGetLastError()));
    return RK_OK;
}

extern "C" int64_t rk_cuda_softmax_xent_scratch_size(int64_t N) { return N + 1; }

template <typename T, int V>
static void xent_rows_launch(T * dlogits, const T * logits, const int32_t * targets, const rk_rows & rx,
                             int64_t d_stride, float * row_loss, const float * count, float scale,
                             cudaStream_t stream) {
    /* enough threads for one vector each, in whole warps, 32..512 */
    int64_t threads = RK_CEIL_DIV(RK_CEIL_DIV(rx.ncols, (int64_t) V), (int64_t) 32) * 32;
    if (threads > RK_XENT_MAX_ROW_BLOCK) threads = RK_XENT_MAX_ROW_BLOCK;
    xent_rows_kernel_v1<T, V><<<(unsigned) rx.nrows, (unsigned) threads, 0, stream>>>(
        dlogits, logits, targets, rx.ncols, rx.stride, d_stride, row_loss, count, scale);
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_softmax_xent(struct rk_tensor * loss, struct rk_tensor * dlogits,
                                               const struct rk_tensor * logits, const struct rk_tensor * targets,
                                               float dlogits_scale, float * scratch, int64_t scratch_n,
                                               cudaStream_t stream) {
    // logits, dlogits (N,V) rows of one float dtype; targets (N) i32 contiguous; loss (1) f32
    const enum rk_dtype dt = logits->dtype;
    if (!rk_is_float_dtype(dt) || (dlogits && dlogits->dtype != dt) || !loss_ok(loss) ||
        targets->dtype != RK_DTYPE_I32 || !rk_tensor_is_contiguous(targets)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda softmax_xent: logits, dlogits one float dtype; targets contiguous i32; loss (1) f32");
    }
    rk_rows rx, rd = { 0, 0, 0 };
    if (!rk_rows_of(logits, &rx) || (dlogits && !rk_rows_of(dlogits, &rd))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda softmax_xent: tensors must be rows with a contiguous last dim");
    }
    if (rk_tensor_nelements(targets) != rx.nrows || (dlogits && (rd.nrows != rx.nrows || rd.ncols != rx.ncols)) ||
        (rx.nrows > 0 && rx.ncols < 1)) {
        return rk_set_error(RK_STATUS_ARG, "cuda softmax_xent: shape mismatch");
    }
    if (!scratch || scratch_n < rk_cuda_softmax_xent_scratch_size(rx.nrows)) {
        return rk_set_error(RK_STATUS_ARG, "cuda softmax_xent: scratch of %lld floats, %lld needed",
                            (long long) scratch_n, (long long) rk_cuda_softmax_xent_scratch_size(rx.nrows));
    }
    if (rx.nrows > INT32_MAX) return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda softmax_xent: more than 2^31 rows");
    const int32_t * tg       = (const int32_t *) targets->data;
    float *         row_loss = scratch;
    float *         count    = scratch + rx.nrows;
    xent_count_kernel_v1<<<1, RK_XENT_REDUCE_BLOCK_SIZE, 0, stream>>>(tg, rx.nrows, count);
    RK_CUDA_CHECK(cudaGetLastError());
    if (rx.nrows > 0) {
        RK_DISPATCH_FLOAT(dt, T, {
            T *           d          = dlogits ? (T *) dlogits->data : nullptr;
            const void *  ptrs[2]    = { logits->data, d };
            const int64_t strides[2] = { rx.stride, rd.stride };
            if (rk_vec_width(sizeof(T), rx.ncols, 2, ptrs, strides) > 1) {
                xent_rows_launch<T, 16 / sizeof(T)>(d, (const T *) logits->data, tg, rx, rd.stride, row_loss, count,
                                                    dlogits_scale, stream);
            } else {
                xent_rows_launch<T, 1>(d, (const T *) logits->data, tg, rx, rd.stride, row_loss, count,
                                       dlogits_scale, stream);
            }
        });
    }
    xent_mean_kernel_v1<<<1, RK_XENT_REDUCE_BLOCK_SIZE, 0, stream>>>((float *) loss->data, row_loss, rx.nrows, count);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}
