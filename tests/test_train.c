/*
 * test_train.c: the training step against PyTorch + transformers (tests/golden/gen_train_steps.py): three AdamW
 * steps of the tiny BertForSequenceClassification with HF's no-decay groups, a linear warmup schedule and gradient
 * clipping. Per-step losses, learning rates and gradient norms, and every parameter after the third step.
 */
#include "golden.h"
#include "test_util.h"

#include "backend.h"
#include "models/bert_cls.h"
#include "train/trainer.h"

#include <math.h>

Test(train, three_adamw_steps_match_pytorch, .timeout = 60) {
    char dir[4096], gpath[4096];
    rk_test_path(dir, sizeof(dir), "tests/golden/tiny_bert_cls");
    struct rk_gold g = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/train_steps.rkgd"));
    struct rk_backend * be = rk_backend_cpu_init(2);
    struct rk_bert_cls * m = NULL;
    cr_assert_eq(rk_bert_cls_load(dir, 0, 1, be, &m), RK_OK, "%s", rk_last_error());
    struct rk_adamw_config cfg = rk_adamw_config_default(1e-3, 0.01);
    struct rk_schedule     sc  = rk_schedule_make(RK_SCHED_LINEAR, 1e-3, 1, 3);
    struct rk_trainer      t;
    cr_assert_eq(rk_trainer_init(&t, m, &cfg, &sc, 1.0), RK_OK, "%s", rk_last_error());
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
        cr_log_info("step %d: loss %.7f (torch %.7f) lr %g (torch %g) norm %.6f (torch %.6f)", k, loss, gloss[k], lr,
                    glr[k], norm, gnorm[k]);
        cr_assert(!skipped);
        cr_assert(fabsf(loss - gloss[k]) <= 1e-5f * fabsf(gloss[k]), "step %d loss %.8f, torch %.8f", k, loss, gloss[k]);
        cr_assert(fabs(lr - glr[k]) <= 1e-9, "step %d lr %g, torch %g", k, lr, glr[k]);
        cr_assert(fabsf(norm - gnorm[k]) <= 1e-5f * gnorm[k], "step %d grad norm %.7f, torch %.7f", k, norm, gnorm[k]);
    }
    /* every parameter after three steps */
    double worst = 0.0;
    const char * worst_name = "";
    for (int i = 0; i < t.n_params; i++) {
        char n[160];
        snprintf(n, sizeof(n), "param.%s", t.named[i].name);
        const struct rk_gold_tensor * ref = rk_gold_get(&g, n);
        cr_assert_eq(ref->n, t.params[i].n, "%s: %lld elements, torch %lld", t.named[i].name, (long long) t.params[i].n,
                     (long long) ref->n);
        const float * r = ref->data;
        for (int64_t j = 0; j < ref->n; j++) {
            const double d = fabs((double) t.params[i].param[j] - r[j]);
            cr_assert(d <= 1e-5 + 1e-4 * fabs(r[j]), "%s[%lld]: %.8f, torch %.8f", t.named[i].name, (long long) j,
                      t.params[i].param[j], r[j]);
            if (d > worst) {
                worst      = d;
                worst_name = t.named[i].name;
            }
        }
    }
    cr_log_info("parameters after 3 steps: worst |diff| %.3g (%s)", worst, worst_name);
    rk_trainer_free(&t);
    rk_bert_cls_free(m);
    rk_backend_free(be);
    rk_gold_free(&g);
}
