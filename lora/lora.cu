/*
 * lora.cu: CUDA RK_OP_LORA_FWD / RK_OP_LORA_BWD (LoRA adapter, PEFT lora.Linear semantics, host/backend.h), f16/bf16
 * with fp32 accumulation on tensor cores (mma.sync m16n8k16; on sm_75 each f16 m16n8k16 is two m16n8k8). The CPU
 * reference is lora/lora_cpu.c (rk_cpu_lora_fwd_op / rk_cpu_lora_bwd_op); parity cases LORA_* in tests/test_lora.c.
 * Bench: build/bench/bench_lora (fused against unfused; peer bench/peers/lora_peft.py).
 *
 * Notation: x (M,K), A (r,K), B (N,r), u = dropout(x) A^T (M,r), g = dy B (M,r), s the scaling, keep the DROPOUT
 * op's Philox mask for flat index m*K + k, q = 1/(1-p). r is padded to RP in {16, 32, 48, 64} with zeros in shared
 * memory. Dropout is applied exactly: a dropped element is zeroed before the product and q multiplies the fp32 sum
 * (the CPU multiplies x by keep*q first: the results differ by fp32 rounding only).
 *
 * Kernels (one variant each so far):
 *   lora_fwd_kernel_v1       fused forward, one launch. A CTA owns 16 rows of x. Phase 1 streams its rows of x once,
 *                            in chunks of 128 columns staged with the keep mask applied, together with the matching
 *                            columns of A; each of the 8 warps takes one k16 slice of the chunk and keeps its partial
 *                            u in registers; the 8 partials are summed in a fixed order through shared memory
 *                            (deterministic), scaled by q, rounded to the dtype, written to u and kept in shared
 *                            memory. Phase 2 walks all N in chunks of 256 rows of B staged in shared memory (B is
 *                            small and stays in L2) and adds s u B^T to y in place, each warp 32 columns.
 *   lora_bwd_dy_kernel_v1    backward pass over dy (read once for both products): CTA (128-row tile, column split
 *                            of N) stages dy chunks of 64 columns, and from each chunk accumulates g += dy B for its
 *                            rows (registers, across the split) and the dB partial dy^T u of its rows (written per
 *                            chunk). Partials are fp32 in scratch: g per column split, dB per row tile.
 *   lora_bwd_reduce_kernel   sums the partials in a fixed order: g (rounded to the dtype: it feeds the tensor cores,
 *                            as PEFT's bf16 autograd rounds it) and dB += s * sum.
 *   lora_bwd_x_kernel_v1     backward pass over x: CTA (64-column tile of K, row split of M) stages x with the keep
 *                            mask, g and A^T, then dx += s q (g A) * keep in place and the dA partial g^T (x*keep)
 *                            in registers across its rows; the partial goes to scratch per row split.
 *   lora_bwd_reduce_kernel   (again) dA += s q * sum of the row-split partials.
 *   unfused (RK_LORA_UNFUSED): lora_keep_kernel (dropout(x) into scratch, skipped at p = 0), then cuBLAS
 *                            cublasGemmEx for u = x' A^T, y += s u B^T (beta = 1); backward g = dy B, dB += s dy^T u,
 *                            dA += s g^T x', dx += s g A (beta = 1; with dropout g A goes to scratch and
 *                            lora_keep_kernel applies keep while adding).
 * Every reduction has one owner and a fixed order: the results are bitwise reproducible run to run.
 * Which one the backend runs (rk_cuda_lora_pick, host/backend_cuda.c): measured on an H200 at 7B shapes (docs/PERF.md),
 * the fused forward is 1.5-3.6x slower than the unfused one and the fused backward wins only with dropout, so rk_op
 * takes the unfused forward, and the unfused backward unless dropout > 0 (RK_LORA_VARIANT=1|2 forces either).
 *
 *   build/bench/bench_lora            checks both variants against the CPU, then times them (Llama-7B shapes)
 */
#define RK_HOST_DEVICE __host__ __device__ /* before kernels/dropout.h: its Philox rounds run on the device here */

#include "lora/lora_cuda.h"

#include "cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/dropout.h"

#include <cublas_v2.h>

#include <stdint.h>

#define RK_LORA_WARPS      8
#define RK_LORA_BLOCK_SIZE (32 * RK_LORA_WARPS)
#define RK_LORA_MAX_RANK   64
#define RK_LORA_PAD        8   /* elements added to shared rows: 16-byte aligned rows, conflict-free fragment loads */
#define FWD_BM             16  /* forward: rows of x per CTA */
#define FWD_BK             128 /* forward: columns of x per staged chunk (8 warps x k16) */
#define FWD_BN             256 /* forward: rows of B per staged chunk (8 warps x 32 columns of y) */
#define BWD_DY_BM          128 /* backward dy pass: rows per CTA (8 warps x m16) */
#define BWD_DY_BN          64  /* backward dy pass: columns of dy per chunk */
#define BWD_X_BM           64  /* backward x pass: rows per staged tile */
#define BWD_X_BK           64  /* backward x pass: columns of x per CTA (8 warps x n8) */
#define BWD_TARGET_CTAS    256 /* splits of N (dy pass) and M (x pass) aim at about this many CTAs */

typedef uint16_t raw16; /* a bf16 or f16 value as stored */

/* RK_DISPATCH_FLOAT for the two 16-bit dtypes only (the kernels have no f32 instantiation). */
#define LORA_DISPATCH(dtype, T, ...)                                          \
    switch (dtype) {                                                          \
        case RK_DTYPE_F16: { typedef __half T; __VA_ARGS__; } break;          \
        case RK_DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;  \
        default: break;                                                       \
    }

/* ------------------------------------------------------------------------------------------------
 * CUDA kernels */

template <typename T> __device__ __forceinline__ float raw_f32(raw16 h);
template <> __device__ __forceinline__ float raw_f32<__nv_bfloat16>(raw16 h) { return __uint_as_float((uint32_t) h << 16); }
template <> __device__ __forceinline__ float raw_f32<__half>(raw16 h) { return __half2float(__ushort_as_half(h)); }

template <typename T> __device__ __forceinline__ raw16 f32_raw(float f);
template <> __device__ __forceinline__ raw16 f32_raw<__nv_bfloat16>(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
template <> __device__ __forceinline__ raw16 f32_raw<__half>(float f) { return __half_as_ushort(__float2half_rn(f)); }

/* Two elements as one mma register: the lower-indexed element in the low half. */
__device__ __forceinline__ uint32_t pack2(raw16 lo, raw16 hi) { return (uint32_t) lo | ((uint32_t) hi << 16); }
/* Two consecutive shared elements (even index, 4-byte aligned) as one mma register. */
__device__ __forceinline__ uint32_t ld2(const raw16 * p) { return *reinterpret_cast<const uint32_t *>(p); }

/*
 * d (16x8 fp32) += a (16x16, row) b (16x8, col). Fragments as PTX documents them, with g = lane / 4, t = lane % 4:
 * a = {(g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)}, b = {(k 2t..2t+1, n g), (k 2t+8.., n g)},
 * d = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
 */
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

/* One mma.sync of shape MNK ("m16n8k16" / "m16n8k8") on TY ("bf16" / "f16") inputs; the operands follow. */
#define LORA_MMA(MNK, TY, AREGS, BREGS, ...)                                                               \
    asm volatile("mma.sync.aligned." MNK ".row.col.f32." TY "." TY ".f32 {%0,%1,%2,%3}, " AREGS ", " BREGS \
                 ", {%0,%1,%2,%3};\n"                                                                      \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                          \
                 : __VA_ARGS__)
#define LORA_MMA_K16(TY) \
    LORA_MMA("m16n8k16", TY, "{%4,%5,%6,%7}", "{%8,%9}", "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    LORA_MMA_K16("bf16");
#elif defined(__CUDA_ARCH__)
    (void) d; (void) a; (void) b0; (void) b1;
    __trap(); /* never launched: the launchers refuse bf16 below sm_80 */
#endif
}

template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    LORA_MMA_K16("f16");
#elif defined(__CUDA_ARCH__)
    /* sm_75: the k16 product as two k8 products (columns 0..7 use a0, a1, b0; columns 8..15 a2, a3, b1) */
    LORA_MMA("m16n8k8", "f16", "{%4,%5}", "{%6}", "r"(a[0]), "r"(a[1]), "r"(b0));
    LORA_MMA("m16n8k8", "f16", "{%4,%5}", "{%6}", "r"(a[2]), "r"(a[3]), "r"(b1));
#endif
}

/* The dropout of a call: p, the Philox key and counter offset, and q = 1/(1-p) (0 at p = 1: nothing is kept). */
struct drop {
    float    p;
    float    q;
    uint64_t seed;
    uint64_t offset;
};

/* Keep bits (bit e for flat element i0 + e, e < E) by the DROPOUT rule (kernels/dropout.h, rk_dropout_uniform). */
template <int E> __device__ __forceinline__ uint32_t keep_bits(const drop & d, uint64_t i0) {
    if (d.p <= 0.0f) return (1u << E) - 1u;
    const uint32_t key[2] = { (uint32_t) d.seed, (uint32_t) (d.seed >> 32) };
    uint32_t       w[4]   = { 0, 0, 0, 0 }, bits = 0;
    uint64_t       cur    = ~(uint64_t) 0;
#pragma unroll
    for (int e = 0; e < E; e++) {
        const uint64_t i = i0 + (uint64_t) e, grp = i >> 2;
        if (grp != cur) { /* one Philox block serves four consecutive elements */
            const uint32_t ctr[4] = { (uint32_t) grp, (uint32_t) (grp >> 32), (uint32_t) d.offset,
                                      (uint32_t) (d.offset >> 32) };
            rk_philox4x32_10(ctr, key, w);
            cur = grp;
        }
        const float uni = (float) (w[i & 3] >> 8) * (1.0f / 16777216.0f);
        bits |= (uni >= d.p ? 1u : 0u) << e;
    }
    return bits;
}

union pack8 {
    uint4 q;
    raw16 h[8];
};

/*
 * Copies elements k .. k+7 of a row (row NULL: a row outside the matrix) to 8 shared elements, zeros past n_cols.
 * vec: the row and k allow one 16-byte load.
 */
__device__ __forceinline__ void load8(raw16 * dst, const raw16 * row, int64_t k, int64_t n_cols, bool vec) {
    pack8 v;
    if (row && vec && k + 8 <= n_cols) {
        v.q = *reinterpret_cast<const uint4 *>(row + k);
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v.h[e] = (row && k + e < n_cols) ? row[k + e] : (raw16) 0;
    }
    *reinterpret_cast<uint4 *>(dst) = v.q;
}

/* As load8 for row m of x (K columns), zeroing dropped elements; returns the keep bits (0 for a missing row). */
__device__ __forceinline__ uint32_t load8_x(raw16 * dst, const raw16 * x, int64_t ldx, int64_t m, bool row_ok,
                                            int64_t k, int64_t K, const drop & d, bool vec) {
    load8(dst, row_ok ? x + m * ldx : nullptr, k, K, vec);
    if (!row_ok) return 0;
    const uint32_t keep = keep_bits<8>(d, (uint64_t) (m * K + k));
    if (keep != 0xFFu) {
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (!((keep >> e) & 1u)) dst[e] = 0;
    }
    return keep;
}

/* y[m][n] += scale * c0, y[m][n+1] += scale * c1 (in fp32, one rounding); n is even. pair: one 4-byte access. */
template <typename T>
__device__ __forceinline__ void add_pair(raw16 * y, int64_t ld, int64_t m, int64_t n, int64_t M, int64_t N, float c0,
                                         float c1, float scale, bool pair) {
    if (m >= M || n >= N) return;
    raw16 * p = y + m * ld + n;
    if (pair && n + 1 < N) {
        const uint32_t v = *reinterpret_cast<const uint32_t *>(p);
        *reinterpret_cast<uint32_t *>(p) = pack2(f32_raw<T>(raw_f32<T>((raw16) (v & 0xFFFFu)) + scale * c0),
                                                 f32_raw<T>(raw_f32<T>((raw16) (v >> 16)) + scale * c1));
    } else {
        p[0] = f32_raw<T>(raw_f32<T>(p[0]) + scale * c0);
        if (n + 1 < N) p[1] = f32_raw<T>(raw_f32<T>(p[1]) + scale * c1);
    }
}

/* ---- forward, fused --------------------------------------------------------------------------------------- */

template <int RP> struct fwd_smem {
    union {
        struct {
            raw16 x[FWD_BM][FWD_BK + RK_LORA_PAD]; /* x chunk, dropped elements zeroed */
            raw16 a[RP][FWD_BK + RK_LORA_PAD];     /* A chunk, rows >= r and columns >= K zero */
        } in;
        float red[RK_LORA_WARPS][FWD_BM][RP];      /* the warps' partial u */
        raw16 b[FWD_BN][RP + RK_LORA_PAD];         /* B chunk, columns >= r zero */
    };
    raw16 u[FWD_BM][RP + RK_LORA_PAD];             /* u of the CTA's rows, columns >= r zero */
};

template <typename T, int RP>
__global__ void __launch_bounds__(RK_LORA_BLOCK_SIZE)
    lora_fwd_kernel_v1(raw16 * __restrict__ y, raw16 * __restrict__ u, const raw16 * __restrict__ x,
                       const raw16 * __restrict__ A, const raw16 * __restrict__ B, int64_t M, int64_t K, int64_t N,
                       int r, int64_t ldx, int64_t ldy, float s, drop d, bool vec_x, bool vec_a, bool vec_b,
                       bool pair_y) {
    // x (M,K) row stride ldx, A (r,K), B (N,r), y (M,N) row stride ldy, u (M,r) or NULL
    constexpr int NT = RP / 8, KS = RP / 16;
    __shared__ __align__(16) fwd_smem<RP> sm;
    const int     tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int64_t m0  = (int64_t) blockIdx.x * FWD_BM;

    /* phase 1: u = dropout(x) A^T for rows m0 .. m0+15, x read once */
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += FWD_BK) {
        {   /* FWD_BM * FWD_BK / 8 = 256 groups of 8: one per thread */
            const int row = tid / (FWD_BK / 8), c8 = (tid % (FWD_BK / 8)) * 8;
            load8_x(&sm.in.x[row][c8], x, ldx, m0 + row, m0 + row < M, k0 + c8, K, d, vec_x);
        }
        for (int i = tid; i < RP * (FWD_BK / 8); i += RK_LORA_BLOCK_SIZE) {
            const int j = i / (FWD_BK / 8), c8 = (i % (FWD_BK / 8)) * 8;
            load8(&sm.in.a[j][c8], j < r ? A + (int64_t) j * K : nullptr, k0 + c8, K, vec_a);
        }
        __syncthreads();
        const int kk = warp * 16 + 2 * t; /* this warp's k16 slice of the chunk */
        const uint32_t af[4] = { ld2(&sm.in.x[g][kk]), ld2(&sm.in.x[g + 8][kk]), ld2(&sm.in.x[g][kk + 8]),
                                 ld2(&sm.in.x[g + 8][kk + 8]) };
#pragma unroll
        for (int j = 0; j < NT; j++)
            mma16816<T>(acc[j], af, ld2(&sm.in.a[j * 8 + g][kk]), ld2(&sm.in.a[j * 8 + g][kk + 8]));
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        sm.red[warp][g][j * 8 + 2 * t]         = acc[j][0];
        sm.red[warp][g][j * 8 + 2 * t + 1]     = acc[j][1];
        sm.red[warp][g + 8][j * 8 + 2 * t]     = acc[j][2];
        sm.red[warp][g + 8][j * 8 + 2 * t + 1] = acc[j][3];
    }
    __syncthreads();
    for (int i = tid; i < FWD_BM * RP; i += RK_LORA_BLOCK_SIZE) {
        const int row = i / RP, j = i % RP;
        float     v   = 0.0f;
#pragma unroll
        for (int w = 0; w < RK_LORA_WARPS; w++) v += sm.red[w][row][j]; /* fixed order: deterministic */
        const raw16 h = j < r ? f32_raw<T>(v * d.q) : (raw16) 0;
        sm.u[row][j]  = h;
        if (u && j < r && m0 + row < M) u[(m0 + row) * r + j] = h;
    }
    __syncthreads();

    /* phase 2: y += s u B^T over all N; u (rounded as stored) is the A operand, held in registers */
    uint32_t uf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        const int kk = ks * 16 + 2 * t;
        uf[ks][0]    = ld2(&sm.u[g][kk]);
        uf[ks][1]    = ld2(&sm.u[g + 8][kk]);
        uf[ks][2]    = ld2(&sm.u[g][kk + 8]);
        uf[ks][3]    = ld2(&sm.u[g + 8][kk + 8]);
    }
    for (int i = tid; i < FWD_BN * RP; i += RK_LORA_BLOCK_SIZE) { /* padding columns, once (staging skips them) */
        if (i % RP >= r) sm.b[i / RP][i % RP] = 0;
    }
    for (int64_t n0 = 0; n0 < N; n0 += FWD_BN) {
        if (vec_b) { /* r % 8 == 0: rows of B as 16-byte pieces */
            const int q = r / 8;
            for (int i = tid; i < FWD_BN * q; i += RK_LORA_BLOCK_SIZE) {
                const int     nn = i / q, c8 = (i % q) * 8;
                const int64_t n  = n0 + nn;
                *reinterpret_cast<uint4 *>(&sm.b[nn][c8]) =
                    n < N ? *reinterpret_cast<const uint4 *>(B + n * r + c8) : make_uint4(0, 0, 0, 0);
            }
        } else {
            for (int i = tid; i < FWD_BN * r; i += RK_LORA_BLOCK_SIZE) {
                const int     nn = i / r, j = i % r;
                const int64_t n  = n0 + nn;
                sm.b[nn][j]      = n < N ? B[n * r + j] : (raw16) 0;
            }
        }
        __syncthreads();
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            const int nc   = warp * 32 + nt * 8; /* first of the 8 columns of y in this tile, within the chunk */
            float     c[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#pragma unroll
            for (int ks = 0; ks < KS; ks++)
                mma16816<T>(c, uf[ks], ld2(&sm.b[nc + g][ks * 16 + 2 * t]), ld2(&sm.b[nc + g][ks * 16 + 2 * t + 8]));
            const int64_t n = n0 + nc + 2 * t;
            add_pair<T>(y, ldy, m0 + g, n, M, N, c[0], c[1], s, pair_y);
            add_pair<T>(y, ldy, m0 + g + 8, n, M, N, c[2], c[3], s, pair_y);
        }
        __syncthreads();
    }
}

/* ---- backward, fused ------------------------------------------------------------------------------------- */

template <int RP> struct bwd_dy_smem {
    raw16 dy[BWD_DY_BM][BWD_DY_BN + RK_LORA_PAD]; /* dy chunk, zero outside the matrix */
    raw16 bt[RP][BWD_DY_BN + RK_LORA_PAD];        /* B^T chunk: bt[j][n] = B[n0 + n][j] */
    raw16 ut[RP][BWD_DY_BM + RK_LORA_PAD];        /* u^T of the tile's rows */
};

template <typename T, int RP>
__global__ void __launch_bounds__(RK_LORA_BLOCK_SIZE)
    lora_bwd_dy_kernel_v1(float * __restrict__ gp, float * __restrict__ dbp, const raw16 * __restrict__ dy,
                          const raw16 * __restrict__ u, const raw16 * __restrict__ B, int64_t M, int64_t N, int r,
                          int64_t lddy, int64_t chunks_per_split, bool vec_dy) {
    // dy (M,N) row stride lddy, u (M,r), B (N,r); gp (gridDim.y, M, r) and dbp (gridDim.x, N, r) fp32 partials
    constexpr int NT = RP / 8;
    __shared__ __align__(16) bwd_dy_smem<RP> sm;
    const int     tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int64_t m0      = (int64_t) blockIdx.x * BWD_DY_BM;
    const int64_t n_begin = (int64_t) blockIdx.y * chunks_per_split * BWD_DY_BN;
    const int64_t n_end   = min(N, n_begin + chunks_per_split * BWD_DY_BN);

    for (int i = tid; i < RP * BWD_DY_BM; i += RK_LORA_BLOCK_SIZE) {
        const int     j = i / BWD_DY_BM, mm = i % BWD_DY_BM;
        const int64_t m = m0 + mm;
        sm.ut[j][mm]    = (j < r && m < M) ? u[m * r + j] : (raw16) 0;
    }
    float gacc[NT][4]; /* g of rows m0 + 16 warp .. +15, all RP columns, summed over this split's columns */
#pragma unroll
    for (int j = 0; j < NT; j++) gacc[j][0] = gacc[j][1] = gacc[j][2] = gacc[j][3] = 0.0f;
    const int rw = warp * 16;             /* g: this warp's 16 rows of the tile */
    const int nr = (warp & 3) * 16;       /* dB: this warp's 16 columns of the chunk */
    const int j0 = (warp >> 2) * (NT / 2); /* dB: its half of the n8 tiles of r */

    for (int64_t n0 = n_begin; n0 < n_end; n0 += BWD_DY_BN) {
        for (int i = tid; i < BWD_DY_BM * (BWD_DY_BN / 8); i += RK_LORA_BLOCK_SIZE) {
            const int     row = i / (BWD_DY_BN / 8), c8 = (i % (BWD_DY_BN / 8)) * 8;
            const int64_t m   = m0 + row;
            load8(&sm.dy[row][c8], m < M ? dy + m * lddy : nullptr, n0 + c8, N, vec_dy);
        }
        for (int i = tid; i < RP * BWD_DY_BN; i += RK_LORA_BLOCK_SIZE) {
            const int     j = i / BWD_DY_BN, nn = i % BWD_DY_BN;
            const int64_t n = n0 + nn;
            sm.bt[j][nn]    = (j < r && n < N) ? B[n * r + j] : (raw16) 0;
        }
        __syncthreads();
        /* g += dy B: A operand dy (rows m, k = columns n), B operand B^T rows */
#pragma unroll
        for (int ks = 0; ks < BWD_DY_BN / 16; ks++) {
            const int      kk    = ks * 16 + 2 * t;
            const uint32_t af[4] = { ld2(&sm.dy[rw + g][kk]), ld2(&sm.dy[rw + g + 8][kk]), ld2(&sm.dy[rw + g][kk + 8]),
                                     ld2(&sm.dy[rw + g + 8][kk + 8]) };
#pragma unroll
            for (int j = 0; j < NT; j++) mma16816<T>(gacc[j], af, ld2(&sm.bt[j * 8 + g][kk]), ld2(&sm.bt[j * 8 + g][kk + 8]));
        }
        /* dB partial of this chunk = dy^T u: A operand dy^T (rows n, k = rows m, packed from dy), B operand u^T rows */
        if (dbp) {
            float dacc[NT / 2][4];
#pragma unroll
            for (int j = 0; j < NT / 2; j++) dacc[j][0] = dacc[j][1] = dacc[j][2] = dacc[j][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < BWD_DY_BM / 16; ks++) {
                const int      mk    = ks * 16 + 2 * t;
                const uint32_t af[4] = { pack2(sm.dy[mk][nr + g], sm.dy[mk + 1][nr + g]),
                                         pack2(sm.dy[mk][nr + g + 8], sm.dy[mk + 1][nr + g + 8]),
                                         pack2(sm.dy[mk + 8][nr + g], sm.dy[mk + 9][nr + g]),
                                         pack2(sm.dy[mk + 8][nr + g + 8], sm.dy[mk + 9][nr + g + 8]) };
#pragma unroll
                for (int j = 0; j < NT / 2; j++) {
                    const int jr = (j0 + j) * 8 + g;
                    mma16816<T>(dacc[j], af, ld2(&sm.ut[jr][mk]), ld2(&sm.ut[jr][mk + 8]));
                }
            }
#pragma unroll
            for (int j = 0; j < NT / 2; j++) {
                const int jc = (j0 + j) * 8 + 2 * t;
#pragma unroll
                for (int h = 0; h < 2; h++) { /* rows n and n + 8 of the fragment */
                    const int64_t n = n0 + nr + g + 8 * h;
                    if (n >= N) continue;
                    float * o = dbp + ((int64_t) blockIdx.x * N + n) * r;
                    if (jc < r) o[jc] = dacc[j][2 * h];
                    if (jc + 1 < r) o[jc + 1] = dacc[j][2 * h + 1];
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int jc = j * 8 + 2 * t;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t m = m0 + rw + g + 8 * h;
            if (m >= M) continue;
            float * o = gp + ((int64_t) blockIdx.y * M + m) * r;
            if (jc < r) o[jc] = gacc[j][2 * h];
            if (jc + 1 < r) o[jc + 1] = gacc[j][2 * h + 1];
        }
    }
}

/* Fixed-order sums of partials (one thread per output element): out[e] (+)= scale * sum_p part[p * n + e]. */
struct reduce_job {
    void *        out;     /* float or raw16 */
    bool          out_f32;
    bool          acc;     /* out += scale * sum, else out = scale * sum */
    const float * part;    /* (n_part, n) */
    int64_t       n_part, n;
    float         scale;
};

template <typename T> __device__ __forceinline__ void reduce_part(const reduce_job & jb, int64_t e0, int64_t step) {
    for (int64_t e = e0; e < jb.n; e += step) {
        float v = 0.0f;
        for (int64_t p = 0; p < jb.n_part; p++) v += jb.part[p * jb.n + e];
        v *= jb.scale;
        if (jb.out_f32) {
            float * o = (float *) jb.out + e;
            *o        = jb.acc ? *o + v : v;
        } else {
            raw16 * o = (raw16 *) jb.out + e;
            *o        = f32_raw<T>(jb.acc ? raw_f32<T>(*o) + v : v);
        }
    }
}

/* Two independent reductions in one launch (b.n may be 0). */
template <typename T>
__global__ void __launch_bounds__(RK_LORA_BLOCK_SIZE) lora_bwd_reduce_kernel(reduce_job a, reduce_job b) {
    const int64_t e0 = (int64_t) blockIdx.x * blockDim.x + threadIdx.x, step = (int64_t) gridDim.x * blockDim.x;
    reduce_part<T>(a, e0, step);
    reduce_part<T>(b, e0, step);
}

template <int RP> struct bwd_x_smem {
    raw16   x[BWD_X_BM][BWD_X_BK + RK_LORA_PAD];  /* x * keep, zero outside the CTA's rows / K */
    raw16   g[BWD_X_BM][RP + RK_LORA_PAD];        /* g rows, columns >= r zero */
    raw16   gt[RP][BWD_X_BM + RK_LORA_PAD];       /* the same, transposed */
    raw16   at[BWD_X_BK][RP + RK_LORA_PAD];       /* A^T tile: at[k][j] = A[j][k0 + k] */
    uint8_t keep[BWD_X_BM][BWD_X_BK / 8];         /* keep bits of the x tile */
};

template <typename T, int RP>
__global__ void __launch_bounds__(RK_LORA_BLOCK_SIZE)
    lora_bwd_x_kernel_v1(raw16 * __restrict__ dx, float * __restrict__ dap, const raw16 * __restrict__ x,
                         const raw16 * __restrict__ gm, const raw16 * __restrict__ A, int64_t M, int64_t K, int r,
                         int64_t ldx, int64_t lddx, int64_t rows_per_split, float s, drop d, bool vec_x,
                         bool pair_dx) {
    // x (M,K) row stride ldx, g (M,r), A (r,K); dx (M,K) row stride lddx or NULL; dap (gridDim.y, r, K) or NULL
    constexpr int KS = RP / 16;
    __shared__ __align__(16) bwd_x_smem<RP> sm;
    const int     tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int64_t k0      = (int64_t) blockIdx.x * BWD_X_BK;
    const int64_t m_begin = (int64_t) blockIdx.y * rows_per_split;
    const int64_t m_end   = min(M, m_begin + rows_per_split);

    for (int i = tid; i < RP * BWD_X_BK; i += RK_LORA_BLOCK_SIZE) { /* consecutive threads read consecutive k */
        const int     j = i / BWD_X_BK, kk = i % BWD_X_BK;
        const int64_t k = k0 + kk;
        sm.at[kk][j]    = (j < r && k < K) ? A[(int64_t) j * K + k] : (raw16) 0;
    }
    float aacc[KS][4]; /* dA partial: rows j = 16 q .. +15 (q < KS), columns k0 + 8 warp .. +7 */
#pragma unroll
    for (int q = 0; q < KS; q++) aacc[q][0] = aacc[q][1] = aacc[q][2] = aacc[q][3] = 0.0f;
    const int rw = (warp & 3) * 16;        /* dx: this warp's 16 rows of the tile */
    const int c0 = (warp >> 2) * 32;       /* dx: its 32 columns */
    const int kn = warp * 8;               /* dA: its 8 columns */

    for (int64_t mb = m_begin; mb < m_end; mb += BWD_X_BM) {
        for (int i = tid; i < BWD_X_BM * (BWD_X_BK / 8); i += RK_LORA_BLOCK_SIZE) {
            const int     row = i / (BWD_X_BK / 8), c8 = (i % (BWD_X_BK / 8)) * 8;
            const int64_t m   = mb + row;
            sm.keep[row][c8 / 8] = (uint8_t) load8_x(&sm.x[row][c8], x, ldx, m, m < m_end, k0 + c8, K, d, vec_x);
        }
        for (int i = tid; i < BWD_X_BM * RP; i += RK_LORA_BLOCK_SIZE) {
            const int     mm = i / RP, j = i % RP;
            const int64_t m  = mb + mm;
            const raw16   v  = (j < r && m < m_end) ? gm[m * r + j] : (raw16) 0;
            sm.g[mm][j]      = v;
            sm.gt[j][mm]     = v;
        }
        __syncthreads();
        if (dx) { /* dx += s q (g A) * keep: A operand g rows, B operand A^T rows */
            uint32_t af[KS][4];
#pragma unroll
            for (int ks = 0; ks < KS; ks++) {
                const int kk = ks * 16 + 2 * t;
                af[ks][0]    = ld2(&sm.g[rw + g][kk]);
                af[ks][1]    = ld2(&sm.g[rw + g + 8][kk]);
                af[ks][2]    = ld2(&sm.g[rw + g][kk + 8]);
                af[ks][3]    = ld2(&sm.g[rw + g + 8][kk + 8]);
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                const int nc   = c0 + nt * 8;
                float     c[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#pragma unroll
                for (int ks = 0; ks < KS; ks++)
                    mma16816<T>(c, af[ks], ld2(&sm.at[nc + g][ks * 16 + 2 * t]), ld2(&sm.at[nc + g][ks * 16 + 2 * t + 8]));
                const int col = nc + 2 * t; /* even: both columns in the same keep byte */
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int      row = rw + g + 8 * h;
                    const uint32_t kb  = sm.keep[row][col / 8] >> (col % 8);
                    add_pair<T>(dx, lddx, mb + row, k0 + col, m_end, K, (kb & 1u) ? c[2 * h] : 0.0f,
                                (kb & 2u) ? c[2 * h + 1] : 0.0f, s * d.q, pair_dx);
                }
            }
        }
        if (dap) { /* dA partial += g^T (x * keep): A operand g^T rows, B operand x (packed down its columns) */
#pragma unroll
            for (int ks = 0; ks < BWD_X_BM / 16; ks++) {
                const int      mk = ks * 16 + 2 * t;
                const uint32_t b0 = pack2(sm.x[mk][kn + g], sm.x[mk + 1][kn + g]);
                const uint32_t b1 = pack2(sm.x[mk + 8][kn + g], sm.x[mk + 9][kn + g]);
#pragma unroll
                for (int q = 0; q < KS; q++) {
                    const uint32_t af[4] = { ld2(&sm.gt[q * 16 + g][mk]), ld2(&sm.gt[q * 16 + g + 8][mk]),
                                             ld2(&sm.gt[q * 16 + g][mk + 8]), ld2(&sm.gt[q * 16 + g + 8][mk + 8]) };
                    mma16816<T>(aacc[q], af, b0, b1);
                }
            }
        }
        __syncthreads();
    }
    if (dap) {
#pragma unroll
        for (int q = 0; q < KS; q++) {
            const int64_t k = k0 + kn + 2 * t;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int j = q * 16 + g + 8 * h;
                if (j >= r) continue;
                float * o = dap + ((int64_t) blockIdx.y * r + j) * K;
                if (k < K) o[k] = aacc[q][2 * h];
                if (k + 1 < K) o[k + 1] = aacc[q][2 * h + 1];
            }
        }
    }
}

/* ---- unfused reference path: elementwise dropout pieces around cuBLAS ------------------------------------ */

/*
 * The unfused path's dropout, elementwise over (M,K) in groups of 4 flat elements (one Philox block each):
 *   ADD false: out (M,K) contiguous = in * keep * scale, rounded to T (in = x with row stride ld, scale = q);
 *   ADD true:  out (row stride ld) += scale * in * keep (in = g A, contiguous; scale = s q).
 */
template <typename T, bool ADD>
__global__ void __launch_bounds__(RK_LORA_BLOCK_SIZE)
    lora_keep_kernel(raw16 * __restrict__ out, const raw16 * __restrict__ in, int64_t M, int64_t K, int64_t ld, drop d,
                     float scale) {
    const int64_t n = M * K;
    for (int64_t grp = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; grp * 4 < n;
         grp += (int64_t) gridDim.x * blockDim.x) {
        const uint32_t keep = keep_bits<4>(d, (uint64_t) grp * 4);
        for (int e = 0; e < 4 && grp * 4 + e < n; e++) {
            const int64_t i = grp * 4 + e, m = i / K, k = i % K;
            const bool    kept = (keep >> e) & 1u;
            if (ADD) {
                raw16 * p = out + m * ld + k;
                if (kept) *p = f32_raw<T>(raw_f32<T>(*p) + scale * raw_f32<T>(in[i]));
            } else {
                out[i] = kept ? f32_raw<T>(raw_f32<T>(in[m * ld + k]) * scale) : (raw16) 0;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * kernel launchers */

/* The shape of a call. */
struct lora_dims {
    int64_t M, K, N, r;
    int64_t ldx;  /* x's row stride */
    int64_t ldmn; /* row stride of y (forward) or dy (backward) */
};

/* The backward's grids and its scratch layout (byte offsets, each 256-aligned). */
struct bwd_plan {
    int64_t mt, ns, chunks_per_split; /* dy pass: grid (mt, ns) */
    int64_t kt, ms, rows_per_split;   /* x pass: grid (kt, ms) */
    size_t  off_gp, off_dbp, off_g, off_dap, bytes;
};

static size_t align256(size_t n) { return (n + 255) & ~(size_t) 255; }
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static bwd_plan plan_bwd(int64_t M, int64_t K, int64_t N, int64_t r, size_t es) {
    bwd_plan      p;
    const int64_t nchunks = cdiv(N, BWD_DY_BN), mtiles = cdiv(M, BWD_X_BM);
    p.mt               = cdiv(M, BWD_DY_BM);
    p.chunks_per_split = cdiv(nchunks, clamp64(cdiv(BWD_TARGET_CTAS, p.mt), 1, nchunks));
    p.ns               = cdiv(nchunks, p.chunks_per_split);
    p.kt               = cdiv(K, BWD_X_BK);
    p.rows_per_split   = cdiv(mtiles, clamp64(cdiv(BWD_TARGET_CTAS, p.kt), 1, mtiles)) * BWD_X_BM;
    p.ms               = cdiv(M, p.rows_per_split);
    p.off_gp           = 0;
    p.off_dbp          = p.off_gp + align256((size_t) (p.ns * M * r) * sizeof(float));
    p.off_g            = p.off_dbp + align256((size_t) (p.mt * N * r) * sizeof(float));
    p.off_dap          = p.off_g + align256((size_t) (M * r) * es);
    p.bytes            = p.off_dap + align256((size_t) (p.ms * r * K) * sizeof(float));
    return p;
}

/* From bench_lora on an H200 (docs/PERF.md, 7B shapes, r 16): the forward unfused (1.5-3.6x the fused kernel), the
 * backward unfused without dropout (1.6-2.0x) and fused with it (1.15x at N 4096; 0.95x at N 14336). */
extern "C" enum rk_lora_variant rk_cuda_lora_pick(bool backward, float dropout) {
    static int forced = -1;
    if (forced < 0) forced = rk_env_variant("RK_LORA_VARIANT", 3);
    if (forced > 0) return forced == 1 ? RK_LORA_FUSED : RK_LORA_UNFUSED;
    return backward && dropout > 0.0f ? RK_LORA_FUSED : RK_LORA_UNFUSED;
}

extern "C" size_t rk_cuda_lora_scratch_bytes(enum rk_lora_variant variant, bool backward, int64_t M, int64_t K,
                                             int64_t N, int64_t r, enum rk_dtype dt) {
    if (M < 1 || K < 1 || N < 1 || r < 1) return 0;
    const size_t es = rk_dtype_traits[dt].type_size;
    if (variant == RK_LORA_UNFUSED) return align256((size_t) (M * K) * es) + align256((size_t) (M * r) * es);
    return backward ? plan_bwd(M, K, N, r, es).bytes : 0;
}

static bool is16(enum rk_dtype t) { return t == RK_DTYPE_F16 || t == RK_DTYPE_BF16; }

static bool dense_shape(const struct rk_tensor * t, int64_t rows, int64_t cols) {
    return rk_tensor_is_contiguous(t) && rk_tensor_nelements(t) == rows * cols && t->ne[t->ndim - 1] == cols;
}

/* Checks what both launchers share; mn is y (forward) or dy (backward). */
static enum rk_status check_call(const char * op, const struct rk_tensor * x, const struct rk_tensor * A,
                                 const struct rk_tensor * B, const struct rk_tensor * mn,
                                 const struct rk_lora_params * p, lora_dims * d) {
    const enum rk_dtype dt = x->dtype;
    if (!is16(dt) || A->dtype != dt || B->dtype != dt || mn->dtype != dt)
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s (cuda): f16/bf16 tensors of one dtype only (x is %s)", op,
                            rk_dtype_traits[dt].name);
    if (dt == RK_DTYPE_BF16) {
        int dev = 0, major = 0;
        RK_CUDA_CHECK(cudaGetDevice(&dev));
        RK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        if (major < 8) return rk_set_error(RK_STATUS_UNSUPPORTED, "%s (cuda): bf16 needs sm_80 or newer", op);
    }
    struct rk_rows rx, rm;
    if (!rk_rows_of(x, &rx) || !rk_rows_of(mn, &rm) || A->ndim != 2 || B->ndim != 2)
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s (cuda): x and %s need contiguous rows, A and B 2-D", op,
                            mn->name);
    d->M = rx.nrows, d->K = rx.ncols, d->ldx = rx.stride, d->r = A->ne[0], d->N = B->ne[0], d->ldmn = rm.stride;
    if (!dense_shape(A, d->r, d->K) || !dense_shape(B, d->N, d->r) || rm.nrows != d->M || rm.ncols != d->N)
        return rk_set_error(RK_STATUS_ARG, "%s (cuda): shapes disagree: x (%lld,%lld), A (%lld,%lld), B (%lld,%lld), "
                            "%s (%lld,%lld), or A/B not contiguous", op, (long long) d->M, (long long) d->K,
                            (long long) A->ne[0], (long long) A->ne[1], (long long) B->ne[0], (long long) B->ne[1],
                            mn->name, (long long) rm.nrows, (long long) rm.ncols);
    if (d->r < 1 || d->r > RK_LORA_MAX_RANK)
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s (cuda): rank %lld outside 1..%d", op, (long long) d->r,
                            RK_LORA_MAX_RANK);
    if (!(p->dropout >= 0.0f && p->dropout <= 1.0f))
        return rk_set_error(RK_STATUS_ARG, "%s (cuda): dropout p = %g outside [0, 1]", op, (double) p->dropout);
    return RK_OK;
}

static drop drop_of(const struct rk_lora_params * p) {
    drop d;
    d.p      = p->dropout;
    d.q      = p->dropout < 1.0f ? 1.0f / (1.0f - p->dropout) : 0.0f;
    d.seed   = p->seed;
    d.offset = p->offset;
    return d;
}

static bool vec_ok(const void * ptr, int64_t ld) { return rk_ptr_align(ptr) >= 16 && ld % 8 == 0; }
static bool pair_ok(const void * ptr, int64_t ld) { return rk_ptr_align(ptr) >= 4 && ld % 2 == 0; }
static int  rank_pad(int64_t r) { return (int) cdiv(r, 16) * 16; }

/* Grid of an elementwise kernel over n elements in groups of 4. */
static unsigned ew_grid(int64_t n) {
    return (unsigned) clamp64(cdiv(cdiv(n, 4), RK_LORA_BLOCK_SIZE), 1, 65535);
}

static cudaDataType_t cuda_dt(enum rk_dtype t) {
    return t == RK_DTYPE_BF16 ? CUDA_R_16BF : t == RK_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/*
 * Row-major C (M,N) = alpha op(A) op(B) + beta C through column-major cuBLAS: the row-major matrices are the
 * transposed column-major ones, so cuBLAS computes C^T = op(B)^T op(A)^T with the operands swapped.
 */
static void gemm_rm(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void * A,
                    enum rk_dtype adt, int64_t lda, const void * B, enum rk_dtype bdt, int64_t ldb, float beta,
                    void * C, enum rk_dtype cdt, int64_t ldc) {
    RK_CUBLAS_CHECK(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int) N, (int) M,
                                 (int) K, &alpha, B, cuda_dt(bdt), (int) ldb, A, cuda_dt(adt), (int) lda, &beta, C,
                                 cuda_dt(cdt), (int) ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static enum rk_status check_ws(const char * op, const struct rk_cuda_lora_ws * ws, size_t need) {
    if (ws && ws->variant == RK_LORA_UNFUSED && !ws->cublas)
        return rk_set_error(RK_STATUS_ARG, "%s (cuda): the unfused variant needs a cuBLAS handle", op);
    if (need > 0 && (!ws || !ws->scratch || ws->scratch_bytes < need))
        return rk_set_error(RK_STATUS_ARG, "%s (cuda): needs %zu bytes of scratch, got %zu", op, need,
                            ws && ws->scratch ? ws->scratch_bytes : (size_t) 0);
    return RK_OK;
}

/* The unfused path's x' = dropout(x): x itself at p = 0, else tmp (M,K) filled by lora_keep_kernel; *ld its row
 * stride. */
static const void * dropped_input(const struct rk_tensor * x, const lora_dims & d, const struct rk_lora_params * p,
                                  void * tmp, int64_t * ld, cudaStream_t stream) {
    if (p->dropout == 0.0f) return x->data;
    const drop dr = drop_of(p);
    LORA_DISPATCH(x->dtype, T, {
        lora_keep_kernel<T, false><<<ew_grid(d.M * d.K), RK_LORA_BLOCK_SIZE, 0, stream>>>(
            (raw16 *) tmp, (const raw16 *) x->data, d.M, d.K, d.ldx, dr, dr.q);
    });
    RK_CUDA_CHECK(cudaGetLastError());
    *ld = d.K;
    return tmp;
}

template <typename T, int RP>
static void launch_fwd(struct rk_tensor * y, struct rk_tensor * u, const struct rk_tensor * x,
                       const struct rk_tensor * A, const struct rk_tensor * B, const lora_dims & d, float s,
                       const drop & dr, cudaStream_t stream) {
    const int64_t r = d.r;
    lora_fwd_kernel_v1<T, RP><<<(unsigned) cdiv(d.M, FWD_BM), RK_LORA_BLOCK_SIZE, 0, stream>>>(
        (raw16 *) y->data, u ? (raw16 *) u->data : nullptr, (const raw16 *) x->data, (const raw16 *) A->data,
        (const raw16 *) B->data, d.M, d.K, d.N, (int) r, d.ldx, d.ldmn, s, dr, vec_ok(x->data, d.ldx),
        vec_ok(A->data, d.K), r % 8 == 0 && rk_ptr_align(B->data) >= 16, pair_ok(y->data, d.ldmn));
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_lora_fwd(struct rk_tensor * y, struct rk_tensor * u, const struct rk_tensor * x,
                                           const struct rk_tensor * A, const struct rk_tensor * B,
                                           const struct rk_lora_params * p, const struct rk_cuda_lora_ws * ws,
                                           cudaStream_t stream) {
    lora_dims d = { 0, 0, 0, 0, 0, 0 };
    RK_TRY(check_call("LORA_FWD", x, A, B, y, p, &d));
    if (u && (u->dtype != x->dtype || !dense_shape(u, d.M, d.r)))
        return rk_set_error(RK_STATUS_ARG, "LORA_FWD (cuda): u must be contiguous (%lld,%lld) %s", (long long) d.M,
                            (long long) d.r, rk_dtype_traits[x->dtype].name);
    const bool unfused = ws && ws->variant == RK_LORA_UNFUSED;
    RK_TRY(check_ws("LORA_FWD", ws, unfused ? rk_cuda_lora_scratch_bytes(RK_LORA_UNFUSED, false, d.M, d.K, d.N, d.r,
                                                                          x->dtype) : 0));
    if (d.M == 0) return RK_OK;
    const drop          dr = drop_of(p);
    const enum rk_dtype dt = x->dtype;
    if (!unfused) {
        LORA_DISPATCH(dt, T, {
            switch (rank_pad(d.r)) {
                case 16: launch_fwd<T, 16>(y, u, x, A, B, d, p->scale, dr, stream); break;
                case 32: launch_fwd<T, 32>(y, u, x, A, B, d, p->scale, dr, stream); break;
                case 48: launch_fwd<T, 48>(y, u, x, A, B, d, p->scale, dr, stream); break;
                default: launch_fwd<T, 64>(y, u, x, A, B, d, p->scale, dr, stream); break;
            }
        });
        return RK_OK;
    }
    /* unfused: x' = dropout(x) (scratch; x itself at p = 0), u = x' A^T, y += s u B^T */
    const size_t es  = rk_dtype_traits[dt].type_size;
    uint8_t *    scr = (uint8_t *) ws->scratch;
    int64_t      ldx = d.ldx;
    const void * xin = dropped_input(x, d, p, scr, &ldx, stream);
    void *       ub  = u ? u->data : scr + align256((size_t) (d.M * d.K) * es);
    RK_CUBLAS_CHECK(cublasSetStream(ws->cublas, stream));
    gemm_rm(ws->cublas, false, true, d.M, d.r, d.K, 1.0f, xin, dt, ldx, A->data, dt, d.K, 0.0f, ub, dt, d.r);
    gemm_rm(ws->cublas, false, true, d.M, d.N, d.r, p->scale, ub, dt, d.r, B->data, dt, d.r, 1.0f, y->data, dt, d.ldmn);
    return RK_OK;
}

template <typename T, int RP>
static void launch_bwd(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * x,
                       const struct rk_tensor * u, const struct rk_tensor * A, const struct rk_tensor * B,
                       const struct rk_lora_params * p, const lora_dims & d, int64_t lddx, uint8_t * scr,
                       cudaStream_t stream) {
    const bwd_plan pl  = plan_bwd(d.M, d.K, d.N, d.r, sizeof(raw16));
    const drop     dr  = drop_of(p);
    float *        gp  = (float *) (scr + pl.off_gp);
    float *        dbp = (float *) (scr + pl.off_dbp);
    raw16 *        gm  = (raw16 *) (scr + pl.off_g);
    float *        dap = (float *) (scr + pl.off_dap);
    /* 1. one pass over dy: partials of g and of dB */
    lora_bwd_dy_kernel_v1<T, RP><<<dim3((unsigned) pl.mt, (unsigned) pl.ns), RK_LORA_BLOCK_SIZE, 0, stream>>>(
        gp, p->dB ? dbp : nullptr, (const raw16 *) dy->data, (const raw16 *) u->data, (const raw16 *) B->data, d.M,
        d.N, (int) d.r, d.ldmn, pl.chunks_per_split, vec_ok(dy->data, d.ldmn));
    RK_CUDA_CHECK(cudaGetLastError());
    /* 2. g = sum of its partials (rounded to T), dB += s * sum of its partials */
    reduce_job jg = { gm, false, false, gp, pl.ns, d.M * d.r, 1.0f };
    reduce_job jb = { nullptr, false, true, dbp, pl.mt, 0, p->scale };
    if (p->dB) {
        jb.out     = p->dB->data;
        jb.out_f32 = p->dB->dtype == RK_DTYPE_F32;
        jb.n       = d.N * d.r;
    }
    lora_bwd_reduce_kernel<T><<<ew_grid(4 * (jg.n + jb.n)), RK_LORA_BLOCK_SIZE, 0, stream>>>(jg, jb);
    RK_CUDA_CHECK(cudaGetLastError());
    if (!dx && !p->dA) return;
    /* 3. one pass over x: dx += s q (g A) * keep, partials of dA */
    lora_bwd_x_kernel_v1<T, RP><<<dim3((unsigned) pl.kt, (unsigned) pl.ms), RK_LORA_BLOCK_SIZE, 0, stream>>>(
        dx ? (raw16 *) dx->data : nullptr, p->dA ? dap : nullptr, (const raw16 *) x->data, gm,
        (const raw16 *) A->data, d.M, d.K, (int) d.r, d.ldx, lddx, pl.rows_per_split, p->scale, dr,
        vec_ok(x->data, d.ldx), dx && pair_ok(dx->data, lddx));
    RK_CUDA_CHECK(cudaGetLastError());
    if (!p->dA) return;
    /* 4. dA += s q * sum of its partials */
    reduce_job ja = { p->dA->data, p->dA->dtype == RK_DTYPE_F32, true, dap, pl.ms, d.r * d.K, p->scale * dr.q };
    reduce_job j0 = { nullptr, false, false, nullptr, 0, 0, 0.0f };
    lora_bwd_reduce_kernel<T><<<ew_grid(4 * ja.n), RK_LORA_BLOCK_SIZE, 0, stream>>>(ja, j0);
    RK_CUDA_CHECK(cudaGetLastError());
}

/* The unfused backward: cuBLAS products, dropout as elementwise kernels around them. */
static void unfused_bwd(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * x,
                        const struct rk_tensor * u, const struct rk_tensor * A, const struct rk_tensor * B,
                        const struct rk_lora_params * p, const lora_dims & d, int64_t lddx,
                        const struct rk_cuda_lora_ws * ws, cudaStream_t stream) {
    const enum rk_dtype dt  = x->dtype;
    const size_t        es  = rk_dtype_traits[dt].type_size;
    uint8_t *           tmp = (uint8_t *) ws->scratch;                       /* (M,K): x' or g A */
    void *              gb  = tmp + align256((size_t) (d.M * d.K) * es);      /* (M,r): g */
    const drop          dr  = drop_of(p);
    cublasHandle_t      h   = ws->cublas;
    RK_CUBLAS_CHECK(cublasSetStream(h, stream));
    gemm_rm(h, false, false, d.M, d.r, d.N, 1.0f, dy->data, dt, d.ldmn, B->data, dt, d.r, 0.0f, gb, dt, d.r);
    if (p->dB)
        gemm_rm(h, true, false, d.N, d.r, d.M, p->scale, dy->data, dt, d.ldmn, u->data, dt, d.r, 1.0f, p->dB->data,
                p->dB->dtype, d.r);
    if (p->dA) {
        int64_t      ldx = d.ldx;
        const void * xin = dropped_input(x, d, p, tmp, &ldx, stream);
        gemm_rm(h, true, false, d.r, d.K, d.M, p->scale, gb, dt, d.r, xin, dt, ldx, 1.0f, p->dA->data, p->dA->dtype,
                d.K);
    }
    if (!dx) return;
    if (p->dropout == 0.0f) {
        gemm_rm(h, false, false, d.M, d.K, d.r, p->scale, gb, dt, d.r, A->data, dt, d.K, 1.0f, dx->data, dt, lddx);
        return;
    }
    gemm_rm(h, false, false, d.M, d.K, d.r, 1.0f, gb, dt, d.r, A->data, dt, d.K, 0.0f, tmp, dt, d.K);
    LORA_DISPATCH(dt, T, {
        lora_keep_kernel<T, true><<<ew_grid(d.M * d.K), RK_LORA_BLOCK_SIZE, 0, stream>>>(
            (raw16 *) dx->data, (const raw16 *) tmp, d.M, d.K, lddx, dr, p->scale * dr.q);
    });
    RK_CUDA_CHECK(cudaGetLastError());
}

extern "C" enum rk_status rk_cuda_lora_bwd(struct rk_tensor * dx, const struct rk_tensor * dy,
                                           const struct rk_tensor * x, const struct rk_tensor * u,
                                           const struct rk_tensor * A, const struct rk_tensor * B,
                                           const struct rk_lora_params * p, const struct rk_cuda_lora_ws * ws,
                                           cudaStream_t stream) {
    lora_dims d = { 0, 0, 0, 0, 0, 0 };
    RK_TRY(check_call("LORA_BWD", x, A, B, dy, p, &d));
    const enum rk_dtype dt = x->dtype;
    if (dx && !dx->data) dx = NULL;
    struct rk_rows rdx = { 0, 0, 0 };
    if (dx && (dx->dtype != dt || !rk_rows_of(dx, &rdx) || rdx.nrows != d.M || rdx.ncols != d.K))
        return rk_set_error(RK_STATUS_ARG, "LORA_BWD (cuda): dx must be (%lld,%lld) %s rows", (long long) d.M,
                            (long long) d.K, rk_dtype_traits[dt].name);
    if (!u || u->dtype != dt || !dense_shape(u, d.M, d.r))
        return rk_set_error(RK_STATUS_ARG, "LORA_BWD (cuda): u must be contiguous (%lld,%lld) %s", (long long) d.M,
                            (long long) d.r, rk_dtype_traits[dt].name);
    const struct rk_tensor * grads[2] = { p->dA, p->dB };
    const int64_t            gsz[2][2] = { { d.r, d.K }, { d.N, d.r } };
    for (int i = 0; i < 2; i++) {
        if (grads[i] && ((grads[i]->dtype != dt && grads[i]->dtype != RK_DTYPE_F32) ||
                         !dense_shape(grads[i], gsz[i][0], gsz[i][1])))
            return rk_set_error(RK_STATUS_ARG, "LORA_BWD (cuda): %s must be contiguous (%lld,%lld), f32 or %s",
                                i ? "dB" : "dA", (long long) gsz[i][0], (long long) gsz[i][1], rk_dtype_traits[dt].name);
    }
    const enum rk_lora_variant v = ws ? ws->variant : RK_LORA_FUSED;
    RK_TRY(check_ws("LORA_BWD", ws, rk_cuda_lora_scratch_bytes(v, true, d.M, d.K, d.N, d.r, dt)));
    if (d.M == 0) return RK_OK;
    if (v == RK_LORA_UNFUSED) {
        unfused_bwd(dx, dy, x, u, A, B, p, d, rdx.stride, ws, stream);
        return RK_OK;
    }
    uint8_t * scr = (uint8_t *) ws->scratch;
    LORA_DISPATCH(dt, T, {
        switch (rank_pad(d.r)) {
            case 16: launch_bwd<T, 16>(dx, dy, x, u, A, B, p, d, rdx.stride, scr, stream); break;
            case 32: launch_bwd<T, 32>(dx, dy, x, u, A, B, p, d, rdx.stride, scr, stream); break;
            case 48: launch_bwd<T, 48>(dx, dy, x, u, A, B, p, d, rdx.stride, scr, stream); break;
            default: launch_bwd<T, 64>(dx, dy, x, u, A, B, p, d, rdx.stride, scr, stream); break;
        }
    });
    return RK_OK;
}
