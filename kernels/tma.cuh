/*
 * tma.cuh: the Hopper Tensor Memory Accelerator (TMA) and the mbarrier objects its loads complete on, plus named
 * barriers and setmaxnreg: the pieces of a warp-specialized kernel (a producer warp loads tiles with TMA, consumer
 * warpgroups wait on "full" barriers and free stages through "empty" ones), as the PTX ISA describes them
 * ("Parallel Synchronization and Communication Instructions: mbarrier", "cp.async.bulk.tensor", "bar",
 * "setmaxnreg"). Device self-test: kernels/wgmma_check.cu ("tma-pipe" combos, tests/test_wgmma.c); the CPU
 * emulator (tests/emu) implements the same instructions. Only sm_90a compiles them; elsewhere they trap.
 *
 * A TMA tile load with CU_TENSOR_MAP_SWIZZLE_128B and an inner box of 64 16-bit elements writes each 128-byte row
 * with its 16-byte chunk c at c ^ (row & 7) (address bits [4, 7) XOR [7, 10)): the layout wg_load_tile writes with
 * cp.async (kernels/wgmma.cuh), so wgmma reads a TMA-loaded tile with the same descriptors. Rows and columns outside
 * the tensor are filled with zeros. The mbarrier phase rule: mb_wait(bar, parity) returns once the phase with that
 * parity has completed, i.e. while the barrier's current phase has the other parity; a fresh barrier is in phase 0,
 * so waiting for parity 1 returns at once (how a producer starts on its "empty" barriers).
 */
#ifndef RK_KERNELS_TMA_CUH
#define RK_KERNELS_TMA_CUH

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RK_TMA_ENABLED 1
#else
#define RK_TMA_ENABLED 0
#endif

/* ---- host: tensor maps ---- */

typedef CUresult (*rk_tma_encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                     const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                     CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled, obtained from the runtime (rk does not link the driver library); NULL when the driver has
   none. Looked up once per translation unit. */
static inline rk_tma_encode_fn rk_tma_encoder(void) {
    static rk_tma_encode_fn fn   = NULL;
    static bool             done = false;
    if (!done) {
        void *                               p = NULL;
        enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
        if (e == cudaSuccess && q == cudaDriverEntryPointSuccess) {
            fn = (rk_tma_encode_fn) p;
        } else if (e != cudaSuccess) {
            (void) cudaGetLastError(); /* the lookup's own error, not a kernel's: the caller falls back */
        }
        done = true;
    }
    return fn;
}

/* A tile-mode map of a 16-bit (bf16 or f16) tensor of `rank` dimensions, dims[0] innermost and contiguous, strides[i]
   the byte stride of dimension i + 1, boxes of box[] elements, 128-byte swizzle, zeros outside. A dimension of size
   1 is only ever read at coordinate 0, so its stride is replaced by 16 (any valid one). false, with nothing
   written, when the driver has no encoder, a stride is not a positive multiple of 16 below 2^40, or the driver
   refuses the map. */
static inline bool rk_tma_map_16bit(CUtensorMap * m, const void * base, bool bf16, int rank, const int64_t * dims,
                                    const int64_t * strides, const uint32_t * box) {
    const rk_tma_encode_fn enc = rk_tma_encoder();
    if (!enc || rank < 1 || rank > 5) return false;
    cuuint64_t d[5], st[4];
    cuuint32_t b[5], es[5];
    for (int i = 0; i < rank; i++) {
        d[i]  = (cuuint64_t) dims[i];
        b[i]  = box[i];
        es[i] = 1;
        if (i > 0) {
            const int64_t s = dims[i] == 1 ? 16 : strides[i - 1];
            if (s <= 0 || s % 16 || s >= (1ll << 40)) return false;
            st[i - 1] = (cuuint64_t) s;
        }
    }
    return enc(m, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, (cuuint32_t) rank,
               (void *) base, d, st, b, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* ---- device ---- */

/* An mbarrier at shared address bar expecting `count` arrivals per phase; then mb_fence_init and a CTA barrier
   before any other thread uses it. */
static __device__ __forceinline__ void mb_init(uint32_t bar, int count) {
#if RK_TMA_ENABLED
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#else
    (void) bar; (void) count;
    __trap();
#endif
}

static __device__ __forceinline__ void mb_fence_init() {
#if RK_TMA_ENABLED
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#else
    __trap();
#endif
}

/* One arrival. */
static __device__ __forceinline__ void mb_arrive(uint32_t bar) {
#if RK_TMA_ENABLED
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#else
    (void) bar;
    __trap();
#endif
}

/* One arrival that also expects `bytes` more of transactions (TMA loads) in the current phase. */
static __device__ __forceinline__ void mb_arrive_tx(uint32_t bar, uint32_t bytes) {
#if RK_TMA_ENABLED
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
#else
    (void) bar; (void) bytes;
    __trap();
#endif
}

/* Waits until the phase of the given parity has completed. */
static __device__ __forceinline__ void mb_wait(uint32_t bar, uint32_t parity) {
#if RK_TMA_ENABLED
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
#else
    (void) bar; (void) parity;
    __trap();
#endif
}

/* TMA tile load of the box at (c0, c1) of a 2-D tensor map into shared dst (128-byte aligned; 1024 for the 128-byte
   swizzle), completing its bytes on bar. map: the address of a __grid_constant__ kernel parameter. */
static __device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap * map, uint32_t bar, int c0, int c1) {
#if RK_TMA_ENABLED
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
                 ::"r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(bar)
                 : "memory");
#else
    (void) dst; (void) map; (void) bar; (void) c0; (void) c1;
    __trap();
#endif
}

/* The same for a 4-D map (c0 innermost), e.g. (head size, time, head, batch) of an attention tensor. */
static __device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap * map, uint32_t bar, int c0, int c1,
                                                   int c2, int c3) {
#if RK_TMA_ENABLED
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                 ::"r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
#else
    (void) dst; (void) map; (void) bar; (void) c0; (void) c1; (void) c2; (void) c3;
    __trap();
#endif
}

/* Named barrier `id` (1..15; 0 is __syncthreads) of `count` threads (a multiple of 32): wait, or arrive only. */
static __device__ __forceinline__ void nbar_sync(int id, int count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
static __device__ __forceinline__ void nbar_arrive(int id, int count) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

/* Moves registers between warpgroups: every thread of the warpgroup executes it with the same N. */
template <int N> static __device__ __forceinline__ void wg_setmaxnreg_inc() {
#if RK_TMA_ENABLED
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#else
    __trap();
#endif
}
template <int N> static __device__ __forceinline__ void wg_setmaxnreg_dec() {
#if RK_TMA_ENABLED
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#else
    __trap();
#endif
}

#endif
