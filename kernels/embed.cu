/*
 * embed.cu: CUDA RK_OP_EMBED (HF BertEmbeddings before dropout): dst = wte[ids] + wpe[pos_offset + t] + wtt[type],
 * optionally fused with the embedding LayerNorm (one kernel instead of two; the model may call it directly through
 * rk_cuda_embed with ln_w != NULL). The CPU reference is kernels/embed_cpu.c; parity cases are EMBED(...) in
 * tests/test_ops.c.
 *
 * Kernel variants:
 *   embed_kernel_v1<T, V, LN>: one warp per token, 8 tokens per 256-thread block; the three rows are summed in fp32
 *                              and rounded once; LN = true runs rk_layernorm_row_warp on the sum (fp32 two-pass).
 *                              V = 16-byte vectors when the rows allow it, else scalar.
 * Bench: build/bench/bench_ops embed
 *
 * Ids live on the device, so they are not range-checked on the host here: the model validates them before upload
 * (rk_bert_forward does). The kernel still never reads outside the tables: a token whose id (or type id) is out of
 * range gets a row of NaN, which any parity test or downstream check catches.
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#define RK_EMBED_BLOCK_SIZE 256
#define RK_EMBED_ROWS_PER_BLOCK (RK_EMBED_BLOCK_SIZE / 32)

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

/* Sum of the token's word, position and type rows (the last two optional), V elements at column c, in fp32. */
template <typename T, int V> struct embed_load {
    const T * we;
    const T * pe;
    const T * te;
    __device__ __forceinline__ void operator()(int64_t c, float (&out)[V]) const {
        rk_load_f32<V>(we + c, out);
        if (pe) {
            float p[V];
            rk_load_f32<V>(pe + c, p);
#pragma unroll
            for (int i = 0; i < V; i++) out[i] += p[i];
        }
        if (te) {
            float t[V];
            rk_load_f32<V>(te + c, t);
#pragma unroll
            for (int i = 0; i < V; i++) out[i] += t[i];
        }
    }
};

struct embed_args {
    int64_t         N;          /* tokens (B*T) */
    int64_t         T;          /* tokens per sequence: position of token n is pos_offset + n % T */
    int64_t         C;
    int64_t         vocab;      /* rows of wte */
    int64_t         n_types;    /* rows of wtt (0 without wtt) */
    int64_t         pos_offset;
    int64_t         dst_stride, wte_stride, wpe_stride, wtt_stride; /* row strides, elements */
    const int32_t * ids;        /* (N) */
    const int32_t * type_ids;   /* (N) or NULL: type 0 */
    float           eps;
};

template <typename T, int V, bool LN>
static __global__ void embed_kernel_v1(T * dst, const T * wte, const T * wpe, const T * wtt, const T * ln_w,
                                       const T * ln_b, const embed_args a) {
    const int64_t row  = (int64_t) blockIdx.x * RK_EMBED_ROWS_PER_BLOCK + threadIdx.x / 32;
    const int     lane = threadIdx.x % 32;
    if (row >= a.N) return;
    T *           out = dst + row * a.dst_stride;
    const int64_t id  = a.ids[row];
    const int64_t tt  = a.type_ids ? a.type_ids[row] : 0;
    if (id < 0 || id >= a.vocab || (wtt && (tt < 0 || tt >= a.n_types))) {
        const T nan = rk_from_f32<T>(__int_as_float(0x7fc00000));
        for (int64_t c = lane; c < a.C; c += 32) out[c] = nan;
        return;
    }
    const int64_t       pos  = a.pos_offset + row % a.T;
    embed_load<T, V>    load = { wte + id * a.wte_stride, wpe ? wpe + pos * a.wpe_stride : nullptr,
                                 wtt ? wtt + tt * a.wtt_stride : nullptr };
    if (LN) {
        rk_layernorm_row_warp<T, V>(load, out, ln_w, ln_b, a.C, a.eps, lane);
    } else {
        for (int64_t c = (int64_t) lane * V; c < a.C; c += 32 * V) {
            float x[V];
            load(c, x);
            rk_store_f32<V>(out + c, x);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

template <typename T, int V>
static void embed_launch_v(T * dst, const T * wte, const T * wpe, const T * wtt, const T * ln_w, const T * ln_b,
                           const embed_args & a, cudaStream_t stream) {
    const dim3 grid((unsigned) RK_CEIL_DIV(a.N, (int64_t) RK_EMBED_ROWS_PER_BLOCK));
    if (ln_w) {
        embed_kernel_v1<T, V, true><<<grid, RK_EMBED_BLOCK_SIZE, 0, stream>>>(dst, wte, wpe, wtt, ln_w, ln_b, a);
    } else {
        embed_kernel_v1<T, V, false><<<grid, RK_EMBED_BLOCK_SIZE, 0, stream>>>(dst, wte, wpe, wtt, ln_w, ln_b, a);
    }
    RK_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
static void embed_launch(T * dst, const T * wte, const T * wpe, const T * wtt, const T * ln_w, const T * ln_b,
                         const embed_args & a, cudaStream_t stream) {
    const void *  ptrs[6]    = { dst, wte, wpe, wtt, ln_w, ln_b };
    const int64_t strides[6] = { a.dst_stride, a.wte_stride, a.wpe_stride, a.wtt_stride, 0, 0 };
    if (rk_vec_width(sizeof(T), a.C, 6, ptrs, strides) > 1) {
        embed_launch_v<T, 16 / sizeof(T)>(dst, wte, wpe, wtt, ln_w, ln_b, a, stream);
    } else {
        embed_launch_v<T, 1>(dst, wte, wpe, wtt, ln_w, ln_b, a, stream);
    }
}

/*
 * dst (B,T,C) rows; wte (V,C), wpe (P,C), wtt (NTT,C) rows; ids, type_ids (B,T) i32 contiguous; ln_w, ln_b (C).
 * One float dtype for dst, the tables and the LN weights.
 */
extern "C" enum rk_status rk_cuda_embed(struct rk_tensor * dst, const struct rk_tensor * wte,
                                        const struct rk_tensor * ids, const struct rk_tensor * wpe,
                                        const struct rk_tensor * wtt, const struct rk_tensor * type_ids,
                                        const struct rk_embed_params * p, const struct rk_tensor * ln_w,
                                        const struct rk_tensor * ln_b, float ln_eps, cudaStream_t stream) {
    const enum rk_dtype dt = dst->dtype;
    if (!rk_is_float_dtype(dt) || wte->dtype != dt || (wpe && wpe->dtype != dt) || (wtt && wtt->dtype != dt) ||
        (ln_w && ln_w->dtype != dt) || (ln_b && ln_b->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda embed: dst, tables and LN weights must share one float dtype");
    }
    rk_rows rd, re, rp = { 0, 0, 0 }, rt = { 0, 0, 0 }, rw, rb;
    if (!rk_rows_of(dst, &rd) || !rk_rows_of(wte, &re) || (wpe && !rk_rows_of(wpe, &rp)) ||
        (wtt && !rk_rows_of(wtt, &rt)) || (ln_w && !rk_rows_of(ln_w, &rw)) || (ln_b && !rk_rows_of(ln_b, &rb))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda embed: tensors must be rows with a contiguous last dim");
    }
    const int64_t N = rk_tensor_nelements(ids), C = re.ncols;
    if (!rk_ids_ok(ids, N) || (type_ids && !rk_ids_ok(type_ids, N))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda embed: ids and type ids must be contiguous i32 (B,T)");
    }
    if (rd.nrows != N || rd.ncols != C || (wpe && rp.ncols != C) || (wtt && rt.ncols != C) ||
        (ln_w && (rw.nrows != 1 || rw.ncols != C)) || (ln_b && (rb.nrows != 1 || rb.ncols != C)) ||
        (ln_b && !ln_w)) {
        return rk_set_error(RK_STATUS_ARG, "cuda embed: shape mismatch (%lld tokens, C = %lld)", (long long) N,
                            (long long) C);
    }
    const int64_t T = ids->ne[ids->ndim - 1];
    if (wpe && (p->pos_offset < 0 || p->pos_offset + T > rp.nrows)) {
        return rk_set_error(RK_STATUS_ARG, "cuda embed: %lld positions exceed max_position_embeddings %lld",
                            (long long) (p->pos_offset + T), (long long) rp.nrows);
    }
    if (N == 0 || C == 0) return RK_OK;
    embed_args a;
    a.N          = N;
    a.T          = T;
    a.C          = C;
    a.vocab      = re.nrows;
    a.n_types    = wtt ? rt.nrows : 0;
    a.pos_offset = p->pos_offset;
    a.dst_stride = rd.stride;
    a.wte_stride = re.stride;
    a.wpe_stride = rp.stride;
    a.wtt_stride = rt.stride;
    a.ids        = (const int32_t *) ids->data;
    a.type_ids   = type_ids ? (const int32_t *) type_ids->data : nullptr;
    a.eps        = ln_eps;
    RK_DISPATCH_FLOAT(dt, T_,
        embed_launch<T_>((T_ *) dst->data, (const T_ *) wte->data, wpe ? (const T_ *) wpe->data : nullptr,
                         wtt ? (const T_ *) wtt->data : nullptr, ln_w ? (const T_ *) ln_w->data : nullptr,
                         ln_b ? (const T_ *) ln_b->data : nullptr, a, stream));
    return RK_OK;
}
