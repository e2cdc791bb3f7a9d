/*
 * optim.h: the optimizer side of training on host f32 memory (CPU backend): AdamW as torch.optim.AdamW, HF-style
 * parameter groups, global-norm gradient clipping as torch.nn.utils.clip_grad_norm_, a dynamic loss scaler as
 * torch.amp.GradScaler, gradient zeroing. Learning-rate schedules are in host/train/schedule.h.
 *
 * Design for a CUDA twin (STYLE.md 1.9): all per-element work is done by four element-wise kernels over flat
 * f32 buffers (rk_cpu_adamw_update, rk_cpu_sumsq, rk_cpu_scale, rk_cpu_unscale_check). Every scalar those kernels
 * need is computed once per step on the host, in double, exactly as torch computes it, and passed in a plain
 * struct; a launcher rk_cuda_adamw_update(..., stream) with the same arguments can follow without changing the
 * driver code. The CPU loops are OpenMP-parallel above 64 Ki elements (element-wise, so results do not depend on
 * the thread count).
 *
 * A training step with gradient accumulation (the contract, as HF Trainer):
 *
 *     rk_optim_zero_grad(opt.params, opt.n_params);
 *     for (int64_t k = 0; k < total_steps; k++) {
 *         for (int a = 0; a < accum; a++) {         // micro-batches
 *             forward; loss = loss / accum;           // HF divides the loss by gradient_accumulation_steps,
 *             backward, with grads ACCUMULATED (+=)   //   so the summed grads are those of the mean loss
 *         }
 *         // (fp16: rk_loss_scaler_unscale first; skip the step when it finds inf/nan)
 *         float norm;
 *         bool  finite = rk_optim_clip_grad_norm(opt.params, opt.n_params, 1.0, &norm);
 *         if (finite) rk_adamw_step(&opt, rk_schedule_lr(&sched, k));
 *         rk_optim_zero_grad(opt.params, opt.n_params);
 *     }
 *
 * The scheduler is stepped once per optimizer step: the lr of optimizer step k (0-based, counting steps taken
 * or skipped, as HF's LambdaLR does) is base_lr * lambda(k).
 */
#ifndef RK_TRAIN_OPTIM_H
#define RK_TRAIN_OPTIM_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------
 * parameters and groups */

/*
 * One trainable tensor, viewed as a flat buffer of n f32 values. The optimizer borrows every pointer: the
 * caller owns param, grad and compute, and keeps them alive while the optimizer is in use.
 */
struct rk_param {
    const char *  name;          /* e.g. "encoder.layer.0.attention.self.query.bias"; borrowed, may be NULL */
    float *       param;         /* (n) fp32 master weights, updated in place */
    float *       grad;          /* (n) gradient of the (mean) loss */
    int64_t       n;             /* number of elements */
    void *        compute;       /* (n) optional compute copy written after each step, or NULL */
    enum rk_dtype compute_dtype; /* RK_DTYPE_BF16 or RK_DTYPE_F16 when compute is set */
};

/* A parameter group (torch's param_groups entry): its tensors share one weight decay. */
struct rk_param_group {
    const struct rk_param * params;       /* n_params descriptors, copied by rk_adamw_init */
    int                     n_params;
    double                  weight_decay; /* 0.01 in the HF examples; 0 for biases and norms */
};

/*
 * The HF Trainer rule (transformers 5.x, Trainer.get_decay_parameter_names) on the parameter name: no weight
 * decay when the lower-cased name contains "bias", "layernorm" or "rmsnorm", has a path component exactly
 * "norm" ("model.norm.weight"), or a component ending in "_norm" ("layer_norm.weight", "q_norm.weight").
 * HF also exempts every parameter of an nn.LayerNorm module whatever its name ("ln_f.weight" in GPT-2): name
 * such tensors with "layernorm" or build the groups by hand. NULL decays. Cannot fail.
 */
bool rk_optim_name_decays(const char * name);

/* ------------------------------------------------------------------------------------------------
 * AdamW */

struct rk_adamw_config {
    double lr;           /* base learning rate, 5e-5 (HF default); rk_adamw_step takes the scheduled lr */
    double beta1;        /* 0.9 */
    double beta2;        /* 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0.0 (HF default), 0.01 in the examples; used by rk_adamw_init_hf only */
};

/* torch.optim.AdamW defaults with the given lr and weight decay. Cannot fail. */
struct rk_adamw_config rk_adamw_config_default(double lr, double weight_decay);

/* Per-step scalars of the AdamW update, computed on the host (see rk_adamw_scalars). */
struct rk_adamw_scalars {
    float decay_mul;      /* 1 - lr * weight_decay (decoupled decay, p *= decay_mul before the Adam step) */
    float one_minus_beta1;/* weight of lerp(m, g): m += (1 - beta1) (g - m) */
    float beta2;          /* v = v * beta2 + (1 - beta2) g g */
    float one_minus_beta2;
    float bc2_sqrt;       /* sqrt(1 - beta2^t) */
    float eps;
    float neg_step_size;  /* -lr / (1 - beta1^t) */
};

/*
 * The scalars of step t (1-based: the first step is t = 1) for lr and weight_decay: computed in double and
 * rounded to f32 exactly where torch's _single_tensor_adam rounds them (Python floats, cast to the f32 tensor's
 * type when they meet it). Cannot fail.
 */
struct rk_adamw_scalars rk_adamw_scalars(const struct rk_adamw_config * cfg, double lr, double weight_decay,
                                         int64_t t);

/*
 * The element-wise AdamW kernel, CPU reference. p, g, m, v are (n) f32, contiguous; p, m, v are updated in place.
 * Per element, in torch's order and rounding (CPU, foreach/fused off, amsgrad off):
 *     p = p * decay_mul
 *     m = fma(one_minus_beta1, g - m, m)                 (torch's vectorized lerp, weight < 0.5)
 *     v = v * beta2 + (one_minus_beta2 * g) * g          (mul_ then addcmul_, not fused)
 *     p = p + (neg_step_size * m) / (sqrt(v) / bc2_sqrt + eps)
 * Cannot fail.
 */
void rk_cpu_adamw_update(float * p, const float * g, float * m, float * v, int64_t n,
                         const struct rk_adamw_scalars * s);

/*
 * The optimizer: its own copy of the group descriptors (params[] grouped, group i covering
 * params[group_first[i] .. group_first[i] + group_count[i])), and the state m, v of every element in ONE
 * contiguous allocation (2 * n_elems floats: all of m, then all of v, each in params[] order).
 */
struct rk_adamw {
    struct rk_adamw_config cfg;
    int                    n_params;
    struct rk_param *      params;       /* owned array of borrowed descriptors */
    int                    n_groups;
    double *               group_wd;     /* (n_groups) weight decay */
    int *                  group_first;  /* (n_groups) */
    int *                  group_count;  /* (n_groups) */
    int64_t *              offset;       /* (n_params) element offset of each tensor in m and v */
    int64_t                n_elems;
    float *                state;        /* (2, n_elems): m then v, zero-initialised */
    float *                m;            /* = state */
    float *                v;            /* = state + n_elems */
    int64_t                step;         /* optimizer steps taken (torch's state["step"]) */
};

/*
 * Builds the optimizer over n_groups groups (group order = state layout order). Allocates the descriptors and
 * the zeroed state; free with rk_adamw_free. Returns RK_STATUS_ARG (error set, nothing allocated) for a NULL
 * param/grad pointer, n < 0, or a compute copy whose dtype is not BF16/F16; RK_STATUS_OOM when the state cannot
 * be allocated.
 */
enum rk_status rk_adamw_init(struct rk_adamw * opt, const struct rk_adamw_config * cfg,
                             const struct rk_param_group * groups, int n_groups);

/*
 * HF Trainer grouping: group 0 = the tensors for which rk_optim_name_decays() holds, with cfg->weight_decay;
 * group 1 = the rest, with weight decay 0. Tensors keep their relative order within a group. Errors as
 * rk_adamw_init.
 */
enum rk_status rk_adamw_init_hf(struct rk_adamw * opt, const struct rk_adamw_config * cfg,
                                const struct rk_param * params, int n_params);

/* Releases what rk_adamw_init allocated (never the borrowed buffers); zeroes *opt. NULL-safe. */
void rk_adamw_free(struct rk_adamw * opt);

/*
 * One AdamW step with learning rate lr (the scheduled lr of this step) over every tensor, then the compute copies
 * (round to nearest even). Increments opt->step first, as torch. Cannot fail.
 */
void rk_adamw_step(struct rk_adamw * opt, double lr);

/* ------------------------------------------------------------------------------------------------
 * gradients: zeroing, clipping, loss scaling */

/* grad = 0 for every tensor (start of each accumulation window). Cannot fail. */
void rk_optim_zero_grad(const struct rk_param * params, int n_params);

/* Sum of squares of x (n) f32, accumulated in double in index order. Cannot fail. */
double rk_cpu_sumsq(const float * x, int64_t n);

/* x *= s over (n) f32. Cannot fail. */
void rk_cpu_scale(float * x, int64_t n, float s);

/*
 * torch's _amp_foreach_non_finite_check_and_unscale_ on one buffer: x *= inv_scale (untouched when inv_scale is 1),
 * returning false when any INPUT value is inf/NaN. Cannot fail.
 */
bool rk_cpu_unscale_check(float * x, int64_t n, float inv_scale);

/*
 * torch.nn.utils.clip_grad_norm_(params, max_norm) with norm_type 2: each tensor's norm is rounded to f32 (torch's
 * per-tensor vector_norm; our sum of squares is taken in double, torch's in f32 lanes, so the last bit may differ),
 * the total is the f32 2-norm of those norms, and when clip_coef = max_norm / (total + 1e-6) (f32, as torch) is
 * below 1 every grad is multiplied by it. *total_norm gets the total. Returns true when the total is finite; when
 * it is inf/NaN the grads are left as they are and the caller should skip the optimizer step (torch would
 * multiply them by 0 or NaN). Tensors with grad == NULL are skipped. Cannot fail.
 */
bool rk_optim_clip_grad_norm(const struct rk_param * params, int n_params, double max_norm, float * total_norm);

/*
 * Dynamic loss scaling for fp16 (torch.amp.GradScaler defaults): multiply the loss by scale before backward;
 * before clipping call rk_loss_scaler_unscale; skip the optimizer step when it returns false; then always call
 * rk_loss_scaler_update with its result.
 */
struct rk_loss_scaler {
    float   scale;           /* 65536 (2^16) initially */
    double  growth_factor;   /* 2.0 */
    double  backoff_factor;  /* 0.5 */
    int64_t growth_interval; /* 2000 good steps before the scale grows */
    int64_t growth_tracker;  /* good steps since the last change */
};

/* GradScaler defaults (init_scale 2^16, growth 2.0, backoff 0.5, interval 2000). Cannot fail. */
struct rk_loss_scaler rk_loss_scaler_default(void);

/*
 * grads *= 1 / scale (the reciprocal taken in double then rounded to f32, as torch) over every tensor. Returns
 * true when every scaled gradient was finite (torch's found_inf == 0). Cannot fail.
 */
bool rk_loss_scaler_unscale(const struct rk_loss_scaler * ls, const struct rk_param * params, int n_params);

/*
 * torch's _amp_update_scale_: on found_inf the scale is multiplied by backoff_factor and the tracker reset; else
 * after growth_interval consecutive good steps it is multiplied by growth_factor (kept only if finite) and the
 * tracker reset. Cannot fail.
 */
void rk_loss_scaler_update(struct rk_loss_scaler * ls, bool found_inf);

#ifdef __cplusplus
}
#endif
#endif
