/*
 * embed_bwd.cu: CUDA RK_OP_EMBED_BWD, the scatter-add of dout into the embedding tables (word, position, type).
 * CPU reference kernels/embed_bwd_cpu.c; parity cases EMBED_BWD(...) in tests/test_ops_train.c.
 *
 * Determinism without atomics or sorting: every table element has exactly one owner thread, which adds the tokens
 * of its row in token order to the old value, in fp32, and rounds once. For an f32 table this is the CPU
 * reference's arithmetic exactly (old + g_first + ... + g_last, left to right), so the results are bit-identical.
 *
 * Kernel variants:
 *   embed_bwd_rows_kernel_v1<TG, TW, V>: one block per (token i, channel chunk) for the word and type tables. The
 *        block scans the row keys (ids or type ids) of all tokens in chunks of the block size; if an earlier token
 *        has the same key, that token's block owns the row and this one exits. Otherwise it gathers the indices of
 *        the matching tokens in order (warp ballots), and each thread adds their dout rows over its V channels.
 *        Cost: O(N) key reads per token (N^2 for the batch, from L1/L2); the dout rows are read once.
 *   embed_bwd_pos_kernel_v1<TG, TW, V>: one thread per (position t, V channels), summing dout over the batch in
 *        order (positions repeat with period T, so no search is needed).
 * V = 16-byte vectors of the wider of the two dtypes when pointers and strides allow, else 1.
 * Bench: none yet.
 *
 * Token and type ids live on the device and are not range-checked on the host: a token whose key is outside its
 * table contributes nothing to that table (never an out-of-bounds write).
 */
#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"

#define RK_EMBED_BWD_BLOCK_SIZE 128
#define RK_EMBED_BWD_POS_BLOCK_SIZE 256

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

/* dout and one table as rows; keys (N) i32 or NULL (every key 0). */
struct embed_bwd_args {
    int64_t         N;           /* tokens */
    int64_t         C;           /* channels */
    int64_t         n_rows;      /* rows of the table: keys outside [0, n_rows) are skipped */
    int64_t         dout_stride; /* elements */
    int64_t         tab_stride;  /* elements */
    const int32_t * keys;
};

template <typename TG, typename TW, int V>
static __global__ void embed_bwd_rows_kernel_v1(TW * tab, const TG * dout, const embed_bwd_args a) {
    __shared__ int warp_cnt[RK_EMBED_BWD_BLOCK_SIZE / 32];
    __shared__ int list[RK_EMBED_BWD_BLOCK_SIZE];
    const int     tid  = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int64_t i    = blockIdx.x;
    const int64_t key  = a.keys ? a.keys[i] : 0;
    if (key < 0 || key >= a.n_rows) return; /* out of range: skipped (uniform over the block) */
    const int64_t c      = ((int64_t) blockIdx.y * RK_EMBED_BWD_BLOCK_SIZE + tid) * V;
    const bool    active = c < a.C;
    TW *          out    = tab + key * a.tab_stride + c;
    float         acc[V] = {};
    if (active) rk_load_f32<V>(out, acc);
    for (int64_t j0 = 0; j0 < a.N; j0 += RK_EMBED_BWD_BLOCK_SIZE) {
        const int64_t j     = j0 + tid;
        const bool    match = j < a.N && (a.keys ? (int64_t) a.keys[j] : 0) == key;
        /* an earlier token with this key owns the row. (This barrier also orders the previous chunk's reads of
         * list before this chunk's writes.) */
        if (__syncthreads_or(match && j < i)) return;
        const unsigned bal = __ballot_sync(0xffffffffu, match);
        if (lane == 0) warp_cnt[warp] = __popc(bal);
        __syncthreads();
        int before = 0, total = 0;
#pragma unroll
        for (int w = 0; w < RK_EMBED_BWD_BLOCK_SIZE / 32; w++) {
            before += w < warp ? warp_cnt[w] : 0;
            total += warp_cnt[w];
        }
        if (match) list[before + __popc(bal & ((1u << lane) - 1u))] = tid;
        __syncthreads();
        if (active) {
            for (int q = 0; q < total; q++) { /* the matching tokens of this chunk, in token order */
                float g[V];
                rk_load_f32<V>(dout + (j0 + list[q]) * a.dout_stride + c, g);
#pragma unroll
                for (int k = 0; k < V; k++) acc[k] += g[k];
            }
        }
    }
    if (active) rk_store_f32<V>(out, acc);
}

/* tab row pos_offset + t += sum over b of dout row b*T + t, b in order; one thread per (t, V channels). */
template <typename TG, typename TW, int V>
static __global__ void embed_bwd_pos_kernel_v1(TW * tab, const TG * dout, int64_t B, int64_t T, int64_t C,
                                               int64_t pos_offset, int64_t dout_stride, int64_t tab_stride) {
    const int64_t cv = C / V, n = T * cv;
    for (int64_t e = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t) gridDim.x * blockDim.x) {
        const int64_t t = e / cv, c = (e - t * cv) * V;
        TW *          out = tab + (pos_offset + t) * tab_stride + c;
        float         acc[V];
        rk_load_f32<V>(out, acc);
        for (int64_t b = 0; b < B; b++) {
            float g[V];
            rk_load_f32<V>(dout + (b * T + t) * dout_stride + c, g);
#pragma unroll
            for (int k = 0; k < V; k++) acc[k] += g[k];
        }
        rk_store_f32<V>(out, acc);
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* True when V-element vectors of es-byte elements are aligned at p for every row of the given stride. */
static bool vec_ok(int V, size_t es, const void * p, int64_t stride) {
    return rk_ptr_align(p) >= V * es && stride % V == 0;
}

template <typename TG, typename TW, int V>
static void embed_bwd_rows_launch(TW * tab, const TG * dout, const embed_bwd_args & a, cudaStream_t stream) {
    const dim3 grid((unsigned) a.N, (unsigned) RK_CEIL_DIV(a.C, (int64_t) RK_EMBED_BWD_BLOCK_SIZE * V));
    embed_bwd_rows_kernel_v1<TG, TW, V><<<grid, RK_EMBED_BWD_BLOCK_SIZE, 0, stream>>>(tab, dout, a);
    RK_CUDA_CHECK(cudaGetLastError());
}

template <typename TG, typename TW, int V>
static void embed_bwd_pos_launch(TW * tab, const TG * dout, int64_t B, int64_t T, int64_t C, int64_t pos_offset,
                                 int64_t dout_stride, int64_t tab_stride, cudaStream_t stream) {
    const int64_t n      = T * (C / V);
    const int64_t blocks = RK_CEIL_DIV(n, (int64_t) RK_EMBED_BWD_POS_BLOCK_SIZE);
    const dim3    grid((unsigned) (blocks < 65535 ? blocks : 65535));
    embed_bwd_pos_kernel_v1<TG, TW, V><<<grid, RK_EMBED_BWD_POS_BLOCK_SIZE, 0, stream>>>(
        tab, dout, B, T, C, pos_offset, dout_stride, tab_stride);
    RK_CUDA_CHECK(cudaGetLastError());
}

/* The vector width for dout and one table: 16 bytes of the wider dtype when everything allows it, else 1. */
template <typename TG, typename TW>
static int embed_bwd_vec(const TG * dout, int64_t dout_stride, const TW * tab, int64_t tab_stride, int64_t C) {
    const int V = (int) (16 / (sizeof(TG) > sizeof(TW) ? sizeof(TG) : sizeof(TW)));
    const bool ok = C % V == 0 && vec_ok(V, sizeof(TG), dout, dout_stride) && vec_ok(V, sizeof(TW), tab, tab_stride);
    return ok ? V : 1;
}

/* Word or type table: rows keyed by keys (NULL: all key 0). */
template <typename TG, typename TW>
static void embed_bwd_rows(TW * tab, const rk_rows & rt, const TG * dout, const rk_rows & rg, const int32_t * keys,
                           cudaStream_t stream) {
    embed_bwd_args a;
    a.N           = rg.nrows;
    a.C           = rg.ncols;
    a.n_rows      = rt.nrows;
    a.dout_stride = rg.stride;
    a.tab_stride  = rt.stride;
    a.keys        = keys;
    constexpr int VW = (int) (16 / (sizeof(TG) > sizeof(TW) ? sizeof(TG) : sizeof(TW)));
    if (embed_bwd_vec(dout, rg.stride, tab, rt.stride, a.C) > 1) {
        embed_bwd_rows_launch<TG, TW, VW>(tab, dout, a, stream);
    } else {
        embed_bwd_rows_launch<TG, TW, 1>(tab, dout, a, stream);
    }
}

template <typename TG, typename TW>
static void embed_bwd_all(TW * dwte, const rk_rows & re, TW * dwpe, const rk_rows & rp, TW * dwtt,
                          const rk_rows & rt, const TG * dout, const rk_rows & rg, const int32_t * ids,
                          const int32_t * type_ids, int64_t T, int64_t pos_offset, cudaStream_t stream) {
    embed_bwd_rows<TG, TW>(dwte, re, dout, rg, ids, stream);
    if (dwtt) embed_bwd_rows<TG, TW>(dwtt, rt, dout, rg, type_ids, stream);
    if (dwpe) {
        const int64_t B  = rg.nrows / T;
        constexpr int VW = (int) (16 / (sizeof(TG) > sizeof(TW) ? sizeof(TG) : sizeof(TW)));
        if (embed_bwd_vec(dout, rg.stride, dwpe, rp.stride, rg.ncols) > 1) {
            embed_bwd_pos_launch<TG, TW, VW>(dwpe, dout, B, T, rg.ncols, pos_offset, rg.stride, rp.stride, stream);
        } else {
            embed_bwd_pos_launch<TG, TW, 1>(dwpe, dout, B, T, rg.ncols, pos_offset, rg.stride, rp.stride, stream);
        }
    }
}

extern "C" enum rk_status rk_cuda_embed_bwd(struct rk_tensor * dwte, struct rk_tensor * dwpe,
                                            struct rk_tensor * dwtt, const struct rk_tensor * dout,
                                            const struct rk_tensor * ids, const struct rk_tensor * type_ids,
                                            const struct rk_embed_params * p, cudaStream_t stream) {
    // dout (B,T,C) rows; ids, type_ids (B,T) i32; dwte (V,C), dwpe (P,C), dwtt (NTT,C) rows of one float dtype
    const enum rk_dtype dg = dout->dtype, dw = dwte->dtype;
    if (!rk_is_float_dtype(dg) || !rk_is_float_dtype(dw) || (dwpe && dwpe->dtype != dw) ||
        (dwtt && dwtt->dtype != dw)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda embed_bwd: dout and the gradient tables must be float (the tables one dtype)");
    }
    rk_rows rg, re, rp = { 0, 0, 0 }, rt = { 0, 0, 0 };
    if (!rk_rows_of(dout, &rg) || !rk_rows_of(dwte, &re) || (dwpe && !rk_rows_of(dwpe, &rp)) ||
        (dwtt && !rk_rows_of(dwtt, &rt))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda embed_bwd: tensors must be rows with a contiguous last dim");
    }
    const int64_t N = rk_tensor_nelements(ids), C = re.ncols;
    if (!rk_ids_ok(ids, N) || (type_ids && !rk_ids_ok(type_ids, N))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda embed_bwd: ids and type ids must be contiguous i32 (B,T)");
    }
    if (rg.nrows != N || rg.ncols != C || (dwpe && rp.ncols != C) || (dwtt && rt.ncols != C)) {
        return rk_set_error(RK_STATUS_ARG, "cuda embed_bwd: shape mismatch (%lld tokens, C = %lld)", (long long) N,
                            (long long) C);
    }
    const int64_t T = ids->ne[ids->ndim - 1];
    if (dwpe && (p->pos_offset < 0 || p->pos_offset + T > rp.nrows)) {
        return rk_set_error(RK_STATUS_ARG, "cuda embed_bwd: %lld positions exceed the %lld rows of dwpe",
                            (long long) (p->pos_offset + T), (long long) rp.nrows);
    }
    if (N > INT32_MAX) return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda embed_bwd: more than 2^31 tokens");
    if (N == 0 || C == 0) return RK_OK;
    const int32_t * id = (const int32_t *) ids->data;
    const int32_t * tt = type_ids ? (const int32_t *) type_ids->data : nullptr;
    RK_DISPATCH_FLOAT(dg, TG_, RK_DISPATCH_FLOAT(dw, TW_,
        embed_bwd_all<TG_, TW_>((TW_ *) dwte->data, re, dwpe ? (TW_ *) dwpe->data : nullptr, rp,
                                dwtt ? (TW_ *) dwtt->data : nullptr, rt, (const TG_ *) dout->data, rg, id, tt, T,
                                p->pos_offset, stream)));
    return RK_OK;
}
