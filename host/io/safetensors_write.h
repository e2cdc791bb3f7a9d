/*
 * safetensors_write.h: a general .safetensors writer (the reader is io/safetensors.h), and the crash-safe file
 * write it is built on.
 *
 * Files are laid out as the reference implementation (Python `safetensors` >= 0.4, checked against 0.8.0) lays
 * them out, so the same tensors give the same bytes:
 *   - an 8-byte little-endian header length N, then N bytes of compact JSON padded with spaces to a multiple of 8;
 *   - "__metadata__" first (when any), its keys sorted bytewise;
 *   - then the tensors, each {"dtype", "shape", "data_offsets"} with no gaps between their data, in the order
 *     dtype width first (I64, F32, I32, BF16, F16, U8), then name (bytewise). Widest first keeps every tensor's
 *     data aligned to its element size, since the header is padded to 8.
 *
 * Writes go to "<path>.tmp.<pid>", which is written, fsync'd and renamed over path (then the folder is fsync'd), so
 * path holds either its old content or the complete new file. On failure the temporary file is removed and the
 * error names path (RK_STATUS_IO).
 */
#ifndef RK_IO_SAFETENSORS_WRITE_H
#define RK_IO_SAFETENSORS_WRITE_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A named, contiguous host tensor: what the writer takes and what checkpoint loads fill. The memory is the
 * caller's. shape lists ndim sizes (0..RK_MAX_DIMS, outermost first); entries past ndim are ignored. ndim 0 is a
 * scalar (one element).
 */
struct rk_named_buffer {
    const char *  name;
    enum rk_dtype dtype;                /* F32, F16, BF16, I32, I64 or U8 */
    int           ndim;
    int64_t       shape[RK_MAX_DIMS];
    void *        data;                 /* may be NULL only when the tensor has 0 elements */
};

/* Elements of b (1 for ndim 0). Cannot fail (asserts ndim in 0..4). */
int64_t rk_named_buffer_nelements(const struct rk_named_buffer * b);

/* ---- the writer ----------------------------------------------------------------------------------------- */

struct rk_st_writer;

/* An empty writer. Cannot fail (aborts on out of memory). Free with rk_st_writer_free. */
struct rk_st_writer * rk_st_writer_new(void);

/* Frees the writer (not the tensor data it points to). NULL is fine. */
void rk_st_writer_free(struct rk_st_writer * w);

/*
 * Adds tensor b, to be stored as store_dtype. The name is copied; the data is NOT: it must stay valid and unchanged
 * until rk_st_writer_write returns. store_dtype equal to b->dtype stores the bytes as they are; a different store
 * dtype is allowed between F32, F16 and BF16 only, converting on write (round to nearest even), e.g. f32 master
 * weights written as a bf16 model file.
 * RK_STATUS_ARG (naming the tensor) for an empty name, a name of RK_ST_NAME_MAX bytes or more, "__metadata__",
 * ndim outside 0..4, a negative size, NULL data with elements, an unsupported dtype (NF4) or conversion.
 * Duplicate names are reported by rk_st_writer_write.
 */
enum rk_status rk_st_writer_add(struct rk_st_writer * w, const struct rk_named_buffer * b, enum rk_dtype store_dtype);

/* Adds n buffers, each stored in its own dtype. Stops at the first failure. */
enum rk_status rk_st_writer_add_all(struct rk_st_writer * w, const struct rk_named_buffer * b, int64_t n);

/*
 * Sets a "__metadata__" string pair (both copied); setting a key again replaces its value. Checkpoints written
 * for PyTorch use ("format", "pt"). Cannot fail (aborts on out of memory).
 */
void rk_st_writer_set_meta(struct rk_st_writer * w, const char * key, const char * value);

/*
 * Writes every tensor added so far to path, atomically (see the file comment). The writer can be written again
 * (the same input gives the same bytes). RK_STATUS_ARG for two tensors with the same name; RK_STATUS_IO naming
 * path when the file cannot be written, with no temporary file left behind.
 */
enum rk_status rk_st_writer_write(const struct rk_st_writer * w, const char * path);

/*
 * One call: writes n buffers (each in its own dtype) to path. meta is NULL or a NULL-terminated list of key,
 * value pairs: { "format", "pt", NULL }. Failures as rk_st_writer_add and rk_st_writer_write.
 */
enum rk_status rk_safetensors_write(const char * path, const struct rk_named_buffer * b, int64_t n,
                                    const char * const * meta);

/*
 * Rewrites the safetensors file src as dst with every tensor of dtype `from` stored as `to` (both among F32, F16 and
 * BF16), converted through rk_dtype_traits (round to nearest even): the same conversion rk_tensor_set_f32 applies
 * when f32 weights are loaded into a 16-bit tensor, so a bf16 file made from an f32 one holds exactly the weights a
 * bf16 backend computes with after loading the f32 file. Every other tensor keeps its bytes and the "__metadata__"
 * pairs are copied; the tensors are laid out as rk_st_writer_write lays them out (a BOOL tensor is written as U8,
 * the reader's view of it). dst is written atomically (see the file comment) and may equal src. *n_converted (may
 * be NULL) is set to the number of tensors converted. Errors: as rk_safetensors_open for src (naming src),
 * RK_STATUS_ARG for a from/to pair outside F32/F16/BF16, as rk_st_writer_write for dst (naming dst).
 */
enum rk_status rk_safetensors_convert(const char * src, const char * dst, enum rk_dtype from, enum rk_dtype to,
                                      int64_t * n_converted);

/* ---- crash-safe files ----------------------------------------------------------------------------------- */

/*
 * Writes the concatenation of n buffers (lens[i] bytes from bufs[i]) to path through "<path>.tmp.<pid>": write,
 * fsync, rename over path, fsync the folder. path is left either untouched or complete. RK_STATUS_IO
 * "<path>: cannot write: <reason>" on failure, with the temporary file removed.
 */
enum rk_status rk_write_buffers_atomic(const char * path, int n, const void * const * bufs, const size_t * lens);

/* fsyncs a folder so that renames and creations inside it are durable. RK_STATUS_IO naming dir on failure. */
enum rk_status rk_fsync_dir(const char * dir);

#ifdef __cplusplus
}
#endif
#endif
