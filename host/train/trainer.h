/*
 * trainer.h: one optimizer step of the BERT classifier, as HF Trainer takes it: forward + backward over the
 * micro-batches of an accumulation window (each loss divided by their count), global-norm clipping, AdamW at the
 * scheduled learning rate, gradients zeroed. CPU backend today: the optimizer works on the host copies of the
 * weights and gradients (f32), which on the CPU backend are the model's own buffers.
 */
#ifndef RK_TRAIN_TRAINER_H
#define RK_TRAIN_TRAINER_H

#include "models/bert_cls.h"
#include "train/optim.h"
#include "train/checkpoint.h"
#include "train/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_trainer {
    struct rk_bert_cls *    model;        /* not owned */
    struct rk_named_param * named;        /* (n_params) HF names, views of weights and gradients */
    struct rk_param *       params;       /* (n_params) the optimizer's descriptors */
    int                     n_params;
    struct rk_adamw         opt;
    struct rk_schedule      sched;
    double                  max_grad_norm; /* 1.0 (HF); <= 0: no clipping */
    int64_t                 step;          /* optimizer steps taken */
};

/* A micro-batch: host arrays, row-major. types may be NULL. labels (B, L) f32 0/1. */
struct rk_batch {
    const int32_t * ids;
    const int32_t * mask;
    const int32_t * types;
    const float *   labels;
    int64_t         B, T;
};

/*
 * Sets up the optimizer over every parameter of m (HF no-decay groups) and the schedule. The model must live on
 * the CPU backend (RK_STATUS_UNSUPPORTED otherwise: the CUDA backend has no backward ops yet). Free with
 * rk_trainer_free.
 */
enum rk_status rk_trainer_init(struct rk_trainer * t, struct rk_bert_cls * m, const struct rk_adamw_config * cfg,
                               const struct rk_schedule * sched, double max_grad_norm);
void           rk_trainer_free(struct rk_trainer * t);

/*
 * One optimizer step over n micro-batches. *loss gets the mean of the micro-batch losses, *grad_norm the norm
 * before clipping, *lr the learning rate used. A non-finite gradient norm skips the update (RK_OK, *skipped true).
 */
enum rk_status rk_trainer_step(struct rk_trainer * t, const struct rk_batch * micro, int n, float * loss,
                               float * grad_norm, double * lr, bool * skipped);

/*
 * Saves the weights (HF names, f32: a folder transformers can read once config.json is beside it), the AdamW
 * state (<name>.exp_avg / .exp_avg_sq) and the trainer state (+ config) as a checkpoint folder (train/checkpoint.h:
 * written whole or not at all).
 */
enum rk_status rk_trainer_save(const struct rk_trainer * t, const char * dir, const struct rk_trainer_state * ts,
                               const cJSON * config);
/* Loads a checkpoint saved by rk_trainer_save into t (weights, AdamW moments and step count) and *ts. */
enum rk_status rk_trainer_load(struct rk_trainer * t, const char * dir, struct rk_trainer_state * ts);

#ifdef __cplusplus
}
#endif
#endif
