/*
 * rk.c: status names, the error channel, the dtype traits table, scalar conversions, host allocation helpers.
 */
#include "rk.h"
#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char * const status_names[RK_STATUS_COUNT] = {
    [RK_OK]                 = "ok",
    [RK_STATUS_IO]          = "i/o error",
    [RK_STATUS_FORMAT]      = "format error",
    [RK_STATUS_ARG]         = "bad argument",
    [RK_STATUS_UNSUPPORTED] = "unsupported",
    [RK_STATUS_OOM]         = "out of memory",
    [RK_STATUS_DEVICE]      = "device error",
};
_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == RK_STATUS_COUNT, "status_names out of date");

const char * rk_status_name(enum rk_status s) {
    return (s >= 0 && s < RK_STATUS_COUNT) ? status_names[s] : "unknown status";
}

/* ---- error channel ---------------------------------------------------------------------------- */

static _Thread_local char last_error[1024];

enum rk_status rk_set_error(enum rk_status s, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    /* keep it one line */
    for (char * p = last_error; *p; p++) {
        if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return s;
}

const char * rk_last_error(void) { return last_error; }

int rk_env_variant(const char * name, int n_variants) {
    const char * e = getenv(name);
    if (!e || !*e) return 0;
    char *     end;
    const long v = strtol(e, &end, 10);
    if (*end == '\0' && v >= 0 && v < n_variants) return (int) v;
    fprintf(stderr, "rk: %s=%s is not a variant (1..%d); using the default\n", name, e, n_variants - 1);
    return 0;
}
void         rk_clear_error(void) { last_error[0] = '\0'; }

static int variant_knob_default(struct rk_variant_knob * k) {
    if (k->dflt < 0) {
        const int e = rk_env_variant(k->env, k->n);
        k->dflt     = e > 0 ? e : k->builtin;
    }
    return k->dflt;
}

int rk_variant_knob_get(struct rk_variant_knob * k) {
    if (k->now < 0) k->now = variant_knob_default(k);
    return k->now;
}

enum rk_status rk_variant_knob_set(struct rk_variant_knob * k, int variant) {
    if (variant < 0 || variant >= k->n) {
        return rk_set_error(RK_STATUS_ARG, "%s: variant %d out of range (0..%d)", k->what, variant, k->n - 1);
    }
    k->now = variant == 0 ? variant_knob_default(k) : variant;
    return RK_OK;
}

double rk_cosine_f32(const float * a, const float * b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double) a[i] * b[i];
        aa += (double) a[i] * a[i];
        bb += (double) b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

void rk_abort(const char * what, const char * file, int line) {
    fprintf(stderr, "rk: %s (%s:%d)\n", what, file, line);
    fflush(stderr);
    abort();
}

void * rk_xmalloc(size_t n) {
    void * p = malloc(n ? n : 1);
    if (!p) rk_abort("out of host memory", __FILE__, __LINE__);
    return p;
}
void * rk_xcalloc(size_t n, size_t size) {
    void * p = calloc(n ? n : 1, size ? size : 1);
    if (!p) rk_abort("out of host memory", __FILE__, __LINE__);
    return p;
}
void * rk_xrealloc(void * p, size_t n) {
    void * q = realloc(p, n ? n : 1);
    if (!q) rk_abort("out of host memory", __FILE__, __LINE__);
    return q;
}
char * rk_xstrdup(const char * s) {
    size_t n = strlen(s) + 1;
    char * d = rk_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

/* ---- scalar conversions ----------------------------------------------------------------------- */

uint16_t rk_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t) ((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t) (u >> 16);
}

float rk_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t) h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t rk_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x007fffffu;
    int32_t  exp  = (int32_t) ((x >> 23) & 0xff);
    if (exp == 0xff) return (uint16_t) (sign | 0x7c00u | (mant ? 0x200u : 0u));
    exp = exp - 127 + 15;
    if (exp >= 0x1f) return (uint16_t) (sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t) sign;
        mant |= 0x00800000u;
        uint32_t shift = (uint32_t) (14 - exp);
        uint32_t half  = mant >> shift;
        uint32_t rem   = mant & ((1u << shift) - 1u);
        uint32_t mid   = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t) (sign | half);
    }
    uint32_t h   = sign | ((uint32_t) exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into the exponent: correct */
    return (uint16_t) h;
}

float rk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
    uint32_t exp  = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400u));
            u = sign | ((uint32_t) (127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- row conversions for the traits table ------------------------------------------------------ */

static void f32_to_f32(const void * src, float * dst, int64_t n) { memcpy(dst, src, (size_t) n * 4); }
static void f32_from_f32(const float * src, void * dst, int64_t n) { memcpy(dst, src, (size_t) n * 4); }
static void f16_to_f32(const void * src, float * dst, int64_t n) {
    const uint16_t * s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = rk_f16_to_f32(s[i]);
}
static void f16_from_f32(const float * src, void * dst, int64_t n) {
    uint16_t * d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = rk_f32_to_f16(src[i]);
}
static void bf16_to_f32(const void * src, float * dst, int64_t n) {
    const uint16_t * s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = rk_bf16_to_f32(s[i]);
}
static void bf16_from_f32(const float * src, void * dst, int64_t n) {
    uint16_t * d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = rk_f32_to_bf16(src[i]);
}
static void i32_to_f32(const void * src, float * dst, int64_t n) {
    const int32_t * s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = (float) s[i];
}

const struct rk_dtype_traits rk_dtype_traits[RK_DTYPE_COUNT] = {
    [RK_DTYPE_F32]  = { "f32",  1,  4,  false, f32_to_f32,  f32_from_f32  },
    [RK_DTYPE_F16]  = { "f16",  1,  2,  false, f16_to_f32,  f16_from_f32  },
    [RK_DTYPE_BF16] = { "bf16", 1,  2,  false, bf16_to_f32, bf16_from_f32 },
    /* NF4 block: 64 values as 32 bytes of nibbles; absmax is stored separately (bitsandbytes layout) */
    [RK_DTYPE_NF4]  = { "nf4",  64, 32, true,  NULL,        NULL          },
    [RK_DTYPE_I32]  = { "i32",  1,  4,  false, i32_to_f32,  NULL          },
    [RK_DTYPE_I64]  = { "i64",  1,  8,  false, NULL,        NULL          },
    [RK_DTYPE_U8]   = { "u8",   1,  1,  false, NULL,        NULL          },
};
_Static_assert(sizeof(rk_dtype_traits) / sizeof(rk_dtype_traits[0]) == RK_DTYPE_COUNT, "traits out of date");

size_t rk_dtype_row_size(enum rk_dtype t, int64_t n) {
    const struct rk_dtype_traits * tr = &rk_dtype_traits[t];
    RK_ASSERT(n % tr->blck_size == 0);
    return (size_t) (n / tr->blck_size) * tr->type_size;
}
