/*
 * safetensors.h: read-only loader for .safetensors checkpoints (Hugging Face format), memory-mapped.
 *
 * File layout: an 8-byte little-endian header length N, then N bytes of JSON, then the data buffer. The JSON
 * object maps each tensor name to {"dtype": "F32", "shape": [4, 4], "data_offsets": [begin, end]} with the
 * offsets relative to the start of the data buffer; an optional "__metadata__" object holds string pairs.
 *
 * rk_safetensors_open validates the whole header up front (lengths, JSON, dtypes, shapes, offsets against the
 * file size), so an entry's data pointer is always safe to read for nbytes. Errors name the file and the
 * position (a byte offset or a tensor name). Tensor data is never copied: entries point into the mapping,
 * which lives until rk_safetensors_close.
 *
 * A model directory holds either one model.safetensors or shards listed in model.safetensors.index.json;
 * rk_safetensors_open_dir opens either as a struct rk_st_set.
 */
#ifndef RK_IO_SAFETENSORS_H
#define RK_IO_SAFETENSORS_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest tensor name accepted (a longer one is a format error naming the tensor). */
#define RK_ST_NAME_MAX 160
/* The format's own limit on the JSON header (the reference implementation refuses larger ones). */
#define RK_ST_HEADER_MAX (100 * 1000 * 1000)

struct rk_safetensors;

struct rk_st_entry {
    char                          name[RK_ST_NAME_MAX];
    enum rk_dtype                 dtype;              /* BOOL is read as U8 */
    int                           ndim;               /* 0 for a scalar */
    int64_t                       shape[RK_MAX_DIMS]; /* outermost first; entries past ndim are 1 */
    const void *                  data;               /* into the read-only mapping; may be unaligned */
    size_t                        nbytes;
    const struct rk_safetensors * file;               /* the file that holds it */
};

struct rk_safetensors {
    char *                      path;
    int                         fd;
    void *                      map;         /* the whole file, read-only */
    size_t                      size;
    int64_t                     n;           /* tensors, in the order of the header */
    struct rk_st_entry *        entries;
    int64_t                     n_meta;      /* "__metadata__" string pairs, e.g. ("format", "pt") */
    char **                     meta_keys;
    char **                     meta_values;
    const struct rk_st_entry ** sorted;      /* entries ordered by name, for the binary search of find */
};

/* Prefixes rk_safetensors_find_any tries for BERT checkpoints: "", "bert.", "model.". NULL-terminated. */
extern const char * const rk_st_bert_prefixes[];

/*
 * Opens and maps path, validating the header. On success *out owns the mapping; free it with
 * rk_safetensors_close. On failure *out is NULL, the error is set and the status is RK_STATUS_IO (cannot open,
 * stat or map the file) or RK_STATUS_FORMAT (malformed content), or RK_STATUS_UNSUPPORTED (a dtype that
 * safetensors knows but rk has no type for, such as F64, or more than RK_MAX_DIMS dimensions).
 */
enum rk_status rk_safetensors_open(const char * path, struct rk_safetensors ** out);

/* The entry called name, or NULL if absent (binary search). Cannot fail. */
const struct rk_st_entry * rk_safetensors_find(const struct rk_safetensors * st, const char * name);

/*
 * Finds name under each prefix in turn ("bert." + name, ...), returning the first hit or NULL; prefixes is a
 * NULL-terminated list, NULL meaning rk_st_bert_prefixes. BERT checkpoints come with or without "bert.".
 * Cannot fail.
 */
const struct rk_st_entry * rk_safetensors_find_any(const struct rk_safetensors * st, const char * name,
                                                   const char * const * prefixes);

/* The "__metadata__" value for key, or NULL. Cannot fail. */
const char * rk_safetensors_meta(const struct rk_safetensors * st, const char * key);

/* Number of elements of an entry (1 for a scalar). Cannot fail. */
int64_t rk_st_entry_nelements(const struct rk_st_entry * e);

/*
 * Copies entry e (F32, F16, BF16 or I32) into dst, n floats in caller memory, converting to f32. n must equal
 * the element count: a mismatch is RK_STATUS_ARG naming the tensor; another dtype is RK_STATUS_UNSUPPORTED.
 * st may be NULL (the file is taken from e->file); it only names the file in messages.
 */
enum rk_status rk_safetensors_read_f32(const struct rk_safetensors * st, const struct rk_st_entry * e, float * dst,
                                       int64_t n);

/* Unmaps and frees. NULL is fine. */
void rk_safetensors_close(struct rk_safetensors * st);

/* ---- a model directory: one file or shards -------------------------------------------------------------- */

struct rk_st_set {
    char *                  dir;
    int64_t                 n_files;
    struct rk_safetensors ** files;
};

/*
 * Opens model_dir/model.safetensors when present, else every file named in the "weight_map" of
 * model_dir/model.safetensors.index.json (each shard once), checking that each mapped tensor is in the shard
 * that the index names. Neither file present: RK_STATUS_IO naming the directory. Other failures as
 * rk_safetensors_open, or RK_STATUS_FORMAT for a malformed index. Free *out with rk_st_set_close.
 */
enum rk_status rk_safetensors_open_dir(const char * model_dir, struct rk_st_set ** out);

/* Find across all shards; NULL if absent. prefixes as rk_safetensors_find_any. Cannot fail. */
const struct rk_st_entry * rk_st_set_find(const struct rk_st_set * set, const char * name);
const struct rk_st_entry * rk_st_set_find_any(const struct rk_st_set * set, const char * name,
                                              const char * const * prefixes);

/* Closes every shard. NULL is fine. */
void rk_st_set_close(struct rk_st_set * set);

#ifdef __cplusplus
}
#endif
#endif
