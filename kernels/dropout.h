/*
 * dropout.h: RK_OP_DROPOUT (see host/backend.h) and the counter-based generator behind it, Philox4x32-10
 * (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011). A counter-based
 * generator gives element i its random bits from (key, counter) alone, so the backward re-derives the mask from
 * (seed, offset) instead of storing it, and every backend and thread layout draws the same mask.
 * The Philox rounds are plain C (no libc), written so a CUDA file can reuse them under __host__ __device__.
 */
#ifndef RK_KERNELS_DROPOUT_H
#define RK_KERNELS_DROPOUT_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef RK_HOST_DEVICE
#define RK_HOST_DEVICE
#endif

/* One Philox4x32-10 block: 4 words of counter, 2 words of key -> 4 random 32-bit words. Cannot fail. */
static inline RK_HOST_DEVICE void rk_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        const uint64_t p0 = (uint64_t) 0xD2511F53u * c0;
        const uint64_t p1 = (uint64_t) 0xCD9E8D57u * c2;
        const uint32_t hi0 = (uint32_t) (p0 >> 32), lo0 = (uint32_t) p0;
        const uint32_t hi1 = (uint32_t) (p1 >> 32), lo1 = (uint32_t) p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u; /* the Weyl key schedule (bumping after the last round is harmless) */
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/*
 * The uniform in [0, 1) (24 bits) drawn for element i of a dropout call: block counter (i / 4 low, i / 4 high,
 * offset low, offset high), key (seed low, seed high), word i % 4. Cannot fail.
 */
static inline RK_HOST_DEVICE float rk_dropout_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
    const uint64_t g      = i >> 2;
    const uint32_t ctr[4] = { (uint32_t) g, (uint32_t) (g >> 32), (uint32_t) offset, (uint32_t) (offset >> 32) };
    const uint32_t key[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
    uint32_t       out[4];
    rk_philox4x32_10(ctr, key, out);
    return (float) (out[i & 3] >> 8) * (1.0f / 16777216.0f);
}

/*
 * CPU reference of RK_OP_DROPOUT: dst = x * keep / (1 - p), keep = uniform >= p. dst, x same size, contiguous;
 * dst may alias x. Applied to dout with the same params it is the backward. Cannot fail (0 <= p <= 1 asserted).
 */
void rk_cpu_dropout(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_dropout_params * p);

#ifdef __cplusplus
}
#endif
#endif
