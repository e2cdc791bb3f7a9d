/*
 * test_wgmma.cu: the emulator's wgmma (tests/emu/emu_ptx.cpp) against a plain host matrix product, and
 * kernels/wgmma.cuh against the emulator. Built from this .cu by `make emu-build` (build-emu/tests/emu/test_wgmma)
 * and run by `make emu-test` (tests/emu/run_suites.sh).
 *
 * D (64 x N) = A (64 x 128) B (128 x N) (+ C) in 8 k-steps of wgmma.mma_async.m64nNk16, N = 64 and 128, bf16 and
 * f16, with A from shared memory (K-major or M-major) or from registers and B from shared memory (K-major or
 * N-major), all in 128-byte-swizzled tiles written with wgmma.cuh's wg_swz; scale-d 0 (D starts as NaN) and 1 (D
 * starts as C); imm-scale-a/b -1. Inputs are small dyadic numbers, so every sum is exact in fp32 and the results
 * must match the host product bit for bit. Two warpgroups per block compute the same product. Then negative
 * checks: a wrong stride-dimension offset and a missing swizzle give a different result; a base offset, an
 * operand outside the shared memory in use, a missing fence.proxy.async, a missing wgmma.fence, a warpgroup whose
 * warps diverge, and (sm_75 build) any wgmma are emulator errors (checked in a child process).
 * Then the TMA and mbarrier emulation (kernels/tma.cuh): a tile load with the 128-byte swizzle lands in wg_swz's
 * layout with out-of-bounds rows zero-filled; a read before the mbarrier wait, a load nobody waits for, more
 * arrivals than the count, a wait that can never complete, named barriers with different counts, a load into a tile
 * an in-flight wgmma reads are errors;
 * cuTensorMapEncodeTiled refuses a stride that is not a multiple of 16.
 */
#include "kernels/tma.cuh"
#include "kernels/wgmma.cuh"

#include <signal.h>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

#define KD 128 /* the K of the product: 8 k-steps, two 64-column panels in the K-major tiles */

/* own inline asm for the combinations wgmma.cuh does not have: "n" operands for the immediates */
#define TS_SS(SHAPE, TY, DL, ia, ib, ip, isa, isb, ita, itb)                                                          \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %" #ip ", 0;\nwgmma.mma_async.sync.aligned." SHAPE ".f32." TY " " DL ", %" #ia   \
    ", %" #ib ", p, %" #isa ", %" #isb ", %" #ita ", %" #itb ";\n}\n"
#define TS_RS(SHAPE, TY, DL, a0, a1, a2, a3, ib, ip, isa, isb, itb)                                                   \
    "{\n.reg .pred p;\nsetp.ne.b32 p, %" #ip ", 0;\nwgmma.mma_async.sync.aligned." SHAPE ".f32." TY " " DL ", {%" #a0 \
    ", %" #a1 ", %" #a2 ", %" #a3 "}, %" #ib ", p, %" #isa ", %" #isb ", %" #itb ";\n}\n"

template <int N, bool BF16, int SA, int SB, int TA, int TB>
static __device__ void own_ss(float (&d)[N / 2], uint64_t da, uint64_t db, int acc) {
    if constexpr (N == 64 && BF16) {
        asm volatile(TS_SS("m64n64k16", "bf16.bf16", RK_WG_D64, 32, 33, 34, 35, 36, 37, 38)
                     : RK_WG_ACC32 : "l"(da), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TA), "n"(TB));
    } else if constexpr (N == 64) {
        asm volatile(TS_SS("m64n64k16", "f16.f16", RK_WG_D64, 32, 33, 34, 35, 36, 37, 38)
                     : RK_WG_ACC32 : "l"(da), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TA), "n"(TB));
    } else if constexpr (BF16) {
        asm volatile(TS_SS("m64n128k16", "bf16.bf16", RK_WG_D128, 64, 65, 66, 67, 68, 69, 70)
                     : RK_WG_ACC64 : "l"(da), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TA), "n"(TB));
    } else {
        asm volatile(TS_SS("m64n128k16", "f16.f16", RK_WG_D128, 64, 65, 66, 67, 68, 69, 70)
                     : RK_WG_ACC64 : "l"(da), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TA), "n"(TB));
    }
}

template <int N, bool BF16, int SA, int SB, int TB>
static __device__ void own_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db, int acc) {
    if constexpr (N == 64 && BF16) {
        asm volatile(TS_RS("m64n64k16", "bf16.bf16", RK_WG_D64, 32, 33, 34, 35, 36, 37, 38, 39, 40)
                     : RK_WG_ACC32 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TB));
    } else if constexpr (N == 64) {
        asm volatile(TS_RS("m64n64k16", "f16.f16", RK_WG_D64, 32, 33, 34, 35, 36, 37, 38, 39, 40)
                     : RK_WG_ACC32 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TB));
    } else if constexpr (BF16) {
        asm volatile(TS_RS("m64n128k16", "bf16.bf16", RK_WG_D128, 64, 65, 66, 67, 68, 69, 70, 71, 72)
                     : RK_WG_ACC64 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TB));
    } else {
        asm volatile(TS_RS("m64n128k16", "f16.f16", RK_WG_D128, 64, 65, 66, 67, 68, 69, 70, 71, 72)
                     : RK_WG_ACC64 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc), "n"(SA), "n"(SB), "n"(TB));
    }
}

enum { A_KMAJOR, A_MMAJOR, A_REGS };
/* what a kernel gets wrong on purpose */
enum { OK, BAD_SBO, BAD_SWIZZLE, BAD_BASE_OFFSET, BAD_OUTSIDE, NO_PROXY_FENCE, NO_WG_FENCE, DIVERGE,
       /* the asynchrony of mma_async: D read before the wait_group, D written before it, the B tile stored to or
          loaded into (cp.async) before it, D changed after the wait and used again with no wgmma.fence, no wait */
       EARLY_READ, WRITE_IN_FLIGHT, STORE_IN_FLIGHT, CP_ASYNC_IN_FLIGHT, CP_ASYNC_LANDS_IN_FLIGHT,
       NO_FENCE_AFTER_CHANGE, NEVER_WAITED };

/* A: 64 x KD row-major, B: KD x N row-major (k, n), C and D: 64 x N row-major per warpgroup; 16-bit inputs as raw
 * bits. init_c: D starts as C and every k-step accumulates; else D starts as NaN and the first has scale-d 0. */
template <int N, bool BF16, int AM, bool BMN, int SA, int SB, int BAD>
__global__ void k_gemm(const uint16_t * A, const uint16_t * B, const float * C, float * D, int init_c) {
    extern __shared__ __align__(1024) unsigned char sm[];
    const uint32_t base = (uint32_t) __cvta_generic_to_shared(sm);
    if (base % 1024) __trap();
    const uint32_t a_off = 0, b_off = 16384; /* A: 16 KiB either way; B: N/64 or 2 panels of 16 KiB / 8 KiB */
    const int      tid = threadIdx.x, nt = blockDim.x;
    /* the tiles, each 1024-byte aligned, written as wgmma.cuh says: rows of 64 elements, 16-byte chunks swizzled */
    if (AM == A_KMAJOR) {
        for (int e = tid; e < 64 * KD; e += nt) { /* row m, column k */
            const int m = e / KD, k = e % KD;
            memcpy(sm + a_off + wg_swz<64>(m, k / 8) + (k % 8) * 2, &A[e], 2);
        }
    } else if (AM == A_MMAJOR) {
        for (int e = tid; e < 64 * KD; e += nt) { /* row k, column m */
            const int m = e / KD, k = e % KD;
            memcpy(sm + a_off + wg_swz<KD>(k, m / 8) + (m % 8) * 2, &A[e], 2);
        }
    }
    for (int e = tid; e < KD * N; e += nt) {
        const int k = e / N, n = e % N;
        const uint32_t off = BMN ? wg_swz<KD>(k, n / 8) + (n % 8) * 2 : wg_swz<N>(n, k / 8) + (k % 8) * 2;
        memcpy(sm + b_off + off, &B[e], 2);
    }
    if (BAD != NO_PROXY_FENCE) wg_fence_proxy_async();
    __syncthreads();

    const int wgi = tid / 128, T = tid % 128, w = T / 32, g = (T % 32) / 4, t = T % 4;
    if (BAD == DIVERGE && w == 3) return;
    float d[N / 2];
    for (int i = 0; i < N / 2; i++) { /* the accumulator layout of PTX ISA Figure 149 */
        const int row = 16 * w + g + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * t + (i % 2);
        d[i] = init_c ? C[row * N + col] : __int_as_float(0x7fc00000);
    }
    if (BAD != NO_WG_FENCE) wg_fence();
    if (BAD == CP_ASYNC_LANDS_IN_FLIGHT && tid == 0) /* issued before the products, waited for after they start */
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(base + b_off), "l"(B) : "memory");
    for (int kk = 0; kk < KD / 16; kk++) {
        const int acc = init_c || kk > 0;
        /* K-major: k-step kk at panel kk / 4, byte 32 (kk % 4) of the row; SBO 1024 (8 rows of 128 bytes), LBO
         * unused. MN-major: 16 rows further per k-step, SBO 1024 (8 k-rows), LBO one 64-column panel (KD rows). */
        uint64_t da = AM == A_KMAJOR ? wg_desc(base + a_off + (kk / 4) * 64 * 128 + (kk % 4) * 32, 16, 1024)
                                     : wg_desc(base + a_off + kk * 2048, KD * 128, 1024);
        uint64_t db = BMN ? wg_desc(base + b_off + kk * 2048, KD * 128, 1024)
                          : wg_desc(base + b_off + (kk / 4) * N * 128 + (kk % 4) * 32, 16, 1024);
        if (BAD == BAD_SBO) db = wg_desc(base + b_off + (kk / 4) * N * 128 + (kk % 4) * 32, 16, 512);
        if (BAD == BAD_SWIZZLE) db &= ~(3ull << 62);
        if (BAD == BAD_BASE_OFFSET) db |= 1ull << 49;
        if (BAD == BAD_OUTSIDE) db = wg_desc(base + 64 * 1024, 16, 1024);
        uint32_t ar[4] = { 0, 0, 0, 0 };
        if (AM == A_REGS) { /* PTX ISA Figure 148: a[r] = (row 16 w + g + 8 (r % 2), columns 16 kk + 2 t + 8 (r / 2) + {0, 1}) */
            for (int r = 0; r < 4; r++) {
                const int row = 16 * w + g + 8 * (r % 2), col = 16 * kk + 2 * t + 8 * (r / 2);
                ar[r]         = (uint32_t) A[row * KD + col] | (uint32_t) A[row * KD + col + 1] << 16;
            }
        }
        if constexpr (AM == A_KMAJOR && !BMN && SA == 1 && SB == 1) {
            wg_mma_ss<N, BF16>(d, da, db, acc);
        } else if constexpr (AM == A_REGS && BMN && SA == 1 && SB == 1) {
            wg_mma_rs_tb<N, BF16>(d, ar, db, acc);
        } else if constexpr (AM == A_REGS) {
            own_rs<N, BF16, SA, SB, BMN ? 1 : 0>(d, ar, db, acc);
        } else {
            own_ss<N, BF16, SA, SB, AM == A_MMAJOR ? 1 : 0, BMN ? 1 : 0>(d, da, db, acc);
        }
    }
    wg_commit();
    if (BAD == NEVER_WAITED) return;
    if (BAD == WRITE_IN_FLIGHT && T == 5) d[3] = 1.0f;
    if (BAD == STORE_IN_FLIGHT && tid == 0) sm[b_off + 2] ^= 0x40;
    if (BAD == CP_ASYNC_LANDS_IN_FLIGHT && tid == 0) asm volatile("cp.async.wait_all;\n" ::: "memory");
    if (BAD == CP_ASYNC_IN_FLIGHT && tid == 0) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(base + b_off), "l"(B) : "memory");
        asm volatile("cp.async.wait_all;\n" ::: "memory");
    }
    if (BAD == EARLY_READ) {
        for (int i = 0; i < N / 2; i++) {
            const int row = 16 * w + g + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * t + (i % 2);
            D[(size_t) wgi * 64 * N + row * N + col] = d[i];
        }
        wg_wait<0>();
        return;
    }
    wg_wait<0>();
    wg_fence_regs(d);
    if (BAD == NO_FENCE_AFTER_CHANGE) { /* D = 2 D + A B: the doubling needs a wgmma.fence before the next product */
        for (int i = 0; i < N / 2; i++) d[i] *= 2.0f;
        wg_mma_ss<N, BF16>(d, wg_desc(base + a_off, 16, 1024), wg_desc(base + b_off, 16, 1024), 1);
        wg_commit();
        wg_wait<0>();
    }
    for (int i = 0; i < N / 2; i++) {
        const int row = 16 * w + g + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * t + (i % 2);
        D[(size_t) wgi * 64 * N + row * N + col] = d[i];
    }
}

/* sm_75: any wgmma instruction is illegal */
__global__ void k_fence_only() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

/* ldmatrix (x1) of the 16-byte rows at shared [16 r, 16 r + 16), r < 8, which lane 0 fills with one cp.async each;
   WAIT: the copies are waited for (and the warp synchronized) before the read, else the read races with them. */
template <bool WAIT> __global__ void k_ldsm_pending(const uint16_t * src, uint32_t * out) {
    __shared__ __align__(128) uint16_t tile[64];
    const uint32_t base = (uint32_t) __cvta_generic_to_shared(tile);
    const int      lane = threadIdx.x;
    if (lane == 0) {
        for (int r = 0; r < 8; r++) {
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(base + 16 * r), "l"(src + 8 * r) : "memory");
        }
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        if (WAIT) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    }
    if (WAIT) __syncwarp();
    uint32_t r0;
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(base + 16 * (lane % 8)));
    out[lane] = r0;
    if (!WAIT && lane == 0) asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

template <bool WAIT> static int run_ldsm_pending() {
    uint16_t * src;
    uint32_t * out;
    cudaMalloc((void **) &src, 128);
    cudaMalloc((void **) &out, 128);
    std::vector<uint16_t> h(64);
    for (int i = 0; i < 64; i++) h[(size_t) i] = (uint16_t) (i + 1);
    cudaMemcpy(src, h.data(), 128, cudaMemcpyHostToDevice);
    k_ldsm_pending<WAIT><<<1, 32>>>(src, out);
    std::vector<uint32_t> o(32);
    cudaMemcpy(o.data(), out, 128, cudaMemcpyDeviceToHost);
    cudaFree(src);
    cudaFree(out);
    /* lane l holds row l / 4, elements 2 (l % 4) and 2 (l % 4) + 1 */
    for (int l = 0; l < 32; l++) {
        const uint32_t want = (uint32_t) (8 * (l / 4) + 2 * (l % 4) + 1) | ((uint32_t) (8 * (l / 4) + 2 * (l % 4) + 2) << 16);
        if (o[(size_t) l] != want) return 0;
    }
    return 1;
}

static uint16_t to16(bool bf16, float f) {
    return bf16 ? __bfloat16_as_ushort(__float2bfloat16(f)) : __half_as_ushort(__float2half(f));
}

static int g_fail = 0;

/* runs the product; returns 1 when D equals the host's (both warpgroups), 0 when it differs */
template <int N, bool BF16, int AM, bool BMN, int SA, int SB, int BAD>
static int run(int init_c, bool quiet = false) {
    std::vector<float>    a(64 * KD), b(KD * N), c(64 * N), ref(64 * N), out(2 * 64 * N);
    std::vector<uint16_t> a16(a.size()), b16(b.size());
    for (int m = 0; m < 64; m++)
        for (int k = 0; k < KD; k++) a[m * KD + k] = (float) ((m * 7 + k * 3 + m * k) % 9 - 4) / 4.0f;
    for (int k = 0; k < KD; k++)
        for (int n = 0; n < N; n++) b[k * N + n] = (float) ((k * 5 + n * 11 + (k ^ n)) % 7 - 3) / 8.0f;
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < N; n++) c[m * N + n] = (float) (m - n) / 2.0f;
    for (size_t i = 0; i < a.size(); i++) a16[i] = to16(BF16, a[i]);
    for (size_t i = 0; i < b.size(); i++) b16[i] = to16(BF16, b[i]);
    for (int m = 0; m < 64; m++) {
        for (int n = 0; n < N; n++) {
            double s = init_c ? c[m * N + n] : 0.0;
            for (int k = 0; k < KD; k++) s += (double) (SA * a[m * KD + k]) * (double) (SB * b[k * N + n]);
            ref[m * N + n] = (float) s; /* exact: dyadic with few bits */
        }
    }
    uint16_t *dA, *dB;
    float *   dC, *dD;
    cudaMalloc((void **) &dA, a16.size() * 2);
    cudaMalloc((void **) &dB, b16.size() * 2);
    cudaMalloc((void **) &dC, c.size() * 4);
    cudaMalloc((void **) &dD, out.size() * 4);
    cudaMemcpy(dA, a16.data(), a16.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, b16.data(), b16.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
    const int smem = 16384 + 32768;
    cudaFuncSetAttribute(k_gemm<N, BF16, AM, BMN, SA, SB, BAD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    k_gemm<N, BF16, AM, BMN, SA, SB, BAD><<<1, 256, smem>>>(dA, dB, dC, dD, init_c);
    if (cudaGetLastError() != cudaSuccess) {
        fprintf(stderr, "launch failed\n");
        exit(1);
    }
    cudaMemcpy(out.data(), dD, out.size() * 4, cudaMemcpyDeviceToHost);
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
    cudaFree(dD);
    int bad = 0, first = -1;
    for (int i = 0; i < 2 * 64 * N; i++) {
        if (memcmp(&out[(size_t) i], &ref[(size_t) (i % (64 * N))], 4) != 0) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (bad && !quiet) {
        const int i = first % (64 * N);
        fprintf(stderr, "  %d of %d differ, first: warpgroup %d D[%d][%d] = %g, expected %g\n", bad, 2 * 64 * N,
                first / (64 * N), i / N, i % N, out[(size_t) first], ref[(size_t) i]);
    }
    return bad == 0;
}


/* ---- TMA and mbarrier ---- */

enum { TMA_OK = 0, TMA_READ_EARLY, TMA_NO_WAIT, TMA_OVER_ARRIVE, TMA_NEVER_COMPLETES, TMA_NBAR_COUNTS, TMA_INTO_WGMMA };

/* One 64 x 64 box at rows [16, 80) of a (70 x 64) 16-bit matrix into a 1024-aligned tile; every thread copies
   the tile out row-major (un-swizzled with wg_swz) after the wait. */
template <int MODE> static __global__ void k_tma(const __grid_constant__ CUtensorMap map, uint16_t * out) {
    __shared__ __align__(1024) unsigned char tile[64 * 128];
    __shared__ __align__(8) uint64_t bar;
    const int      tid = threadIdx.x;
    const uint32_t sb = attn_smem_u32(&bar), st = attn_smem_u32(tile);
    if (tid == 0) {
        mb_init(sb, 1);
        mb_fence_init();
    }
    __syncthreads();
    if (MODE == TMA_NBAR_COUNTS) {
        if (tid < 64) nbar_arrive(1, 128); else nbar_sync(1, 96);
        return;
    }
    if (tid == 0 && MODE != TMA_NEVER_COMPLETES) {
        mb_arrive_tx(sb, 64 * 128);
        if (MODE == TMA_OVER_ARRIVE) mb_arrive(sb);
        tma_load_2d(st, &map, sb, 0, 16);
        if (MODE == TMA_READ_EARLY) {
            uint32_t v;
            asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(st));
            out[0] = (uint16_t) v;
        }
    }
    if (MODE == TMA_NO_WAIT) return;
    mb_wait(sb, 0);
    if (MODE == TMA_INTO_WGMMA) { /* a wgmma reads the tile; thread 0 reloads it before the wait */
        float d[32];
        wg_fence();
        wg_mma_ss<64, true>(d, wg_desc(st, 16, 1024), wg_desc(st, 16, 1024), 0);
        wg_commit();
        if (tid == 0) {
            mb_arrive_tx(sb, 64 * 128);
            tma_load_2d(st, &map, sb, 0, 16);
        }
        wg_wait<0>();
        out[tid] = (uint16_t) d[0];
        return;
    }
    for (int e = tid; e < 64 * 8; e += blockDim.x) {
        const int r = e / 8, c = e % 8;
        memcpy(out + r * 64 + c * 8, tile + wg_swz<64>(r, c), 16);
    }
}

typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                              const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

static CUresult encode(CUtensorMap * m, void * p, uint64_t stride) {
    void *                               fn = nullptr;
    enum cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess || !fn) abort();
    const cuuint64_t dims[2] = { 64, 70 }, strides[1] = { stride };
    const cuuint32_t box[2] = { 64, 64 }, es[2] = { 1, 1 };
    return ((encode_fn) fn)(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, p, dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

/* returns 1 when the copied-out tile holds rows 16..69 of the matrix and zeros below */
template <int MODE> static int run_tma() {
    uint16_t *            src, *out;
    std::vector<uint16_t> h(70 * 64), o(64 * 64);
    for (int i = 0; i < 70 * 64; i++) h[(size_t) i] = (uint16_t) (i + 1);
    cudaMalloc((void **) &src, h.size() * 2);
    cudaMalloc((void **) &out, o.size() * 2);
    cudaMemcpy(src, h.data(), h.size() * 2, cudaMemcpyHostToDevice);
    CUtensorMap map;
    if (encode(&map, src, 128) != CUDA_SUCCESS) return 0;
    k_tma<MODE><<<1, 128>>>(map, out);
    cudaDeviceSynchronize();
    cudaMemcpy(o.data(), out, o.size() * 2, cudaMemcpyDeviceToHost);
    cudaFree(src);
    cudaFree(out);
    for (int r = 0; r < 64; r++) {
        for (int c = 0; c < 64; c++) {
            const uint16_t want = r + 16 < 70 ? h[(size_t) ((r + 16) * 64 + c)] : 0;
            if (o[(size_t) (r * 64 + c)] != want) return 0;
        }
    }
    return 1;
}

static int encode_refuses_stride() {
    uint16_t * src;
    cudaMalloc((void **) &src, 70 * 64 * 2);
    CUtensorMap map;
    const CUresult r = encode(&map, src, 100);
    cudaFree(src);
    return r != CUDA_SUCCESS;
}

static void check(const char * name, int ok) {
    printf("%-72s %s\n", name, ok ? "ok" : "FAILED");
    fflush(stdout);
    if (!ok) g_fail = 1;
}

/* fn must die with an emulator message containing what */
static void expect_fault(const char * name, void (*fn)(), const char * what) {
    fflush(stdout);
    fflush(stderr);
    int p[2];
    if (pipe(p) != 0) abort();
    const pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        fn();
        _exit(0);
    }
    close(p[1]);
    std::string msg;
    char        buf[4096];
    ssize_t     r;
    while ((r = read(p[0], buf, sizeof(buf))) > 0) msg.append(buf, (size_t) r);
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    const bool ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && msg.find(what) != std::string::npos;
    check(name, ok);
    if (getenv("TEST_WGMMA_VERBOSE")) fprintf(stderr, "%s", msg.c_str());
    if (!ok) fprintf(stderr, "  expected an abort with \"%s\"; child status 0x%x, stderr:\n%s\n", what, st, msg.c_str());
}

int main() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    check("m64n64k16  bf16 SS  A K-major  B K-major  (wgmma.cuh), D = C + AB", run<64, true, A_KMAJOR, false, 1, 1, OK>(1));
    check("m64n64k16  f16  SS  A K-major  B K-major  (wgmma.cuh), D = AB", run<64, false, A_KMAJOR, false, 1, 1, OK>(0));
    check("m64n128k16 bf16 SS  A K-major  B K-major  (wgmma.cuh), D = AB", run<128, true, A_KMAJOR, false, 1, 1, OK>(0));
    check("m64n128k16 f16  SS  A K-major  B K-major  (wgmma.cuh), D = C + AB", run<128, false, A_KMAJOR, false, 1, 1, OK>(1));
    check("m64n64k16  bf16 RS  A regs     B N-major  (wgmma.cuh), D = C + AB", run<64, true, A_REGS, true, 1, 1, OK>(1));
    check("m64n64k16  f16  RS  A regs     B N-major  (wgmma.cuh), D = AB", run<64, false, A_REGS, true, 1, 1, OK>(0));
    check("m64n128k16 bf16 RS  A regs     B N-major  (wgmma.cuh), D = AB", run<128, true, A_REGS, true, 1, 1, OK>(0));
    check("m64n128k16 f16  RS  A regs     B N-major  (wgmma.cuh), D = C + AB", run<128, false, A_REGS, true, 1, 1, OK>(1));
    check("m64n64k16  bf16 SS  A M-major  B N-major, scale-a -1, D = C - AB", run<64, true, A_MMAJOR, true, -1, 1, OK>(1));
    check("m64n128k16 f16  SS  A M-major  B N-major, D = AB", run<128, false, A_MMAJOR, true, 1, 1, OK>(0));
    check("m64n128k16 bf16 SS  A M-major  B K-major, scale-b -1, D = -AB", run<128, true, A_MMAJOR, false, 1, -1, OK>(0));
    check("m64n64k16  f16  SS  A K-major  B N-major, D = C + AB", run<64, false, A_KMAJOR, true, 1, 1, OK>(1));
    check("m64n128k16 f16  RS  A regs     B K-major, scale-a -1 scale-b -1", run<128, false, A_REGS, false, -1, -1, OK>(1));
    check("m64n64k16  bf16 RS  A regs     B K-major, D = AB", run<64, true, A_REGS, false, 1, 1, OK>(0));
    /* negative: a wrong descriptor reads other elements */
    check("wrong SBO (512 instead of 1024) changes the result", !run<64, true, A_KMAJOR, false, 1, 1, BAD_SBO>(0, true));
    check("swizzle mode 0 on a 128B-swizzled tile changes the result",
          !run<128, false, A_KMAJOR, false, 1, 1, BAD_SWIZZLE>(1, true));
    expect_fault("base offset 1 is an error", [] { run<64, true, A_KMAJOR, false, 1, 1, BAD_BASE_OFFSET>(0); }, "base offset 1");
    expect_fault("an operand outside the shared memory in use is an error",
                 [] { run<64, true, A_KMAJOR, false, 1, 1, BAD_OUTSIDE>(0); }, "outside the");
    expect_fault("no fence.proxy.async after the stores is an error",
                 [] { run<64, true, A_KMAJOR, false, 1, 1, NO_PROXY_FENCE>(0); }, "generic proxy");
    expect_fault("no wgmma.fence before the first mma_async is an error",
                 [] { run<64, true, A_REGS, true, 1, 1, NO_WG_FENCE>(0); }, "no wgmma.fence");
    expect_fault("a warp of the warpgroup that returns is an error",
                 [] { run<64, false, A_KMAJOR, false, 1, 1, DIVERGE>(0); }, "warpgroup");
    /* asynchrony: D is not there before the wait (poison), and the operands belong to the op until it retires */
    check("reading D before wgmma.wait_group gives no product (the poison)",
          !run<64, true, A_KMAJOR, false, 1, 1, EARLY_READ>(1, true));
    expect_fault("writing D while the mma_async is in flight is an error",
                 [] { run<64, true, A_KMAJOR, false, 1, 1, WRITE_IN_FLIGHT>(1); }, "written while");
    expect_fault("a store into the B tile while the mma_async is in flight is an error",
                 [] { run<64, true, A_KMAJOR, false, 1, 1, STORE_IN_FLIGHT>(0); }, "changed before the wgmma.wait_group");
    expect_fault("a cp.async into the B tile while the mma_async is in flight is an error",
                 [] { run<64, false, A_REGS, true, 1, 1, CP_ASYNC_IN_FLIGHT>(0); }, "cp.async into shared bytes");
    expect_fault("an mma_async reading bytes of a cp.async issued before it and not waited for is an error",
                 [] { run<64, true, A_KMAJOR, false, 1, 1, CP_ASYNC_LANDS_IN_FLIGHT>(0); }, "not waited for yet");
    expect_fault("D changed after the wait and used with no wgmma.fence is an error",
                 [] { run<64, true, A_KMAJOR, false, 1, 1, NO_FENCE_AFTER_CHANGE>(0); }, "no wgmma.fence of this thread");
    expect_fault("a thread that returns with an mma_async never waited for is an error",
                 [] { run<128, true, A_KMAJOR, false, 1, 1, NEVER_WAITED>(0); }, "never retired");
    /* copies in flight: any PTX read of shared bytes a cp.async has not landed in yet races with it */
    check("ldmatrix of rows whose cp.async was waited for reads them", run_ldsm_pending<true>());
    expect_fault("ldmatrix of rows a cp.async has not landed in yet is an error", [] { run_ldsm_pending<false>(); },
                 "not waited for yet");
    /* TMA and mbarrier (kernels/tma.cuh) */
    check("a TMA tile load (128-byte swizzle) lands in wg_swz's layout, rows past the tensor zero", run_tma<TMA_OK>());
    check("cuTensorMapEncodeTiled refuses a row stride that is not a multiple of 16", encode_refuses_stride());
    expect_fault("a read of a TMA-loaded tile before the mbarrier wait is an error", [] { run_tma<TMA_READ_EARLY>(); },
                 "nobody has waited for yet");
    expect_fault("a TMA load nobody waits for is an error", [] { run_tma<TMA_NO_WAIT>(); }, "nobody waited for");
    expect_fault("more arrivals than the mbarrier's count is an error", [] { run_tma<TMA_OVER_ARRIVE>(); },
                 "more arrivals than its count");
    expect_fault("a wait for a phase that never completes is a deadlock", [] { run_tma<TMA_NEVER_COMPLETES>(); },
                 "mbarrier.try_wait.parity");
    expect_fault("a TMA load into a tile an in-flight wgmma reads is an error", [] { run_tma<TMA_INTO_WGMMA>(); },
                 "TMA load into shared bytes");
    expect_fault("a named barrier reached with two thread counts is an error", [] { run_tma<TMA_NBAR_COUNTS>(); },
                 "while other threads are at it");
#else
    printf("sm_%d: wgmma needs sm_90a; checking that it is an illegal instruction\n", __CUDA_ARCH__ / 10);
    expect_fault("wgmma.fence on sm_75 is an illegal instruction", [] {
        k_fence_only<<<1, 128>>>();
        cudaDeviceSynchronize();
    }, "illegal instruction");
#endif
    printf(g_fail ? "test_wgmma: FAILED\n" : "test_wgmma: all passed\n");
    return g_fail;
}
