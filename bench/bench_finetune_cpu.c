/*
 * bench_finetune_cpu: one full fine-tuning step (forward, BCE loss, backward, clipping, AdamW) of a BERT classifier
 * on the CPU backend, in milliseconds and tokens/s.
 *
 *   build/bench/bench_finetune_cpu [--model DIR] [--data CSV] [--batch 16] [--max-length 256] [--threads T] [--reps 5]
 *
 * Correctness first: the tiny golden classifier's loss and gradients are compared with PyTorch's
 * (tests/golden/bert_cls.rkgd; loss within 1e-5, every gradient within 1e-4 of its scale), else nothing is timed.
 * Then the first `batch` documents of the data file (default template, padded to the longest, at most max-length
 * tokens) train `reps` steps after one warm-up; the median is reported. Peer: bench/peers/finetune_torch.py
 * (BertForSequenceClassification + torch.optim.AdamW, same documents, threads, labels); bench/run_cpu.sh runs both.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "datasets/dataset.h"
#include "models/bert_cls.h"
#include "models/encode.h"
#include "tokenizer/wordpiece.h"
#include "train/trainer.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Loss and every gradient of the tiny golden classifier against PyTorch; returns the worst relative error. */
static double golden_check(const char * root) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/golden/bert_cls.rkgd", root);
    long            size = 0;
    unsigned char * buf  = rk_bench_gold_read(path, &size);
    if (!buf) return INFINITY;
    struct rk_backend * be = rk_backend_cpu_init(0);
    struct rk_bert_cls * m = NULL;
    snprintf(path, sizeof(path), "%s/tests/golden/tiny_bert_cls", root);
    double worst = INFINITY;
    if (rk_bert_cls_load(path, 0, 1, be, &m) == RK_OK) {
        int64_t n, nb;
        const int32_t * ids   = rk_bench_gold_get(buf, size, "ids", &n);
        const int32_t * mask  = rk_bench_gold_get(buf, size, "mask", &n);
        const int32_t * types = rk_bench_gold_get(buf, size, "types", &n);
        const float *   y     = rk_bench_gold_get(buf, size, "labels", &nb);
        const float *   lref  = rk_bench_gold_get(buf, size, "loss", &n);
        const int64_t   B = 3, T = 13;
        float loss = 0;
        if (rk_bert_cls_forward(m, ids, mask, types, B, T, y, &loss, NULL, true) == RK_OK && rk_bert_cls_backward(m) == RK_OK) {
            worst = fabs(loss - lref[0]) / fabs(lref[0]);
            struct rk_named_param * np = NULL;
            const int64_t k = rk_bert_cls_params(m, &np);
            for (int64_t i = 0; i < k; i++) {
                char gname[160];
                snprintf(gname, sizeof(gname), "grad.%s", np[i].name);
                const float * g = rk_bench_gold_get(buf, size, gname, &n);
                if (!g) continue;
                double scale = 1e-6, err = 0;
                for (int64_t j = 0; j < n; j++) scale = fmax(scale, fabs(g[j]));
                const float * ours = np[i].grad.data;
                for (int64_t j = 0; j < n; j++) err = fmax(err, fabs((double) ours[j] - g[j]));
                worst = fmax(worst, err / scale);
            }
            free(np);
        }
        rk_bert_cls_free(m);
    }
    rk_backend_free(be);
    free(buf);
    return worst;
}

int main(int argc, char ** argv) {
    const char * model = "models/all-MiniLM-L6-v2", * data = "../shared/datasets/reuters21578/train.csv.gz";
    const char * root  = getenv("RK_ROOT") ? getenv("RK_ROOT") : ".";
    int64_t B = 16, L = 256, threads = 0, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) B = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-length")) L = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoll(argv[i + 1]);
        else { fprintf(stderr, "bench_finetune_cpu: unknown option %s\n", argv[i]); return 2; }
    }
    const double worst = golden_check(root);
    if (!(worst <= 1e-4)) {
        fprintf(stderr, "bench_finetune_cpu: golden check failed (worst relative error %.3g); not timing\n", worst);
        return 1;
    }
    struct rk_backend * be = rk_backend_cpu_init((int) threads);
    struct rk_wordpiece * tok = NULL;
    struct rk_dataset * d = NULL;
    struct rk_bert_cls * m = NULL;
    if (rk_wordpiece_load(model, &tok) != RK_OK || rk_dataset_load(data, NULL, &d) != RK_OK ||
        rk_bert_cls_load(model, d->n_labels, 1, be, &m) != RK_OK) {
        fprintf(stderr, "bench_finetune_cpu: %s\n", rk_last_error());
        return 1;
    }
    m->ignore_attn_dropout = true;
    const int64_t nl = d->n_labels;
    int32_t * all = rk_xcalloc((size_t) (B * L), sizeof(int32_t));
    int64_t   T = 1, tokens = 0;
    int64_t * len = rk_xcalloc((size_t) B, sizeof(int64_t));
    for (int64_t r = 0; r < B; r++) {
        len[r] = rk_wordpiece_encode(tok, d->texts[r], all + r * L, L);
        T      = len[r] > T ? len[r] : T;
        tokens += len[r];
    }
    int32_t * ids = rk_xcalloc((size_t) (B * T), sizeof(int32_t)), * mask = rk_xcalloc((size_t) (B * T), sizeof(int32_t));
    float *   y   = rk_xcalloc((size_t) (B * nl), sizeof(float));
    for (int64_t r = 0; r < B; r++) {
        for (int64_t t = 0; t < T; t++) {
            ids[r * T + t]  = t < len[r] ? all[r * L + t] : 0;
            mask[r * T + t] = t < len[r];
        }
        for (int64_t j = 0; j < nl; j++) y[r * nl + j] = d->labels[r * nl + j];
    }
    struct rk_adamw_config ac = rk_adamw_config_default(5e-5, 0.01);
    struct rk_schedule     sc = rk_schedule_make(RK_SCHED_CONSTANT, 5e-5, 0, 1000);
    struct rk_trainer      tr;
    if (rk_trainer_init(&tr, m, &ac, &sc, 1.0) != RK_OK) {
        fprintf(stderr, "bench_finetune_cpu: %s\n", rk_last_error());
        return 1;
    }
    struct rk_batch b = { ids, mask, NULL, y, B, T };
    double t[32];
    if (reps > 32) reps = 32;
    for (int64_t r = -1; r < reps; r++) {
        const double t0 = rk_now();
        float loss;
        if (rk_trainer_step(&tr, &b, 1, &loss, NULL, NULL, NULL) != RK_OK) {
            fprintf(stderr, "bench_finetune_cpu: %s\n", rk_last_error());
            return 1;
        }
        if (r >= 0) t[r] = rk_now() - t0;
    }
    qsort(t, (size_t) reps, sizeof(double), rk_bench_cmp_double);
    const double med = t[reps / 2];
    /* tokens/s = real tokens of the batch / median step time (forward + backward + clip + AdamW) */
    printf("finetune_cpu model=%s B=%lld T=%lld threads=%d golden_rel_err=%.2g ours_ms=%.1f ours_tokens_per_s=%.0f\n",
           model, (long long) B, (long long) T, omp_get_max_threads(), worst, med * 1e3, (double) tokens / med);
    rk_trainer_free(&tr);
    rk_bert_cls_free(m);
    rk_dataset_free(d);
    rk_wordpiece_free(tok);
    rk_backend_free(be);
    free(all); free(len); free(ids); free(mask); free(y);
    return 0;
}
