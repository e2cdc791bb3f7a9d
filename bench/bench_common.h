/*
 * bench_common.h: what the benchmark programs share: seeded uniform inputs, sort comparators for medians, the
 * device/commit header every GPU bench prints first (STYLE.md 7: numbers are compared only from the same card), the
 * "--reps N" option, the CUDA backend setup, and the event timer with its L2 flush.
 */
#ifndef RK_BENCH_COMMON_H
#define RK_BENCH_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RK_HAVE_CUDA
#include "backend.h"
#include "check.h"
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

/*
 * Compares n results with a reference: *worst = max |got - ref| / (atol + rtol |ref|) (<= 1 passes; NaN gives
 * +inf) and *nmse = sum (got - ref)^2 / sum ref^2. Cannot fail.
 */
static inline void rk_bench_compare(const float * got, const float * ref, int64_t n, double atol, double rtol,
                                    double * worst, double * nmse) {
    double e2 = 0, r2 = 0;
    *worst    = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double) got[i] - ref[i]);
        const double q = isnan(e) ? INFINITY : e / (atol + rtol * fabs((double) ref[i]));
        if (q > *worst) *worst = q;
        e2 += e * e;
        r2 += (double) ref[i] * ref[i];
    }
    *nmse = r2 > 0 ? e2 / r2 : e2;
}

/*
 * Parses "[--reps N]", the one option of the simpler benches: *reps keeps its default unless given, and is at least
 * 1. Returns false after printing the usage line for anything else (the caller exits 2).
 */
static inline bool rk_bench_parse_reps(int argc, char ** argv, int * reps) {
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

/* The command line of the per-op kernel benches: [--check] [--variant N|all] [--shape NAME] [--reps N] [--seed S]. */
struct rk_bench_args {
    int          v_lo, v_hi;    /* the variants to run, 0 (automatic) unless --variant */
    bool         variant_given; /* --variant was on the command line */
    bool         check;         /* --check: correctness checks only, no timing */
    const char * shape;         /* --shape: the one shape to time, or NULL for all */
    int          reps;          /* --reps, 30 by default */
    uint64_t     seed;          /* --seed, or 0: the bench's default */
};

/* Parses argv for a bench with n_variants variants; prints the usage and returns false on a bad command line. */
static inline bool rk_bench_parse_args(int argc, char ** argv, int n_variants, struct rk_bench_args * a) {
    memset(a, 0, sizeof(*a));
    a->reps = 30;
    for (int i = 1; i < argc; i++) {
        const bool has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--variant") && has_value) {
            i++;
            a->variant_given = true;
            a->v_lo          = !strcmp(argv[i], "all") ? 0 : atoi(argv[i]);
            a->v_hi          = !strcmp(argv[i], "all") ? n_variants - 1 : a->v_lo;
        } else if (!strcmp(argv[i], "--shape") && has_value) {
            a->shape = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && has_value) {
            a->reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--seed") && has_value) {
            a->seed = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--check")) {
            a->check = true;
        } else {
            a->reps = 0; /* usage below */
            break;
        }
    }
    if (a->v_lo < 0 || a->v_hi >= n_variants || a->reps < 1) {
        fprintf(stderr, "usage: %s [--check] [--variant N|all] [--shape NAME] [--reps N] [--seed S]\n"
                        "  variant 0..%d or all, reps >= 1\n", argv[0], n_variants - 1);
        return false;
    }
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
 * The CUDA backend on device 0, its device line printed; or NULL after printing why `prog` has nothing to time: no
 * device, or need_bf16 and the activations are not bf16 (bf16 GEMMs need sm_80+). The caller then exits 0.
 */
static inline struct rk_backend * rk_bench_cuda_backend(const char * prog, bool need_bf16) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) {
        printf("%s: no CUDA device (%s); nothing to time\n", prog, rk_last_error());
        return NULL;
    }
    rk_bench_print_device(be->name);
    if (need_bf16 && be->act_dtype != RK_DTYPE_BF16) {
        printf("%s: activations are %s on this device; bf16 GEMMs need sm_80+\n", prog,
               rk_dtype_traits[be->act_dtype].name);
        rk_backend_free(be);
        return NULL;
    }
    return be;
}

/*
 * Timing of the GPU benches (STYLE.md 7): CUDA events on the backend's stream, 3 warm-ups, the median of `reps`
 * repetitions, the L2 flushed before each one by writing a buffer twice its size.
 */
struct rk_bench_timer {
    struct rk_backend * be;
    cudaStream_t        st;
    cudaEvent_t         e0, e1;
    void *              flush;
    size_t              flush_bytes;
    int                 reps;
    float *             ms; /* the last timing's repetitions, sorted: ms[0] is the fastest */
};

typedef void (*rk_bench_fn)(void * ud);

/* Sets t up on be's stream (aborts when the flush buffer cannot be allocated). Release with rk_bench_timer_free. */
static inline void rk_bench_timer_init(struct rk_bench_timer * t, struct rk_backend * be, int reps) {
    struct cudaDeviceProp prop;
    RK_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    t->be          = be;
    t->st          = rk_backend_cuda_stream(be);
    t->reps        = reps;
    t->ms          = rk_xmalloc((size_t) reps * sizeof(float));
    t->flush_bytes = (size_t) (prop.l2CacheSize > 0 ? prop.l2CacheSize : 64 << 20) * 2;
    t->flush       = be->alloc(be, t->flush_bytes);
    RK_ASSERT(t->flush != NULL);
    RK_CUDA_CHECK(cudaEventCreate(&t->e0));
    RK_CUDA_CHECK(cudaEventCreate(&t->e1));
}

static inline void rk_bench_timer_free(struct rk_bench_timer * t) {
    RK_CUDA_CHECK(cudaEventDestroy(t->e0));
    RK_CUDA_CHECK(cudaEventDestroy(t->e1));
    t->be->free(t->be, t->flush);
    free(t->ms);
}

/* Median milliseconds of fn(ud) (which enqueues its work on t->st) over t->reps repetitions. */
static inline double rk_bench_time_ms(struct rk_bench_timer * t, rk_bench_fn fn, void * ud) {
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
#endif

#endif
