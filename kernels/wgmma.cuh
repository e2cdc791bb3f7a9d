/*
 * wgmma.cuh: the Hopper warpgroup MMA (wgmma.mma_async, sm_90a) as the attention kernels and kernels/matmul_gelu.cu
 * use it, and the shared memory layout it reads. Only compiled into real instructions for sm_90a (nvcc defines __CUDA_ARCH_FEAT_SM90_ALL
 * there); on every other target the functions trap, and launchers never pick a wgmma kernel on a device that is
 * not compute capability 9.0. Design: docs/ATTN.md ("wgmma kernel").
 *
 * A warpgroup is 4 consecutive warps (128 threads, the first warp a multiple of 4); every wgmma instruction below is
 * executed by all 128 threads with the same descriptors.
 *
 * Shared-memory operand layout: "128-byte swizzle". A tile of rows of 64 16-bit elements (128 bytes) is stored row
 * after row; the 16-byte chunk c of row r sits at r * 128 + ((c ^ (r & 7)) << 4), and the tile base is 1024-byte
 * aligned, so the swizzle is the hardware's: address bits [4, 7) XOR bits [7, 10). Rows of HS = 128 elements are
 * split into two such "panels" (columns 0-63, then 64-127), each a whole tile of its own.
 *
 * Descriptors (PTX ISA, "Matrix Descriptor Format"): bits 0-13 start address >> 4, 16-29 leading-dimension byte
 * offset >> 4, 32-45 stride-dimension byte offset >> 4, 49-51 base offset (0: bases are 1024-aligned), 62-63 swizzle
 * (1 = 128 bytes). Two canonical layouts are used:
 *   K-major (the K dimension contiguous: Q as A, K as B of S = Q K^T): 8-row groups SBO = 1024 bytes apart, LBO
 *     unused (1); the k-step kk of 16 elements starts at panel (kk / 4), byte (kk % 4) * 32 of the row.
 *   MN-major (the N dimension contiguous: V as B of O = P V, "transposed" B): 8-key groups SBO = 1024 bytes apart,
 *     64-column panels LBO bytes apart; the k-step of 16 keys starts 16 rows = 2048 bytes further.
 *
 * Register fragments, thread T of the warpgroup, w = T / 32, g = (T % 32) / 4, t = T % 4:
 *   accumulator D (64 x N f32), d[i]: row 16 w + g + 8 ((i / 2) % 2), column 8 (i / 4) + 2 t + (i % 2);
 *   A from registers (64 x 16, 16-bit pairs), a[0] (row 16w+g, cols 2t, 2t+1), a[1] (row +8), a[2] (cols +8),
 *   a[3] (row +8, cols +8): the accumulator of columns [16 kk, 16 kk + 16) packed in order is the A operand of
 *   k-step kk, as with mma.sync.
 */
#ifndef RK_KERNELS_WGMMA_CUH
#define RK_KERNELS_WGMMA_CUH

#include <stdint.h>

#include "attn_tc.cuh" /* attn_cp_async_16, attn_smem_u32 */

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RK_WGMMA_ENABLED 1
#else
#define RK_WGMMA_ENABLED 0
#endif

/* Byte offset of 16-byte chunk c of row r in a 128-byte-swizzled tile of ROWS rows (panels of 64 columns). */
template <int ROWS> static __device__ __forceinline__ uint32_t wg_swz(int r, int c) {
    return (uint32_t) ((c >> 3) * ROWS * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

/* Descriptor of a 128-byte-swizzled operand at shared address addr (a 1024-aligned tile base plus a k offset). */
static __device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t) ((addr & 0x3FFFFu) >> 4) | ((uint64_t) ((lbo >> 4) & 0x3FFFu) << 16) |
           ((uint64_t) ((sbo >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

/* Orders this thread's earlier register writes (accumulators, A fragments) before the next wgmma. */
static __device__ __forceinline__ void wg_fence() {
#if RK_WGMMA_ENABLED
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
    __trap();
#endif
}

static __device__ __forceinline__ void wg_commit() {
#if RK_WGMMA_ENABLED
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
    __trap();
#endif
}

/* Waits until at most N committed wgmma groups of this warpgroup are pending. */
template <int N> static __device__ __forceinline__ void wg_wait() {
#if RK_WGMMA_ENABLED
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
    __trap();
#endif
}

/* Makes this thread's shared-memory writes (st.shared, cp.async once waited for) visible to wgmma's reads. */
static __device__ __forceinline__ void wg_fence_proxy_async() {
#if RK_WGMMA_ENABLED
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
    __trap();
#endif
}

/* Ties the accumulators to this point of the program, so that the compiler does not move their reads before a
   wg_wait or their writes after a wgmma (volatile asm statements keep their order). */
template <int N> static __device__ __forceinline__ void wg_fence_regs(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* The same for register A fragments: keeps them (and their registers) alive until this point, so that the compiler
   does not reuse the registers while a wgmma that reads them may still be running. */
template <int N> static __device__ __forceinline__ void wg_fence_regs(uint32_t (&a)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[i][e])::"memory");
    }
}

#define RK_WG_ACC8(i)                                                                                                 \
    "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]),       \
        "+f"(d[(i) + 6]), "+f"(d[(i) + 7])
#define RK_WG_ACC32 RK_WG_ACC8(0), RK_WG_ACC8(8), RK_WG_ACC8(16), RK_WG_ACC8(24)
#define RK_WG_ACC64 RK_WG_ACC32, RK_WG_ACC8(32), RK_WG_ACC8(40), RK_WG_ACC8(48), RK_WG_ACC8(56)
#define RK_WG_ACC128                                                                                                  \
    RK_WG_ACC64, RK_WG_ACC8(64), RK_WG_ACC8(72), RK_WG_ACC8(80), RK_WG_ACC8(88), RK_WG_ACC8(96), RK_WG_ACC8(104),    \
        RK_WG_ACC8(112), RK_WG_ACC8(120)

#define RK_WG_D64                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                         \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define RK_WG_D128                                                                                                    \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                                         \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "                                \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "                                \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

#define RK_WG_D256                                                                                                    \
    "{" "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" "}"

/*
 * d (64 x N f32) = (accumulate ? d : 0) + A (64 x 16, shared, K-major, descriptor da) * B (16 x N, shared, K-major,
 * descriptor db). N = 64, 128 or 256; BF16 selects bf16 inputs, else f16.
 */
template <int N, bool BF16>
static __device__ __forceinline__ void wg_mma_ss(float (&d)[N / 2], uint64_t da, uint64_t db, int accumulate) {
#if RK_WGMMA_ENABLED
    if constexpr (N == 64) {
        if constexpr (BF16) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " RK_WG_D64 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                         : RK_WG_ACC32
                         : "l"(da), "l"(db), "r"(accumulate));
        } else {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " RK_WG_D64 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                         : RK_WG_ACC32
                         : "l"(da), "l"(db), "r"(accumulate));
        }
    } else if constexpr (N == 256) { /* the GEMM of kernels/matmul_gelu.cu */
        if constexpr (BF16) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " RK_WG_D256 ", %128, %129, p, 1, 1, 0, 0;\n}\n"
                         : RK_WG_ACC128
                         : "l"(da), "l"(db), "r"(accumulate));
        } else {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " RK_WG_D256 ", %128, %129, p, 1, 1, 0, 0;\n}\n"
                         : RK_WG_ACC128
                         : "l"(da), "l"(db), "r"(accumulate));
        }
    } else {
        static_assert(N == 128, "N");
        if constexpr (BF16) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " RK_WG_D128 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                         : RK_WG_ACC64
                         : "l"(da), "l"(db), "r"(accumulate));
        } else {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " RK_WG_D128 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                         : RK_WG_ACC64
                         : "l"(da), "l"(db), "r"(accumulate));
        }
    }
#else
    (void) d; (void) da; (void) db; (void) accumulate;
    __trap();
#endif
}

/*
 * d (64 x N f32) = (accumulate ? d : 0) + A (64 x 16, registers a, layout in the header) * B (16 x N, shared,
 * MN-major: descriptor db, "transposed"). N = 64 or 128.
 */
template <int N, bool BF16>
static __device__ __forceinline__ void wg_mma_rs_tb(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db,
                                                    int accumulate) {
#if RK_WGMMA_ENABLED
    if constexpr (N == 64) {
        if constexpr (BF16) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " RK_WG_D64
                         ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                         : RK_WG_ACC32
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
        } else {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " RK_WG_D64
                         ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                         : RK_WG_ACC32
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
        }
    } else {
        static_assert(N == 128, "N");
        if constexpr (BF16) {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " RK_WG_D128
                         ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                         : RK_WG_ACC64
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
        } else {
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " RK_WG_D128
                         ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                         : RK_WG_ACC64
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
        }
    }
#else
    (void) d; (void) a; (void) db; (void) accumulate;
    __trap();
#endif
}

/*
 * Rows [row0, row0 + ROWS) of a strided (n_valid, 8 CPR) 16-bit matrix (stride in bytes) into a 128-byte-swizzled
 * tile (wg_swz) with cp.async; rows >= n_valid are zero-filled (nothing read there). The attention kernels load Q, K
 * and V with it, the GEMM of kernels/matmul_gelu.cu its 64-column k-blocks. Consecutive threads copy consecutive
 * 16-byte chunks of a row: coalesced.
 */
template <int ROWS, int CPR, int THREADS>
static __device__ __forceinline__ void wg_load_tile(unsigned char * s, const char * g, int64_t stride, int row0,
                                                    int n_valid, int tid) {
    constexpr int RSTEP = THREADS / CPR; /* 8 to 32 rows per pass: the swizzle key r & 7 stays */
    static_assert(RSTEP % 8 == 0 && ROWS % RSTEP == 0, "RSTEP");
    const int       r   = tid / CPR, c = tid % CPR;
    unsigned char * dst = s + wg_swz<ROWS>(r, c);
    const char *    src = g + (int64_t) (row0 + r) * stride + c * 16;
#pragma unroll
    for (int it = 0; it < ROWS / RSTEP; it++) {
        const bool ok = row0 + r + it * RSTEP < n_valid;
        attn_cp_async_16(attn_smem_u32(dst + it * RSTEP * 128), ok ? src + (int64_t) it * RSTEP * stride : g, ok);
    }
}

#endif
