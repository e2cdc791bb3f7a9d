/*
 * test_train_model.c: the trainable BERT classifier (host/models/bert_cls.h) against PyTorch
 * (tests/golden/gen_bert_cls.py: a tiny BertForSequenceClassification, multi-label, dropout 0, float64 reference):
 *   - loss and logits of the train forward, and the gradient of every parameter after the backward (CPU backend);
 *   - the named parameters are exactly the state dict's, in its order;
 *   - train-mode logits (dropout 0) equal the inference path (rk_bert_forward) and a host-computed head;
 *   - gradients accumulate over two backwards, and zero_grad clears them;
 *   - dropout > 0 changes the loss, is reproducible for a given step, and gives finite gradients;
 *   - gradient checkpointing (recompute each layer in the backward) gives bit-identical losses and gradients,
 *     dropout on, over two steps with a batch shape change in between;
 *   - on CUDA (skipped without a device), bf16 and f16: every parameter's gradient against the CPU's on the same
 *     rounded weights (cuda_gradients).
 */
#include "golden.h"
#include "test_util.h"

#include "backend.h"
#include "models/bert_cls.h"

#include <math.h>

struct fixture {
    struct rk_backend *  be;
    struct rk_bert_cls * m;
    struct rk_gold       g;
    const int32_t *      ids, * mask, * types;
    const float *        labels;
    int64_t              B, T, L;
};

static void fx_init(struct fixture * f) {
    char dir[4096], gpath[4096];
    f->be = rk_backend_cpu_init(2);
    cr_assert(f->be != NULL);
    f->g = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/bert_cls.rkgd"));
    rk_test_path(dir, sizeof(dir), "tests/golden/tiny_bert_cls");
    cr_assert_eq(rk_bert_cls_load(dir, 0, 1, f->be, &f->m), RK_OK, "%s", rk_last_error());
    const struct rk_gold_tensor * ids = rk_gold_get(&f->g, "ids");
    f->ids    = ids->data;
    f->mask   = rk_gold_get(&f->g, "mask")->data;
    f->types  = rk_gold_get(&f->g, "types")->data;
    f->labels = rk_gold_get(&f->g, "labels")->data;
    f->B      = ids->dims[0];
    f->T      = ids->dims[1];
    f->L      = rk_gold_get(&f->g, "labels")->dims[1];
    cr_assert_eq(f->m->n_labels, f->L);
    cr_assert(f->m->hidden_dropout == 0.0f && f->m->attn_dropout == 0.0f && f->m->classifier_dropout == 0.0f);
}

static void fx_free(struct fixture * f) {
    rk_bert_cls_free(f->m);
    rk_gold_free(&f->g);
    rk_backend_free(f->be);
}

static double rel_err(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-30); }

/* Host copy of a named parameter's gradient or weights (f32, contiguous views). */
static float * get_f32(const struct rk_tensor * t) {
    float * h = malloc(sizeof(float) * (size_t) rk_tensor_nelements(t));
    cr_assert_eq(rk_tensor_get_f32(t, h), RK_OK, "%s", rk_last_error());
    return h;
}

Test(bert_cls, gradients_match_pytorch) {
    struct fixture f;
    fx_init(&f);
    float   loss = 0.0f;
    float * logits = malloc(sizeof(float) * (size_t) (f.B * f.L));
    cr_assert_eq(rk_bert_cls_forward(f.m, f.ids, f.mask, f.types, f.B, f.T, f.labels, &loss, logits, true), RK_OK,
                 "%s", rk_last_error());
    cr_assert_eq(rk_bert_cls_backward(f.m), RK_OK, "%s", rk_last_error());

    const float * ref_loss = rk_gold_get(&f.g, "loss")->data;
    const float * ref_log  = rk_gold_get(&f.g, "logits")->data;
    const double  le       = rel_err(loss, ref_loss[0]);
    cr_log_info("loss %.8g, PyTorch %.8g, rel err %.2e", (double) loss, (double) ref_loss[0], le);
    cr_assert(le <= 1e-5, "loss %.8g vs PyTorch %.8g", (double) loss, (double) ref_loss[0]);
    double lmax = 0.0, ldiff = 0.0;
    for (int64_t i = 0; i < f.B * f.L; i++) {
        lmax  = fmax(lmax, fabs(ref_log[i]));
        ldiff = fmax(ldiff, fabs((double) logits[i] - ref_log[i]));
    }
    cr_log_info("logits: max |diff| %.2e (max |logit| %.3g)", ldiff, lmax);
    cr_assert(ldiff <= 1e-5 * fmax(1.0, lmax), "logits differ from PyTorch by %.3g", ldiff);

    struct rk_named_param * ps = NULL;
    const int64_t           n  = rk_bert_cls_params(f.m, &ps);
    int64_t                 n_gold = 0;
    for (int i = 0; i < f.g.count; i++) n_gold += strncmp(f.g.t[i].name, "grad.", 5) == 0;
    cr_assert_eq(n, n_gold, "%lld named parameters, PyTorch has %lld", (long long) n, (long long) n_gold);
    /* the state dict's order: the golden file lists the gradients in named_parameters() order */
    int64_t k = 0;
    for (int i = 0; i < f.g.count; i++) {
        if (strncmp(f.g.t[i].name, "grad.", 5) != 0) continue;
        cr_assert_str_eq(ps[k].name, f.g.t[i].name + 5, "parameter %lld", (long long) k);
        k++;
    }
    double       worst_ratio = 0.0, worst_abs = 0.0, worst_rel = 0.0;
    const char * worst_name  = "";
    for (int64_t p = 0; p < n; p++) {
        char gname[128];
        snprintf(gname, sizeof(gname), "grad.%s", ps[p].name);
        const struct rk_gold_tensor * ref = rk_gold_get(&f.g, gname);
        const int64_t                 ne  = rk_tensor_nelements(&ps[p].grad);
        cr_assert_eq(ne, ref->n, "%s: %lld elements, PyTorch %lld", ps[p].name, (long long) ne, (long long) ref->n);
        float *       got = get_f32(&ps[p].grad);
        const float * want = ref->data;
        double        gmax = 0.0, dmax = 0.0;
        for (int64_t i = 0; i < ne; i++) {
            cr_assert(isfinite(got[i]), "%s[%lld] is not finite", ps[p].name, (long long) i);
            gmax = fmax(gmax, fabs(want[i]));
            dmax = fmax(dmax, fabs((double) got[i] - want[i]));
        }
        const double ratio = dmax / (1e-5 * fmax(1.0, gmax));
        cr_log_info("%-56s max|g| %.3e  max|diff| %.2e  rel %.1e", ps[p].name, gmax, dmax, dmax / fmax(gmax, 1e-30));
        /* and relative to the tensor's own scale, where it has one (key biases get exactly zero gradient) */
        if (gmax >= 1e-6) worst_rel = fmax(worst_rel, dmax / gmax);
        cr_assert(gmax < 1e-6 || dmax <= 1e-4 * gmax, "%s: max |diff| %.3e is over 1e-4 of max |g| %.3e", ps[p].name,
                  dmax, gmax);
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst_abs   = dmax;
            worst_name  = ps[p].name;
        }
        free(got);
    }
    cr_log_info("worst gradient: %s, max |diff| %.3e (%.3f of the limit 1e-5 * max(1, max|g|))", worst_name, worst_abs,
                worst_ratio);
    cr_log_info("worst relative gradient error max|diff| / max|g| (tensors with max|g| >= 1e-6): %.2e", worst_rel);
    cr_assert(worst_ratio <= 1.0, "gradient of %s differs from PyTorch by %.3e (%.2fx the limit)", worst_name, worst_abs,
              worst_ratio);
    free(ps);
    free(logits);
    fx_free(&f);
}

/* pooler + classifier on the host from hidden states (B,T,C), in double */
static void host_head(struct fixture * f, const float * hid, double * logits) {
    struct rk_named_param * ps = NULL;
    const int64_t           n  = rk_bert_cls_params(f->m, &ps);
    const int64_t           C  = f->m->bert->cfg.hidden_size, L = f->L;
    float * pw = get_f32(&ps[n - 4].param), * pb = get_f32(&ps[n - 3].param);
    float * cw = get_f32(&ps[n - 2].param), * cb = get_f32(&ps[n - 1].param);
    cr_assert_str_eq(ps[n - 4].name, "bert.pooler.dense.weight");
    cr_assert_str_eq(ps[n - 1].name, "classifier.bias");
    double * pooled = malloc(sizeof(double) * (size_t) C);
    for (int64_t b = 0; b < f->B; b++) {
        const float * x = hid + b * f->T * C; /* token 0 */
        for (int64_t o = 0; o < C; o++) {
            double s = pb[o];
            for (int64_t i = 0; i < C; i++) s += (double) pw[o * C + i] * x[i];
            pooled[o] = tanh(s);
        }
        for (int64_t l = 0; l < L; l++) {
            double s = cb[l];
            for (int64_t i = 0; i < C; i++) s += (double) cw[l * C + i] * pooled[i];
            logits[b * L + l] = s;
        }
    }
    free(pooled); free(pw); free(pb); free(cw); free(cb); free(ps);
}

Test(bert_cls, train_forward_equals_inference_path) {
    struct fixture f;
    fx_init(&f);
    const int64_t BL = f.B * f.L, C = f.m->bert->cfg.hidden_size;
    float * lt = malloc(sizeof(float) * (size_t) BL), * le = malloc(sizeof(float) * (size_t) BL);
    float   loss_t = 0.0f, loss_e = 0.0f;
    cr_assert_eq(rk_bert_cls_forward(f.m, f.ids, f.mask, f.types, f.B, f.T, f.labels, &loss_t, lt, true), RK_OK);
    cr_assert_eq(rk_bert_cls_forward(f.m, f.ids, f.mask, f.types, f.B, f.T, f.labels, &loss_e, le, false), RK_OK);
    cr_assert_eq(rk_bert_cls_backward(f.m), RK_STATUS_ARG, "backward after an eval forward must be refused");
    float *  hid = malloc(sizeof(float) * (size_t) (f.B * f.T * C));
    double * lh  = malloc(sizeof(double) * (size_t) BL);
    cr_assert_eq(rk_bert_hidden_f32(f.m->bert, hid), RK_OK); /* the inference path's hidden states */
    host_head(&f, hid, lh);
    double d_eval = 0.0, d_host = 0.0;
    for (int64_t i = 0; i < BL; i++) {
        d_eval = fmax(d_eval, fabs((double) lt[i] - le[i]));
        d_host = fmax(d_host, fabs((double) lt[i] - lh[i]));
    }
    cr_log_info("train vs eval logits %.2e, train vs rk_bert_forward + host head %.2e, loss %.8g vs %.8g", d_eval,
                d_host, (double) loss_t, (double) loss_e);
    cr_assert(d_eval <= 1e-5 && d_host <= 1e-5, "train logits differ from the inference path: %.3g / %.3g", d_eval,
              d_host);
    cr_assert(rel_err(loss_t, loss_e) <= 1e-6);
    free(lt); free(le); free(hid); free(lh);
    fx_free(&f);
}

/* The gradient block as host floats (params in order). */
static float * all_grads(struct rk_bert_cls * m, int64_t * n_out) {
    struct rk_named_param * ps = NULL;
    const int64_t           n  = rk_bert_cls_params(m, &ps);
    int64_t                 total = 0;
    for (int64_t p = 0; p < n; p++) total += rk_tensor_nelements(&ps[p].grad);
    float * g  = malloc(sizeof(float) * (size_t) total);
    int64_t at = 0;
    for (int64_t p = 0; p < n; p++) {
        cr_assert_eq(rk_tensor_get_f32(&ps[p].grad, g + at), RK_OK);
        at += rk_tensor_nelements(&ps[p].grad);
    }
    free(ps);
    *n_out = total;
    return g;
}

Test(bert_cls, gradients_accumulate_and_zero) {
    struct fixture f;
    fx_init(&f);
    cr_assert_eq(rk_bert_cls_forward(f.m, f.ids, f.mask, f.types, f.B, f.T, f.labels, NULL, NULL, true), RK_OK);
    cr_assert_eq(rk_bert_cls_backward(f.m), RK_OK);
    int64_t n = 0;
    float * g1 = all_grads(f.m, &n);
    cr_assert_eq(rk_bert_cls_forward(f.m, f.ids, f.mask, f.types, f.B, f.T, f.labels, NULL, NULL, true), RK_OK);
    cr_assert_eq(rk_bert_cls_backward(f.m), RK_OK);
    float * g2 = all_grads(f.m, &n);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabsf(g2[i] - 2.0f * g1[i]) <= 1e-6f * fmaxf(1.0f, fabsf(g1[i])), "grad %lld: %g, twice %g",
                  (long long) i, (double) g2[i], (double) g1[i]);
    cr_assert_eq(rk_bert_cls_zero_grad(f.m), RK_OK);
    free(g2);
    g2 = all_grads(f.m, &n);
    for (int64_t i = 0; i < n; i++) cr_assert(g2[i] == 0.0f);
    free(g1); free(g2);
    fx_free(&f);
}

/* Loss of a train forward at a fixed dropout step. */
static double loss_at(struct fixture * f, uint64_t step) {
    float loss = 0.0f;
    f->m->step = step;
    cr_assert_eq(rk_bert_cls_forward(f->m, f->ids, f->mask, f->types, f->B, f->T, f->labels, &loss, NULL, true), RK_OK,
                 "%s", rk_last_error());
    return loss;
}

/*
 * Dropout on (hidden and classifier 0.2): reproducible per step, different across steps, and the backward uses the
 * forward's masks: central differences in f32 (h = 1e-2) through the whole model on the largest-gradient element
 * of several tensors.
 */
Test(bert_cls, dropout_forward_backward_consistent) {
    struct fixture f;
    fx_init(&f);
    const double l0 = loss_at(&f, 0);
    f.m->hidden_dropout     = 0.2f;
    f.m->classifier_dropout = 0.2f;
    const double l5 = loss_at(&f, 5), l5b = loss_at(&f, 5), l6 = loss_at(&f, 6);
    cr_log_info("loss: no dropout %.6f, step 5 %.6f, again %.6f, step 6 %.6f", l0, l5, l5b, l6);
    cr_assert(l5 == l5b && l5 != l6 && l5 != l0);
    cr_assert_eq(f.m->step, 7);
    loss_at(&f, 5);
    cr_assert_eq(rk_bert_cls_backward(f.m), RK_OK, "%s", rk_last_error());

    struct rk_named_param * ps = NULL;
    const int64_t           n  = rk_bert_cls_params(f.m, &ps);
    const char * names[] = { "classifier.weight", "bert.pooler.dense.weight", "bert.encoder.layer.1.output.dense.weight",
                             "bert.encoder.layer.0.attention.self.value.weight", "bert.embeddings.LayerNorm.weight",
                             "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.intermediate.dense.bias" };
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        int64_t p = 0;
        while (p < n && strcmp(ps[p].name, names[k]) != 0) p++;
        cr_assert(p < n, "no parameter %s", names[k]);
        const int64_t ne = rk_tensor_nelements(&ps[p].param);
        float *       g = get_f32(&ps[p].grad), * w = get_f32(&ps[p].param);
        int64_t       at = 0;
        for (int64_t i = 0; i < ne; i++) {
            cr_assert(isfinite(g[i]));
            if (fabsf(g[i]) > fabsf(g[at])) at = i;
        }
        const float h = 1e-2f, old = w[at];
        w[at] = old + h;
        cr_assert_eq(rk_tensor_set_f32(&ps[p].param, w), RK_OK);
        const double lp = loss_at(&f, 5);
        w[at] = old - h;
        cr_assert_eq(rk_tensor_set_f32(&ps[p].param, w), RK_OK);
        const double lm = loss_at(&f, 5);
        w[at] = old;
        cr_assert_eq(rk_tensor_set_f32(&ps[p].param, w), RK_OK);
        const double fd = (lp - lm) / (2.0 * h);
        cr_log_info("%s[%lld]: grad %.6g, finite difference %.6g", names[k], (long long) at, (double) g[at], fd);
        cr_assert(fabs(fd - g[at]) <= 2e-3 + 2e-2 * fabs(fd), "%s[%lld]: grad %.6g, finite difference %.6g",
                  names[k], (long long) at, (double) g[at], fd);
        free(g); free(w);
    }
    free(ps);
    fx_free(&f);
}

/* One train step (forward + backward at dropout step `step`) on the first B rows; returns the loss. */
static float step_rows(struct fixture * f, uint64_t step, int64_t B) {
    float loss = 0.0f;
    f->m->step = step;
    cr_assert_eq(rk_bert_cls_forward(f->m, f->ids, f->mask, f->types, B, f->T, f->labels, &loss, NULL, true), RK_OK,
                 "%s", rk_last_error());
    cr_assert_eq(rk_bert_cls_backward(f->m), RK_OK, "%s", rk_last_error());
    return loss;
}

Test(bert_cls, gradient_checkpointing_is_exact) {
    struct fixture f[2];
    float *        g[2] = { NULL, NULL };
    float          loss[2][2];
    int64_t        n = 0;
    for (int k = 0; k < 2; k++) {
        fx_init(&f[k]);
        f[k].m->hidden_dropout = f[k].m->classifier_dropout = 0.1f;
        f[k].m->grad_checkpointing = k == 1;
        /* two accumulated micro-batches of different shapes: the buffers are resized in between */
        loss[k][0] = step_rows(&f[k], 3, f[k].B > 1 ? f[k].B - 1 : 1);
        loss[k][1] = step_rows(&f[k], 4, f[k].B);
        g[k]       = all_grads(f[k].m, &n);
    }
    cr_assert_eq(f[1].m->acts.n_kept, 1);
    cr_assert_eq(f[0].m->acts.n_kept, f[0].m->bert->cfg.n_layer);
    for (int s = 0; s < 2; s++) cr_assert(loss[0][s] == loss[1][s], "step %d: loss %.9g vs %.9g", s, loss[0][s], loss[1][s]);
    int64_t nonzero = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(memcmp(&g[0][i], &g[1][i], sizeof(float)) == 0, "grad %lld: %.9g plain, %.9g checkpointed",
                  (long long) i, (double) g[0][i], (double) g[1][i]);
        nonzero += g[0][i] != 0.0f;
    }
    cr_assert(nonzero > n / 2, "only %lld of %lld gradients are non-zero", (long long) nonzero, (long long) n);
    for (int k = 0; k < 2; k++) {
        free(g[k]);
        fx_free(&f[k]);
    }
}

/* A plain BertModel directory (no pooler, no classifier, attention dropout 0.1): the head is initialised. */
Test(bert_cls, missing_head_is_initialised) {
    char dir[4096];
    rk_test_path(dir, sizeof(dir), "tests/golden/tiny_bert");
    struct rk_backend *  be = rk_backend_cpu_init(2);
    struct rk_bert_cls * m  = NULL;
    cr_assert_eq(rk_bert_cls_load(dir, 0, 3, be, &m), RK_STATUS_ARG, "no classifier and no label count");
    cr_assert_eq(rk_bert_cls_load(dir, 4, 3, be, &m), RK_OK, "%s", rk_last_error());
    cr_assert_eq(m->n_labels, 4);
    cr_assert(fabsf(m->attn_dropout - 0.1f) < 1e-6f && fabsf(m->classifier_dropout - 0.1f) < 1e-6f);
    float * w = get_f32(&m->head.cls_w), * b = get_f32(&m->head.cls_b), * pw = get_f32(&m->head.pool_w);
    const int64_t C = m->bert->cfg.hidden_size;
    double ss = 0.0;
    for (int64_t i = 0; i < C * C; i++) ss += (double) pw[i] * pw[i];
    const double sd = sqrt(ss / (double) (C * C));
    cr_log_info("initialised pooler weight std %.4f (0.02 expected)", sd);
    cr_assert(sd > 0.015 && sd < 0.025);
    for (int64_t i = 0; i < 4; i++) cr_assert(b[i] == 0.0f);
    cr_assert(w[0] != 0.0f);
    const int32_t ids[4] = { 2, 10, 11, 3 }, mask[4] = { 1, 1, 1, 1 };
    const float   labels[4] = { 1, 0, 0, 1 };
    float         loss = 0.0f;
    cr_assert_eq(rk_bert_cls_forward(m, ids, mask, NULL, 1, 4, labels, &loss, NULL, true), RK_STATUS_UNSUPPORTED,
                 "attention dropout must be refused unless ignored");
    m->ignore_attn_dropout = true;
    cr_assert_eq(rk_bert_cls_forward(m, ids, mask, NULL, 1, 4, labels, &loss, NULL, true), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_bert_cls_backward(m), RK_OK, "%s", rk_last_error());
    cr_assert(isfinite(loss));
    free(w); free(b); free(pw);
    rk_bert_cls_free(m);
    rk_backend_free(be);
}

/*
 * The CUDA backward, whole model: gradients of the golden batch on CUDA (bf16, f16) against the CPU's f32 gradients
 * of the same model with its weights rounded to that dtype (so both differentiate the same function, and what is
 * left is 16-bit arithmetic in the activations). Per tensor, the normalized squared error must stay under nmse_max,
 * which a kernel computing a wrong gradient exceeds by orders of magnitude. Expected levels (tests/emu, emulated
 * device): ~1e-4 bf16 and ~1e-6 f16 for most tensors; the attention query weights are noisier (bf16 2e-3, f16 3e-4)
 * because dq = scale dS k sums terms that cancel (each row of dS sums to 0, and the keys share a large component).
 * The key biases have gradient 0 in exact arithmetic (softmax shift invariance): only their size is checked.
 * Skipped without a CUDA device.
 */
static void cuda_gradients(enum rk_dtype dt, double nmse_max) {
    char dir[4096], gpath[4096];
    struct rk_backend * dev = rk_backend_cuda_init(0);
    if (!dev) cr_skip_test("no CUDA device: %s", rk_last_error());
    if (dt == RK_DTYPE_BF16 && dev->act_dtype != RK_DTYPE_BF16) {
        rk_backend_free(dev);
        cr_skip_test("no bf16 on this device");
    }
    dev->act_dtype          = dt;
    struct rk_backend * cpu = rk_backend_cpu_init(2);
    struct rk_gold      g   = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/bert_cls.rkgd"));
    rk_test_path(dir, sizeof(dir), "tests/golden/tiny_bert_cls");
    struct rk_bert_cls * m[2] = { NULL, NULL }; /* CPU, CUDA */
    cr_assert_eq(rk_bert_cls_load(dir, 0, 1, cpu, &m[0]), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_bert_cls_load(dir, 0, 1, dev, &m[1]), RK_OK, "%s", rk_last_error());
    struct rk_named_param * ps[2];
    const int64_t           n = rk_bert_cls_params(m[0], &ps[0]);
    cr_assert_eq(rk_bert_cls_params(m[1], &ps[1]), n);
    for (int64_t p = 0; p < n; p++) { /* the CPU model's weights, rounded as the device holds them */
        float * w = get_f32(&ps[0][p].param);
        for (int64_t i = 0; i < rk_tensor_nelements(&ps[0][p].param); i++) {
            w[i] = dt == RK_DTYPE_BF16 ? rk_bf16_to_f32(rk_f32_to_bf16(w[i])) : rk_f16_to_f32(rk_f32_to_f16(w[i]));
        }
        cr_assert_eq(rk_tensor_set_f32(&ps[0][p].param, w), RK_OK);
        free(w);
    }
    const struct rk_gold_tensor * ids = rk_gold_get(&g, "ids");
    float                         loss[2];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(rk_bert_cls_forward(m[k], ids->data, rk_gold_get(&g, "mask")->data, rk_gold_get(&g, "types")->data,
                                         ids->dims[0], ids->dims[1], rk_gold_get(&g, "labels")->data, &loss[k], NULL,
                                         true), RK_OK, "%s", rk_last_error());
        cr_assert_eq(rk_bert_cls_backward(m[k]), RK_OK, "%s", rk_last_error());
    }
    cr_log_info("%s: loss %.7f, CPU on the same weights %.7f", dev->name, (double) loss[1], (double) loss[0]);
    cr_assert(rel_err(loss[1], loss[0]) <= 1e-2, "loss %.7f, CPU %.7f", (double) loss[1], (double) loss[0]);
    double gmax_all = 0.0, worst = 0.0, keyb = 0.0;
    const char * worst_name = "";
    float *      gr[2][200];
    cr_assert(n <= 200);
    for (int64_t p = 0; p < n; p++) {
        for (int k = 0; k < 2; k++) gr[k][p] = get_f32(&ps[k][p].grad);
        for (int64_t i = 0; i < rk_tensor_nelements(&ps[0][p].grad); i++) gmax_all = fmax(gmax_all, fabs(gr[0][p][i]));
    }
    for (int64_t p = 0; p < n; p++) {
        const int64_t ne = rk_tensor_nelements(&ps[0][p].grad);
        double        e2 = 0.0, r2 = 0.0, amax = 0.0;
        for (int64_t i = 0; i < ne; i++) {
            const double got = gr[1][p][i], ref = gr[0][p][i];
            cr_assert(isfinite(got), "%s[%lld] is not finite", ps[1][p].name, (long long) i);
            e2 += (got - ref) * (got - ref);
            r2 += ref * ref;
            amax = fmax(amax, fabs(got));
        }
        if (strstr(ps[0][p].name, "attention.self.key.bias")) {
            keyb = fmax(keyb, amax / gmax_all);
            cr_assert(amax <= 1e-4 * gmax_all, "%s: |g| up to %.3g, expected ~0 (max |g| of the model %.3g)",
                      ps[1][p].name, amax, gmax_all);
        } else {
            const double nmse = e2 / r2;
            cr_assert(nmse <= nmse_max, "%s: nmse %.3g against the CPU (limit %.1g)", ps[1][p].name, nmse, nmse_max);
            if (nmse > worst) {
                worst      = nmse;
                worst_name = ps[1][p].name;
            }
        }
        free(gr[0][p]);
        free(gr[1][p]);
    }
    cr_log_info("%s: worst gradient nmse %.3g (%s), key biases up to %.2g of the largest gradient", dev->name, worst,
                worst_name, keyb);
    free(ps[0]);
    free(ps[1]);
    rk_bert_cls_free(m[0]);
    rk_bert_cls_free(m[1]);
    rk_gold_free(&g);
    rk_backend_free(cpu);
    rk_backend_free(dev);
}

Test(bert_cls, cuda_gradients_bf16) { cuda_gradients(RK_DTYPE_BF16, 1e-2); }
Test(bert_cls, cuda_gradients_f16) { cuda_gradients(RK_DTYPE_F16, 2e-3); }
