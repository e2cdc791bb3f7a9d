/*
 * parity.h: the harness of the CUDA-vs-CPU parity suites (tests/test_ops.c, tests/test_attn_bwd.c; STYLE.md 6,
 * after [G] test-backend-ops): seeded inputs rounded to the case dtype, device buffers with redzones and NaN prefill,
 * views into them, normalized-MSE plus element-wise comparison, case bookkeeping and the backend (CUDA, or the CPU
 * backend as a self-test with RK_TEST_BACKEND=cpu). See the header of test_ops.c for how the pieces fit together.
 * Everything is static inline: each suite includes it once.
 */
#ifndef RK_TESTS_PARITY_H
#define RK_TESTS_PARITY_H

#include "test_util.h"

#include "backend.h"
#include "check.h"
#ifdef RK_HAVE_CUDA
#include "kernels/cuda_ops.h"
#endif

#include <math.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------------------------------------------
 * seed, case filter, random numbers */

#define DEFAULT_SEED 20261126ull

static inline uint64_t run_seed(void) {
    const char * s = getenv("RK_TEST_SEED");
    return (s && *s) ? strtoull(s, NULL, 0) : DEFAULT_SEED;
}

/* RK_TEST_FILTER: '|'-separated substrings; a case runs when its string contains any of them. */
static inline bool case_selected(const char * name) {
    const char * f = getenv("RK_TEST_FILTER");
    if (!f || !*f) return true;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", f);
    char * save = NULL;
    for (char * tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        if (*tok && strstr(name, tok)) return true;
    }
    return false;
}

struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng * r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline float rng_uniform(struct rng * r) { /* [-1, 1) */
    return (float) ((double) (rng_next(r) >> 40) * (2.0 / 16777216.0) - 1.0);
}
static inline int64_t rng_int(struct rng * r, int64_t n) { return (int64_t) (rng_next(r) % (uint64_t) n); }

static inline uint64_t fnv1a(const char * s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t) *s) * 1099511628211ull;
    return h;
}

/* The value as the device holds it in dtype dt. */
static inline float round_to(enum rk_dtype dt, float v) {
    switch (dt) {
        case RK_DTYPE_F16: return rk_f16_to_f32(rk_f32_to_f16(v));
        case RK_DTYPE_BF16: return rk_bf16_to_f32(rk_f32_to_bf16(v));
        default: return v;
    }
}

/* n uniform values rounded to dt, times scale (host memory, free()). */
static inline float * rand_vec(struct rng * r, enum rk_dtype dt, int64_t n, float scale) {
    float * v = rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = round_to(dt, rng_uniform(r) * scale);
    return v;
}

static inline const char * dtn(enum rk_dtype dt) { return rk_dtype_traits[dt].name; }

/* ------------------------------------------------------------------------------------------------
 * device memory with redzones */

#define GUARD_BYTES 256
#define FILL_BYTE   0xFF /* NaN in f32, f16 and bf16; -1 in i32 */

struct dmem {
    struct rk_backend * be;
    uint8_t *           dev;   /* device allocation: guard | payload | guard */
    size_t              bytes;
    uint8_t *           img;   /* expected content */
    uint8_t *           out;   /* 1 where an output view may write */
};

static inline void dmem_init(struct dmem * m, struct rk_backend * be, size_t payload) {
    m->be    = be;
    m->bytes = payload + 2 * GUARD_BYTES;
    m->dev   = be->alloc(be, m->bytes);
    cr_assert(m->dev != NULL, "device allocation of %zu bytes failed", m->bytes);
    m->img = rk_xmalloc(m->bytes);
    m->out = rk_xcalloc(m->bytes, 1);
    memset(m->img, FILL_BYTE, m->bytes);
}

static inline void dmem_free(struct dmem * m) {
    if (m->dev) m->be->free(m->be, m->dev);
    free(m->img);
    free(m->out);
    memset(m, 0, sizeof(*m));
}

static inline size_t span_bytes(enum rk_dtype dt, int ndim, const int64_t * ne, const int64_t * nb) {
    size_t s = rk_dtype_traits[dt].type_size;
    for (int i = 0; i < ndim; i++) s += (size_t) ((ne[i] - 1) * nb[i]);
    return s;
}

/* A view at byte offset off of the payload; nb NULL = contiguous. Asserts it fits. */
static inline struct rk_tensor dmem_view(struct dmem * m, enum rk_dtype dt, int ndim, const int64_t * ne,
                                  const int64_t * nb, size_t off, const char * name) {
    struct rk_tensor t;
    rk_tensor_init(&t, dt, ndim, ne, name);
    if (nb) {
        for (int i = 0; i < ndim; i++) t.nb[i] = nb[i];
    }
    cr_assert(GUARD_BYTES + off + span_bytes(dt, ndim, t.ne, t.nb) <= m->bytes - GUARD_BYTES, "view %s out of buffer",
              name);
    t.data    = m->dev + GUARD_BYTES + off;
    t.backend = m->be;
    return t;
}

/* Byte offsets (from m->dev) of v's elements in logical row-major order; *n = count. free() the result. */
static inline size_t * view_offsets(const struct dmem * m, const struct rk_tensor * v, int64_t * n) {
    *n = rk_tensor_nelements(v);
    size_t *     offs = rk_xmalloc((size_t) (*n > 0 ? *n : 1) * sizeof(size_t));
    const size_t base = (size_t) ((const uint8_t *) v->data - m->dev);
    int64_t      idx[RK_MAX_DIMS] = { 0 };
    for (int64_t i = 0; i < *n; i++) {
        size_t o = base;
        for (int d = 0; d < v->ndim; d++) o += (size_t) (idx[d] * v->nb[d]);
        offs[i] = o;
        for (int d = v->ndim - 1; d >= 0; d--) {
            if (++idx[d] < v->ne[d]) break;
            idx[d] = 0;
        }
    }
    return offs;
}

static inline void store_elem(uint8_t * p, enum rk_dtype dt, float v) {
    switch (dt) {
        case RK_DTYPE_F32: memcpy(p, &v, 4); break;
        case RK_DTYPE_F16: { uint16_t h = rk_f32_to_f16(v); memcpy(p, &h, 2); } break;
        case RK_DTYPE_BF16: { uint16_t h = rk_f32_to_bf16(v); memcpy(p, &h, 2); } break;
        case RK_DTYPE_I32: { int32_t i = (int32_t) v; memcpy(p, &i, 4); } break;
        default: cr_assert_fail("store_elem: dtype %s", dtn(dt));
    }
}

static inline float load_elem(const uint8_t * p, enum rk_dtype dt) {
    switch (dt) {
        case RK_DTYPE_F32: { float f; memcpy(&f, p, 4); return f; }
        case RK_DTYPE_F16: { uint16_t h; memcpy(&h, p, 2); return rk_f16_to_f32(h); }
        case RK_DTYPE_BF16: { uint16_t h; memcpy(&h, p, 2); return rk_bf16_to_f32(h); }
        case RK_DTYPE_I32: { int32_t i; memcpy(&i, p, 4); return (float) i; }
        default: cr_assert_fail("load_elem: dtype %s", dtn(dt));
    }
    return 0.0f;
}

/* Writes vals (logical order) into the expected image at v's elements (ints go through float: exact here). */
static inline void view_set(struct dmem * m, const struct rk_tensor * v, const float * vals) {
    int64_t  n;
    size_t * offs = view_offsets(m, v, &n);
    for (int64_t i = 0; i < n; i++) store_elem(m->img + offs[i], v->dtype, vals[i]);
    free(offs);
}

static inline void view_set_i32(struct dmem * m, const struct rk_tensor * v, const int32_t * vals) {
    int64_t  n    = rk_tensor_nelements(v);
    float *  tmp  = rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) tmp[i] = (float) vals[i];
    view_set(m, v, tmp);
    free(tmp);
}

static inline void view_mark_output(struct dmem * m, const struct rk_tensor * v) {
    int64_t  n;
    size_t * offs = view_offsets(m, v, &n);
    const size_t es = rk_dtype_traits[v->dtype].type_size;
    for (int64_t i = 0; i < n; i++) memset(m->out + offs[i], 1, es);
    free(offs);
}

static inline void dmem_upload(struct dmem * m) {
    cr_assert(m->be->copy_to_device(m->be, m->dev, m->img, m->bytes) == RK_OK);
}

/*
 * Downloads the buffer into *got (malloc'd) and checks that every byte outside the output views is unchanged
 * (guards, gaps, inputs). Returns false after printing the first corrupted bytes.
 */
static inline bool dmem_fetch(struct dmem * m, const char * cs, const char * what, uint8_t ** got) {
    *got = rk_xmalloc(m->bytes);
    cr_assert(m->be->copy_to_host(m->be, *got, m->dev, m->bytes) == RK_OK);
    int64_t bad = 0;
    for (size_t i = 0; i < m->bytes; i++) {
        if (m->out[i] || (*got)[i] == m->img[i]) continue;
        if (bad < 4) {
            const long long rel = (long long) i - GUARD_BYTES;
            fprintf(stderr, "    %s: %s: byte %lld of the payload (%s) changed 0x%02x -> 0x%02x\n", cs, what, rel,
                    rel < 0 ? "front redzone"
                            : i >= m->bytes - GUARD_BYTES ? "back redzone" : "outside the output views",
                    m->img[i], (*got)[i]);
        }
        bad++;
    }
    if (bad) fprintf(stderr, "    %s: %s: %lld bytes written outside the outputs\n", cs, what, (long long) bad);
    return bad == 0;
}

/* Reads v's elements (logical order) from a downloaded image as f32. */
static inline void view_get(const struct dmem * m, const uint8_t * got, const struct rk_tensor * v, float * out) {
    int64_t  n;
    size_t * offs = view_offsets(m, v, &n);
    for (int64_t i = 0; i < n; i++) out[i] = load_elem(got + offs[i], v->dtype);
    free(offs);
}

/* ------------------------------------------------------------------------------------------------
 * comparison */

struct tol {
    double nmse; /* sum (got - ref)^2 / sum ref^2 */
    double atol;
    double rtol;
};

static inline struct tol tol_for(enum rk_dtype dt) {
    switch (dt) {
        case RK_DTYPE_F32: return (struct tol) { 1e-9, 1e-4, 1e-4 }; /* fp32 sums in another order: |err| ~ sqrt(K) ulp */
        case RK_DTYPE_F16: return (struct tol) { 1e-5, 2e-3, 4e-3 };
        default: return (struct tol) { 1e-4, 1e-2, 2e-2 };
    }
}

static inline bool check_close(const char * cs, const char * what, const float * got, const float * ref, int64_t n,
                        struct tol tl) {
    double  err2 = 0.0, ref2 = 0.0, maxerr = 0.0;
    int64_t bad = 0, nan = 0;
    for (int64_t i = 0; i < n; i++) {
        const float g = got[i], r = ref[i];
        bool        ok;
        double      e = 0.0;
        if (isnan(g) || isnan(r)) {
            ok = false;
            nan++;
        } else if (isinf(g) || isinf(r)) {
            ok = g == r; /* same infinity */
        } else {
            e = fabs((double) g - (double) r);
            err2 += e * e;
            ref2 += (double) r * r;
            if (e > maxerr) maxerr = e;
            ok = e <= tl.atol + tl.rtol * fabs((double) r);
        }
        if (!ok) {
            if (bad < 5) {
                fprintf(stderr, "    %s: %s[%lld]: ref %.7g got %.7g (|diff| %.3g > %.3g)\n", cs, what, (long long) i,
                        (double) r, (double) g, e, tl.atol + tl.rtol * fabs((double) r));
            }
            bad++;
        }
    }
    const double nmse = ref2 > 0.0 ? err2 / ref2 : err2;
    const bool   pass = bad == 0 && nmse <= tl.nmse;
    if (!pass) {
        fprintf(stderr, "    %s: %s: %lld of %lld elements out of tolerance (%lld NaN), nmse %.3g (limit %.3g), "
                        "max |diff| %.3g\n",
                cs, what, (long long) bad, (long long) n, (long long) nan, nmse, tl.nmse, maxerr);
    }
    return pass;
}

/* ------------------------------------------------------------------------------------------------
 * case bookkeeping */

enum { CASE_PASS = 0, CASE_FAIL, CASE_SKIP };

struct tally {
    int pass, fail, skip;
};

static inline void tally_add(struct tally * t, const char * cs, int r, double ms) {
    const char * tag = r == CASE_PASS ? "ok  " : r == CASE_FAIL ? "FAIL" : "skip";
    fprintf(stderr, "  %s %s (%.0f ms)\n", tag, cs, ms);
    if (r == CASE_PASS) t->pass++;
    if (r == CASE_FAIL) t->fail++;
    if (r == CASE_SKIP) t->skip++;
}

static inline void tally_finish(const char * test, const struct tally * t) {
    fprintf(stderr, "%s: %d passed, %d failed, %d skipped as unsupported (seed %llu)\n", test, t->pass, t->fail,
            t->skip, (unsigned long long) run_seed());
    cr_assert(t->fail == 0, "%s: %d case(s) failed (see the lines above)", test, t->fail);
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec * 1e-6;
}

/* Runs one op on the device; CASE_SKIP when unsupported, CASE_FAIL on another error. */
static inline int gpu_op(struct rk_backend * be, const struct rk_op_call * call, const char * cs) {
    const enum rk_status s = rk_op(be, call);
    if (s == RK_STATUS_UNSUPPORTED) {
        fprintf(stderr, "    %s: unsupported: %s\n", cs, rk_last_error());
        return CASE_SKIP;
    }
    if (s != RK_OK) {
        fprintf(stderr, "    %s: rk_op failed: %s: %s\n", cs, rk_status_name(s), rk_last_error());
        return CASE_FAIL;
    }
    cr_assert(be->synchronize(be) == RK_OK);
    return CASE_PASS;
}

/*
 * The CUDA backend, or skips the test when there is no device (the only reason to skip a whole test).
 * RK_TEST_BACKEND=cpu puts the CPU backend in the device's place: a self-test of this harness (views, redzones,
 * comparisons) on a machine without a GPU. The CPU backend takes f32 only, so the 16-bit cases are skipped, and
 * some CPU references assert on strided views: select cases with RK_TEST_FILTER.
 */
static inline struct rk_backend * cuda_or_skip(const char * test) {
    const char * tb = getenv("RK_TEST_BACKEND");
    if (tb && strcmp(tb, "cpu") == 0) {
        fprintf(stderr, "%s: harness self-test on the CPU backend (RK_TEST_BACKEND=cpu), seed %llu\n", test,
                (unsigned long long) run_seed());
        return rk_backend_cpu_init(2);
    }
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) cr_skip_test("no CUDA device (%s)", rk_last_error());
    fprintf(stderr, "%s on %s, seed %llu (RK_TEST_SEED overrides), activations %s\n", test, be->name,
            (unsigned long long) run_seed(), dtn(be->act_dtype));
    return be;
}

/*
 * cuda_or_skip for a test of the forced sm_75 path (sm75) or of the normal one: RK_CUDA_FORCE_SM75=1 is set while the
 * backend is created (this process only: Criterion runs each test in its own), then checked to have taken.
 */
static inline struct rk_backend * cuda_or_skip_path(const char * test, bool sm75) {
    if (sm75) setenv("RK_CUDA_FORCE_SM75", "1", 1);
    struct rk_backend * be = cuda_or_skip(test);
    if (sm75 && be->device == RK_DEVICE_CUDA) {
        unsetenv("RK_CUDA_FORCE_SM75");
#ifdef RK_HAVE_CUDA
        cr_assert(rk_backend_cuda_forced_sm75(be), "RK_CUDA_FORCE_SM75=1 did not force the sm_75 path");
#endif
        cr_assert(be->act_dtype == RK_DTYPE_F16, "the forced sm_75 path must use f16 activations");
    }
    return be;
}

/* Host f32 tensor over data (contiguous), for the CPU references. */
static inline struct rk_tensor host_t(float * data, int ndim, const int64_t * ne) {
    return rk_tensor_host(data, RK_DTYPE_F32, ndim, ne);
}

/* Compares one output view (fetched from m) with ref; also runs the redzone check of m. */
static inline bool check_output(struct dmem * m, const struct rk_tensor * v, const float * ref, const char * cs,
                         const char * what, struct tol tl) {
    uint8_t * got = NULL;
    bool      ok  = dmem_fetch(m, cs, what, &got);
    int64_t   n   = rk_tensor_nelements(v);
    float *   g   = rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(float));
    view_get(m, got, v, g);
    ok = check_close(cs, what, g, ref, n, tl) && ok;
    free(g);
    free(got);
    return ok;
}

/* Redzone/unchanged check only (input buffers). */
static inline bool check_unchanged(struct dmem * m, const char * cs, const char * what) {
    uint8_t * got = NULL;
    bool      ok  = dmem_fetch(m, cs, what, &got);
    free(got);
    return ok;
}

/* Allocates m for one tensor of shape ne with row padding (elements added to the last dim's row stride, and the
 * view placed pad/2 elements into each row). pad = 0 gives a dense tensor. Returns the view. */
static inline struct rk_tensor padded_tensor(struct dmem * m, struct rk_backend * be, enum rk_dtype dt, int ndim,
                                      const int64_t * ne, int64_t pad, const char * name) {
    const int64_t es = (int64_t) rk_dtype_traits[dt].type_size;
    int64_t       nb[RK_MAX_DIMS];
    nb[ndim - 1]     = es;
    int64_t stride   = (ne[ndim - 1] + pad) * es;
    for (int d = ndim - 2; d >= 0; d--) {
        nb[d] = stride;
        stride *= ne[d];
    }
    int64_t rows = 1;
    for (int d = 0; d < ndim - 1; d++) rows *= ne[d];
    dmem_init(m, be, (size_t) (rows * (ne[ndim - 1] + pad) * es));
    return dmem_view(m, dt, ndim, ne, nb, (size_t) ((pad / 2) * es), name);
}

/* ------------------------------------------------------------------------------------------------
 * key / token masks */

enum { MASK_NONE = 0, MASK_RIGHT, MASK_HOLES };
static const char * const mask_names[] = { "none", "right_padded", "holes" };

/* Fills a (B,T) key/token mask: right padding with lengths T, T/2+1, 0 (a fully padded row), T/3+1, ...; or random
 * holes (30 % padded) with row 2 fully padded. */
static inline void fill_mask(int32_t * mk, int64_t B, int64_t T, int kind, struct rng * r) {
    for (int64_t b = 0; b < B; b++) {
        const int64_t len = b == 0 ? T : b == 2 ? 0 : b % 2 ? T / 2 + 1 : T / 3 + 1;
        for (int64_t t = 0; t < T; t++) {
            if (kind == MASK_RIGHT) mk[b * T + t] = t < len;
            else mk[b * T + t] = b == 2 ? 0 : rng_int(r, 10) >= 3;
        }
    }
}

#endif
