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
