/*
 * matmul_gelu.cu: RK_OP_MATMUL with the GELU in the GEMM's epilogue, dst = gelu(x w^T + bias): on Hopper with the
 * warpgroup MMA (wgmma, sm_90a; kernels/wgmma.cuh), and on sm_80 and newer (A100, A40, and Hopper too) with mma.sync. cuBLASLt has no erf-GELU epilogue (its GELU is the tanh form, kernels/matmul.cu), so the
 * default path writes x w^T + bias and runs a separate GELU pass over the (M, N) result: at BERT-base B64 T256 the
 * FFN-up GEMM is 0.11 ms and the pass another 0.077 ms (201 MB read and written; docs/PERF.md, H200: "16384 x 3072 x
 * 768 + bias + GELU" at 403 TFLOP/s against 747 for the same GEMM shape without it). Here the accumulators get the
 * bias and the GELU in registers and the result is written once: the fused kernel beats the two-pass path whenever it
 * reaches more than ~413 TFLOP/s on that shape. CPU reference: rk_cpu_matmul (kernels/matmul_cpu.c); parity: the
 * MATMUL cases with gelu=1 in tests/test_ops.c ("[variant=mm-v...]").
 *
 * Variants of the matmul + GELU (RK_MATMUL_GELU_VARIANT=N or rk_cuda_matmul_gelu_set_variant, kernels/cuda_ops.h):
 *   1  cuBLASLt (bias epilogue), then the GELU pass of kernels/elementwise.cu (where the fused kernels do not run)
 *   2  matmul_gelu_kernel_wg<256, 4, 1>: CTA tile 128 x 256, two warpgroups (64 x 256 each, m64n256k16), 4-stage
 *      cp.async pipeline (48 KB a stage, 192 KB), one wgmma group kept in flight, one CTA per SM
 *   3  matmul_gelu_kernel_wg<128, 3, 0>: CTA tile 128 x 128 (m64n128k16), 3 stages (96 KB), each k-block waited for
 *      before the next barrier, two CTAs per SM (the other CTA's MMAs fill the gaps and overlap the epilogue)
 *   4  v2 persistent: one CTA per SM walks the tiles and loads the first two k-blocks of its next tile before the
 *      epilogue of the current one (v2 waits for them after a new CTA starts, with the tensor cores idle)
 *   6  matmul_gelu_kernel_ws: warp-specialized and persistent, "ping-pong": a producer warpgroup loads 128 x 64
 *      tiles of x and w with TMA into a ring of 5 stages on mbarriers; two consumer warpgroups take the CTA's
 *      tiles in turn, each a whole 128 x 128 output tile (two m64n128k16 per k-step), so that one's epilogue (bias,
 *      GELU, staging, stores) runs while the other's MMAs do
 *   5  matmul_gelu_kernel_mma<3>: mma.sync m16n8k16 (sm_80 and newer: the A100/A40 path, and on Hopper a
 *      fallback should the wgmma kernels fail there), CTA tile 128 x 128, 8 warps of 64 x 32, 3 stages of 64-column
 *      k-blocks (96 KB: two CTAs per SM on sm_90, one on sm_80/86), ldmatrix fragments; the same epilogue
 *
 * The kernel, per CTA (256 threads = warpgroups 0 and 1, rows [64 wg, 64 wg + 64) of the tile):
 *   k-blocks of 64 columns: the x tile (128 x 64) and the w tile (BN x 64) of one k-block are one stage, each a
 *   128-byte-swizzled K-major tile (wg_load_tile, zero rows past M); LEAD = STAGES - 1 - WAIT k-blocks are loaded
 *   ahead. Iteration kb: wait for this thread's copies of k-block kb, fence.proxy.async, barrier; then load k-block
 *   kb + LEAD into the stage of k-block kb + LEAD - STAGES, which every thread's wgmma.wait_group<WAIT> of the
 *   previous iteration retired before the barrier; then four wgmma (k-steps of 16: 32 bytes further in the 128-byte
 *   rows) into the accumulators, commit, wait_group<WAIT>.
 *   Epilogue: wait_group 0, barrier (every stage is free: all wgmma retired, every copy landed), then each thread
 *   adds the bias to its accumulator pairs, applies the GELU (rk_gelu_ex2: erf form, error ~1e-7, far below the
 *   16-bit rounding; kernels/erf_ex2.h), rounds once and stores the pair into its warpgroup's swizzled (64 x BN)
 *   staging tile in a freed stage; barrier; 16-byte coalesced stores of the rows below M.
 * Variant 5 (matmul_gelu_kernel_mma): the same stages, each an x and a w tile of 64 columns in the same 128-byte
 *   swizzle (chunk c of row r at ((c ^ (r & 7)) << 4): the 8 rows of an ldmatrix matrix hit 8 different 16-byte bank
 *   groups). Iteration kb: wait for k-block kb (STAGES - 2 groups may stay pending), barrier, load k-block
 *   kb + STAGES - 1 into the stage of k-block kb - 1 (every warp finished reading it before the barrier), then four
 *   k-steps of 16: ldmatrix.x4 of the warp's 4 m16 tiles of x and 2 pairs of n8 tiles of w, 16 mma.sync.
 * Limits (else UNSUPPORTED, and rk_cuda_matmul takes the cuBLASLt path): compute capability 9.0 (variants 2-4 and 6;
 * 6 also needs cuTensorMapEncodeTiled from the driver) or 8.0 and newer with the shared memory for 3 stages
 * (variant 5), f16/bf16, K a multiple of 64, N a multiple of the
 * tile's BN, row strides multiples of 8 elements, data 16-byte aligned, bias
 * 4-byte aligned, no accumulate.
 *
 * Bench: build/bench/bench_matmul (the FFN-up shapes with every variant, keys "@vN");
 *        RK_MATMUL_GELU_VARIANT=N build/bench/bench_bert --config base (the whole forward, key "@mmgelu-vN").
 */
#include "attn_tc.cuh"
#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/erf_ex2.h"
#include "tma.cuh"
#include "wgmma.cuh"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

struct mmwg_args {
    const char * x;    /* (M, K) rows, ldx bytes apart */
    const char * w;    /* (N, K) rows, ldw bytes apart */
    const char * bias; /* (N) or NULL */
    char *       d;    /* (M, N) rows, ldd bytes apart */
    int64_t      ldx, ldw, ldd;
    int          M, N, K;
};

template <int BN, int STAGES, int WAIT> struct mmwg_cfg {
    static constexpr int BM          = 128;
    static constexpr int THREADS     = 256;
    static constexpr int A_BYTES     = BM * 128; /* 64 16-bit columns: one 128-byte swizzled panel */
    static constexpr int B_BYTES     = BN * 128;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    static constexpr int LEAD        = STAGES - 1 - WAIT; /* k-blocks in flight ahead of the one computed */
    static constexpr int SMEM        = 1024 + STAGES * STAGE_BYTES;
    static constexpr int MIN_BLOCKS  = BN == 128 ? 2 : 1;
    static_assert(LEAD >= 1, "stages");
    static_assert(64 * BN * 2 <= STAGE_BYTES, "a warpgroup's output tile fits in one stage");
    static_assert(MIN_BLOCKS * SMEM <= 228 * 1024, "shared memory of the CTAs per SM");
};

/* Two 16-bit values at p (4-byte aligned) as floats, the first in x. */
template <bool BF16> static __device__ __forceinline__ float2 mmwg_load2(const char * p) {
    const uint32_t u = __ldg(reinterpret_cast<const unsigned int *>(p));
    if constexpr (BF16) return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xFFFF0000u));
    return make_float2(__half2float(__ushort_as_half((unsigned short) (u & 0xFFFFu))),
                       __half2float(__ushort_as_half((unsigned short) (u >> 16))));
}

/* The epilogue of every fused kernel for one accumulator pair (columns c, c + 1): bias, erf GELU, one rounding. */
template <bool BF16> static __device__ __forceinline__ uint32_t mm_bias_gelu2(float x0, float x1, float2 b) {
    return attn_pack2<BF16>(rk_gelu_ex2(x0 + b.x), rk_gelu_ex2(x1 + b.y));
}

/* Rows [0, ROWS) of a staged output tile (rows of BN 16-bit values, 16-byte chunk c of row r at (c ^ (r & 7)) << 4)
   to dst rows m0 + r < M, columns n0 .., as 16-byte stores: consecutive e of the threads (first, + step, ...) are
   consecutive chunks of a row, so each warp's stores are coalesced. */
template <int ROWS, int BN>
static __device__ __forceinline__ void mm_store_staged(const unsigned char * out, const struct mmwg_args & a, int m0,
                                                       int n0, int first, int step) {
    constexpr int CPR = BN / 8;
#pragma unroll 4
    for (int e = first; e < ROWS * CPR; e += step) {
        const int r = e / CPR, c = e % CPR;
        if (m0 + r >= a.M) break; /* rows only grow with e */
        const uint4 v = *reinterpret_cast<const uint4 *>(out + r * (BN * 2) + ((c ^ (r & 7)) << 4));
        *reinterpret_cast<uint4 *>(a.d + (int64_t) (m0 + r) * a.ldd + (int64_t) (n0 + c * 8) * 2) = v;
    }
}

/*
 * One CTA computes (128 x BN) output tiles: tile t is rows [128 (t / (N / BN)), +128), columns [BN (t % (N / BN)),
 * +BN). Not PERSIST: one tile per CTA (grid N / BN x ceil(M / 128)). PERSIST: a grid of at most one CTA per SM walks
 * the tiles t = blockIdx.x, + gridDim.x, ...; the first LEAD k-blocks of its next tile are loaded before the epilogue
 * of the current one (the epilogue stages its output in the other two stages), so their latency hides behind it.
 * Stage of the g-th k-block this CTA loads: g % STAGES (g counts across tiles).
 */
template <int BN, int STAGES, int WAIT, bool PERSIST, bool BF16>
static __global__ void __launch_bounds__(256, (mmwg_cfg<BN, STAGES, WAIT>::MIN_BLOCKS))
    matmul_gelu_kernel_wg(const struct mmwg_args a) {
    using C = mmwg_cfg<BN, STAGES, WAIT>;
    static_assert(!PERSIST || STAGES >= C::LEAD + 2, "persistent: LEAD stages prefetched, two for the epilogue");
    extern __shared__ __align__(128) unsigned char mmwg_smem[];
    const uint32_t  raw = attn_smem_u32(mmwg_smem);
    unsigned char * sm  = mmwg_smem + (((raw + 1023u) & ~1023u) - raw); /* 128-byte swizzle: 1024-aligned tiles */
    const uint32_t  sm_addr = attn_smem_u32(sm);

    const int tid = threadIdx.x, wg = tid >> 7;
    const int nk = a.K / 64, tiles_n = a.N / BN, n_tiles = tiles_n * ((a.M + C::BM - 1) / C::BM);
    int       tile = PERSIST ? (int) blockIdx.x : (int) (blockIdx.y * gridDim.x + blockIdx.x);
    const int step = PERSIST ? (int) gridDim.x : n_tiles;
    if (tile >= n_tiles) return;

    /* k-block kb of tile t as the CTA's g-th: x rows [m0, m0 + 128) and w rows [n0, n0 + BN), columns [64 kb, +64) */
    auto load = [&](int t, int kb, int g) {
        unsigned char * s = sm + (g % STAGES) * C::STAGE_BYTES;
        wg_load_tile<C::BM, 8, C::THREADS>(s, a.x + (int64_t) kb * 128, a.ldx, (t / tiles_n) * C::BM, a.M, tid);
        wg_load_tile<BN, 8, C::THREADS>(s + C::A_BYTES, a.w + (int64_t) kb * 128, a.ldw, (t % tiles_n) * BN, a.N, tid);
    };
    /* the first LEAD k-blocks of tile t: one cp.async group per k-block, empty past the end (the wait count stays) */
    auto prologue = [&](int t, int g) {
#pragma unroll
        for (int s = 0; s < C::LEAD; s++) {
            if (s < nk) load(t, s, g + s);
            attn_cp_async_commit<false>();
        }
    };

    int g = 0; /* k-blocks of earlier tiles */
    prologue(tile, g);
    for (;;) {
        const int m0 = (tile / tiles_n) * C::BM, n0 = (tile % tiles_n) * BN;
        float     acc[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; i++) acc[i] = 0.f;
        for (int kb = 0; kb < nk; kb++) {
            attn_cp_async_wait<C::LEAD - 1, false>(); /* this thread's copies of k-block kb landed */
            wg_fence_proxy_async();
            __syncthreads(); /* everyone's copies of kb landed; every wgmma of k-block kb - 1 - WAIT retired; the
                                previous tile's epilogue is done with its staging stages */
            if (kb + C::LEAD < nk) load(tile, kb + C::LEAD, g + kb + C::LEAD);
            attn_cp_async_commit<false>();
            const uint32_t st  = sm_addr + (uint32_t) (((g + kb) % STAGES) * C::STAGE_BYTES);
            const uint32_t s_a = st + (uint32_t) (wg * 64 * 128), s_b = st + (uint32_t) C::A_BYTES;
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                wg_mma_ss<BN, BF16>(acc, wg_desc(s_a + kk * 32, 16, 1024), wg_desc(s_b + kk * 32, 16, 1024),
                                    kb > 0 || kk > 0);
            }
            wg_commit();
            wg_wait<WAIT>();
        }
        wg_wait<0>();
        wg_fence_regs(acc);
        __syncthreads(); /* every wgmma of this tile retired, every copy landed: all stages are free */
        g += nk;
        const int next = tile + step;
        if (next < n_tiles) prologue(next, g); /* into the stages of k-blocks g .. g + LEAD - 1 */

        /* epilogue: warpgroup wg stages its 64 x BN outputs in the stage of k-block g + LEAD + wg (not one the
           prologue just filled; without PERSIST stage wg), accumulator pair (4 j + 2 h, + 1) at row 16 warp + gq +
           8 h, columns 8 j + 2 t, + 1 (wgmma.cuh); a staged row is BN / 8 chunks of 16 bytes, chunk j at j ^ (row & 7):
           the 8 rows of one store instruction hit 8 different bank groups */
        const int       lane = tid & 31, gq = lane >> 2, t = lane & 3;
        const int       row0 = ((tid >> 5) & 3) * 16 + gq;
        constexpr int   RB   = BN * 2;
        unsigned char * out  = sm + (PERSIST ? (g + C::LEAD + wg) % STAGES : wg) * C::STAGE_BYTES;
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            const int col = j * 8 + 2 * t;
            float2    b   = make_float2(0.f, 0.f);
            if (a.bias) b = mmwg_load2<BF16>(a.bias + (int64_t) (n0 + col) * 2);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int      r = row0 + 8 * h; /* r & 7 == gq */
                const uint32_t u = mm_bias_gelu2<BF16>(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1], b);
                *reinterpret_cast<uint32_t *>(out + r * RB + ((j ^ gq) << 4) + 4 * t) = u;
            }
        }
        __syncthreads(); /* (a barrier of the warpgroup would do; both finish together) */
        mm_store_staged<64, BN>(out, a, m0 + wg * 64, n0, tid & 127, 128);
        if (next >= n_tiles) break;
        tile = next;
    }
}

/* ---- v6: warp-specialized, persistent, ping-pong (TMA, mbarriers; sm_90a) ------------------------------ */

/*
 * 384 threads: warpgroup 0 the producer, 1 and 2 the consumers. The CTA's tiles are t = blockIdx.x + j gridDim.x,
 * j = 0, 1, ...; consumer warpgroup c takes the tiles with j % 2 == c - 1, each a whole 128 x 128 output tile. The
 * producer streams the k-blocks of tile j, then of tile j + 1, ..., through a ring of STAGES stages (x tile 128 x 64
 * and w tile 128 x 64, 32 KB), k-block number g = j nk + kb at slot g % STAGES, use g / STAGES: it waits on the
 * slot's "empty" barrier (parity (use & 1) ^ 1), arrives on its "full" barrier with 32 KB to expect and issues the
 * two TMA loads. The main loops of the two consumers strictly alternate (named barriers 3 and 4: the warpgroup that
 * finishes the main loop of tile j arrives, the one with tile j + 1 waits before its own), so each epilogue runs
 * beside the other warpgroup's MMAs. The order is also what makes the parity waits sound: a consumer waits on use u
 * of a slot only once use u - 1 has been loaded (an mbarrier parity names a phase only among the two nearest; a
 * consumer that ran ahead into tile j + 1 while tile j's k-blocks filled the ring took an old phase for its own,
 * which the emulator caught as a TMA load into a tile an in-flight wgmma read). A consumer keeps one k-block of wgmma in flight: issue k-block kb, wait for kb - 1, free its slot
 * (128 arrivals). Epilogue: bias, GELU, one rounding, staged in the warpgroup's own 32 KB buffer (row r of 16
 * 16-byte chunks, chunk j at j ^ (r & 7)), then 16-byte coalesced stores; named barrier 1 + c (its 128 threads)
 * around it. Shared memory: STAGES x 32 KB, 2 x 32 KB staging, the barriers, 1 KB alignment slack.
 */
template <int STAGES> struct mmws_cfg {
    static constexpr int BM = 128, BN = 128;
    static constexpr int A_BYTES = BM * 128, STAGE_BYTES = A_BYTES + BN * 128, OUT_BYTES = BM * BN * 2;
    static constexpr int BAR_OFF = STAGES * STAGE_BYTES + 2 * OUT_BYTES;
    static constexpr int SMEM    = 1024 + BAR_OFF + 2 * STAGES * 8;
    static_assert(SMEM <= 227 * 1024, "shared memory");
};

struct mmws_args {
    struct mmwg_args a;
    CUtensorMap      mx, mw; /* x (M, K) and w (N, K) as 2-D (K, rows) maps, boxes 64 x 128, 128-byte swizzle */
};

template <int STAGES, bool BF16>
static __global__ void __launch_bounds__(384, 1) matmul_gelu_kernel_ws(const __grid_constant__ struct mmws_args w) {
    using C = mmws_cfg<STAGES>;
    constexpr int BM = C::BM, BN = C::BN;
    const struct mmwg_args & a = w.a;
    extern __shared__ __align__(128) unsigned char mmws_smem[];
    const uint32_t  raw  = attn_smem_u32(mmws_smem);
    unsigned char * sm   = mmws_smem + (((raw + 1023u) & ~1023u) - raw);
    const uint32_t  base = attn_smem_u32(sm);
    const uint32_t  full = base + C::BAR_OFF, empty = full + 8 * STAGES; /* slot s: full + 8 s, empty + 8 s */
    const int       tid = threadIdx.x;
    const int       nk = a.K / 64, tiles_n = a.N / BN, n_tiles = tiles_n * ((a.M + BM - 1) / BM);
    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) {
            mb_init(full + 8 * s, 1);
            mb_init(empty + 8 * s, 128);
        }
        mb_fence_init();
    }
    __syncthreads();

    if (tid < 128) { /* producer */
        wg_setmaxnreg_dec<24>();
        if (tid == 0) {
            int g = 0;
            for (int t = (int) blockIdx.x; t < n_tiles; t += (int) gridDim.x) {
                const int m0 = (t / tiles_n) * BM, n0 = (t % tiles_n) * BN;
                for (int kb = 0; kb < nk; kb++, g++) {
                    const int      s   = g % STAGES;
                    const uint32_t dst = base + (uint32_t) (s * C::STAGE_BYTES);
                    mb_wait(empty + 8 * s, (uint32_t) (((g / STAGES) & 1) ^ 1));
                    mb_arrive_tx(full + 8 * s, C::STAGE_BYTES);
                    tma_load_2d(dst, &w.mx, full + 8 * s, kb * 64, m0);
                    tma_load_2d(dst + C::A_BYTES, &w.mw, full + 8 * s, kb * 64, n0);
                }
            }
        }
        return;
    }

    wg_setmaxnreg_inc<240>();
    const int       c = (tid >> 7) - 1, ct = tid & 127, warp = ct >> 5, lane = tid & 31, gq = lane >> 2, t4 = lane & 3;
    unsigned char * out = sm + STAGES * C::STAGE_BYTES + c * C::OUT_BYTES;
    int             j   = 0;
    /* zeroed once, before any wgmma: the first k-step of each tile has scale-d 0 and never reads them (zeroing them
       per tile made ptxas serialize the wgmma, advisory C7515) */
    float acc[2][BN / 2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
#pragma unroll
        for (int i = 0; i < BN / 2; i++) acc[h][i] = 0.f;
    }
    for (int t = (int) blockIdx.x; t < n_tiles; t += (int) gridDim.x, j++) {
        if ((j & 1) != c) continue;
        const int m0 = (t / tiles_n) * BM, n0 = (t % tiles_n) * BN;
        if (j > 0) nbar_sync(3 + c, 256); /* the other warpgroup finished the main loop of tile j - 1 */
        for (int kb = 0; kb < nk; kb++) {
            const int g = j * nk + kb, s = g % STAGES;
            mb_wait(full + 8 * s, (uint32_t) ((g / STAGES) & 1));
            const uint32_t st = base + (uint32_t) (s * C::STAGE_BYTES);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    wg_mma_ss<BN, BF16>(acc[h], wg_desc(st + h * 64 * 128 + kk * 32, 16, 1024),
                                        wg_desc(st + C::A_BYTES + kk * 32, 16, 1024), kb > 0 || kk > 0);
                }
            }
            wg_commit();
            wg_wait<1>(); /* k-block kb - 1 is done: free its slot */
            if (kb > 0) mb_arrive(empty + 8 * ((g - 1) % STAGES));
        }
        wg_wait<0>();
        wg_fence_regs(acc[0]);
        wg_fence_regs(acc[1]);
        mb_arrive(empty + 8 * ((j * nk + nk - 1) % STAGES));
        if (t + (int) gridDim.x < n_tiles) nbar_arrive(4 - c, 256); /* the other warpgroup's tile j + 1 may start */

        /* epilogue: accumulator pair (4 i + 2 e, + 1) of half h at row 64 h + 16 warp + gq + 8 e, columns 8 i + 2 t4 */
        nbar_sync(1 + c, 128); /* the previous tile's stores have read the staging buffer */
        constexpr int RB = BN * 2;
#pragma unroll
        for (int i = 0; i < BN / 8; i++) {
            const int col = i * 8 + 2 * t4;
            float2    bv  = make_float2(0.f, 0.f);
            if (a.bias) bv = mmwg_load2<BF16>(a.bias + (int64_t) (n0 + col) * 2);
#pragma unroll
            for (int h = 0; h < 2; h++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int      r = h * 64 + warp * 16 + gq + 8 * e; /* r & 7 == gq */
                    const uint32_t u = mm_bias_gelu2<BF16>(acc[h][4 * i + 2 * e], acc[h][4 * i + 2 * e + 1], bv);
                    *reinterpret_cast<uint32_t *>(out + r * RB + ((i ^ gq) << 4) + 4 * t4) = u;
                }
            }
        }
        nbar_sync(1 + c, 128);
        mm_store_staged<BM, BN>(out, a, m0, n0, ct, 128);
    }
}

/* ---- v5: mma.sync (sm_80 and newer) ---------------------------------------------------------------- */

template <int STAGES> struct mmma_cfg {
    static constexpr int BM          = 128;
    static constexpr int BN          = 128;
    static constexpr int THREADS     = 256;
    static constexpr int A_BYTES     = BM * 128; /* 64 16-bit columns, 128-byte rows */
    static constexpr int B_BYTES     = BN * 128;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    static constexpr int SMEM        = STAGES * STAGE_BYTES; /* the swizzle is ours: 128-byte alignment is enough */
    static_assert(STAGES >= 2, "stages");
    static_assert(BM * BN * 2 <= STAGES * STAGE_BYTES, "the output tile fits in the stages");
};

/*
 * One CTA per (128 x 128) output tile, grid (N / 128, ceil(M / 128)). Warp w computes rows [64 (w / 4), +64) and
 * columns [32 (w % 4), +32) of the tile: 4 x 4 mma tiles of 16 x 8, accumulator acc[mt][nt] (attn_mma's layout: c0,
 * c1 row g, columns 2t, 2t + 1; c2, c3 row g + 8). Fragments (lane l): the x matrix of m16 tile mt at k-step kk is
 * one ldmatrix.x4 whose matrix i = l / 8 is rows 8 (i % 2) .. + 7 and 16-byte chunk 2 kk + i / 2, which is mma's a0..a3
 * order; the w matrices of n8 tiles 2 np, 2 np + 1 are one ldmatrix.x4, matrix i rows (n) 8 (i / 2) .. + 7, chunk
 * 2 kk + i % 2: b0, b1 of tile 2 np, then of tile 2 np + 1 (w rows are K-contiguous, as mma's "col" B wants).
 */
template <int STAGES, bool BF16>
static __global__ void __launch_bounds__(256, 2) matmul_gelu_kernel_mma(const struct mmwg_args a) {
    using C = mmma_cfg<STAGES>;
    constexpr int BM = C::BM, BN = C::BN;
    extern __shared__ __align__(128) unsigned char mmma_smem[];
    const uint32_t sbase = attn_smem_u32(mmma_smem);
    const int      tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int      wm = warp >> 2, wn = warp & 3;
    const int      m0 = (int) blockIdx.y * BM, n0 = (int) blockIdx.x * BN, nk = a.K / 64;

    auto load = [&](int kb) {
        unsigned char * s = mmma_smem + (kb % STAGES) * C::STAGE_BYTES;
        wg_load_tile<BM, 8, C::THREADS>(s, a.x + (int64_t) kb * 128, a.ldx, m0, a.M, tid);
        wg_load_tile<BN, 8, C::THREADS>(s + C::A_BYTES, a.w + (int64_t) kb * 128, a.ldw, n0, a.N, tid);
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nk) load(s);
        attn_cp_async_commit<false>(); /* empty past the end: the wait count stays */
    }

    /* this lane's ldmatrix row addresses inside a stage (before the chunk): x rows, w rows; both have row & 7 ==
       lane & 7, the swizzle key */
    const int      key = lane & 7;
    const uint32_t a_row = (uint32_t) ((wm * 64 + key + ((lane >> 3) & 1) * 8) * 128);
    const int      a_chunk = lane >> 4;
    const uint32_t b_row = (uint32_t) (C::A_BYTES + (wn * 32 + key + (lane >> 4) * 8) * 128);
    const int      b_chunk = (lane >> 3) & 1;

    float acc[4][4][4];
#pragma unroll
    for (int mt = 0; mt < 4; mt++) {
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.f;
        }
    }

    for (int kb = 0; kb < nk; kb++) {
        attn_cp_async_wait<STAGES - 2, false>(); /* this thread's copies of k-block kb landed */
        __syncthreads(); /* everyone's; and every warp is done with k-block kb - 1's stage */
        if (kb + STAGES - 1 < nk) load(kb + STAGES - 1);
        attn_cp_async_commit<false>();
        const uint32_t st = sbase + (uint32_t) ((kb % STAGES) * C::STAGE_BYTES);
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            uint32_t af[4][4], bf[2][4];
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                attn_ldsm_x4(af[mt], st + a_row + (uint32_t) (mt * 16 * 128) + (uint32_t) (((2 * kk + a_chunk) ^ key) << 4));
            }
#pragma unroll
            for (int np = 0; np < 2; np++) {
                attn_ldsm_x4(bf[np], st + b_row + (uint32_t) (np * 16 * 128) + (uint32_t) (((2 * kk + b_chunk) ^ key) << 4));
            }
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    attn_mma<BF16, false>(acc[mt][nt], af[mt], bf[nt >> 1][(nt & 1) * 2], bf[nt >> 1][(nt & 1) * 2 + 1]);
                }
            }
        }
    }

    /* epilogue: bias, GELU, one rounding; the 128 x 128 output staged in the first 32 KB (every stage is free after
       the wait and the barrier), row r of 16 chunks of 16 bytes, chunk j at j ^ (r & 7): the 8 rows of one store
       instruction hit 8 different bank groups; then 16-byte coalesced stores of the rows below M */
    attn_cp_async_wait<0, false>();
    __syncthreads();
    constexpr int RB = BN * 2;
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        const int col = wn * 32 + nt * 8 + 2 * t, j = col >> 3;
        float2    b   = make_float2(0.f, 0.f);
        if (a.bias) b = mmwg_load2<BF16>(a.bias + (int64_t) (n0 + col) * 2);
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int      r = wm * 64 + mt * 16 + g + 8 * h; /* r & 7 == g */
                const uint32_t u = mm_bias_gelu2<BF16>(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1], b);
                *reinterpret_cast<uint32_t *>(mmma_smem + r * RB + ((j ^ g) << 4) + 4 * t) = u;
            }
        }
    }
    __syncthreads();
    mm_store_staged<BM, BN>(mmma_smem, a, m0, n0, tid, C::THREADS);
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* the default: v6 (measured on an H200: 1.16-1.19x the cuBLASLt GEMM + GELU pass on the BERT-base FFN-up shape, BERT-base
 * forward 1.07x; docs/PERF.md); devices it does not take (not sm_90) fall back to variant 1 call by call */
static struct rk_variant_knob mmgelu_knob = RK_VARIANT_KNOB("RK_MATMUL_GELU_VARIANT", "cuda matmul gelu",
                                                            RK_MATMUL_GELU_N_VARIANTS, 6);
static uint64_t               mmwg_calls;

extern "C" int rk_cuda_matmul_gelu_variant(void) { return rk_variant_knob_get(&mmgelu_knob); }

extern "C" enum rk_status rk_cuda_matmul_gelu_set_variant(int variant) {
    return rk_variant_knob_set(&mmgelu_knob, variant);
}

extern "C" const char * rk_cuda_matmul_gelu_variant_name(int variant) {
    static const char * const names[RK_MATMUL_GELU_N_VARIANTS] = { "default",      "v1_cublaslt_pass",
                                                                   "v2_wg128x256", "v3_wg128x128",
                                                                   "v4_wg128x256_persistent", "v5_mma128x128",
                                                                   "v6_ws128x128_pingpong" };
    return variant >= 0 && variant < RK_MATMUL_GELU_N_VARIANTS ? names[variant] : "?";
}

extern "C" uint64_t rk_cuda_matmul_gelu_fused_calls(void) { return mmwg_calls; }

extern "C" int rk_cuda_matmul_gelu_tile_n(int variant) {
    return variant == 2 || variant == 4 ? 256 : variant == 3 || variant == 5 || variant == 6 ? 128 : 0;
}

/* Launches one instantiation: a grid of one CTA per tile, or (PERSIST) at most one per SM. */
template <int BN, int STAGES, int WAIT, bool PERSIST, bool BF16>
static void mmwg_launch(const struct mmwg_args & a, int n_sm, cudaStream_t stream) {
    using C = mmwg_cfg<BN, STAGES, WAIT>;
    RK_CUDA_CHECK(cudaFuncSetAttribute(matmul_gelu_kernel_wg<BN, STAGES, WAIT, PERSIST, BF16>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
    const int  tiles_n = a.N / BN, tiles_m = (a.M + C::BM - 1) / C::BM;
    const dim3 grid = PERSIST ? dim3((unsigned) (tiles_n * tiles_m < n_sm ? tiles_n * tiles_m : n_sm))
                              : dim3((unsigned) tiles_n, (unsigned) tiles_m);
    matmul_gelu_kernel_wg<BN, STAGES, WAIT, PERSIST, BF16><<<grid, C::THREADS, C::SMEM, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
}

/* A 2-D TMA map of (rows, K) 16-bit rows ld bytes apart, boxes of 64 columns x 128 rows (kernels/tma.cuh). */
static bool mmws_map(CUtensorMap * m, const char * p, bool bf16, int64_t rows, int64_t K, int64_t ld) {
    const int64_t  dims[2] = { K, rows }, strides[1] = { ld };
    const uint32_t box[2]  = { 64, 128 };
    return rk_tma_map_16bit(m, p, bf16, 2, dims, strides, box);
}

/* v6: a persistent grid of at most one CTA per SM; false (nothing launched) when the TMA maps cannot be made */
template <bool BF16> static bool mmws_launch(const struct mmwg_args & a, int n_sm, cudaStream_t stream) {
    using C = mmws_cfg<5>;
    struct mmws_args w;
    memset(&w, 0, sizeof(w));
    w.a = a;
    if (!mmws_map(&w.mx, a.x, BF16, a.M, a.K, a.ldx) || !mmws_map(&w.mw, a.w, BF16, a.N, a.K, a.ldw)) return false;
    RK_CUDA_CHECK(cudaFuncSetAttribute(matmul_gelu_kernel_ws<5, BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
    const int n_tiles = (a.N / C::BN) * ((a.M + C::BM - 1) / C::BM);
    const dim3 grid((unsigned) (n_tiles < n_sm ? n_tiles : n_sm));
    matmul_gelu_kernel_ws<5, BF16><<<grid, 384, C::SMEM, stream>>>(w);
    RK_CUDA_CHECK(cudaGetLastError());
    return true;
}

template <int STAGES, bool BF16> static void mmma_launch(const struct mmwg_args & a, cudaStream_t stream) {
    using C = mmma_cfg<STAGES>;
    if (C::SMEM > 48 * 1024) {
        RK_CUDA_CHECK(cudaFuncSetAttribute(matmul_gelu_kernel_mma<STAGES, BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           C::SMEM));
    }
    const dim3 grid((unsigned) (a.N / C::BN), (unsigned) ((a.M + C::BM - 1) / C::BM));
    matmul_gelu_kernel_mma<STAGES, BF16><<<grid, C::THREADS, C::SMEM, stream>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
}

template <int BN, int STAGES, int WAIT, bool PERSIST>
static void mmwg_launch(const struct mmwg_args & a, bool bf16, int n_sm, cudaStream_t stream) {
    if (bf16) {
        mmwg_launch<BN, STAGES, WAIT, PERSIST, true>(a, n_sm, stream);
    } else {
        mmwg_launch<BN, STAGES, WAIT, PERSIST, false>(a, n_sm, stream);
    }
}

extern "C" enum rk_status rk_cuda_matmul_gelu_fused(struct rk_tensor * dst, const struct rk_tensor * x,
                                                 const struct rk_tensor * w, const struct rk_tensor * bias,
                                                 int variant, cudaStream_t stream) {
    /* x (M,K) rows, w (N,K) rows, bias (N) or NULL, dst (M,N) rows */
    const int bn = rk_cuda_matmul_gelu_tile_n(variant);
    if (bn == 0) return rk_set_error(RK_STATUS_ARG, "matmul gelu fused: no fused variant %d", variant);
    const enum rk_dtype dt = x->dtype;
    if ((dt != RK_DTYPE_BF16 && dt != RK_DTYPE_F16) || w->dtype != dt || dst->dtype != dt || (bias && bias->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "matmul gelu fused: x, w, bias and dst must be all bf16 or all f16");
    }
    rk_rows rx, rw, rd;
    RK_TRY(rk_matmul_rows("matmul gelu fused", dst, x, w, bias, &rx, &rw, &rd));
    const int64_t M = rx.nrows, K = rx.ncols, N = rw.nrows;
    int cc = 0, smem_optin = 0;
    attn_device_caps(&cc, &smem_optin);
    const bool mma  = variant == 5;
    const int  smem = mma ? mmma_cfg<3>::SMEM : variant == 6 ? mmws_cfg<5>::SMEM
                      : bn == 256 ? mmwg_cfg<256, 4, 1>::SMEM : mmwg_cfg<128, 3, 0>::SMEM;
    if ((mma ? cc < 80 : cc != 90) || smem > smem_optin) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "matmul gelu fused: variant %d needs an sm_%s device with %d bytes "
                                                   "of shared memory per block (device sm_%d, %d)", variant,
                            mma ? "80 or newer" : "90", smem, cc, smem_optin);
    }
    if (K <= 0 || K % 64 != 0 || N <= 0 || N % bn != 0 || M > (int64_t) 65535 * 128 || K > INT32_MAX ||
        N / bn * ((M + 127) / 128) > INT32_MAX || rx.stride % 8 != 0 || rw.stride % 8 != 0 || rd.stride % 8 != 0 ||
        rk_ptr_align(x->data) < 16 || rk_ptr_align(w->data) < 16 || rk_ptr_align(dst->data) < 16 ||
        (bias && rk_ptr_align(bias->data) < 4)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "matmul gelu fused: needs K %% 64 == 0, N %% %d == 0, row strides of 8 "
                                                   "elements and 16-byte aligned data (M=%lld N=%lld K=%lld)", bn,
                            (long long) M, (long long) N, (long long) K);
    }
    if (M == 0) return RK_OK;

    struct mmwg_args a;
    memset(&a, 0, sizeof(a));
    a.x    = (const char *) x->data;
    a.w    = (const char *) w->data;
    a.bias = bias ? (const char *) bias->data : NULL;
    a.d    = (char *) dst->data;
    a.ldx  = rx.stride * 2;
    a.ldw  = rw.stride * 2;
    a.ldd  = rd.stride * 2;
    a.M    = (int) M;
    a.N    = (int) N;
    a.K    = (int) K;
    int n_sm = 0, dev = 0;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
    const bool bf16 = dt == RK_DTYPE_BF16;
    switch (variant) {
        case 6:
            if (!(bf16 ? mmws_launch<true>(a, n_sm, stream) : mmws_launch<false>(a, n_sm, stream))) {
                return rk_set_error(RK_STATUS_UNSUPPORTED, "matmul gelu fused: variant 6 could not make its TMA tensor "
                                                           "maps (cuTensorMapEncodeTiled unavailable or refused)");
            }
            break;
        case 5:
            if (bf16) {
                mmma_launch<3, true>(a, stream);
            } else {
                mmma_launch<3, false>(a, stream);
            }
            break;
        case 2: mmwg_launch<256, 4, 1, false>(a, bf16, n_sm, stream); break;
        case 3: mmwg_launch<128, 3, 0, false>(a, bf16, n_sm, stream); break;
        default: mmwg_launch<256, 4, 1, true>(a, bf16, n_sm, stream); break;
    }
    mmwg_calls++;
    return RK_OK;
}
