/*
 * cuda_ops.h: C ABI of the CUDA launchers of the dense ops (all but attention, which is kernels/attn_cuda.h),
 * the cuBLAS/cuBLASLt context, and small layout helpers shared by the launchers and host/backend_cuda.c.
 * Only built with CUDA (-DRK_HAVE_CUDA); the dispatcher in host/backend_cuda.c is the usual caller.
 *
 * Every launcher:
 *   - takes the same tensors as the op's CPU reference (see host/backend.h for shapes and semantics) plus a stream;
 *   - supports f32, f16 and bf16 activations (all floating tensors of one call share one dtype), with fp32 math;
 *   - checks shapes, dtypes and layouts and returns RK_STATUS_UNSUPPORTED (message set) for what it cannot do,
 *     without launching anything; RK_STATUS_ARG for inconsistent shapes;
 *   - checks its launch (RK_CUDA_CHECK(cudaGetLastError())) and aborts on a CUDA fault (STYLE.md 5);
 *   - is asynchronous on `stream` and allocates nothing.
 * Row layouts: a tensor is used as rows (N, C) whose last dim is contiguous and whose outer dims collapse into one
 * row stride (rk_rows_of below), so (B,T,C) tensors and 2-D views with a row stride larger than C both work.
 *
 * The lower half of this header (under __CUDACC__) holds device helpers shared by the kernels/<op>.cu files.
 */
#ifndef RK_KERNELS_CUDA_OPS_H
#define RK_KERNELS_CUDA_OPS_H

#include "backend.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * layout helpers (host; C and C++) */

/* A tensor seen as nrows x ncols with contiguous rows; stride is the distance between rows in elements. */
struct rk_rows {
    int64_t nrows;
    int64_t ncols;
    int64_t stride;
};

/*
 * Describes t as rows. False when the last dim is not contiguous or the outer dims do not collapse into one row
 * stride (then the op is unsupported). Cannot fail otherwise.
 */
static inline bool rk_rows_of(const struct rk_tensor * t, struct rk_rows * r) {
    const int64_t es = (int64_t) rk_dtype_traits[t->dtype].type_size;
    if (rk_dtype_traits[t->dtype].is_quantized || t->ndim < 1) return false;
    const int last = t->ndim - 1;
    r->ncols  = t->ne[last];
    r->nrows  = 1;
    r->stride = r->ncols;
    if (r->ncols > 1 && t->nb[last] != es) return false;
    int64_t expect = -1; /* byte stride the next outer non-trivial dim must have */
    for (int d = last - 1; d >= 0; d--) {
        r->nrows *= t->ne[d];
        if (t->ne[d] == 1) continue;
        if (expect < 0) {
            if (t->nb[d] % es != 0 || t->nb[d] < r->ncols * es) return false;
            r->stride = t->nb[d] / es;
        } else if (t->nb[d] != expect) {
            return false;
        }
        expect = t->nb[d] * t->ne[d];
    }
    return true;
}

/*
 * The rows of a matmul dst (M,N) = x (M,K) w (N,K)^T (+ bias (N)) into rx, rw, rd. RK_STATUS_UNSUPPORTED when a tensor
 * is not rows with a contiguous last dim, RK_STATUS_ARG when the shapes disagree; messages start with what.
 */
static inline enum rk_status rk_matmul_rows(const char * what, const struct rk_tensor * dst, const struct rk_tensor * x,
                                            const struct rk_tensor * w, const struct rk_tensor * bias,
                                            struct rk_rows * rx, struct rk_rows * rw, struct rk_rows * rd) {
    struct rk_rows rb;
    if (!rk_rows_of(x, rx) || !rk_rows_of(w, rw) || !rk_rows_of(dst, rd) || (bias && !rk_rows_of(bias, &rb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: tensors must be rows with a contiguous last dim", what);
    }
    const int64_t M = rx->nrows, K = rx->ncols, N = rw->nrows;
    if (rw->ncols != K || rd->nrows != M || rd->ncols != N || (bias && (rb.nrows != 1 || rb.ncols != N))) {
        return rk_set_error(RK_STATUS_ARG, "%s: shape mismatch x (%lld,%lld) w (%lld,%lld) dst (%lld,%lld)", what,
                            (long long) M, (long long) K, (long long) rw->nrows, (long long) rw->ncols,
                            (long long) rd->nrows, (long long) rd->ncols);
    }
    return RK_OK;
}

/* Largest power of two (<= 256) dividing the address: what vector loads and cuBLASLt may assume. */
static inline unsigned rk_ptr_align(const void * p) {
    uintptr_t a = (uintptr_t) p;
    unsigned  n = 1;
    while (n < 256 && (a & (uintptr_t) (2 * n - 1)) == 0) n *= 2;
    return n;
}

static inline bool rk_is_float_dtype(enum rk_dtype t) {
    return t == RK_DTYPE_F32 || t == RK_DTYPE_F16 || t == RK_DTYPE_BF16;
}

/* True when t is n contiguous i32 values (token ids, type ids), as the embedding launchers take them. */
static inline bool rk_ids_ok(const struct rk_tensor * t, int64_t n) {
    return t->dtype == RK_DTYPE_I32 && rk_tensor_is_contiguous(t) && rk_tensor_nelements(t) == n;
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers (kernels/<op>.cu). Shapes: see the op comments in host/backend.h. */

/*
 * EMBED (kernels/embed.cu). dst (B,T,C) = wte[ids] + wpe[pos_offset + t] + wtt[type_ids]; wpe, wtt, type_ids may
 * be NULL. When ln_w is not NULL the embedding LayerNorm is fused: dst = LN(sum) * ln_w + ln_b (ln_b may be NULL).
 * Token and type ids are NOT range-checked on the host (they live on the device): the model/tokenizer validates
 * them before upload (rk_bert_forward does). An out-of-range id cannot read out of bounds: its output row is NaN,
 * so the error shows downstream instead of corrupting memory. Positions are checked here (RK_STATUS_ARG).
 */
enum rk_status rk_cuda_embed(struct rk_tensor * dst, const struct rk_tensor * wte, const struct rk_tensor * ids,
                             const struct rk_tensor * wpe, const struct rk_tensor * wtt,
                             const struct rk_tensor * type_ids, const struct rk_embed_params * p,
                             const struct rk_tensor * ln_w, const struct rk_tensor * ln_b, float ln_eps,
                             cudaStream_t stream);

/* LAYERNORM (kernels/layernorm.cu). dst (N,C) = LN(x + residual) * w + b; b, residual may be NULL; dst may alias
 * x or residual (exactly, same rows). */
enum rk_status rk_cuda_layernorm(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * w,
                                 const struct rk_tensor * b, const struct rk_tensor * residual,
                                 const struct rk_layernorm_params * p, cudaStream_t stream);

/* GELU (erf form) and ADD (kernels/elementwise.cu); same shapes; dst may alias an input. */
enum rk_status rk_cuda_gelu(struct rk_tensor * dst, const struct rk_tensor * x, cudaStream_t stream);
enum rk_status rk_cuda_add(struct rk_tensor * dst, const struct rk_tensor * a, const struct rk_tensor * b,
                           cudaStream_t stream);
/* In place on dst (M,N): dst = act(dst + bias); bias (N) or NULL. The matmul epilogue when cuBLASLt cannot do it. */
enum rk_status rk_cuda_bias_act(struct rk_tensor * dst, const struct rk_tensor * bias, enum rk_act act,
                                cudaStream_t stream);

/*
 * Kernel variants of the GELU pass (rk_cuda_gelu, and rk_cuda_bias_act with RK_ACT_GELU, hence the matmul epilogue)
 * and of LAYERNORM (rk_cuda_layernorm), so that a benchmark run can time them all and the parity tests check them
 * all; what each one is: the headers of kernels/elementwise.cu and kernels/layernorm.cu. Variant 1 is the reference
 * kernel; the built-in defaults (measured, docs/PERF.md) are GELU 3 and LAYERNORM 2; variant 0 means "the default".
 * The default can be overridden by the environment, read once at the first launch: RK_GELU_VARIANT=N,
 * RK_LAYERNORM_VARIANT=N (N in 1..count-1; 0 or unset: the built-in default; anything else: a warning on stderr and
 * the built-in default).
 *   *_variant():          the variant the launchers use now (1..count-1). Cannot fail.
 *   *_set_variant(v):     from now on, launches use variant v; 0 restores the default. Process-wide and not
 *                         thread-safe: set it while no other thread launches these ops. RK_STATUS_ARG when v is out
 *                         of range (nothing changed).
 *   *_variant_name(v):    a short name ("v1_erff", ...); "?" out of range. Cannot fail.
 * A variant that cannot take a layout (e.g. a LayerNorm row too long to hold in registers) runs variant 1 for it.
 */
#define RK_GELU_N_VARIANTS      5 /* 0 (default) .. 4 */
#define RK_LAYERNORM_N_VARIANTS 5 /* 0 (default) .. 4 */
int            rk_cuda_gelu_variant(void);
enum rk_status rk_cuda_gelu_set_variant(int variant);
const char *   rk_cuda_gelu_variant_name(int variant);
int            rk_cuda_layernorm_variant(void);
enum rk_status rk_cuda_layernorm_set_variant(int variant);
const char *   rk_cuda_layernorm_variant_name(int variant);

/* SOFTMAX (kernels/softmax.cu). dst (N,C) = softmax(x * scale) along C; a row of all -inf gives zeros. */
enum rk_status rk_cuda_softmax(struct rk_tensor * dst, const struct rk_tensor * x,
                               const struct rk_softmax_params * p, cudaStream_t stream);

/* POOL and L2NORM (kernels/pool.cu). pool: x (B,T,C), mask (B,T) i32 or NULL, dst (B,C); an empty row gives
 * zeros. l2norm: dst (N,C) = x / max(||x||, eps); dst may alias x. */
enum rk_status rk_cuda_pool(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * mask,
                            const struct rk_pool_params * p, cudaStream_t stream);
enum rk_status rk_cuda_l2norm(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_l2norm_params * p,
                              cudaStream_t stream);

/* ---- backward ops and training helpers (shapes and semantics: host/backend.h) ------------------------------- */

/*
 * GELU_BWD (kernels/elementwise.cu). dx = dout * gelu'(x), erf form; dx, dout, x the same shape, rows with any row
 * strides; dx may alias dout (exactly, same rows).
 */
enum rk_status rk_cuda_gelu_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * x,
                                cudaStream_t stream);
/* TANH (kernels/elementwise.cu). dst = tanh(x); same shape, rows; dst may alias x. */
enum rk_status rk_cuda_tanh(struct rk_tensor * dst, const struct rk_tensor * x, cudaStream_t stream);
/* TANH_BWD (kernels/elementwise.cu). dx = dout * (1 - y*y), y the forward's output; same shape, rows; dx may alias
 * dout. */
enum rk_status rk_cuda_tanh_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * y,
                                cudaStream_t stream);
/* FILL (kernels/elementwise.cu). Every element of dst (rows; f32, f16, bf16 or i32) = value, rounded to the dtype
 * once (i32: (int32_t) value, truncation toward zero). */
enum rk_status rk_cuda_fill(struct rk_tensor * dst, float value, cudaStream_t stream);

/*
 * LAYERNORM_BWD (kernels/layernorm_bwd.cu). dout, x, residual (N,C) rows; w (C); residual may be NULL.
 * dx (N,C) rows = the gradient of x + residual, overwritten; may alias dout (exactly, same rows), not x or residual.
 * dw, db (C) contiguous, ACCUMULATED (+=), either may be NULL. Mean and rstd are recomputed per row in fp32 (two
 * passes, as the forward). dw/db are deterministic (fixed summation order, no atomics, no scratch): see the file.
 */
enum rk_status rk_cuda_layernorm_bwd(struct rk_tensor * dx, struct rk_tensor * dw, struct rk_tensor * db,
                                     const struct rk_tensor * dout, const struct rk_tensor * x,
                                     const struct rk_tensor * w, const struct rk_tensor * residual,
                                     const struct rk_layernorm_params * p, cudaStream_t stream);

/* SOFTMAX_BWD (kernels/softmax.cu). dx (N,C) = scale * y * (dy - sum_c dy*y); dy, y, dx rows; dx may alias dy. */
enum rk_status rk_cuda_softmax_bwd(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * y,
                                   const struct rk_softmax_params * p, cudaStream_t stream);

/*
 * POOL_BWD (kernels/pool.cu). dout (B,C) rows; x (B,T,C) the forward input (read by MAX only), mask (B,T) i32
 * contiguous or NULL; dx (B,T,C) overwritten, zero where a token gets no gradient. x and dx: last dim contiguous,
 * any outer strides. MAX: the first valid token holding the maximum (ties: the lowest t), as rk_cpu_pool_bwd.
 */
enum rk_status rk_cuda_pool_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * x,
                                const struct rk_tensor * mask, const struct rk_pool_params * p, cudaStream_t stream);

/* ---- MATMUL (kernels/matmul.cu): cuBLASLt with a cuBLAS fallback ------------------------------------------- */

/* cuBLAS + cuBLASLt handles, a workspace and a small cache of matmul plans. Opaque. */
struct rk_cuda_blas;

/*
 * Creates the handles and a workspace on the current device. Returns NULL with the error set (RK_STATUS_DEVICE)
 * when a handle or the workspace cannot be created. Free with rk_cuda_blas_free (NULL is fine).
 */
struct rk_cuda_blas * rk_cuda_blas_init(void);
void                  rk_cuda_blas_free(struct rk_cuda_blas * blas);
/* Its cuBLAS handle (a cublasHandle_t; workspace set, stream set by each user before a call), for launchers that call
 * cuBLAS themselves (lora/lora.cu's unfused variant). NULL for NULL. Cannot fail. */
struct cublasContext * rk_cuda_blas_cublas(struct rk_cuda_blas * blas);

/*
 * dst (M,N) = x (M,K) @ w (N,K)^T (+ bias (N)), then p->act (GELU = erf form). x and dst may have row strides larger
 * than their width; w rows contiguous. f16/bf16: fp32 accumulation, result rounded once; f32: full fp32 (no TF32).
 * The plan cache makes this not thread-safe: one blas context per host thread.
 */
enum rk_status rk_cuda_matmul(struct rk_cuda_blas * blas, struct rk_tensor * dst, const struct rk_tensor * x,
                              const struct rk_tensor * w, const struct rk_tensor * bias,
                              const struct rk_matmul_params * p, cudaStream_t stream);

/*
 * The matmul with the GELU epilogue (p->act == RK_ACT_GELU, no accumulate): which kernel rk_cuda_matmul runs
 * (kernels/matmul_gelu.cu header). Variant 1: cuBLASLt with the bias epilogue, then the GELU pass; 2, 3, 4 and 6:
 * the fused wgmma kernels (bias and erf GELU applied to the fp32 accumulators, one rounding; 6, the built-in default,
 * is warp-specialized with TMA), and 5, the fused mma.sync kernel (sm_80 and newer), used when
 * rk_cuda_matmul_gelu_fused takes the call, else variant 1. RK_MATMUL_GELU_VARIANT=N sets the default, as the GELU
 * variants above (same contract for *_variant, *_set_variant, *_variant_name).
 *   rk_cuda_matmul_gelu_fused: dst (M,N) = gelu(x (M,K) w (N,K)^T + bias (N)) with fused variant 2 to 6. Takes
 *     the call when the device is compute capability 9.0 (variants 2-4 and 6: the build has sm_90a; 6 also needs
 *     cuTensorMapEncodeTiled from the driver) or 8.0 and newer with 96 KB of shared memory per block (variant 5),
 *     x, w, bias and dst are all f16 or all
 *     bf16, K is a multiple of 64, N a multiple of rk_cuda_matmul_gelu_tile_n(variant) (256 or 128), every row
 *     stride a multiple of 8 elements, x, w, dst 16-byte aligned and bias 4-byte aligned; RK_STATUS_UNSUPPORTED
 *     otherwise (nothing launched), RK_STATUS_ARG for another variant or mismatched shapes. dst must not overlap
 *     the inputs.
 *   rk_cuda_matmul_gelu_fused_calls: launches of the fused kernels so far in this process (tests: the dispatch took
 *     them). Cannot fail.
 */
#define RK_MATMUL_GELU_N_VARIANTS 7 /* 0 (default) .. 6 */
int            rk_cuda_matmul_gelu_variant(void);
enum rk_status rk_cuda_matmul_gelu_set_variant(int variant);
const char *   rk_cuda_matmul_gelu_variant_name(int variant);
int            rk_cuda_matmul_gelu_tile_n(int variant); /* 256 (variants 2, 4), 128 (3, 5, 6), else 0 */
enum rk_status rk_cuda_matmul_gelu_fused(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * w,
                                      const struct rk_tensor * bias, int variant, cudaStream_t stream);
uint64_t       rk_cuda_matmul_gelu_fused_calls(void);

/*
 * MATMUL_BWD (kernels/matmul.cu), the backward of dst = x w^T + b:
 *   dx (M,K) = dout @ w, or += with p->dx_accumulate; not touched with p->skip_dx (dx may then be NULL);
 *   dw (N,K) = dout^T @ x, or += with p->accumulate; NULL: not computed;
 *   db (N)   = column sums of dout, or += with p->accumulate; NULL: not computed.
 * dout (M,N), x (M,K), dx rows (any row strides); w (N,K), dw (N,K) rows; db contiguous. One float dtype.
 * GEMMs: cublasGemmEx, fp32 compute (no TF32), beta = 1 to accumulate. db: a deterministic column-sum kernel.
 * Outputs must not overlap the inputs. Not thread-safe (shares blas's handle and workspace).
 */
enum rk_status rk_cuda_matmul_bwd(struct rk_cuda_blas * blas, struct rk_tensor * dx, struct rk_tensor * dw,
                                  struct rk_tensor * db, const struct rk_tensor * dout, const struct rk_tensor * x,
                                  const struct rk_tensor * w, const struct rk_matmul_bwd_params * p,
                                  cudaStream_t stream);

/* ---- backend accessors (host/backend_cuda.c) ----------------------------------------------------------------- */

/* The stream every op of a CUDA backend runs on (for benches and tests that launch directly). be must be CUDA. */
cudaStream_t rk_backend_cuda_stream(struct rk_backend * be);
/* True when the backend was created with RK_CUDA_FORCE_SM75=1 (fp16 activations, sm_75 attention path). */
bool         rk_backend_cuda_forced_sm75(struct rk_backend * be);
/* The device's compute capability as 10 major + minor (75, 80, 86, 90). be must be CUDA. */
int          rk_backend_cuda_cc(struct rk_backend * be);
/*
 * RK_PROFILE=1 (read when the backend is created): every op is timed on the device with a pair of CUDA events (GPU
 * time from the op's first launch to its last, gaps between launches of one op included), summed per op (MATMUL also
 * split into plain, with the GELU epilogue and accumulating), printed on stderr when the backend is freed. This
 * returns the milliseconds summed so far for op (MATMUL: all three kinds) and their count in *calls (may be NULL);
 * 0 without RK_PROFILE. Waits for the ops recorded so far. be must be CUDA.
 */
double       rk_backend_cuda_profile_ms(struct rk_backend * be, enum rk_op op, long * calls);

#ifdef __cplusplus
}
#endif

/* ================================================================================================
 * device helpers shared by the kernels/<op>.cu files (C++ only)
 * ================================================================================================ */
#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define RK_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

__device__ __forceinline__ float rk_to_f32(float x) { return x; }
__device__ __forceinline__ float rk_to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float rk_to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T rk_from_f32(float x);
template <> __device__ __forceinline__ float         rk_from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half        rk_from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 rk_from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float rk_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float rk_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* V consecutive elements, aligned to their size so that a 16-byte pack compiles to one 128-bit access. */
template <typename T, int V> struct alignas(sizeof(T) * V) rk_pack {
    T v[V];
};

/* Loads V elements at p (aligned to V * sizeof(T)) into fp32. */
template <int V, typename T> __device__ __forceinline__ void rk_load_f32(const T * p, float (&out)[V]) {
    const rk_pack<T, V> pk = *reinterpret_cast<const rk_pack<T, V> *>(p);
#pragma unroll
    for (int i = 0; i < V; i++) out[i] = rk_to_f32(pk.v[i]);
}

/* V columns from c of a LayerNorm's weight w and bias b (zeros when b is NULL), as f32. */
template <int V, typename T>
__device__ __forceinline__ void rk_load_ln_wb(const T * w, const T * b, int64_t c, float (&wv)[V], float (&bv)[V]) {
    rk_load_f32<V>(w + c, wv);
    if (b) {
        rk_load_f32<V>(b + c, bv);
    } else {
#pragma unroll
        for (int i = 0; i < V; i++) bv[i] = 0.0f;
    }
}
/* Stores V fp32 values at p (aligned to V * sizeof(T)), rounding to T once. */
template <int V, typename T> __device__ __forceinline__ void rk_store_f32(T * p, const float (&in)[V]) {
    rk_pack<T, V> pk;
#pragma unroll
    for (int i = 0; i < V; i++) pk.v[i] = rk_from_f32<T>(in[i]);
    *reinterpret_cast<rk_pack<T, V> *>(p) = pk;
}

/* The C type of a floating rk_dtype, for dispatch: RK_DISPATCH_FLOAT(dtype, T, stmt) runs stmt with T bound. */
#define RK_DISPATCH_FLOAT(dtype, T, ...)                                       \
    switch (dtype) {                                                           \
        case RK_DTYPE_F32: { typedef float T; __VA_ARGS__; } break;            \
        case RK_DTYPE_F16: { typedef __half T; __VA_ARGS__; } break;           \
        case RK_DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;   \
        default: break;                                                        \
    }

/* Widest vector (elements) usable for all of the given rows: 16 bytes when every pointer, the row width and the
 * row strides allow it, else 1. */
static inline int rk_vec_width(size_t elem_size, int64_t ncols, int n, const void * const * ptrs,
                               const int64_t * strides) {
    const int v = (int) (16 / elem_size);
    if (ncols % v != 0) return 1;
    for (int i = 0; i < n; i++) {
        if (ptrs[i] && (rk_ptr_align(ptrs[i]) < 16 || strides[i] % v != 0)) return 1;
    }
    return v;
}

/*
 * Statistics of one LayerNorm row by one warp: fp32, two passes over the row (the mean, then the centred sum of
 * squares: no cancellation for rows with a large mean). `load(c, vals)` produces V fp32 inputs at column c (the row
 * is re-read in each pass: it stays in L1 for the row sizes of our models). Every lane gets mean and rstd.
 */
template <int V, typename Load>
__device__ __forceinline__ void rk_layernorm_stats_warp(const Load & load, int64_t C, float eps, int lane,
                                                        float & mean, float & rstd) {
    float sum = 0.0f;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float x[V];
        load(c, x);
#pragma unroll
        for (int i = 0; i < V; i++) sum += x[i];
    }
    mean     = rk_warp_sum(sum) / (float) C;
    float sq = 0.0f;
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float x[V];
        load(c, x);
#pragma unroll
        for (int i = 0; i < V; i++) sq += (x[i] - mean) * (x[i] - mean);
    }
    rstd = rsqrtf(rk_warp_sum(sq) / (float) C + eps);
}

/*
 * LayerNorm of one row by one warp (statistics by rk_layernorm_stats_warp). Writes dst = (x - mean) * rstd * w + b.
 * Each output element is written by the lane that read it, after all reads of the row, so dst may alias the input.
 */
template <typename T, int V, typename Load>
__device__ __forceinline__ void rk_layernorm_row_warp(const Load & load, T * dst, const T * w, const T * b,
                                                      int64_t C, float eps, int lane) {
    float mean, rstd;
    rk_layernorm_stats_warp<V>(load, C, eps, lane, mean, rstd);
    for (int64_t c = (int64_t) lane * V; c < C; c += 32 * V) {
        float x[V], wv[V], bv[V];
        load(c, x);
        rk_load_ln_wb<V>(w, b, c, wv, bv);
#pragma unroll
        for (int i = 0; i < V; i++) x[i] = (x[i] - mean) * rstd * wv[i] + bv[i];
        rk_store_f32<V>(dst + c, x);
    }
}

/* A LayerNorm row's input: x (+ residual), V elements at a time, in fp32 (the sum is never rounded to T). x and r
 * point at the row; r is NULL when there is no residual. */
template <typename T, int V> struct rk_ln_load_sum {
    const T * x;
    const T * r;
    __device__ __forceinline__ void operator()(int64_t c, float (&out)[V]) const {
        rk_load_f32<V>(x + c, out);
        if (r) {
            float rv[V];
            rk_load_f32<V>(r + c, rv);
#pragma unroll
            for (int i = 0; i < V; i++) out[i] += rv[i];
        }
    }
};

/*
 * Column sums across the warps of a (32, W) block: lane l of warp w holds v for column l; returns, in warp 0, the
 * sum over w = 0..W-1 in that order (deterministic). sm: W x 32 floats of shared memory. Every thread must call it.
 */
template <int W> __device__ __forceinline__ float rk_sum_over_warps(float v, float (*sm)[32]) {
    sm[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    float s = 0.0f;
    if (threadIdx.y == 0) {
#pragma unroll
        for (int w = 0; w < W; w++) s += sm[w][threadIdx.x];
    }
    __syncthreads(); /* sm may be reused right after */
    return s;
}

#endif /* __CUDACC__ */
#endif
