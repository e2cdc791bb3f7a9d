/*
 * rk.h: the core types of the suite: status codes, dtypes (with a traits table), tensors and the
 * error channel. Every other header includes this one.
 *
 * Conventions (STYLE.md 1.5): dimensions are listed outermost first, as PyTorch does, the last dimension
 * contiguous; strides are in bytes. Counts and offsets are int64_t.
 */
#ifndef RK_H
#define RK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_MAX_DIMS 4

/* ------------------------------------------------------------------------------------------------
 * status codes */
enum rk_status {
    RK_OK = 0,
    RK_STATUS_IO,          /* a file could not be opened, read or written */
    RK_STATUS_FORMAT,      /* a file's content is malformed (position named in the message) */
    RK_STATUS_ARG,         /* a bad argument from the caller */
    RK_STATUS_UNSUPPORTED, /* op/dtype combination a backend does not implement: never a crash */
    RK_STATUS_OOM,         /* allocation failed */
    RK_STATUS_DEVICE,      /* no usable device, or a device-side failure that is recoverable */
    RK_STATUS_COUNT
};

const char * rk_status_name(enum rk_status s); /* cannot fail */

/*
 * The error channel: a function that fails sets a one-line message (naming the file and position where
 * there is one) and returns a non-OK status. The message is thread-local and is overwritten by the next
 * failure. Drivers print it with rk_last_error() and exit non-zero.
 */
enum rk_status rk_set_error(enum rk_status s, const char * fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char * rk_last_error(void);   /* "" when none; cannot fail */
void         rk_clear_error(void);

/*
 * A kernel variant chosen through the environment (RK_ATTN_FWD_VARIANT, RK_GELU_VARIANT, ...): the integer in
 * $name when it is in 1 .. n_variants - 1; 0 (the caller's built-in choice) when unset, empty or "0"; anything
 * else prints one warning on stderr naming the variable and gives 0. Callers read it once. Cannot fail.
 */
int rk_env_variant(const char * name, int n_variants);

/*
 * The kernel variant in effect for one op (GELU, LayerNorm): a process-wide setting. Its default is $env (read
 * once, through rk_env_variant) or, unset, builtin; rk_variant_knob_set changes it (0: back to the default).
 *   static struct rk_variant_knob k = RK_VARIANT_KNOB("RK_GELU_VARIANT", "cuda gelu", 5, 1);
 */
struct rk_variant_knob {
    const char * env;     /* environment variable */
    const char * what;    /* for messages */
    int          n;       /* variants 1 .. n - 1 (0 means the default) */
    int          builtin; /* the default when $env is unset */
    int          dflt;    /* resolved default; -1 until read */
    int          now;     /* in effect; -1 until read */
};
#define RK_VARIANT_KNOB(env, what, n, builtin) { (env), (what), (n), (builtin), -1, -1 }
int            rk_variant_knob_get(struct rk_variant_knob * k);
enum rk_status rk_variant_knob_set(struct rk_variant_knob * k, int variant); /* RK_STATUS_ARG outside 0 .. n - 1 */

/* Cosine similarity of two float vectors of n, accumulated in double (NaN when either holds one; 0 / 0 gives 0). */
double rk_cosine_f32(const float * a, const float * b, int64_t n);

/* ------------------------------------------------------------------------------------------------
 * dtypes */
enum rk_dtype {
    RK_DTYPE_F32 = 0,
    RK_DTYPE_F16,
    RK_DTYPE_BF16,
    RK_DTYPE_NF4,   /* reserved: 64-value blocks, see quant/nf4.h */
    RK_DTYPE_I32,
    RK_DTYPE_I64,
    RK_DTYPE_U8,
    RK_DTYPE_COUNT
};

typedef void (*rk_to_f32_fn)(const void * src, float * dst, int64_t n);
typedef void (*rk_from_f32_fn)(const float * src, void * dst, int64_t n);

struct rk_dtype_traits {
    const char *   name;
    int64_t        blck_size;     /* elements per block (1 for plain types) */
    size_t         type_size;     /* bytes per block */
    bool           is_quantized;
    rk_to_f32_fn   to_f32;        /* CPU reference row conversion, NULL where not defined */
    rk_from_f32_fn from_f32;
};

extern const struct rk_dtype_traits rk_dtype_traits[RK_DTYPE_COUNT];

size_t rk_dtype_row_size(enum rk_dtype t, int64_t n); /* bytes for n elements (n a multiple of the block) */

/* scalar conversions (round to nearest even), cannot fail */
uint16_t rk_f32_to_bf16(float f);
float    rk_bf16_to_f32(uint16_t h);
uint16_t rk_f32_to_f16(float f);
float    rk_f16_to_f32(uint16_t h);

/* ------------------------------------------------------------------------------------------------
 * tensors */
struct rk_backend;

struct rk_tensor {
    enum rk_dtype       dtype;
    int                 ndim;
    int64_t             ne[RK_MAX_DIMS];  /* sizes, outermost first; unused trailing entries are 1 */
    int64_t             nb[RK_MAX_DIMS];  /* byte strides for each dimension */
    void *              data;             /* host or device pointer, per backend */
    struct rk_backend * backend;          /* owner of data; NULL for a host view of foreign memory */
    bool                owns_data;        /* true when rk_tensor_free must release data */
    char                name[64];
};

/* Number of elements; cannot fail. */
int64_t rk_tensor_nelements(const struct rk_tensor * t);
/* Total bytes of a contiguous tensor of this shape; cannot fail. */
size_t  rk_tensor_nbytes(const struct rk_tensor * t);
/* True when the strides are the dense row-major ones; cannot fail. */
bool    rk_tensor_is_contiguous(const struct rk_tensor * t);

/*
 * Fills shape and contiguous strides into a caller-owned struct without allocating; data = NULL.
 * Cannot fail (asserts ndim in 1..4).
 */
void rk_tensor_init(struct rk_tensor * t, enum rk_dtype dtype, int ndim, const int64_t * ne, const char * name);

/*
 * Allocates a tensor (struct and data) on backend `be`. Returns NULL and sets the error on failure.
 * The caller frees it with rk_tensor_free.
 */
struct rk_tensor * rk_tensor_new(struct rk_backend * be, enum rk_dtype dtype, int ndim, const int64_t * ne,
                                 const char * name);
void rk_tensor_free(struct rk_tensor * t); /* NULL is fine */

/*
 * A view: a struct (by value) sharing t's data, with new shape, strides (bytes) and byte offset.
 * owns_data is false. Cannot fail.
 */
struct rk_tensor rk_tensor_view(const struct rk_tensor * t, int ndim, const int64_t * ne, const int64_t * nb,
                                size_t offset);
/* A host view over foreign memory (contiguous). Cannot fail. */
struct rk_tensor rk_tensor_host(void * data, enum rk_dtype dtype, int ndim, const int64_t * ne);

/* Copy a contiguous host buffer of n bytes into/out of t (any backend). Returns a status. */
enum rk_status rk_tensor_set(struct rk_tensor * t, const void * src, size_t n);
enum rk_status rk_tensor_get(const struct rk_tensor * t, void * dst, size_t n);
/* Reads t (f32/f16/bf16, contiguous) into a host f32 buffer of nelements floats, converting. */
enum rk_status rk_tensor_get_f32(const struct rk_tensor * t, float * dst);
/* Writes host f32 data into t (f32/f16/bf16, contiguous), converting. */
enum rk_status rk_tensor_set_f32(struct rk_tensor * t, const float * src);

#ifdef __cplusplus
}
#endif
#endif
