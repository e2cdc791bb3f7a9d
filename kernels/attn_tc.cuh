/*
 * attn_tc.cuh: building blocks shared by the attention kernels, forward (kernels/attn.cu) and backward
 * (kernels/attn_bwd.cu): the key range of a query row, 2-byte scalar loads and stores for the plain kernels, and
 * for the tensor-core kernels the XOR-swizzled shared-memory tiles, their cp.async loads, ldmatrix fragment
 * addresses, mma.sync (m16n8k16 bf16/f16 on sm_80+, two fp16 m16n8k8 on the sm_75 path) and fragment packing.
 * Everything here is static: each .cu file that includes it gets its own copy. Design: docs/ATTN.md.
 */
#ifndef RK_KERNELS_ATTN_TC_CUH
#define RK_KERNELS_ATTN_TC_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "cuda_check.h"

/*
 * Key range [lo, hi] that query row i may attend (before the padding mask), clamped to [0, Tk): causal keeps
 * j <= q_offset + i, the window keeps j > q_offset + i - window. An empty range has lo > hi. A is a kernel-argument
 * struct with the fields q_offset, window, causal and Tk (attn_args in attn.cu, attn_bwd_args in attn_bwd.cu).
 */
template <class A> static __device__ __forceinline__ void attn_row_range(const A & a, int i, int & lo, int & hi) {
    const int64_t pos = a.q_offset + (int64_t) i;
    int64_t h64 = a.Tk - 1;
    int64_t l64 = 0;
    if (a.causal && pos < h64) h64 = pos;
    if (a.window > 0 && pos - a.window + 1 > l64) l64 = pos - a.window + 1;
    if (h64 < -1) h64 = -1;
    if (l64 > a.Tk) l64 = a.Tk;
    lo = (int) l64;
    hi = (int) h64;
}

/*
 * The keys a CTA owning query rows [m0, min(Tq, m0 + BM)) must visit: [kbeg, kend) (the window's lower bound and the
 * causal upper bound both grow with the row). hi_first (the last key the first row may see) and lo_last (the first
 * key the last row may see) tell which key tiles are visible to every row, i.e. need no element-wise mask beyond
 * the padding: those with n0 >= lo_last and n0 + BN <= hi_first + 1.
 */
struct attn_cta_keys {
    int kbeg, kend, hi_first, lo_last;
};

template <class A> static __device__ __forceinline__ attn_cta_keys attn_cta_key_range(const A & a, int m0, int BM) {
    int lo_first, hi_first, lo_last, hi_last;
    attn_row_range(a, m0, lo_first, hi_first);
    attn_row_range(a, min(a.Tq, m0 + BM) - 1, lo_last, hi_last);
    return { lo_first, hi_last + 1, hi_first, lo_last };
}

/* ---- plain kernels: 2-byte elements as f32 ----------------------------------------------------- */

template <bool BF16> static __device__ __forceinline__ float attn_load(const char * p) {
    const unsigned short u = *reinterpret_cast<const unsigned short *>(p);
    if constexpr (BF16) {
        return __uint_as_float((uint32_t) u << 16);
    } else {
        return __half2float(__ushort_as_half(u));
    }
}

template <bool BF16> static __device__ __forceinline__ void attn_store(char * p, float x) {
    unsigned short u;
    if constexpr (BF16) {
        u = __bfloat16_as_ushort(__float2bfloat16_rn(x));
    } else {
        u = __half_as_ushort(__float2half_rn(x));
    }
    *reinterpret_cast<unsigned short *>(p) = u;
}

/* ---- tensor-core kernels ------------------------------------------------------------------------ */

#define RK_ATTN_TC_WARPS   4
#define RK_ATTN_TC_THREADS (RK_ATTN_TC_WARPS * 32)

/*
 * Byte offset of 16-byte chunk c of row r in a tile of rows of CPR chunks. The chunk index is XOR-swizzled with
 * the row so that 8 consecutive rows at the same logical chunk (one ldmatrix 8x8 matrix, or one column of
 * cp.async writes) fall in 8 different 16-byte bank groups: conflict-free without padding.
 */
template <int CPR> static __device__ __forceinline__ int attn_swz(int r, int c) {
    if constexpr (CPR >= 8) {
        return r * CPR * 16 + ((c ^ (r & 7)) << 4);
    } else { /* CPR == 4: two rows per 128-byte line */
        static_assert(CPR == 4, "CPR");
        return r * 64 + ((c ^ ((r >> 1) & 3)) << 4);
    }
}

static __device__ __forceinline__ uint32_t attn_smem_u32(const void * p) {
    return (uint32_t) __cvta_generic_to_shared(p);
}

/*
 * Per-thread part of the shared-memory addresses that ldmatrix.x4 reads. Every tile is read the same way: lane
 * gives the row r_thread = (lane & 7) + 8 * ((lane >> 3) & 1) of a 16-row block and the chunk c_const + (lane >> 4)
 * (c_const even), i.e. the four 8x8 matrices are (rows 0-7, chunk c), (rows 8-15, c), (rows 0-7, c+1),
 * (rows 8-15, c+1). The swizzle key of the row does not change between 16-row blocks (r & 7 and (r >> 1) & 3 stay),
 * and c_const ^ y = hi(c_const) + (lo(c_const) ^ y) for y below the XOR span, so the only per-thread values are
 * the NX offsets (lo ^ y) << 4: an address is tile base + 16-row block + off(c_const), all but offs[] known at
 * compile time once the loops are unrolled.
 */
template <int CPR> struct attn_ldsm_offs {
    static constexpr int SPAN = CPR >= 8 ? 8 : 4; /* chunks the XOR can touch */
    static constexpr int NX   = SPAN / 2;
    uint32_t offs[NX];

    __device__ __forceinline__ explicit attn_ldsm_offs(int lane) {
        const int r   = (lane & 7) + ((lane >> 3) & 1) * 8;
        const int key = CPR >= 8 ? (r & 7) : ((r >> 1) & 3);
        const int y   = (lane >> 4) ^ key;
#pragma unroll
        for (int x = 0; x < NX; x++) offs[x] = (uint32_t) (((2 * x) ^ y) << 4);
    }
    /* byte offset, inside the thread's row, of chunk c_const + (lane >> 4) after the swizzle */
    __device__ __forceinline__ uint32_t off(int c_const) const {
        return offs[(c_const % SPAN) / 2] + (uint32_t) ((c_const / SPAN) * SPAN * 16);
    }
};

/* 16-byte global -> shared copy; zero-fills the destination when !full (no bytes are read then). */
static __device__ __forceinline__ void attn_cp_async_16(uint32_t dst, const void * src, bool full) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const int n = full ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
#else
    (void) dst; (void) src; (void) full;
    __trap();
#endif
}

static __device__ __forceinline__ void attn_cp_async_4(uint32_t dst, const void * src, bool full) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const int n = full ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
#else
    (void) dst; (void) src; (void) full;
    __trap();
#endif
}

template <bool SM75> static __device__ __forceinline__ void attn_cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (!SM75) asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

/* Waits until at most N of this thread's cp.async groups are pending (a barrier must follow). */
template <int N, bool SM75> static __device__ __forceinline__ void attn_cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (!SM75) asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

static __device__ __forceinline__ void attn_ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

static __device__ __forceinline__ void attn_ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/*
 * c(16x8, f32) += a(16x16, row) * b(16x8, col). Fragment layout (PTX ISA, mma.m16n8k16), g = lane / 4,
 * t = lane % 4: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 8+2t..), a3 (g+8, 8+2t..); b0 (k 2t..2t+1, n g),
 * b1 (k 8+2t.., n g); c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..). The sm_75 path issues it as two m16n8k8 fp16
 * products (a0,a1 with b0, then a2,a3 with b1), the same layout split along k.
 */
template <bool BF16, bool SM75>
static __device__ __forceinline__ void attn_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (SM75) {
        static_assert(!BF16, "no bf16 mma on sm_75");
        asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(b0));
        asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[2]), "r"(a[3]), "r"(b1));
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        if constexpr (BF16) {
            asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                "{%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        } else {
            asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                "{%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
#else
        (void) c; (void) a; (void) b0; (void) b1;
        __trap();
#endif
    }
}

/* Two floats to a packed pair (lo in the low half), round to nearest even. */
template <bool BF16> static __device__ __forceinline__ uint32_t attn_pack2(float lo, float hi) {
    uint32_t u;
    if constexpr (BF16) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        memcpy(&u, &v, 4);
    } else {
        const __half2 v = __floats2half2_rn(lo, hi);
        memcpy(&u, &v, 4);
    }
    return u;
}

static __device__ __forceinline__ float attn_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x)); /* ex2(-inf) = +0 */
    return y;
}

/*
 * 4-byte words [n0, n0 + COUNT) of src (an i32 mask, f32 row statistics) into shared dst, one per thread; words at
 * n_valid and past are zero-filled (nothing is read there). cp.async on sm_80+, synchronous on the sm_75 path.
 */
template <int COUNT, bool SM75, class T>
static __device__ __forceinline__ void attn_load_words(T * dst, const T * src, int n0, int n_valid, int tid) {
    static_assert(sizeof(T) == 4, "4-byte words");
    for (int jj = tid; jj < COUNT; jj += RK_ATTN_TC_THREADS) {
        const bool ok = n0 + jj < n_valid;
        if constexpr (SM75) {
            dst[jj] = ok ? __ldg(src + n0 + jj) : (T) 0;
        } else {
            attn_cp_async_4(attn_smem_u32(dst + jj), ok ? src + n0 + jj : src, ok);
        }
    }
}

/*
 * Rows [row0, row0 + ROWS) of a strided (n_valid, HS) matrix into a swizzled shared tile; rows >= n_valid are
 * zero-filled (a zero V row times p = 0 keeps NaN-free sums). cp.async on sm_80+, synchronous on the sm_75 path.
 */
template <int ROWS, int CPR, bool SM75>
static __device__ __forceinline__ void attn_load_tile(unsigned char * s, const char * g, int64_t stride, int row0,
                                                      int n_valid, int tid) {
    constexpr int RSTEP = RK_ATTN_TC_THREADS / CPR; /* rows per pass of the block: a multiple of 8 */
    static_assert(RSTEP % 8 == 0, "RSTEP");
    const int       r   = tid / CPR, c = tid % CPR;
    unsigned char * dst = s + attn_swz<CPR>(r, c); /* + it * RSTEP rows: same swizzle */
    const char *    src = g + (int64_t) (row0 + r) * stride + c * 16;
    const int64_t   adv = (int64_t) RSTEP * stride;
#pragma unroll
    for (int it = 0; it < ROWS / RSTEP; it++) {
        const bool   ok = row0 + r + it * RSTEP < n_valid;
        const char * sp = ok ? src + it * adv : g;
        unsigned char * dp = dst + it * RSTEP * CPR * 16;
        if constexpr (SM75) {
            const uint4 val = ok ? __ldg(reinterpret_cast<const uint4 *>(sp)) : make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4 *>(dp) = val;
        } else {
            attn_cp_async_16(attn_smem_u32(dp), sp, ok);
        }
    }
}

/* ---- host side ---------------------------------------------------------------------------------- */

/* 16-byte aligned rows: the data pointer and the strides of the outer dims (those of size 1 do not matter) */
static inline bool attn_aligned16(const struct rk_tensor * t) {
    bool ok = ((uintptr_t) t->data % 16) == 0;
    for (int i = 0; i < 3; i++) ok = ok && (t->ne[i] == 1 || t->nb[i] % 16 == 0);
    return ok;
}

static inline bool attn_shape_is(const struct rk_tensor * t, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    return t->ne[0] == n0 && t->ne[1] == n1 && t->ne[2] == n2 && t->ne[3] == n3;
}

/* Compute capability (major * 10 + minor) and opt-in shared memory per block of the current device. */
static inline void attn_device_caps(int * cc, int * smem_optin) {
    int dev = 0, major = 0, minor = 0;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    *cc = major * 10 + minor;
}

#endif
