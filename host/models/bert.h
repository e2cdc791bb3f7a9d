/*
 * bert.h: the BERT encoder (post-LN, absolute positions, erf GELU), as Hugging Face BertModel, built from ops
 * so that the same code runs on every backend (STYLE.md 1.7). Sentence-transformers pooling and normalisation on top.
 */
#ifndef RK_MODELS_BERT_H
#define RK_MODELS_BERT_H

#include "backend.h"
#include "io/config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_bert_layer {
    struct rk_tensor qkv_w;   /* (3C, C)  query, key, value weights stacked */
    struct rk_tensor qkv_b;   /* (3C)                                        */
    struct rk_tensor ao_w;    /* (C, C)   attention output projection       */
    struct rk_tensor ao_b;    /* (C)                                         */
    struct rk_tensor ln1_w;   /* (C)      attention output LayerNorm         */
    struct rk_tensor ln1_b;   /* (C)                                         */
    struct rk_tensor fc_w;    /* (I, C)   intermediate dense                 */
    struct rk_tensor fc_b;    /* (I)                                         */
    struct rk_tensor proj_w;  /* (C, I)   output dense                       */
    struct rk_tensor proj_b;  /* (C)                                         */
    struct rk_tensor ln2_w;   /* (C)      output LayerNorm                   */
    struct rk_tensor ln2_b;   /* (C)                                         */
};

struct rk_bert_params {
    struct rk_tensor       wte;      /* (V, C)   word embeddings             */
    struct rk_tensor       wpe;      /* (P, C)   position embeddings         */
    struct rk_tensor       wtt;      /* (NTT, C) token type embeddings       */
    struct rk_tensor       emb_ln_w; /* (C)                                  */
    struct rk_tensor       emb_ln_b; /* (C)                                  */
    struct rk_bert_layer * layers;   /* n_layer                              */
    void *                 memory;   /* the one allocation every tensor above points into (backend memory) */
    size_t                 nbytes;
};

/* Activations for up to B_max x T_max tokens (backend memory, act dtype). */
struct rk_bert_acts {
    int64_t            B_max, T_max;
    struct rk_tensor * x;       /* (B*T, C)   hidden states (the output after the last layer) */
    struct rk_tensor * qkv;     /* (B*T, 3C) */
    struct rk_tensor * att;     /* (B*T, C)  */
    struct rk_tensor * tmp;     /* (B*T, C)  */
    struct rk_tensor * fc;      /* (B*T, I)  */
    struct rk_tensor * ids;     /* (B*T) i32 */
    struct rk_tensor * types;   /* (B*T) i32 */
    struct rk_tensor * mask;    /* (B*T) i32 */
    struct rk_tensor * pooled;  /* (B, C)    */
};

struct rk_bert {
    struct rk_bert_config cfg;
    struct rk_st_pooling  pooling;   /* sentence-transformers head, if the directory has one */
    struct rk_bert_params params;
    struct rk_bert_acts   acts;
    struct rk_backend *   be;        /* not owned */
    int64_t               B, T;      /* shape of the last forward */
};

/*
 * Loads config.json, the safetensors weights (with or without a "bert." prefix; q/k/v fused at load) and the
 * sentence-transformers pooling files of model_dir onto backend be, converting weights once to be->act_dtype.
 * Errors name the file and the tensor. Free with rk_bert_free.
 */
enum rk_status rk_bert_load(const char * model_dir, struct rk_backend * be, struct rk_bert ** out);
void           rk_bert_free(struct rk_bert * m); /* NULL is fine */

/*
 * A model of configuration cfg with random weights (N(0, 0.02), LayerNorm 1/0, as BertModel's init) on be, for
 * benchmarks at shapes we have no checkpoint of (BERT-base, BERT-large). No pooling head. Free with rk_bert_free.
 */
enum rk_status rk_bert_init_random(const struct rk_bert_config * cfg, struct rk_backend * be, uint64_t seed,
                                   struct rk_bert ** out);

/* The configuration of a named shape: "base" (BERT-base), "large" (BERT-large), "minilm" (all-MiniLM-L6-v2).
 * RK_STATUS_ARG for another name. */
enum rk_status rk_bert_config_named(const char * name, struct rk_bert_config * cfg);

/*
 * Runs the encoder on B x T tokens (host arrays, row-major (B,T); type_ids may be NULL). Hidden states stay on the
 * backend in m->acts.x until the next call. T must not exceed max_position_embeddings.
 */
enum rk_status rk_bert_forward(struct rk_bert * m, const int32_t * ids, const int32_t * mask, const int32_t * type_ids,
                               int64_t B, int64_t T);

/* Copies the last forward's hidden states (B,T,C) to host f32. */
enum rk_status rk_bert_hidden_f32(struct rk_bert * m, float * out);

/* Pools the last forward's hidden states (mask-aware) and optionally L2-normalises; writes (B,C) host f32. */
enum rk_status rk_bert_pool_f32(struct rk_bert * m, enum rk_pool_mode mode, bool normalize, float * out);

#ifdef __cplusplus
}
#endif
#endif
