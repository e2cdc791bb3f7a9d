/*
 * schedule.c: HF learning-rate schedules (transformers optimization.py lr_lambda functions) in double precision.
 * Each formula below is the Python one with its int/float conversions kept, so the multipliers are bit-identical.
 */
#include "train/schedule.h"

#include "check.h"

#include <math.h>
#include <string.h>

const char * const rk_sched_names[RK_SCHED_COUNT] = {
    [RK_SCHED_CONSTANT]             = "constant",
    [RK_SCHED_CONSTANT_WITH_WARMUP] = "constant_with_warmup",
    [RK_SCHED_LINEAR]               = "linear",
    [RK_SCHED_COSINE]               = "cosine",
};
_Static_assert(sizeof(rk_sched_names) / sizeof(rk_sched_names[0]) == RK_SCHED_COUNT, "rk_sched_names vs enum");

static int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

int64_t rk_schedule_warmup_steps(double warmup, int64_t total_steps) {
    // int(self.warmup_steps) if self.warmup_steps >= 1 else math.ceil(num_training_steps * self.warmup_steps)
    if (warmup >= 1.0) return (int64_t) warmup;
    return (int64_t) ceil((double) total_steps * warmup);
}

struct rk_schedule rk_schedule_make(enum rk_sched_kind kind, double base_lr, int64_t warmup_steps,
                                    int64_t total_steps) {
    return (struct rk_schedule) {
        .kind = kind, .base_lr = base_lr, .warmup_steps = warmup_steps, .total_steps = total_steps, .num_cycles = 0.5,
    };
}

double rk_schedule_lambda(const struct rk_schedule * s, int64_t step) {
    RK_ASSERT(s && s->kind >= 0 && s->kind < RK_SCHED_COUNT);
    const int64_t w = s->warmup_steps, n = s->total_steps;
    switch (s->kind) {
    case RK_SCHED_CONSTANT:
        return 1.0;
    case RK_SCHED_CONSTANT_WITH_WARMUP:
        // float(current_step) / float(max(1.0, num_warmup_steps))
        if (step < w) return (double) step / fmax(1.0, (double) w);
        return 1.0;
    case RK_SCHED_LINEAR:
        if (step < w) return (double) step / (double) max_i64(1, w);
        return fmax(0.0, (double) (n - step) / (double) max_i64(1, n - w));
    case RK_SCHED_COSINE: {
        if (step < w) return (double) step / (double) max_i64(1, w);
        const double progress = (double) (step - w) / (double) max_i64(1, n - w);
        // 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)), left to right as Python
        return fmax(0.0, 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * progress)));
    }
    case RK_SCHED_COUNT:
        break;
    }
    RK_ASSERT(!"unreachable");
    return 0.0;
}

double rk_schedule_lr(const struct rk_schedule * s, int64_t step) { return s->base_lr * rk_schedule_lambda(s, step); }

enum rk_status rk_schedule_kind_from_name(const char * name, enum rk_sched_kind * kind) {
    RK_ASSERT(kind);
    for (int k = 0; name && k < RK_SCHED_COUNT; k++) {
        if (strcmp(name, rk_sched_names[k]) == 0) {
            *kind = (enum rk_sched_kind) k;
            return RK_OK;
        }
    }
    return rk_set_error(RK_STATUS_UNSUPPORTED,
                        "unknown lr scheduler '%s' (want constant, constant_with_warmup, linear or cosine)",
                        name ? name : "(null)");
}
