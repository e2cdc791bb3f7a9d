/*
 * gguf.c: the GGUF loader (see gguf.h for the format and the contracts).
 *
 * All reads go through a cursor that checks the remaining length before touching a byte, so a malformed or
 * truncated file produces a one-line error naming the offset and never a read past the mapping. Counts are
 * bounded by the bytes left before anything is allocated for them.
 */
#include "io/gguf.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian values with memcpy: a big-endian host needs byte swaps"
#endif

static const char * const vtype_names[RK_GGUF_VTYPE_COUNT] = {
    [RK_GGUF_U8] = "u8",   [RK_GGUF_I8] = "i8",     [RK_GGUF_U16] = "u16",   [RK_GGUF_I16] = "i16",
    [RK_GGUF_U32] = "u32", [RK_GGUF_I32] = "i32",   [RK_GGUF_F32] = "f32",   [RK_GGUF_BOOL] = "bool",
    [RK_GGUF_STRING] = "string", [RK_GGUF_ARRAY] = "array", [RK_GGUF_U64] = "u64", [RK_GGUF_I64] = "i64",
    [RK_GGUF_F64] = "f64",
};
_Static_assert(sizeof(vtype_names) / sizeof(vtype_names[0]) == RK_GGUF_VTYPE_COUNT, "one name per value type");

const char * rk_gguf_vtype_name(enum rk_gguf_vtype t) {
    return (unsigned) t < RK_GGUF_VTYPE_COUNT ? vtype_names[t] : "?";
}

/* Bytes of one scalar of type t; 0 for string and array. */
static size_t vtype_size(enum rk_gguf_vtype t) {
    switch (t) {
    case RK_GGUF_U8: case RK_GGUF_I8: case RK_GGUF_BOOL: return 1;
    case RK_GGUF_U16: case RK_GGUF_I16: return 2;
    case RK_GGUF_U32: case RK_GGUF_I32: case RK_GGUF_F32: return 4;
    case RK_GGUF_U64: case RK_GGUF_I64: case RK_GGUF_F64: return 8;
    default: return 0;
    }
}

static bool vtype_is_int(enum rk_gguf_vtype t) {
    return t == RK_GGUF_U8 || t == RK_GGUF_I8 || t == RK_GGUF_U16 || t == RK_GGUF_I16 || t == RK_GGUF_U32 ||
           t == RK_GGUF_I32 || t == RK_GGUF_U64 || t == RK_GGUF_I64;
}

/* ------------------------------------------------------------------------------------------------
 * the cursor */

struct cursor {
    const char *    path;
    const uint8_t * p;
    size_t          size;
    size_t          pos;
};

/* Checks that n bytes remain at the cursor; `what` names the item for the message. */
static enum rk_status need(const struct cursor * c, uint64_t n, const char * what) {
    if (n > c->size - c->pos) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: byte %zu: %s (%llu bytes) runs past the end of the file (%zu bytes; truncated?)",
                            c->path, c->pos, what, (unsigned long long) n, c->size);
    }
    return RK_OK;
}

static enum rk_status rd(struct cursor * c, void * v, size_t n, const char * what) {
    RK_TRY(need(c, n, what));
    memcpy(v, c->p + c->pos, n);
    c->pos += n;
    return RK_OK;
}

static enum rk_status rd_u32(struct cursor * c, uint32_t * v, const char * what) { return rd(c, v, 4, what); }
static enum rk_status rd_u64(struct cursor * c, uint64_t * v, const char * what) { return rd(c, v, 8, what); }

/* A GGUF string: u64 length + bytes (no NUL). *s points into the mapping. */
static enum rk_status rd_str(struct cursor * c, const uint8_t ** s, uint64_t * len, const char * what) {
    size_t at = c->pos;
    RK_TRY(rd_u64(c, len, what));
    if (*len > c->size - c->pos) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: byte %zu: %s: string length %llu runs past the end of the file (%zu bytes; "
                            "truncated?)",
                            c->path, at, what, (unsigned long long) *len, c->size);
    }
    *s = c->p + c->pos;
    c->pos += (size_t) *len;
    return RK_OK;
}

static char * dup_str(const uint8_t * s, uint64_t len) {
    char * d = rk_xmalloc((size_t) len + 1);
    memcpy(d, s, (size_t) len);
    d[len] = '\0';
    return d;
}

/* ------------------------------------------------------------------------------------------------
 * metadata */

/* Skips the elements of an array of arrays (nested arrays are legal GGUF, though no known writer uses them). */
static enum rk_status skip_array_body(struct cursor * c, uint32_t etype, uint64_t n, int depth);

static enum rk_status skip_array(struct cursor * c, int depth) {
    size_t   at = c->pos;
    uint32_t etype;
    uint64_t n;
    if (depth > 8) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: arrays nested more than 8 deep", c->path, at);
    }
    RK_TRY(rd_u32(c, &etype, "array element type"));
    RK_TRY(rd_u64(c, &n, "array count"));
    return skip_array_body(c, etype, n, depth);
}

static enum rk_status skip_array_body(struct cursor * c, uint32_t etype, uint64_t n, int depth) {
    size_t at = c->pos;
    if (etype >= RK_GGUF_VTYPE_COUNT) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: unknown array element type %u", c->path, at - 12,
                            etype);
    }
    size_t es = vtype_size(etype);
    if (es) {
        if (n > (c->size - c->pos) / es) {
            return rk_set_error(RK_STATUS_FORMAT,
                                "%s: byte %zu: array of %llu %s runs past the end of the file (%zu bytes; "
                                "truncated?)",
                                c->path, at, (unsigned long long) n, vtype_names[etype], c->size);
        }
        c->pos += (size_t) n * es;
        return RK_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (etype == RK_GGUF_STRING) {
            const uint8_t * s = NULL;
            uint64_t        len;
            RK_TRY(rd_str(c, &s, &len, "array string"));
        } else {
            RK_TRY(skip_array(c, depth + 1));
        }
    }
    return RK_OK;
}

static enum rk_status parse_kv(struct cursor * c, struct rk_gguf_kv * kv) {
    const uint8_t * key = NULL;
    uint64_t        klen = 0;
    size_t          at = c->pos;
    RK_TRY(rd_str(c, &key, &klen, "metadata key"));
    kv->key = dup_str(key, klen);
    if (strlen(kv->key) != klen || klen == 0) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: metadata key is empty or holds a NUL byte", c->path,
                            at);
    }
    uint32_t type;
    at = c->pos;
    RK_TRY(rd_u32(c, &type, "metadata value type"));
    if (type >= RK_GGUF_VTYPE_COUNT) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: key '%s': unknown value type %u", c->path, at,
                            kv->key, type);
    }
    kv->type   = (enum rk_gguf_vtype) type;
    kv->offset = (int64_t) c->pos;
    at         = c->pos;
    switch (kv->type) {
    case RK_GGUF_U8:  { uint8_t v;  RK_TRY(rd(c, &v, 1, kv->key)); kv->u = v; break; }
    case RK_GGUF_I8:  { int8_t v;   RK_TRY(rd(c, &v, 1, kv->key)); kv->i = v; break; }
    case RK_GGUF_U16: { uint16_t v; RK_TRY(rd(c, &v, 2, kv->key)); kv->u = v; break; }
    case RK_GGUF_I16: { int16_t v;  RK_TRY(rd(c, &v, 2, kv->key)); kv->i = v; break; }
    case RK_GGUF_U32: { uint32_t v; RK_TRY(rd(c, &v, 4, kv->key)); kv->u = v; break; }
    case RK_GGUF_I32: { int32_t v;  RK_TRY(rd(c, &v, 4, kv->key)); kv->i = v; break; }
    case RK_GGUF_U64: { uint64_t v; RK_TRY(rd(c, &v, 8, kv->key)); kv->u = v; break; }
    case RK_GGUF_I64: { int64_t v;  RK_TRY(rd(c, &v, 8, kv->key)); kv->i = v; break; }
    case RK_GGUF_F32: { float v;    RK_TRY(rd(c, &v, 4, kv->key)); kv->f = v; break; }
    case RK_GGUF_F64: { double v;   RK_TRY(rd(c, &v, 8, kv->key)); kv->f = v; break; }
    case RK_GGUF_BOOL: {
        uint8_t v;
        RK_TRY(rd(c, &v, 1, kv->key));
        if (v > 1) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: key '%s': bool value %u is not 0 or 1", c->path,
                                at, kv->key, v);
        }
        kv->u = v;
        break;
    }
    case RK_GGUF_STRING: {
        const uint8_t * s = NULL;
        RK_TRY(rd_str(c, &s, &kv->str_len, kv->key));
        kv->str = dup_str(s, kv->str_len);
        break;
    }
    case RK_GGUF_ARRAY: {
        uint32_t etype;
        uint64_t n;
        RK_TRY(rd_u32(c, &etype, "array element type"));
        RK_TRY(rd_u64(c, &n, "array count"));
        if (etype >= RK_GGUF_VTYPE_COUNT) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: key '%s': unknown array element type %u", c->path,
                                at, kv->key, etype);
        }
        if (n > (uint64_t) INT64_MAX) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: key '%s': array count %llu too large", c->path,
                                at + 4, kv->key, (unsigned long long) n);
        }
        kv->arr_type = (enum rk_gguf_vtype) etype;
        kv->arr_n    = (int64_t) n;
        kv->arr_data = c->p + c->pos;
        if (etype == RK_GGUF_STRING) {
            /* every element takes at least its 8-byte length: bound n before allocating the index */
            if (n > (c->size - c->pos) / 8) {
                return rk_set_error(RK_STATUS_FORMAT,
                                    "%s: byte %zu: key '%s': array of %llu strings runs past the end of the file "
                                    "(%zu bytes; truncated?)",
                                    c->path, at, kv->key, (unsigned long long) n, c->size);
            }
            kv->arr_str = rk_xmalloc((size_t) (n ? n : 1) * sizeof(kv->arr_str[0]));
            for (uint64_t i = 0; i < n; i++) {
                const uint8_t * s = NULL;
                uint64_t        len;
                kv->arr_str[i] = c->p + c->pos;
                RK_TRY(rd_str(c, &s, &len, kv->key));
            }
        } else {
            RK_TRY(skip_array_body(c, etype, n, 1));
        }
        break;
    }
    default: break;
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------------
 * tensor infos */

static enum rk_status parse_tensor_info(struct cursor * c, struct rk_gguf_tensor * t) {
    const uint8_t * name = NULL;
    uint64_t        nlen = 0;
    t->info_offset = (int64_t) c->pos;
    RK_TRY(rd_str(c, &name, &nlen, "tensor name"));
    if (nlen >= RK_GGUF_NAME_MAX || memchr(name, 0, (size_t) nlen) || nlen == 0) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: tensor name of %llu bytes is empty, longer than %d "
                            "or holds a NUL byte", c->path, (long long) t->info_offset, (unsigned long long) nlen,
                            RK_GGUF_NAME_MAX - 1);
    }
    memcpy(t->name, name, (size_t) nlen);
    t->name[nlen] = '\0';

    uint32_t ndim;
    size_t   at = c->pos;
    RK_TRY(rd_u32(c, &ndim, "tensor n_dims"));
    if (ndim > RK_GGUF_MAX_DIMS) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: tensor '%s': n_dims %u is more than %d", c->path, at,
                            t->name, ndim, RK_GGUF_MAX_DIMS);
    }
    t->ndim = (int) ndim;
    int64_t ne_ggml[RK_GGUF_MAX_DIMS] = { 1, 1, 1, 1 };
    int64_t nel = 1;
    for (uint32_t d = 0; d < ndim; d++) {
        uint64_t v;
        at = c->pos;
        RK_TRY(rd_u64(c, &v, "tensor dim"));
        if (v > (uint64_t) INT64_MAX || __builtin_mul_overflow(nel, (int64_t) v, &nel)) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: tensor '%s': dim %u = %llu overflows 64 bits",
                                c->path, at, t->name, d, (unsigned long long) v);
        }
        ne_ggml[d] = (int64_t) v;
    }
    /* ggml order (innermost first) -> ours (outermost first) */
    for (int d = 0; d < RK_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->ndim; d++) t->ne[d] = ne_ggml[t->ndim - 1 - d];
    t->nelements = nel;

    at = c->pos;
    RK_TRY(rd_u32(c, &t->type, "tensor type"));
    const struct rk_ggml_type_traits * tr = rk_ggml_type_get(t->type);
    if (!tr) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: tensor '%s': unknown ggml type %u", c->path, at,
                            t->name, t->type);
    }
    if (ne_ggml[0] % tr->blck_size != 0) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: byte %zu: tensor '%s': row length %lld is not a multiple of the %s block (%lld)",
                            c->path, at, t->name, (long long) ne_ggml[0], tr->name, (long long) tr->blck_size);
    }
    int64_t nbytes;
    if (__builtin_mul_overflow(nel / tr->blck_size, (int64_t) tr->type_size, &nbytes)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %zu: tensor '%s': size overflows 64 bits", c->path, at,
                            t->name);
    }
    t->nbytes = (size_t) nbytes;
    RK_TRY(rd_u64(c, &t->offset, "tensor offset"));
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------------
 * sorted indexes for lookup and duplicate detection */

static int cmp_kv(const void * a, const void * b) {
    return strcmp(((const struct rk_gguf_kv *) a)->key, ((const struct rk_gguf_kv *) b)->key);
}

static int cmp_tensor_ptr(const void * a, const void * b) {
    const struct rk_gguf_tensor * ta = *(const struct rk_gguf_tensor * const *) a;
    const struct rk_gguf_tensor * tb = *(const struct rk_gguf_tensor * const *) b;
    return strcmp(ta->name, tb->name);
}

/* ------------------------------------------------------------------------------------------------
 * open / close */

static enum rk_status parse(struct rk_gguf * g) {
    struct cursor c = { g->path, g->map, g->size, 0 };
    char          magic[4];
    RK_TRY(rd(&c, magic, 4, "magic"));
    if (memcmp(magic, "GGUF", 4) != 0) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte 0: bad magic %02x %02x %02x %02x (not a GGUF file)",
                            g->path, (uint8_t) magic[0], (uint8_t) magic[1], (uint8_t) magic[2],
                            (uint8_t) magic[3]);
    }
    RK_TRY(rd_u32(&c, &g->version, "version"));
    if (g->version == 0x02000000u || g->version == 0x03000000u) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: byte 4: big-endian GGUF files are not supported", g->path);
    }
    if (g->version == 1) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: byte 4: GGUF version 1 is not supported (only 2 and 3)",
                            g->path);
    }
    if (g->version != 2 && g->version != 3) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte 4: unknown GGUF version %u", g->path, g->version);
    }
    uint64_t n_tensors, n_kv;
    RK_TRY(rd_u64(&c, &n_tensors, "tensor count"));
    RK_TRY(rd_u64(&c, &n_kv, "metadata count"));
    /* a pair takes at least 8 + 1 + 4 + 1 bytes, a tensor info 8 + 1 + 4 + 4 + 8 */
    if (n_kv > (c.size - c.pos) / 14) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: byte 16: metadata count %llu cannot fit in the file (%zu bytes; truncated?)",
                            g->path, (unsigned long long) n_kv, c.size);
    }
    if (n_tensors > (c.size - c.pos) / 25) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: byte 8: tensor count %llu cannot fit in the file (%zu bytes; truncated?)", g->path,
                            (unsigned long long) n_tensors, c.size);
    }

    g->kv = rk_xcalloc((size_t) (n_kv ? n_kv : 1), sizeof(g->kv[0]));
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t) i + 1; /* so that close frees a partly parsed pair */
        RK_TRY(parse_kv(&c, &g->kv[i]));
    }
    g->tensors = rk_xcalloc((size_t) (n_tensors ? n_tensors : 1), sizeof(g->tensors[0]));
    g->n_tensors = (int64_t) n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++) RK_TRY(parse_tensor_info(&c, &g->tensors[i]));

    /* keys: sorted for binary search, duplicates refused */
    qsort(g->kv, (size_t) g->n_kv, sizeof(g->kv[0]), cmp_kv);
    for (int64_t i = 1; i < g->n_kv; i++) {
        if (strcmp(g->kv[i - 1].key, g->kv[i].key) == 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: duplicate metadata key '%s'", g->path,
                                (long long) g->kv[i].offset, g->kv[i].key);
        }
    }

    g->alignment = RK_GGUF_DEFAULT_ALIGNMENT;
    const struct rk_gguf_kv * al = rk_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != RK_GGUF_U32 || al->u == 0 || (al->u & (al->u - 1)) != 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: general.alignment must be a u32 power of two",
                                g->path, (long long) al->offset);
        }
        g->alignment = (uint32_t) al->u;
    }
    uint64_t data_off = ((uint64_t) c.pos + g->alignment - 1) / g->alignment * g->alignment;
    g->data_offset = (int64_t) data_off;

    const struct rk_gguf_tensor ** sorted = rk_xmalloc((size_t) (n_tensors ? n_tensors : 1) * sizeof(*sorted));
    enum rk_status                 s      = RK_OK;
    for (int64_t i = 0; i < g->n_tensors && s == RK_OK; i++) {
        struct rk_gguf_tensor * t = &g->tensors[i];
        sorted[i] = t;
        if (t->offset % g->alignment != 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: tensor '%s': offset %llu is not a multiple of the "
                             "alignment %u", g->path, (long long) t->info_offset, t->name,
                             (unsigned long long) t->offset, g->alignment);
        } else if (data_off > g->size || t->offset > g->size - data_off || t->nbytes > g->size - data_off - t->offset) {
            s = rk_set_error(RK_STATUS_FORMAT,
                             "%s: byte %llu: tensor '%s': data (%zu bytes at offset %llu) runs past the end of the "
                             "file (%zu bytes; truncated?)",
                             g->path, (unsigned long long) (data_off + t->offset), t->name, t->nbytes,
                             (unsigned long long) t->offset, g->size);
        } else {
            t->data = (const uint8_t *) g->map + data_off + t->offset;
        }
    }
    if (s == RK_OK) {
        qsort(sorted, (size_t) g->n_tensors, sizeof(*sorted), cmp_tensor_ptr);
        for (int64_t i = 1; i < g->n_tensors; i++) {
            if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
                s = rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: duplicate tensor name '%s'", g->path,
                                 (long long) sorted[i]->info_offset, sorted[i]->name);
                break;
            }
        }
    }
    free(sorted);
    return s;
}

enum rk_status rk_gguf_open(const char * path, struct rk_gguf ** out) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return rk_set_error(RK_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return rk_set_error(RK_STATUS_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (sb.st_size == 0) {
        close(fd);
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte 0: file is empty (not a GGUF file)", path);
    }
    void * map = mmap(NULL, (size_t) sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        close(fd);
        return rk_set_error(RK_STATUS_IO, "%s: cannot map %lld bytes: %s", path, (long long) sb.st_size,
                            strerror(e));
    }
    struct rk_gguf * g = rk_xcalloc(1, sizeof(*g));
    g->path = rk_xstrdup(path);
    g->fd   = fd;
    g->map  = map;
    g->size = (size_t) sb.st_size;
    enum rk_status s = parse(g);
    if (s != RK_OK) {
        rk_gguf_close(g);
        return s;
    }
    *out = g;
    return RK_OK;
}

void rk_gguf_close(struct rk_gguf * g) {
    if (!g) return;
    if (g->map) munmap(g->map, g->size);
    if (g->fd >= 0) close(g->fd);
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
        free(g->kv[i].arr_str);
    }
    free(g->kv);
    free(g->tensors);
    free(g->path);
    free(g);
}

/* ------------------------------------------------------------------------------------------------
 * metadata access */

const struct rk_gguf_kv * rk_gguf_find_kv(const struct rk_gguf * g, const char * key) {
    int64_t lo = 0, hi = g->n_kv - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int     r   = strcmp(g->kv[mid].key, key);
        if (r == 0) return &g->kv[mid];
        if (r < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static enum rk_status find_typed(const struct rk_gguf * g, const char * key, const struct rk_gguf_kv ** kv) {
    *kv = rk_gguf_find_kv(g, key);
    if (!*kv) return rk_set_error(RK_STATUS_FORMAT, "%s: metadata key '%s' missing", g->path, key);
    return RK_OK;
}

static enum rk_status wrong_type(const struct rk_gguf * g, const struct rk_gguf_kv * kv, const char * want) {
    return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: key '%s' is %s, expected %s", g->path,
                        (long long) kv->offset, kv->key, vtype_names[kv->type], want);
}

static bool is_signed(enum rk_gguf_vtype t) {
    return t == RK_GGUF_I8 || t == RK_GGUF_I16 || t == RK_GGUF_I32 || t == RK_GGUF_I64;
}

enum rk_status rk_gguf_get_u32(const struct rk_gguf * g, const char * key, uint32_t * v) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_typed(g, key, &kv));
    if (!vtype_is_int(kv->type)) return wrong_type(g, kv, "an integer");
    bool fits = is_signed(kv->type) ? kv->i >= 0 && kv->i <= (int64_t) UINT32_MAX : kv->u <= UINT32_MAX;
    if (!fits) return wrong_type(g, kv, "a value that fits u32");
    *v = is_signed(kv->type) ? (uint32_t) kv->i : (uint32_t) kv->u;
    return RK_OK;
}

enum rk_status rk_gguf_get_i64(const struct rk_gguf * g, const char * key, int64_t * v) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_typed(g, key, &kv));
    if (!vtype_is_int(kv->type)) return wrong_type(g, kv, "an integer");
    if (!is_signed(kv->type) && kv->u > (uint64_t) INT64_MAX) return wrong_type(g, kv, "a value that fits i64");
    *v = is_signed(kv->type) ? kv->i : (int64_t) kv->u;
    return RK_OK;
}

enum rk_status rk_gguf_get_f32(const struct rk_gguf * g, const char * key, float * v) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_typed(g, key, &kv));
    if (kv->type != RK_GGUF_F32 && kv->type != RK_GGUF_F64) return wrong_type(g, kv, "f32 or f64");
    *v = (float) kv->f;
    return RK_OK;
}

enum rk_status rk_gguf_get_bool(const struct rk_gguf * g, const char * key, bool * v) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_typed(g, key, &kv));
    if (kv->type != RK_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *v = kv->u != 0;
    return RK_OK;
}

enum rk_status rk_gguf_get_str(const struct rk_gguf * g, const char * key, const char ** v) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_typed(g, key, &kv));
    if (kv->type != RK_GGUF_STRING) return wrong_type(g, kv, "string");
    *v = kv->str;
    return RK_OK;
}

enum rk_status rk_gguf_get_arr(const struct rk_gguf * g, const char * key, enum rk_gguf_vtype * type,
                               int64_t * n) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_typed(g, key, &kv));
    if (kv->type != RK_GGUF_ARRAY) return wrong_type(g, kv, "array");
    *type = kv->arr_type;
    *n    = kv->arr_n;
    return RK_OK;
}

/* Element i of a numeric array as a double, or (integers) exactly in *iv with *is_int set. */
static void arr_elem(const struct rk_gguf_kv * kv, int64_t i, double * dv, int64_t * iv, bool * fits_i64) {
    const uint8_t * p = kv->arr_data + (size_t) i * vtype_size(kv->arr_type);
    *fits_i64 = true;
    switch (kv->arr_type) {
    case RK_GGUF_U8:  { uint8_t x;  memcpy(&x, p, 1); *iv = x; break; }
    case RK_GGUF_I8:  { int8_t x;   memcpy(&x, p, 1); *iv = x; break; }
    case RK_GGUF_BOOL:{ uint8_t x;  memcpy(&x, p, 1); *iv = x; break; }
    case RK_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); *iv = x; break; }
    case RK_GGUF_I16: { int16_t x;  memcpy(&x, p, 2); *iv = x; break; }
    case RK_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); *iv = x; break; }
    case RK_GGUF_I32: { int32_t x;  memcpy(&x, p, 4); *iv = x; break; }
    case RK_GGUF_I64: { int64_t x;  memcpy(&x, p, 8); *iv = x; break; }
    case RK_GGUF_U64: {
        uint64_t x;
        memcpy(&x, p, 8);
        *fits_i64 = x <= (uint64_t) INT64_MAX;
        *iv       = (int64_t) x;
        *dv       = (double) x;
        return;
    }
    case RK_GGUF_F32: { float x;  memcpy(&x, p, 4); *dv = x; *fits_i64 = false; return; }
    case RK_GGUF_F64: { double x; memcpy(&x, p, 8); *dv = x; *fits_i64 = false; return; }
    default: *fits_i64 = false; *dv = 0; return;
    }
    *dv = (double) *iv;
}

static enum rk_status find_num_arr(const struct rk_gguf * g, const char * key, int64_t n, bool want_int,
                                   const struct rk_gguf_kv ** kv) {
    RK_TRY(find_typed(g, key, kv));
    const struct rk_gguf_kv * k = *kv;
    bool ok = k->type == RK_GGUF_ARRAY && k->arr_type != RK_GGUF_STRING && k->arr_type != RK_GGUF_ARRAY &&
              (!want_int || vtype_is_int(k->arr_type));
    if (!ok) return wrong_type(g, k, want_int ? "an array of integers" : "a numeric array");
    if (n != k->arr_n) {
        return rk_set_error(RK_STATUS_ARG, "%s: key '%s': caller expects %lld elements, the array has %lld",
                            g->path, key, (long long) n, (long long) k->arr_n);
    }
    return RK_OK;
}

enum rk_status rk_gguf_arr_f32(const struct rk_gguf * g, const char * key, float * dst, int64_t n) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_num_arr(g, key, n, false, &kv));
    for (int64_t i = 0; i < n; i++) {
        double  dv;
        int64_t iv;
        bool    fits;
        arr_elem(kv, i, &dv, &iv, &fits);
        dst[i] = (float) dv;
    }
    return RK_OK;
}

enum rk_status rk_gguf_arr_i32(const struct rk_gguf * g, const char * key, int32_t * dst, int64_t n) {
    const struct rk_gguf_kv * kv;
    RK_TRY(find_num_arr(g, key, n, true, &kv));
    for (int64_t i = 0; i < n; i++) {
        double  dv;
        int64_t iv;
        bool    fits;
        arr_elem(kv, i, &dv, &iv, &fits);
        if (!fits || iv < INT32_MIN || iv > INT32_MAX) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: key '%s': element %lld does not fit i32",
                                g->path, (long long) kv->offset, key, (long long) i);
        }
        dst[i] = (int32_t) iv;
    }
    return RK_OK;
}

const char * rk_gguf_arr_str(const struct rk_gguf_kv * kv, int64_t i, uint64_t * len) {
    if (kv->type != RK_GGUF_ARRAY || kv->arr_type != RK_GGUF_STRING || i < 0 || i >= kv->arr_n) return NULL;
    memcpy(len, kv->arr_str[i], 8);
    return (const char *) kv->arr_str[i] + 8;
}

/* ------------------------------------------------------------------------------------------------
 * tensors */

const struct rk_gguf_tensor * rk_gguf_find_tensor(const struct rk_gguf * g, const char * name) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    }
    return NULL;
}

enum rk_status rk_gguf_read_f32(const struct rk_gguf * g, const struct rk_gguf_tensor * t, float * dst, int64_t n) {
    const struct rk_ggml_type_traits * tr = rk_ggml_type_get(t->type);
    RK_ASSERT(tr != NULL); /* checked by rk_gguf_open */
    if (!tr->to_f32) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: tensor '%s': rk cannot dequantize ggml type %s", g->path,
                            t->name, tr->name);
    }
    if (n != t->nelements) {
        return rk_set_error(RK_STATUS_ARG, "%s: tensor '%s': caller expects %lld elements, the tensor has %lld",
                            g->path, t->name, (long long) n, (long long) t->nelements);
    }
    tr->to_f32(t->data, dst, n);
    return RK_OK;
}
