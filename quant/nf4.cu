/*
 * nf4.cu: CUDA kernels for bitsandbytes-compatible NF4 / FP4 weights (quant/nf4.h; C ABI in quant/nf4_cuda.h) and
 * the CUDA RK_OP_NF4_MATMUL, whose CPU reference is rk_cpu_nf4_matmul (quant/nf4_cpu.c). Parity cases:
 * tests/test_quant.c (cuda_*). Bench: build/bench/bench_nf4 (peer: bench/peers/nf4_bnb.py).
 *
 * Kernels:
 *   nf4_absmax_kernel    double-quantized absmax -> fp32 (one thread per block)
 *   nf4_dequant_kernel   4-bit -> f32/bf16/f16. A warp takes 512 packed bytes: each lane 4 words of 4 bytes (8 values
 *                        each) at a stride of 128 bytes, so every load instruction of the warp reads 128 contiguous
 *                        bytes and every store writes 256 contiguous values (one vector store of 8 per lane)
 *   nf4_gemv_kernel_v1   dst = x W^T (+ bias, act) for M <= 8 on CUDA cores, any arch, dtype, K: one warp per output
 *                        row, 16-byte weight loads when K % 32 == 0, fp32 accumulation, warp-shuffle reduction
 *   nf4_gemv_kernel_v2   the same on tensor cores (sm_80+, bf16/f16, K % 32 == 0), see below
 * Products use __fmul_rn so nvcc cannot contract them into FMAs: dequantized values are bit-exact with the CPU.
 *
 * v2, the decoding kernel. The goal is to stream the 4-bit weights at memory speed, so what limits it is the
 * instructions spent per weight (at 3.35 TB/s, 0.5625 byte per weight with its absmax, 132 SMs at 1.98 GHz, about
 * 23 weights reach each SM per clock; the SM issues 128 thread-instructions per clock). A block owns 16 rows of W
 * and its 8 warps split K; per step a warp covers 128 columns with one mma.m16n8k16 per 16 of them: A = the 16 rows
 * (dequantized in registers: a 16-entry smem table read, one fp32 multiply per weight, one pack of two weights into
 * bf16x2/half2, which is also the rounding to the activation dtype the op's contract asks for), B = x (n = the <= 8
 * tokens; unused tokens are zeros), fp32 accumulators. The sum over k does not care about the order of k, so the
 * mma's k index is mapped to columns such that each lane's A and B registers come from contiguous memory: lane
 * (g = lane/4, t = lane%4) loads 16 bytes (32 columns c = 128 s + 32 t ..) of rows g and g+8 and 64 bytes of x row g;
 * at mma step j its k = 2t, 2t+1, 2t+8, 2t+9 are columns c + 4j + 0, 1, 2, 3, i.e. the two nibbles of packed bytes
 * 2j and 2j+1 and x words 2j and 2j+1 (PTX ISA, "Matrix fragments for mma.m16n8k16"). A 32-column chunk sits in one
 * absmax block (blocksize >= 32). The next step's loads are issued before the current step's math. The 16-entry
 * table is conflict-free (16 words in 16 banks: lanes reading one entry get a broadcast). The warps' partial sums
 * meet in shared memory, where bias and activation are applied. x is read straight from global memory (L1/L2):
 * each warp of a block needs a different K slice of it, so staging it in shared memory would not save traffic.
 */
#include "quant/nf4_cuda.h"

#include "cuda_check.h"
#include "kernels/cuda_ops.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#define RK_NF4_BLOCK_SIZE 256 /* threads per block for the elementwise kernels */
#define RK_NF4_DQ_ITEMS   4   /* 8-value items per lane in the dequantization kernel */
#define RK_NF4_GEMV_WARPS 4   /* output rows per thread block in the CUDA-core GEMV (v1) */
#define RK_NF4_MMA_WARPS  8   /* warps per block in the tensor-core GEMV (v2); they split K */
#define RK_NF4_MMA_SPAN   128 /* columns per warp step in v2: 4 lanes x 32 columns (16 packed bytes each) */

/* ------------------------------------------------------------------------------------------------------------
 * CUDA kernels */

static __device__ __forceinline__ const float * nf4_table(int kind) {
    return kind == RK_QUANT4_NF4 ? rk_nf4_code : rk_fp4_code;
}

/* The activation-dtype rounding of a dequantized weight (host/backend.h: "rounded to the activation dtype"). */
template <typename T> static __device__ __forceinline__ float nf4_round(float w) { return rk_to_f32(rk_from_f32<T>(w)); }

/* bias, activation and the rounding to T of one output of a GEMV */
template <typename T>
static __device__ __forceinline__ T nf4_epilogue(float v, const T * bias, int64_t n, int act) {
    if (bias) v += rk_to_f32(bias[n]);
    if (act == RK_ACT_GELU) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    return rk_from_f32<T>(v);
}

static __global__ void nf4_absmax_kernel(const uint8_t * q, const float * scale, const float * code8, float offset,
                                         int64_t n_blocks, int64_t nested_bs, float * absmax) {
    int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_blocks) return;
    absmax[i] = __fadd_rn(__fmul_rn(code8[q[i]], scale[i / nested_bs]), offset);
}

// packed is (n+1)/2 bytes, absmax (n >> bs_log2 rounded up), out (n)
template <typename T>
static __global__ void nf4_dequant_kernel(int kind, const uint8_t * __restrict__ packed,
                                          const float * __restrict__ absmax, int64_t n, int bs_log2,
                                          T * __restrict__ out, bool vec) {
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = nf4_table(kind)[threadIdx.x];
    __syncthreads();
    const int64_t warp  = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int64_t first = warp * (RK_NF4_DQ_ITEMS * 32 * 8) + (int64_t) (threadIdx.x % 32) * 8;
    uint32_t      q[RK_NF4_DQ_ITEMS];
    float         am[RK_NF4_DQ_ITEMS];
    /* all loads first, so that each lane has RK_NF4_DQ_ITEMS of them in flight */
#pragma unroll
    for (int j = 0; j < RK_NF4_DQ_ITEMS; j++) {
        const int64_t i = first + (int64_t) j * 32 * 8;
        q[j]            = 0;
        am[j]           = 0.0f;
        if (vec && i + 8 <= n) {
            q[j]  = __ldcs(reinterpret_cast<const unsigned int *>(packed + i / 2));
            am[j] = absmax[i >> bs_log2]; /* 8 values, i % 8 == 0, blocksize >= 32: one block */
        }
    }
#pragma unroll
    for (int j = 0; j < RK_NF4_DQ_ITEMS; j++) {
        const int64_t i = first + (int64_t) j * 32 * 8;
        if (i >= n) break;
        if (vec && i + 8 <= n) {
            float v[8];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const uint32_t byte = (q[j] >> (8 * e)) & 0xFFu; /* little-endian: byte e holds values 2e, 2e+1 */
                v[2 * e]            = __fmul_rn(code[byte >> 4], am[j]);
                v[2 * e + 1]        = __fmul_rn(code[byte & 0x0F], am[j]);
            }
            rk_store_f32<8>(out + i, v);
        } else {
            for (int64_t k = i; k < i + 8 && k < n; k++) {
                const uint8_t byte = packed[k >> 1];
                out[k] = rk_from_f32<T>(__fmul_rn(code[(k & 1) ? (byte & 0x0F) : (byte >> 4)], absmax[k >> bs_log2]));
            }
        }
    }
}

// x (M, K) rows of stride ldx, W (N, K) 4-bit, flattened row-major; dst (M, N) rows of stride ldd; M <= 8
template <typename T>
static __global__ void nf4_gemv_kernel_v1(int kind, const uint8_t * __restrict__ packed,
                                          const float * __restrict__ absmax, int64_t N, int64_t K, int bs_log2,
                                          const T * __restrict__ x, int64_t ldx, int M, const T * __restrict__ bias,
                                          int act, T * __restrict__ dst, int64_t ldd, bool vec16) {
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = nf4_table(kind)[threadIdx.x];
    __syncthreads();
    const int     lane = threadIdx.x % 32;
    const int64_t row  = (int64_t) blockIdx.x * RK_NF4_GEMV_WARPS + threadIdx.x / 32;
    if (row >= N) return;
    const int64_t e0 = row * K; /* flat index of the row's first element (absmax blocks are flat) */
    float         acc[RK_NF4_GEMV_MAX_B];
#pragma unroll
    for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) acc[b] = 0.0f;

    if (vec16) {
        /* K % 32 == 0: rows start on 16 bytes. Each lane: 16 bytes = 32 consecutive columns per step (one absmax
         * block, blocksize >= 32); a warp covers 1024 columns per step */
        const uint8_t * wrow = packed + e0 / 2;
        for (int64_t c0 = (int64_t) lane * 32; c0 < K; c0 += 32 * 32) {
            const uint4 v = __ldcs(reinterpret_cast<const uint4 *>(wrow + c0 / 2));
            uint8_t     bytes[16];
            memcpy(bytes, &v, 16);
            const float am = absmax[(e0 + c0) >> bs_log2];
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const float w0 = nf4_round<T>(__fmul_rn(code[bytes[j] >> 4], am));
                const float w1 = nf4_round<T>(__fmul_rn(code[bytes[j] & 0x0F], am));
#pragma unroll
                for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) {
                    if (b < M) {
                        const T * xb = x + (int64_t) b * ldx + c0 + 2 * j;
                        acc[b] += w0 * rk_to_f32(xb[0]) + w1 * rk_to_f32(xb[1]);
                    }
                }
            }
        }
    } else {
        /* any K: element (row, k) is flat index e0 + k; odd K puts every other row's start in a byte's low nibble */
        for (int64_t k = lane; k < K; k += 32) {
            const int64_t i    = e0 + k;
            const uint8_t byte = packed[i >> 1];
            const float   w = nf4_round<T>(__fmul_rn(code[(i & 1) ? (byte & 0x0F) : (byte >> 4)], absmax[i >> bs_log2]));
#pragma unroll
            for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) {
                if (b < M) acc[b] += w * rk_to_f32(x[(int64_t) b * ldx + k]);
            }
        }
    }
#pragma unroll
    for (int b = 0; b < RK_NF4_GEMV_MAX_B; b++) {
        const float s = rk_warp_sum(acc[b]); /* every lane gets the sum; lane b writes token b */
        if (lane == b && b < M) dst[(int64_t) b * ldd + row] = nf4_epilogue<T>(s, bias, row, act);
    }
}

/* Two fp32 values rounded to nearest even and packed into one 32-bit register of T (lo: the lower k). */
static __device__ __forceinline__ __nv_bfloat162 nf4_f2x2(__nv_bfloat16, float lo, float hi) {
    return __floats2bfloat162_rn(lo, hi);
}
static __device__ __forceinline__ __half2 nf4_f2x2(__half, float lo, float hi) { return __floats2half2_rn(lo, hi); }

template <typename T> static __device__ __forceinline__ uint32_t nf4_pack2(float lo, float hi) {
    const auto h = nf4_f2x2(T(), lo, hi);
    uint32_t   u;
    memcpy(&u, &h, 4);
    return u;
}

/* d += A B for one m16n8k16 tile, T = bf16 or f16 in, fp32 accumulators (PTX ISA, mma.sync). */
#define RK_NF4_MMA_ASM(ty)                                                                                        \
    asm("mma.sync.aligned.m16n8k16.row.col.f32." ty "." ty ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "         \
        "{%0,%1,%2,%3};\n"                                                                                        \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                                          \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

template <typename T>
static __device__ __forceinline__ void nf4_mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        RK_NF4_MMA_ASM("bf16");
    } else {
        RK_NF4_MMA_ASM("f16");
    }
#else
    (void) d, (void) a, (void) b0, (void) b1;
    __trap(); /* never launched below sm_80 (the launcher checks the device) */
#endif
}

/* What one lane of v2 reads for one 128-column step: its 32 columns of rows g and g+8, and of x row g. */
struct nf4_span {
    uint4 qa, qb;   /* 16 packed bytes of row g, of row g + 8 */
    float ama, amb; /* their absmax */
    uint4 xv[4];    /* x[g][c .. c + 32) */
};

/*
 * A lane's position in W and x: pa/pb point at its 16 packed bytes in rows g and g+8, ea is the flat index of the
 * first of them in row g (for the absmax; row g+8 is ea + 8 K), xp at its 32 values of x row g, c its first column.
 * Each step moves all of them by RK_NF4_MMA_WARPS spans.
 */
template <typename T> struct nf4_lane {
    const uint8_t * pa;
    const uint8_t * pb;
    const T *       xp;
    int64_t         ea, c;
};

/*
 * Loads the lane's chunk at its current position. What is out of range (rows >= N, columns >= K, tokens >= M) reads
 * as zeros, so the products it adds are zeros (0 * code = +-0, and x = 0 where the weights are real). K % 32 == 0: a
 * chunk is all in or all out.
 */
template <typename T>
static __device__ __forceinline__ void nf4_span_load(nf4_span & o, const nf4_lane<T> & l, int64_t K,
                                                     const float * __restrict__ absmax, int bs_log2, bool va, bool vb,
                                                     bool vx) {
    const uint4 z  = make_uint4(0, 0, 0, 0);
    const bool  in = l.c < K;
    o.qa  = in && va ? __ldcs(reinterpret_cast<const uint4 *>(l.pa)) : z; /* read once: evict first */
    o.qb  = in && vb ? __ldcs(reinterpret_cast<const uint4 *>(l.pb)) : z;
    o.ama = in && va ? absmax[l.ea >> bs_log2] : 0.0f;
    o.amb = in && vb ? absmax[(l.ea + 8 * K) >> bs_log2] : 0.0f;
#pragma unroll
    for (int q = 0; q < 4; q++) o.xv[q] = in && vx ? __ldg(reinterpret_cast<const uint4 *>(l.xp) + q) : z;
}

template <typename T> static __device__ __forceinline__ void nf4_lane_step(nf4_lane<T> & l) {
    const int64_t step = (int64_t) RK_NF4_MMA_WARPS * RK_NF4_MMA_SPAN;
    l.pa += step / 2;
    l.pb += step / 2;
    l.xp += step;
    l.ea += step;
    l.c += step;
}

/* code[i] read through its 32-bit shared address */
static __device__ __forceinline__ float nf4_lds(uint32_t addr) {
    float v;
    asm("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr));
    return v;
}

/*
 * The two weights of byte j of a packed word, dequantized and packed into one A register (the high nibble, the
 * lower column, in the low half). h4/l4 hold 4 * (high / low nibble) in every byte and base is the table's shared
 * address (256-byte aligned), so one byte permute forms each table address: base's upper bytes, the offset below.
 */
template <typename T, int j>
static __device__ __forceinline__ uint32_t nf4_dq2(uint32_t h4, uint32_t l4, uint32_t base, float am) {
    const float ch = nf4_lds(__byte_perm(h4, base, 0x7650 | j)), cl = nf4_lds(__byte_perm(l4, base, 0x7650 | j));
    return nf4_pack2<T>(__fmul_rn(ch, am), __fmul_rn(cl, am));
}

/* The 8 mma steps of one 128-column span (k mapping: see the file header). */
template <typename T>
static __device__ __forceinline__ void nf4_span_mma(uint32_t base, const nf4_span & sp, float (&d)[4]) {
    const uint32_t wa[4]  = { sp.qa.x, sp.qa.y, sp.qa.z, sp.qa.w };
    const uint32_t wb[4]  = { sp.qb.x, sp.qb.y, sp.qb.z, sp.qb.w };
    const uint32_t xw[16] = { sp.xv[0].x, sp.xv[0].y, sp.xv[0].z, sp.xv[0].w, sp.xv[1].x, sp.xv[1].y,
                              sp.xv[1].z, sp.xv[1].w, sp.xv[2].x, sp.xv[2].y, sp.xv[2].z, sp.xv[2].w,
                              sp.xv[3].x, sp.xv[3].y, sp.xv[3].z, sp.xv[3].w };
#pragma unroll
    for (int q = 0; q < 4; q++) { /* word q = packed bytes 4q .. 4q+3 = mma steps 2q (bytes 0, 1), 2q+1 (bytes 2, 3) */
        const uint32_t ha = (wa[q] >> 2) & 0x3C3C3C3Cu, la = (wa[q] << 2) & 0x3C3C3C3Cu;
        const uint32_t hb = (wb[q] >> 2) & 0x3C3C3C3Cu, lb = (wb[q] << 2) & 0x3C3C3C3Cu;
        const uint32_t A0[4] = {
            nf4_dq2<T, 0>(ha, la, base, sp.ama), /* row g,     k = 2t, 2t+1   (columns c+4j, c+4j+1), j = 2q */
            nf4_dq2<T, 0>(hb, lb, base, sp.amb), /* row g + 8, the same k                                    */
            nf4_dq2<T, 1>(ha, la, base, sp.ama), /* row g,     k = 2t+8, 2t+9 (columns c+4j+2, c+4j+3)       */
            nf4_dq2<T, 1>(hb, lb, base, sp.amb), /* row g + 8                                                */
        };
        nf4_mma<T>(d, A0, xw[4 * q], xw[4 * q + 1]); /* B: x[g][c+4j, c+4j+1], x[g][c+4j+2, c+4j+3] */
        const uint32_t A1[4] = {
            nf4_dq2<T, 2>(ha, la, base, sp.ama), nf4_dq2<T, 2>(hb, lb, base, sp.amb),
            nf4_dq2<T, 3>(ha, la, base, sp.ama), nf4_dq2<T, 3>(hb, lb, base, sp.amb),
        };
        nf4_mma<T>(d, A1, xw[4 * q + 2], xw[4 * q + 3]); /* j = 2q + 1 */
    }
}

// x (M, K) rows of stride ldx (16-byte aligned rows), W (N, K) 4-bit with K % 32 == 0, dst (M, N) rows of stride ldd
template <typename T>
static __global__ void __launch_bounds__(32 * RK_NF4_MMA_WARPS)
    nf4_gemv_kernel_v2(int kind, const uint8_t * __restrict__ packed, const float * __restrict__ absmax, int64_t N,
                       int64_t K, int bs_log2, const T * __restrict__ x, int64_t ldx, int M,
                       const T * __restrict__ bias, int act, T * __restrict__ dst, int64_t ldd) {
    __shared__ __align__(256) float code[16];
    __shared__ float part[RK_NF4_MMA_WARPS][16][8]; /* each warp's sums: [row in the block][token] */
    if (threadIdx.x < 16) code[threadIdx.x] = nf4_table(kind)[threadIdx.x];
    __syncthreads();
    const uint32_t base = (uint32_t) __cvta_generic_to_shared(code);
    const int      warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int64_t  row0 = (int64_t) blockIdx.x * 16, ra = row0 + g;
    const bool     va = ra < N, vb = ra + 8 < N, vx = g < M;
    const T *      xg   = x + (int64_t) (vx ? g : 0) * ldx;
    float          d[4] = { 0.0f, 0.0f, 0.0f, 0.0f };

    /* warp w takes the spans w, w + 8, ...; two buffers alternate, and the next span's loads go out before the
     * current span's math (spans past K load nothing) */
    nf4_lane<T> l;
    l.c  = (int64_t) warp * RK_NF4_MMA_SPAN + t * 32;
    l.ea = ra * K + l.c;
    l.pa = packed + (l.ea >> 1); /* only dereferenced for rows < N */
    l.pb = l.pa + 4 * K;
    l.xp = xg + l.c;
    nf4_span b0, b1;
    nf4_span_load<T>(b0, l, K, absmax, bs_log2, va, vb, vx);
    while (l.c - t * 32 < K) {
        nf4_lane_step<T>(l);
        nf4_span_load<T>(b1, l, K, absmax, bs_log2, va, vb, vx);
        nf4_span_mma<T>(base, b0, d);
        if (l.c - t * 32 >= K) break;
        nf4_lane_step<T>(l);
        nf4_span_load<T>(b0, l, K, absmax, bs_log2, va, vb, vx);
        nf4_span_mma<T>(base, b1, d);
    }

    /* accumulator layout (PTX m16n8k16, f32 C/D): d0, d1 = row g, tokens 2t, 2t+1; d2, d3 = row g+8, same tokens */
    part[warp][g][2 * t]         = d[0];
    part[warp][g][2 * t + 1]     = d[1];
    part[warp][g + 8][2 * t]     = d[2];
    part[warp][g + 8][2 * t + 1] = d[3];
    __syncthreads();
    if (threadIdx.x < 16 * 8) {
        const int     m = threadIdx.x / 16, r = threadIdx.x % 16; /* 16 consecutive rows of one token per half-warp */
        const int64_t n = row0 + r;
        if (m < M && n < N) {
            float v = 0.0f;
#pragma unroll
            for (int w = 0; w < RK_NF4_MMA_WARPS; w++) v += part[w][r][m];
            dst[(int64_t) m * ldd + n] = nf4_epilogue<T>(v, bias, n, act);
        }
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * kernel launchers */

/* log2 of a power-of-two blocksize, -1 otherwise */
static int nf4_log2(int64_t bs) {
    int l = 0;
    while (l < 62 && ((int64_t) 1 << l) < bs) l++;
    return ((int64_t) 1 << l) == bs ? l : -1;
}

/* compute capability of the current device, major * 10 + minor */
static int nf4_device_cc(void) {
    int dev = 0, major = 0, minor = 0;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    RK_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return major * 10 + minor;
}

extern "C" void rk_cuda_nf4_absmax(const uint8_t * q, const float * scale, const float * code8, float offset,
                                   int64_t n_blocks, int64_t nested_bs, float * absmax, cudaStream_t stream) {
    if (n_blocks <= 0) return;
    const unsigned grid = (unsigned) ((n_blocks + RK_NF4_BLOCK_SIZE - 1) / RK_NF4_BLOCK_SIZE);
    nf4_absmax_kernel<<<grid, RK_NF4_BLOCK_SIZE, 0, stream>>>(q, scale, code8, offset, n_blocks, nested_bs, absmax);
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_nf4_dequantize(enum rk_quant4_kind kind, const uint8_t * packed,
                                                 const float * absmax, int64_t n, int64_t blocksize, void * out,
                                                 enum rk_dtype out_dtype, cudaStream_t stream) {
    const int bs_log2 = nf4_log2(blocksize);
    if (n <= 0 || bs_log2 < 5) {
        return rk_set_error(RK_STATUS_ARG, "nf4_dequantize: n %lld, blocksize %lld (a power of two >= 32)",
                            (long long) n, (long long) blocksize);
    }
    if (!rk_is_float_dtype(out_dtype)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "nf4_dequantize: output dtype %d", (int) out_dtype);
    }
    const int64_t  per_block = (int64_t) RK_NF4_BLOCK_SIZE / 32 * RK_NF4_DQ_ITEMS * 32 * 8; /* values */
    const unsigned grid      = (unsigned) ((n + per_block - 1) / per_block);
    const size_t   es        = rk_dtype_traits[out_dtype].type_size;
    const bool     vec       = rk_ptr_align(packed) >= 4 && rk_ptr_align(out) >= 8 * es;
    RK_DISPATCH_FLOAT(out_dtype, T,
                      nf4_dequant_kernel<T><<<grid, RK_NF4_BLOCK_SIZE, 0, stream>>>(
                          (int) kind, packed, absmax, n, bs_log2, (T *) out, vec));
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

/* Launches v1 for T. */
template <typename T>
static void nf4_gemv_v1(int kind, const uint8_t * packed, const float * absmax, int64_t N, int64_t K, int bs_log2,
                        const void * x, int64_t ldx, int M, const void * bias, int act, void * dst, int64_t ldd,
                        cudaStream_t stream) {
    const bool     vec16 = K % 32 == 0 && rk_ptr_align(packed) >= 16 && bs_log2 >= 5;
    const unsigned grid  = (unsigned) ((N + RK_NF4_GEMV_WARPS - 1) / RK_NF4_GEMV_WARPS);
    nf4_gemv_kernel_v1<T><<<grid, 32 * RK_NF4_GEMV_WARPS, 0, stream>>>(kind, packed, absmax, N, K, bs_log2,
                                                                      (const T *) x, ldx, M, (const T *) bias, act,
                                                                      (T *) dst, ldd, vec16);
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_nf4_gemv(enum rk_quant4_kind kind, const uint8_t * packed, const float * absmax,
                                           int64_t n_rows, int64_t n_cols, int64_t blocksize, const float * x,
                                           int64_t B, float * y, cudaStream_t stream) {
    const int bs_log2 = nf4_log2(blocksize);
    if (B < 1 || B > RK_NF4_GEMV_MAX_B || n_rows < 1 || n_cols < 1 || bs_log2 < 0) {
        return rk_set_error(RK_STATUS_ARG, "nf4_gemv: B %lld (1..%d), shape (%lld, %lld), blocksize %lld",
                            (long long) B, RK_NF4_GEMV_MAX_B, (long long) n_rows, (long long) n_cols,
                            (long long) blocksize);
    }
    nf4_gemv_v1<float>((int) kind, packed, absmax, n_rows, n_cols, bs_log2, x, n_cols, (int) B, NULL, RK_ACT_NONE, y,
                       n_rows, stream);
    return RK_OK;
}

/* The arguments both halves of the op check: one float dtype, row layouts, rk_nf4_matmul_check, a power-of-two
 * blocksize. Fills the row views and log2(blocksize). */
static enum rk_status nf4_op_args(const struct rk_tensor * dst, const struct rk_tensor * x,
                                  const struct rk_tensor * bias, const struct rk_nf4_matmul_params * p,
                                  struct rk_rows * rx, struct rk_rows * rd, int * bs_log2) {
    const enum rk_dtype dt = x->dtype;
    if (!rk_is_float_dtype(dt) || dst->dtype != dt || (bias && bias->dtype != dt)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda nf4_matmul: x, bias and dst must share one float dtype");
    }
    struct rk_rows rb = { 0, 0, 0 };
    if (!rk_rows_of(x, rx) || !rk_rows_of(dst, rd) || (bias && (!rk_rows_of(bias, &rb) || rb.nrows != 1))) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda nf4_matmul: x and dst must be rows with a contiguous last "
                                                   "dim, bias one contiguous row");
    }
    RK_TRY(rk_nf4_matmul_check(p, rx->nrows, rx->ncols, rd->nrows, rd->ncols, bias ? rb.ncols : -1));
    *bs_log2 = nf4_log2(p->w->blocksize);
    if (*bs_log2 < 0) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "cuda nf4_matmul: blocksize %lld is not a power of two",
                            (long long) p->w->blocksize);
    }
    return RK_OK;
}

extern "C" enum rk_status rk_cuda_nf4_gemv_ex(int variant, struct rk_tensor * dst, const struct rk_tensor * x,
                                              const struct rk_tensor * bias, const struct rk_nf4_matmul_params * p,
                                              cudaStream_t stream) {
    struct rk_rows rx, rd;
    int            bs_log2;
    RK_TRY(nf4_op_args(dst, x, bias, p, &rx, &rd, &bs_log2));
    const struct rk_quant4_weight * w = p->w;
    const enum rk_dtype dt = x->dtype;
    const int64_t M = rx.nrows, K = rx.ncols, N = w->n_rows;
    if (M < 1 || M > RK_NF4_GEMV_MAX_B) {
        return rk_set_error(RK_STATUS_ARG, "cuda nf4_gemv: M %lld outside 1..%d", (long long) M, RK_NF4_GEMV_MAX_B);
    }
    const bool v2_ok = (dt == RK_DTYPE_BF16 || dt == RK_DTYPE_F16) && nf4_device_cc() >= 80 && K % 32 == 0 &&
                       bs_log2 >= 5 && rk_ptr_align(w->packed) >= 16 && rk_ptr_align(x->data) >= 16 &&
                       rx.stride % 8 == 0;
    if (variant == 0) variant = v2_ok ? 2 : 1;
    const void * bp = bias ? bias->data : NULL;
    if (variant == 1) {
        RK_DISPATCH_FLOAT(dt, T,
                          nf4_gemv_v1<T>(w->kind, w->packed, w->absmax, N, K, bs_log2, x->data, rx.stride, (int) M,
                                         bp, (int) p->act, dst->data, rd.stride, stream));
        return RK_OK;
    }
    if (variant != 2 || !v2_ok) {
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "cuda nf4_gemv: variant %d does not apply (%s, K %lld, blocksize %lld, alignment)",
                            variant, rk_dtype_traits[dt].name, (long long) K, (long long) w->blocksize);
    }
    const unsigned grid = (unsigned) ((N + 15) / 16);
    if (dt == RK_DTYPE_BF16) {
        nf4_gemv_kernel_v2<__nv_bfloat16><<<grid, 32 * RK_NF4_MMA_WARPS, 0, stream>>>(
            w->kind, w->packed, w->absmax, N, K, bs_log2, (const __nv_bfloat16 *) x->data, rx.stride, (int) M,
            (const __nv_bfloat16 *) bp, (int) p->act, (__nv_bfloat16 *) dst->data, rd.stride);
    } else {
        nf4_gemv_kernel_v2<__half><<<grid, 32 * RK_NF4_MMA_WARPS, 0, stream>>>(
            w->kind, w->packed, w->absmax, N, K, bs_log2, (const __half *) x->data, rx.stride, (int) M,
            (const __half *) bp, (int) p->act, (__half *) dst->data, rd.stride);
    }
    RK_CUDA_CHECK(cudaGetLastError());
    return RK_OK;
}

extern "C" enum rk_status rk_cuda_nf4_matmul(struct rk_cuda_blas * blas, struct rk_tensor * dst,
                                             const struct rk_tensor * x, const struct rk_tensor * bias,
                                             const struct rk_nf4_matmul_params * p, cudaStream_t stream) {
    // x (M,K) rows, W (N,K) 4-bit on the device, bias (N) or NULL, dst (M,N) rows; one float dtype
    struct rk_rows rx, rd;
    int            bs_log2;
    RK_TRY(nf4_op_args(dst, x, bias, p, &rx, &rd, &bs_log2));
    const struct rk_quant4_weight * w = p->w;
    const int64_t M = rx.nrows, K = rx.ncols, N = w->n_rows;
    if (M == 0) return RK_OK;
    if (M <= RK_NF4_GEMV_MAX_B) return rk_cuda_nf4_gemv_ex(0, dst, x, bias, p, stream);

    /* dequantize W whole into the scratch (bnb's training path does the same), then one cuBLASLt GEMM */
    const size_t need = (size_t) N * (size_t) K * rk_dtype_traits[x->dtype].type_size;
    if (p->scratch == NULL || p->scratch_bytes < need) {
        return rk_set_error(RK_STATUS_ARG, "cuda nf4_matmul: M = %lld needs a scratch of %zu bytes, got %zu",
                            (long long) M, need, p->scratch ? p->scratch_bytes : (size_t) 0);
    }
    RK_TRY(rk_cuda_nf4_dequantize((enum rk_quant4_kind) w->kind, w->packed, w->absmax, N * K, w->blocksize,
                                  p->scratch, x->dtype, stream));
    const int64_t    ne[2] = { N, K };
    struct rk_tensor wt;
    rk_tensor_init(&wt, x->dtype, 2, ne, "nf4_scratch");
    wt.data = p->scratch;
    struct rk_matmul_params mp = {}; /* every field: accumulate stays false */
    mp.act = p->act;
    return rk_cuda_matmul(blas, dst, x, &wt, bias, &mp, stream);
}
