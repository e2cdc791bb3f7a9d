/*
 * attn.cu: attention forward (RK_OP_ATTN_FWD) on CUDA: out = softmax(q k^T * scale + mask) v, with the key padding
 * mask, causal masking with a query offset, a sliding window and grouped-query heads of host/backend.h, and the
 * fp32 logsumexp of each row for the backward pass. Design notes and expected performance: docs/ATTN.md.
 *
 * Kernel variants (rk_cuda_attn_fwd_variant; `build/bench/bench_attn --variant N` times one, `--variant all` all):
 *   v1  attn_fwd_kernel_v1: plain kernel, one warp per query row, 32 keys at a time (a key per lane), fp32
 *       math, scalar loads. Any HS <= 256, any 2-byte alignment, any scale. The fallback and a second reference.
 *   v2  attn_fwd_kernel_v2<HS, 2>: FlashAttention-2 style, 64 query rows x 64 keys per tile. 4 warps, each owns
 *       16 query rows whose fragments stay in registers; K and V tiles stream through XOR-swizzled shared memory
 *       with cp.async (double-buffered at HS <= 64; at HS = 128 the FA2 split: V(t) loads during S = Q K(t)^T,
 *       K(t+1) during softmax and P V(t)); ldmatrix fragments; mma.sync m16n8k16 bf16/f16 with fp32
 *       accumulators; online softmax in fp32 with exp2; S never leaves registers (the accumulator layout of S is
 *       the A-operand layout of P). HS in {32, 64, 128}.
 *   v3  v2 with 128 query rows per CTA (each warp two 16-row tiles: twice the math per K/V byte read from shared
 *       memory; Q is re-read from shared memory at HS = 128 to save registers). The default at HS = 64.
 *       Spills 44 bytes at HS = 128.
 *   v4  v2 with Q re-read from shared memory and a 168-register cap: 3 CTAs per SM instead of 2 (HS = 128 only).
 *       The default at HS = 128.
 *   v5  v3 with 128-key tiles (HS <= 64 only). The default at HS = 32; spills 40 bytes at HS = 64.
 *   v6  attn_fwd_kernel_wg<HS, 6>: Hopper warpgroup MMA (wgmma, sm_90a; kernels/wgmma.cuh), one warpgroup per
 *       64 query rows, 128-key tiles at HS = 64, 64-key at HS = 128; Q, K, V in 128-byte-swizzled shared memory.
 *   v7  v6 with the other key tile (64 at HS = 64, 128 at HS = 128).  v8  v6 with two warpgroups (128 rows), 64 keys.
 *   v9  attn_fwd_kernel_wgp<HS, 9>: v6's tiles, P V of tile t-1 overlapped with the softmax of tile t (FA3).
 *   v10 attn_fwd_kernel_wgp<HS, 10>: v9 with two warpgroups (128 rows) sharing 128-key tiles, one CTA per SM.
 *   v11 attn_fwd_kernel_ws<HS>: warp-specialized (FA3): a producer warpgroup loads Q, K, V with TMA into two stages
 *       on mbarriers, two consumer warpgroups run v9's loop with no CTA barrier (kernels/tma.cuh).
 *   v12 v11 with the two consumer warpgroups in ping-pong (one's softmax beside the other's products).
 *   v6-v12 run only on sm_90; on an H200 (docs/PERF.md) the automatic choice takes v6 at HS 64 and v11 at HS 128
 *   (attn_auto_variant; RK_ATTN_FWD_VARIANT=N forces another).
 * The sm_75 path (a real sm_75 card, or force_sm75) runs v2 with fp16 mma.sync m16n8k8 and synchronous tile
 * loads (no cp.async); bf16 there goes to v1.
 *
 * bench: make bench && build/bench/bench_attn [--variant N]
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attn_cuda.h"
#include "attn_tc.cuh"
#include "tma.cuh"
#include "wgmma.cuh"
#include "cuda_check.h"

/* Everything a kernel needs, by value. Strides are in bytes; pointers are already offset to element 0. */
struct attn_args {
    const char *    q;
    const char *    k;
    const char *    v;
    char *          o;
    const char *    mask;     /* (B, Tk) i32 or NULL; element stride 4 */
    char *          lse;      /* (B, NH, Tq) f32 or NULL */
    int64_t         q_sb, q_sh, q_st;   /* batch, head, time strides of q */
    int64_t         k_sb, k_sh, k_st;
    int64_t         v_sb, v_sh, v_st;
    int64_t         o_sb, o_sh, o_st;
    int64_t         m_sb;               /* mask batch stride */
    int64_t         l_sb, l_sh, l_st;
    int64_t         q_offset;           /* absolute position of query row 0 */
    int64_t         window;             /* 0 = none; else keys j > q_offset + i - window */
    int             Tq, Tk;
    int             group;              /* NH / NKV: head h reads kv head h / group */
    int             hs;                 /* head size (used by v1; v2 has it as a template parameter) */
    int             causal;
    float           scale;              /* softmax scale */
    float           scale_log2;         /* scale * log2(e): exp(scale * x) = exp2(scale_log2 * x) */
};

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* ---- v1: plain kernel ------------------------------------------------------------------------ */

#define RK_ATTN_V1_WARPS 4
#define RK_ATTN_V1_MAX_HS 256

/*
 * One warp per query row. Lane l scores key j0 + l against the row (q staged in shared memory as f32), the warp
 * does the online softmax over those 32 keys, then every lane accumulates its output dims d = l + 32 * i over the
 * 32 keys (V rows read coalesced). ND = ceil(HS / 32) output dims per lane.
 * grid (ceil(Tq / 4), NH, B), block 128.
 */
template <int ND, bool BF16>
static __global__ void __launch_bounds__(RK_ATTN_V1_WARPS * 32) attn_fwd_kernel_v1(const struct attn_args a) {
    __shared__ float q_s[RK_ATTN_V1_WARPS][ND * 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i    = blockIdx.x * RK_ATTN_V1_WARPS + warp;
    const int h    = blockIdx.y, b = blockIdx.z, hk = h / a.group;
    if (i >= a.Tq) return; /* whole warp leaves together: no block-wide barrier below */
    const int    hs = a.hs;
    const char * qg = a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh + (int64_t) i * a.q_st;
    const char * kg = a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh;
    const char * vg = a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh;
    const int *  mg = a.mask ? reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb) : nullptr;
    for (int d = lane; d < ND * 32; d += 32) q_s[warp][d] = d < hs ? attn_load<BF16>(qg + 2 * (int64_t) d) : 0.f;
    __syncwarp();

    int lo, hi;
    attn_row_range(a, i, lo, hi);
    float m = -INFINITY, l = 0.f; /* running max of scaled scores, running sum of exp(score - m) */
    float o[ND];
#pragma unroll
    for (int c = 0; c < ND; c++) o[c] = 0.f;

    for (int j0 = lo; j0 <= hi; j0 += 32) {
        const int j = j0 + lane;
        float     s = -INFINITY;
        if (j <= hi && (!mg || mg[j] != 0)) {
            const char * kr  = kg + (int64_t) j * a.k_st;
            float        acc = 0.f;
            for (int d = 0; d < hs; d++) acc = fmaf(q_s[warp][d], attn_load<BF16>(kr + 2 * (int64_t) d), acc);
            s = acc * a.scale;
        }
        float smax = s;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) smax = fmaxf(smax, __shfl_xor_sync(0xffffffffu, smax, off));
        const float m_new = fmaxf(m, smax);
        if (m_new == -INFINITY) continue; /* no valid key yet (warp-uniform) */
        const float alpha = expf(m - m_new); /* 0 when m = -inf */
        const float p     = expf(s - m_new); /* 0 for a masked key */
        float       psum  = p;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, off);
        l = l * alpha + psum;
        m = m_new;
#pragma unroll
        for (int c = 0; c < ND; c++) o[c] *= alpha;
        const int nj = min(32, hi - j0 + 1);
        for (int jj = 0; jj < nj; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            if (pj == 0.f) continue; /* warp-uniform: masked key */
            const char * vr = vg + (int64_t) (j0 + jj) * a.v_st;
#pragma unroll
            for (int c = 0; c < ND; c++) {
                const int d = lane + 32 * c;
                if (d < hs) o[c] = fmaf(pj, attn_load<BF16>(vr + 2 * (int64_t) d), o[c]);
            }
        }
    }

    const float inv = l > 0.f ? 1.f / l : 0.f; /* a row with no valid key gives zeros */
    char *      og  = a.o + (int64_t) b * a.o_sb + (int64_t) h * a.o_sh + (int64_t) i * a.o_st;
#pragma unroll
    for (int c = 0; c < ND; c++) {
        const int d = lane + 32 * c;
        if (d < hs) attn_store<BF16>(og + 2 * (int64_t) d, o[c] * inv);
    }
    if (a.lse && lane == 0) {
        float * lp = reinterpret_cast<float *>(a.lse + (int64_t) b * a.l_sb + (int64_t) h * a.l_sh + (int64_t) i * a.l_st);
        *lp = l > 0.f ? m + logf(l) : -INFINITY;
    }
}

/* ---- epilogue pieces shared by the tensor-core kernels (v2..v9) ------------------------------- */

/* The ROWS rows [wrow, wrow + ROWS) of the CTA that one warp staged in shared memory s (16-byte chunk c of row r at
   s + swz(r, c)) go out to the output rows m0 + r < Tq as coalesced 16-byte stores. */
template <int ROWS, int CPR, class Swz>
static __device__ __forceinline__ void attn_store_staged_rows(const struct attn_args & a, int b, int h, int m0,
                                                              int wrow, int lane, const unsigned char * s, Swz swz) {
    char * og = a.o + (int64_t) b * a.o_sb + (int64_t) h * a.o_sh;
#pragma unroll
    for (int it = 0; it < ROWS * CPR / 32; it++) {
        const int id = lane + it * 32, r = wrow + id / CPR, c = id % CPR;
        const int i  = m0 + r;
        if (i < a.Tq) {
            *reinterpret_cast<uint4 *>(og + (int64_t) i * a.o_st + c * 16) =
                *reinterpret_cast<const uint4 *>(s + swz(r, c));
        }
    }
}

/* lse of query row i (skipped past Tq; the caller checks that lse is wanted) */
static __device__ __forceinline__ void attn_store_lse(const struct attn_args & a, int b, int h, int i, float v) {
    if (i < a.Tq) {
        *reinterpret_cast<float *>(a.lse + (int64_t) b * a.l_sb + (int64_t) h * a.l_sh + (int64_t) i * a.l_st) = v;
    }
}

/* ---- v2..v5: tensor-core kernel -------------------------------------------------------------- */

/*
 * Tile configuration of tensor-core variant V (2..5, see the file header) at head size HS. Chosen on an H200
 * (docs/ATTN.md has the measurements): two K/V stages pay at HS <= 64, one stage (the FA2 split: V(t) loads
 * during S = Q K(t)^T, K(t+1) during softmax and P V(t)) at HS = 128; the sm_75 path has one stage.
 */
template <int HS, int V, bool SM75> struct attn_tc_cfg {
    static_assert(V >= 2 && V <= 5, "variant");
    static_assert(HS == 32 || HS == 64 || HS == 128, "HS");
    static constexpr int  WM     = V == 3 || V == 5 ? 2 : 1;           /* 16-row tiles per warp */
    static constexpr int  BN     = V == 5 ? 128 : 64;                  /* keys per tile */
    static constexpr bool LEAN   = V == 4;                             /* Q from shared memory, 3 CTAs/SM */
    static constexpr int  BM     = 16 * WM * RK_ATTN_TC_WARPS;         /* query rows per CTA */
    static constexpr int  CPR    = HS / 8;                             /* 16-byte chunks per row */
    static constexpr int  KSTEPS = HS / 16;                            /* k-steps of S = Q K^T */
    static constexpr int  NTILES = BN / 8;                             /* 8-column tiles of S */
    static constexpr int  DTILES = HS / 8;                             /* 8-column tiles of O */
    /* accumulator and fragment registers per thread; Q fragments are kept in registers when this stays low */
    static constexpr int  REGS      = WM * KSTEPS * 4 + WM * NTILES * 4 + WM * DTILES * 4;
    static constexpr bool Q_IN_REGS = REGS <= 176 && !LEAN;
    static constexpr int  STAGES    = SM75 || HS == 128 ? 1 : 2;
    static constexpr int  SMEM      = BM * HS * 2 + STAGES * (2 * BN * HS * 2 + BN * 4); /* sQ, {sK, sV}, sMask */
    /* register cap 255 (2 CTAs per SM), 168 (3) or 128 (4) */
    static constexpr int  MIN_BLOCKS = WM == 2 ? 2 : (LEAN || HS == 64 ? 3 : (HS == 32 ? 4 : 2));
    static_assert(BN % 16 == 0 && BN <= RK_ATTN_TC_THREADS && (BN * CPR) % RK_ATTN_TC_THREADS == 0, "BN");
    static_assert((BM * CPR) % RK_ATTN_TC_THREADS == 0, "BM");
};

/*
 * FlashAttention-2 forward. grid (ceil(Tq / BM), NH, B) with the query blocks taken last-first (under a causal
 * mask the last blocks have the most keys: scheduling them first evens out the tail), block 128 threads.
 * Warp w owns query rows [w*16*WM, (w+1)*16*WM) of the CTA's BM rows; each thread holds, per 16-row tile, the
 * rows g and g+8 of its quad. Dynamic shared memory: sQ (BM x HS), then per stage sK, sV (BN x HS each), then
 * per stage sMask (BN i32); rows swizzled (attn_swz).
 * Pipeline per key tile t with two stages (HS <= 64 on sm_80+): wait for tile t; barrier (all threads see it,
 * and all are done with tile t-1, whose stage is overwritten next); start K, V, mask of tile t+1 (cp.async);
 * S = Q K^T; mask; online softmax; O += P V. One barrier per tile, a whole tile of compute to hide each load.
 * With one stage (HS = 128, and the sm_75 path where the loads are synchronous), the FA2 split: wait for K(t);
 * barrier; start V(t) and the mask; S = Q K^T; wait for V(t); barrier; start K(t+1); mask; softmax; O += P V.
 * A tile whose padding-mask entries are all 1 (found by the barrier that follows its mask's arrival, as
 * __syncthreads_and) and that crosses neither Tk, the diagonal nor the window edge skips the masking code.
 */
template <int HS, int V, bool BF16, bool SM75>
static __global__ void __launch_bounds__(RK_ATTN_TC_THREADS, (attn_tc_cfg<HS, V, SM75>::MIN_BLOCKS))
    attn_fwd_kernel_v2(const struct attn_args a) {
    using C = attn_tc_cfg<HS, V, SM75>;
    constexpr int WM = C::WM, BN = C::BN;
    constexpr int BM = C::BM, CPR = C::CPR, KSTEPS = C::KSTEPS, NTILES = C::NTILES, DTILES = C::DTILES;
    constexpr int STAGES = C::STAGES;
    constexpr int ROWB   = CPR * 16; /* bytes per tile row */
    extern __shared__ __align__(128) unsigned char attn_smem[];
    unsigned char * sQ    = attn_smem;
    unsigned char * sKV   = sQ + BM * ROWB; /* stage s: K at sKV + s * 2 * BN * ROWB, V right after it */
    int *           sMask = reinterpret_cast<int *>(sKV + STAGES * 2 * BN * ROWB); /* stage s at sMask + s * BN */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int mb = (int) gridDim.x - 1 - (int) blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / a.group;
    const int m0 = mb * BM;
    const int wrow = warp * 16 * WM; /* first row of this warp inside the CTA tile */

    const char * qg = a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh;
    const char * kg = a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh;
    const char * vg = a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh;
    const int *  mg = a.mask ? reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb) : nullptr;

    /* keys any row of this CTA may see: [ck.kbeg, ck.kend); tiles [t_begin, t_end) */
    const attn_cta_keys ck      = attn_cta_key_range(a, m0, BM);
    const int           t_begin = ck.kbeg / BN;
    const int           t_end   = ck.kend > ck.kbeg ? (ck.kend + BN - 1) / BN : t_begin;

    /* K of tile t into stage st; V and the mask of tile t into stage st */
    auto load_k = [&](int t, int st) {
        attn_load_tile<BN, CPR, SM75>(sKV + st * 2 * BN * ROWB, kg, a.k_st, t * BN, a.Tk, tid);
    };
    auto load_v = [&](int t, int st) {
        const int n0 = t * BN;
        attn_load_tile<BN, CPR, SM75>(sKV + st * 2 * BN * ROWB + BN * ROWB, vg, a.v_st, n0, a.Tk, tid);
        if (mg) attn_load_words<BN, SM75>(sMask + st * BN, mg, n0, a.Tk, tid);
    };

    /* prologue: Q (group 0); K (two stages: and V) of the first tile (group 1) */
    attn_load_tile<BM, CPR, SM75>(sQ, qg, a.q_st, m0, a.Tq, tid);
    attn_cp_async_commit<SM75>();
    if (t_begin < t_end) {
        load_k(t_begin, 0);
        if constexpr (STAGES == 2) load_v(t_begin, 0);
    }
    attn_cp_async_commit<SM75>();

    /* ldmatrix addresses: this thread's row of each 16-row block, plus the swizzled chunk offsets */
    const attn_ldsm_offs<CPR> sw(lane);
    const uint32_t            row_base = attn_smem_u32(attn_smem) + ((lane & 7) + ((lane >> 3) & 1) * 8) * ROWB;
    const uint32_t            q_base   = row_base + wrow * ROWB;
    const uint32_t            kv_base  = row_base + BM * ROWB;

    [[maybe_unused]] uint32_t qf[C::Q_IN_REGS ? WM : 1][C::Q_IN_REGS ? KSTEPS : 1][4];
    if constexpr (C::Q_IN_REGS) {
        attn_cp_async_wait<1, SM75>();
        __syncthreads();
#pragma unroll
        for (int mi = 0; mi < WM; mi++) {
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) attn_ldsm_x4(qf[mi][kk], q_base + mi * 16 * ROWB + sw.off(kk * 2));
        }
    }

    float o[WM][DTILES][4];
    float row_m[WM][2]; /* running max of the raw scores of rows g, g+8 */
    float row_l[WM][2]; /* this thread's part of the running sum (reduced over the quad at the end) */
#pragma unroll
    for (int mi = 0; mi < WM; mi++) {
#pragma unroll
        for (int d = 0; d < DTILES; d++) {
#pragma unroll
            for (int e = 0; e < 4; e++) o[mi][d][e] = 0.f;
        }
        row_m[mi][0] = row_m[mi][1] = -INFINITY;
        row_l[mi][0] = row_l[mi][1] = 0.f;
    }
    const float sl2 = a.scale_log2;

    for (int t = t_begin; t < t_end; t++) {
        const int n0 = t * BN;
        const int   st = STAGES == 2 ? ((t - t_begin) & 1) : 0;
        const int * sm = sMask + st * BN;
        /* Mask element j of a tile is loaded by thread j: after its own wait it may read it, and the barrier tells
           every thread whether the whole tile is valid (then the tile needs no padding mask). */
        bool tile_valid = true;
        if constexpr (STAGES == 2) {
            attn_cp_async_wait<0, SM75>(); /* K(t), V(t) (and Q) landed */
            /* ... for all threads; and everyone is done with tile t-1's stage */
            tile_valid = __syncthreads_and(!mg || tid >= BN || sm[tid] != 0);
            if (t + 1 < t_end) {
                load_k(t + 1, st ^ 1);
                load_v(t + 1, st ^ 1);
            }
            attn_cp_async_commit<SM75>();
        } else {
            attn_cp_async_wait<0, SM75>(); /* K(t) (and Q) landed */
            __syncthreads();               /* ... for all threads; and everyone is done with V(t-1) */
            load_v(t, 0);
            attn_cp_async_commit<SM75>();
        }
        const uint32_t k_base = kv_base + st * 2 * BN * ROWB;
        const uint32_t v_base = k_base + BN * ROWB;

        /* S = Q K^T */
        float s[WM][NTILES][4];
#pragma unroll
        for (int mi = 0; mi < WM; mi++) {
#pragma unroll
            for (int j = 0; j < NTILES; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) s[mi][j][e] = 0.f;
            }
        }
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) {
            uint32_t qa[WM][4];
#pragma unroll
            for (int mi = 0; mi < WM; mi++) {
                if constexpr (C::Q_IN_REGS) {
#pragma unroll
                    for (int e = 0; e < 4; e++) qa[mi][e] = qf[mi][kk][e];
                } else {
                    attn_ldsm_x4(qa[mi], q_base + mi * 16 * ROWB + sw.off(kk * 2));
                }
            }
#pragma unroll
            for (int np = 0; np < NTILES / 2; np++) {
                uint32_t kb[4]; /* b0 of key tiles 2np, 2np+1; b1 of key tiles 2np, 2np+1 */
                attn_ldsm_x4(kb, k_base + np * 16 * ROWB + sw.off(kk * 2));
#pragma unroll
                for (int mi = 0; mi < WM; mi++) {
                    attn_mma<BF16, SM75>(s[mi][2 * np], qa[mi], kb[0], kb[2]);
                    attn_mma<BF16, SM75>(s[mi][2 * np + 1], qa[mi], kb[1], kb[3]);
                }
            }
        }

        if constexpr (STAGES == 1) {
            attn_cp_async_wait<0, SM75>(); /* V(t) and the mask landed */
            /* ... for all threads; and everyone is done with K(t) */
            tile_valid = __syncthreads_and(!mg || tid >= BN || sm[tid] != 0);
            if (t + 1 < t_end) load_k(t + 1, 0);
            attn_cp_async_commit<SM75>();
        }

        /* masking: only tiles with padding, or that cross Tk, the diagonal or the window edge */
        const bool need_mask = !tile_valid || n0 + BN > ck.hi_first + 1 || n0 < ck.lo_last;
        if (need_mask) {
#pragma unroll
            for (int mi = 0; mi < WM; mi++) {
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    int lo, hi;
                    attn_row_range(a, m0 + wrow + mi * 16 + g + 8 * r, lo, hi);
                    lo -= n0;
                    hi -= n0;
#pragma unroll
                    for (int j = 0; j < NTILES; j++) {
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const int  c  = j * 8 + 2 * tig + e;
                            const bool ok = c >= lo && c <= hi && (!mg || sm[c] != 0);
                            if (!ok) s[mi][j][2 * r + e] = -INFINITY;
                        }
                    }
                }
            }
        }

        /* online softmax (exp2 with the scale folded in: p = 2^(scale_log2 * (s - m))). P goes to 16 bits as it is
           made (half the registers of S): the accumulators of key tiles 2kk, 2kk+1 are the A fragment of k-step
           kk of P V, pa[mi][kk] = {(g, tile 2kk), (g+8, tile 2kk), (g, tile 2kk+1), (g+8, tile 2kk+1)} */
        uint32_t pa[WM][BN / 16][4];
#pragma unroll
        for (int mi = 0; mi < WM; mi++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = row_m[mi][r];
#pragma unroll
                for (int j = 0; j < NTILES; j++) mx = fmaxf(mx, fmaxf(s[mi][j][2 * r], s[mi][j][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_use = mx == -INFINITY ? 0.f : mx; /* all masked so far: avoid inf - inf */
                const float alpha = attn_exp2((row_m[mi][r] - m_use) * sl2);
                const float ms    = m_use * sl2;
                row_m[mi][r]      = mx;
                float sum         = 0.f;
#pragma unroll
                for (int j = 0; j < NTILES; j++) {
                    const float p0 = attn_exp2(fmaf(s[mi][j][2 * r], sl2, -ms));
                    const float p1 = attn_exp2(fmaf(s[mi][j][2 * r + 1], sl2, -ms));
                    sum += p0 + p1;
                    pa[mi][j / 2][(j % 2) * 2 + r] = attn_pack2<BF16>(p0, p1);
                }
                row_l[mi][r] = row_l[mi][r] * alpha + sum;
#pragma unroll
                for (int d = 0; d < DTILES; d++) {
                    o[mi][d][2 * r] *= alpha;
                    o[mi][d][2 * r + 1] *= alpha;
                }
            }
        }

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
#pragma unroll
            for (int dp = 0; dp < DTILES / 2; dp++) {
                uint32_t vb[4]; /* b0, b1 of dim tile 2dp; b0, b1 of dim tile 2dp+1 */
                attn_ldsm_x4_trans(vb, v_base + kk * 16 * ROWB + sw.off(dp * 2));
#pragma unroll
                for (int mi = 0; mi < WM; mi++) {
                    attn_mma<BF16, SM75>(o[mi][2 * dp], pa[mi][kk], vb[0], vb[1]);
                    attn_mma<BF16, SM75>(o[mi][2 * dp + 1], pa[mi][kk], vb[2], vb[3]);
                }
            }
        }
    }

    /* epilogue: normalise, stage this warp's rows in its own part of sQ, write 16-byte chunks */
    attn_cp_async_wait<0, SM75>(); /* nothing may still be landing in sQ (no key tile at all) */
    __syncthreads();
    float lse[WM][2];
#pragma unroll
    for (int mi = 0; mi < WM; mi++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float l = row_l[mi][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f; /* a row with no valid key gives zeros */
            lse[mi][r]      = l > 0.f ? row_m[mi][r] * a.scale + logf(l) : -INFINITY;
#pragma unroll
            for (int d = 0; d < DTILES; d++) {
                o[mi][d][2 * r] *= inv;
                o[mi][d][2 * r + 1] *= inv;
            }
        }
    }
#pragma unroll
    for (int mi = 0; mi < WM; mi++) {
        const int r = wrow + mi * 16 + g;
#pragma unroll
        for (int d = 0; d < DTILES; d++) {
            *reinterpret_cast<uint32_t *>(sQ + attn_swz<CPR>(r, d) + tig * 4) =
                attn_pack2<BF16>(o[mi][d][0], o[mi][d][1]);
            *reinterpret_cast<uint32_t *>(sQ + attn_swz<CPR>(r + 8, d) + tig * 4) =
                attn_pack2<BF16>(o[mi][d][2], o[mi][d][3]);
        }
    }
    __syncwarp();
    attn_store_staged_rows<16 * WM, CPR>(a, b, h, m0, wrow, lane, sQ,
                                         [](int r, int c) { return attn_swz<CPR>(r, c); });
    if (a.lse && tig == 0) {
#pragma unroll
        for (int mi = 0; mi < WM; mi++) {
#pragma unroll
            for (int r = 0; r < 2; r++) attn_store_lse(a, b, h, m0 + wrow + mi * 16 + g + 8 * r, lse[mi][r]);
        }
    }
}

/* ---- v6, v7, v8: warpgroup-MMA kernel (sm_90a) -------------------------------------------------- */

/*
 * Tile configuration of the wgmma variants at head size HS (64 or 128). Each warpgroup (4 warps, 128 threads) owns
 * 64 query rows; BN keys per tile. v6: one warpgroup, BN = 128 at HS = 64, 64 at HS = 128 (3 and 2 CTAs per SM);
 * v7: one warpgroup, the other BN (more CTAs at HS = 64, bigger tiles at HS = 128); v8: two warpgroups (128 query
 * rows: each K/V tile loaded into shared memory serves twice the rows), BN = 64. Shared memory: 1 KB of slack to
 * align the tiles to 1024 bytes (the 128-byte swizzle is a function of the address), sQ, two stages of sK and sV,
 * two mask buffers.
 */
template <int HS, int V> struct attn_wg_cfg {
    static_assert(HS == 64 || HS == 128, "HS");
    static_assert(V >= 6 && V <= 8, "variant");
    static constexpr int NWG     = V == 8 ? 2 : 1;
    static constexpr int THREADS = 128 * NWG;
    static constexpr int BM      = 64 * NWG;
    static constexpr int BN      = V == 8 ? 64 : ((V == 6) == (HS == 64) ? 128 : 64);
    static constexpr int CPR    = HS / 8;    /* 16-byte chunks per row */
    static constexpr int PSTEPS = BN / 16;   /* k-steps of O = P V */
    static constexpr int Q_BYTES  = BM * HS * 2;
    static constexpr int KV_BYTES = BN * HS * 2; /* one K or V tile */
    static constexpr int SMEM     = 1024 + Q_BYTES + 2 * 2 * KV_BYTES + 2 * BN * 4;
    /* CTAs per SM the launch bounds ask for: by shared memory, and for v8 by registers (2 x 256 threads: <= 128
       registers, which v8 fits at HS = 64 only) */
    static constexpr int MIN_BLOCKS = NWG == 2 ? (HS == 64 ? 2 : 1) : (SMEM <= 75 * 1024 ? 3 : (SMEM <= 113 * 1024 ? 2 : 1));
};

/* ---- pieces shared by the wgmma kernels (one warpgroup's 64 rows; thread rows g, g + 8 of warp w's 16) ---- */

/* S (64 x BN) = Q K^T: HS / 16 wgmma, A = Q and B = K from shared memory, K-major; k-step kk reads 32 bytes at byte
   (kk % 4) * 32 of the rows of 64-column panel kk / 4 (Q panels are QROWS rows apart, K panels BN). Not waited for. */
template <int HS, int BN, int QROWS, bool BF16>
static __device__ __forceinline__ void attn_wg_issue_s(float (&s)[BN / 2], uint32_t q_addr, uint32_t k_addr) {
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        const uint32_t koff = (uint32_t) ((kk & 3) * 32);
        wg_mma_ss<BN, BF16>(s, wg_desc(q_addr + (kk >> 2) * QROWS * 128 + koff, 16, 1024),
                            wg_desc(k_addr + (kk >> 2) * BN * 128 + koff, 16, 1024), kk > 0);
    }
}

/* O (64 x HS) += P V: BN / 16 wgmma, A = P from registers, B = V from shared memory, MN-major: k-step kk is keys
   [16 kk, 16 kk + 16), 2048 bytes further; the 64-column panels of V are BN * 128 bytes apart (LBO), 8-key groups
   1024 (SBO). Not waited for. */
template <int HS, int BN, bool BF16>
static __device__ __forceinline__ void attn_wg_issue_pv(float (&o)[HS / 2], const uint32_t (&pa)[BN / 16][4],
                                                        uint32_t v_addr) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) wg_mma_rs_tb<HS, BF16>(o, pa[kk], wg_desc(v_addr + kk * 2048, BN * 128, 1024), 1);
}

/* O += P V as above, committed and waited for by this thread (a stage of V is free for reloading only once every
   warp of the warpgroup has waited: after the caller's next barrier). */
template <int HS, int BN, bool BF16>
static __device__ __forceinline__ void attn_wg_pv_wait(float (&o)[HS / 2], const uint32_t (&pa)[BN / 16][4],
                                                       uint32_t v_addr) {
    wg_fence();
    attn_wg_issue_pv<HS, BN, BF16>(o, pa, v_addr);
    wg_commit();
    wg_wait<0>();
    wg_fence_regs(o);
}

/* The mask of one S tile of keys [n0, n0 + BN), as v2, as bits: bit 2 j + e of valid[r] says whether the element
   (row g + 8 r, column 8 j + 2 t + e) may be attended. row0 is the thread's first row (m0 + wrow + g); sm the tile's
   mask words in shared memory (read only when has_mask). The softmax applies the bits as it reads S. */
template <int BN>
static __device__ __forceinline__ void attn_wg_valid(uint32_t (&valid)[2], const struct attn_args & a, int row0, int n0,
                                                     const int * sm, bool has_mask, int tig) {
    static_assert(BN / 4 <= 32, "BN");
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int lo, hi;
        attn_row_range(a, row0 + 8 * r, lo, hi);
        lo -= n0;
        hi -= n0;
        uint32_t bits = 0;
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int  c  = j * 8 + 2 * tig + e;
                const bool ok = c >= lo && c <= hi && (!has_mask || sm[c] != 0);
                bits |= (uint32_t) ok << (2 * j + e);
            }
        }
        valid[r] = bits;
    }
}

/* Online softmax of one S tile as v2 (exp2 with the scale folded in), with the elements whose valid bit is 0 taken as
   -inf when MASKED: updates the running max and partial sums, overwrites s with P (fp32), and returns the factor
   alpha[r] by which O must be rescaled. */
template <int BN, bool MASKED>
static __device__ __forceinline__ void attn_wg_softmax(float (&s)[BN / 2], const uint32_t (&valid)[2], float (&row_m)[2],
                                                       float (&row_l)[2], float (&alpha)[2], float sl2) {
    auto at = [&](int j, int r, int e) {
        const float x = s[j * 4 + 2 * r + e];
        return !MASKED || ((valid[r] >> (2 * j + e)) & 1u) ? x : -INFINITY;
    };
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = row_m[r];
#pragma unroll
        for (int j = 0; j < BN / 8; j++) mx = fmaxf(mx, fmaxf(at(j, r, 0), at(j, r, 1)));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_use = mx == -INFINITY ? 0.f : mx; /* all masked so far: avoid inf - inf */
        alpha[r]          = attn_exp2((row_m[r] - m_use) * sl2);
        const float ms    = m_use * sl2;
        row_m[r]          = mx;
        float sum         = 0.f;
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            const float p0 = attn_exp2(fmaf(at(j, r, 0), sl2, -ms));
            const float p1 = attn_exp2(fmaf(at(j, r, 1), sl2, -ms));
            sum += p0 + p1;
            s[j * 4 + 2 * r]     = p0;
            s[j * 4 + 2 * r + 1] = p1;
        }
        row_l[r] = row_l[r] * alpha[r] + sum;
    }
}

/* P (fp32, in the accumulator layout) packed to 16 bits as the A operand of P V: the accumulators of key tiles 2kk,
   2kk+1 are k-step kk, pa[kk] = {(g, tile 2kk), (g+8, tile 2kk), (g, tile 2kk+1), (g+8, tile 2kk+1)}. */
template <int BN, bool BF16>
static __device__ __forceinline__ void attn_wg_pack_p(const float (&p)[BN / 2], uint32_t (&pa)[BN / 16][4]) {
#pragma unroll
    for (int j = 0; j < BN / 8; j++) {
#pragma unroll
        for (int r = 0; r < 2; r++) pa[j / 2][(j % 2) * 2 + r] = attn_pack2<BF16>(p[j * 4 + 2 * r], p[j * 4 + 2 * r + 1]);
    }
}

/* Mask (only tiles with padding, or that cross Tk, the diagonal or the window edge) and softmax of the S tile of keys
   [n0, n0 + BN): s becomes P (fp32). */
template <int BN>
static __device__ __forceinline__ void attn_wg_mask_softmax(float (&s)[BN / 2], const struct attn_args & a,
                                                            const attn_cta_keys & ck, int row0, int n0, const int * sm,
                                                            bool has_mask, bool tile_valid, int tig,
                                                            float (&row_m)[2], float (&row_l)[2], float (&alpha)[2]) {
    uint32_t valid[2] = { ~0u, ~0u };
    if (!tile_valid || n0 + BN > ck.hi_first + 1 || n0 < ck.lo_last) {
        attn_wg_valid<BN>(valid, a, row0, n0, sm, has_mask, tig);
        attn_wg_softmax<BN, true>(s, valid, row_m, row_l, alpha, a.scale_log2);
    } else {
        attn_wg_softmax<BN, false>(s, valid, row_m, row_l, alpha, a.scale_log2);
    }
}

template <int HS> static __device__ __forceinline__ void attn_wg_rescale(float (&o)[HS / 2], const float (&alpha)[2]) {
#pragma unroll
    for (int d = 0; d < HS / 8; d++) {
#pragma unroll
        for (int e = 0; e < 4; e++) o[d * 4 + e] *= alpha[e / 2];
    }
}

/* Epilogue: normalise by the row sums; warp w stages its own 16 rows (wrow..wrow+15 of the CTA) in sQ (a BM-row
   swizzled tile no wgmma reads any more) and writes them as 16-byte chunks; lse from one thread per quad. */
template <int HS, int BM, bool BF16>
static __device__ __forceinline__ void attn_wg_epilogue(float (&o)[HS / 2], const float (&row_m)[2],
                                                        const float (&row_l)[2], unsigned char * sQ,
                                                        const struct attn_args & a, int b, int h, int m0, int wrow,
                                                        int lane) {
    constexpr int CPR = HS / 8;
    const int     g = lane >> 2, tig = lane & 3;
    float         lse[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = row_l[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.f ? 1.f / l : 0.f; /* a row with no valid key gives zeros */
        lse[r]          = l > 0.f ? row_m[r] * a.scale + logf(l) : -INFINITY;
#pragma unroll
        for (int d = 0; d < HS / 8; d++) {
            o[d * 4 + 2 * r] *= inv;
            o[d * 4 + 2 * r + 1] *= inv;
        }
    }
#pragma unroll
    for (int d = 0; d < HS / 8; d++) {
        const int r = wrow + g;
        *reinterpret_cast<uint32_t *>(sQ + wg_swz<BM>(r, d) + tig * 4) = attn_pack2<BF16>(o[d * 4], o[d * 4 + 1]);
        *reinterpret_cast<uint32_t *>(sQ + wg_swz<BM>(r + 8, d) + tig * 4) =
            attn_pack2<BF16>(o[d * 4 + 2], o[d * 4 + 3]);
    }
    __syncwarp();
    attn_store_staged_rows<16, CPR>(a, b, h, m0, wrow, lane, sQ, [](int r, int c) { return wg_swz<BM>(r, c); });
    if (a.lse && tig == 0) {
#pragma unroll
        for (int r = 0; r < 2; r++) attn_store_lse(a, b, h, m0 + wrow + g + 8 * r, lse[r]);
    }
}

/* Where a CTA of the wgmma kernels works: its (b, h) and first query row (query blocks last-first, as v2), the base
   pointers of its q rows, kv head and mask row, the keys its rows may see and their tiles [t_begin, t_end) of BN. */
template <int BM, int BN> struct attn_wg_block {
    int                h, b, m0, t_begin, t_end;
    const char *       qg, * kg, * vg;
    const int *        mg;
    attn_cta_keys      ck;
    __device__ __forceinline__ explicit attn_wg_block(const struct attn_args & a) {
        h            = blockIdx.y;
        b            = blockIdx.z;
        m0           = ((int) gridDim.x - 1 - (int) blockIdx.x) * BM;
        const int hk = h / a.group;
        qg           = a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh;
        kg           = a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh;
        vg           = a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh;
        mg           = a.mask ? reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb) : nullptr;
        ck           = attn_cta_key_range(a, m0, BM);
        t_begin      = ck.kbeg / BN;
        t_end        = ck.kend > ck.kbeg ? (ck.kend + BN - 1) / BN : t_begin;
    }
};

/* 1024-aligned start of the dynamic shared memory (the wgmma configurations allocate 1 KB of slack for it) */
static __device__ __forceinline__ unsigned char * attn_wg_smem_base(unsigned char * smem) {
    const uint32_t raw = attn_smem_u32(smem);
    return smem + (((raw + 1023u) & ~1023u) - raw);
}

/*
 * FlashAttention-2 forward on Hopper warpgroup MMA (v6, v7, v8). grid (ceil(Tq / BM), NH, B), query blocks
 * last-first as in v2, block NWG warpgroups; warp w owns rows 16 w .. 16 w + 15 of the CTA's BM = 64 NWG, and each
 * thread rows g and g + 8 of them (the accumulator layout of wgmma is mma.sync's, stacked over the 4 warps of a
 * warpgroup; warpgroup wg multiplies the 64 rows of sQ from row 64 wg). Per key tile t:
 * wait for K(t), V(t), mask(t) (cp.async) and make them visible to wgmma (fence.proxy.async); barrier (which also
 * says whether the tile has padding); start the loads of tile t + 1 into the other stage; S = Q K^T; mask; online
 * softmax in fp32 (as v2); O += P V with P from registers. Each product is waited for before its result is used
 * (no overlap inside the warpgroup: 2-3 CTAs per SM overlap each other; v9 below overlaps inside it).
 */
template <int HS, int V, bool BF16>
static __global__ void __launch_bounds__(attn_wg_cfg<HS, V>::THREADS, (attn_wg_cfg<HS, V>::MIN_BLOCKS))
    attn_fwd_kernel_wg(const struct attn_args a) {
    using C = attn_wg_cfg<HS, V>;
    constexpr int BM = C::BM, BN = C::BN, CPR = C::CPR, PSTEPS = C::PSTEPS, NT = C::THREADS;
    extern __shared__ __align__(128) unsigned char attn_wg_smem[];
    unsigned char * sQ    = attn_wg_smem_base(attn_wg_smem);
    unsigned char * sKV   = sQ + C::Q_BYTES; /* stage st: K at sKV + st * 2 * KV_BYTES, V right after it */
    int *           sMask = reinterpret_cast<int *>(sKV + 2 * 2 * C::KV_BYTES); /* stage st at sMask + st * BN */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int wrow = warp * 16;
    const attn_wg_block<BM, BN> blk(a);
    const int           h = blk.h, b = blk.b, m0 = blk.m0, t_begin = blk.t_begin, t_end = blk.t_end;
    const char *        qg = blk.qg, * kg = blk.kg, * vg = blk.vg;
    const int *         mg = blk.mg;
    const attn_cta_keys ck = blk.ck;

    auto load_kv = [&](int t, int st) {
        const int       n0 = t * BN;
        unsigned char * sk = sKV + st * 2 * C::KV_BYTES;
        wg_load_tile<BN, CPR, NT>(sk, kg, a.k_st, n0, a.Tk, tid);
        wg_load_tile<BN, CPR, NT>(sk + C::KV_BYTES, vg, a.v_st, n0, a.Tk, tid);
        if (mg) attn_load_words<BN, false>(sMask + st * BN, mg, n0, a.Tk, tid);
    };

    /* prologue: Q, then K, V and the mask of the first tile (two groups; the loop waits for both) */
    wg_load_tile<BM, CPR, NT>(sQ, qg, a.q_st, m0, a.Tq, tid);
    attn_cp_async_commit<false>();
    if (t_begin < t_end) load_kv(t_begin, 0);
    attn_cp_async_commit<false>();

    const uint32_t q_addr  = attn_smem_u32(sQ) + (uint32_t) (warp >> 2) * 64 * 128; /* this warpgroup's 64 rows */
    const uint32_t kv_addr = attn_smem_u32(sKV);

    float o[HS / 2];
    float row_m[2] = { -INFINITY, -INFINITY }, row_l[2] = { 0.f, 0.f };
#pragma unroll
    for (int i = 0; i < HS / 2; i++) o[i] = 0.f;

    for (int t = t_begin; t < t_end; t++) {
        const int   n0 = t * BN;
        const int   st = (t - t_begin) & 1;
        const int * sm = sMask + st * BN;
        attn_cp_async_wait<0, false>(); /* this thread's copies of K(t), V(t), the mask (and Q) landed */
        wg_fence_proxy_async();         /* ... and are visible to wgmma once the barrier has passed */
        const bool tile_valid = __syncthreads_and(!mg || tid >= BN || sm[tid] != 0);
        if (t + 1 < t_end) load_kv(t + 1, st ^ 1); /* every thread is done with tile t - 1's stage */
        attn_cp_async_commit<false>();

        const uint32_t k_addr = kv_addr + st * 2 * C::KV_BYTES;
        float          s[BN / 2];
        wg_fence();
        attn_wg_issue_s<HS, BN, BM, BF16>(s, q_addr, k_addr);
        wg_commit();
        wg_wait<0>();
        wg_fence_regs(s);

        uint32_t pa[PSTEPS][4];
        float    alpha[2];
        attn_wg_mask_softmax<BN>(s, a, ck, m0 + wrow + g, n0, sm, mg != nullptr, tile_valid, tig, row_m, row_l, alpha);
        attn_wg_pack_p<BN, BF16>(s, pa);
        attn_wg_rescale<HS>(o, alpha);

        wg_fence_regs(o);
        attn_wg_pv_wait<HS, BN, BF16>(o, pa, k_addr + C::KV_BYTES);
    }

    attn_cp_async_wait<0, false>(); /* nothing may still be landing in sQ (no key tile at all) */
    __syncthreads();
    attn_wg_epilogue<HS, BM, BF16>(o, row_m, row_l, sQ, a, b, h, m0, wrow, lane);
}

/* ---- v9, v10: wgmma with the products of consecutive tiles overlapped inside the warpgroup ------------------------ */

/*
 * v9: one warpgroup, 64 query rows, BN = 128 keys at HS = 64 and 64 at HS = 128 (v6's tiles), 2 CTAs per SM.
 * v10: two warpgroups, 128 query rows (each K/V tile serves both, as v8), BN = 128 keys at both head sizes (S is
 * m64n128 per warpgroup, FA3's causal tile at HS = 128), one CTA of 8 warps per SM (registers: S, O and the packed P
 * of the previous tile live together). Shared memory: sQ, two stages of K, two of V, two mask buffers (each loaded
 * with its K), 1 KB of alignment slack: 73 / 81.5 KB (v9), 81 / 161 KB (v10, HS = 64 / 128).
 */
template <int HS, int V> struct attn_wgp_cfg {
    static_assert(HS == 64 || HS == 128, "HS");
    static_assert(V == 9 || V == 10, "variant");
    static constexpr int NWG      = V == 10 ? 2 : 1;
    static constexpr int THREADS  = 128 * NWG;
    static constexpr int BM       = 64 * NWG;
    static constexpr int BN       = V == 10 || HS == 64 ? 128 : 64;
    static constexpr int MIN_BLOCKS = V == 10 ? 1 : 2;
    static constexpr int CPR      = HS / 8;
    static constexpr int Q_BYTES  = BM * HS * 2;
    static constexpr int KV_BYTES = BN * HS * 2;
    static constexpr int SMEM     = 1024 + Q_BYTES + 4 * KV_BYTES + 2 * BN * 4;
};

/*
 * v9: the FlashAttention-3 overlap inside one warpgroup. Iteration i (key tile t = t_begin + i) issues S(t) = Q K(t)^T
 * and then O += P(t-1) V(t-1) (P of the previous tile, still in registers), waits for S(t) only, and computes the
 * mask and softmax of S(t) while the tensor cores run P(t-1) V(t-1); then waits for that, and rescales O. The last
 * P V runs after the loop. Loads, all after the barrier at the top of iteration i: K(t+1) and its mask into the
 * stage of K(t-1), V(t) into the stage of V(t-2). A shared operand is free only once EVERY warp of the warpgroup
 * has waited for the products that read it (wgmma.wait_group completes the groups of the executing thread, PTX ISA
 * 9.7.15.7): that barrier is the first point where all four warps have waited for S(t-1) and P(t-2) V(t-2) (the
 * earlier version loaded K(t+2) right after its own warp's wait for S(t); the emulator's asynchrony model caught
 * it). The top of iteration i waits for every cp.async group (the newest holds K(t), mask(t), V(t-1)): one
 * iteration of lead, as v6. grid and row ownership as v6 (v9) and v8 (v10: warpgroup wg multiplies the 64 rows of
 * sQ from row 64 wg); block C::THREADS.
 */
template <int HS, int V, bool BF16>
static __global__ void __launch_bounds__(attn_wgp_cfg<HS, V>::THREADS, (attn_wgp_cfg<HS, V>::MIN_BLOCKS))
    attn_fwd_kernel_wgp(const struct attn_args a) {
    using C = attn_wgp_cfg<HS, V>;
    constexpr int BM = C::BM, BN = C::BN, CPR = C::CPR, PSTEPS = BN / 16, NT = C::THREADS;
    extern __shared__ __align__(128) unsigned char attn_wg_smem[];
    unsigned char * sQ    = attn_wg_smem_base(attn_wg_smem);
    unsigned char * sK    = sQ + C::Q_BYTES;          /* stage st at sK + st * KV_BYTES */
    unsigned char * sV    = sK + 2 * C::KV_BYTES;     /* stage st at sV + st * KV_BYTES */
    int *           sMask = reinterpret_cast<int *>(sV + 2 * C::KV_BYTES); /* mask of iteration i at sMask + (i % 2) * BN */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int wrow = warp * 16;
    const attn_wg_block<BM, BN> blk(a);
    const int           h = blk.h, b = blk.b, m0 = blk.m0, t_begin = blk.t_begin, t_end = blk.t_end;
    const char *        qg = blk.qg, * kg = blk.kg, * vg = blk.vg;
    const int *         mg = blk.mg;
    const attn_cta_keys ck = blk.ck;

    /* K and the mask of tile t (iteration i = t - t_begin) into K stage i % 2 and mask buffer i % 2; V into stage
       i % 2 */
    auto load_k = [&](int t) {
        const int i = t - t_begin;
        wg_load_tile<BN, CPR, NT>(sK + (i & 1) * C::KV_BYTES, kg, a.k_st, t * BN, a.Tk, tid);
        if (mg) attn_load_words<BN, false>(sMask + (i & 1) * BN, mg, t * BN, a.Tk, tid);
    };
    auto load_v = [&](int t) {
        wg_load_tile<BN, CPR, NT>(sV + ((t - t_begin) & 1) * C::KV_BYTES, vg, a.v_st, t * BN, a.Tk, tid);
    };

    /* prologue: Q, K(0), mask(0) */
    wg_load_tile<BM, CPR, NT>(sQ, qg, a.q_st, m0, a.Tq, tid);
    if (t_begin < t_end) load_k(t_begin);
    attn_cp_async_commit<false>();

    const uint32_t q_addr = attn_smem_u32(sQ) + (uint32_t) (warp >> 2) * 64 * 128; /* this warpgroup's 64 rows */
    const uint32_t k_addr = attn_smem_u32(sK), v_addr = attn_smem_u32(sV);

    float    o[HS / 2];
    float    row_m[2] = { -INFINITY, -INFINITY }, row_l[2] = { 0.f, 0.f };
    uint32_t pp[PSTEPS][4]; /* P of the previous tile, the A operand of its P V */
#pragma unroll
    for (int i = 0; i < HS / 2; i++) o[i] = 0.f;

    /* the top of iteration i: wait for every group (K(t), mask(t), V(t-1), and Q), make the copies visible to
       wgmma; the barrier also tells whether the tile has padding, and that every warp has waited for S(t-1) and
       P(t-2) V(t-2) and is done with mask(t-1): then K(t+1), mask(t+1) and V(t) go into their stages */
    auto tile_top = [&](int i) {
        attn_cp_async_wait<0, false>();
        wg_fence_proxy_async();
        const bool valid = __syncthreads_and(!mg || tid >= BN || sMask[(i & 1) * BN + tid] != 0);
        if (t_begin + i + 1 < t_end) load_k(t_begin + i + 1);
        load_v(t_begin + i);
        attn_cp_async_commit<false>();
        return valid;
    };
    /* mask (where needed) and softmax of S(t) */
    auto softmax = [&](float (&s)[BN / 2], int i, bool tile_valid, float (&alpha)[2]) {
        attn_wg_mask_softmax<BN>(s, a, ck, m0 + wrow + g, (t_begin + i) * BN, sMask + (i & 1) * BN, mg != nullptr,
                                 tile_valid, tig, row_m, row_l, alpha);
    };

    if (t_begin < t_end) {
        /* the first tile alone: S(0), its softmax into pp (O is still 0: nothing to rescale) */
        {
            const bool tile_valid = tile_top(0);
            float      s[BN / 2], alpha[2];
            wg_fence();
            attn_wg_issue_s<HS, BN, BM, BF16>(s, q_addr, k_addr);
            wg_commit();
            wg_wait<0>();
            wg_fence_regs(s);
            softmax(s, 0, tile_valid, alpha);
            attn_wg_pack_p<BN, BF16>(s, pp);
        }
        for (int t = t_begin + 1; t < t_end; t++) {
            const int  i          = t - t_begin;
            const bool tile_valid = tile_top(i);
            float      s[BN / 2], alpha[2];
            wg_fence(); /* O was rescaled and pp rewritten since the last wgmma */
            attn_wg_issue_s<HS, BN, BM, BF16>(s, q_addr, k_addr + (i & 1) * C::KV_BYTES);
            wg_commit();
            attn_wg_issue_pv<HS, BN, BF16>(o, pp, v_addr + ((i - 1) & 1) * C::KV_BYTES);
            wg_commit();
            wg_wait<1>(); /* S(t) done; P(t-1) V(t-1) may still run */
            wg_fence_regs(s);
            softmax(s, i, tile_valid, alpha); /* P(t) stays fp32 in s: pp is still being read */
            wg_wait<0>(); /* P(t-1) V(t-1) done: O is final for tile t-1, pp is free */
            wg_fence_regs(o);
            wg_fence_regs(pp);
            attn_wg_rescale<HS>(o, alpha);
            attn_wg_pack_p<BN, BF16>(s, pp);
        }
        /* the last tile's P V */
        attn_cp_async_wait<0, false>();
        wg_fence_proxy_async();
        __syncthreads();
        attn_wg_pv_wait<HS, BN, BF16>(o, pp, v_addr + ((t_end - 1 - t_begin) & 1) * C::KV_BYTES);
    }

    attn_cp_async_wait<0, false>(); /* nothing may still be landing in sQ (no key tile at all) */
    __syncthreads();
    attn_wg_epilogue<HS, BM, BF16>(o, row_m, row_l, sQ, a, b, h, m0, wrow, lane);
}


/* ---- v11: warp-specialized, TMA loads (FlashAttention-3's structure) ---------------------------------------- */

/*
 * 384 threads: warpgroup 0 the producer, warpgroups 1 and 2 the consumers of 64 query rows each (BM = 128), 128-key
 * tiles at both head sizes. Shared memory: sQ (BM x HS), two stages of K and two of V (BN x HS each), all
 * 1024-aligned 128-byte-swizzled tiles of 64-column panels (TMA boxes of 64 columns x rows), then the mbarriers:
 * q_full, k_full[2], v_full[2], k_empty[2], v_empty[2]. 81 KB (HS = 64) / 161 KB (HS = 128).
 */
template <int HS> struct attn_ws_cfg {
    static_assert(HS == 64 || HS == 128, "HS");
    static constexpr int BM       = 128;
    static constexpr int BN       = 128;
    static constexpr int Q_BYTES  = BM * HS * 2;
    static constexpr int KV_BYTES = BN * HS * 2;
    static constexpr int BAR_OFF  = Q_BYTES + 4 * KV_BYTES;
    static constexpr int SMEM     = 1024 + BAR_OFF + 9 * 8;
};

/* the kernel's arguments: the attention's, and TMA maps of q, k and v as 4-D tensors (HS, T, heads, B) */
struct attn_ws_args {
    struct attn_args a;
    CUtensorMap      mq, mk, mv;
};

/*
 * v11. The producer (one thread of warpgroup 0, after setmaxnreg.dec) loads Q once, then for each key tile t waits
 * for the K stage to be empty (the consumers' 256 arrivals of the tile two before), arrives on its "full" barrier
 * with the bytes to expect and issues the TMA loads of K(t) (one box per 64-column panel), then the same for V(t).
 * The consumers (setmaxnreg.inc) run v9's loop without any CTA barrier: S(t) = Q K(t)^T and O += P(t-1) V(t-1)
 * issued back to back, wait for S(t) only, arrive on K(t)'s "empty" barrier, mask and softmax of S(t) while
 * P(t-1) V(t-1) runs, then wait for it, arrive on V(t-1)'s "empty" barrier, rescale O and pack P(t). A stage is free
 * once all 256 consumer threads have waited for the products that read it (wgmma.wait_group completes the
 * executing thread's groups). The padding mask is read from global memory (L1/L2-resident words) inside the
 * softmax; whether a tile has padding is decided per warp. Parity of the stage-s barriers at use u = i / 2 of
 * tile i: u & 1 (full), (u & 1) ^ 1 (empty: the first use passes at once). grid (ceil(Tq / 128), NH, B).
 * PP (v12): FA3's ping-pong of the two consumer warpgroups: each issues its two products of a tile only in its turn
 * (named barrier 5 + c, 256 threads: its own wait and the other warpgroup's arrival) and hands the turn over right
 * after issuing, so one warpgroup's softmax runs while the other's products occupy the tensor cores. Warpgroup 1
 * hands warpgroup 0 the first turn; it skips its last hand-over, which nobody would wait for.
 */
template <int HS, bool BF16, bool PP>
static __global__ void __launch_bounds__(384, 1) attn_fwd_kernel_ws(const __grid_constant__ struct attn_ws_args w) {
    using C = attn_ws_cfg<HS>;
    constexpr int BM = C::BM, BN = C::BN, PSTEPS = BN / 16, NP = HS / 64;
    const struct attn_args & a = w.a;
    extern __shared__ __align__(128) unsigned char attn_wg_smem[];
    unsigned char * sQ   = attn_wg_smem_base(attn_wg_smem);
    const uint32_t  q_s  = attn_smem_u32(sQ), k_s = q_s + C::Q_BYTES, v_s = k_s + 2 * C::KV_BYTES;
    const uint32_t  bars = q_s + C::BAR_OFF; /* q_full, k_full[2], v_full[2], k_empty[2], v_empty[2] */
    const uint32_t  q_full = bars, k_full = bars + 8, v_full = bars + 24, k_empty = bars + 40, v_empty = bars + 56;

    const int tid = threadIdx.x;
    const attn_wg_block<BM, BN> blk(a);
    const int h = blk.h, b = blk.b, m0 = blk.m0, t_begin = blk.t_begin, t_end = blk.t_end;
    if (tid == 0) {
        mb_init(q_full, 1);
        for (int s = 0; s < 2; s++) {
            mb_init(k_full + 8 * s, 1);
            mb_init(v_full + 8 * s, 1);
            mb_init(k_empty + 8 * s, 256);
            mb_init(v_empty + 8 * s, 256);
        }
        mb_fence_init();
    }
    __syncthreads();

    if (tid < 128) { /* producer */
        wg_setmaxnreg_dec<24>();
        if (tid == 0) {
            const int hk = h / a.group;
            mb_arrive_tx(q_full, C::Q_BYTES);
            for (int p = 0; p < NP; p++) tma_load_4d(q_s + p * BM * 128, &w.mq, q_full, p * 64, m0, h, b);
            for (int t = t_begin; t < t_end; t++) {
                const int      i = t - t_begin, s = i & 1;
                const uint32_t par = (uint32_t) (((i >> 1) & 1) ^ 1);
                mb_wait(k_empty + 8 * s, par);
                mb_arrive_tx(k_full + 8 * s, C::KV_BYTES);
                for (int p = 0; p < NP; p++) {
                    tma_load_4d(k_s + s * C::KV_BYTES + p * BN * 128, &w.mk, k_full + 8 * s, p * 64, t * BN, hk, b);
                }
                mb_wait(v_empty + 8 * s, par);
                mb_arrive_tx(v_full + 8 * s, C::KV_BYTES);
                for (int p = 0; p < NP; p++) {
                    tma_load_4d(v_s + s * C::KV_BYTES + p * BN * 128, &w.mv, v_full + 8 * s, p * 64, t * BN, hk, b);
                }
            }
        }
        return;
    }

    wg_setmaxnreg_inc<240>();
    const int      ct = tid - 128, warp = ct >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int      wrow   = warp * 16; /* rows of the CTA: warpgroup (warp / 4) owns 64 */
    const uint32_t q_addr = q_s + (uint32_t) (warp >> 2) * 64 * 128;
    const int *    mg     = blk.mg;
    const attn_cta_keys ck = blk.ck;

    float    o[HS / 2];
    float    row_m[2] = { -INFINITY, -INFINITY }, row_l[2] = { 0.f, 0.f };
    uint32_t pp[PSTEPS][4];
#pragma unroll
    for (int i = 0; i < HS / 2; i++) o[i] = 0.f;

    /* whether tile t has no padding: every one of its BN mask words (those past Tk count as padding), per warp */
    auto tile_valid = [&](int t) {
        if (!mg) return true;
        bool ok = true;
#pragma unroll
        for (int j = 0; j < BN / 32; j++) {
            const int c = t * BN + j * 32 + lane;
            ok = ok && c < a.Tk && __ldg(mg + c) != 0;
        }
        return __all_sync(0xffffffffu, ok) != 0;
    };
    auto softmax = [&](float (&s)[BN / 2], int t, float (&alpha)[2]) {
        attn_wg_mask_softmax<BN>(s, a, ck, m0 + wrow + g, t * BN, mg ? mg + t * BN : nullptr, mg != nullptr,
                                 tile_valid(t), tig, row_m, row_l, alpha);
    };

    mb_wait(q_full, 0); /* always: the CTA may not end with the Q load in flight */
    const int wgc = warp >> 2; /* consumer warpgroup 0 or 1 */
    if (PP && wgc == 1 && t_end - t_begin > 1) nbar_arrive(5, 256); /* warpgroup 0 takes the first turn */
    if (t_begin < t_end) {
        {
            float s[BN / 2], alpha[2];
            mb_wait(k_full, 0);
            wg_fence();
            attn_wg_issue_s<HS, BN, BM, BF16>(s, q_addr, k_s);
            wg_commit();
            wg_wait<0>();
            wg_fence_regs(s);
            mb_arrive(k_empty);
            softmax(s, t_begin, alpha);
            attn_wg_pack_p<BN, BF16>(s, pp);
        }
        for (int t = t_begin + 1; t < t_end; t++) {
            const int      i = t - t_begin, s = i & 1, sp = (i - 1) & 1;
            float          sc[BN / 2], alpha[2];
            mb_wait(k_full + 8 * s, (uint32_t) ((i >> 1) & 1));
            mb_wait(v_full + 8 * sp, (uint32_t) (((i - 1) >> 1) & 1)); /* loaded a tile earlier: both issues back to back */
            if (PP) nbar_sync(5 + wgc, 256); /* this warpgroup's turn */
            wg_fence();
            attn_wg_issue_s<HS, BN, BM, BF16>(sc, q_addr, k_s + s * C::KV_BYTES);
            wg_commit();
            attn_wg_issue_pv<HS, BN, BF16>(o, pp, v_s + sp * C::KV_BYTES);
            wg_commit();
            if (PP && (wgc == 0 || t + 1 < t_end)) nbar_arrive(6 - wgc, 256); /* the other's turn */
            wg_wait<1>(); /* S(t) done; P(t-1) V(t-1) may still run */
            wg_fence_regs(sc);
            mb_arrive(k_empty + 8 * s);
            softmax(sc, t, alpha); /* P(t) stays fp32 in sc: pp is still being read */
            wg_wait<0>();
            wg_fence_regs(o);
            wg_fence_regs(pp);
            mb_arrive(v_empty + 8 * sp);
            attn_wg_rescale<HS>(o, alpha);
            attn_wg_pack_p<BN, BF16>(sc, pp);
        }
        const int i = t_end - 1 - t_begin, s = i & 1;
        mb_wait(v_full + 8 * s, (uint32_t) ((i >> 1) & 1));
        attn_wg_pv_wait<HS, BN, BF16>(o, pp, v_s + s * C::KV_BYTES);
    }
    /* the epilogue stages each warp's rows in sQ: every warp of the warpgroup must be done with its products reading
       Q first (named barrier 1 or 2: the 128 threads of this consumer warpgroup) */
    nbar_sync(1 + (warp >> 2), 128);
    attn_wg_epilogue<HS, BM, BF16>(o, row_m, row_l, sQ, a, b, h, m0, wrow, lane);
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

static const char * const attn_variant_names[RK_ATTN_FWD_N_VARIANTS] = {
    "auto", "plain", "tc64x64", "tc128x64", "tc64x64lean", "tc128x128", "wgmma", "wgmma-alt", "wgmma-2wg", "wgmma-pipe",
    "wgmma-2wg-pipe", "wgmma-ws", "wgmma-ws-pp",
};

extern "C" const char * rk_cuda_attn_fwd_variant_name(int variant) {
    return variant >= 0 && variant < RK_ATTN_FWD_N_VARIANTS ? attn_variant_names[variant] : "?";
}

template <int ND, bool BF16> static void attn_launch_v1(const struct attn_args & a, int B, int NH, cudaStream_t stream) {
    const dim3 grid((unsigned) ((a.Tq + RK_ATTN_V1_WARPS - 1) / RK_ATTN_V1_WARPS), (unsigned) NH, (unsigned) B);
    attn_fwd_kernel_v1<ND, BF16><<<grid, RK_ATTN_V1_WARPS * 32, 0, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
}

template <bool BF16> static void attn_launch_v1_hs(const struct attn_args & a, int B, int NH, cudaStream_t stream) {
    switch ((a.hs + 31) / 32) {
        case 1: attn_launch_v1<1, BF16>(a, B, NH, stream); break;
        case 2: attn_launch_v1<2, BF16>(a, B, NH, stream); break;
        case 3: attn_launch_v1<3, BF16>(a, B, NH, stream); break;
        case 4: attn_launch_v1<4, BF16>(a, B, NH, stream); break;
        case 5: attn_launch_v1<5, BF16>(a, B, NH, stream); break;
        case 6: attn_launch_v1<6, BF16>(a, B, NH, stream); break;
        case 7: attn_launch_v1<7, BF16>(a, B, NH, stream); break;
        default: attn_launch_v1<8, BF16>(a, B, NH, stream); break;
    }
}

/* Launches one tensor-core instantiation; UNSUPPORTED when its shared memory exceeds the device's opt-in limit. */
template <int HS, int V, bool BF16, bool SM75>
static enum rk_status attn_launch_v2(const struct attn_args & a, int B, int NH, int smem_optin, cudaStream_t stream) {
    using C = attn_tc_cfg<HS, V, SM75>;
    if (C::SMEM > smem_optin) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: tile %dx%d needs %d bytes of shared memory, device allows %d",
                            C::BM, C::BN, C::SMEM, smem_optin);
    }
    if (C::SMEM > 48 * 1024) {
        /* cheap, and per device: set it on every launch rather than caching per device */
        RK_CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel_v2<HS, V, BF16, SM75>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
    }
    const dim3 grid((unsigned) ((a.Tq + C::BM - 1) / C::BM), (unsigned) NH, (unsigned) B);
    attn_fwd_kernel_v2<HS, V, BF16, SM75><<<grid, RK_ATTN_TC_THREADS, C::SMEM, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

/* variant 2..5 at head size HS for one dtype on the sm_80+ path */
template <int HS, bool BF16>
static enum rk_status attn_launch_tc(const struct attn_args & a, int variant, int B, int NH, int smem_optin,
                                     cudaStream_t stream) {
    switch (variant) {
        case 2: return attn_launch_v2<HS, 2, BF16, false>(a, B, NH, smem_optin, stream);
        case 3: return attn_launch_v2<HS, 3, BF16, false>(a, B, NH, smem_optin, stream);
        case 4:
            if constexpr (HS == 128) return attn_launch_v2<HS, 4, BF16, false>(a, B, NH, smem_optin, stream);
            break;
        case 5:
            if constexpr (HS <= 64) return attn_launch_v2<HS, 5, BF16, false>(a, B, NH, smem_optin, stream);
            break;
        default: break;
    }
    return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: variant %d does not take HS=%d", variant, HS);
}

/* Launches a wgmma variant (6, 7, 8; v9 and v10 below); UNSUPPORTED when its shared memory exceeds the device's opt-in limit. */
template <int HS, int V, bool BF16>
static enum rk_status attn_launch_wg(const struct attn_args & a, int B, int NH, int smem_optin, cudaStream_t stream) {
    using C = attn_wg_cfg<HS, V>;
    if (C::SMEM > smem_optin) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: tile %dx%d needs %d bytes of shared memory, device allows %d",
                            C::BM, C::BN, C::SMEM, smem_optin);
    }
    RK_CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel_wg<HS, V, BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       C::SMEM));
    const dim3 grid((unsigned) ((a.Tq + C::BM - 1) / C::BM), (unsigned) NH, (unsigned) B);
    attn_fwd_kernel_wg<HS, V, BF16><<<grid, C::THREADS, C::SMEM, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

/* Launches v9 or v10 (same contract as attn_launch_wg). */
template <int HS, int V, bool BF16>
static enum rk_status attn_launch_wgp(const struct attn_args & a, int B, int NH, int smem_optin, cudaStream_t stream) {
    using C = attn_wgp_cfg<HS, V>;
    if (C::SMEM > smem_optin) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: tile %dx%d needs %d bytes of shared memory, device allows %d",
                            C::BM, C::BN, C::SMEM, smem_optin);
    }
    RK_CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel_wgp<HS, V, BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       C::SMEM));
    const dim3 grid((unsigned) ((a.Tq + C::BM - 1) / C::BM), (unsigned) NH, (unsigned) B);
    attn_fwd_kernel_wgp<HS, V, BF16><<<grid, C::THREADS, C::SMEM, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}


/* A TMA map of a (B, heads, T, HS) tensor at base with byte strides sb, sh, st, as the 4-D tensor (HS, T, heads, B),
   boxes of 64 columns x rows (kernels/tma.cuh). */
static bool attn_tma_map(CUtensorMap * m, const char * base, bool bf16, int64_t HS, int64_t T, int64_t heads, int64_t B,
                         int64_t st, int64_t sh, int64_t sb, int rows) {
    const int64_t  dims[4] = { HS, T, heads, B }, strides[3] = { st, sh, sb };
    const uint32_t box[4]  = { 64, (uint32_t) rows, 1, 1 };
    return rk_tma_map_16bit(m, base, bf16, 4, dims, strides, box);
}

/* Launches v11 (PP: v12) (same contract as attn_launch_wg; also UNSUPPORTED when the TMA maps cannot be made). */
template <int HS, bool BF16, bool PP>
static enum rk_status attn_launch_ws(const struct attn_args & a, int B, int NH, int NKV, int smem_optin,
                                     cudaStream_t stream) {
    using C = attn_ws_cfg<HS>;
    if (C::SMEM > smem_optin) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: tile %dx%d needs %d bytes of shared memory, device allows %d",
                            C::BM, C::BN, C::SMEM, smem_optin);
    }
    struct attn_ws_args w;
    memset(&w, 0, sizeof(w));
    w.a = a;
    if (!attn_tma_map(&w.mq, a.q, BF16, HS, a.Tq, NH, B, a.q_st, a.q_sh, a.q_sb, C::BM) ||
        !attn_tma_map(&w.mk, a.k, BF16, HS, a.Tk, NKV, B, a.k_st, a.k_sh, a.k_sb, C::BN) ||
        !attn_tma_map(&w.mv, a.v, BF16, HS, a.Tk, NKV, B, a.v_st, a.v_sh, a.v_sb, C::BN)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: variant 11 could not make its TMA tensor maps "
                                                   "(cuTensorMapEncodeTiled unavailable or refused the strides)");
    }
    RK_CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel_ws<HS, BF16, PP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       C::SMEM));
    const dim3 grid((unsigned) ((a.Tq + C::BM - 1) / C::BM), (unsigned) NH, (unsigned) B);
    attn_fwd_kernel_ws<HS, BF16, PP><<<grid, 384, C::SMEM, stream>>>(w);
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

template <int HS>
static enum rk_status attn_launch_wg_hs(const struct attn_args & a, int variant, bool bf16, int B, int NH, int NKV,
                                        int smem_optin, cudaStream_t stream) {
    switch (variant) {
        case 11:
            return bf16 ? attn_launch_ws<HS, true, false>(a, B, NH, NKV, smem_optin, stream)
                        : attn_launch_ws<HS, false, false>(a, B, NH, NKV, smem_optin, stream);
        case 12:
            return bf16 ? attn_launch_ws<HS, true, true>(a, B, NH, NKV, smem_optin, stream)
                        : attn_launch_ws<HS, false, true>(a, B, NH, NKV, smem_optin, stream);
        case 6:
            return bf16 ? attn_launch_wg<HS, 6, true>(a, B, NH, smem_optin, stream)
                        : attn_launch_wg<HS, 6, false>(a, B, NH, smem_optin, stream);
        case 7:
            return bf16 ? attn_launch_wg<HS, 7, true>(a, B, NH, smem_optin, stream)
                        : attn_launch_wg<HS, 7, false>(a, B, NH, smem_optin, stream);
        case 8:
            return bf16 ? attn_launch_wg<HS, 8, true>(a, B, NH, smem_optin, stream)
                        : attn_launch_wg<HS, 8, false>(a, B, NH, smem_optin, stream);
        case 9:
            return bf16 ? attn_launch_wgp<HS, 9, true>(a, B, NH, smem_optin, stream)
                        : attn_launch_wgp<HS, 9, false>(a, B, NH, smem_optin, stream);
        default:
            return bf16 ? attn_launch_wgp<HS, 10, true>(a, B, NH, smem_optin, stream)
                        : attn_launch_wgp<HS, 10, false>(a, B, NH, smem_optin, stream);
    }
}

/*
 * RK_ATTN_FWD_VARIANT=N (read once): the automatic choice takes variant N whenever N takes the call, so a whole
 * model can be timed with one kernel (bench_bert, the device check). Unset, empty or 0: the built-in choice.
 */
static int attn_env_variant(void) {
    static int cached = -1;
    if (cached < 0) cached = rk_env_variant("RK_ATTN_FWD_VARIANT", RK_ATTN_FWD_N_VARIANTS);
    return cached;
}

/* The variant the automatic choice takes for a tensor-core-eligible call (docs/ATTN.md, "Tile choice"; measured on
 * an H200, docs/PERF.md): on sm_90 (wg: the wgmma kernels take the call) the one-warpgroup wgmma kernel for HS 64
 * (BERT shapes: 1.15x the flash back-end, v11 0.94-1.01x) and the warp-specialized TMA kernel for HS 128 (Llama-7B
 * causal: 1.65x, v6 1.02x); else the mma.sync kernels. */
static int attn_auto_variant(int hs, bool wg) {
    if (wg) return hs == 64 ? 6 : 11;
    return hs == 32 ? 5 : (hs == 64 ? 3 : 4);
}

extern "C" enum rk_status rk_cuda_attn_fwd_variant(struct rk_tensor * dst, const struct rk_tensor * q,
                                                   const struct rk_tensor * k, const struct rk_tensor * v,
                                                   const struct rk_tensor * mask, struct rk_tensor * lse,
                                                   const struct rk_attn_params * p, bool force_sm75, int variant,
                                                   cudaStream_t stream) {
    /* q (B, NH, Tq, HS); k, v (B, NKV, Tk, HS); dst (B, NH, Tq, HS); mask (B, Tk) i32; lse (B, NH, Tq) f32 */
    if (!dst || !q || !k || !v || !p || !dst->data || !q->data || !k->data || !v->data || (mask && !mask->data) ||
        (lse && !lse->data)) {
        return rk_set_error(RK_STATUS_ARG, "attn_fwd: NULL tensor or data pointer");
    }
    if (variant < 0 || variant >= RK_ATTN_FWD_N_VARIANTS) {
        return rk_set_error(RK_STATUS_ARG, "attn_fwd: no variant %d", variant);
    }
    const enum rk_dtype dt = q->dtype;
    if ((dt != RK_DTYPE_BF16 && dt != RK_DTYPE_F16) || k->dtype != dt || v->dtype != dt || dst->dtype != dt) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: CUDA takes q, k, v, dst all bf16 or all f16 (q is %s)",
                            rk_dtype_traits[dt].name);
    }
    const int64_t B = q->ne[0], NH = q->ne[1], Tq = q->ne[2], HS = q->ne[3];
    const int64_t NKV = k->ne[1], Tk = k->ne[2];
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || dst->ndim != 4 || !attn_shape_is(k, B, NKV, Tk, HS) ||
        !attn_shape_is(v, B, NKV, Tk, HS) || !attn_shape_is(dst, B, NH, Tq, HS) || NKV <= 0 || NH % NKV != 0) {
        return rk_set_error(RK_STATUS_ARG, "attn_fwd: shapes do not match q (B,NH,Tq,HS), k/v (B,NKV,Tk,HS), dst "
                                           "(B,NH,Tq,HS) with NH %% NKV == 0");
    }
    if (mask && (mask->dtype != RK_DTYPE_I32 || mask->ndim != 2 || mask->ne[0] != B || mask->ne[1] != Tk)) {
        return rk_set_error(RK_STATUS_ARG, "attn_fwd: mask must be (B, Tk) i32");
    }
    if (lse && (lse->dtype != RK_DTYPE_F32 || lse->ndim != 3 || lse->ne[0] != B || lse->ne[1] != NH ||
                lse->ne[2] != Tq)) {
        return rk_set_error(RK_STATUS_ARG, "attn_fwd: lse must be (B, NH, Tq) f32");
    }
    const bool inner_ok = HS == 1 || (q->nb[3] == 2 && k->nb[3] == 2 && v->nb[3] == 2 && dst->nb[3] == 2);
    if (!inner_ok || (mask && Tk > 1 && mask->nb[1] != 4) ||
        (lse && (lse->nb[2] % 4 != 0 || lse->nb[1] % 4 != 0 || lse->nb[0] % 4 != 0)) ||
        (mask && mask->nb[0] % 4 != 0)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: the innermost stride must be the element size");
    }
    if (HS <= 0 || HS > RK_ATTN_V1_MAX_HS || B > 65535 || NH > 65535 || Tq >= (1 << 30) || Tk >= (1 << 30)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: HS=%lld (max %d), B=%lld, NH=%lld, Tq=%lld, Tk=%lld out "
                                                   "of range", (long long) HS, RK_ATTN_V1_MAX_HS, (long long) B,
                            (long long) NH, (long long) Tq, (long long) Tk);
    }
    if (B == 0 || NH == 0 || Tq == 0) return RK_OK;

    int cc = 0, smem_optin = 0;
    attn_device_caps(&cc, &smem_optin);
    if (cc < 75) return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: needs sm_75 or newer (device is sm_%d)", cc);
    const bool sm75 = force_sm75 || cc < 80;
    const bool bf16 = dt == RK_DTYPE_BF16;

    struct attn_args a;
    memset(&a, 0, sizeof(a));
    a.q    = (const char *) q->data;
    a.k    = (const char *) k->data;
    a.v    = (const char *) v->data;
    a.o    = (char *) dst->data;
    a.mask = mask ? (const char *) mask->data : NULL;
    a.lse  = lse ? (char *) lse->data : NULL;
    a.q_sb = q->nb[0];   a.q_sh = q->nb[1];   a.q_st = q->nb[2];
    a.k_sb = k->nb[0];   a.k_sh = k->nb[1];   a.k_st = k->nb[2];
    a.v_sb = v->nb[0];   a.v_sh = v->nb[1];   a.v_st = v->nb[2];
    a.o_sb = dst->nb[0]; a.o_sh = dst->nb[1]; a.o_st = dst->nb[2];
    a.m_sb = mask ? mask->nb[0] : 0;
    if (lse) {
        a.l_sb = lse->nb[0]; a.l_sh = lse->nb[1]; a.l_st = lse->nb[2];
    }
    a.q_offset   = p->q_offset;
    a.window     = p->window > 0 ? p->window : 0;
    a.Tq         = (int) Tq;
    a.Tk         = (int) Tk;
    a.group      = (int) (NH / NKV);
    a.hs         = (int) HS;
    a.causal     = p->causal ? 1 : 0;
    a.scale      = p->scale;
    a.scale_log2 = p->scale * 1.4426950408889634f;

    /* the tensor-core kernels fold the scale into exp2 after taking the max of the raw scores: scale > 0 */
    const bool tc_ok = (HS == 32 || HS == 64 || HS == 128) && attn_aligned16(q) && attn_aligned16(k) &&
                       attn_aligned16(v) && attn_aligned16(dst) && p->scale > 0.f && isfinite(p->scale) &&
                       !(sm75 && bf16);
    /* wgmma (v6 to v12): sm_90 (the build has sm_90a code for it), HS 64 or 128 */
    const bool wg_ok = tc_ok && !sm75 && cc == 90 && (HS == 64 || HS == 128);
    bool picked = false; /* the automatic choice: a wgmma kernel that refuses the call falls back */
    if (variant == 0) {
        /* RK_ATTN_FWD_VARIANT when it names a variant that takes this call (unset: 0, the table below) */
        const int ev = attn_env_variant();
        const bool ev_ok = ev == 1 || (ev >= 6 ? wg_ok : (ev >= 2 && tc_ok && (sm75 ? ev == 2 : (ev != 4 || HS == 128) &&
                                                                                                   (ev != 5 || HS <= 64))));
        variant = ev_ok ? ev : (tc_ok ? (sm75 ? 2 : attn_auto_variant((int) HS, wg_ok)) : 1);
        picked  = !ev_ok;
    }
    if (variant == 1) {
        if (bf16) {
            attn_launch_v1_hs<true>(a, (int) B, (int) NH, stream);
        } else {
            attn_launch_v1_hs<false>(a, (int) B, (int) NH, stream);
        }
        return RK_OK;
    }
    if (!tc_ok) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: variant %d needs HS in {32, 64, 128}, 16-byte aligned "
                                                   "rows, scale > 0%s (HS=%lld)", variant,
                            sm75 && bf16 ? " and f16 on the sm_75 path" : "", (long long) HS);
    }
    if (variant >= 6) {
        if (!wg_ok) {
            return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: variant %d (wgmma) needs an sm_90 device without "
                                                       "the sm_75 path and HS 64 or 128 (device sm_%d, HS=%lld)",
                                variant, cc, (long long) HS);
        }
        const auto launch = [&](int v) {
            return HS == 64 ? attn_launch_wg_hs<64>(a, v, bf16, (int) B, (int) NH, (int) NKV, smem_optin, stream)
                            : attn_launch_wg_hs<128>(a, v, bf16, (int) B, (int) NH, (int) NKV, smem_optin, stream);
        };
        enum rk_status st = launch(variant);
        if (st == RK_STATUS_UNSUPPORTED && picked && variant == 11) {
            /* no TMA maps for these strides (or no driver entry point): the wgmma kernel without TMA */
            rk_clear_error();
            variant = 6;
            st      = launch(variant);
        }
        if (st != RK_STATUS_UNSUPPORTED || !picked) return st;
        rk_clear_error(); /* not enough shared memory for the wgmma tiles: the mma.sync kernels */
        variant = attn_auto_variant((int) HS, false);
    }
    if (sm75) {
        if (variant != 2) {
            return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_fwd: the sm_75 path has variant 2 only");
        }
        switch (HS) {
            case 32: return attn_launch_v2<32, 2, false, true>(a, (int) B, (int) NH, smem_optin, stream);
            case 64: return attn_launch_v2<64, 2, false, true>(a, (int) B, (int) NH, smem_optin, stream);
            default: return attn_launch_v2<128, 2, false, true>(a, (int) B, (int) NH, smem_optin, stream);
        }
    }
    switch (HS) {
        case 32:
            return bf16 ? attn_launch_tc<32, true>(a, variant, (int) B, (int) NH, smem_optin, stream)
                        : attn_launch_tc<32, false>(a, variant, (int) B, (int) NH, smem_optin, stream);
        case 64:
            return bf16 ? attn_launch_tc<64, true>(a, variant, (int) B, (int) NH, smem_optin, stream)
                        : attn_launch_tc<64, false>(a, variant, (int) B, (int) NH, smem_optin, stream);
        default:
            return bf16 ? attn_launch_tc<128, true>(a, variant, (int) B, (int) NH, smem_optin, stream)
                        : attn_launch_tc<128, false>(a, variant, (int) B, (int) NH, smem_optin, stream);
    }
}

extern "C" enum rk_status rk_cuda_attn_fwd(struct rk_tensor * dst, const struct rk_tensor * q,
                                           const struct rk_tensor * k, const struct rk_tensor * v,
                                           const struct rk_tensor * mask, struct rk_tensor * lse,
                                           const struct rk_attn_params * p, bool force_sm75, cudaStream_t stream) {
    return rk_cuda_attn_fwd_variant(dst, q, k, v, mask, lse, p, force_sm75, 0, stream);
}
