/*
 * trainer.c: the optimizer step of the BERT classifier (see trainer.h).
 */
#include "train/trainer.h"

#include "check.h"

#include <math.h>
#include <string.h>

enum rk_status rk_trainer_init(struct rk_trainer * t, struct rk_bert_cls * m, const struct rk_adamw_config * cfg,
                               const struct rk_schedule * sched, double max_grad_norm) {
    memset(t, 0, sizeof(*t));
    if (m->be->device != RK_DEVICE_CPU) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "training runs on the CPU backend only for now (%s has no backward "
                            "ops yet): use --device cpu", m->be->name);
    }
    t->model         = m;
    t->sched         = *sched;
    t->max_grad_norm = max_grad_norm;
    const int64_t n  = rk_bert_cls_params(m, &t->named);
    t->n_params      = (int) n;
    t->params        = rk_xcalloc((size_t) n, sizeof(*t->params));
    for (int64_t i = 0; i < n; i++) {
        struct rk_named_param * p = &t->named[i];
        RK_ASSERT(p->param.dtype == RK_DTYPE_F32 && p->grad.dtype == RK_DTYPE_F32);
        RK_ASSERT(rk_tensor_is_contiguous(&p->param) && rk_tensor_is_contiguous(&p->grad));
        t->params[i] = (struct rk_param) { .name = p->name, .param = p->param.data, .grad = p->grad.data,
                                           .n = rk_tensor_nelements(&p->param) };
    }
    enum rk_status s = rk_adamw_init_hf(&t->opt, cfg, t->params, t->n_params);
    if (s != RK_OK) rk_trainer_free(t);
    return s;
}

void rk_trainer_free(struct rk_trainer * t) {
    rk_adamw_free(&t->opt);
    free(t->params);
    free(t->named);
    memset(t, 0, sizeof(*t));
}

enum rk_status rk_trainer_step(struct rk_trainer * t, const struct rk_batch * micro, int n, float * loss,
                               float * grad_norm, double * lr, bool * skipped) {
    RK_ASSERT(n >= 1);
    struct rk_bert_cls * m = t->model;
    RK_TRY(rk_bert_cls_zero_grad(m));
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const struct rk_batch * b = &micro[i];
        float l = 0.0f;
        RK_TRY(rk_bert_cls_forward(m, b->ids, b->mask, b->types, b->B, b->T, b->labels, &l, NULL, true));
        RK_TRY(rk_bert_cls_backward(m));
        sum += l;
    }
    /* the gradient of the mean over micro-batches: HF divides each micro-batch loss by their count */
    if (n > 1) {
        for (int i = 0; i < t->n_params; i++) rk_cpu_scale(t->params[i].grad, t->params[i].n, 1.0f / (float) n);
    }
    float norm = 0.0f;
    bool  finite = true;
    if (t->max_grad_norm > 0) {
        finite = rk_optim_clip_grad_norm(t->params, t->n_params, t->max_grad_norm, &norm);
    } else {
        double ss = 0.0;
        for (int i = 0; i < t->n_params; i++) ss += rk_cpu_sumsq(t->params[i].grad, t->params[i].n);
        norm   = (float) sqrt(ss);
        finite = isfinite(norm);
    }
    const double step_lr = rk_schedule_lr(&t->sched, t->step);
    if (finite) rk_adamw_step(&t->opt, step_lr);
    t->step++;
    if (loss) *loss = (float) (sum / n);
    if (grad_norm) *grad_norm = norm;
    if (lr) *lr = step_lr;
    if (skipped) *skipped = !finite;
    return RK_OK;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

static struct rk_named_buffer f32_buffer(const char * name, float * data, int64_t n) {
    return (struct rk_named_buffer) { .name = name, .dtype = RK_DTYPE_F32, .ndim = 1, .shape = { n, 0, 0, 0 },
                                      .data = data };
}

/* model buffers with their real shapes; optimizer buffers (2 per tensor, in the optimizer's order) */
static void checkpoint_buffers(const struct rk_trainer * t, struct rk_named_buffer * model,
                               struct rk_named_buffer * optim, char (*names)[160]) {
    for (int i = 0; i < t->n_params; i++) {
        const struct rk_named_param * p = &t->named[i];
        model[i] = (struct rk_named_buffer) { .name = p->name, .dtype = RK_DTYPE_F32, .ndim = p->param.ndim,
                                              .data = p->param.data };
        for (int d = 0; d < p->param.ndim; d++) model[i].shape[d] = p->param.ne[d];
    }
    const struct rk_adamw * o = &t->opt;
    for (int i = 0; i < o->n_params; i++) {
        rk_checkpoint_optim_name(names[2 * i], sizeof(names[0]), o->params[i].name, RK_CKPT_EXP_AVG);
        rk_checkpoint_optim_name(names[2 * i + 1], sizeof(names[0]), o->params[i].name, RK_CKPT_EXP_AVG_SQ);
        optim[2 * i]     = f32_buffer(names[2 * i], o->m + o->offset[i], o->params[i].n);
        optim[2 * i + 1] = f32_buffer(names[2 * i + 1], o->v + o->offset[i], o->params[i].n);
    }
}

enum rk_status rk_trainer_save(const struct rk_trainer * t, const char * dir, const struct rk_trainer_state * ts,
                               const cJSON * config) {
    struct rk_named_buffer * model = rk_xcalloc((size_t) t->n_params, sizeof(*model));
    struct rk_named_buffer * optim = rk_xcalloc((size_t) (2 * t->opt.n_params), sizeof(*optim));
    char (*names)[160]             = rk_xcalloc((size_t) (2 * t->opt.n_params), sizeof(*names));
    checkpoint_buffers(t, model, optim, names);
    cJSON * state = rk_trainer_state_to_json(ts, config);
    cJSON_AddNumberToObject(state, "adamw_step", (double) t->opt.step);
    enum rk_status s = rk_checkpoint_save(dir, model, t->n_params, optim, 2 * t->opt.n_params, state);
    cJSON_Delete(state);
    free(model);
    free(optim);
    free(names);
    return s;
}

enum rk_status rk_trainer_load(struct rk_trainer * t, const char * dir, struct rk_trainer_state * ts) {
    struct rk_named_buffer * model = rk_xcalloc((size_t) t->n_params, sizeof(*model));
    struct rk_named_buffer * optim = rk_xcalloc((size_t) (2 * t->opt.n_params), sizeof(*optim));
    char (*names)[160]             = rk_xcalloc((size_t) (2 * t->opt.n_params), sizeof(*names));
    checkpoint_buffers(t, model, optim, names);
    cJSON *        state = NULL;
    enum rk_status s     = rk_checkpoint_load(dir, model, t->n_params, optim, 2 * t->opt.n_params, &state);
    if (s == RK_OK) s = rk_trainer_state_from_json(state, dir, ts, NULL);
    if (s == RK_OK) {
        const cJSON * as = cJSON_GetObjectItemCaseSensitive(state, "adamw_step");
        if (!cJSON_IsNumber(as)) s = rk_set_error(RK_STATUS_FORMAT, "%s: trainer state has no \"adamw_step\"", dir);
        else t->opt.step = (int64_t) as->valuedouble;
        t->step = ts->step;
    }
    cJSON_Delete(state);
    free(model);
    free(optim);
    free(names);
    return s;
}
