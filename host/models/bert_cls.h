/*
 * bert_cls.h: BERT for multi-label sequence classification, trainable: Hugging Face BertForSequenceClassification
 * with problem_type "multi_label_classification", built from ops so that the same code runs on every backend
 * (STYLE.md 1.7):
 *
 *   h      = BERT encoder (host/models/bert.h), post-LN, hidden dropout after the embedding LayerNorm and after
 *            both sub-layer output projections
 *   pooled = tanh(h[:, 0] Wp^T + bp)                 bert.pooler.dense
 *   logits = dropout(pooled) Wc^T + bc               classifier, (B, L)
 *   loss   = BCEWithLogits(logits, labels), mean over B*L
 *
 * The training forward keeps what the backward needs, per layer: the layer input, the fused qkv, the attention
 * output and its logsumexp, the operands of both LayerNorms (LayerNorm never runs in place here) and the GELU
 * pre-activation; the GELU output is recomputed in the backward. That is B*T*(7C + I) + B*NH*T values per
 * layer. The backward is a sequence of backward ops and produces the gradient of every parameter.
 *
 * Backends: every op here runs on the CPU and CUDA backends; weights, activations and gradients use the backend's
 * act_dtype (f32 on the CPU, bf16/f16 on CUDA, where the optimizer keeps fp32 master weights: train/trainer.h).
 * Gradient checkpointing (grad_checkpointing) trades one more forward per step for the per-layer intermediates.
 * Golden test: tests/test_train_model.c against tests/golden/gen_bert_cls.py.
 */
#ifndef RK_MODELS_BERT_CLS_H
#define RK_MODELS_BERT_CLS_H

#include "models/bert.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One named parameter for the optimizer and checkpoints: views (owns_data false) into the model's memory. */
struct rk_named_param {
    char             name[96];  /* exactly as HF's state dict: "bert.encoder.layer.0.attention.self.query.weight" */
    struct rk_tensor param;     /* the weights (query/key/value: a row block of the fused qkv tensor) */
    struct rk_tensor grad;      /* the same shape and offset in the gradient block */
};

/* The classification head. */
struct rk_bert_cls_head {
    struct rk_tensor pool_w;  /* (C, C) bert.pooler.dense.weight */
    struct rk_tensor pool_b;  /* (C)    bert.pooler.dense.bias   */
    struct rk_tensor cls_w;   /* (L, C) classifier.weight        */
    struct rk_tensor cls_b;   /* (L)    classifier.bias          */
    void *           memory;  /* the one allocation the four tensors point into (backend memory) */
    size_t           nbytes;
};

/* Training activations for up to N_max = B*T tokens and B_max sequences (backend memory). */
struct rk_bert_cls_acts {
    int64_t            N_max, B_max;
    int64_t            n_kept;   /* layers whose intermediates (qkv ... pr) are kept: n_layer, or 1 (checkpointing) */
    struct rk_tensor * emb;      /* (N, C)          embedding sum, the input of the embedding LayerNorm */
    struct rk_tensor * xs;       /* (n_layer+1, N, C) layer inputs; block n_layer is the encoder output */
    struct rk_tensor * qkv;      /* (n_layer, N, 3C) */
    struct rk_tensor * att;      /* (n_layer, N, C)  attention output, before the output projection */
    struct rk_tensor * lse;      /* (n_layer, B, NH, T) f32 attention logsumexp */
    struct rk_tensor * ao;       /* (n_layer, N, C)  dropout(attention output projection), LayerNorm 1 operand */
    struct rk_tensor * h1;       /* (n_layer, N, C)  LayerNorm 1 output, the FFN input and LayerNorm 2 residual */
    struct rk_tensor * fcp;      /* (n_layer, N, I)  FFN pre-activation */
    struct rk_tensor * pr;       /* (n_layer, N, C)  dropout(FFN output), LayerNorm 2 operand */
    struct rk_tensor * fca;      /* (N, I)  scratch: GELU output (recomputed in the backward) */
    struct rk_tensor * ids;      /* (N) i32 */
    struct rk_tensor * types;    /* (N) i32 */
    struct rk_tensor * mask;     /* (N) i32 */
    struct rk_tensor * cls;      /* (B, C) hidden state of token 0 */
    struct rk_tensor * pre;      /* (B, C) pooler pre-activation */
    struct rk_tensor * pooled;   /* (B, C) tanh(pre) */
    struct rk_tensor * pooled_d; /* (B, C) dropout(pooled), the classifier input */
    struct rk_tensor * logits;   /* (B, L)  (all activations: the backend's act_dtype) */
    struct rk_tensor * labels;   /* (B, L)  0/1 (soft labels are rounded to the act dtype) */
    struct rk_tensor * dlogits;  /* (B, L) d loss / d logits, from the forward (times loss_scale) */
    struct rk_tensor * loss;     /* (1) f32 */
    /* gradient scratch */
    struct rk_tensor * dres;     /* (N, C)  gradient of the residual stream */
    struct rk_tensor * dtmp;     /* (N, C) */
    struct rk_tensor * datt;     /* (N, C) */
    struct rk_tensor * dfc;      /* (N, I) */
    struct rk_tensor * dqkv;     /* (N, 3C) */
    struct rk_tensor * dcls;     /* (B, C) */
    struct rk_tensor * dpool;    /* (B, C) */
};

struct rk_bert_cls {
    struct rk_bert *        bert;          /* encoder: config, weights, inference activations (owned) */
    struct rk_bert_cls_head head;
    int64_t                 n_labels;      /* L */
    /* dropout probabilities, from config.json; the caller may change them between steps */
    float                   hidden_dropout;      /* hidden_dropout_prob, 0.1 */
    float                   classifier_dropout;  /* classifier_dropout, or hidden_dropout_prob when null */
    float                   attn_dropout;        /* attention_probs_dropout_prob: NOT implemented, see forward */
    bool                    ignore_attn_dropout; /* train with attn_dropout > 0 treated as 0 (else an error) */
    uint64_t                seed;          /* dropout seed */
    float                   loss_scale;    /* fp16 dynamic loss scaling: dlogits (so every gradient) is multiplied
                                              by it; 0 or 1: none. The trainer sets and undoes it. */
    bool                    grad_checkpointing; /* keep only the layer inputs; recompute each layer in the
                                                   backward (about one more forward per step, activations
                                                   B*T*C*(n_layer+1) + one layer's instead of every layer's) */
    uint64_t                step;          /* train forwards so far: dropout offsets advance with it */
    /* gradients: one allocation mirroring the weights (see rk_bert_cls_load) */
    void *                  grad_memory;
    struct rk_bert_params   grads;         /* same tensors as bert->params, pointing into grad_memory */
    struct rk_bert_cls_head head_grads;    /* memory/nbytes unused (inside grad_memory) */
    struct rk_bert_cls_acts acts;
    int64_t                 B, T;          /* shape of the last forward */
    bool                    have_types;    /* the last forward had token type ids */
    uint64_t                fwd_step;      /* the step of the last train forward (its dropout masks) */
    bool                    have_train;    /* the last forward was a train forward with labels */
    struct rk_backend *     be;            /* not owned */
};

/*
 * Loads a BERT checkpoint directory onto be for classification into n_labels labels. The encoder loads as
 * rk_bert_load; bert.pooler.dense.* and classifier.* are read when present (names with or without "bert."),
 * else initialised as HF's _init_weights (N(0, 0.02) weights from `seed`, zero biases). n_labels <= 0 takes the
 * row count of the checkpoint's classifier (RK_STATUS_ARG when it has none); a checkpoint classifier with another
 * label count is RK_STATUS_FORMAT. Dropout probabilities come from config.json; `seed` also seeds dropout.
 * Gradients are allocated and zeroed: one block of bert->params.nbytes + head.nbytes bytes, the encoder's
 * gradients at the same byte offsets as its weights (the alignment gaps stay zero), the head's after them at
 * its own offsets. Gradients have the weights' dtype. Free with rk_bert_cls_free.
 */
enum rk_status rk_bert_cls_load(const char * model_dir, int64_t n_labels, uint64_t seed, struct rk_backend * be,
                                struct rk_bert_cls ** out);
void           rk_bert_cls_free(struct rk_bert_cls * m); /* NULL is fine */

/*
 * A classifier of configuration cfg with random weights (the encoder as rk_bert_init_random, the head as HF's
 * init) and HF's default dropout (0.1 everywhere), for benchmarks at shapes we have no checkpoint of.
 */
enum rk_status rk_bert_cls_init_random(const struct rk_bert_config * cfg, int64_t n_labels, uint64_t seed,
                                       struct rk_backend * be, struct rk_bert_cls ** out);

/*
 * Forward on B x T tokens (host arrays, row-major (B,T); type_ids may be NULL). labels (B,L) host f32 (0/1, soft
 * allowed) or NULL; with labels, *loss_out (if not NULL) gets the mean BCE-with-logits loss. logits_out (B,L) host
 * f32 or NULL.
 *   train = true:  dropout on (hidden_dropout, classifier_dropout; offsets from seed and step, step is then
 *                  incremented), activations kept for rk_bert_cls_backward (which then needs labels).
 *                  attn_dropout > 0 is RK_STATUS_UNSUPPORTED unless ignore_attn_dropout (then treated as 0):
 *                  the fused attention op has no dropout on the probabilities.
 *   train = false: the inference path (rk_bert_forward, LayerNorm in place), no dropout; no backward after it.
 *                  (The training activation buffers are still sized for B x T on first use.)
 * Errors: RK_STATUS_ARG (bad ids/shape), RK_STATUS_OOM (activations), op failures.
 */
enum rk_status rk_bert_cls_forward(struct rk_bert_cls * m, const int32_t * ids, const int32_t * mask,
                                   const int32_t * type_ids, int64_t B, int64_t T, const float * labels,
                                   float * loss_out, float * logits_out, bool train);

/*
 * Backward of the last train forward (with labels): ADDS d loss / d param into the gradient block (gradient
 * accumulation over micro-batches: call rk_bert_cls_zero_grad before each optimizer step's first micro-batch;
 * the loss is the micro-batch mean, so scale as needed). RK_STATUS_ARG when the last forward was not a train
 * forward with labels.
 */
enum rk_status rk_bert_cls_backward(struct rk_bert_cls * m);

/* Sets every gradient to zero. */
enum rk_status rk_bert_cls_zero_grad(struct rk_bert_cls * m);

/*
 * The parameters in HF state-dict order (embeddings, layers with query/key/value as three slices of the fused
 * tensors, pooler, classifier). *out is a malloc'd array the caller frees; its views stay valid while m lives.
 * Returns the count. Cannot fail.
 */
int64_t rk_bert_cls_params(struct rk_bert_cls * m, struct rk_named_param ** out);

#ifdef __cplusplus
}
#endif
#endif
