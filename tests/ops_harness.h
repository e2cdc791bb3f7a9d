/*
 * ops_harness.h: the parity harness shared by tests/test_ops.c (forward ops), tests/test_ops_bwd.c (backward ops),
 * tests/test_ops_train.c (losses, dropout, embedding backward, optimizer kernels) and tests/test_attn_bwd.c
 * (attention backward): every backend op is compared against its CPU reference (STYLE.md 6, after [G] test-backend-ops).
 *
 * Each Criterion test covers one op and walks a table of cases. A case has a case string such as
 *     ATTN_FWD(dtype=bf16,B=2,T=77,Tk=77,NH=12,NKV=12,HS=64,causal=1,...)[variant=auto]
 * printed with its result. For each case:
 *   - inputs are uniform in [-1, 1] from a seed derived from the run seed (printed; RK_TEST_SEED overrides) and
 *     the case string, so a case gives the same inputs whether or not others run;
 *   - inputs are rounded to the case dtype first, and the CPU reference (the rk_cpu_* function itself, f32) runs on
 *     exactly those rounded values;
 *   - every device buffer has 256-byte guard regions on both sides, and the whole buffer (guards, gaps between
 *     strided rows, unused parts of fused buffers) is pre-filled with 0xFF bytes, a NaN in every float dtype:
 *     a kernel that reads outside its views produces NaN (caught), one that writes outside its outputs changes a
 *     byte that is checked after the op (redzones), and an output element never written stays NaN (caught);
 *   - the result must pass a normalized-MSE bound AND |got - ref| <= atol + rtol |ref| per element (the first
 *     mismatches are printed); NaN anywhere fails; an Inf must match an Inf of the same sign.
 * RK_TEST_FILTER selects cases by substring of the case string ('|' separates alternatives).
 * RK_TEST_BACKEND=cpu runs the same tables against the CPU backend: a self-test of this harness without a GPU.
 * An op/dtype/shape the backend does not support is reported as skipped, never as a failure. A test calls
 * cr_skip_test only when there is no CUDA device (or no CUDA in the build). The backend is created in each test
 * body, after Criterion's fork (STYLE.md 6).
 *
 * Everything here is static inline: each suite includes it once and uses what it needs.
 */
#ifndef RK_TESTS_OPS_HARNESS_H
#define RK_TESTS_OPS_HARNESS_H

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

/* case_selected (RK_TEST_FILTER): tests/test_util.h */

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

static const char * dtn(enum rk_dtype dt) { return rk_dtype_traits[dt].name; }

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

/* the magnitude element i's rtol scales: |ref|, or mag[i] when mag is given and mag[i] is larger */
static inline double elem_mag(const float * mag, float r, int64_t i) {
    const double a = fabs((double) r);
    return mag && mag[i] > a ? mag[i] : a;
}

/* got against ref within tl; mag: NULL, or per element the magnitude rtol scales instead of |ref| when larger (the
 * terms of a sum that cancels, when the result may be rounded at its terms' magnitude: MATMUL's accumulate) */
static inline bool check_close_mag(const char * cs, const char * what, const float * got, const float * ref,
                                   const float * mag, int64_t n, struct tol tl) {
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
            ok = e <= tl.atol + tl.rtol * elem_mag(mag, r, i);
        }
        if (!ok) {
            if (bad < 5) {
                fprintf(stderr, "    %s: %s[%lld]: ref %.7g got %.7g (|diff| %.3g > %.3g)\n", cs, what, (long long) i,
                        (double) r, (double) g, e, tl.atol + tl.rtol * elem_mag(mag, r, i));
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

static inline bool check_close(const char * cs, const char * what, const float * got, const float * ref, int64_t n,
                               struct tol tl) {
    return check_close_mag(cs, what, got, ref, NULL, n, tl);
}

/* ------------------------------------------------------------------------------------------------
 * case bookkeeping */

enum { CASE_PASS = 0, CASE_FAIL, CASE_SKIP };

struct tally {
    int pass, fail, skip;
};

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec * 1e-6;
}

/* Counts case result r and prints it with the time since t0 (now_ms() when the case started). Taking the start
 * rather than the elapsed time matters: in tally_add(&t, cs, run(...), now_ms() - t0) the compiler may evaluate
 * now_ms() before run(), and every case printed 0 ms. */
static inline void tally_add(struct tally * t, const char * cs, int r, double t0) {
    const char * tag = r == CASE_PASS ? "ok  " : r == CASE_FAIL ? "FAIL" : "skip";
    fprintf(stderr, "  %s %s (%.0f ms)\n", tag, cs, now_ms() - t0);
    if (r == CASE_PASS) t->pass++;
    if (r == CASE_FAIL) t->fail++;
    if (r == CASE_SKIP) t->skip++;
}

static inline void tally_finish(const char * test, const struct tally * t) {
    fprintf(stderr, "%s: %d passed, %d failed, %d skipped as unsupported (seed %llu)\n", test, t->pass, t->fail,
            t->skip, (unsigned long long) run_seed());
    cr_assert(t->fail == 0, "%s: %d case(s) failed (see the lines above)", test, t->fail);
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

/* Compares one output view (fetched from m) with ref (element magnitudes mag: check_close_mag); also runs the redzone
 * check of m. */
static inline bool check_output_mag(struct dmem * m, const struct rk_tensor * v, const float * ref, const float * mag,
                                    const char * cs, const char * what, struct tol tl) {
    uint8_t * got = NULL;
    bool      ok  = dmem_fetch(m, cs, what, &got);
    int64_t   n   = rk_tensor_nelements(v);
    float *   g   = rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(float));
    view_get(m, got, v, g);
    ok = check_close_mag(cs, what, g, ref, mag, n, tl) && ok;
    free(g);
    free(got);
    return ok;
}

static inline bool check_output(struct dmem * m, const struct rk_tensor * v, const float * ref, const char * cs,
                                const char * what, struct tol tl) {
    return check_output_mag(m, v, ref, NULL, cs, what, tl);
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
 * table-driven tests and multi-output checks */

/* One op's table of cases: name(c, buf, n) writes case c's string, run(be, c, cs, r) runs it and returns CASE_*. */
struct case_table {
    const char * test;  /* the op's name, printed with the tally */
    const void * cases;
    size_t       n, size; /* count and sizeof of one case */
    void (*name)(const void * c, char * buf, size_t n);
    int (*run)(struct rk_backend * be, const void * c, const char * cs, struct rng * r);
};

/*
 * Runs every selected case of t on the device backend (skips the test without one), each with an rng seeded from
 * the run seed and the case string; fails the test when a case failed.
 */
static inline void run_case_table(const struct case_table * t) {
    struct rk_backend * be = cuda_or_skip(t->test);
    struct tally        ta = { 0 };
    for (size_t i = 0; i < t->n; i++) {
        const void * c = (const char *) t->cases + i * t->size;
        char         cs[320];
        t->name(c, cs, sizeof(cs));
        if (!case_selected(cs)) continue;
        struct rng   r  = { run_seed() ^ fnv1a(cs) };
        const double t0 = now_ms();
        tally_add(&ta, cs, t->run(be, c, cs, &r), t0);
    }
    rk_backend_free(be);
    tally_finish(t->test, &ta);
}

/* An output view to compare after the op: its buffer, the view, the reference (logical order), a name, bounds. */
struct out_check {
    struct dmem *    m;
    struct rk_tensor t;
    const float *    ref;
    const char *     what;
    struct tol       tl;
};

/*
 * Uploads every allocated buffer of m[0..nm), runs call, then compares each output with its reference and checks
 * that the buffers holding no output are unchanged (inputs, redzones). Returns CASE_*.
 */
static inline int run_and_check(struct rk_backend * be, const struct rk_op_call * call, const char * cs,
                                struct dmem * m, int nm, const struct out_check * oc, int no) {
    for (int i = 0; i < nm; i++) {
        if (m[i].dev) dmem_upload(&m[i]);
    }
    int rc = gpu_op(be, call, cs);
    if (rc != CASE_PASS) return rc;
    bool ok = true;
    for (int i = 0; i < nm; i++) {
        if (!m[i].dev) continue;
        bool has_out = false;
        for (int j = 0; j < no; j++) {
            if (oc[j].m != &m[i]) continue;
            ok      = check_output(oc[j].m, &oc[j].t, oc[j].ref, cs, oc[j].what, oc[j].tl) && ok;
            has_out = true;
        }
        if (!has_out) ok = check_unchanged(&m[i], cs, "input") && ok;
    }
    return ok ? CASE_PASS : CASE_FAIL;
}

/* Small (4,8) views in one device buffer for unsupported-combination tests: a bf16, f f32, i32, u8, and col a bf16
 * view whose last dim is not contiguous. Free with dmem_free(&v->m). */
struct odd_views {
    struct dmem      m;
    struct rk_tensor a, f, i32, u8, col;
};

static inline void odd_views_init(struct odd_views * v, struct rk_backend * be) {
    const int64_t ne[2] = { 4, 8 };
    memset(v, 0, sizeof(*v));
    dmem_init(&v->m, be, 4096);
    v->a   = dmem_view(&v->m, RK_DTYPE_BF16, 2, ne, NULL, 0, "a");
    v->f   = dmem_view(&v->m, RK_DTYPE_F32, 2, ne, NULL, 0, "f");
    v->i32 = dmem_view(&v->m, RK_DTYPE_I32, 2, ne, NULL, 0, "i");
    v->u8  = dmem_view(&v->m, RK_DTYPE_U8, 2, ne, NULL, 0, "u8");
    v->col = dmem_view(&v->m, RK_DTYPE_BF16, 2, ne, (int64_t[]) { 2, 8 }, 0, "colmajor");
}

/* Asserts that be rejects every call (supports_op false, rk_op RK_STATUS_UNSUPPORTED): never a crash. */
static inline void expect_unsupported(struct rk_backend * be, const struct rk_op_call * calls, size_t n) {
    for (size_t i = 0; i < n; i++) {
        cr_assert(!be->supports_op(be, &calls[i]), "call %zu (%s) should be unsupported", i, rk_op_names[calls[i].op]);
        cr_assert(rk_op(be, &calls[i]) == RK_STATUS_UNSUPPORTED, "call %zu (%s)", i, rk_op_names[calls[i].op]);
    }
}

/* ------------------------------------------------------------------------------------------------
 * token masks */

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

/*
 * The destination of an op that may run in place: x's own view (dst aliases x), or a new tensor of x's dtype and
 * shape with row padding pad in md, NaN-filled and uploaded. Marks it as an output; returns the buffer holding it.
 */
static inline struct dmem * dst_inplace_or_new(struct rk_backend * be, struct dmem * mx, const struct rk_tensor * tx,
                                               struct dmem * md, struct rk_tensor * td, bool inplace, int64_t pad) {
    struct dmem * m = mx;
    *td             = *tx;
    if (!inplace) {
        *td = padded_tensor(md, be, tx->dtype, tx->ndim, tx->ne, pad, "dst");
        m   = md;
        dmem_upload(md);
    }
    view_mark_output(m, td);
    return m;
}



#endif
