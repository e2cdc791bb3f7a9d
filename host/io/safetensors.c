/*
 * safetensors.c: the .safetensors loader (see safetensors.h for the format and the contracts).
 *
 * The header is copied out of the mapping and NUL-terminated before cJSON sees it, so a malformed header can
 * never make the parser read past the mapped file. Every offset is checked against the data size before an
 * entry's pointer is formed.
 */
#include "io/safetensors.h"

#include "check.h"
#include "io/config.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char * const rk_st_bert_prefixes[] = { "", "bert.", "model.", NULL };

/* ------------------------------------------------------------------------------------------------
 * dtypes */

struct st_dtype {
    const char *  name;      /* as spelled in the header */
    enum rk_dtype dtype;
    bool          supported; /* false: a valid safetensors dtype that rk has no type for */
};

static const struct st_dtype st_dtypes[] = {
    { "F32",      RK_DTYPE_F32,  true  },
    { "F16",      RK_DTYPE_F16,  true  },
    { "BF16",     RK_DTYPE_BF16, true  },
    { "I32",      RK_DTYPE_I32,  true  },
    { "I64",      RK_DTYPE_I64,  true  },
    { "U8",       RK_DTYPE_U8,   true  },
    { "BOOL",     RK_DTYPE_U8,   true  }, /* one byte per value, 0 or 1 */
    { "F64",      RK_DTYPE_F32,  false },
    { "I8",       RK_DTYPE_F32,  false },
    { "I16",      RK_DTYPE_F32,  false },
    { "U16",      RK_DTYPE_F32,  false },
    { "U32",      RK_DTYPE_F32,  false },
    { "U64",      RK_DTYPE_F32,  false },
    { "C64",      RK_DTYPE_F32,  false },
    { "F8_E4M3",  RK_DTYPE_F32,  false },
    { "F8_E5M2",  RK_DTYPE_F32,  false },
    { "F8_E8M0",  RK_DTYPE_F32,  false },
    { "F6_E2M3",  RK_DTYPE_F32,  false },
    { "F6_E3M2",  RK_DTYPE_F32,  false },
    { "F4",       RK_DTYPE_F32,  false },
};

static const struct st_dtype * st_dtype_lookup(const char * s) {
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++) {
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * helpers */

/* A JSON number that is a whole value in [0, 2^53] (beyond that a double no longer holds every integer). */
static bool json_uint(const cJSON * j, int64_t * v) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!isfinite(d) || d < 0.0 || d > 9007199254740992.0 || d != floor(d)) return false;
    *v = (int64_t) d;
    return true;
}

/* "[4, 4]" into buf; "[]" for a scalar. */
static const char * format_shape(char * buf, size_t n, const int64_t * shape, int ndim) {
    size_t k = 0;
    k += (size_t) snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++) {
        k += (size_t) snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long) shape[i]);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static int cmp_entry_ptr(const void * a, const void * b) {
    const struct rk_st_entry * ea = *(const struct rk_st_entry * const *) a;
    const struct rk_st_entry * eb = *(const struct rk_st_entry * const *) b;
    return strcmp(ea->name, eb->name);
}

/* ------------------------------------------------------------------------------------------------
 * header parsing */

/*
 * Fills one entry from its JSON description. data is the start of the data buffer, data_size its length.
 * Returns a status with the error set.
 */
static enum rk_status parse_entry(const char * path, const cJSON * item, const uint8_t * data, size_t data_size,
                                  struct rk_st_entry * e) {
    const char * name = item->string;
    if (strlen(name) >= RK_ST_NAME_MAX) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%.60s...': name longer than %d bytes", path, name,
                            RK_ST_NAME_MAX - 1);
    }
    memset(e, 0, sizeof(*e));
    strcpy(e->name, name);
    if (!cJSON_IsObject(item)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    }

    const cJSON * jdtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(jdtype)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': missing string field 'dtype'", path, name);
    }
    const struct st_dtype * dt = st_dtype_lookup(jdtype->valuestring);
    if (!dt) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", path, name,
                            jdtype->valuestring);
    }
    if (!dt->supported) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported by rk", path, name,
                            dt->name);
    }
    e->dtype = dt->dtype;

    const cJSON * jshape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(jshape)) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': missing list field 'shape'", path, name);
    }
    int ndim = cJSON_GetArraySize(jshape);
    if (ndim > RK_MAX_DIMS) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: tensor '%s': %d dimensions, rk supports at most %d", path,
                            name, ndim, RK_MAX_DIMS);
    }
    e->ndim = ndim;
    for (int i = 0; i < RK_MAX_DIMS; i++) e->shape[i] = 1;
    int64_t nelem = 1;
    bool    overflow = false;
    int     d = 0;
    for (const cJSON * jd = jshape->child; jd; jd = jd->next, d++) {
        if (!json_uint(jd, &e->shape[d])) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                                path, name, d);
        }
        overflow = overflow || __builtin_mul_overflow(nelem, e->shape[d], &nelem);
    }
    size_t elem_size = rk_dtype_traits[e->dtype].type_size;
    int64_t want = 0;
    overflow = overflow || __builtin_mul_overflow(nelem, (int64_t) elem_size, &want);

    const cJSON * joff = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    int64_t begin = 0, end = 0;
    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2 || !json_uint(joff->child, &begin) ||
        !json_uint(joff->child->next, &end)) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: tensor '%s': 'data_offsets' must be [begin, end] of non-negative integers", path,
                            name);
    }
    if (begin > end) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin",
                            path, name, (long long) begin, (long long) end);
    }
    if ((uint64_t) end > data_size) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the data (%zu bytes; "
                            "file truncated?)",
                            path, name, (long long) begin, (long long) end, data_size);
    }
    if (overflow || end - begin != want) {
        char shape_buf[128];
        format_shape(shape_buf, sizeof(shape_buf), e->shape, ndim);
        if (overflow) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s': shape %s of %s overflows 64 bits", path, name,
                                shape_buf, dt->name);
        }
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: tensor '%s': data_offsets [%lld, %lld] do not match shape %s of %s (%lld bytes)",
                            path, name, (long long) begin, (long long) end, shape_buf, dt->name, (long long) want);
    }
    e->data   = data + begin;
    e->nbytes = (size_t) (end - begin);
    return RK_OK;
}

/* Copies "__metadata__" string pairs; values of other types are skipped (the format allows only strings). */
static void parse_metadata(struct rk_safetensors * st, const cJSON * meta) {
    int64_t n = cJSON_GetArraySize(meta);
    st->meta_keys   = rk_xcalloc((size_t) n, sizeof(char *));
    st->meta_values = rk_xcalloc((size_t) n, sizeof(char *));
    for (const cJSON * m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m)) continue;
        st->meta_keys[st->n_meta]   = rk_xstrdup(m->string);
        st->meta_values[st->n_meta] = rk_xstrdup(m->valuestring);
        st->n_meta++;
    }
}

/* Parses and validates the header of a mapped file; fills entries, metadata and the sorted index. */
static enum rk_status parse_header(struct rk_safetensors * st) {
    const char *    path  = st->path;
    const uint8_t * bytes = st->map;
    uint64_t        hlen  = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | bytes[i]; /* little-endian whatever the host */

    if (hlen > (uint64_t) (st->size - 8)) {
        return rk_set_error(RK_STATUS_FORMAT,
                            "%s: byte 0: header length %llu runs past the end of the file (%zu bytes; truncated?)",
                            path, (unsigned long long) hlen, st->size);
    }
    if (hlen >= RK_ST_HEADER_MAX) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte 0: header length %llu exceeds the format's limit of %d",
                            path, (unsigned long long) hlen, RK_ST_HEADER_MAX);
    }

    char * text = rk_xmalloc((size_t) hlen + 1);
    memcpy(text, bytes + 8, (size_t) hlen);
    text[hlen] = '\0';
    const char * parse_end = NULL;
    cJSON *      root      = cJSON_ParseWithOpts(text, &parse_end, false);
    if (!root) {
        long long at = 8 + (parse_end ? (long long) (parse_end - text) : 0);
        free(text);
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: header is not valid JSON", path, at);
    }
    /* the writer may pad the header with spaces to align the data; anything else after the JSON is corrupt */
    for (const char * p = parse_end; p < text + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            long long at = 8 + (long long) (p - text);
            free(text);
            cJSON_Delete(root);
            return rk_set_error(RK_STATUS_FORMAT, "%s: byte %lld: unexpected data after the JSON header", path, at);
        }
    }
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte 8: header is not a JSON object", path);
    }

    const uint8_t * data      = bytes + 8 + hlen;
    size_t          data_size = st->size - 8 - (size_t) hlen;
    int64_t         n_items   = cJSON_GetArraySize(root);
    st->entries = rk_xcalloc((size_t) n_items, sizeof(struct rk_st_entry));
    enum rk_status s = RK_OK;
    for (const cJSON * item = root->child; item && s == RK_OK; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                s = rk_set_error(RK_STATUS_FORMAT, "%s: '__metadata__' is not a JSON object", path);
            } else if (!st->meta_keys) {
                parse_metadata(st, item);
            }
            continue;
        }
        s = parse_entry(path, item, data, data_size, &st->entries[st->n]);
        if (s == RK_OK) st->entries[st->n].file = st;
        if (s == RK_OK) st->n++;
    }
    cJSON_Delete(root);
    if (s != RK_OK) return s;

    st->sorted = rk_xcalloc((size_t) st->n, sizeof(st->sorted[0]));
    for (int64_t i = 0; i < st->n; i++) st->sorted[i] = &st->entries[i];
    qsort(st->sorted, (size_t) st->n, sizeof(st->sorted[0]), cmp_entry_ptr);
    for (int64_t i = 1; i < st->n; i++) {
        if (strcmp(st->sorted[i - 1]->name, st->sorted[i]->name) == 0) {
            return rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' appears twice in the header", path,
                                st->sorted[i]->name);
        }
    }
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------------
 * one file */

enum rk_status rk_safetensors_open(const char * path, struct rk_safetensors ** out) {
    *out = NULL;
    struct rk_safetensors * st = rk_xcalloc(1, sizeof(*st));
    st->path = rk_xstrdup(path);
    st->fd   = open(path, O_RDONLY | O_CLOEXEC);
    if (st->fd < 0) {
        int err = errno;
        rk_safetensors_close(st);
        return rk_set_error(RK_STATUS_IO, "%s: cannot open: %s", path, strerror(err));
    }
    struct stat sb;
    if (fstat(st->fd, &sb) != 0) {
        int err = errno;
        rk_safetensors_close(st);
        return rk_set_error(RK_STATUS_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        rk_safetensors_close(st);
        return rk_set_error(RK_STATUS_IO, "%s: cannot read: not a regular file", path);
    }
    st->size = (size_t) sb.st_size;
    if (st->size < 8) {
        rk_safetensors_close(st);
        return rk_set_error(RK_STATUS_FORMAT, "%s: byte 0: file is %zu bytes, too short for the 8-byte header length",
                            path, (size_t) sb.st_size);
    }
    void * map = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, st->fd, 0);
    if (map == MAP_FAILED) {
        int err = errno;
        rk_safetensors_close(st);
        return rk_set_error(RK_STATUS_IO, "%s: cannot map %zu bytes: %s", path, (size_t) sb.st_size,
                            strerror(err));
    }
    st->map = map;

    enum rk_status s = parse_header(st);
    if (s != RK_OK) {
        rk_safetensors_close(st);
        return s;
    }
    *out = st;
    return RK_OK;
}

const struct rk_st_entry * rk_safetensors_find(const struct rk_safetensors * st, const char * name) {
    int64_t lo = 0, hi = st->n; /* search [lo, hi) */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int     c   = strcmp(st->sorted[mid]->name, name);
        if (c == 0) return st->sorted[mid];
        if (c < 0) lo = mid + 1;
        else       hi = mid;
    }
    return NULL;
}

/* Looks up prefix + name; NULL when the joined name cannot be a tensor name (too long). */
static const struct rk_st_entry * find_prefixed(const struct rk_safetensors * st, const char * prefix,
                                                const char * name) {
    char full[RK_ST_NAME_MAX];
    int  k = snprintf(full, sizeof(full), "%s%s", prefix, name);
    if (k < 0 || k >= (int) sizeof(full)) return NULL;
    return rk_safetensors_find(st, full);
}

const struct rk_st_entry * rk_safetensors_find_any(const struct rk_safetensors * st, const char * name,
                                                   const char * const * prefixes) {
    if (!prefixes) prefixes = rk_st_bert_prefixes;
    for (const char * const * p = prefixes; *p; p++) {
        const struct rk_st_entry * e = find_prefixed(st, *p, name);
        if (e) return e;
    }
    return NULL;
}

const char * rk_safetensors_meta(const struct rk_safetensors * st, const char * key) {
    for (int64_t i = 0; i < st->n_meta; i++) {
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    }
    return NULL;
}

int64_t rk_st_entry_nelements(const struct rk_st_entry * e) {
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    return n;
}

enum rk_status rk_safetensors_read_f32(const struct rk_safetensors * st, const struct rk_st_entry * e, float * dst,
                                       int64_t n) {
    const char * path = st ? st->path : e->file ? e->file->path : "safetensors";
    const struct rk_dtype_traits * tr = &rk_dtype_traits[e->dtype];
    if (!tr->to_f32) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: tensor '%s': cannot read dtype %s as f32", path, e->name,
                            tr->name);
    }
    int64_t have = rk_st_entry_nelements(e);
    if (n != have) {
        char shape_buf[128];
        return rk_set_error(RK_STATUS_ARG, "%s: tensor '%s': caller expects %lld elements, shape %s has %lld", path,
                            e->name, (long long) n, format_shape(shape_buf, sizeof(shape_buf), e->shape, e->ndim),
                            (long long) have);
    }
    /* Offsets in the file need not be multiples of the element size; convert through an aligned buffer then. */
    if ((uintptr_t) e->data % tr->type_size == 0) {
        tr->to_f32(e->data, dst, n);
        return RK_OK;
    }
    RK_ASSERT(tr->type_size <= 4);
    enum { CHUNK = 1024 };
    uint64_t        tmp[CHUNK * 4 / sizeof(uint64_t)]; /* CHUNK elements of up to 4 bytes, 8-byte aligned */
    const uint8_t * src = e->data;
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        memcpy(tmp, src + (size_t) i * tr->type_size, (size_t) k * tr->type_size);
        tr->to_f32(tmp, dst + i, k);
    }
    return RK_OK;
}

void rk_safetensors_close(struct rk_safetensors * st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->size);
    if (st->fd >= 0) close(st->fd);
    for (int64_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->sorted);
    free(st->entries);
    free(st->path);
    free(st);
}

/* ------------------------------------------------------------------------------------------------
 * a model directory */

static char * path_join(const char * dir, const char * name) {
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char * p = rk_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Index of the shard called name in the set, opening it when new. */
static enum rk_status set_shard(struct rk_st_set * set, const char * index_path, const char * name,
                                char *** names, int64_t * idx) {
    for (int64_t i = 0; i < set->n_files; i++) {
        if (strcmp((*names)[i], name) == 0) {
            *idx = i;
            return RK_OK;
        }
    }
    /* shard names are plain file names next to the index */
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return rk_set_error(RK_STATUS_FORMAT, "%s: weight_map names shard '%s', which is not a plain file name",
                            index_path, name);
    }
    char *                  path = path_join(set->dir, name);
    struct rk_safetensors * st   = NULL;
    enum rk_status          s    = rk_safetensors_open(path, &st);
    free(path);
    if (s != RK_OK) return s;
    set->files = rk_xrealloc(set->files, (size_t) (set->n_files + 1) * sizeof(set->files[0]));
    *names     = rk_xrealloc(*names, (size_t) (set->n_files + 1) * sizeof(char *));
    set->files[set->n_files] = st;
    (*names)[set->n_files]   = rk_xstrdup(name);
    *idx = set->n_files++;
    return RK_OK;
}

/* Opens every shard of an index file and checks each mapped tensor is where the index says. */
static enum rk_status open_index(struct rk_st_set * set, const char * index_path) {
    cJSON * root = NULL;
    RK_TRY(rk_json_load_file(index_path, &root));
    const cJSON * map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return rk_set_error(RK_STATUS_FORMAT, "%s: missing object field 'weight_map'", index_path);
    }
    char **        names = NULL;
    enum rk_status s     = RK_OK;
    for (const cJSON * w = map->child; w && s == RK_OK; w = w->next) {
        if (!cJSON_IsString(w)) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: weight_map entry '%s' is not a file name string", index_path,
                             w->string);
            break;
        }
        int64_t idx = 0;
        s = set_shard(set, index_path, w->valuestring, &names, &idx);
        if (s == RK_OK && !rk_safetensors_find(set->files[idx], w->string)) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' is mapped to %s, which does not hold it", index_path,
                             w->string, w->valuestring);
        }
    }
    if (s == RK_OK && set->n_files == 0) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: weight_map is empty", index_path);
    }
    for (int64_t i = 0; i < set->n_files; i++) free(names[i]);
    free(names);
    cJSON_Delete(root);
    return s;
}

enum rk_status rk_safetensors_open_dir(const char * model_dir, struct rk_st_set ** out) {
    *out = NULL;
    struct rk_st_set * set = rk_xcalloc(1, sizeof(*set));
    set->dir = rk_xstrdup(model_dir);

    char *         single = path_join(model_dir, "model.safetensors");
    char *         index  = path_join(model_dir, "model.safetensors.index.json");
    enum rk_status s      = RK_OK;
    if (access(single, F_OK) == 0) {
        set->files = rk_xcalloc(1, sizeof(set->files[0]));
        s = rk_safetensors_open(single, &set->files[0]);
        if (s == RK_OK) set->n_files = 1;
    } else if (access(index, F_OK) == 0) {
        s = open_index(set, index);
    } else {
        s = rk_set_error(RK_STATUS_IO,
                         "%s: no model.safetensors or model.safetensors.index.json (fetch the model: make models)",
                         model_dir);
    }
    free(single);
    free(index);
    if (s != RK_OK) {
        rk_st_set_close(set);
        return s;
    }
    *out = set;
    return RK_OK;
}

const struct rk_st_entry * rk_st_set_find(const struct rk_st_set * set, const char * name) {
    for (int64_t i = 0; i < set->n_files; i++) {
        const struct rk_st_entry * e = rk_safetensors_find(set->files[i], name);
        if (e) return e;
    }
    return NULL;
}

const struct rk_st_entry * rk_st_set_find_any(const struct rk_st_set * set, const char * name,
                                              const char * const * prefixes) {
    if (!prefixes) prefixes = rk_st_bert_prefixes;
    for (const char * const * p = prefixes; *p; p++) {
        for (int64_t i = 0; i < set->n_files; i++) {
            const struct rk_st_entry * e = find_prefixed(set->files[i], *p, name);
            if (e) return e;
        }
    }
    return NULL;
}

void rk_st_set_close(struct rk_st_set * set) {
    if (!set) return;
    for (int64_t i = 0; i < set->n_files; i++) rk_safetensors_close(set->files[i]);
    free(set->files);
    free(set->dir);
    free(set);
}
