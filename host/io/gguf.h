/*
 * gguf.h: read-only loader for GGUF files (llama.cpp / ggml checkpoints), memory-mapped.
 *
 * File layout (little-endian; versions 2 and 3): "GGUF", u32 version, u64 tensor count, u64 metadata count;
 * the metadata key/value pairs (key = u64 length + bytes, u32 value type, value; an array is u32 element type,
 * u64 count, elements); the tensor infos (name, u32 n_dims, n_dims x u64 dims, u32 ggml type, u64 offset); padding
 * to general.alignment (default 32); the data section. Tensor offsets are relative to the data section and
 * multiples of the alignment.
 *
 * rk_gguf_open validates the whole header up front (every length, count and offset against the file size,
 * value types, ggml type ids, shapes, overflow), so a tensor's data pointer is always safe to read for nbytes.
 * Errors are one line naming the file and the byte offset. Tensor data is never copied: tensors point into the
 * mapping, which lives until rk_gguf_close.
 *
 * Shapes: GGUF stores dims innermost first (ggml's ne[0] = row length). rk_gguf_tensor.ne is converted to our
 * convention, outermost first (STYLE.md 1.5): a ggml token_embd of ne = {C, V} is ne = {V, C} here, so the
 * dequantized data is a row-major (V, C) matrix.
 */
#ifndef RK_IO_GGUF_H
#define RK_IO_GGUF_H

#include "rk.h"
#include "quant/gguf_blocks.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RK_GGUF_DEFAULT_ALIGNMENT 32
#define RK_GGUF_NAME_MAX          256  /* longest tensor name accepted, including the NUL (ggml uses 64) */
#define RK_GGUF_MAX_DIMS          4

/* metadata value types (gguf.h enum gguf_type) */
enum rk_gguf_vtype {
    RK_GGUF_U8 = 0, RK_GGUF_I8 = 1, RK_GGUF_U16 = 2, RK_GGUF_I16 = 3, RK_GGUF_U32 = 4, RK_GGUF_I32 = 5,
    RK_GGUF_F32 = 6, RK_GGUF_BOOL = 7, RK_GGUF_STRING = 8, RK_GGUF_ARRAY = 9, RK_GGUF_U64 = 10,
    RK_GGUF_I64 = 11, RK_GGUF_F64 = 12, RK_GGUF_VTYPE_COUNT
};

const char * rk_gguf_vtype_name(enum rk_gguf_vtype t); /* "u32", "string", ...; cannot fail */

struct rk_gguf_kv {
    char *             key;         /* NUL-terminated copy */
    enum rk_gguf_vtype type;
    int64_t            offset;      /* file offset of the value (for messages) */
    /* scalars: integers in i (signed types) or u (unsigned types and bool), floats in f */
    int64_t            i;
    uint64_t           u;
    double             f;
    /* STRING: a NUL-terminated copy (a string holding NUL bytes is cut there; str_len is the full length) */
    char *             str;
    uint64_t           str_len;
    /* ARRAY: element type, count, and the elements as stored in the mapping (packed little-endian scalars) */
    enum rk_gguf_vtype arr_type;
    int64_t            arr_n;
    const uint8_t *    arr_data;
    const uint8_t **   arr_str;     /* arrays of strings: the u64 length field of each element */
};

struct rk_gguf_tensor {
    char              name[RK_GGUF_NAME_MAX];
    uint32_t          type;         /* enum rk_ggml_type; rk_ggml_type_get(type) is never NULL after open */
    int               ndim;
    int64_t           ne[RK_GGUF_MAX_DIMS]; /* outermost first (converted from ggml order); trailing entries 1 */
    int64_t           nelements;
    uint64_t          offset;       /* relative to the data section, as stored */
    int64_t           info_offset;  /* file offset of this tensor's info record (for messages) */
    size_t            nbytes;
    const void *      data;         /* into the read-only mapping */
};

struct rk_gguf {
    char *                  path;
    int                     fd;
    void *                  map;
    size_t                  size;
    uint32_t                version;
    uint32_t                alignment;
    int64_t                 data_offset;  /* file offset of the data section */
    int64_t                 n_kv;
    struct rk_gguf_kv *     kv;
    int64_t                 n_tensors;
    struct rk_gguf_tensor * tensors;      /* in file order */
};

/*
 * Opens and maps path, validating everything. On success *out owns the mapping; free with rk_gguf_close. On
 * failure *out is NULL, the error is set ("<path>: byte <offset>: ...") and the status is RK_STATUS_IO (cannot
 * open, stat or map) or RK_STATUS_FORMAT (malformed content, unknown ggml type id, more than 4 dims), or
 * RK_STATUS_UNSUPPORTED (version 1, or a big-endian file).
 */
enum rk_status rk_gguf_open(const char * path, struct rk_gguf ** out);

/* Unmaps and frees. NULL is fine. */
void rk_gguf_close(struct rk_gguf * g);

/* The pair with this key, or NULL. Cannot fail. */
const struct rk_gguf_kv * rk_gguf_find_kv(const struct rk_gguf * g, const char * key);

/*
 * Typed getters. A missing key is RK_STATUS_FORMAT ("<path>: metadata key '<key>' missing"). Integer getters
 * accept any integer type whose value fits (RK_STATUS_FORMAT naming key and offset otherwise); get_f32/f64
 * accept f32 and f64; get_bool needs bool; get_str needs string (the pointer lives until rk_gguf_close).
 */
enum rk_status rk_gguf_get_u32(const struct rk_gguf * g, const char * key, uint32_t * v);
enum rk_status rk_gguf_get_i64(const struct rk_gguf * g, const char * key, int64_t * v);
enum rk_status rk_gguf_get_f32(const struct rk_gguf * g, const char * key, float * v);
enum rk_status rk_gguf_get_bool(const struct rk_gguf * g, const char * key, bool * v);
enum rk_status rk_gguf_get_str(const struct rk_gguf * g, const char * key, const char ** v);

/* An array: its element type and count. Not an array: RK_STATUS_FORMAT. */
enum rk_status rk_gguf_get_arr(const struct rk_gguf * g, const char * key, enum rk_gguf_vtype * type,
                               int64_t * n);
/*
 * Copies a numeric array into caller memory, n elements (must equal the count: RK_STATUS_ARG otherwise),
 * converting: _f32 from f32/f64/any integer, _i32 from integers that fit. Other element types: RK_STATUS_FORMAT.
 */
enum rk_status rk_gguf_arr_f32(const struct rk_gguf * g, const char * key, float * dst, int64_t n);
enum rk_status rk_gguf_arr_i32(const struct rk_gguf * g, const char * key, int32_t * dst, int64_t n);
/*
 * Element i of an array of strings: pointer into the mapping (NOT NUL-terminated) and its length in *len.
 * NULL when kv is not a string array or i is out of range. Cannot fail otherwise.
 */
const char * rk_gguf_arr_str(const struct rk_gguf_kv * kv, int64_t i, uint64_t * len);

/* The tensor called name, or NULL. Cannot fail. */
const struct rk_gguf_tensor * rk_gguf_find_tensor(const struct rk_gguf * g, const char * name);

/*
 * Dequantizes tensor t into dst, n floats of caller memory (n must equal t->nelements: RK_STATUS_ARG
 * otherwise), in our row-major outermost-first order. A ggml type rk cannot dequantize (IQ*, I32, ...):
 * RK_STATUS_UNSUPPORTED naming the tensor and type.
 */
enum rk_status rk_gguf_read_f32(const struct rk_gguf * g, const struct rk_gguf_tensor * t, float * dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
