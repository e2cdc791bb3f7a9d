/*
 * trainer.h: one optimizer step of the BERT classifier, as HF Trainer takes it: forward + backward over the
 * micro-batches of an accumulation window (each loss divided by their count), global-norm clipping, AdamW at the
 * scheduled learning rate, gradients zeroed.
 *
 * Two optimizer paths, the same arithmetic:
 *   - host (the CPU backend, f32 model): AdamW over the model's own f32 buffers (train/optim.h);
 *   - device (a CUDA model in bf16 or f16): fp32 master weights and AdamW moments live on the device; the model's
 *     16-bit weights are the compute copies, rewritten by the fused AdamW kernel after each update (rounded to
 *     nearest even), and gradients stay in the model's dtype. The per-tensor sums of squares are reduced on the
 *     device and combined on the host (torch's clip_grad_norm_ rule); 1/accumulation, the clip coefficient and
 *     the loss-scale unscaling are folded into one gradient multiplier of the AdamW kernel. With f16 weights a
 *     dynamic loss scaler (torch GradScaler rules) scales dlogits; a step whose gradient norm is not finite is
 *     skipped and the scale backed off.
 * Checkpoints hold f32 weights (the master copy on the device path) under HF names, so both paths save and
 * resume the same files.
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

struct rk_trainer_dev;

struct rk_trainer {
    struct rk_bert_cls *    model;        /* not owned */
    struct rk_named_param * named;        /* (n_params) HF names, views of weights and gradients */
    struct rk_param *       params;       /* (n_params) the optimizer's descriptors */
    int                     n_params;
    struct rk_adamw         opt;
    struct rk_schedule      sched;
    double                  max_grad_norm; /* 1.0 (HF); <= 0: no clipping */
    int64_t                 step;          /* optimizer steps taken */
    struct rk_trainer_dev * dev;           /* the device path's state (trainer.c), NULL on the host path */
    struct rk_loss_scaler   scaler;        /* used when the model's weights are f16 (device path) */
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
 * Sets up the optimizer over every parameter of m (HF no-decay groups) and the schedule: the host path for an f32
 * model on the CPU backend, the device path for a 16-bit model on CUDA (RK_STATUS_UNSUPPORTED for other
 * combinations, or a build without CUDA; RK_STATUS_OOM when the device state does not fit). Free with
 * rk_trainer_free.
 */
enum rk_status rk_trainer_init(struct rk_trainer * t, struct rk_bert_cls * m, const struct rk_adamw_config * cfg,
                               const struct rk_schedule * sched, double max_grad_norm);
void           rk_trainer_free(struct rk_trainer * t);

/*
 * Device path: sets the fp32 master weights to the f32 values of the checkpoint in model_dir (each named parameter
 * found there with its shape, HF names with or without "bert."), instead of the model's 16-bit copies they start
 * from, so that mixed precision starts from the same weights as an f32 run; the compute copies are unchanged (they
 * are those values rounded). Parameters absent from the checkpoint (a new head), or whose 16-bit weights are no longer
 * the rounding of the checkpoint's (set by the caller after loading, e.g. a bias prior), keep their values. Host path: nothing
 * to do (the f32 weights are the checkpoint's). Errors: the checkpoint cannot be opened or read (naming it).
 */
enum rk_status rk_trainer_master_from_checkpoint(struct rk_trainer * t, const char * model_dir);

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
/*
 * Writes the weights as one safetensors file (f32 under HF names, metadata {"format": "pt"}; the master copy on
 * the device path), atomically. RK_STATUS_IO naming the path on failure.
 */
enum rk_status rk_trainer_export(const struct rk_trainer * t, const char * path);

/* Loads a checkpoint saved by rk_trainer_save into t (weights, AdamW moments and step count) and *ts. */
enum rk_status rk_trainer_load(struct rk_trainer * t, const char * dir, struct rk_trainer_state * ts);

#ifdef __cplusplus
}
#endif
#endif
