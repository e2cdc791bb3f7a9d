/*
 * encode.h: texts -> sentence embeddings with a BERT encoder: tokenize (in parallel), sort by length so that
 * batches carry little padding, run the encoder batch by batch, pool, normalise, and put each embedding back at
 * its text's index. Progress (documents/s, ETA) on stderr.
 */
#ifndef RK_MODELS_ENCODE_H
#define RK_MODELS_ENCODE_H

#include "models/bert.h"
#include "tokenizer/wordpiece.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_encode_opts {
    int64_t           max_length;  /* tokens per text including [CLS]/[SEP]; 0 = model's max_seq_length or 512 */
    int64_t           batch;       /* texts per forward; 0 = 32 */
    enum rk_pool_mode pool;
    bool              normalize;   /* L2-normalise each embedding */
    bool              progress;    /* report progress on stderr */
};

struct rk_encode_stats {
    double  seconds;      /* wall time of tokenize + forward + pool */
    int64_t tokens;       /* real (unpadded) tokens processed */
    int64_t padded;       /* tokens including padding */
};

/*
 * Embeds n texts into out (n, C) host f32, C = the model's hidden size. stats may be NULL.
 * Returns a status; on failure out is unspecified.
 */
enum rk_status rk_encode_texts(struct rk_bert * m, const struct rk_wordpiece * tok, const char * const * texts,
                               int64_t n, const struct rk_encode_opts * opts, float * out);
enum rk_status rk_encode_texts_stats(struct rk_bert * m, const struct rk_wordpiece * tok, const char * const * texts,
                                     int64_t n, const struct rk_encode_opts * opts, float * out,
                                     struct rk_encode_stats * stats);

/*
 * An embedding cache file: "RKEM", u32 version 1, u64 key, i64 n, i64 C, then n x C f32. The key is a hash of
 * everything the embeddings depend on (rk_embeddings_key: the model folder's path, not its files' content, the
 * options and every text), so a stale file is not used: rk_embeddings_load returns
 * RK_STATUS_ARG ("does not match") when the key or shape differ, RK_STATUS_IO when absent, RK_STATUS_FORMAT when
 * truncated. rk_embeddings_save writes through a temporary file and a rename.
 */
uint64_t       rk_embeddings_key(const char * model_dir, const struct rk_encode_opts * opts, const char * const * texts,
                                 int64_t n);
enum rk_status rk_embeddings_load(const char * path, uint64_t key, int64_t n, int64_t C, float * out);
enum rk_status rk_embeddings_save(const char * path, uint64_t key, int64_t n, int64_t C, const float * emb);

/* Progress reporter shared by long loops: "label: done/total (rate unit/s, ETA mm:ss)" at most every 2 s. */
struct rk_progress {
    const char * label;
    const char * unit;
    int64_t      total;
    double       t0, last;
    bool         enabled;
};
void   rk_progress_start(struct rk_progress * p, const char * label, const char * unit, int64_t total, bool enabled);
void   rk_progress_update(struct rk_progress * p, int64_t done);
void   rk_progress_end(struct rk_progress * p, int64_t done);
double rk_now(void); /* monotonic seconds */

#ifdef __cplusplus
}
#endif
#endif
