/*
 * attn_bwd.cu: attention backward (RK_OP_ATTN_BWD) on CUDA, FlashAttention-2 style (Dao 2023, Algorithm 2): P is
 * recomputed from the forward's logsumexp, so no (Tq, Tk) matrix is ever stored. Same views, masks (key padding,
 * causal with a query offset, sliding window), grouped-query heads and lse semantics as the CPU reference
 * rk_cpu_attn_bwd (kernels/attn_bwd_cpu.c). Design notes: docs/ATTN.md, "Attention backward on CUDA".
 *
 * Every variant runs three steps, all deterministic (no atomics):
 *   pre  attn_bwd_pre_kernel: per query row, D = rowsum(dout * o) and L2 = lse * log2(e) (+inf for a row with no
 *        key, so that its P is 0) in fp32 scratch.
 *   dq   one CTA (or warp) per block of query rows, looping over the keys the rows may attend:
 *        S = q k^T, P = exp2(S scale log2e - L2), dP = dout v^T, dS = P (dP - D), dq = scale dS k.
 *   dkv  one CTA (or warp) per block of key rows, looping over the query heads of its kv head's group and the query
 *        rows that may attend the keys: dv = sum P^T dout, dk = scale sum dS^T q. The group is summed inside the
 *        CTA, in order, so dk/dv of grouped-query heads need no atomics either.
 * dq and dkv both recompute S and dP (7 matrix products instead of the 5 of a dq accumulated with atomicAdd): the
 * price of determinism and of writing dq directly in its dtype (no fp32 accumulator, no conversion pass).
 *
 * Kernel variants (rk_cuda_attn_bwd_variant; `build/bench/bench_attn_bwd --variant N` times one):
 *   v1  attn_bwd_{dq,dkv}_kernel_plain<ND, BF16>: plain kernels, one warp per query row (dq) or key row (dk, dv),
 *       a lane per key (query) for the scores, lanes over head dims for the sums; fp32 math, scalar 2-byte loads.
 *       Any HS <= 256, any 2-byte alignment, any scale. The fallback and a second reference.
 *   v2  attn_bwd_{dq,dkv}_kernel_tc<HS, BF16, SM75>: tensor cores. 4 warps, each owning 16 stationary rows (dq:
 *       q and dout rows; dkv: k and v rows) whose fragments stay in registers at HS <= 64 and are re-read from
 *       shared memory at HS = 128 (attn_bwd_cfg); the streamed operand (dq: k, v; dkv: q, dout, with their D and L2) goes through
 *       XOR-swizzled shared memory with cp.async, two stages; ldmatrix fragments; mma.sync m16n8k16 bf16/f16 with
 *       fp32 accumulators. The accumulator layout of S and dP is the A-operand layout of the next product, so P
 *       and dS go from registers to the tensor cores as packed 16-bit pairs. HS in {32, 64, 128}.
 * The sm_75 path (a real sm_75 card, or force_sm75) runs v2 with fp16 mma.sync m16n8k8, one stage and synchronous
 * tile loads (32-row streamed tiles at HS = 128, to stay under 64 KB of shared memory); bf16 there goes to v1.
 *
 * bench: make bench && build/bench/bench_attn_bwd [--variant N]
 */
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "attn_cuda.h"
#include "attn_tc.cuh"
#include "cuda_check.h"

/* Everything a kernel needs, by value. Strides are in bytes; pointers are already offset to element 0. */
struct attn_bwd_args {
    const char * q;
    const char * k;
    const char * v;
    const char * o;
    const char * dout;
    char *       dq;
    char *       dk;
    char *       dv;
    const char * mask;                  /* (B, Tk) i32 or NULL; element stride 4 */
    const char * lse;                   /* (B, NH, Tq) f32 */
    float *      D;                     /* scratch (B, NH, Tq) contiguous: rowsum(dout * o) */
    float *      L2;                    /* scratch (B, NH, Tq) contiguous: lse * log2(e), +inf where lse = -inf */
    int64_t      q_sb, q_sh, q_st;      /* batch, head, time strides */
    int64_t      k_sb, k_sh, k_st;
    int64_t      v_sb, v_sh, v_st;
    int64_t      o_sb, o_sh, o_st;
    int64_t      g_sb, g_sh, g_st;      /* dout */
    int64_t      dq_sb, dq_sh, dq_st;
    int64_t      dk_sb, dk_sh, dk_st;
    int64_t      dv_sb, dv_sh, dv_st;
    int64_t      m_sb;                  /* mask batch stride */
    int64_t      l_sb, l_sh, l_st;
    int64_t      q_offset;              /* absolute position of query row 0 */
    int64_t      window;                /* 0 = none; else keys j > q_offset + i - window */
    int          Tq, Tk;
    int          NH;
    int          group;                 /* NH / NKV: head h reads kv head h / group */
    int          hs;                    /* head size (v1 and pre; v2 has it as a template parameter) */
    int          causal;
    float        scale;                 /* softmax scale */
    float        scale_log2;            /* scale * log2(e) */
};

/* Index of query row (b, h, i) in the D and L2 scratch arrays. */
static __device__ __forceinline__ int64_t attn_bwd_row(const struct attn_bwd_args & a, int b, int h, int i) {
    return ((int64_t) b * a.NH + h) * a.Tq + i;
}

/*
 * Query rows [lo, hi] that may attend key j (before the padding mask), clamped to [0, Tq): the inverse of
 * attn_row_range. Causal: i >= j - q_offset; window: i <= j - q_offset + window - 1. Empty: lo > hi.
 */
static __device__ __forceinline__ void attn_bwd_key_range(const struct attn_bwd_args & a, int j, int & lo, int & hi) {
    const int64_t rel = (int64_t) j - a.q_offset;
    int64_t       l64 = a.causal ? rel : 0;
    int64_t       h64 = a.window > 0 ? rel + a.window - 1 : (int64_t) a.Tq - 1;
    if (l64 < 0) l64 = 0;
    if (l64 > a.Tq) l64 = a.Tq;
    if (h64 > (int64_t) a.Tq - 1) h64 = (int64_t) a.Tq - 1;
    if (h64 < -1) h64 = -1;
    lo = (int) l64;
    hi = (int) h64;
}

// ------------------------------------------------------------------------------------------------
// CUDA kernels

#define RK_ATTN_BWD_WARPS  4   /* rows per CTA of the pre and plain kernels (a warp each) */
#define RK_ATTN_BWD_MAX_HS 256

/* ---- pre: D and L2 per query row -------------------------------------------------------------- */

/*
 * One warp per query row: D = sum_d dout[d] o[d] in fp32 (lanes over d, then a butterfly), L2 = lse * log2(e), or
 * +inf where lse = -inf (the forward found no key: exp2(s - L2) is then 0 for every key, and dq = 0).
 * grid (ceil(Tq / 4), NH, B), block 128.
 */
template <bool BF16>
static __global__ void __launch_bounds__(RK_ATTN_BWD_WARPS * 32) attn_bwd_pre_kernel(const struct attn_bwd_args a) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i    = blockIdx.x * RK_ATTN_BWD_WARPS + warp;
    const int h    = blockIdx.y, b = blockIdx.z;
    if (i >= a.Tq) return;
    const char * orow = a.o + (int64_t) b * a.o_sb + (int64_t) h * a.o_sh + (int64_t) i * a.o_st;
    const char * grow = a.dout + (int64_t) b * a.g_sb + (int64_t) h * a.g_sh + (int64_t) i * a.g_st;
    float        s    = 0.f;
    for (int d = lane; d < a.hs; d += 32) s = fmaf(attn_load<BF16>(grow + 2 * (int64_t) d), attn_load<BF16>(orow + 2 * (int64_t) d), s);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        const float l = *reinterpret_cast<const float *>(a.lse + (int64_t) b * a.l_sb + (int64_t) h * a.l_sh +
                                                         (int64_t) i * a.l_st);
        const int64_t r = attn_bwd_row(a, b, h, i);
        a.D[r]          = s;
        a.L2[r]         = l == -INFINITY ? INFINITY : l * 1.4426950408889634f;
    }
}

/* ---- v1: plain kernels ------------------------------------------------------------------------ */

/*
 * dq, one warp per query row i of head h. q and dout rows are staged in shared memory as f32; lane l scores key
 * j0 + l (S and dP by scalar dot products, then dS), and the warp adds dS_j k_j over those 32 keys with lanes over
 * the head dims d = lane + 32 c (ND = ceil(HS / 32) per lane; k rows read coalesced).
 * grid (ceil(Tq / 4), NH, B), block 128.
 */
template <int ND, bool BF16>
static __global__ void __launch_bounds__(RK_ATTN_BWD_WARPS * 32) attn_bwd_dq_kernel_plain(const struct attn_bwd_args a) {
    __shared__ float q_s[RK_ATTN_BWD_WARPS][ND * 32];
    __shared__ float g_s[RK_ATTN_BWD_WARPS][ND * 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i    = blockIdx.x * RK_ATTN_BWD_WARPS + warp;
    const int h    = blockIdx.y, b = blockIdx.z, hk = h / a.group;
    if (i >= a.Tq) return; /* whole warp leaves together: no block-wide barrier below */
    const int    hs   = a.hs;
    const char * qrow = a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh + (int64_t) i * a.q_st;
    const char * grow = a.dout + (int64_t) b * a.g_sb + (int64_t) h * a.g_sh + (int64_t) i * a.g_st;
    const char * kg   = a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh;
    const char * vg   = a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh;
    const int *  mg   = a.mask ? reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb) : nullptr;
    for (int d = lane; d < ND * 32; d += 32) {
        q_s[warp][d] = d < hs ? attn_load<BF16>(qrow + 2 * (int64_t) d) : 0.f;
        g_s[warp][d] = d < hs ? attn_load<BF16>(grow + 2 * (int64_t) d) : 0.f;
    }
    __syncwarp();
    const int64_t r  = attn_bwd_row(a, b, h, i);
    const float   l2 = a.L2[r], D = a.D[r];
    int           lo, hi;
    attn_row_range(a, i, lo, hi);
    float dq[ND];
#pragma unroll
    for (int c = 0; c < ND; c++) dq[c] = 0.f;

    for (int j0 = lo; j0 <= hi && l2 != INFINITY; j0 += 32) { /* a row with no key keeps dq = 0 */
        const int j  = j0 + lane;
        float     ds = 0.f;
        if (j <= hi && (!mg || mg[j] != 0)) {
            const char * kr = kg + (int64_t) j * a.k_st;
            const char * vr = vg + (int64_t) j * a.v_st;
            float        s = 0.f, dp = 0.f;
            for (int d = 0; d < hs; d++) {
                s  = fmaf(q_s[warp][d], attn_load<BF16>(kr + 2 * (int64_t) d), s);
                dp = fmaf(g_s[warp][d], attn_load<BF16>(vr + 2 * (int64_t) d), dp);
            }
            ds = exp2f(fmaf(s, a.scale_log2, -l2)) * (dp - D);
        }
        const int nj = min(32, hi - j0 + 1);
        for (int jj = 0; jj < nj; jj++) {
            const float dsj = __shfl_sync(0xffffffffu, ds, jj);
            if (dsj == 0.f) continue; /* warp-uniform: a masked key adds nothing */
            const char * kr = kg + (int64_t) (j0 + jj) * a.k_st;
#pragma unroll
            for (int c = 0; c < ND; c++) {
                const int d = lane + 32 * c;
                if (d < hs) dq[c] = fmaf(dsj, attn_load<BF16>(kr + 2 * (int64_t) d), dq[c]);
            }
        }
    }
    char * out = a.dq + (int64_t) b * a.dq_sb + (int64_t) h * a.dq_sh + (int64_t) i * a.dq_st;
#pragma unroll
    for (int c = 0; c < ND; c++) {
        const int d = lane + 32 * c;
        if (d < hs) attn_store<BF16>(out + 2 * (int64_t) d, dq[c] * a.scale);
    }
}

/*
 * dk and dv, one warp per key row j of kv head hk. k and v rows are staged in shared memory as f32; for each query
 * head of the group in order and each block of 32 query rows that may attend j, lane l scores query i0 + l (P and
 * dS), and the warp adds dS_i q_i to dk and P_i dout_i to dv with lanes over the head dims.
 * grid (ceil(Tk / 4), NKV, B), block 128.
 */
template <int ND, bool BF16>
static __global__ void __launch_bounds__(RK_ATTN_BWD_WARPS * 32) attn_bwd_dkv_kernel_plain(const struct attn_bwd_args a) {
    __shared__ float k_s[RK_ATTN_BWD_WARPS][ND * 32];
    __shared__ float v_s[RK_ATTN_BWD_WARPS][ND * 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j    = blockIdx.x * RK_ATTN_BWD_WARPS + warp;
    const int hk   = blockIdx.y, b = blockIdx.z;
    if (j >= a.Tk) return; /* whole warp leaves together */
    const int    hs   = a.hs;
    const char * krow = a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh + (int64_t) j * a.k_st;
    const char * vrow = a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh + (int64_t) j * a.v_st;
    for (int d = lane; d < ND * 32; d += 32) {
        k_s[warp][d] = d < hs ? attn_load<BF16>(krow + 2 * (int64_t) d) : 0.f;
        v_s[warp][d] = d < hs ? attn_load<BF16>(vrow + 2 * (int64_t) d) : 0.f;
    }
    __syncwarp();
    const bool key_ok = !a.mask || reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb)[j] != 0;
    int        lo, hi;
    attn_bwd_key_range(a, j, lo, hi);
    if (!key_ok) hi = lo - 1; /* a padded key gets dk = dv = 0 */
    float dk[ND], dv[ND];
#pragma unroll
    for (int c = 0; c < ND; c++) dk[c] = dv[c] = 0.f;

    for (int h = hk * a.group; h < (hk + 1) * a.group; h++) {
        const char * qg = a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh;
        const char * gg = a.dout + (int64_t) b * a.g_sb + (int64_t) h * a.g_sh;
        for (int i0 = lo; i0 <= hi; i0 += 32) {
            const int i = i0 + lane;
            float     p = 0.f, ds = 0.f;
            if (i <= hi) {
                const char * qr = qg + (int64_t) i * a.q_st;
                const char * gr = gg + (int64_t) i * a.g_st;
                float        s = 0.f, dp = 0.f;
                for (int d = 0; d < hs; d++) {
                    s  = fmaf(k_s[warp][d], attn_load<BF16>(qr + 2 * (int64_t) d), s);
                    dp = fmaf(v_s[warp][d], attn_load<BF16>(gr + 2 * (int64_t) d), dp);
                }
                const int64_t r = attn_bwd_row(a, b, h, i);
                p               = exp2f(fmaf(s, a.scale_log2, -a.L2[r])); /* 0 for a row with no key */
                ds              = p * (dp - a.D[r]);
            }
            const int ni = min(32, hi - i0 + 1);
            for (int ii = 0; ii < ni; ii++) {
                const float pi = __shfl_sync(0xffffffffu, p, ii);
                const float dsi = __shfl_sync(0xffffffffu, ds, ii);
                if (pi == 0.f && dsi == 0.f) continue; /* warp-uniform */
                const char * qr = qg + (int64_t) (i0 + ii) * a.q_st;
                const char * gr = gg + (int64_t) (i0 + ii) * a.g_st;
#pragma unroll
                for (int c = 0; c < ND; c++) {
                    const int d = lane + 32 * c;
                    if (d < hs) {
                        dk[c] = fmaf(dsi, attn_load<BF16>(qr + 2 * (int64_t) d), dk[c]);
                        dv[c] = fmaf(pi, attn_load<BF16>(gr + 2 * (int64_t) d), dv[c]);
                    }
                }
            }
        }
    }
    char * dko = a.dk + (int64_t) b * a.dk_sb + (int64_t) hk * a.dk_sh + (int64_t) j * a.dk_st;
    char * dvo = a.dv + (int64_t) b * a.dv_sb + (int64_t) hk * a.dv_sh + (int64_t) j * a.dv_st;
#pragma unroll
    for (int c = 0; c < ND; c++) {
        const int d = lane + 32 * c;
        if (d < hs) {
            attn_store<BF16>(dko + 2 * (int64_t) d, dk[c] * a.scale);
            attn_store<BF16>(dvo + 2 * (int64_t) d, dv[c]);
        }
    }
}

/* ---- v2: tensor-core kernels ------------------------------------------------------------------ */

/*
 * Tile configuration at head size HS. Each CTA has 4 warps; each warp owns 16 stationary rows (BS = 64 per CTA)
 * and multiplies them with tiles of BT streamed rows. Stationary fragments are held in registers when the
 * accumulators, those fragments and S, dP fit in about 176 registers (HS <= 64), else re-read from shared memory.
 */
template <int HS, bool SM75> struct attn_bwd_cfg {
    static_assert(HS == 32 || HS == 64 || HS == 128, "HS");
    static constexpr int  CPR    = HS / 8;                  /* 16-byte chunks per row */
    static constexpr int  ROWB   = CPR * 16;                /* bytes per tile row */
    static constexpr int  KSTEPS = HS / 16;                 /* k-steps of S = A B^T over the head dims */
    static constexpr int  DTILES = HS / 8;                  /* 8-column tiles of an accumulator row block */
    static constexpr int  BS     = 16 * RK_ATTN_TC_WARPS;   /* stationary rows per CTA */
    static constexpr int  BT     = SM75 && HS == 128 ? 32 : 64; /* streamed rows per tile */
    static constexpr int  NT     = BT / 8;                  /* 8-column tiles of S and dP */
    static constexpr int  STAGES = SM75 ? 1 : 2;
    static constexpr bool DQ_IN_REGS  = DTILES * 4 + 2 * KSTEPS * 4 + 2 * NT * 4 <= 176;
    static constexpr bool DKV_IN_REGS = 2 * DTILES * 4 + 2 * KSTEPS * 4 + 2 * NT * 4 <= 176;
    /* dq: sQ, sdO (BS rows each), per stage sK, sV (BT rows each) and the key mask (BT i32) */
    static constexpr int  SMEM_DQ  = 2 * BS * ROWB + STAGES * (2 * BT * ROWB + BT * 4);
    /* dkv: sK, sV (BS rows each), per stage sQ, sdO (BT rows each), L2 and D (BT f32 each) */
    static constexpr int  SMEM_DKV = 2 * BS * ROWB + STAGES * (2 * BT * ROWB + 2 * BT * 4);
    static_assert(BT % 16 == 0 && 2 * BT <= RK_ATTN_TC_THREADS && BS <= RK_ATTN_TC_THREADS, "tiles");
    static_assert((BT * CPR) % RK_ATTN_TC_THREADS == 0 && (BS * CPR) % RK_ATTN_TC_THREADS == 0, "tile loads");
};

/*
 * The A fragments of a warp's 16 stationary rows over the head dims (k-step kk covers dims 16 kk .. 16 kk + 15),
 * held in registers (IN_REGS) or re-read from the swizzled shared tile with ldmatrix at each use.
 */
template <int CPR, int KSTEPS, bool IN_REGS> struct attn_bwd_rows {
    uint32_t f[IN_REGS ? KSTEPS : 1][4];
    uint32_t base; /* ldmatrix address of this thread's row of the 16 (attn_ldsm_offs adds the chunk) */

    /* Shared memory must hold the rows (and a barrier have passed) when IN_REGS. */
    __device__ __forceinline__ void init(uint32_t base_, const attn_ldsm_offs<CPR> & sw) {
        base = base_;
        if constexpr (IN_REGS) {
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) attn_ldsm_x4(f[kk], base + sw.off(kk * 2));
        }
    }
    __device__ __forceinline__ void get(uint32_t (&x)[4], int kk, const attn_ldsm_offs<CPR> & sw) const {
        if constexpr (IN_REGS) {
#pragma unroll
            for (int e = 0; e < 4; e++) x[e] = f[kk][e];
        } else {
            attn_ldsm_x4(x, base + sw.off(kk * 2));
        }
    }
};

/*
 * c (16 x 8 NT) = A B^T: A the warp's 16 stationary rows, B a streamed tile of 8 NT rows at shared address b_base
 * (both over the head dims; B read without transposition, as K in the forward's S = Q K^T).
 */
template <int CPR, int KSTEPS, bool IN_REGS, int NT, bool BF16, bool SM75>
static __device__ __forceinline__ void attn_bwd_mm_abt(float (&c)[NT][4], const attn_bwd_rows<CPR, KSTEPS, IN_REGS> & a,
                                                       uint32_t b_base, const attn_ldsm_offs<CPR> & sw) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) c[j][e] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < KSTEPS; kk++) {
        uint32_t x[4];
        a.get(x, kk, sw);
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t bf[4]; /* b0 of column tiles 2np, 2np+1; b1 of column tiles 2np, 2np+1 */
            attn_ldsm_x4(bf, b_base + np * 16 * (CPR * 16) + sw.off(kk * 2));
            attn_mma<BF16, SM75>(c[2 * np], x, bf[0], bf[2]);
            attn_mma<BF16, SM75>(c[2 * np + 1], x, bf[1], bf[3]);
        }
    }
}

/*
 * acc (16 x HS) += P B: P the packed A fragments of a 16 x 16 KT block (k over the streamed rows), B the streamed
 * tile at b_base read transposed (as V in the forward's O += P V).
 */
template <int CPR, int KT, bool BF16, bool SM75>
static __device__ __forceinline__ void attn_bwd_mm_pb(float (&acc)[CPR][4], const uint32_t (&pa)[KT][4], uint32_t b_base,
                                                      const attn_ldsm_offs<CPR> & sw) {
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
#pragma unroll
        for (int dp = 0; dp < CPR / 2; dp++) {
            uint32_t bf[4]; /* b0, b1 of dim tile 2dp; b0, b1 of dim tile 2dp+1 */
            attn_ldsm_x4_trans(bf, b_base + kk * 16 * (CPR * 16) + sw.off(dp * 2));
            attn_mma<BF16, SM75>(acc[2 * dp], pa[kk], bf[0], bf[1]);
            attn_mma<BF16, SM75>(acc[2 * dp + 1], pa[kk], bf[2], bf[3]);
        }
    }
}

/*
 * Writes a warp's 16 x HS fp32 accumulator block (times mul) as 16-bit rows: staged in rows [wrow, wrow + 16) of
 * the swizzled tile `stage` (rows only this warp reads), then 16-byte stores of the rows row0 + r < n_valid to
 * the strided destination.
 */
template <int CPR, bool BF16>
static __device__ __forceinline__ void attn_bwd_store_rows(const float (&acc)[CPR][4], float mul, unsigned char * stage,
                                                           int wrow, char * dst, int64_t stride, int row0, int n_valid,
                                                           int lane) {
    const int g = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int d = 0; d < CPR; d++) {
        *reinterpret_cast<uint32_t *>(stage + attn_swz<CPR>(wrow + g, d) + tig * 4) =
            attn_pack2<BF16>(acc[d][0] * mul, acc[d][1] * mul);
        *reinterpret_cast<uint32_t *>(stage + attn_swz<CPR>(wrow + g + 8, d) + tig * 4) =
            attn_pack2<BF16>(acc[d][2] * mul, acc[d][3] * mul);
    }
    __syncwarp();
#pragma unroll
    for (int it = 0; it < 16 * CPR / 32; it++) {
        const int id = lane + it * 32, r = wrow + id / CPR, c = id % CPR;
        if (row0 + r < n_valid) {
            *reinterpret_cast<uint4 *>(dst + (int64_t) (row0 + r) * stride + c * 16) =
                *reinterpret_cast<const uint4 *>(stage + attn_swz<CPR>(r, c));
        }
    }
}

/*
 * The skeleton both tensor-core kernels share. Shared memory starts with the two stationary tiles (BS rows of ga
 * and gb from row0, at 0 and BS * ROWB; cp.async group 0), then the streamed stages. n_iter iterations: with two
 * stages (sm_80+), wait for iteration it; barrier (every thread sees it, and all are done with it-1, whose stage is
 * refilled next); start it+1 with load(it + 1, st ^ 1); compute: one barrier per iteration, a whole iteration of
 * compute to hide each load. With one stage (the sm_75 path, synchronous loads): barrier; load(it, 0); barrier;
 * compute. The barrier after the data arrives is __syncthreads_and(pred(st)), and its result goes to
 * body(it, st, all, ra, rb, sw, s0): ra, rb the A fragments of the warp's stationary rows, s0 the ldmatrix address
 * of this thread's row in stage 0 of the streamed tiles. Returns with every copy landed and a barrier passed, so
 * the epilogue may reuse the stationary tiles.
 */
template <int BS, int CPR, int KSTEPS, bool IN_REGS, int STAGES, bool SM75, class Load, class Pred, class Body>
static __device__ __forceinline__ void attn_bwd_pipeline(unsigned char * smem, const char * ga, int64_t sa,
                                                         const char * gb, int64_t sb, int row0, int n_valid,
                                                         int n_iter, Load && load, Pred && pred, Body && body) {
    constexpr int ROWB = CPR * 16;
    const int     tid = threadIdx.x, lane = tid & 31, wrow = (tid >> 5) * 16;
    attn_load_tile<BS, CPR, SM75>(smem, ga, sa, row0, n_valid, tid);
    attn_load_tile<BS, CPR, SM75>(smem + BS * ROWB, gb, sb, row0, n_valid, tid);
    attn_cp_async_commit<SM75>();
    if (STAGES == 2 && n_iter > 0) load(0, 0);
    attn_cp_async_commit<SM75>();

    const attn_ldsm_offs<CPR> sw(lane);
    const uint32_t            row_base = attn_smem_u32(smem) + ((lane & 7) + ((lane >> 3) & 1) * 8) * ROWB;
    if constexpr (IN_REGS) {
        attn_cp_async_wait<1, SM75>(); /* the stationary tiles landed */
        __syncthreads();
    }
    attn_bwd_rows<CPR, KSTEPS, IN_REGS> ra, rb;
    ra.init(row_base + wrow * ROWB, sw);
    rb.init(row_base + (BS + wrow) * ROWB, sw);

    for (int it = 0; it < n_iter; it++) {
        const int st = STAGES == 2 ? (it & 1) : 0;
        bool      all;
        if constexpr (STAGES == 2) {
            attn_cp_async_wait<0, SM75>(); /* iteration it landed (and the stationary tiles) */
            all = __syncthreads_and(pred(st));
            if (it + 1 < n_iter) load(it + 1, st ^ 1);
            attn_cp_async_commit<SM75>();
        } else {
            __syncthreads(); /* everyone is done with iteration it-1 */
            load(it, 0);     /* synchronous */
            all = __syncthreads_and(pred(0));
        }
        body(it, st, all, ra, rb, sw, row_base + 2 * BS * ROWB);
    }
    attn_cp_async_wait<0, SM75>(); /* nothing may still be landing (no iteration at all) */
    __syncthreads();
}

/*
 * dq. grid (ceil(Tq / 64), NH, B), query blocks taken last-first (under a causal mask the last blocks see the most
 * keys), block 128 threads; warp w owns query rows [16 w, 16 w + 16) of the CTA's 64, and each thread the rows g
 * and g + 8 of its quad. Dynamic shared memory: sQ, sdO (64 rows each), then per stage sK, sV (BT rows each), then
 * per stage the key mask (BT i32); rows swizzled (attn_swz). Per key tile (attn_bwd_pipeline; its barrier also
 * tells whether the tile's padding mask is all 1): dP = dO V^T; S = Q K^T; P = exp2(S scale log2e - L2), 0 where
 * masked; dS = P (dP - D), packed to 16 bits; dQ += dS K. dq = scale dQ.
 */
template <int HS, bool BF16, bool SM75>
static __global__ void __launch_bounds__(RK_ATTN_TC_THREADS) attn_bwd_dq_kernel_tc(const struct attn_bwd_args a) {
    using C = attn_bwd_cfg<HS, SM75>;
    constexpr int BM = C::BS, BN = C::BT, CPR = C::CPR, ROWB = C::ROWB, KSTEPS = C::KSTEPS, NT = C::NT;
    constexpr int STAGES = C::STAGES;
    constexpr bool IN_REGS = C::DQ_IN_REGS;
    extern __shared__ __align__(128) unsigned char attn_bwd_smem[];
    unsigned char * sQ    = attn_bwd_smem;
    unsigned char * sKV   = sQ + 2 * BM * ROWB; /* stage s: K at sKV + s * 2 * BN * ROWB, V right after it */
    int *           sMask = reinterpret_cast<int *>(sKV + STAGES * 2 * BN * ROWB); /* stage s at sMask + s * BN */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int mb = (int) gridDim.x - 1 - (int) blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / a.group;
    const int m0 = mb * BM, wrow = warp * 16;

    const char * kg = a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh;
    const char * vg = a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh;
    const int *  mg = a.mask ? reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb) : nullptr;

    /* keys any row of this CTA may see: [kbeg, kend), in n_tiles tiles of BN from kbeg */
    const attn_cta_keys ck      = attn_cta_key_range(a, m0, BM);
    const int           kbeg    = ck.kbeg;
    const int           n_tiles = ck.kend > kbeg ? (ck.kend - kbeg + BN - 1) / BN : 0;

    /* this thread's two rows: key range, L2, D (a row past Tq: empty range, P = 0) */
    int   lo[2], hi[2];
    float l2[2], dd[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = m0 + wrow + g + 8 * r;
        if (i < a.Tq) {
            attn_row_range(a, i, lo[r], hi[r]);
            const int64_t ri = attn_bwd_row(a, b, h, i);
            l2[r] = a.L2[ri];
            dd[r] = a.D[ri];
        } else {
            lo[r] = 1;
            hi[r] = 0;
            l2[r] = INFINITY;
            dd[r] = 0.f;
        }
    }

    float acc[CPR][4];
#pragma unroll
    for (int d = 0; d < CPR; d++) {
#pragma unroll
        for (int e = 0; e < 4; e++) acc[d][e] = 0.f;
    }
    const float sl2 = a.scale_log2;

    /* K, V and the mask of key tile t into stage st */
    auto load_kv = [&](int t, int st) {
        const int       n0 = kbeg + t * BN;
        unsigned char * sk = sKV + st * 2 * BN * ROWB;
        attn_load_tile<BN, CPR, SM75>(sk, kg, a.k_st, n0, a.Tk, tid);
        attn_load_tile<BN, CPR, SM75>(sk + BN * ROWB, vg, a.v_st, n0, a.Tk, tid);
        if (mg) attn_load_words<BN, SM75>(sMask + st * BN, mg, n0, a.Tk, tid);
    };
    /* mask element j of a tile is loaded by thread j: after its own wait it may read it */
    auto mask_ok = [&](int st) { return !mg || tid >= BN || sMask[st * BN + tid] != 0; };
    auto tile = [&](int t, int st, bool tile_valid, const attn_bwd_rows<CPR, KSTEPS, IN_REGS> & qa,
                    const attn_bwd_rows<CPR, KSTEPS, IN_REGS> & ga, const attn_ldsm_offs<CPR> & sw, uint32_t s0) {
        const int      n0     = kbeg + t * BN;
        const int *    sm     = sMask + st * BN;
        const uint32_t k_base = s0 + st * 2 * BN * ROWB;
        const uint32_t v_base = k_base + BN * ROWB;

        float dp[NT][4], s[NT][4];
        attn_bwd_mm_abt<CPR, KSTEPS, IN_REGS, NT, BF16, SM75>(dp, ga, v_base, sw); /* dP = dO V^T */
        attn_bwd_mm_abt<CPR, KSTEPS, IN_REGS, NT, BF16, SM75>(s, qa, k_base, sw);  /* S = Q K^T */

        /* masking only where a tile has padding or crosses Tk, the diagonal of the first row or the window edge of
           the last row; rows past Tq have L2 = +inf (P = 0) */
        const bool need_mask = !tile_valid || n0 + BN > ck.hi_first + 1 || n0 < ck.lo_last;
        /* dS packed as the A fragments of dQ += dS K: ds[kk] = {(g, tile 2kk), (g+8, 2kk), (g, 2kk+1), (g+8, 2kk+1)} */
        uint32_t dsa[BN / 16][4];
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float x[2];
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int   c  = j * 8 + 2 * tig + e;
                    const bool  ok = !need_mask || (n0 + c >= lo[r] && n0 + c <= hi[r] && (!mg || sm[c] != 0));
                    const float p  = ok ? attn_exp2(fmaf(s[j][2 * r + e], sl2, -l2[r])) : 0.f;
                    x[e]           = p * (dp[j][2 * r + e] - dd[r]);
                }
                dsa[j / 2][(j % 2) * 2 + r] = attn_pack2<BF16>(x[0], x[1]);
            }
        }
        attn_bwd_mm_pb<CPR, BN / 16, BF16, SM75>(acc, dsa, k_base, sw); /* dQ += dS K */
    };
    attn_bwd_pipeline<BM, CPR, KSTEPS, IN_REGS, STAGES, SM75>(
        attn_bwd_smem, a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh, a.q_st,
        a.dout + (int64_t) b * a.g_sb + (int64_t) h * a.g_sh, a.g_st, m0, a.Tq, n_tiles, load_kv, mask_ok, tile);

    attn_bwd_store_rows<CPR, BF16>(acc, a.scale, sQ, wrow, a.dq + (int64_t) b * a.dq_sb + (int64_t) h * a.dq_sh,
                                   a.dq_st, m0, a.Tq, lane);
}

/*
 * dk and dv. grid (ceil(Tk / 64), NKV, B), block 128 threads; warp w owns key rows [16 w, 16 w + 16) of the CTA's
 * 64 (thread rows g and g + 8). The CTA walks the query heads of kv head hk's group in order and, for each, the
 * tiles of BT query rows that may attend its keys (one flat loop, so the pipeline runs across heads). Dynamic
 * shared memory: sK, sV (64 rows each), then per stage sQ, sdO (BT rows each), then per stage L2 and D of the
 * tile's rows (BT f32 each). Per tile: dP^T = V dO^T; S^T = K Q^T; P^T = exp2(S^T scale log2e - L2), 0 where masked;
 * dS^T = P^T (dP^T - D); dV += P^T dO; dK += dS^T Q. dk = scale dK.
 */
template <int HS, bool BF16, bool SM75>
static __global__ void __launch_bounds__(RK_ATTN_TC_THREADS) attn_bwd_dkv_kernel_tc(const struct attn_bwd_args a) {
    using C = attn_bwd_cfg<HS, SM75>;
    constexpr int BK = C::BS, BQ = C::BT, CPR = C::CPR, ROWB = C::ROWB, KSTEPS = C::KSTEPS, NT = C::NT;
    constexpr int STAGES = C::STAGES;
    constexpr bool IN_REGS = C::DKV_IN_REGS;
    extern __shared__ __align__(128) unsigned char attn_bwd_smem[];
    unsigned char * sK  = attn_bwd_smem;
    unsigned char * sV  = sK + BK * ROWB;
    unsigned char * sQG = sV + BK * ROWB; /* stage s: Q at sQG + s * 2 * BQ * ROWB, dO right after it */
    float *         sL2 = reinterpret_cast<float *>(sQG + STAGES * 2 * BQ * ROWB); /* stage s at sL2 + s * BQ */
    float *         sD  = sL2 + STAGES * BQ;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int hk = blockIdx.y, b = blockIdx.z;
    const int n0 = blockIdx.x * BK, wrow = warp * 16;
    const int * mg = a.mask ? reinterpret_cast<const int *>(a.mask + (int64_t) b * a.m_sb) : nullptr;

    /* this thread's two key rows: the query rows that may attend them (empty for a padded key or one past Tk) */
    int ilo[2], ihi[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int j = n0 + wrow + g + 8 * r;
        attn_bwd_key_range(a, j, ilo[r], ihi[r]);
        if (j >= a.Tk || (mg && mg[j] == 0)) ihi[r] = ilo[r] - 1;
    }
    const bool keys_valid = __syncthreads_and(tid >= BK || (n0 + tid < a.Tk && (!mg || mg[n0 + tid] != 0)));

    /* query rows any key of this CTA may be attended by: [ibeg, iend), nqt tiles of BQ from ibeg, per head */
    int ibeg, iend, unused;
    attn_bwd_key_range(a, n0, ibeg, unused);
    attn_bwd_key_range(a, min(n0 + BK, a.Tk) - 1, unused, iend);
    iend += 1;
    const int nqt    = iend > ibeg ? (iend - ibeg + BQ - 1) / BQ : 0;
    const int n_iter = a.group * nqt;

    float acc_k[CPR][4], acc_v[CPR][4];
#pragma unroll
    for (int d = 0; d < CPR; d++) {
#pragma unroll
        for (int e = 0; e < 4; e++) acc_k[d][e] = acc_v[d][e] = 0.f;
    }
    const float sl2 = a.scale_log2;

    /* Q, dO, L2 and D of iteration it (head hk * group + it / nqt, tile it % nqt) into stage st */
    auto load_q = [&](int it, int st) {
        const int       h    = hk * a.group + it / nqt;
        const int       m0   = ibeg + (it % nqt) * BQ;
        const int64_t   row0 = attn_bwd_row(a, b, h, 0);
        unsigned char * sq   = sQG + st * 2 * BQ * ROWB;
        attn_load_tile<BQ, CPR, SM75>(sq, a.q + (int64_t) b * a.q_sb + (int64_t) h * a.q_sh, a.q_st, m0, a.Tq, tid);
        attn_load_tile<BQ, CPR, SM75>(sq + BQ * ROWB, a.dout + (int64_t) b * a.g_sb + (int64_t) h * a.g_sh, a.g_st, m0,
                                      a.Tq, tid);
        attn_load_words<BQ, SM75>(sL2 + st * BQ, a.L2 + row0, m0, a.Tq, tid);
        attn_load_words<BQ, SM75>(sD + st * BQ, a.D + row0, m0, a.Tq, tid);
    };
    auto all_true = [](int) { return true; };
    auto tile = [&](int it, int st, bool, const attn_bwd_rows<CPR, KSTEPS, IN_REGS> & ka,
                    const attn_bwd_rows<CPR, KSTEPS, IN_REGS> & va, const attn_ldsm_offs<CPR> & sw, uint32_t s0) {
        const int      m0     = ibeg + (it % nqt) * BQ;
        const uint32_t q_base = s0 + st * 2 * BQ * ROWB;
        const uint32_t g_base = q_base + BQ * ROWB;
        const float *  l2s    = sL2 + st * BQ;
        const float *  dsm    = sD + st * BQ;

        float dp[NT][4], s[NT][4];
        attn_bwd_mm_abt<CPR, KSTEPS, IN_REGS, NT, BF16, SM75>(dp, va, g_base, sw); /* dP^T = V dO^T */
        attn_bwd_mm_abt<CPR, KSTEPS, IN_REGS, NT, BF16, SM75>(s, ka, q_base, sw);  /* S^T = K Q^T */

        /* masking only where the CTA has padded keys or keys past Tk, or the tile crosses Tq, the diagonal of the
           last key or the window edge of the first key */
        const bool need_mask = !keys_valid || m0 + BQ > a.Tq ||
                               (a.causal && (int64_t) m0 + a.q_offset < (int64_t) n0 + BK - 1) ||
                               (a.window > 0 && (int64_t) m0 + BQ - 1 + a.q_offset - a.window >= (int64_t) n0);
        /* P^T and dS^T packed as the A fragments of dV += P^T dO and dK += dS^T Q (k over the tile's query rows) */
        uint32_t pa[BQ / 16][4], dsa[BQ / 16][4];
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int    c0 = j * 8 + 2 * tig;
            const float2 lc = *reinterpret_cast<const float2 *>(l2s + c0);
            const float2 dc = *reinterpret_cast<const float2 *>(dsm + c0);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float pv[2], dsv[2];
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int   i  = m0 + c0 + e;
                    const bool  ok = !need_mask || (i >= ilo[r] && i <= ihi[r]);
                    const float p  = ok ? attn_exp2(fmaf(s[j][2 * r + e], sl2, -(e ? lc.y : lc.x))) : 0.f;
                    pv[e]          = p;
                    dsv[e]         = p * (dp[j][2 * r + e] - (e ? dc.y : dc.x));
                }
                pa[j / 2][(j % 2) * 2 + r]  = attn_pack2<BF16>(pv[0], pv[1]);
                dsa[j / 2][(j % 2) * 2 + r] = attn_pack2<BF16>(dsv[0], dsv[1]);
            }
        }
        attn_bwd_mm_pb<CPR, BQ / 16, BF16, SM75>(acc_v, pa, g_base, sw);  /* dV += P^T dO */
        attn_bwd_mm_pb<CPR, BQ / 16, BF16, SM75>(acc_k, dsa, q_base, sw); /* dK += dS^T Q */
    };
    attn_bwd_pipeline<BK, CPR, KSTEPS, IN_REGS, STAGES, SM75>(
        attn_bwd_smem, a.k + (int64_t) b * a.k_sb + (int64_t) hk * a.k_sh, a.k_st,
        a.v + (int64_t) b * a.v_sb + (int64_t) hk * a.v_sh, a.v_st, n0, a.Tk, n_iter, load_q, all_true, tile);

    attn_bwd_store_rows<CPR, BF16>(acc_k, a.scale, sK, wrow, a.dk + (int64_t) b * a.dk_sb + (int64_t) hk * a.dk_sh,
                                   a.dk_st, n0, a.Tk, lane);
    attn_bwd_store_rows<CPR, BF16>(acc_v, 1.f, sV, wrow, a.dv + (int64_t) b * a.dv_sb + (int64_t) hk * a.dv_sh,
                                   a.dv_st, n0, a.Tk, lane);
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

static const char * const attn_bwd_variant_names[RK_ATTN_BWD_N_VARIANTS] = { "auto", "plain", "tc64" };

extern "C" const char * rk_cuda_attn_bwd_variant_name(int variant) {
    return variant >= 0 && variant < RK_ATTN_BWD_N_VARIANTS ? attn_bwd_variant_names[variant] : "?";
}

extern "C" size_t rk_cuda_attn_bwd_scratch_bytes(const struct rk_tensor * q, const struct rk_tensor * k) {
    (void) k;
    const int64_t rows = q->ne[0] * q->ne[1] * q->ne[2];
    if (rows <= 0) return 0;
    return ((size_t) rows * 2 * sizeof(float) + 255) / 256 * 256;
}

/* Calls f(std::integral_constant<int, ND>()) with ND = ceil(hs / 32) in 1..8 (the plain kernels' dims per lane). */
template <class F> static void attn_bwd_with_nd(int hs, F && f) {
    switch ((hs + 31) / 32) {
        case 1: f(std::integral_constant<int, 1>()); break;
        case 2: f(std::integral_constant<int, 2>()); break;
        case 3: f(std::integral_constant<int, 3>()); break;
        case 4: f(std::integral_constant<int, 4>()); break;
        case 5: f(std::integral_constant<int, 5>()); break;
        case 6: f(std::integral_constant<int, 6>()); break;
        case 7: f(std::integral_constant<int, 7>()); break;
        default: f(std::integral_constant<int, 8>()); break;
    }
}

template <bool BF16> static void attn_bwd_launch_pre(const struct attn_bwd_args & a, int B, cudaStream_t stream) {
    const dim3 grid((unsigned) ((a.Tq + RK_ATTN_BWD_WARPS - 1) / RK_ATTN_BWD_WARPS), (unsigned) a.NH, (unsigned) B);
    attn_bwd_pre_kernel<BF16><<<grid, RK_ATTN_BWD_WARPS * 32, 0, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
}

template <bool BF16>
static void attn_bwd_launch_plain(const struct attn_bwd_args & a, int B, int NKV, cudaStream_t stream) {
    attn_bwd_with_nd(a.hs, [&](auto nd) {
        constexpr int ND = decltype(nd)::value;
        if (a.Tq > 0) {
            const dim3 grid((unsigned) ((a.Tq + RK_ATTN_BWD_WARPS - 1) / RK_ATTN_BWD_WARPS), (unsigned) a.NH, (unsigned) B);
            attn_bwd_dq_kernel_plain<ND, BF16><<<grid, RK_ATTN_BWD_WARPS * 32, 0, stream>>>(a);
            RK_CUDA_CHECK(cudaGetLastError());
        }
        if (a.Tk > 0) {
            const dim3 grid((unsigned) ((a.Tk + RK_ATTN_BWD_WARPS - 1) / RK_ATTN_BWD_WARPS), (unsigned) NKV, (unsigned) B);
            attn_bwd_dkv_kernel_plain<ND, BF16><<<grid, RK_ATTN_BWD_WARPS * 32, 0, stream>>>(a);
            RK_CUDA_CHECK(cudaGetLastError());
        }
    });
}

/* Shared memory of the larger of the two tensor-core kernels at (hs, sm75). */
static int attn_bwd_tc_smem(int hs, bool sm75) {
#define RK_ATTN_BWD_SMEM(HS, SM75) (attn_bwd_cfg<HS, SM75>::SMEM_DQ > attn_bwd_cfg<HS, SM75>::SMEM_DKV ? \
                                    attn_bwd_cfg<HS, SM75>::SMEM_DQ : attn_bwd_cfg<HS, SM75>::SMEM_DKV)
    switch (hs) {
        case 32: return sm75 ? RK_ATTN_BWD_SMEM(32, true) : RK_ATTN_BWD_SMEM(32, false);
        case 64: return sm75 ? RK_ATTN_BWD_SMEM(64, true) : RK_ATTN_BWD_SMEM(64, false);
        default: return sm75 ? RK_ATTN_BWD_SMEM(128, true) : RK_ATTN_BWD_SMEM(128, false);
    }
#undef RK_ATTN_BWD_SMEM
}

/* Launches the two tensor-core kernels of one instantiation (shared memory already checked against the device). */
template <int HS, bool BF16, bool SM75>
static void attn_bwd_launch_tc(const struct attn_bwd_args & a, int B, int NKV, cudaStream_t stream) {
    using C = attn_bwd_cfg<HS, SM75>;
    /* cheap, and per device: set on every launch rather than cached per device */
    if (C::SMEM_DQ > 48 * 1024) {
        RK_CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq_kernel_tc<HS, BF16, SM75>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_DQ));
    }
    if (C::SMEM_DKV > 48 * 1024) {
        RK_CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkv_kernel_tc<HS, BF16, SM75>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM_DKV));
    }
    if (a.Tq > 0) {
        const dim3 grid((unsigned) ((a.Tq + C::BS - 1) / C::BS), (unsigned) a.NH, (unsigned) B);
        attn_bwd_dq_kernel_tc<HS, BF16, SM75><<<grid, RK_ATTN_TC_THREADS, C::SMEM_DQ, stream>>>(a);
        RK_CUDA_CHECK(cudaGetLastError());
    }
    if (a.Tk > 0) {
        const dim3 grid((unsigned) ((a.Tk + C::BS - 1) / C::BS), (unsigned) NKV, (unsigned) B);
        attn_bwd_dkv_kernel_tc<HS, BF16, SM75><<<grid, RK_ATTN_TC_THREADS, C::SMEM_DKV, stream>>>(a);
        RK_CUDA_CHECK(cudaGetLastError());
    }
}

template <bool BF16, bool SM75>
static void attn_bwd_launch_tc_hs(const struct attn_bwd_args & a, int B, int NKV, cudaStream_t stream) {
    switch (a.hs) {
        case 32: attn_bwd_launch_tc<32, BF16, SM75>(a, B, NKV, stream); break;
        case 64: attn_bwd_launch_tc<64, BF16, SM75>(a, B, NKV, stream); break;
        default: attn_bwd_launch_tc<128, BF16, SM75>(a, B, NKV, stream); break;
    }
}

/* The (B, NH|NKV, T, HS) strides of t into sb, sh, st. */
static void attn_bwd_strides(const struct rk_tensor * t, int64_t & sb, int64_t & sh, int64_t & st) {
    sb = t->nb[0];
    sh = t->nb[1];
    st = t->nb[2];
}

extern "C" enum rk_status rk_cuda_attn_bwd_variant(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv,
                                                   const struct rk_tensor * q, const struct rk_tensor * k,
                                                   const struct rk_tensor * v, const struct rk_tensor * o,
                                                   const struct rk_tensor * dout, const struct rk_tensor * lse,
                                                   const struct rk_tensor * mask, const struct rk_attn_params * p,
                                                   void * scratch, size_t scratch_bytes, bool force_sm75, int variant,
                                                   cudaStream_t stream) {
    /* q, o, dout, dq (B, NH, Tq, HS); k, v, dk, dv (B, NKV, Tk, HS); lse (B, NH, Tq) f32; mask (B, Tk) i32 */
    const struct rk_tensor * ts[8] = { q, k, v, o, dout, dq, dk, dv };
    for (int i = 0; i < 8; i++) {
        if (!ts[i] || !ts[i]->data) return rk_set_error(RK_STATUS_ARG, "attn_bwd: NULL tensor or data pointer");
    }
    if (!lse || !lse->data || !p || (mask && !mask->data)) {
        return rk_set_error(RK_STATUS_ARG, "attn_bwd: NULL lse, params or mask data");
    }
    if (variant < 0 || variant >= RK_ATTN_BWD_N_VARIANTS) {
        return rk_set_error(RK_STATUS_ARG, "attn_bwd: no variant %d", variant);
    }
    const enum rk_dtype dt = q->dtype;
    bool                same_dt = dt == RK_DTYPE_BF16 || dt == RK_DTYPE_F16;
    for (int i = 0; i < 8; i++) same_dt = same_dt && ts[i]->dtype == dt;
    if (!same_dt) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_bwd: CUDA takes q, k, v, o, dout, dq, dk, dv all bf16 or all "
                                                   "f16 (q is %s)", rk_dtype_traits[dt].name);
    }
    const int64_t B = q->ne[0], NH = q->ne[1], Tq = q->ne[2], HS = q->ne[3];
    const int64_t NKV = k->ne[1], Tk = k->ne[2];
    bool          shapes_ok = NKV > 0 && NH % NKV == 0;
    for (int i = 0; i < 8; i++) {
        const bool kv = i == 1 || i == 2 || i == 6 || i == 7;
        shapes_ok     = shapes_ok && ts[i]->ndim == 4 && attn_shape_is(ts[i], B, kv ? NKV : NH, kv ? Tk : Tq, HS);
    }
    if (!shapes_ok) {
        return rk_set_error(RK_STATUS_ARG, "attn_bwd: shapes do not match q, o, dout, dq (B,NH,Tq,HS), k, v, dk, dv "
                                           "(B,NKV,Tk,HS) with NH %% NKV == 0");
    }
    if (mask && (mask->dtype != RK_DTYPE_I32 || mask->ndim != 2 || mask->ne[0] != B || mask->ne[1] != Tk)) {
        return rk_set_error(RK_STATUS_ARG, "attn_bwd: mask must be (B, Tk) i32");
    }
    if (lse->dtype != RK_DTYPE_F32 || lse->ndim != 3 || lse->ne[0] != B || lse->ne[1] != NH || lse->ne[2] != Tq) {
        return rk_set_error(RK_STATUS_ARG, "attn_bwd: lse must be (B, NH, Tq) f32");
    }
    bool inner_ok = true;
    for (int i = 0; i < 8; i++) inner_ok = inner_ok && (HS == 1 || ts[i]->nb[3] == 2);
    if (!inner_ok || (mask && ((Tk > 1 && mask->nb[1] != 4) || mask->nb[0] % 4 != 0)) || lse->nb[2] % 4 != 0 ||
        lse->nb[1] % 4 != 0 || lse->nb[0] % 4 != 0) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_bwd: the innermost stride must be the element size");
    }
    if (HS <= 0 || HS > RK_ATTN_BWD_MAX_HS || B > 65535 || NH > 65535 || Tq >= (1 << 30) || Tk >= (1 << 30)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_bwd: HS=%lld (max %d), B=%lld, NH=%lld, Tq=%lld, Tk=%lld out "
                                                   "of range", (long long) HS, RK_ATTN_BWD_MAX_HS, (long long) B,
                            (long long) NH, (long long) Tq, (long long) Tk);
    }
    const size_t need = rk_cuda_attn_bwd_scratch_bytes(q, k);
    if (need > 0 && (!scratch || scratch_bytes < need || (uintptr_t) scratch % 16 != 0)) {
        return rk_set_error(RK_STATUS_ARG, "attn_bwd: needs %zu bytes of 16-byte aligned scratch (got %zu at %p)", need,
                            scratch_bytes, scratch);
    }
    if (B == 0 || NH == 0 || (Tq == 0 && Tk == 0)) return RK_OK;

    int cc = 0, smem_optin = 0;
    attn_device_caps(&cc, &smem_optin);
    if (cc < 75) return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_bwd: needs sm_75 or newer (device is sm_%d)", cc);
    const bool sm75 = force_sm75 || cc < 80;
    const bool bf16 = dt == RK_DTYPE_BF16;

    /* the tensor-core kernels read and write whole 16-byte row chunks; o is only read by the pre kernel */
    bool tc_ok = (HS == 32 || HS == 64 || HS == 128) && isfinite(p->scale) && !(sm75 && bf16);
    for (int i = 0; i < 8; i++) tc_ok = tc_ok && (i == 3 || attn_aligned16(ts[i]));
    if (variant == 0) variant = tc_ok ? 2 : 1;
    if (variant == 2) {
        if (!tc_ok) {
            return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_bwd: variant 2 needs HS in {32, 64, 128}, 16-byte aligned "
                                                       "rows, a finite scale%s (HS=%lld)",
                                sm75 && bf16 ? " and f16 on the sm_75 path" : "", (long long) HS);
        }
        const int smem = attn_bwd_tc_smem((int) HS, sm75);
        if (smem > smem_optin) {
            return rk_set_error(RK_STATUS_UNSUPPORTED, "attn_bwd: HS=%lld needs %d bytes of shared memory, device "
                                                       "allows %d", (long long) HS, smem, smem_optin);
        }
    }

    struct attn_bwd_args a;
    memset(&a, 0, sizeof(a));
    a.q    = (const char *) q->data;
    a.k    = (const char *) k->data;
    a.v    = (const char *) v->data;
    a.o    = (const char *) o->data;
    a.dout = (const char *) dout->data;
    a.dq   = (char *) dq->data;
    a.dk   = (char *) dk->data;
    a.dv   = (char *) dv->data;
    a.mask = mask ? (const char *) mask->data : NULL;
    a.lse  = (const char *) lse->data;
    a.D    = (float *) scratch;
    a.L2   = a.D + B * NH * Tq;
    attn_bwd_strides(q, a.q_sb, a.q_sh, a.q_st);
    attn_bwd_strides(k, a.k_sb, a.k_sh, a.k_st);
    attn_bwd_strides(v, a.v_sb, a.v_sh, a.v_st);
    attn_bwd_strides(o, a.o_sb, a.o_sh, a.o_st);
    attn_bwd_strides(dout, a.g_sb, a.g_sh, a.g_st);
    attn_bwd_strides(dq, a.dq_sb, a.dq_sh, a.dq_st);
    attn_bwd_strides(dk, a.dk_sb, a.dk_sh, a.dk_st);
    attn_bwd_strides(dv, a.dv_sb, a.dv_sh, a.dv_st);
    a.m_sb       = mask ? mask->nb[0] : 0;
    a.l_sb       = lse->nb[0];
    a.l_sh       = lse->nb[1];
    a.l_st       = lse->nb[2];
    a.q_offset   = p->q_offset;
    a.window     = p->window > 0 ? p->window : 0;
    a.Tq         = (int) Tq;
    a.Tk         = (int) Tk;
    a.NH         = (int) NH;
    a.group      = (int) (NH / NKV);
    a.hs         = (int) HS;
    a.causal     = p->causal ? 1 : 0;
    a.scale      = p->scale;
    a.scale_log2 = p->scale * 1.4426950408889634f;

    if (Tq > 0) {
        if (bf16) {
            attn_bwd_launch_pre<true>(a, (int) B, stream);
        } else {
            attn_bwd_launch_pre<false>(a, (int) B, stream);
        }
    }
    if (variant == 1) {
        if (bf16) {
            attn_bwd_launch_plain<true>(a, (int) B, (int) NKV, stream);
        } else {
            attn_bwd_launch_plain<false>(a, (int) B, (int) NKV, stream);
        }
    } else if (sm75) {
        attn_bwd_launch_tc_hs<false, true>(a, (int) B, (int) NKV, stream);
    } else if (bf16) {
        attn_bwd_launch_tc_hs<true, false>(a, (int) B, (int) NKV, stream);
    } else {
        attn_bwd_launch_tc_hs<false, false>(a, (int) B, (int) NKV, stream);
    }
    return RK_OK;
}

extern "C" enum rk_status rk_cuda_attn_bwd(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv,
                                           const struct rk_tensor * q, const struct rk_tensor * k,
                                           const struct rk_tensor * v, const struct rk_tensor * o,
                                           const struct rk_tensor * dout, const struct rk_tensor * lse,
                                           const struct rk_tensor * mask, const struct rk_attn_params * p,
                                           void * scratch, size_t scratch_bytes, bool force_sm75, cudaStream_t stream) {
    return rk_cuda_attn_bwd_variant(dq, dk, dv, q, k, v, o, dout, lse, mask, p, scratch, scratch_bytes, force_sm75, 0,
                                    stream);
}
