/*
 * schedule.h: learning-rate schedules as HF transformers get_scheduler (optimization.py): the lr of optimizer step
 * k (0-based) is base_lr * lambda(k), with lambda exactly HF's lr_lambda functions (double precision, as Python),
 * and the warmup length as TrainingArguments.get_warmup_steps. The scheduler is stepped once after each optimizer
 * step (HF Trainer), so step k's lr is lambda(k), starting with lambda(0) (0 whenever there is a warmup).
 */
#ifndef RK_TRAIN_SCHEDULE_H
#define RK_TRAIN_SCHEDULE_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

enum rk_sched_kind {
    RK_SCHED_CONSTANT = 0,          /* "constant": 1 */
    RK_SCHED_CONSTANT_WITH_WARMUP,  /* "constant_with_warmup": k / max(1, W) during warmup, then 1 */
    RK_SCHED_LINEAR,                /* "linear" (HF default): k / max(1, W), then max(0, (N - k) / max(1, N - W)) */
    RK_SCHED_COSINE,                /* "cosine": warmup, then max(0, 0.5 (1 + cos(pi * cycles * 2 * progress))) */
    RK_SCHED_COUNT
};

/* HF's names, indexed by enum rk_sched_kind. */
extern const char * const rk_sched_names[RK_SCHED_COUNT];

struct rk_schedule {
    enum rk_sched_kind kind;
    double             base_lr;       /* the optimizer's lr, e.g. 2e-5 */
    int64_t            warmup_steps;  /* W, e.g. rk_schedule_warmup_steps(0.1, N) */
    int64_t            total_steps;   /* N = optimizer steps of the whole run (after gradient accumulation) */
    double             num_cycles;    /* cosine only: 0.5 (HF default), a half cosine from 1 to 0 */
};

/*
 * TrainingArguments.get_warmup_steps (transformers 5.x): warmup >= 1 is a step count (truncated to an integer);
 * below 1 it is a ratio, giving ceil(total_steps * warmup) computed in double (transformers 4.x warmup_ratio).
 * Cannot fail.
 */
int64_t rk_schedule_warmup_steps(double warmup, int64_t total_steps);

/*
 * A schedule of the given kind with HF's defaults (num_cycles 0.5). Cannot fail.
 */
struct rk_schedule rk_schedule_make(enum rk_sched_kind kind, double base_lr, int64_t warmup_steps,
                                    int64_t total_steps);

/* lambda(step), the lr multiplier of optimizer step `step` (0-based). Cannot fail. */
double rk_schedule_lambda(const struct rk_schedule * s, int64_t step);

/* base_lr * lambda(step), as torch's LambdaLR computes it. Cannot fail. */
double rk_schedule_lr(const struct rk_schedule * s, int64_t step);

/*
 * Parses an HF scheduler name ("linear", "cosine", "constant", "constant_with_warmup") into *kind. Returns
 * RK_STATUS_UNSUPPORTED with the error set for any other name (*kind untouched).
 */
enum rk_status rk_schedule_kind_from_name(const char * name, enum rk_sched_kind * kind);

#ifdef __cplusplus
}
#endif
#endif
