/*
 * bench_finetune: one full fine-tuning step of a BERT classifier on the GPU (forward, BCE loss, backward, global-norm
 * clipping, fused AdamW on fp32 master weights), 16-bit compute, in milliseconds and sequences/s.
 *
 *   build/bench/bench_finetune [--config base|large|minilm|all] [--B 32] [--T 512] [--labels 6] [--dtype bf16|f16]
 *                              [--reps 10] [--grad-checkpointing]
 *
 * Correctness first: one trainer step of the tiny golden classifier on CUDA against PyTorch (tests/golden/
 * train_steps.rkgd, step 0: loss within 2 %, gradient norm within 5 %), else nothing is timed. Then a classifier of
 * the named shape with random weights trains on random token ids (all valid, B x T) and random 0/1 labels: 2
 * warm-up steps, the median of `reps` steps (each step ends with the loss read back, so it is synchronous).
 * Peer: bench/peers/bert_train_hf.py (transformers BertForSequenceClassification, multi-label, bf16 autocast,
 * torch.optim.AdamW, gradient clipping), same shapes and labels, the RESULT keys below.
 * Difference to the peer: our fused attention has no dropout on the attention probabilities (the peer applies
 * attention_probs_dropout_prob 0.1); hidden and classifier dropout are applied by both.
 * Without a CUDA device it says so and exits 0.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "models/bert_cls.h"
#include "models/encode.h"
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char * what) {
    fprintf(stderr, "bench_finetune: %s: %s\n", what, rk_last_error());
    exit(1);
}

static struct rk_trainer make_trainer(struct rk_bert_cls * m) {
    struct rk_adamw_config cfg = rk_adamw_config_default(3e-5, 0.01);
    struct rk_schedule     sc  = rk_schedule_make(RK_SCHED_CONSTANT, 3e-5, 0, 1000000);
    struct rk_trainer      t;
    if (rk_trainer_init(&t, m, &cfg, &sc, 1.0) != RK_OK) die("trainer");
    return t;
}

/* The golden check: returns true when step 0 matches PyTorch within the 16-bit tolerances. */
static bool golden_check(struct rk_backend * be) {
    char path[4096];
    const char * root = getenv("RK_ROOT") ? getenv("RK_ROOT") : ".";
    snprintf(path, sizeof(path), "%s/tests/golden/train_steps.rkgd", root);
    long            size = 0;
    unsigned char * buf  = rk_bench_gold_read(path, &size);
    if (!buf) return false;
    snprintf(path, sizeof(path), "%s/tests/golden/tiny_bert_cls", root);
    struct rk_bert_cls * m = NULL;
    if (rk_bert_cls_load(path, 0, 1, be, &m) != RK_OK) die("tiny golden classifier");
    /* the golden run is the one of tests/test_train.c: lr 1e-3, wd 0.01, linear warmup 1 of 3 steps, clip 1.0 */
    struct rk_adamw_config cfg = rk_adamw_config_default(1e-3, 0.01);
    struct rk_schedule     sc  = rk_schedule_make(RK_SCHED_LINEAR, 1e-3, 1, 3);
    struct rk_trainer      t;
    if (rk_trainer_init(&t, m, &cfg, &sc, 1.0) != RK_OK) die("trainer");
    int64_t n = 0, nl = 0, nx = 0;
    const int32_t * ids    = rk_bench_gold_get(buf, size, "ids.0", &n);
    const int32_t * mask   = rk_bench_gold_get(buf, size, "mask.0", &nx);
    const int32_t * types  = rk_bench_gold_get(buf, size, "types.0", &nx);
    const float *   labels = rk_bench_gold_get(buf, size, "labels.0", &nl);
    const float *   gloss  = rk_bench_gold_get(buf, size, "loss", &nx);
    const float *   gnorm  = rk_bench_gold_get(buf, size, "gnorm", &nx);
    bool ok = ids && mask && types && labels && gloss && gnorm && nl % m->n_labels == 0;
    if (ok) {
        /* the golden batch is (B, T): B = labels / n_labels */
        const int64_t   Bb = nl / m->n_labels, T = n / Bb;
        struct rk_batch b  = { ids, mask, types, labels, Bb, T };
        float  loss = 0, norm = 0;
        double lr = 0;
        bool   skipped = true;
        if (rk_trainer_step(&t, &b, 1, &loss, &norm, &lr, &skipped) != RK_OK) die("golden step");
        ok = !skipped && fabsf(loss - gloss[0]) <= 2e-2f * fabsf(gloss[0]) && fabsf(norm - gnorm[0]) <= 5e-2f * gnorm[0];
        printf("check: tiny classifier step 0 on %s: loss %.6f (torch %.6f), grad norm %.5f (torch %.5f): %s\n",
               be->name, loss, gloss[0], norm, gnorm[0], ok ? "ok" : "MISMATCH");
    }
    rk_trainer_free(&t);
    rk_bert_cls_free(m);
    free(buf);
    return ok;
}

static void run_one(struct rk_backend * be, const char * cname, int64_t B, int64_t T, int64_t L, int64_t reps,
                    bool ckpt) {
    struct rk_bert_config cfg;
    if (rk_bert_config_named(cname, &cfg) != RK_OK) die("config");
    if (T > cfg.max_position) T = cfg.max_position;
    struct rk_bert_cls * m = NULL;
    if (rk_bert_cls_init_random(&cfg, L, 42, be, &m) != RK_OK) die("model");
    m->ignore_attn_dropout = true;
    m->grad_checkpointing  = ckpt;
    struct rk_trainer t    = make_trainer(m);
    int32_t * ids  = rk_xmalloc(sizeof(int32_t) * (size_t) (B * T));
    int32_t * mask = rk_xmalloc(sizeof(int32_t) * (size_t) (B * T));
    float *   lab  = rk_xmalloc(sizeof(float) * (size_t) (B * L));
    uint64_t  rs   = 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < B * T; i++) {
        ids[i]  = 1000 + (int32_t) ((rk_bench_urand(&rs) * 0.5f + 0.5f) * 29000.0f);
        mask[i] = 1;
    }
    for (int64_t i = 0; i < B * L; i++) lab[i] = rk_bench_urand(&rs) > 0.0f ? 1.0f : 0.0f;
    struct rk_batch b = { ids, mask, NULL, lab, B, T };
    double * ms = rk_xmalloc(sizeof(double) * (size_t) reps);
    float    loss = 0, norm = 0;
    double   lr = 0;
    bool     skipped = false;
    for (int w = 0; w < 2; w++) {
        if (rk_trainer_step(&t, &b, 1, &loss, &norm, &lr, &skipped) != RK_OK) die("warm-up step");
    }
    for (int64_t r = 0; r < reps; r++) {
        const double t0 = rk_now();
        if (rk_trainer_step(&t, &b, 1, &loss, &norm, &lr, &skipped) != RK_OK) die("step");
        ms[r] = (rk_now() - t0) * 1e3;
    }
    qsort(ms, (size_t) reps, sizeof(double), rk_bench_cmp_double);
    const double med = ms[reps / 2];
    const char * key = !strcmp(cname, "base") ? "bert_base" : !strcmp(cname, "large") ? "bert_large" : "minilm_l6";
    const char * dt  = be->act_dtype == RK_DTYPE_BF16 ? "bf16" : "f16";
    printf("ours_finetune %s %s B=%lld T=%lld: %.1f ms/step (min %.1f), %.1f seq/s, loss %.4f, grad norm %.3f%s\n",
           cname, dt, (long long) B, (long long) T, med, ms[0], (double) B / med * 1e3, loss, norm,
           ckpt ? ", gradient checkpointing" : "");
    printf("RESULT %s_fullft_%s_B%lld_T%lld%s %.1f ms\n", key, dt, (long long) B, (long long) T, ckpt ? "_ckpt" : "",
           med);
    free(ms);
    free(ids);
    free(mask);
    free(lab);
    rk_trainer_free(&t);
    rk_bert_cls_free(m);
}

int main(int argc, char ** argv) {
    const char * config = "all", * dtype = "bf16";
    int64_t      B = 32, T = 512, L = 6, reps = 10;
    bool         ckpt = false;
    for (int i = 1; i < argc; i++) {
        const char * a = argv[i];
        const char * v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--grad-checkpointing")) { ckpt = true; continue; }
        if (!v) { fprintf(stderr, "bench_finetune: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--B")) B = atoll(v);
        else if (!strcmp(a, "--T")) T = atoll(v);
        else if (!strcmp(a, "--labels")) L = atoll(v);
        else if (!strcmp(a, "--reps")) reps = atoll(v);
        else { fprintf(stderr, "bench_finetune: unknown option %s\n", a); return 2; }
        i++;
    }
    if (B < 1 || T < 1 || L < 1 || reps < 1) { fprintf(stderr, "bench_finetune: bad sizes\n"); return 2; }
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) {
        printf("bench_finetune: no CUDA device (%s); nothing timed\n", rk_last_error());
        return 0;
    }
    if (!strcmp(dtype, "f16")) be->act_dtype = RK_DTYPE_F16;
    else if (strcmp(dtype, "bf16") || be->act_dtype != RK_DTYPE_BF16) {
        fprintf(stderr, "bench_finetune: --dtype %s not available on %s\n", dtype, be->name);
        return 2;
    }
#ifdef RK_HAVE_CUDA
    rk_bench_print_device(NULL);
#endif
    if (!golden_check(be)) {
        printf("bench_finetune: the golden check failed; nothing timed\n");
        return 1;
    }
    const char * all[] = { "base", "large" };
    for (int i = 0; i < 2; i++) {
        if (!strcmp(config, "all") || !strcmp(config, all[i])) run_one(be, all[i], B, T, L, reps, ckpt);
    }
    if (!strcmp(config, "minilm")) run_one(be, "minilm", B, T, L, reps, ckpt);
    rk_backend_free(be);
    return 0;
}
