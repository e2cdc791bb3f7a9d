/*
 * optim.c: AdamW (torch.optim.AdamW), HF-style parameter groups, clip_grad_norm_, the dynamic loss scaler and
 * gradient zeroing, on host f32 memory. See optim.h for the contracts and the training-step recipe.
 *
 * Numerics follow torch 2.x on the CPU (single-tensor path, probed against torch 2.15 with AVX512):
 *   - Python-float scalars (1 - lr*wd, 1 - beta1, ...) are computed in double and rounded to f32 when they meet
 *     the f32 tensor; bias corrections and the step size stay double until then.
 *   - exp_avg.lerp_(grad, 1 - beta1) is fma(w, g - m, m) (torch's vectorized lerp for a weight below 0.5);
 *     exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2) is fma((1 - beta2) * g, g, v * beta2);
 *     param.addcdiv_(m, denom, -step_size) is p + ((-step_size) * m) / denom, not fused.
 *   - torch's f32 sqrt on the CPU goes through MKL and is within 1 ulp of the correctly rounded sqrtf used here;
 *     that is the one place where results may differ in the last bit (relative effect on p ~1e-10).
 */
#include "train/optim.h"

#include "check.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

void rk_cpu_adamw_update(float * p, const float * g, float * m, float * v, int64_t n,
                         const struct rk_adamw_scalars * s) {
    // p, g, m, v are (n); s holds the step's scalars (rk_adamw_scalars)
    const float decay = s->decay_mul, w1 = s->one_minus_beta1, b2 = s->beta2, w2 = s->one_minus_beta2;
    const float bc2 = s->bc2_sqrt, eps = s->eps, nss = s->neg_step_size;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i];
        const float pi = p[i] * decay;
        const float mi = fmaf(w1, gi - m[i], m[i]);
        const float vi = fmaf(w2 * gi, gi, v[i] * b2);
        const float denom = sqrtf(vi) / bc2 + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + (nss * mi) / denom;
    }
}

double rk_cpu_sumsq(const float * x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double) x[i] * (double) x[i];
    return s;
}

void rk_cpu_scale(float * x, int64_t n, float s) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

bool rk_cpu_unscale_check(float * x, int64_t n, float inv_scale) {
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        bad |= !isfinite(xi);
        if (inv_scale != 1.0f) x[i] = xi * inv_scale;
    }
    return !bad;
}

/* ------------------------------------------------------------------------------------------------
 * parameter names */

/* True when name[pos..] starts the word w (as a regex search on the lower-cased name). */
static bool at_word(const char * lower, size_t pos, const char * w) { return strncmp(lower + pos, w, strlen(w)) == 0; }

bool rk_optim_name_decays(const char * name) {
    if (!name) return true;
    // HF (transformers 5.x Trainer.get_decay_parameter_names) searches the lower-cased full name for
    // r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"
    const size_t len   = strlen(name);
    char *       lower = rk_xmalloc(len + 1);
    for (size_t i = 0; i <= len; i++) lower[i] = (char) tolower((unsigned char) name[i]);
    bool decays = !(strstr(lower, "bias") || strstr(lower, "layernorm") || strstr(lower, "rmsnorm"));
    for (size_t i = 0; decays && i + 4 <= len; i++) {
        if (!at_word(lower, i, "norm")) continue;
        const char after = lower[i + 4];
        const bool end   = after == '\0' || after == '.';
        if (end && (i == 0 || lower[i - 1] == '.' || lower[i - 1] == '_')) decays = false;
    }
    free(lower);
    return decays;
}

/* ------------------------------------------------------------------------------------------------
 * AdamW */

struct rk_adamw_config rk_adamw_config_default(double lr, double weight_decay) {
    return (struct rk_adamw_config) {
        .lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = weight_decay,
    };
}

struct rk_adamw_scalars rk_adamw_scalars(const struct rk_adamw_config * cfg, double lr, double weight_decay,
                                         int64_t t) {
    // torch: bias_correction1 = 1 - beta1**step; step_size = lr / bias_correction1;
    //        bias_correction2_sqrt = (1 - beta2**step) ** 0.5   (all Python floats, i.e. double)
    const double bc1 = 1.0 - pow(cfg->beta1, (double) t);
    const double bc2 = 1.0 - pow(cfg->beta2, (double) t);
    return (struct rk_adamw_scalars) {
        .decay_mul       = (float) (1.0 - lr * weight_decay),
        .one_minus_beta1 = (float) (1.0 - cfg->beta1),
        .beta2           = (float) cfg->beta2,
        .one_minus_beta2 = (float) (1.0 - cfg->beta2),
        .bc2_sqrt        = (float) pow(bc2, 0.5),
        .eps             = (float) cfg->eps,
        .neg_step_size   = (float) -(lr / bc1),
    };
}

enum rk_status rk_adamw_init(struct rk_adamw * opt, const struct rk_adamw_config * cfg,
                             const struct rk_param_group * groups, int n_groups) {
    RK_ASSERT(opt && cfg && (groups || n_groups == 0) && n_groups >= 0);
    memset(opt, 0, sizeof(*opt));
    int n_params = 0;
    for (int gi = 0; gi < n_groups; gi++) {
        if (groups[gi].n_params < 0 || (groups[gi].n_params > 0 && !groups[gi].params)) {
            return rk_set_error(RK_STATUS_ARG, "rk_adamw_init: group %d has no parameter list", gi);
        }
        for (int j = 0; j < groups[gi].n_params; j++) {
            const struct rk_param * p = &groups[gi].params[j];
            const char *            nm = p->name ? p->name : "(unnamed)";
            if (p->n < 0 || (p->n > 0 && (!p->param || !p->grad))) {
                return rk_set_error(RK_STATUS_ARG, "rk_adamw_init: tensor %s: NULL param/grad or n < 0", nm);
            }
            if (p->compute && p->compute_dtype != RK_DTYPE_BF16 && p->compute_dtype != RK_DTYPE_F16) {
                return rk_set_error(RK_STATUS_ARG, "rk_adamw_init: tensor %s: compute copy dtype %s (want bf16/f16)",
                                    nm, rk_dtype_traits[p->compute_dtype].name);
            }
        }
        n_params += groups[gi].n_params;
    }
    opt->cfg         = *cfg;
    opt->n_groups    = n_groups;
    opt->n_params    = n_params;
    opt->params      = rk_xcalloc((size_t) (n_params ? n_params : 1), sizeof(*opt->params));
    opt->offset      = rk_xcalloc((size_t) (n_params ? n_params : 1), sizeof(*opt->offset));
    opt->group_wd    = rk_xcalloc((size_t) (n_groups ? n_groups : 1), sizeof(*opt->group_wd));
    opt->group_first = rk_xcalloc((size_t) (n_groups ? n_groups : 1), sizeof(*opt->group_first));
    opt->group_count = rk_xcalloc((size_t) (n_groups ? n_groups : 1), sizeof(*opt->group_count));
    int k = 0;
    for (int gi = 0; gi < n_groups; gi++) {
        opt->group_wd[gi]    = groups[gi].weight_decay;
        opt->group_first[gi] = k;
        opt->group_count[gi] = groups[gi].n_params;
        for (int j = 0; j < groups[gi].n_params; j++, k++) {
            opt->params[k] = groups[gi].params[j];
            opt->offset[k] = opt->n_elems;
            opt->n_elems += opt->params[k].n;
        }
    }
    // m and v in one zeroed allocation (torch: zeros_like at the first step)
    opt->state = calloc((size_t) (opt->n_elems ? 2 * opt->n_elems : 1), sizeof(float));
    if (!opt->state) {
        const int64_t ne = opt->n_elems;
        rk_adamw_free(opt);
        return rk_set_error(RK_STATUS_OOM, "rk_adamw_init: cannot allocate AdamW state of 2 x %lld floats",
                            (long long) ne);
    }
    opt->m = opt->state;
    opt->v = opt->state + opt->n_elems;
    return RK_OK;
}

enum rk_status rk_adamw_init_hf(struct rk_adamw * opt, const struct rk_adamw_config * cfg,
                                const struct rk_param * params, int n_params) {
    RK_ASSERT(opt && cfg && (params || n_params == 0) && n_params >= 0);
    struct rk_param * sorted = rk_xcalloc((size_t) (n_params ? n_params : 1), sizeof(*sorted));
    int               n_decay = 0, k = 0;
    for (int i = 0; i < n_params; i++) {
        if (rk_optim_name_decays(params[i].name)) sorted[k++] = params[i];
    }
    n_decay = k;
    for (int i = 0; i < n_params; i++) {
        if (!rk_optim_name_decays(params[i].name)) sorted[k++] = params[i];
    }
    const struct rk_param_group groups[2] = {
        { sorted, n_decay, cfg->weight_decay },
        { sorted + n_decay, n_params - n_decay, 0.0 },
    };
    const enum rk_status s = rk_adamw_init(opt, cfg, groups, 2);
    free(sorted);
    return s;
}

void rk_adamw_free(struct rk_adamw * opt) {
    if (!opt) return;
    free(opt->params);
    free(opt->offset);
    free(opt->group_wd);
    free(opt->group_first);
    free(opt->group_count);
    free(opt->state);
    memset(opt, 0, sizeof(*opt));
}

/* The compute copy of one tensor, rounded to nearest even. */
static void write_compute_copy(const struct rk_param * p) {
    if (!p->compute) return;
    uint16_t * dst = p->compute;
    if (p->compute_dtype == RK_DTYPE_BF16) {
        for (int64_t i = 0; i < p->n; i++) dst[i] = rk_f32_to_bf16(p->param[i]);
    } else {
        for (int64_t i = 0; i < p->n; i++) dst[i] = rk_f32_to_f16(p->param[i]);
    }
}

void rk_adamw_step(struct rk_adamw * opt, double lr) {
    RK_ASSERT(opt);
    opt->step++;
    for (int gi = 0; gi < opt->n_groups; gi++) {
        const struct rk_adamw_scalars s = rk_adamw_scalars(&opt->cfg, lr, opt->group_wd[gi], opt->step);
        for (int j = opt->group_first[gi]; j < opt->group_first[gi] + opt->group_count[gi]; j++) {
            const struct rk_param * p = &opt->params[j];
            rk_cpu_adamw_update(p->param, p->grad, opt->m + opt->offset[j], opt->v + opt->offset[j], p->n, &s);
            write_compute_copy(p);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * gradients */

void rk_optim_zero_grad(const struct rk_param * params, int n_params) {
    for (int i = 0; i < n_params; i++) {
        if (params[i].grad && params[i].n > 0) memset(params[i].grad, 0, (size_t) params[i].n * sizeof(float));
    }
}

bool rk_optim_clip_grad_norm(const struct rk_param * params, int n_params, double max_norm, float * total_norm) {
    // torch: norms = [vector_norm(g) for g]  (f32 each); total = vector_norm(stack(norms)) (f32)
    double total_sq = 0.0;
    for (int i = 0; i < n_params; i++) {
        if (!params[i].grad) continue;
        const float norm_i = (float) sqrt(rk_cpu_sumsq(params[i].grad, params[i].n));
        total_sq += (double) norm_i * (double) norm_i;
    }
    const float total = (float) sqrt(total_sq);
    if (total_norm) *total_norm = total;
    if (!isfinite(total)) return false;
    // torch: clip_coef = max_norm / (total_norm + 1e-6), f32 tensor arithmetic; grads *= clamp(clip_coef, max=1)
    const float coef = (float) max_norm / (total + 1e-6f);
    if (coef < 1.0f) {
        for (int i = 0; i < n_params; i++) {
            if (params[i].grad) rk_cpu_scale(params[i].grad, params[i].n, coef);
        }
    }
    return true;
}

struct rk_loss_scaler rk_loss_scaler_default(void) {
    return (struct rk_loss_scaler) {
        .scale = 65536.0f, .growth_factor = 2.0, .backoff_factor = 0.5, .growth_interval = 2000, .growth_tracker = 0,
    };
}

bool rk_loss_scaler_unscale(const struct rk_loss_scaler * ls, const struct rk_param * params, int n_params) {
    RK_ASSERT(ls);
    // torch: inv_scale = self._scale.double().reciprocal().float()
    const float inv_scale = (float) (1.0 / (double) ls->scale);
    bool        finite    = true;
    for (int i = 0; i < n_params; i++) {
        if (params[i].grad) finite &= rk_cpu_unscale_check(params[i].grad, params[i].n, inv_scale);
    }
    return finite;
}

void rk_loss_scaler_update(struct rk_loss_scaler * ls, bool found_inf) {
    RK_ASSERT(ls);
    // torch _amp_update_scale_cpu_: scale is an f32 tensor, the factors are doubles
    if (found_inf) {
        ls->scale          = (float) ((double) ls->scale * ls->backoff_factor);
        ls->growth_tracker = 0;
        return;
    }
    const int64_t successful = ls->growth_tracker + 1;
    if (successful == ls->growth_interval) {
        const float grown = (float) ((double) ls->scale * ls->growth_factor);
        if (isfinite(grown)) ls->scale = grown;
        ls->growth_tracker = 0;
    } else {
        ls->growth_tracker = successful;
    }
}
