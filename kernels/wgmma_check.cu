/*
 * wgmma_check.cu: device self-test of the Hopper warpgroup-MMA primitives of kernels/wgmma.cuh, used exactly as the
 * attention kernel (kernels/attn.cu, attn_fwd_kernel_wg: variants 6, 7, 8) uses them, one small kernel per "combo",
 * each compared on the host with a double-precision product (C ABI: kernels/wgmma_check.h; test:
 * tests/test_wgmma.c). Meant for the first minutes on a real H100/H200: when the attention parity tests fail there,
 * the combo that fails names the primitive layout that the hardware reads differently from the emulator.
 *
 * The kernel (wgmma_check_kernel, one or two warpgroups) copies 16-bit row-major device matrices into
 * 1024-byte-aligned, 128-byte-swizzled shared tiles (wg_swz, panels of 64 columns, as wg_load_tile lays them
 * out, with plain 16-byte stores), then fence.proxy.async and a barrier, then:
 *   ss     D (64 x N) = [C +] A (64 x K) B^T, A and B (N x K) K-major, K = 128: eight wg_mma_ss<N> with
 *          wg_desc(addr + panel (kk / 4) + 32 (kk % 4) bytes, 16, 1024), i.e. k-steps inside a 128-byte row and
 *          across the two 64-column panels; N = 64, 128 and 256 (the GEMM of kernels/matmul_gelu.cu), bf16 and f16,
 *          scale-d 0 (D starts as NaN, the first k-step has scale-d 0, as S = Q K^T) and 1 (D starts as C, every
 *          k-step accumulates).
 *   rs     D (64 x N) = [C +] P (64 x K) V (K x N), K = 128 keys: P is loaded into an accumulator-layout register
 *          array (the "previous accumulator") and packed to 16-bit A fragments exactly as the attention kernel packs
 *          its P (attn_pack2; the accumulator of columns [16 kk, 16 kk + 16) is the A operand of k-step kk); V is
 *          MN-major, wg_mma_rs_tb<N> with wg_desc(v + 2048 kk, K * 128 (the 64-column panel stride), 1024);
 *          N = 64 and 128, bf16 and f16, scale-d 0 and 1.
 *   chain  the attention product without softmax: S = Q K^T (ss, scale-d 0 then 1), P = 16-bit(S) repacked in
 *          registers, O = 0 + P V (rs, scale-d 1), at the tile shapes of each wgmma variant: v6 (HS 64, BN 128;
 *          HS 128, BN 64), v7 (HS 64, BN 64; HS 128, BN 128), v8 (two warpgroups, 128 query rows, BN 64, HS 64 and
 *          128: warpgroup 1 reads Q from row 64 of a 128-row tile). S is checked first, then O.
 *   tma-pipe  D (128 x N) = A (128 x K) B (N x K)^T, K = 320 (5 k-blocks of 64 columns), the way a warp-specialized
 *          kernel runs (kernels/tma.cuh), with FA3's register split (384 threads, 168 registers each at launch):
 *          warpgroup 0 is the producer (setmaxnreg.dec 40; one thread waits on the stage's "empty" mbarrier,
 *          arrives on its "full" one with the bytes to expect, and loads the A and B tiles of the k-block with TMA,
 *          128-byte swizzle, 2-D tensor maps); warpgroups 1 and 2 the consumers (setmaxnreg.inc 232; rows 64 (wg - 1)
 *          of the tiles; wait on "full", four wg_mma_ss k-steps on the TMA-written tiles with wg_load_tile's
 *          descriptors, no fence.proxy.async, wait for them and arrive on "empty"); 2 stages, so each barrier goes
 *          through 3 phases and the parity rule is exercised; A has 110 rows in memory, so rows 110-127 of every A
 *          box come from TMA's out-of-bounds zero fill. N = 128, bf16 and f16.
 * Every product waits for its wgmma group (wg_fence before, wg_commit, wg_wait<0>, wg_fence_regs after) as
 * attn_fwd_kernel_wg does. Inputs are multiples of 1/4 in [-1, 1] (C: multiples of 1/2) drawn from a hash of the
 * position, so every product and partial sum is exact in fp32 (at most 21 significant bits) and the comparison is
 * exact whatever order the tensor cores sum in.
 *
 * Only compute capability 9.0 runs anything (the build compiles sm_90a there, where wgmma.cuh emits wgmma); the
 * other targets compile the same kernels with wgmma.cuh's trapping stubs and are never launched.
 *
 * test: build/tests/test_wgmma (RK_TEST_FILTER='combo=rs' selects combos), or under the emulator
 * build-emu/tests/test_wgmma (make emu-build).
 */
#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_tc.cuh"
#include "cuda_check.h"
#include "tma.cuh"
#include "wgmma.cuh"
#include "wgmma_check.h"

enum { WGC_SS = 0, WGC_RS, WGC_CHAIN, WGC_TMA };

/* Kernel arguments. q (BM, HS), k (BN, HS), v (BN, HS): 16-bit row-major; p (BM, BN) and c (BM, N): f32 row-major;
   s (BM, BN) and o (BM, HS): f32 outputs. */
struct wgc_args {
    const uint16_t * q;
    const uint16_t * k;
    const uint16_t * v;
    const float *    p;
    const float *    c;
    float *          s;
    float *          o;
    int              scale_d;
    int              defect;
};

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* ROWS rows of HS 16-bit elements (row-major, global) into a 128-byte-swizzled tile: chunk c of row r at
   wg_swz<ROWS>(r, c), the layout wg_load_tile writes with cp.async. */
template <int ROWS, int HS, int NT>
static __device__ __forceinline__ void wgc_load_tile(unsigned char * s, const uint16_t * g, int tid) {
    constexpr int CPR = HS / 8;
    for (int e = tid; e < ROWS * CPR; e += NT) {
        const int r = e / CPR, c = e % CPR;
        *reinterpret_cast<uint4 *>(s + wg_swz<ROWS>(r, c)) =
            *reinterpret_cast<const uint4 *>(g + (int64_t) r * HS + c * 8);
    }
}

/* Accumulator element i of a 64 x N tile for thread (w, g, tig) of its warpgroup: row 16 w + g + 8 ((i / 2) % 2),
   column 8 (i / 4) + 2 tig + (i % 2) (wgmma.cuh header). */
static __device__ __forceinline__ int wgc_row(int wrow, int g, int i) { return wrow + g + 8 * ((i / 2) % 2); }
static __device__ __forceinline__ int wgc_col(int tig, int i) { return 8 * (i / 4) + 2 * tig + (i % 2); }

/*
 * MODE ss: s = [c +] q k^T (N = BN, K = HS = 128). MODE rs: o = [c +] p v (N = HS, K = BN = 128). MODE chain:
 * s = q k^T, o = 16-bit(s) v. Block 128 NWG threads; warp w owns rows 16 w .. 16 w + 15 of the BM = 64 NWG rows
 * (as in attn_fwd_kernel_wg). Dynamic shared memory: 1 KB of alignment slack, then the tiles sQ (BM x HS), sK
 * (BN x HS) unless rs, sV (BN x HS) unless ss.
 */
template <int MODE, int NWG, int HS, int BN, bool BF16>
static __global__ void __launch_bounds__(128 * NWG) wgmma_check_kernel(const struct wgc_args a) {
    constexpr int BM = 64 * NWG, NT = 128 * NWG;
    constexpr int Q_BYTES = MODE == WGC_RS ? 0 : BM * HS * 2, K_BYTES = MODE == WGC_RS ? 0 : BN * HS * 2;
    static_assert(Q_BYTES % 1024 == 0 && K_BYTES % 1024 == 0, "tiles stay 1024-byte aligned");
    extern __shared__ __align__(128) unsigned char wgc_smem[];
    const uint32_t  raw = attn_smem_u32(wgc_smem);
    unsigned char * sQ  = wgc_smem + (((raw + 1023u) & ~1023u) - raw);
    unsigned char * sK  = sQ + Q_BYTES;
    unsigned char * sV  = sK + K_BYTES;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int wrow = warp * 16;

    if constexpr (MODE != WGC_RS) {
        wgc_load_tile<BM, HS, NT>(sQ, a.q, tid);
        wgc_load_tile<BN, HS, NT>(sK, a.k, tid);
    }
    if constexpr (MODE != WGC_SS) wgc_load_tile<BN, HS, NT>(sV, a.v, tid);
    wg_fence_proxy_async(); /* this thread's st.shared visible to wgmma once the barrier has passed */
    __syncthreads();

    const float qnan = __int_as_float(0x7fc00000);
    float       s[BN / 2];
    if constexpr (MODE != WGC_RS) {
        /* S = Q K^T as attn_fwd_kernel_wg: k-step kk reads 32 bytes at byte (kk % 4) * 32 of the rows of panel
           kk / 4; Q panels are BM rows apart, warpgroup wg reads Q from row 64 wg */
        const bool     init_c = MODE == WGC_SS && a.scale_d;
#pragma unroll
        for (int i = 0; i < BN / 2; i++) s[i] = init_c ? a.c[wgc_row(wrow, g, i) * BN + wgc_col(tig, i)] : qnan;
        const uint32_t sbo    = a.defect == RK_WGMMA_DEFECT_SBO ? 512 : 1024;
        const uint32_t q_addr = attn_smem_u32(sQ) + (uint32_t) (warp >> 2) * 64 * 128;
        const uint32_t k_addr = attn_smem_u32(sK);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < HS / 16; kk++) {
            const uint32_t koff = (uint32_t) ((kk & 3) * 32);
            wg_mma_ss<BN, BF16>(s, wg_desc(q_addr + (kk >> 2) * BM * 128 + koff, 16, sbo),
                                wg_desc(k_addr + (kk >> 2) * BN * 128 + koff, 16, sbo), init_c || kk > 0);
        }
        wg_commit();
        wg_wait<0>();
        wg_fence_regs(s);
#pragma unroll
        for (int i = 0; i < BN / 2; i++) a.s[wgc_row(wrow, g, i) * BN + wgc_col(tig, i)] = s[i];
    }

    if constexpr (MODE != WGC_SS) {
        if constexpr (MODE == WGC_RS) { /* the "previous accumulator": P in the accumulator layout of 64 x BN */
#pragma unroll
            for (int i = 0; i < BN / 2; i++) s[i] = a.p[wgc_row(wrow, g, i) * BN + wgc_col(tig, i)];
        }
        /* P packed to 16 bits as attn_fwd_kernel_wg packs it: pa[kk] = {(g, tile 2kk), (g+8, tile 2kk),
           (g, tile 2kk+1), (g+8, tile 2kk+1)} */
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int r = 0; r < 2; r++) {
#pragma unroll
            for (int j = 0; j < BN / 8; j++) pa[j / 2][(j % 2) * 2 + r] = attn_pack2<BF16>(s[j * 4 + 2 * r], s[j * 4 + 2 * r + 1]);
        }
        if (a.defect == RK_WGMMA_DEFECT_PACK) {
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                const uint32_t t = pa[kk][1];
                pa[kk][1]        = pa[kk][2];
                pa[kk][2]        = t;
            }
        }
        if constexpr (MODE == WGC_RS) {
            /* pins the fragments (loaded from global memory here) before the wgmma.fence below, as P's are in the
               chain; else ptxas sinks the loads between the wgmma and injects a warpgroup.arrive before each */
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
#pragma unroll
                for (int r = 0; r < 4; r++) asm volatile("" : "+r"(pa[kk][r])::"memory");
            }
        }
        /* O (+)= P V: k-step kk is keys [16 kk, 16 kk + 16), 2048 bytes further; V's 64-column panels are BN * 128
           bytes apart (LBO), 8-key groups 1024 (SBO). The chain starts from O = 0 and accumulates, as attention. */
        const bool init_c = MODE == WGC_RS && a.scale_d;
        float      o[HS / 2];
#pragma unroll
        for (int i = 0; i < HS / 2; i++) {
            o[i] = MODE == WGC_CHAIN ? 0.f : init_c ? a.c[wgc_row(wrow, g, i) * HS + wgc_col(tig, i)] : qnan;
        }
        const uint32_t kstep  = a.defect == RK_WGMMA_DEFECT_RS_KSTEP ? 1024 : 2048;
        const uint32_t lbo    = a.defect == RK_WGMMA_DEFECT_RS_LBO ? BN * 64 : BN * 128;
        const uint32_t v_addr = attn_smem_u32(sV);
        wg_fence_regs(o);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            wg_mma_rs_tb<HS, BF16>(o, pa[kk], wg_desc(v_addr + kk * kstep, lbo, 1024),
                                   MODE == WGC_CHAIN || init_c || kk > 0);
        }
        wg_commit();
        wg_wait<0>();
        wg_fence_regs(o);
#pragma unroll
        for (int i = 0; i < HS / 2; i++) a.o[wgc_row(wrow, g, i) * HS + wgc_col(tig, i)] = o[i];
    }
}


/* ---- tma-pipe ---- */

#define WGC_TMA_M  110 /* rows of A in memory (the box has 128) */
#define WGC_TMA_K  320
#define WGC_TMA_KB (WGC_TMA_K / 64)

struct wgc_tma_args {
    CUtensorMap ma, mb; /* A (WGC_TMA_M x K) and B (N x K), 16-bit row-major; boxes 128 x 64 and N x 64 */
    float *     d;      /* (128 x N) f32 */
    int         defect;
};

template <int N, bool BF16>
static __global__ void __launch_bounds__(384, 1) wgmma_check_tma_kernel(const __grid_constant__ struct wgc_tma_args a) {
    constexpr int A_BYTES = 128 * 128, B_BYTES = N * 128, STAGE = A_BYTES + B_BYTES;
    extern __shared__ __align__(128) unsigned char wgc_smem[];
    const uint32_t  raw  = attn_smem_u32(wgc_smem);
    unsigned char * sm   = wgc_smem + (((raw + 1023u) & ~1023u) - raw);
    const uint32_t  base = attn_smem_u32(sm);
    const uint32_t  full = base + 2 * STAGE, empty = full + 16; /* stage s: full + 8 s, empty + 8 s */
    const int       tid  = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < 2; s++) {
            mb_init(full + 8 * s, 1);
            mb_init(empty + 8 * s, 256);
        }
        mb_fence_init();
    }
    __syncthreads();
    if (tid < 128) { /* producer warpgroup: one thread issues */
        wg_setmaxnreg_dec<40>();
        if (tid == 0) {
            for (int kb = 0; kb < WGC_TMA_KB; kb++) {
                const int s = kb & 1, use = kb >> 1;
                mb_wait(empty + 8 * s, (uint32_t) ((use & 1) ^ 1)); /* the first use of a stage passes at once */
                mb_arrive_tx(full + 8 * s, STAGE);
                const int ca = kb * 64 + (a.defect == RK_WGMMA_DEFECT_TMA_COORD ? 8 : 0);
                tma_load_2d(base + s * STAGE, &a.ma, full + 8 * s, ca, 0);
                tma_load_2d(base + s * STAGE + A_BYTES, &a.mb, full + 8 * s, kb * 64, 0);
            }
        }
        return;
    }
    wg_setmaxnreg_inc<232>();
    const int wg = (tid >> 7) - 1, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    float     d[N / 2];
#pragma unroll
    for (int i = 0; i < N / 2; i++) d[i] = 0.f;
    for (int kb = 0; kb < WGC_TMA_KB; kb++) {
        const int s = kb & 1, use = kb >> 1;
        mb_wait(full + 8 * s, (uint32_t) (use & 1));
        const uint32_t sa = base + s * STAGE + wg * 64 * 128, sb = base + s * STAGE + A_BYTES;
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            wg_mma_ss<N, BF16>(d, wg_desc(sa + kk * 32, 16, 1024), wg_desc(sb + kk * 32, 16, 1024), kb > 0 || kk > 0);
        }
        wg_commit();
        wg_wait<0>();
        wg_fence_regs(d);
        mb_arrive(empty + 8 * s); /* this thread is done reading the stage */
    }
#pragma unroll
    for (int i = 0; i < N / 2; i++) a.d[wgc_row(wg * 64 + warp * 16, g, i) * N + wgc_col(tig, i)] = d[i];
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

struct wgc_combo;
typedef enum rk_status (*wgc_run_fn)(const struct wgc_combo * cb, int defect, char * msg, size_t msg_len);

struct wgc_combo {
    const char * name;
    int          mode, nwg, hs, bn; /* ss: K = hs (128), N = bn; rs: K = bn (128), N = hs */
    bool         bf16;
    int          scale_d;
    wgc_run_fn   run;
};

/* A value in {-1, -3/4, ..., 1} (scale 1/4) or a multiple of 1/2 in [-4, 4] (scale 1/2), from a hash of
   (matrix, row, col): no two matrices, rows or 16-byte chunks look alike, so a misplaced element shows. */
static float wgc_val(uint32_t mat, int r, int c, float scale, int range) {
    uint64_t z = ((uint64_t) mat << 40) ^ ((uint64_t) (uint32_t) r << 20) ^ (uint64_t) (uint32_t) c;
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float) ((int) (z % (uint64_t) (2 * range + 1)) - range) * scale;
}

static uint16_t wgc_to16(bool bf16, float f) { return bf16 ? rk_f32_to_bf16(f) : rk_f32_to_f16(f); }
static float    wgc_from16(bool bf16, uint16_t h) { return bf16 ? rk_bf16_to_f32(h) : rk_f16_to_f32(h); }

static void wgc_msg(char * msg, size_t msg_len, const char * fmt, ...) {
    if (!msg || msg_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
}

/* Counts the elements of got (rows x cols) that differ from want (bit for bit as floats; NaN never matches) and
   describes the first in buf. Returns the count. */
static int64_t wgc_compare(const char * what, const float * got, const double * want, int rows, int cols, char * buf,
                           size_t n) {
    int64_t bad = 0;
    for (int i = 0; i < rows * cols; i++) {
        if (got[i] == (float) want[i]) continue;
        if (bad == 0) {
            const int r = i / cols, c = i % cols;
            snprintf(buf, n, "%s[%d][%d] = %.9g, want %.9g (warpgroup %d, warp %d, g %d, tig %d)", what, r, c,
                     (double) got[i], want[i], r / 64, (r % 64) / 16, r % 8, (c % 8) / 2);
        }
        bad++;
    }
    return bad;
}

template <int MODE, int NWG, int HS, int BN, bool BF16>
static enum rk_status wgc_run(const struct wgc_combo * cb, int defect, char * msg, size_t msg_len) {
    constexpr int BM   = 64 * NWG;
    constexpr int NC   = MODE == WGC_SS ? BN : HS; /* columns of C */
    constexpr int SMEM = 1024 + (MODE == WGC_RS ? 0 : (BM + BN) * HS * 2) + (MODE == WGC_SS ? 0 : BN * HS * 2);
    const bool    bf16 = BF16;

    int dev = 0, optin = 0;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (SMEM > optin) {
        wgc_msg(msg, msg_len, "%s needs %d bytes of shared memory, the device allows %d", cb->name, SMEM, optin);
        return rk_set_error(RK_STATUS_UNSUPPORTED, "wgmma_check: %s needs %d bytes of shared memory, device allows %d",
                            cb->name, SMEM, optin);
    }

    /* host inputs (16-bit as the device holds them, and their values) */
    const size_t nq = (size_t) BM * HS, nk = (size_t) BN * HS, np = (size_t) BM * BN, nc = (size_t) BM * NC;
    uint16_t *   q16 = (uint16_t *) malloc(nq * 2), *k16 = (uint16_t *) malloc(nk * 2), *v16 = (uint16_t *) malloc(nk * 2);
    float *      qf = (float *) malloc(nq * 4), *kf = (float *) malloc(nk * 4), *vf = (float *) malloc(nk * 4);
    float *      pf = (float *) malloc(np * 4), *cf = (float *) malloc(nc * 4);
    float *      s_got = (float *) malloc(np * 4), *o_got = (float *) malloc((size_t) BM * HS * 4);
    double *     s_want = (double *) malloc(np * 8), *o_want = (double *) malloc((size_t) BM * HS * 8);
    if (!q16 || !k16 || !v16 || !qf || !kf || !vf || !pf || !cf || !s_got || !o_got || !s_want || !o_want) {
        RK_ASSERT(!"wgmma_check: out of host memory");
    }
    for (int r = 0; r < BM; r++) {
        for (int c = 0; c < HS; c++) {
            q16[r * HS + c] = wgc_to16(bf16, wgc_val(1, r, c, 0.25f, 4));
            qf[r * HS + c]  = wgc_from16(bf16, q16[r * HS + c]);
        }
    }
    for (int r = 0; r < BN; r++) {
        for (int c = 0; c < HS; c++) {
            k16[r * HS + c] = wgc_to16(bf16, wgc_val(2, r, c, 0.25f, 4));
            kf[r * HS + c]  = wgc_from16(bf16, k16[r * HS + c]);
            v16[r * HS + c] = wgc_to16(bf16, wgc_val(3, r, c, 0.25f, 4));
            vf[r * HS + c]  = wgc_from16(bf16, v16[r * HS + c]);
        }
    }
    for (size_t i = 0; i < np; i++) pf[i] = wgc_val(4, (int) (i / BN), (int) (i % BN), 0.25f, 4);
    for (size_t i = 0; i < nc; i++) cf[i] = wgc_val(5, (int) (i / NC), (int) (i % NC), 0.5f, 8);

    /* the host's products in double (exact) */
    const int scale_d = cb->scale_d;
    if (MODE != WGC_RS) { /* S[m][n] = [C +] sum_k Q[m][k] K[n][k] */
        for (int m = 0; m < BM; m++) {
            for (int n = 0; n < BN; n++) {
                double acc = MODE == WGC_SS && scale_d ? (double) cf[m * NC + n] : 0.0;
                for (int kx = 0; kx < HS; kx++) acc += (double) qf[m * HS + kx] * (double) kf[n * HS + kx];
                s_want[m * BN + n] = acc;
            }
        }
    }
    if (MODE != WGC_SS) { /* O[m][n] = [C +] sum_key P[m][key] V[key][n], P = 16-bit(S) in the chain */
        for (int m = 0; m < BM; m++) {
            for (int n = 0; n < HS; n++) {
                double acc = MODE == WGC_RS && scale_d ? (double) cf[m * NC + n] : 0.0;
                for (int j = 0; j < BN; j++) {
                    const float p = MODE == WGC_RS ? pf[m * BN + j] : wgc_from16(bf16, wgc_to16(bf16, (float) s_want[m * BN + j]));
                    acc += (double) p * (double) vf[j * HS + n];
                }
                o_want[m * HS + n] = acc;
            }
        }
    }

    /* device buffers; the outputs start as NaN (0xFF bytes), so an element never written cannot match */
    uint16_t *q_dev = NULL, *k_dev = NULL, *v_dev = NULL;
    float *   p_dev = NULL, *c_dev = NULL, *s_dev = NULL, *o_dev = NULL;
    RK_CUDA_CHECK(cudaMalloc((void **) &q_dev, nq * 2));
    RK_CUDA_CHECK(cudaMalloc((void **) &k_dev, nk * 2));
    RK_CUDA_CHECK(cudaMalloc((void **) &v_dev, nk * 2));
    RK_CUDA_CHECK(cudaMalloc((void **) &p_dev, np * 4));
    RK_CUDA_CHECK(cudaMalloc((void **) &c_dev, nc * 4));
    RK_CUDA_CHECK(cudaMalloc((void **) &s_dev, np * 4));
    RK_CUDA_CHECK(cudaMalloc((void **) &o_dev, (size_t) BM * HS * 4));
    RK_CUDA_CHECK(cudaMemcpy(q_dev, q16, nq * 2, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemcpy(k_dev, k16, nk * 2, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemcpy(v_dev, v16, nk * 2, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemcpy(p_dev, pf, np * 4, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemcpy(c_dev, cf, nc * 4, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemset(s_dev, 0xFF, np * 4));
    RK_CUDA_CHECK(cudaMemset(o_dev, 0xFF, (size_t) BM * HS * 4));

    struct wgc_args a;
    a.q = q_dev; a.k = k_dev; a.v = v_dev; a.p = p_dev; a.c = c_dev; a.s = s_dev; a.o = o_dev;
    a.scale_d = scale_d;
    a.defect  = defect;
    RK_CUDA_CHECK(cudaFuncSetAttribute(wgmma_check_kernel<MODE, NWG, HS, BN, BF16>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
    wgmma_check_kernel<MODE, NWG, HS, BN, BF16><<<1, 128 * NWG, SMEM>>>(a);
    RK_CUDA_CHECK(cudaGetLastError());
    RK_CUDA_CHECK(cudaDeviceSynchronize());
    RK_CUDA_CHECK(cudaMemcpy(s_got, s_dev, np * 4, cudaMemcpyDeviceToHost));
    RK_CUDA_CHECK(cudaMemcpy(o_got, o_dev, (size_t) BM * HS * 4, cudaMemcpyDeviceToHost));
    RK_CUDA_FREE(q_dev);
    RK_CUDA_FREE(k_dev);
    RK_CUDA_FREE(v_dev);
    RK_CUDA_FREE(p_dev);
    RK_CUDA_FREE(c_dev);
    RK_CUDA_FREE(s_dev);
    RK_CUDA_FREE(o_dev);

    char    s_first[256] = "", o_first[256] = "";
    int64_t s_bad = 0, o_bad = 0;
    if (MODE != WGC_RS) s_bad = wgc_compare(MODE == WGC_SS ? "D" : "S", s_got, s_want, BM, BN, s_first, sizeof(s_first));
    if (MODE != WGC_SS) o_bad = wgc_compare(MODE == WGC_CHAIN ? "O" : "D", o_got, o_want, BM, HS, o_first, sizeof(o_first));
    free(q16); free(k16); free(v16); free(qf); free(kf); free(vf); free(pf); free(cf);
    free(s_got); free(o_got); free(s_want); free(o_want);

    /* one line: what ran, and the first mismatch of S (D for ss) before O (D for rs) */
    char         line[768];
    const char * dn = defect ? rk_cuda_wgmma_defect_name(defect) : "";
    const char * dw = defect ? " with defect " : "";
    if (s_bad == 0 && o_bad == 0) {
        snprintf(line, sizeof(line), "%s%s%s: %s%d x %d matches the host bit for bit", cb->name, dw, dn,
                 MODE == WGC_CHAIN ? "S and O of " : "", BM, MODE == WGC_SS ? BN : HS);
        wgc_msg(msg, msg_len, "%s", line);
        return RK_OK;
    }
    if (s_bad) {
        snprintf(line, sizeof(line), "%s%s%s: %s; %lld of %d elements differ%s", cb->name, dw, dn, s_first,
                 (long long) s_bad, BM * BN, MODE == WGC_CHAIN ? (o_bad ? " (O differs too)" : " (O matches)") : "");
    } else {
        snprintf(line, sizeof(line), "%s%s%s: %s; %lld of %d elements differ%s", cb->name, dw, dn, o_first,
                 (long long) o_bad, BM * HS, MODE == WGC_CHAIN ? " (S = Q K^T matches: the P repack or P V is wrong)" : "");
    }
    wgc_msg(msg, msg_len, "%s", line);
    return rk_set_error(RK_STATUS_DEVICE, "wgmma_check: %s", line);
}


/* A 2-D map of a row-major (rows x cols) 16-bit matrix, boxes of box_rows x 64 columns (kernels/tma.cuh). */
static bool wgc_tma_map(CUtensorMap * m, void * p, bool bf16, int rows, int cols, int box_rows) {
    const int64_t  dims[2] = { cols, rows }, strides[1] = { (int64_t) cols * 2 };
    const uint32_t box[2]  = { 64, (uint32_t) box_rows };
    return rk_tma_map_16bit(m, p, bf16, 2, dims, strides, box);
}

template <int N, bool BF16>
static enum rk_status wgc_run_tma(const struct wgc_combo * cb, int defect, char * msg, size_t msg_len) {
    constexpr int SMEM = 1024 + 2 * (128 + N) * 128 + 64;
    const bool    bf16 = BF16;
    const int     M = WGC_TMA_M, K = WGC_TMA_K;
    uint16_t *    a16 = (uint16_t *) malloc((size_t) M * K * 2), *b16 = (uint16_t *) malloc((size_t) N * K * 2);
    float *       d_got  = (float *) malloc((size_t) 128 * N * 4);
    double *      d_want = (double *) malloc((size_t) 128 * N * 8);
    if (!a16 || !b16 || !d_got || !d_want) RK_ASSERT(!"wgmma_check: out of host memory");
    for (int i = 0; i < M * K; i++) a16[i] = wgc_to16(bf16, wgc_val(6, i / K, i % K, 0.25f, 4));
    for (int i = 0; i < N * K; i++) b16[i] = wgc_to16(bf16, wgc_val(7, i / K, i % K, 0.25f, 4));
    for (int m = 0; m < 128; m++) {
        for (int n = 0; n < N; n++) {
            double acc = 0.0; /* rows past M: TMA fills zeros */
            for (int k = 0; m < M && k < K; k++) {
                acc += (double) wgc_from16(bf16, a16[m * K + k]) * (double) wgc_from16(bf16, b16[n * K + k]);
            }
            d_want[m * N + n] = acc;
        }
    }
    uint16_t *a_dev = NULL, *b_dev = NULL;
    float *   d_dev = NULL;
    RK_CUDA_CHECK(cudaMalloc((void **) &a_dev, (size_t) M * K * 2));
    RK_CUDA_CHECK(cudaMalloc((void **) &b_dev, (size_t) N * K * 2));
    RK_CUDA_CHECK(cudaMalloc((void **) &d_dev, (size_t) 128 * N * 4));
    RK_CUDA_CHECK(cudaMemcpy(a_dev, a16, (size_t) M * K * 2, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemcpy(b_dev, b16, (size_t) N * K * 2, cudaMemcpyHostToDevice));
    RK_CUDA_CHECK(cudaMemset(d_dev, 0xFF, (size_t) 128 * N * 4));
    struct wgc_tma_args a;
    memset(&a, 0, sizeof(a));
    a.d      = d_dev;
    a.defect = defect;
    enum rk_status st = RK_OK;
    if (!wgc_tma_map(&a.ma, a_dev, bf16, M, K, 128) || !wgc_tma_map(&a.mb, b_dev, bf16, N, K, N)) {
        wgc_msg(msg, msg_len, "%s: cuTensorMapEncodeTiled is not available or refused the maps", cb->name);
        st = rk_set_error(RK_STATUS_UNSUPPORTED, "wgmma_check: %s: cuTensorMapEncodeTiled unavailable or refused", cb->name);
    } else {
        RK_CUDA_CHECK(cudaFuncSetAttribute(wgmma_check_tma_kernel<N, BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
        wgmma_check_tma_kernel<N, BF16><<<1, 384, SMEM>>>(a);
        RK_CUDA_CHECK(cudaGetLastError());
        RK_CUDA_CHECK(cudaDeviceSynchronize());
        RK_CUDA_CHECK(cudaMemcpy(d_got, d_dev, (size_t) 128 * N * 4, cudaMemcpyDeviceToHost));
        char          first[256] = "";
        const int64_t bad        = wgc_compare("D", d_got, d_want, 128, N, first, sizeof(first));
        const char *  dn = defect ? rk_cuda_wgmma_defect_name(defect) : "", *dw = defect ? " with defect " : "";
        if (bad == 0) {
            wgc_msg(msg, msg_len, "%s%s%s: 128 x %d over %d TMA-loaded k-blocks matches the host bit for bit", cb->name, dw,
                    dn, N, WGC_TMA_KB);
        } else {
            wgc_msg(msg, msg_len, "%s%s%s: %s; %lld of %d elements differ", cb->name, dw, dn, first, (long long) bad, 128 * N);
            st = rk_set_error(RK_STATUS_DEVICE, "wgmma_check: %s: %lld elements differ", cb->name, (long long) bad);
        }
    }
    RK_CUDA_FREE(a_dev);
    RK_CUDA_FREE(b_dev);
    RK_CUDA_FREE(d_dev);
    free(a16); free(b16); free(d_got); free(d_want);
    return st;
}

#define WGC_SS_COMBOS(N, BF, DT)                                                                              \
    { "ss,N=" #N ",K=128," DT ",scale_d=0", WGC_SS, 1, 128, N, BF, 0, wgc_run<WGC_SS, 1, 128, N, BF> },       \
    { "ss,N=" #N ",K=128," DT ",scale_d=1", WGC_SS, 1, 128, N, BF, 1, wgc_run<WGC_SS, 1, 128, N, BF> }
#define WGC_RS_COMBOS(N, BF, DT)                                                                              \
    { "rs,N=" #N ",K=128," DT ",scale_d=0", WGC_RS, 1, N, 128, BF, 0, wgc_run<WGC_RS, 1, N, 128, BF> },       \
    { "rs,N=" #N ",K=128," DT ",scale_d=1", WGC_RS, 1, N, 128, BF, 1, wgc_run<WGC_RS, 1, N, 128, BF> }
#define WGC_CHAIN_COMBOS(V, NWG, HS, BN)                                                                      \
    { "chain-v" #V ",HS=" #HS ",BN=" #BN ",bf16", WGC_CHAIN, NWG, HS, BN, true, 1,                           \
      wgc_run<WGC_CHAIN, NWG, HS, BN, true> },                                                                \
    { "chain-v" #V ",HS=" #HS ",BN=" #BN ",f16", WGC_CHAIN, NWG, HS, BN, false, 1,                           \
      wgc_run<WGC_CHAIN, NWG, HS, BN, false> }

static const struct wgc_combo wgc_combos[] = {
    WGC_SS_COMBOS(64, true, "bf16"),  WGC_SS_COMBOS(64, false, "f16"),
    WGC_SS_COMBOS(128, true, "bf16"), WGC_SS_COMBOS(128, false, "f16"),
    WGC_SS_COMBOS(256, true, "bf16"), WGC_SS_COMBOS(256, false, "f16"), /* the GEMM of kernels/matmul_gelu.cu */
    WGC_RS_COMBOS(64, true, "bf16"),  WGC_RS_COMBOS(64, false, "f16"),
    WGC_RS_COMBOS(128, true, "bf16"), WGC_RS_COMBOS(128, false, "f16"),
    /* the tile shapes of attn_wg_cfg: v6 (BN 128 at HS 64, 64 at HS 128), v7 (the other), v8 (two warpgroups) */
    WGC_CHAIN_COMBOS(6, 1, 64, 128),  WGC_CHAIN_COMBOS(6, 1, 128, 64),
    WGC_CHAIN_COMBOS(7, 1, 64, 64),   WGC_CHAIN_COMBOS(7, 1, 128, 128),
    WGC_CHAIN_COMBOS(8, 2, 64, 64),   WGC_CHAIN_COMBOS(8, 2, 128, 64),
    /* TMA + mbarrier pipeline with a producer warpgroup (kernels/tma.cuh) */
    { "tma-pipe,N=128,K=320,bf16", WGC_TMA, 1, 0, 128, true, 0, wgc_run_tma<128, true> },
    { "tma-pipe,N=128,K=320,f16", WGC_TMA, 1, 0, 128, false, 0, wgc_run_tma<128, false> },
};
#define WGC_N_COMBOS ((int) (sizeof(wgc_combos) / sizeof(wgc_combos[0])))

static const char * const wgc_defect_names[RK_WGMMA_DEFECT_COUNT] = { "none", "sbo", "rs-kstep", "rs-lbo", "pack",
                                                                      "tma-coord" };

extern "C" int rk_cuda_wgmma_check_count(void) { return WGC_N_COMBOS; }

extern "C" const char * rk_cuda_wgmma_check_name(int combo) {
    return combo >= 0 && combo < WGC_N_COMBOS ? wgc_combos[combo].name : "?";
}

extern "C" const char * rk_cuda_wgmma_defect_name(int defect) {
    return defect >= 0 && defect < RK_WGMMA_DEFECT_COUNT ? wgc_defect_names[defect] : "?";
}

extern "C" enum rk_status rk_cuda_wgmma_check_defect(int combo, int defect, char * msg, size_t msg_len) {
    if (msg && msg_len) msg[0] = '\0';
    if (combo < 0 || combo >= WGC_N_COMBOS || defect < 0 || defect >= RK_WGMMA_DEFECT_COUNT) {
        wgc_msg(msg, msg_len, "no combo %d or defect %d", combo, defect);
        return rk_set_error(RK_STATUS_ARG, "wgmma_check: no combo %d (0..%d) or defect %d", combo, WGC_N_COMBOS - 1,
                            defect);
    }
    /* no device is not fatal: a recoverable condition, tested directly (cuda_check.h) */
    int             n   = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        wgc_msg(msg, msg_len, "no CUDA device (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return rk_set_error(RK_STATUS_UNSUPPORTED, "wgmma_check: no CUDA device (%s)",
                            err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
    }
    int dev = 0, major = 0, minor = 0;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major * 10 + minor != 90) {
        wgc_msg(msg, msg_len, "device %d is sm_%d%d: wgmma needs compute capability 9.0 (sm_90a code)", dev, major,
                minor);
        return rk_set_error(RK_STATUS_UNSUPPORTED, "wgmma_check: device %d is sm_%d%d, wgmma needs compute "
                                                   "capability 9.0", dev, major, minor);
    }
    return wgc_combos[combo].run(&wgc_combos[combo], defect, msg, msg_len);
}

extern "C" enum rk_status rk_cuda_wgmma_check(int combo, char * msg, size_t msg_len) {
    return rk_cuda_wgmma_check_defect(combo, RK_WGMMA_DEFECT_NONE, msg, msg_len);
}
