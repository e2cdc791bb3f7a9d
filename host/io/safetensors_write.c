/*
 * safetensors_write.c: the .safetensors writer and the crash-safe file write (see safetensors_write.h).
 *
 * Integers in the header are emitted as raw JSON text ("%lld") rather than cJSON numbers, because cJSON prints
 * doubles with "%1.15g" and would write an offset of 2e15 as "2e+15", which the reference reader (serde, usize)
 * refuses. Tensor data is streamed from the caller's memory; only a conversion goes through a fixed-size buffer.
 */
#include "io/safetensors_write.h"

#include "check.h"
#include "io/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; add a byte swap");

/* ------------------------------------------------------------------------------------------------
 * crash-safe files */

/* A temporary file being written next to its target. */
struct atomic_file {
    const char * path;
    char *       tmp;
    int          fd;
};

static char * dir_of(const char * path) {
    const char * slash = strrchr(path, '/');
    if (!slash) return rk_xstrdup(".");
    if (slash == path) return rk_xstrdup("/");
    size_t n = (size_t) (slash - path);
    char * d = rk_xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

enum rk_status rk_fsync_dir(const char * dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return rk_set_error(RK_STATUS_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) { /* some file systems cannot sync folders */
        int e = errno;
        close(fd);
        return rk_set_error(RK_STATUS_IO, "%s: cannot sync folder: %s", dir, strerror(e));
    }
    close(fd);
    return RK_OK;
}

static enum rk_status af_open(struct atomic_file * af, const char * path) {
    af->path         = path;
    const size_t n   = strlen(path) + 32;
    af->tmp          = rk_xmalloc(n);
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long) getpid());
    af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (af->fd < 0) {
        int e = errno;
        free(af->tmp);
        af->tmp = NULL;
        return rk_set_error(RK_STATUS_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return RK_OK;
}

/* Removes the temporary file and sets the error from errno value e. */
static enum rk_status af_fail(struct atomic_file * af, int e) {
    if (af->fd >= 0) close(af->fd);
    af->fd = -1;
    unlink(af->tmp);
    free(af->tmp);
    af->tmp = NULL;
    return rk_set_error(RK_STATUS_IO, "%s: cannot write: %s", af->path, strerror(e));
}

static enum rk_status af_write(struct atomic_file * af, const void * buf, size_t n) {
    const uint8_t * p = buf;
    while (n > 0) {
        ssize_t k = write(af->fd, p, n > ((size_t) 1 << 30) ? ((size_t) 1 << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return af_fail(af, k < 0 ? errno : EIO);
        p += k;
        n -= (size_t) k;
    }
    return RK_OK;
}

static enum rk_status af_commit(struct atomic_file * af) {
    if (fsync(af->fd) != 0) return af_fail(af, errno);
    int fd = af->fd;
    af->fd = -1;
    if (close(fd) != 0) return af_fail(af, errno);
    if (rename(af->tmp, af->path) != 0) return af_fail(af, errno);
    free(af->tmp);
    af->tmp   = NULL;
    char * d  = dir_of(af->path);
    enum rk_status s = rk_fsync_dir(d);
    free(d);
    return s;
}

enum rk_status rk_write_buffers_atomic(const char * path, int n, const void * const * bufs, const size_t * lens) {
    struct atomic_file af;
    RK_TRY(af_open(&af, path));
    for (int i = 0; i < n; i++) RK_TRY(af_write(&af, bufs[i], lens[i]));
    return af_commit(&af);
}

/* ------------------------------------------------------------------------------------------------
 * the writer */

struct st_wtensor {
    char *        name;
    enum rk_dtype src;                  /* dtype in memory */
    enum rk_dtype dst;                  /* dtype in the file */
    int           ndim;
    int64_t       shape[RK_MAX_DIMS];
    const void *  data;
    int64_t       nelem;
};

struct rk_st_writer {
    int64_t             n, cap;
    struct st_wtensor * t;
    int64_t             n_meta, cap_meta;
    char **             meta_keys;
    char **             meta_values;
};

/* The safetensors spelling; NULL where the format cannot hold the dtype. */
static const char * st_dtype_name(enum rk_dtype t) {
    switch (t) {
    case RK_DTYPE_F32:  return "F32";
    case RK_DTYPE_F16:  return "F16";
    case RK_DTYPE_BF16: return "BF16";
    case RK_DTYPE_I32:  return "I32";
    case RK_DTYPE_I64:  return "I64";
    case RK_DTYPE_U8:   return "U8";
    default:            return NULL;
    }
}

/* Position of the dtype in the reference implementation's data order (larger first). */
static int st_dtype_rank(enum rk_dtype t) {
    switch (t) {
    case RK_DTYPE_I64:  return 6;
    case RK_DTYPE_F32:  return 5;
    case RK_DTYPE_I32:  return 4;
    case RK_DTYPE_BF16: return 3;
    case RK_DTYPE_F16:  return 2;
    case RK_DTYPE_U8:   return 1;
    default:            return 0;
    }
}

static bool is_float(enum rk_dtype t) { return t == RK_DTYPE_F32 || t == RK_DTYPE_F16 || t == RK_DTYPE_BF16; }

int64_t rk_named_buffer_nelements(const struct rk_named_buffer * b) {
    RK_ASSERT(b->ndim >= 0 && b->ndim <= RK_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < b->ndim; i++) n *= b->shape[i];
    return n;
}

struct rk_st_writer * rk_st_writer_new(void) { return rk_xcalloc(1, sizeof(struct rk_st_writer)); }

void rk_st_writer_free(struct rk_st_writer * w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (int64_t i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->t);
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}

enum rk_status rk_st_writer_add(struct rk_st_writer * w, const struct rk_named_buffer * b, enum rk_dtype store_dtype) {
    const char * name = b->name ? b->name : "";
    if (!*name) return rk_set_error(RK_STATUS_ARG, "safetensors writer: a tensor has an empty name");
    if (strlen(name) >= RK_ST_NAME_MAX) {
        return rk_set_error(RK_STATUS_ARG, "safetensors writer: tensor '%.60s...': name longer than %d bytes", name,
                            RK_ST_NAME_MAX - 1);
    }
    if (strcmp(name, "__metadata__") == 0) {
        return rk_set_error(RK_STATUS_ARG, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    }
    if ((unsigned) b->dtype >= RK_DTYPE_COUNT || !st_dtype_name(b->dtype) ||
        (unsigned) store_dtype >= RK_DTYPE_COUNT || !st_dtype_name(store_dtype)) {
        return rk_set_error(RK_STATUS_ARG, "safetensors writer: tensor '%s': dtype not storable in safetensors", name);
    }
    if (store_dtype != b->dtype && !(is_float(b->dtype) && is_float(store_dtype))) {
        return rk_set_error(RK_STATUS_ARG, "safetensors writer: tensor '%s': cannot convert %s to %s", name,
                            rk_dtype_traits[b->dtype].name, rk_dtype_traits[store_dtype].name);
    }
    if (b->ndim < 0 || b->ndim > RK_MAX_DIMS) {
        return rk_set_error(RK_STATUS_ARG, "safetensors writer: tensor '%s': ndim %d outside 0..%d", name, b->ndim,
                            RK_MAX_DIMS);
    }
    int64_t nelem = 1;
    for (int i = 0; i < b->ndim; i++) {
        if (b->shape[i] < 0 || __builtin_mul_overflow(nelem, b->shape[i], &nelem) ||
            nelem > (INT64_MAX / 8)) {
            return rk_set_error(RK_STATUS_ARG, "safetensors writer: tensor '%s': bad size %lld in dimension %d", name,
                                (long long) b->shape[i], i);
        }
    }
    if (nelem > 0 && !b->data) {
        return rk_set_error(RK_STATUS_ARG, "safetensors writer: tensor '%s': data is NULL", name);
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t   = rk_xrealloc(w->t, (size_t) w->cap * sizeof(w->t[0]));
    }
    struct st_wtensor * t = &w->t[w->n++];
    memset(t, 0, sizeof(*t));
    t->name  = rk_xstrdup(name);
    t->src   = b->dtype;
    t->dst   = store_dtype;
    t->ndim  = b->ndim;
    for (int i = 0; i < b->ndim; i++) t->shape[i] = b->shape[i];
    t->data  = b->data;
    t->nelem = nelem;
    return RK_OK;
}

enum rk_status rk_st_writer_add_all(struct rk_st_writer * w, const struct rk_named_buffer * b, int64_t n) {
    for (int64_t i = 0; i < n; i++) RK_TRY(rk_st_writer_add(w, &b[i], b[i].dtype));
    return RK_OK;
}

void rk_st_writer_set_meta(struct rk_st_writer * w, const char * key, const char * value) {
    for (int64_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = rk_xstrdup(value);
            return;
        }
    }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta    = w->cap_meta ? 2 * w->cap_meta : 4;
        w->meta_keys   = rk_xrealloc(w->meta_keys, (size_t) w->cap_meta * sizeof(char *));
        w->meta_values = rk_xrealloc(w->meta_values, (size_t) w->cap_meta * sizeof(char *));
    }
    w->meta_keys[w->n_meta]   = rk_xstrdup(key);
    w->meta_values[w->n_meta] = rk_xstrdup(value);
    w->n_meta++;
}

static int cmp_tensor_order(const void * a, const void * b) {
    const struct st_wtensor * x = *(const struct st_wtensor * const *) a;
    const struct st_wtensor * y = *(const struct st_wtensor * const *) b;
    int rx = st_dtype_rank(x->dst), ry = st_dtype_rank(y->dst);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_name(const void * a, const void * b) {
    return strcmp((*(const struct st_wtensor * const *) a)->name, (*(const struct st_wtensor * const *) b)->name);
}

static int cmp_meta(const void * a, const void * b) {
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}

static cJSON * raw_int(int64_t v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long) v);
    return cJSON_CreateRaw(buf);
}

/* Streams one tensor's data in its store dtype. */
static enum rk_status write_tensor_data(struct atomic_file * af, const struct st_wtensor * t) {
    const size_t dst_size = rk_dtype_traits[t->dst].type_size;
    if (t->src == t->dst) return af_write(af, t->data, (size_t) t->nelem * dst_size);
    enum { CHUNK = 16384 };
    static _Thread_local float    f32[CHUNK];
    static _Thread_local uint32_t out[CHUNK]; /* large enough for any float store dtype */
    const size_t src_size = rk_dtype_traits[t->src].type_size;
    const uint8_t * src = t->data;
    for (int64_t i = 0; i < t->nelem; i += CHUNK) {
        const int64_t k = t->nelem - i < CHUNK ? t->nelem - i : CHUNK;
        rk_dtype_traits[t->src].to_f32(src + (size_t) i * src_size, f32, k);
        rk_dtype_traits[t->dst].from_f32(f32, out, k);
        RK_TRY(af_write(af, out, (size_t) k * dst_size));
    }
    return RK_OK;
}

enum rk_status rk_st_writer_write(const struct rk_st_writer * w, const char * path) {
    const int64_t n = w->n;
    const struct st_wtensor ** order = rk_xcalloc((size_t) (n > 0 ? n : 1), sizeof(*order));
    for (int64_t i = 0; i < n; i++) order[i] = &w->t[i];
    qsort(order, (size_t) n, sizeof(*order), cmp_tensor_name);
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            enum rk_status s = rk_set_error(RK_STATUS_ARG, "%s: tensor '%s' added twice", path, order[i]->name);
            free(order);
            return s;
        }
    }
    qsort(order, (size_t) n, sizeof(*order), cmp_tensor_order);

    /* header */
    cJSON * hdr = cJSON_CreateObject();
    if (w->n_meta > 0) {
        struct st_meta { const char * key, * value; } * m = rk_xcalloc((size_t) w->n_meta, sizeof(*m));
        for (int64_t i = 0; i < w->n_meta; i++) m[i] = (struct st_meta) { w->meta_keys[i], w->meta_values[i] };
        qsort(m, (size_t) w->n_meta, sizeof(*m), cmp_meta); /* the key is the first member */
        cJSON * meta = cJSON_AddObjectToObject(hdr, "__metadata__");
        for (int64_t i = 0; i < w->n_meta; i++) cJSON_AddStringToObject(meta, m[i].key, m[i].value);
        free(m);
    }
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct st_wtensor * t = order[i];
        cJSON * e = cJSON_CreateObject();
        cJSON_AddItemToObject(hdr, t->name, e);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dst));
        cJSON * shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, raw_int(t->shape[d]));
        const int64_t nb = t->nelem * (int64_t) rk_dtype_traits[t->dst].type_size;
        cJSON * offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, raw_int(off));
        cJSON_AddItemToArray(offs, raw_int(off + nb));
        off += nb;
    }
    char * json = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    if (!json) {
        free(order);
        return rk_set_error(RK_STATUS_OOM, "%s: cannot format the safetensors header", path);
    }
    const size_t jn   = strlen(json);
    const size_t hn   = (jn + 7) / 8 * 8; /* spaces up to a multiple of 8, so the data starts 8-byte aligned */
    uint8_t *    head = rk_xmalloc(8 + hn);
    for (int b = 0; b < 8; b++) head[b] = (uint8_t) ((uint64_t) hn >> (8 * b));
    memcpy(head + 8, json, jn);
    memset(head + 8 + jn, ' ', hn - jn);
    cJSON_free(json);

    struct atomic_file af;
    enum rk_status     s = af_open(&af, path);
    if (s == RK_OK) s = af_write(&af, head, 8 + hn);
    for (int64_t i = 0; i < n && s == RK_OK; i++) s = write_tensor_data(&af, order[i]);
    if (s == RK_OK) s = af_commit(&af);
    free(head);
    free(order);
    return s;
}

enum rk_status rk_safetensors_write(const char * path, const struct rk_named_buffer * b, int64_t n,
                                    const char * const * meta) {
    struct rk_st_writer * w = rk_st_writer_new();
    enum rk_status        s = rk_st_writer_add_all(w, b, n);
    for (int64_t i = 0; s == RK_OK && meta && meta[i] && meta[i + 1]; i += 2) rk_st_writer_set_meta(w, meta[i], meta[i + 1]);
    if (s == RK_OK) s = rk_st_writer_write(w, path);
    rk_st_writer_free(w);
    return s;
}

/* ------------------------------------------------------------------------------------------------
 * converting a file */

enum rk_status rk_safetensors_convert(const char * src, const char * dst, enum rk_dtype from, enum rk_dtype to,
                                      int64_t * n_converted) {
    if (n_converted) *n_converted = 0;
    if ((unsigned) from >= RK_DTYPE_COUNT || (unsigned) to >= RK_DTYPE_COUNT || !is_float(from) || !is_float(to)) {
        return rk_set_error(RK_STATUS_ARG, "%s: can convert only between f32, f16 and bf16", src);
    }
    struct rk_safetensors * st = NULL;
    RK_TRY(rk_safetensors_open(src, &st));
    struct rk_st_writer * w       = rk_st_writer_new();
    void **               aligned = rk_xcalloc((size_t) (st->n > 0 ? st->n : 1), sizeof(void *));
    int64_t               n_conv  = 0;
    enum rk_status        s       = RK_OK;
    for (int64_t i = 0; i < st->n && s == RK_OK; i++) {
        const struct rk_st_entry * e    = &st->entries[i];
        const bool                 conv = e->dtype == from && from != to;
        struct rk_named_buffer     b    = { .name = e->name, .dtype = e->dtype, .ndim = e->ndim,
                                            .data = (void *) e->data };
        for (int d = 0; d < e->ndim; d++) b.shape[d] = e->shape[d];
        /* the converter reads whole elements: give it an aligned copy when the file's offset is not a multiple of
           the element size (stored bytes are written as they are, aligned or not) */
        if (conv && e->nbytes > 0 && (uintptr_t) e->data % rk_dtype_traits[e->dtype].type_size != 0) {
            aligned[i] = rk_xmalloc(e->nbytes);
            memcpy(aligned[i], e->data, e->nbytes);
            b.data = aligned[i];
        }
        s = rk_st_writer_add(w, &b, conv ? to : e->dtype);
        n_conv += conv;
    }
    for (int64_t i = 0; i < st->n_meta; i++) rk_st_writer_set_meta(w, st->meta_keys[i], st->meta_values[i]);
    if (s == RK_OK) s = rk_st_writer_write(w, dst);
    rk_st_writer_free(w);
    for (int64_t i = 0; i < st->n; i++) free(aligned[i]);
    free(aligned);
    rk_safetensors_close(st);
    if (s == RK_OK && n_converted) *n_converted = n_conv;
    return s;
}
