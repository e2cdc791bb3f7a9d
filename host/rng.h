/*
 * rng.h: the suite's pseudo-random numbers: splitmix64 to seed, xoshiro256** to draw (Blackman & Vigna). Platform
 * independent and seed-determined, so splits, forests and initialisations replay exactly. Header-only; cannot fail.
 */
#ifndef RK_RNG_H
#define RK_RNG_H

#include <stdint.h>

struct rk_rng {
    uint64_t s[4];
};

/* Advances *x and returns the next splitmix64 output. */
static inline uint64_t rk_splitmix64(uint64_t * x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* State from a seed: four successive splitmix64 outputs. */
static inline void rk_rng_seed(struct rk_rng * r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = rk_splitmix64(&seed);
}

static inline uint64_t rk_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static inline uint64_t rk_rng_next(struct rk_rng * r) {
    uint64_t * s      = r->s;
    uint64_t   result = rk_rotl64(s[1] * 5, 7) * 9;
    uint64_t   t      = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rk_rotl64(s[3], 45);
    return result;
}

/* Uniform integer in [0, k), k >= 1, exactly unbiased (rejection below 2^64 mod k). */
static inline uint64_t rk_rng_below(struct rk_rng * r, uint64_t k) {
    const uint64_t threshold = (0 - k) % k;
    for (;;) {
        const uint64_t x = rk_rng_next(r);
        if (x >= threshold) return x % k;
    }
}

/* Uniform integer in [0, bound) from the high half of a 64x64 product: one draw, bias below 2^-32. */
static inline uint32_t rk_rng_below_fast(struct rk_rng * r, uint32_t bound) {
    return (uint32_t) (((unsigned __int128) rk_rng_next(r) * bound) >> 64);
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double rk_rng_uniform(struct rk_rng * r) { return (double) (rk_rng_next(r) >> 11) * 0x1.0p-53; }

#endif
