/*
 * trainer.c: the optimizer step of the BERT classifier (see trainer.h).
 */
#include "train/trainer.h"

#include "check.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef RK_HAVE_CUDA
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"
#endif

/* ---- the device path's state --------------------------------------------------------------------------------- */

struct rk_trainer_dev {
    struct rk_adamw_config cfg;
    int64_t   n_elems;
    int64_t * offset;     /* (n_params) element offset of each tensor in master, m, v */
    int64_t * n;          /* (n_params) elements */
    double *  wd;         /* (n_params) weight decay of its HF group */
    float *   state;      /* device (3, n_elems): master weights, exp_avg, exp_avg_sq */
    float *   sumsq;      /* device (n_params) per-tensor sums of squares of the gradients */
    float *   scratch;    /* device scratch of the sum-of-squares reduction */
    int64_t   scratch_n;
    float *   sumsq_host; /* (n_params) */
    int64_t   adam_step;  /* torch's state["step"] */
};

static void dev_free(struct rk_backend * be, struct rk_trainer_dev * d) {
    if (!d) return;
    if (d->state) be->free(be, d->state);
    if (d->sumsq) be->free(be, d->sumsq);
    if (d->scratch) be->free(be, d->scratch);
    free(d->offset);
    free(d->n);
    free(d->wd);
    free(d->sumsq_host);
    free(d);
}

/* host f32 copies of the master weights and both moments, (3, n_elems) */
static enum rk_status dev_download(const struct rk_trainer * t, float ** out) {
    struct rk_backend * be = t->model->be;
    const size_t        nb = sizeof(float) * 3 * (size_t) t->dev->n_elems;
    float *             h  = malloc(nb ? nb : 1);
    if (!h) return rk_set_error(RK_STATUS_OOM, "trainer: cannot allocate %zu bytes to stage the optimizer state", nb);
    enum rk_status s = be->copy_to_host(be, h, t->dev->state, nb);
    if (s != RK_OK) free(h);
    else *out = h;
    return s;
}

#ifdef RK_HAVE_CUDA
static enum rk_status dev_init(struct rk_trainer * t, const struct rk_adamw_config * cfg) {
    struct rk_bert_cls * m  = t->model;
    struct rk_backend *  be = m->be;
    struct rk_trainer_dev * d = rk_xcalloc(1, sizeof(*d));
    t->dev     = d;
    d->cfg     = *cfg;
    d->offset  = rk_xcalloc((size_t) t->n_params, sizeof(int64_t));
    d->n       = rk_xcalloc((size_t) t->n_params, sizeof(int64_t));
    d->wd      = rk_xcalloc((size_t) t->n_params, sizeof(double));
    d->sumsq_host = rk_xcalloc((size_t) t->n_params, sizeof(float));
    int64_t max_n = 1;
    for (int i = 0; i < t->n_params; i++) {
        const struct rk_named_param * p = &t->named[i];
        if (!rk_tensor_is_contiguous(&p->param) || !rk_tensor_is_contiguous(&p->grad) || p->param.dtype != p->grad.dtype)
            return rk_set_error(RK_STATUS_UNSUPPORTED, "trainer: parameter %s is not a contiguous tensor", p->name);
        d->offset[i] = d->n_elems;
        d->n[i]      = rk_tensor_nelements(&p->param);
        d->wd[i]     = rk_optim_name_decays(p->name) ? cfg->weight_decay : 0.0;
        d->n_elems  += d->n[i];
        if (d->n[i] > max_n) max_n = d->n[i];
    }
    const size_t nb = sizeof(float) * 3 * (size_t) d->n_elems;
    d->scratch_n    = rk_cuda_sumsq_scratch_size(max_n);
    d->state        = be->alloc(be, nb);
    d->sumsq        = be->alloc(be, sizeof(float) * (size_t) t->n_params);
    d->scratch      = be->alloc(be, sizeof(float) * (size_t) (d->scratch_n > 0 ? d->scratch_n : 1));
    if (!d->state || !d->sumsq || !d->scratch)
        return rk_set_error(RK_STATUS_OOM, "trainer: cannot allocate %zu bytes of optimizer state on %s", nb, be->name);
    /* master = the model's weights in f32; moments zero */
    float * h = calloc(3 * (size_t) d->n_elems + 1, sizeof(float));
    if (!h) return rk_set_error(RK_STATUS_OOM, "trainer: cannot allocate %zu bytes of host staging", nb);
    enum rk_status s = RK_OK;
    for (int i = 0; i < t->n_params && s == RK_OK; i++) s = rk_tensor_get_f32(&t->named[i].param, h + d->offset[i]);
    if (s == RK_OK) s = be->copy_to_device(be, d->state, h, nb);
    if (s == RK_OK) s = be->synchronize(be);
    free(h);
    if (m->bert->params.wte.dtype == RK_DTYPE_F16) t->scaler = rk_loss_scaler_default();
    return s;
}

/*
 * The device half of a step: global norm of the gradients times grad_mul (the combined 1/accum and loss-scale
 * unscaling), clipping, the fused AdamW update. *finite false skips the update.
 */
static enum rk_status dev_step(struct rk_trainer * t, float grad_mul, double lr, float * norm_out, bool * finite) {
    struct rk_trainer_dev * d  = t->dev;
    struct rk_backend *     be = t->model->be;
    cudaStream_t            st = rk_backend_cuda_stream(be);
    for (int i = 0; i < t->n_params; i++) {
        const struct rk_tensor * g = &t->named[i].grad;
        RK_TRY(rk_cuda_sumsq(g->data, g->dtype, d->n[i], d->sumsq + i, d->scratch, d->scratch_n, st));
    }
    RK_TRY(be->copy_to_host(be, d->sumsq_host, d->sumsq, sizeof(float) * (size_t) t->n_params));
    /* torch: per-tensor f32 norms, then the f32 norm of the norms */
    double total_sq = 0.0;
    for (int i = 0; i < t->n_params; i++) {
        const float norm_i = (float) (sqrt((double) d->sumsq_host[i]) * (double) grad_mul);
        total_sq += (double) norm_i * (double) norm_i;
    }
    const float total = (float) sqrt(total_sq);
    *norm_out = total;
    *finite   = isfinite(total);
    if (!*finite) return RK_OK;
    float mul = grad_mul;
    if (t->max_grad_norm > 0) {
        const float coef = (float) t->max_grad_norm / (total + 1e-6f);
        if (coef < 1.0f) mul = grad_mul * coef;
    }
    d->adam_step++;
    for (int i = 0; i < t->n_params; i++) {
        const struct rk_named_param * p = &t->named[i];
        const struct rk_adamw_scalars sc = rk_adamw_scalars(&d->cfg, lr, d->wd[i], d->adam_step);
        float * master = d->state + d->offset[i], * mm = d->state + d->n_elems + d->offset[i];
        float * vv     = d->state + 2 * d->n_elems + d->offset[i];
        RK_TRY(rk_cuda_adamw_update(master, p->grad.data, p->grad.dtype, mm, vv, d->n[i], &sc, mul, p->param.data,
                                    p->param.dtype, st));
    }
    return RK_OK;
}
#else
static enum rk_status dev_init(struct rk_trainer * t, const struct rk_adamw_config * cfg) {
    (void) t;
    (void) cfg;
    return rk_set_error(RK_STATUS_UNSUPPORTED, "trainer: this build has no CUDA");
}
static enum rk_status dev_step(struct rk_trainer * t, float grad_mul, double lr, float * norm_out, bool * finite) {
    (void) t; (void) grad_mul; (void) lr; (void) norm_out; (void) finite;
    return rk_set_error(RK_STATUS_UNSUPPORTED, "trainer: this build has no CUDA");
}
#endif

enum rk_status rk_trainer_init(struct rk_trainer * t, struct rk_bert_cls * m, const struct rk_adamw_config * cfg,
                               const struct rk_schedule * sched, double max_grad_norm) {
    memset(t, 0, sizeof(*t));
    const enum rk_dtype wdt    = m->bert->params.wte.dtype;
    const bool          on_dev = m->be->device == RK_DEVICE_CUDA;
    if (on_dev ? !(wdt == RK_DTYPE_BF16 || wdt == RK_DTYPE_F16) : wdt != RK_DTYPE_F32) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "trainer: %s weights on %s are not supported (f32 on the CPU, bf16 "
                            "or f16 on CUDA)", rk_dtype_traits[wdt].name, m->be->name);
    }
    t->model         = m;
    t->sched         = *sched;
    t->max_grad_norm = max_grad_norm;
    const int64_t n  = rk_bert_cls_params(m, &t->named);
    t->n_params      = (int) n;
    if (on_dev) {
        enum rk_status s = dev_init(t, cfg);
        if (s != RK_OK) rk_trainer_free(t);
        return s;
    }
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
    if (t->dev) dev_free(t->model->be, t->dev);
    rk_adamw_free(&t->opt);
    free(t->params);
    free(t->named);
    memset(t, 0, sizeof(*t));
}

/* True when every value of ck (n f32) rounds, in dtype dt, to the value held in cur (the f32 view of the 16-bit
 * weights): the parameter still holds the checkpoint's weights. */
static bool rounds_to(const float * ck, const float * cur, int64_t n, enum rk_dtype dt) {
    const struct rk_dtype_traits * tr = &rk_dtype_traits[dt];
    uint16_t                       h;
    float                          back;
    for (int64_t j = 0; j < n; j++) {
        tr->from_f32(&ck[j], &h, 1);
        tr->to_f32(&h, &back, 1);
        if (memcmp(&back, &cur[j], sizeof(float)) != 0) return false;
    }
    return true;
}

enum rk_status rk_trainer_master_from_checkpoint(struct rk_trainer * t, const char * model_dir) {
    if (!t->dev) return RK_OK;
    struct rk_trainer_dev * d  = t->dev;
    struct rk_backend *     be = t->model->be;
    struct rk_st_set *      st = NULL;
    RK_TRY(rk_safetensors_open_dir(model_dir, &st));
    float *        stage = NULL;
    enum rk_status s     = dev_download(t, &stage);
    int            found = 0;
    for (int i = 0; i < t->n_params && s == RK_OK; i++) {
        const struct rk_named_param * p    = &t->named[i];
        const char *                  name = strncmp(p->name, "bert.", 5) == 0 ? p->name + 5 : p->name;
        const struct rk_st_entry *    e    = rk_st_set_find_any(st, name, NULL);
        if (!e || e->ndim != p->param.ndim) continue;
        bool same = true;
        for (int k = 0; k < e->ndim; k++) same = same && e->shape[k] == p->param.ne[k];
        if (!same) continue;
        float * ck = rk_xmalloc(sizeof(float) * (size_t) d->n[i]);
        s = rk_safetensors_read_f32(NULL, e, ck, d->n[i]);
        /* only where the model still holds the checkpoint's weights (a caller may have set some, e.g. a bias prior) */
        if (s == RK_OK && rounds_to(ck, stage + d->offset[i], d->n[i], p->param.dtype)) {
            memcpy(stage + d->offset[i], ck, sizeof(float) * (size_t) d->n[i]);
            found++;
        }
        free(ck);
    }
    if (s == RK_OK) s = be->copy_to_device(be, d->state, stage, sizeof(float) * (size_t) d->n_elems); /* masters */
    if (s == RK_OK) s = be->synchronize(be);
    free(stage);
    rk_st_set_close(st);
    if (s == RK_OK && found == 0)
        s = rk_set_error(RK_STATUS_FORMAT, "%s: no tensor of the model found in the checkpoint", model_dir);
    return s;
}

enum rk_status rk_trainer_step(struct rk_trainer * t, const struct rk_batch * micro, int n, float * loss,
                               float * grad_norm, double * lr, bool * skipped) {
    RK_ASSERT(n >= 1);
    struct rk_bert_cls * m = t->model;
    RK_TRY(rk_bert_cls_zero_grad(m));
    const bool scaled = t->dev && t->scaler.scale > 0.0f;
    m->loss_scale     = scaled ? t->scaler.scale : 1.0f;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const struct rk_batch * b = &micro[i];
        float l = 0.0f;
        RK_TRY(rk_bert_cls_forward(m, b->ids, b->mask, b->types, b->B, b->T, b->labels, &l, NULL, true));
        RK_TRY(rk_bert_cls_backward(m));
        sum += l;
    }
    m->loss_scale        = 1.0f;
    const double step_lr = rk_schedule_lr(&t->sched, t->step);
    float        norm    = 0.0f;
    bool         finite  = true;
    if (t->dev) {
        /* gradients hold sum_i d(scale * loss_i): the multiplier makes them those of the mean unscaled loss */
        const float grad_mul = (float) (1.0 / ((double) n * (scaled ? (double) t->scaler.scale : 1.0)));
        RK_TRY(dev_step(t, grad_mul, step_lr, &norm, &finite));
        if (scaled) rk_loss_scaler_update(&t->scaler, !finite);
    } else {
        /* the gradient of the mean over micro-batches: HF divides each micro-batch loss by their count */
        if (n > 1) {
            for (int i = 0; i < t->n_params; i++) rk_cpu_scale(t->params[i].grad, t->params[i].n, 1.0f / (float) n);
        }
        if (t->max_grad_norm > 0) {
            finite = rk_optim_clip_grad_norm(t->params, t->n_params, t->max_grad_norm, &norm);
        } else {
            double ss = 0.0;
            for (int i = 0; i < t->n_params; i++) ss += rk_cpu_sumsq(t->params[i].grad, t->params[i].n);
            norm   = (float) sqrt(ss);
            finite = isfinite(norm);
        }
        if (finite) rk_adamw_step(&t->opt, step_lr);
    }
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

/*
 * Model buffers with their real shapes, optimizer buffers (2 per tensor). Host path: the model's f32 buffers and
 * the optimizer's state, in the optimizer's order. Device path: views into `stage`, the host copy (3, n_elems)
 * of the master weights and moments (dev_download), in the model's order.
 */
static int checkpoint_buffers(const struct rk_trainer * t, struct rk_named_buffer * model,
                              struct rk_named_buffer * optim, char (*names)[160], float * stage) {
    const struct rk_trainer_dev * d = t->dev;
    for (int i = 0; i < t->n_params; i++) {
        const struct rk_named_param * p = &t->named[i];
        model[i] = (struct rk_named_buffer) { .name = p->name, .dtype = RK_DTYPE_F32, .ndim = p->param.ndim,
                                              .data = d ? (void *) (stage + d->offset[i]) : p->param.data };
        for (int k = 0; k < p->param.ndim; k++) model[i].shape[k] = p->param.ne[k];
    }
    const int n_opt = d ? t->n_params : t->opt.n_params;
    for (int i = 0; i < n_opt; i++) {
        const char * name = d ? t->named[i].name : t->opt.params[i].name;
        rk_checkpoint_optim_name(names[2 * i], sizeof(names[0]), name, RK_CKPT_EXP_AVG);
        rk_checkpoint_optim_name(names[2 * i + 1], sizeof(names[0]), name, RK_CKPT_EXP_AVG_SQ);
        if (d) {
            optim[2 * i]     = f32_buffer(names[2 * i], stage + d->n_elems + d->offset[i], d->n[i]);
            optim[2 * i + 1] = f32_buffer(names[2 * i + 1], stage + 2 * d->n_elems + d->offset[i], d->n[i]);
        } else {
            const struct rk_adamw * o = &t->opt;
            optim[2 * i]     = f32_buffer(names[2 * i], o->m + o->offset[i], o->params[i].n);
            optim[2 * i + 1] = f32_buffer(names[2 * i + 1], o->v + o->offset[i], o->params[i].n);
        }
    }
    return 2 * n_opt;
}

enum rk_status rk_trainer_save(const struct rk_trainer * t, const char * dir, const struct rk_trainer_state * ts,
                               const cJSON * config) {
    float * stage = NULL;
    if (t->dev) RK_TRY(dev_download(t, &stage));
    struct rk_named_buffer * model = rk_xcalloc((size_t) t->n_params, sizeof(*model));
    struct rk_named_buffer * optim = rk_xcalloc((size_t) (2 * t->n_params), sizeof(*optim));
    char (*names)[160]             = rk_xcalloc((size_t) (2 * t->n_params), sizeof(*names));
    const int n_optim              = checkpoint_buffers(t, model, optim, names, stage);
    cJSON * state = rk_trainer_state_to_json(ts, config);
    cJSON_AddNumberToObject(state, "adamw_step", (double) (t->dev ? t->dev->adam_step : t->opt.step));
    if (t->dev && t->scaler.scale > 0.0f) {
        cJSON_AddNumberToObject(state, "loss_scale", (double) t->scaler.scale);
        cJSON_AddNumberToObject(state, "loss_scale_growth_tracker", (double) t->scaler.growth_tracker);
    }
    enum rk_status s = rk_checkpoint_save(dir, model, t->n_params, optim, n_optim, state);
    cJSON_Delete(state);
    free(model);
    free(optim);
    free(names);
    free(stage);
    return s;
}

enum rk_status rk_trainer_export(const struct rk_trainer * t, const char * path) {
    float * stage = NULL;
    if (t->dev) RK_TRY(dev_download(t, &stage));
    struct rk_named_buffer * model = rk_xcalloc((size_t) t->n_params, sizeof(*model));
    struct rk_named_buffer * optim = rk_xcalloc((size_t) (2 * t->n_params), sizeof(*optim));
    char (*names)[160]             = rk_xcalloc((size_t) (2 * t->n_params), sizeof(*names));
    (void) checkpoint_buffers(t, model, optim, names, stage);
    const char *   meta[] = { "format", "pt", NULL };
    enum rk_status s      = rk_safetensors_write(path, model, t->n_params, meta);
    free(model);
    free(optim);
    free(names);
    free(stage);
    return s;
}

enum rk_status rk_trainer_load(struct rk_trainer * t, const char * dir, struct rk_trainer_state * ts) {
    float * stage = NULL;
    if (t->dev) RK_TRY(dev_download(t, &stage));
    struct rk_named_buffer * model = rk_xcalloc((size_t) t->n_params, sizeof(*model));
    struct rk_named_buffer * optim = rk_xcalloc((size_t) (2 * t->n_params), sizeof(*optim));
    char (*names)[160]             = rk_xcalloc((size_t) (2 * t->n_params), sizeof(*names));
    const int n_optim              = checkpoint_buffers(t, model, optim, names, stage);
    cJSON *        state = NULL;
    enum rk_status s     = rk_checkpoint_load(dir, model, t->n_params, optim, n_optim, &state);
    if (s == RK_OK) s = rk_trainer_state_from_json(state, dir, ts, NULL);
    int64_t adam_step = 0;
    if (s == RK_OK) {
        const cJSON * as = cJSON_GetObjectItemCaseSensitive(state, "adamw_step");
        if (!cJSON_IsNumber(as)) s = rk_set_error(RK_STATUS_FORMAT, "%s: trainer state has no \"adamw_step\"", dir);
        else adam_step = (int64_t) as->valuedouble;
        t->step = ts->step;
    }
    if (s == RK_OK && t->dev) {
        /* the master weights and moments back to the device, and the model's compute copies from the masters */
        struct rk_backend * be = t->model->be;
        t->dev->adam_step      = adam_step;
        s = be->copy_to_device(be, t->dev->state, stage, sizeof(float) * 3 * (size_t) t->dev->n_elems);
        for (int i = 0; i < t->n_params && s == RK_OK; i++)
            s = rk_tensor_set_f32(&t->named[i].param, stage + t->dev->offset[i]);
        const cJSON * ls = cJSON_GetObjectItemCaseSensitive(state, "loss_scale");
        const cJSON * gt = cJSON_GetObjectItemCaseSensitive(state, "loss_scale_growth_tracker");
        if (s == RK_OK && t->scaler.scale > 0.0f && cJSON_IsNumber(ls) && cJSON_IsNumber(gt)) {
            t->scaler.scale          = (float) ls->valuedouble;
            t->scaler.growth_tracker = (int64_t) gt->valuedouble;
        }
        if (s == RK_OK) s = be->synchronize(be);
    } else if (s == RK_OK) {
        t->opt.step = adam_step;
    }
    cJSON_Delete(state);
    free(model);
    free(optim);
    free(names);
    free(stage);
    return s;
}
