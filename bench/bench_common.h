/*
 * bench_common.h: what the benchmark programs share: seeded uniform inputs, sort comparators for medians, and the
 * device/commit header every GPU bench prints first (STYLE.md 7: numbers are compared only from the same card).
 */
#ifndef RK_BENCH_COMMON_H
#define RK_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef RK_HAVE_CUDA
#include "cuda_check.h"

#include <cuda_runtime_api.h>
#endif

/* Uniform in [-1, 1) from a xorshift64* stream; *state must be non-zero. */
static inline float rk_bench_urand(uint64_t * state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (float) ((double) ((x * 0x2545F4914F6CDD1Dull) >> 40) * (2.0 / 16777216.0) - 1.0);
}

static inline int rk_bench_cmp_float(const void * a, const void * b) {
    const float x = *(const float *) a, y = *(const float *) b;
    return (x > y) - (x < y);
}

static inline int rk_bench_cmp_double(const void * a, const void * b) {
    const double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

/* The commit the numbers belong to: $RK_COMMIT (set by the device check), else "unknown". */
static inline const char * rk_bench_commit(void) {
    const char * c = getenv("RK_COMMIT");
    return c && *c ? c : "unknown";
}

#ifdef RK_HAVE_CUDA
/* "device <name> sm_XY SMs=N L2=M MiB commit=<c> <extra>" for the current device. */
static inline void rk_bench_print_device(const char * extra) {
    int                   dev;
    struct cudaDeviceProp prop;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    printf("device %s sm_%d%d SMs=%d L2=%d MiB commit=%s %s\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, prop.l2CacheSize >> 20, rk_bench_commit(), extra ? extra : "");
}
#endif

#endif
