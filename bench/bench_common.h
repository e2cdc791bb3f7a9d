/*
 * bench_common.h: what the benchmark programs share: seeded uniform inputs, sort comparators for medians, and the
 * device/commit header every GPU bench prints first (STYLE.md 7: numbers are compared only from the same card).
 */
#ifndef RK_BENCH_COMMON_H
#define RK_BENCH_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RK_HAVE_CUDA
#include "cuda_check.h"
#include "kernels/cuda_ops.h"

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

/*
 * Reads a whole golden file (tests/golden/rkgold.py format) into a malloc'd buffer; NULL when it cannot be read.
 * *size gets its length.
 */
static inline unsigned char * rk_bench_gold_read(const char * path, long * size) {
    FILE * f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char * buf = malloc((size_t) (*size > 0 ? *size : 1));
    if (buf && fread(buf, 1, (size_t) *size, f) != (size_t) *size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* The data (f32 or i32) of tensor `name` in a golden file read by rk_bench_gold_read, *n its element count; NULL if
 * absent or the file is cut short. */
static inline void * rk_bench_gold_get(const unsigned char * buf, long size, const char * name, int64_t * n) {
    long     off = 12;
    uint32_t cnt;
    if (size < 12) return NULL;
    memcpy(&cnt, buf + 8, 4);
    for (uint32_t i = 0; i < cnt && off + 4 <= size; i++) {
        uint32_t len, code, nd;
        memcpy(&len, buf + off, 4);
        char nm[200] = { 0 };
        if (off + 12 + (long) len > size) return NULL;
        memcpy(nm, buf + off + 4, len < 199 ? len : 199);
        off += 4 + len;
        memcpy(&code, buf + off, 4);
        memcpy(&nd, buf + off + 4, 4);
        off += 8;
        int64_t nel = 1;
        for (uint32_t d = 0; d < nd && d < 4; d++) {
            int64_t dim;
            memcpy(&dim, buf + off + 8 * d, 8);
            nel *= dim;
        }
        off += 8 * nd;
        if (off + 4 * nel > size) return NULL;
        if (!strcmp(nm, name)) {
            *n = nel;
            return (void *) (buf + off);
        }
        off += 4 * nel;
    }
    return NULL;
}

/* Parses "[--reps N]" into *reps (kept when absent, at least 1); prints the usage and returns false otherwise. */
static inline bool rk_bench_reps_arg(int argc, char ** argv, int * reps) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            *reps = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
            return false;
        }
    }
    if (*reps < 1) *reps = 1;
    return true;
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

/*
 * Timing on a CUDA backend's stream with events (STYLE.md 7): rk_bench_time runs fn(ud) 3 times to warm up, then
 * reps times, each after an L2 flush (writing a buffer twice the L2 size), and returns the median milliseconds;
 * t->ms then holds the sorted times (t->ms[0] the minimum).
 */
struct rk_bench_timer {
    struct rk_backend * be;
    cudaStream_t        st;
    cudaEvent_t         e0, e1;
    void *              flush;
    size_t              flush_bytes;
    int                 reps;
    float *             ms;
};

/* Creates the events and the flush buffer on be (CUDA). Aborts when they cannot be made. */
static inline void rk_bench_timer_init(struct rk_bench_timer * t, struct rk_backend * be, int reps) {
    struct cudaDeviceProp prop;
    int                   dev;
    RK_CUDA_CHECK(cudaGetDevice(&dev));
    RK_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    t->be          = be;
    t->st          = rk_backend_cuda_stream(be);
    t->reps        = reps;
    t->flush_bytes = (size_t) (prop.l2CacheSize > 0 ? prop.l2CacheSize : 64 << 20) * 2;
    t->flush       = be->alloc(be, t->flush_bytes);
    t->ms          = rk_xmalloc((size_t) reps * sizeof(float));
    RK_ASSERT(t->flush != NULL);
    RK_CUDA_CHECK(cudaEventCreate(&t->e0));
    RK_CUDA_CHECK(cudaEventCreate(&t->e1));
}

static inline double rk_bench_time(struct rk_bench_timer * t, void (*fn)(void * ud), void * ud) {
    for (int i = 0; i < 3; i++) fn(ud);
    for (int r = 0; r < t->reps; r++) {
        RK_CUDA_CHECK(cudaMemsetAsync(t->flush, r & 0xff, t->flush_bytes, t->st));
        RK_CUDA_CHECK(cudaEventRecord(t->e0, t->st));
        fn(ud);
        RK_CUDA_CHECK(cudaEventRecord(t->e1, t->st));
        RK_CUDA_CHECK(cudaEventSynchronize(t->e1));
        RK_CUDA_CHECK(cudaEventElapsedTime(&t->ms[r], t->e0, t->e1));
    }
    qsort(t->ms, (size_t) t->reps, sizeof(float), rk_bench_cmp_float);
    return t->ms[t->reps / 2];
}

static inline void rk_bench_timer_free(struct rk_bench_timer * t) {
    free(t->ms);
    t->be->free(t->be, t->flush);
    RK_CUDA_CHECK(cudaEventDestroy(t->e0));
    RK_CUDA_CHECK(cudaEventDestroy(t->e1));
}
#endif

#endif
