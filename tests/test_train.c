/*
 * test_train.c: the training step against PyTorch + transformers (tests/golden/gen_train_steps.py): three AdamW
 * steps of the tiny BertForSequenceClassification with HF's no-decay groups, a linear warmup schedule and gradient
 * clipping. Per-step losses, learning rates and gradient norms, and every parameter after the third step: on the
 * CPU (f32, within 1e-5) and on CUDA (bf16 and f16 compute with fp32 master weights; skipped without a device).
 */
#include "golden.h"
#include "test_util.h"

#include "backend.h"
#include "models/bert_cls.h"
#include "io/safetensors.h"
#include "train/trainer.h"

#include <math.h>

/* Tolerances of one backend/dtype against the float64 PyTorch run. */
struct tol {
    double loss, norm;         /* relative */
    double param_abs, param_rel;
    /* 16-bit runs: the fraction of a tensor's elements allowed outside param_abs + param_rel |ref|, and the relative
     * rounding of the starting weights (the fp32 master copy starts from the model's 16-bit weights); 0 on the CPU.
     * Such an element must still be within what AdamW can move a weight in these steps (see three_steps). */
    double param_out_frac, param_init_rel;
};

/*
 * Three trainer steps on be (its act_dtype set by the caller) against the golden run; the parameters compared are
 * the f32 weights rk_trainer_export writes (the master copy on the device path).
 */
static void three_steps(struct rk_backend * be, struct tol tl, float init_scale) {
    char dir[4096], gpath[4096];
    rk_test_path(dir, sizeof(dir), "tests/golden/tiny_bert_cls");
    struct rk_gold g = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/train_steps.rkgd"));
    struct rk_bert_cls * m = NULL;
    cr_assert_eq(rk_bert_cls_load(dir, 0, 1, be, &m), RK_OK, "%s", rk_last_error());
    struct rk_adamw_config cfg = rk_adamw_config_default(1e-3, 0.01);
    struct rk_schedule     sc  = rk_schedule_make(RK_SCHED_LINEAR, 1e-3, 1, 3);
    struct rk_trainer      t;
    cr_assert_eq(rk_trainer_init(&t, m, &cfg, &sc, 1.0), RK_OK, "%s", rk_last_error());
    /* the device path's fp32 masters from the checkpoint's f32 values (torch starts from them); no-op on the CPU */
    cr_assert_eq(rk_trainer_master_from_checkpoint(&t, dir), RK_OK, "%s", rk_last_error());
    cr_assert_eq(t.scaler.scale > 0.0f, m->bert->params.wte.dtype == RK_DTYPE_F16); /* loss scaling for f16 only */
    if (t.scaler.scale > 0.0f && init_scale > 0.0f) t.scaler.scale = init_scale;
    const float * gloss = rk_gold_get(&g, "loss")->data, * glr = rk_gold_get(&g, "lr")->data;
    const float * gnorm = rk_gold_get(&g, "gnorm")->data;
    for (int k = 0; k < 3; k++) {
        char n[32];
        snprintf(n, sizeof(n), "ids.%d", k);
        const struct rk_gold_tensor * ids = rk_gold_get(&g, n);
        snprintf(n, sizeof(n), "mask.%d", k);
        const struct rk_gold_tensor * mask = rk_gold_get(&g, n);
        snprintf(n, sizeof(n), "types.%d", k);
        const struct rk_gold_tensor * types = rk_gold_get(&g, n);
        snprintf(n, sizeof(n), "labels.%d", k);
        const struct rk_gold_tensor * labels = rk_gold_get(&g, n);
        struct rk_batch b = { ids->data, mask->data, types->data, labels->data, ids->dims[0], ids->dims[1] };
        float loss = 0, norm = 0;
        double lr = 0;
        bool skipped = true;
        cr_assert_eq(rk_trainer_step(&t, &b, 1, &loss, &norm, &lr, &skipped), RK_OK, "%s", rk_last_error());
        cr_log_info("%s step %d: loss %.7f (torch %.7f) lr %g (torch %g) norm %.6f (torch %.6f)", be->name, k, loss,
                    gloss[k], lr, glr[k], norm, gnorm[k]);
        cr_assert(!skipped);
        cr_assert(fabsf(loss - gloss[k]) <= tl.loss * fabsf(gloss[k]), "step %d loss %.8f, torch %.8f", k, loss, gloss[k]);
        cr_assert(fabs(lr - glr[k]) <= 1e-9, "step %d lr %g, torch %g", k, lr, glr[k]);
        cr_assert(fabsf(norm - gnorm[k]) <= tl.norm * gnorm[k], "step %d grad norm %.7f, torch %.7f", k, norm, gnorm[k]);
    }
    /* every parameter after three steps, from the exported f32 weights */
    char out[4096];
    snprintf(out, sizeof(out), "%s/train3.safetensors", rk_test_tmpdir());
    cr_assert_eq(rk_trainer_export(&t, out), RK_OK, "%s", rk_last_error());
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(out, &st), RK_OK, "%s", rk_last_error());
    /* AdamW moves a weight by at most lr * |m_hat| / sqrt(v_hat) per step, and with betas (0.9, 0.999) that ratio is
     * at most 1.004 over three steps (Cauchy-Schwarz on the bias-corrected averages): two runs whose gradients
     * disagree in sign differ by at most ~2 * sum(lr). A 16-bit run has such elements: gradients at the noise floor
     * (key biases, whose gradient is exactly 0 in exact arithmetic by softmax shift invariance, get rounding noise
     * above Adam's eps and take full steps torch does not take; small gradients take the sign of their noise), and
     * gradients rounded to 0 (bf16 tanh(x) rounds to 1 for |x| >~ 3.8, so the pooler's 1 - y^2 is 0). A bounded
     * fraction of each tensor may sit there; a wrong kernel moves many more elements off, and the losses and norms
     * above catch it too. */
    double lr_sum = 0.0;
    for (int k = 0; k < 3; k++) lr_sum += glr[k];
    const double step_bound = 2.05 * lr_sum;
    double       worst      = 0.0, worst_frac = 0.0;
    const char * worst_name = "", * worst_frac_name = "";
    for (int i = 0; i < t.n_params; i++) {
        char n[160];
        snprintf(n, sizeof(n), "param.%s", t.named[i].name);
        const struct rk_gold_tensor * ref = rk_gold_get(&g, n);
        const struct rk_st_entry *    e   = rk_safetensors_find(st, t.named[i].name);
        cr_assert(e != NULL, "%s not exported", t.named[i].name);
        float * w = malloc(sizeof(float) * (size_t) ref->n);
        cr_assert_eq(rk_safetensors_read_f32(st, e, w, ref->n), RK_OK, "%s", rk_last_error());
        const float * r   = ref->data;
        int64_t       out = 0;
        for (int64_t j = 0; j < ref->n; j++) {
            const double d = fabs((double) w[j] - r[j]);
            if (d > tl.param_abs + tl.param_rel * fabs(r[j])) {
                cr_assert(tl.param_out_frac > 0.0, "%s[%lld]: %.8f, torch %.8f", t.named[i].name, (long long) j, w[j],
                          r[j]);
                cr_assert(d <= tl.param_abs + step_bound + tl.param_init_rel * fabs(r[j]),
                          "%s[%lld]: %.8f, torch %.8f: further than AdamW can move a weight in 3 steps (%.3g)",
                          t.named[i].name, (long long) j, w[j], r[j], step_bound);
                out++;
            }
            if (d > worst) {
                worst      = d;
                worst_name = t.named[i].name;
            }
        }
        const double frac = (double) out / (double) ref->n;
        cr_assert(frac <= tl.param_out_frac, "%s: %lld of %lld elements (%.1f%%) outside %.0e + %.0e |torch|",
                  t.named[i].name, (long long) out, (long long) ref->n, 100.0 * frac, tl.param_abs, tl.param_rel);
        if (frac > worst_frac) {
            worst_frac      = frac;
            worst_frac_name = t.named[i].name;
        }
        free(w);
    }
    cr_log_info("%s: parameters after 3 steps: worst |diff| %.3g (%s); most elements outside the tight bound: "
                "%.1f%% (%s)", be->name, worst, worst_name, 100.0 * worst_frac, worst_frac_name);
    rk_safetensors_close(st);
    rk_trainer_free(&t);
    rk_bert_cls_free(m);
    rk_gold_free(&g);
}

Test(train, three_adamw_steps_match_pytorch, .timeout = 60) {
    struct rk_backend * be = rk_backend_cpu_init(2);
    three_steps(be, (struct tol) { .loss = 1e-5, .norm = 1e-5, .param_abs = 1e-5, .param_rel = 1e-4 }, 0.0f); /* all */
    rk_backend_free(be);
}

/*
 * The same three steps on CUDA: 16-bit compute (bf16, and f16 with dynamic loss scaling), fp32 master weights.
 * Tolerances: the forward and backward run in 16-bit (8 mantissa bits in bf16), so losses and norms agree to
 * about 1 %; the master weights move by lr-sized AdamW steps whose direction is the sign of a 16-bit gradient, which
 * is noise where the gradient is near 0: up to 10 % of a tensor's elements may differ by up to two steps (three_steps;
 * under emulation, tests/emu: bf16 6.7 % of bert.pooler.dense.weight and 3 of the 48 elements of a key bias, f16 2.1 %).
 */
static void three_steps_cuda(enum rk_dtype dt) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) cr_skip_test("no CUDA device: %s", rk_last_error());
    if (dt == RK_DTYPE_BF16 && be->act_dtype != RK_DTYPE_BF16) {
        rk_backend_free(be);
        cr_skip_test("no bf16 on this device");
    }
    be->act_dtype = dt;
    /* f16: a start scale of 2^10 instead of GradScaler's 2^16, so that none of the three steps is skipped */
    three_steps(be, (struct tol) { .loss = 2e-2, .norm = 5e-2, .param_abs = 2e-4, .param_rel = 2e-2, .param_out_frac = 0.10,
                                   .param_init_rel = 1.0 / 128 }, 1024.0f);
    rk_backend_free(be);
}

Test(train, three_adamw_steps_cuda_bf16, .timeout = 120) { three_steps_cuda(RK_DTYPE_BF16); }
Test(train, three_adamw_steps_cuda_f16, .timeout = 120) { three_steps_cuda(RK_DTYPE_F16); }
