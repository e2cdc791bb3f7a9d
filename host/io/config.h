/*
 * config.h: JSON model configuration files: a checked JSON file reader, the Hugging Face BERT config.json, and
 * the sentence-transformers extras of a model directory (pooling mode, normalisation, max sequence length).
 *
 * Every failure names the file; JSON syntax errors also give line:column.
 */
#ifndef RK_IO_CONFIG_H
#define RK_IO_CONFIG_H

#include "backend.h"
#include "rk.h"

#include <cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads the whole file at path and parses it. On success *out is the document, freed by the caller with
 * cJSON_Delete. On failure *out is NULL and the status is RK_STATUS_IO ("<path>: cannot open: <reason>") or
 * RK_STATUS_FORMAT ("<path>:<line>:<col>: malformed JSON"; trailing data after the value is malformed too).
 */
enum rk_status rk_json_load_file(const char * path, cJSON ** out);

struct rk_bert_config {
    int64_t vocab_size;        /* 30522 */
    int64_t hidden_size;       /* 384 (C) */
    int64_t n_layer;           /* num_hidden_layers, 6 (L) */
    int64_t n_head;            /* num_attention_heads, 12 (NH) */
    int64_t intermediate_size; /* 1536 */
    int64_t max_position;      /* max_position_embeddings, 512 */
    int64_t type_vocab_size;   /* 2; optional, default 2 */
    float   layer_norm_eps;    /* 1e-12; optional, default 1e-12 */
    char    hidden_act[32];    /* "gelu" (erf form); optional, default "gelu" */
    char    model_type[32];    /* "bert" */
    int64_t pad_token_id;      /* 0; optional (absent or null gives 0) */
};

/*
 * Loads a Hugging Face BERT config.json into *cfg (caller memory; untouched on failure).
 * Required: vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
 * max_position_embeddings, model_type. Errors: RK_STATUS_IO (cannot read), RK_STATUS_FORMAT (malformed JSON,
 * a required field missing, a field of the wrong type, sizes not positive, hidden_size not a multiple of
 * num_attention_heads), RK_STATUS_UNSUPPORTED (model_type other than "bert", hidden_act other than "gelu",
 * position_embedding_type other than "absolute"). Messages start with the path.
 */
enum rk_status rk_bert_config_load(const char * path, struct rk_bert_config * cfg);

/* The sentence-transformers head of a model directory. */
struct rk_st_pooling {
    bool              present;        /* a Pooling module config was found */
    enum rk_pool_mode mode;           /* RK_POOL_MEAN for all-MiniLM-L6-v2; RK_POOL_CLS when !present */
    bool              normalize;      /* a Normalize module is listed in modules.json */
    int64_t           max_seq_length; /* from sentence_bert_config.json, 256; 0 if absent */
};

/*
 * Reads the sentence-transformers files of model_dir into *out (caller memory):
 *   modules.json                the module list: Transformer, Pooling (its "path" locates its config) and
 *                               Normalize are understood; any other module (Dense, ...) is RK_STATUS_UNSUPPORTED
 *                               because ignoring it would give wrong embeddings
 *   <pooling path>/config.json  pooling_mode_* flags; 1_Pooling when modules.json is absent
 *   sentence_bert_config.json   max_seq_length
 * Absent files give defaults (present = false, normalize = false, max_seq_length = 0): a plain Hugging Face
 * directory is not an error. Malformed JSON or wrong field types are RK_STATUS_FORMAT naming the file; a pooling
 * mode rk has no op for (mean_sqrt_len, weightedmean, several modes at once) is RK_STATUS_UNSUPPORTED.
 */
enum rk_status rk_st_pooling_load(const char * model_dir, struct rk_st_pooling * out);

#ifdef __cplusplus
}
#endif
#endif
