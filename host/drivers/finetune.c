/*
 * rk-finetune: technique 2 for encoders. A BERT-family model with a classification head (pooler + dropout +
 * linear, BertForSequenceClassification semantics, multi-label BCE), fully fine-tuned with AdamW.
 *
 *   rk-finetune --model DIR --data CSV [--epochs N] [--lr X] [--batch N] [--grad-accum N] [--max-length N]
 *               [--warmup-ratio X] [--scheduler S] [--weight-decay X] [--eval-steps N] [--save-steps N]
 *               [--seed N] [--device D] [--dtype T] [--resume] [--output-dir DIR] [--test CSV] [--out FILE] ...
 *
 * Trains on the train split, evaluates on val every --eval-steps optimizer steps (and at the end of each epoch),
 * checkpoints to <output-dir>/checkpoint every --save-steps steps (weights, AdamW state, trainer state: --resume
 * continues exactly), and reports on the test split (or --test) as rk-embed does. Writes <output-dir>/model (HF
 * names, loadable by transformers), <output-dir>/log.json and <output-dir>/loss.svg. Progress on stderr.
 */
#include "backend.h"
#include "check.h"
#include "classify/metrics.h"
#include "cli.h"
#include "datasets/dataset.h"
#include "datasets/split.h"
#include "io/config.h"
#include "models/bert_cls.h"
#include "models/encode.h"
#include "rng.h"
#include "tokenizer/wordpiece.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE * f) {
    fprintf(f,
            "usage: rk-finetune --model DIR --data CSV [options]\n"
            "\n"
            "Technique 2: full fine-tuning of a BERT-family encoder with a multi-label classification head.\n"
            "\n"
            "  --model DIR          Hugging Face model folder (config.json, model.safetensors, vocab.txt/tokenizer.json);\n"
            "                       a classifier head in it is used, else one is initialised (N(0, 0.02))\n"
            "  --data CSV           labelled data (ID, text columns, 0/1 label columns), gzip or plain\n"
            "  --test CSV           report on this labelled file instead of the test split\n"
            "  --epochs N           passes over the train split (default 3)\n"
            "  --lr X               peak learning rate (default 2e-5)\n"
            "  --batch N            documents per micro-batch (default 16)\n"
            "  --grad-accum N       micro-batches per optimizer step (default 1)\n"
            "  --max-length N       tokens per document incl. [CLS]/[SEP] (default 256)\n"
            "  --warmup-ratio X     warmup steps as a fraction of all steps (default 0)\n"
            "  --scheduler S        linear (default) | cosine | constant | constant_with_warmup\n"
            "  --weight-decay X     AdamW weight decay, not on biases and LayerNorm weights (default 0.01)\n"
            "  --max-grad-norm X    global gradient clipping (default 1.0; 0 = off)\n"
            "  --eval-steps N       evaluate on val every N optimizer steps (default 0: at the end of each epoch)\n"
            "  --save-steps N       checkpoint every N optimizer steps (default 0: at the end of each epoch)\n"
            "  --max-steps N        stop after N optimizer steps in all (default: no limit)\n"
            "  --resume             continue from <output-dir>/checkpoint\n"
            "  --output-dir DIR     checkpoint, final model, log.json, loss.svg (default runs/finetune)\n"
            "  --seed N             seed of the split, the head initialisation, shuffling and dropout (default 42)\n"
            "  --split PATH         split file to use or create (default splits/<data>.seed<seed>.csv)\n"
            "  --fractions A,B,C    train/val/test fractions when a split is created (default 0.80,0.05,0.15)\n"
            "  --text-columns LIST, --label-columns LIST, --template T   as rk-embed\n"
            "  --device D           auto (default) | cpu | cuda\n"
            "  --dtype T            auto (default: f32 on the CPU, bf16 on CUDA sm_80+, f16 on sm_75) | f32 (CPU)\n"
            "                       | bf16 | f16 (CUDA: 16-bit compute, fp32 master weights; f16 with loss scaling)\n"
            "  --grad-checkpointing recompute each layer's activations in the backward (less memory, ~1/3 more time)\n"
            "  --init-bias-prior    start the classifier biases at the train split's label log-odds instead of 0\n"
            "                       (with many rare labels the all-negative phase is then skipped; not HF's default)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --out PATH           results JSON (written atomically)\n"
            "  --help               this text\n");
}

struct opts {
    const char * model, * data, * test, * out, * split, * device, * outdir, * scheduler, * dtype;
    int64_t      epochs, batch, accum, max_length, eval_steps, save_steps, max_steps, threads, seed;
    double       lr, warmup, wd, max_grad_norm, fractions[3];
    bool         resume, grad_ckpt, bias_prior;
    struct rk_dataset_spec spec;
};

static void die(const char * msg) {
    fprintf(stderr, "rk-finetune: %s\n", msg);
    exit(1);
}
static void die_status(void) { die(rk_last_error()); }

static void parse(int argc, char ** argv, struct opts * o) {
    *o = (struct opts) { .device = "auto", .outdir = "runs/finetune", .scheduler = "linear", .dtype = "auto",
                         .epochs = 3, .batch = 16, .accum = 1, .max_length = 256, .max_steps = -1, .seed = 42,
                         .lr = 2e-5, .wd = 0.01, .max_grad_norm = 1.0, .fractions = { 0.80, 0.05, 0.15 } };
    enum { O_MODEL = 256, O_DATA, O_TEST, O_OUT, O_SPLIT, O_DEVICE, O_OUTDIR, O_SCHED, O_DTYPE, O_EPOCHS, O_BATCH,
           O_ACCUM, O_MAXLEN, O_EVAL, O_SAVE, O_MAXSTEPS, O_THREADS, O_SEED, O_LR, O_WARM, O_WD, O_CLIP, O_FRAC,
           O_RESUME, O_GCKPT, O_TEXT, O_LABEL, O_TMPL, O_HELP, O_BIASP };
    static const struct option lo[] = {
        { "model", 1, 0, O_MODEL },        { "data", 1, 0, O_DATA },             { "test", 1, 0, O_TEST },
        { "out", 1, 0, O_OUT },            { "split", 1, 0, O_SPLIT },           { "device", 1, 0, O_DEVICE },
        { "output-dir", 1, 0, O_OUTDIR },  { "scheduler", 1, 0, O_SCHED },       { "dtype", 1, 0, O_DTYPE },
        { "epochs", 1, 0, O_EPOCHS },      { "batch", 1, 0, O_BATCH },           { "grad-accum", 1, 0, O_ACCUM },
        { "max-length", 1, 0, O_MAXLEN },  { "eval-steps", 1, 0, O_EVAL },       { "save-steps", 1, 0, O_SAVE },
        { "max-steps", 1, 0, O_MAXSTEPS }, { "threads", 1, 0, O_THREADS },       { "seed", 1, 0, O_SEED },
        { "lr", 1, 0, O_LR },              { "warmup-ratio", 1, 0, O_WARM },     { "weight-decay", 1, 0, O_WD },
        { "max-grad-norm", 1, 0, O_CLIP }, { "fractions", 1, 0, O_FRAC },        { "resume", 0, 0, O_RESUME },
        { "grad-checkpointing", 0, 0, O_GCKPT }, { "text-columns", 1, 0, O_TEXT }, { "label-columns", 1, 0, O_LABEL },
        { "template", 1, 0, O_TMPL },      { "help", 0, 0, O_HELP },             { "init-bias-prior", 0, 0, O_BIASP },
        { 0, 0, 0, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        enum rk_status s = RK_OK;
        switch (c) {
            case O_MODEL:    o->model = optarg; break;
            case O_DATA:     o->data = optarg; break;
            case O_TEST:     o->test = optarg; break;
            case O_OUT:      o->out = optarg; break;
            case O_SPLIT:    o->split = optarg; break;
            case O_DEVICE:   o->device = optarg; break;
            case O_OUTDIR:   o->outdir = optarg; break;
            case O_SCHED:    o->scheduler = optarg; break;
            case O_DTYPE:    o->dtype = optarg; break;
            case O_EPOCHS:   s = rk_cli_int("--epochs", optarg, 1, 1000, &o->epochs); break;
            case O_BATCH:    s = rk_cli_int("--batch", optarg, 1, 1 << 16, &o->batch); break;
            case O_ACCUM:    s = rk_cli_int("--grad-accum", optarg, 1, 1 << 16, &o->accum); break;
            case O_MAXLEN:   s = rk_cli_int("--max-length", optarg, 2, 1 << 20, &o->max_length); break;
            case O_EVAL:     s = rk_cli_int("--eval-steps", optarg, 0, INT64_MAX, &o->eval_steps); break;
            case O_SAVE:     s = rk_cli_int("--save-steps", optarg, 0, INT64_MAX, &o->save_steps); break;
            case O_MAXSTEPS: s = rk_cli_int("--max-steps", optarg, 1, INT64_MAX, &o->max_steps); break;
            case O_THREADS:  s = rk_cli_int("--threads", optarg, 1, 4096, &o->threads); break;
            case O_SEED:     s = rk_cli_int("--seed", optarg, 0, INT64_MAX, &o->seed); break;
            case O_LR:       s = rk_cli_double("--lr", optarg, 0.0, 10.0, &o->lr); break;
            case O_WARM:     s = rk_cli_double("--warmup-ratio", optarg, 0.0, 1.0, &o->warmup); break;
            case O_WD:       s = rk_cli_double("--weight-decay", optarg, 0.0, 10.0, &o->wd); break;
            case O_CLIP:     s = rk_cli_double("--max-grad-norm", optarg, 0.0, 1e9, &o->max_grad_norm); break;
            case O_RESUME:   o->resume = true; break;
            case O_GCKPT:    o->grad_ckpt = true; break;
            case O_BIASP:    o->bias_prior = true; break;
            case O_TEXT:     o->spec.text_columns = optarg; break;
            case O_LABEL:    o->spec.label_columns = optarg; break;
            case O_TMPL:     o->spec.template_ = optarg; break;
            case O_FRAC:    s = rk_cli_fractions("--fractions", optarg, o->fractions); break;
            case O_HELP: usage(stdout); exit(0);
            default: {
                char m[256];
                snprintf(m, sizeof(m), "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
                die(m);
            }
        }
        if (s != RK_OK) die_status();
    }
    if (optind < argc) {
        char m[256];
        snprintf(m, sizeof(m), "unexpected argument '%s' (see --help)", argv[optind]);
        die(m);
    }
    if (!o->model) die("--model DIR is required (see --help)");
    if (!o->data) die("--data CSV is required (see --help)");
    if (strcmp(o->dtype, "auto") != 0 && strcmp(o->dtype, "f32") != 0 && strcmp(o->dtype, "bf16") != 0 &&
        strcmp(o->dtype, "f16") != 0)
        die("--dtype must be auto, f32, bf16 or f16");
}

/* The compute dtype for --dtype on be: the CPU trains in f32; CUDA in bf16 (sm_80+) or f16. */
static enum rk_dtype pick_dtype(const char * want, const struct rk_backend * be) {
    if (be->device == RK_DEVICE_CPU) {
        if (strcmp(want, "auto") != 0 && strcmp(want, "f32") != 0)
            die("--dtype: the CPU backend trains in f32 (bf16/f16 are for --device cuda)");
        return RK_DTYPE_F32;
    }
    if (strcmp(want, "auto") == 0) return be->act_dtype;
    if (strcmp(want, "f32") == 0) die("--dtype f32: CUDA training runs in bf16 or f16 (fp32 master weights)");
    if (strcmp(want, "bf16") == 0) {
        if (be->act_dtype != RK_DTYPE_BF16) die("--dtype bf16: this GPU (or the forced sm_75 path) has no bf16 GEMMs");
        return RK_DTYPE_BF16;
    }
    return RK_DTYPE_F16;
}

/* Token ids of every document of a set, padded to L per row, with lengths. */
struct tokens {
    int64_t   n, L;
    int32_t * ids;   /* (n, L) */
    int64_t * len;   /* (n) */
    float *   y;     /* (n, n_labels) 0/1 */
};

static void tokenize_set(struct tokens * tk, const struct rk_wordpiece * tok, const struct rk_dataset * d,
                         const int64_t * idx, int64_t n, int64_t L) {
    tk->n   = n;
    tk->L   = L;
    tk->ids = rk_xcalloc((size_t) (n * L + 1), sizeof(int32_t));
    tk->len = rk_xcalloc((size_t) (n + 1), sizeof(int64_t));
    tk->y   = rk_xcalloc((size_t) (n * d->n_labels + 1), sizeof(float));
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; i++) tk->len[i] = rk_wordpiece_encode(tok, d->texts[idx[i]], tk->ids + i * L, L);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d->n_labels; j++) tk->y[i * d->n_labels + j] = d->labels[idx[i] * d->n_labels + j];
    }
}

static void tokens_free(struct tokens * tk) {
    free(tk->ids);
    free(tk->len);
    free(tk->y);
}

/* A padded batch of the documents rows[0..B) of tk (T = longest). Buffers are sized for B_max x L. */
struct batch_buf {
    int32_t * ids, * mask;
    float *   y;
};

static struct rk_batch make_batch(struct batch_buf * bb, const struct tokens * tk, const int64_t * rows, int64_t B,
                                  int64_t nl, int32_t pad) {
    int64_t T = 1;
    for (int64_t r = 0; r < B; r++) T = tk->len[rows[r]] > T ? tk->len[rows[r]] : T;
    for (int64_t r = 0; r < B; r++) {
        const int64_t d = rows[r];
        for (int64_t t = 0; t < T; t++) {
            const bool real  = t < tk->len[d];
            bb->ids[r * T + t]  = real ? tk->ids[d * tk->L + t] : pad;
            bb->mask[r * T + t] = real;
        }
        memcpy(bb->y + r * nl, tk->y + d * nl, sizeof(float) * (size_t) nl);
    }
    return (struct rk_batch) { .ids = bb->ids, .mask = bb->mask, .types = NULL, .labels = bb->y, .B = B, .T = T };
}

/*
 * Predictions for every document of tk (logit > thr[j], thr NULL = 0, i.e. probability > 0.5), then the metrics
 * against its labels. all_logits (tk->n, nl) receives the logits when not NULL.
 */
static enum rk_status evaluate(struct rk_bert_cls * m, const struct tokens * tk, int64_t nl, int64_t B, int32_t pad,
                               const float * thr, float * all_logits, struct rk_metrics * met) {
    struct batch_buf bb = { rk_xmalloc(sizeof(int32_t) * (size_t) (B * tk->L)),
                            rk_xmalloc(sizeof(int32_t) * (size_t) (B * tk->L)), rk_xmalloc(sizeof(float) * (size_t) (B * nl)) };
    int64_t * rows   = rk_xmalloc(sizeof(int64_t) * (size_t) B);
    float *   logits = rk_xmalloc(sizeof(float) * (size_t) (B * nl));
    uint8_t * yhat   = rk_xmalloc((size_t) (tk->n * nl + 1));
    uint8_t * ytrue  = rk_xmalloc((size_t) (tk->n * nl + 1));
    /* documents in order of length, so batches carry little padding */
    int64_t * order = rk_xmalloc(sizeof(int64_t) * (size_t) (tk->n + 1));
    for (int64_t i = 0; i < tk->n; i++) order[i] = i;
    for (int64_t i = 1; i < tk->n; i++) { /* insertion sort on lengths <= L: runs once per evaluation */
        const int64_t x = order[i];
        int64_t       j = i - 1;
        while (j >= 0 && tk->len[order[j]] > tk->len[x]) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = x;
    }
    enum rk_status s = RK_OK;
    for (int64_t b0 = 0; b0 < tk->n && s == RK_OK; b0 += B) {
        const int64_t nb = tk->n - b0 < B ? tk->n - b0 : B;
        for (int64_t r = 0; r < nb; r++) rows[r] = order[b0 + r];
        struct rk_batch b = make_batch(&bb, tk, rows, nb, nl, pad);
        s = rk_bert_cls_forward(m, b.ids, b.mask, NULL, b.B, b.T, NULL, NULL, logits, false);
        for (int64_t r = 0; r < nb && s == RK_OK; r++) {
            for (int64_t j = 0; j < nl; j++) {
                yhat[rows[r] * nl + j]  = logits[r * nl + j] > (thr ? thr[j] : 0.0f);
                ytrue[rows[r] * nl + j] = tk->y[rows[r] * nl + j] > 0.5f;
                if (all_logits) all_logits[rows[r] * nl + j] = logits[r * nl + j];
            }
        }
    }
    free(order);
    if (s == RK_OK) s = rk_metrics_compute(ytrue, yhat, tk->n, nl, met);
    free(bb.ids);
    free(bb.mask);
    free(bb.y);
    free(rows);
    free(logits);
    free(yhat);
    free(ytrue);
    return s;
}

/*
 * Per label, the probability threshold in {0.05, 0.10, ..., 0.95} with the best F1 on val (ties: the one nearest
 * 0.5; a label without positives in val keeps 0.5). Returned as logit thresholds (nl), malloc'd.
 */
static float * tune_thresholds(const float * logits, const float * y, int64_t n, int64_t nl) {
    float * thr = rk_xmalloc(sizeof(float) * (size_t) nl);
    for (int64_t j = 0; j < nl; j++) {
        double best_f1 = -1.0, best_p = 0.5;
        int64_t pos = 0;
        for (int64_t i = 0; i < n; i++) pos += y[i * nl + j] > 0.5f;
        for (int k = 1; k <= 19 && pos > 0; k++) {
            const double pt = 0.05 * k, lt = log(pt / (1.0 - pt));
            int64_t tp = 0, fp = 0, fn = 0;
            for (int64_t i = 0; i < n; i++) {
                const bool p = logits[i * nl + j] > lt, t = y[i * nl + j] > 0.5f;
                tp += p && t;
                fp += p && !t;
                fn += !p && t;
            }
            const double f1 = tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
            if (f1 > best_f1 + 1e-12 || (fabs(f1 - best_f1) <= 1e-12 && fabs(pt - 0.5) < fabs(best_p - 0.5))) {
                best_f1 = f1;
                best_p  = pt;
            }
        }
        thr[j] = (float) log(best_p / (1.0 - best_p));
    }
    return thr;
}

/* mkdir -p */
static enum rk_status make_dirs(const char * path) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char * p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return rk_set_error(RK_STATUS_IO, "%s: cannot create: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return rk_set_error(RK_STATUS_IO, "%s: cannot create: %s", buf, strerror(errno));
    return RK_OK;
}

/* The loss curve (and validation micro F1 when there is one) as an SVG a browser opens. */
static char * loss_svg(const float * loss, int64_t n, const double * val_step, const double * val_f1, int64_t nv) {
    const double W = 640, H = 360, ml = 50, mr = 20, mt = 20, mb = 40;
    float lmax = 1e-6f;
    for (int64_t i = 0; i < n; i++) lmax = loss[i] > lmax ? loss[i] : lmax;
    size_t cap = 4096 + (size_t) (n + nv) * 48;
    char * s   = rk_xmalloc(cap);
    size_t k   = 0;
    k += (size_t) snprintf(s + k, cap - k,
                           "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
                           "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n"
                           "<text x='%.0f' y='14'>training loss (blue, 0..%.3g) and validation micro F1 (red, 0..1) "
                           "by optimizer step (1..%lld)</text>\n<polyline fill='none' stroke='#1f77b4' points='",
                           W, H, ml, lmax, (long long) n);
    for (int64_t i = 0; i < n; i++) {
        const double x = ml + (W - ml - mr) * (n > 1 ? (double) i / (double) (n - 1) : 0.5);
        const double y = H - mb - (H - mt - mb) * loss[i] / lmax;
        k += (size_t) snprintf(s + k, cap - k, "%.1f,%.1f ", x, y);
    }
    k += (size_t) snprintf(s + k, cap - k, "'/>\n<polyline fill='none' stroke='#d62728' points='");
    for (int64_t i = 0; i < nv; i++) {
        const double x = ml + (W - ml - mr) * (n > 1 ? (val_step[i] - 1) / (double) (n - 1) : 0.5);
        const double y = H - mb - (H - mt - mb) * val_f1[i];
        k += (size_t) snprintf(s + k, cap - k, "%.1f,%.1f ", x, y);
    }
    snprintf(s + k, cap - k,
             "'/>\n<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='black'/>\n"
             "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='black'/>\n</svg>\n",
             ml, H - mb, W - mr, H - mb, ml, mt, ml, H - mb);
    return s;
}

/* config.json of the fine-tuned model: the input config with the head's labels, so transformers loads it. */
static enum rk_status write_model_config(const char * model_dir, const char * out_dir, char ** label_names, int64_t nl) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/config.json", model_dir);
    cJSON * cfg = NULL;
    RK_TRY(rk_json_load_file(path, &cfg));
    cJSON_DeleteItemFromObject(cfg, "architectures");
    cJSON * arch = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("BertForSequenceClassification"));
    cJSON_DeleteItemFromObject(cfg, "problem_type");
    cJSON_AddStringToObject(cfg, "problem_type", "multi_label_classification");
    cJSON_DeleteItemFromObject(cfg, "id2label");
    cJSON_DeleteItemFromObject(cfg, "label2id");
    cJSON * id2 = cJSON_AddObjectToObject(cfg, "id2label"), * l2i = cJSON_AddObjectToObject(cfg, "label2id");
    for (int64_t j = 0; j < nl; j++) {
        char k[32];
        snprintf(k, sizeof(k), "%lld", (long long) j);
        cJSON_AddStringToObject(id2, k, label_names[j]);
        cJSON_AddNumberToObject(l2i, label_names[j], (double) j);
    }
    snprintf(path, sizeof(path), "%s/config.json", out_dir);
    enum rk_status s = rk_write_json_atomic(path, cfg);
    cJSON_Delete(cfg);
    return s;
}

/* Copies the tokenizer files the model folder has into out_dir (so the saved model is complete). */
static void copy_tokenizer_files(const char * model_dir, const char * out_dir) {
    const char * files[] = { "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char src[4400], dst[4400];
        snprintf(src, sizeof(src), "%s/%s", model_dir, files[i]);
        snprintf(dst, sizeof(dst), "%s/%s", out_dir, files[i]);
        FILE * in = fopen(src, "rb");
        if (!in) continue;
        FILE * out = fopen(dst, "wb");
        if (out) {
            char   buf[65536];
            size_t k;
            while ((k = fread(buf, 1, sizeof(buf), in)) > 0) {
                if (fwrite(buf, 1, k, out) != k) break;
            }
            fclose(out);
        }
        fclose(in);
    }
}

int main(int argc, char ** argv) {
    struct opts o;
    parse(argc, argv, &o);

    /* ---- inputs */
    struct rk_cli_data cd;
    if (rk_cli_data_load(&cd, o.data, o.test, &o.spec) != RK_OK) die_status();
    struct rk_backend * be = rk_backend_from_name(o.device, (int) o.threads);
    if (!be) die_status();
    be->act_dtype = pick_dtype(o.dtype, be);
    struct rk_wordpiece * tok = NULL;
    if (rk_wordpiece_load(o.model, &tok) != RK_OK) die_status();
    const int64_t nl = cd.data->n_labels;
    struct rk_bert_cls * m = NULL;
    if (rk_bert_cls_load(o.model, nl, (uint64_t) o.seed, be, &m) != RK_OK) die_status();
    m->ignore_attn_dropout = true; /* the fused attention op has no dropout on the probabilities */
    m->grad_checkpointing  = o.grad_ckpt;
    enum rk_sched_kind sk;
    if (rk_schedule_kind_from_name(o.scheduler, &sk) != RK_OK) die_status();
    char ckpt[4200], mdir[4200], path[4400];
    snprintf(ckpt, sizeof(ckpt), "%s/checkpoint", o.outdir);
    snprintf(mdir, sizeof(mdir), "%s/model", o.outdir);
    if (o.resume && rk_checkpoint_resolve(ckpt, path, sizeof(path)) != RK_OK) die_status();
    /* every input read: the split may be written now */
    if (rk_cli_data_split(&cd, o.data, o.split, (uint64_t) o.seed, o.fractions) != RK_OK) die_status();
    fprintf(stderr, "rk-finetune: split %s %s\n", cd.split_path, cd.split_created ? "created" : "loaded");

    /* ---- tokens */
    const int64_t L = o.max_length < m->bert->cfg.max_position ? o.max_length : m->bert->cfg.max_position;
    int64_t n_tr = 0, n_va = 0, n_te = 0;
    int64_t * itr = rk_cli_data_indices(&cd, RK_SPLIT_TRAIN, &n_tr);
    int64_t * iva = rk_cli_data_indices(&cd, RK_SPLIT_VAL, &n_va);
    int64_t * ite = rk_cli_data_indices(&cd, RK_SPLIT_TEST, &n_te);
    if (n_tr == 0 || n_te == 0) die("the split leaves no training or no test documents");
    struct tokens ttr, tva, tte;
    tokenize_set(&ttr, tok, cd.data, itr, n_tr, L);
    tokenize_set(&tva, tok, cd.data, iva, n_va, L);
    tokenize_set(&tte, tok, rk_cli_data_source(&cd, RK_SPLIT_TEST), ite, n_te, L);
    const int32_t pad = rk_wordpiece_special(tok)->pad;

    if (o.bias_prior && !o.resume) { /* log-odds of each label's train frequency, clamped to [1e-4, 1 - 1e-4] */
        float * b = rk_xmalloc(sizeof(float) * (size_t) nl);
        for (int64_t j = 0; j < nl; j++) {
            double pj = 0;
            for (int64_t i = 0; i < n_tr; i++) pj += ttr.y[i * nl + j];
            pj   = fmin(fmax(pj / (double) n_tr, 1e-4), 1.0 - 1e-4);
            b[j] = (float) log(pj / (1.0 - pj));
        }
        if (rk_tensor_set_f32(&m->head.cls_b, b) != RK_OK) die_status();
        free(b);
    }

    /* ---- optimizer and schedule */
    const int64_t per_step   = o.batch * o.accum;
    const int64_t steps_ep   = (n_tr + per_step - 1) / per_step;
    int64_t       total      = steps_ep * o.epochs;
    if (o.max_steps > 0 && o.max_steps < total) total = o.max_steps;
    const int64_t sched_total = steps_ep * o.epochs; /* the schedule spans the whole run even when stopped early */
    struct rk_adamw_config ac = rk_adamw_config_default(o.lr, o.wd);
    struct rk_schedule sc     = rk_schedule_make(sk, o.lr, rk_schedule_warmup_steps(o.warmup, sched_total), sched_total);
    struct rk_trainer tr;
    if (rk_trainer_init(&tr, m, &ac, &sc, o.max_grad_norm) != RK_OK) die_status();
    /* 16-bit compute: the fp32 masters start from the checkpoint's values, not from their 16-bit rounding */
    if (!o.resume && rk_trainer_master_from_checkpoint(&tr, o.model) != RK_OK) die_status();
    if (make_dirs(o.outdir) != RK_OK) die_status();
    cJSON * run_cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(run_cfg, "model", o.model);
    cJSON_AddStringToObject(run_cfg, "data", o.data);
    cJSON_AddNumberToObject(run_cfg, "lr", o.lr);
    cJSON_AddNumberToObject(run_cfg, "batch", (double) o.batch);
    cJSON_AddNumberToObject(run_cfg, "grad_accum", (double) o.accum);
    cJSON_AddNumberToObject(run_cfg, "epochs", (double) o.epochs);
    cJSON_AddNumberToObject(run_cfg, "max_length", (double) L);
    cJSON_AddStringToObject(run_cfg, "scheduler", o.scheduler);
    cJSON_AddNumberToObject(run_cfg, "warmup_ratio", o.warmup);
    cJSON_AddNumberToObject(run_cfg, "weight_decay", o.wd);
    cJSON_AddNumberToObject(run_cfg, "seed", (double) o.seed);

    struct rk_trainer_state ts = { .rng_seed = (uint64_t) o.seed, .loss_scale = 1.0, .best_metric = NAN, .best_step = -1 };
    if (o.resume) {
        if (rk_trainer_load(&tr, ckpt, &ts) != RK_OK) die_status();
        m->step = ts.rng_offset;
        fprintf(stderr, "rk-finetune: resumed from %s at step %lld\n", ckpt, (long long) ts.step);
    }

    /* ---- training */
    float *  losses   = rk_xcalloc((size_t) (total + 1), sizeof(float));
    double * val_step = rk_xcalloc((size_t) (total + o.epochs + 2), sizeof(double));
    double * val_f1   = rk_xcalloc((size_t) (total + o.epochs + 2), sizeof(double));
    int64_t  nv       = 0;
    cJSON *  log      = cJSON_CreateObject();
    cJSON *  log_steps = cJSON_AddArrayToObject(log, "steps"), * log_evals = cJSON_AddArrayToObject(log, "evals");
    struct batch_buf bb[64];
    const int64_t n_micro = o.accum < 64 ? o.accum : 64;
    if (o.accum > 64) die("--grad-accum: at most 64");
    for (int64_t i = 0; i < n_micro; i++) {
        bb[i] = (struct batch_buf) { rk_xmalloc(sizeof(int32_t) * (size_t) (o.batch * L)),
                                     rk_xmalloc(sizeof(int32_t) * (size_t) (o.batch * L)),
                                     rk_xmalloc(sizeof(float) * (size_t) (o.batch * nl)) };
    }
    int64_t * perm = rk_xmalloc(sizeof(int64_t) * (size_t) n_tr);
    struct rk_batch micro[64];
    const double t0 = rk_now();
    double last_print = t0, tokens_done = 0;
    int64_t step = ts.step;
    const int64_t first_step = ts.step; /* for rates: ts.step moves on at each save */
    fprintf(stderr, "rk-finetune: %lld train / %lld val / %lld test documents, %lld labels; %lld steps (%lld per epoch)\n",
            (long long) n_tr, (long long) n_va, (long long) n_te, (long long) nl, (long long) total, (long long) steps_ep);
    for (int64_t ep = step / steps_ep; ep < o.epochs && step < total; ep++) {
        /* the epoch's order: a seeded shuffle, the same on a resumed run */
        struct rk_rng rng;
        rk_rng_seed(&rng, (uint64_t) o.seed * 1000003u + (uint64_t) ep);
        for (int64_t i = 0; i < n_tr; i++) perm[i] = i;
        for (int64_t i = n_tr - 1; i > 0; i--) {
            const int64_t j = (int64_t) rk_rng_below(&rng, (uint64_t) i + 1);
            const int64_t x = perm[i];
            perm[i]         = perm[j];
            perm[j]         = x;
        }
        for (int64_t s_ep = step - ep * steps_ep; s_ep < steps_ep && step < total; s_ep++) {
            int     n_mb = 0;
            int64_t pos  = s_ep * per_step;
            for (int64_t a = 0; a < o.accum && pos < n_tr; a++) {
                const int64_t B = n_tr - pos < o.batch ? n_tr - pos : o.batch;
                micro[n_mb]     = make_batch(&bb[n_mb], &ttr, perm + pos, B, nl, pad);
                for (int64_t r = 0; r < B; r++) tokens_done += (double) ttr.len[perm[pos + r]];
                pos += B;
                n_mb++;
            }
            float  loss = 0, gnorm = 0;
            double lr   = 0;
            bool   skipped = false;
            if (rk_trainer_step(&tr, micro, n_mb, &loss, &gnorm, &lr, &skipped) != RK_OK) die_status();
            losses[step] = loss;
            step++;
            cJSON * e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "step", (double) step);
            cJSON_AddNumberToObject(e, "epoch", (double) ep);
            cJSON_AddNumberToObject(e, "loss", loss);
            cJSON_AddNumberToObject(e, "lr", lr);
            cJSON_AddNumberToObject(e, "grad_norm", gnorm);
            cJSON_AddItemToArray(log_steps, e);
            const double now = rk_now();
            if (now - last_print >= 2.0 || step == total) {
                const double el = now - t0, rate = (double) (step - first_step) / el;
                fprintf(stderr, "step %lld/%lld epoch %lld loss %.4f lr %.3g grad-norm %.3f | %.0f tokens/s, ETA %02d:%02d\n",
                        (long long) step, (long long) total, (long long) ep + 1, loss, lr, gnorm, tokens_done / el,
                        (int) ((double) (total - step) / rate / 60), (int) ((double) (total - step) / rate) % 60);
                last_print = now;
            }
            const bool end_ep = s_ep == steps_ep - 1 || step == total;
            if (n_va > 0 && ((o.eval_steps > 0 && step % o.eval_steps == 0) || (o.eval_steps == 0 && end_ep))) {
                struct rk_metrics vm;
                if (evaluate(m, &tva, nl, o.batch, pad, NULL, NULL, &vm) != RK_OK) die_status();
                fprintf(stderr, "eval step %lld: val micro F1 %.4f macro F1 %.4f\n", (long long) step, vm.micro_f1, vm.macro_f1);
                val_step[nv] = (double) step;
                val_f1[nv++] = vm.micro_f1;
                cJSON * ev = cJSON_CreateObject();
                cJSON_AddNumberToObject(ev, "step", (double) step);
                cJSON_AddNumberToObject(ev, "val_micro_f1", vm.micro_f1);
                cJSON_AddNumberToObject(ev, "val_macro_f1", vm.macro_f1);
                cJSON_AddItemToArray(log_evals, ev);
                if (isnan(ts.best_metric) || vm.micro_f1 > ts.best_metric) {
                    ts.best_metric = vm.micro_f1;
                    ts.best_step   = step;
                }
                rk_metrics_free(&vm);
            }
            if ((o.save_steps > 0 && step % o.save_steps == 0) || (o.save_steps == 0 && end_ep)) {
                ts.step = step;
                ts.epoch = end_ep && s_ep == steps_ep - 1 ? ep + 1 : ep;
                ts.sched_step = step;
                ts.rng_offset = m->step;
                if (rk_trainer_save(&tr, ckpt, &ts, run_cfg) != RK_OK) die_status();
            }
        }
    }
    const double train_s = rk_now() - t0;

    /* ---- final model, report */
    if (make_dirs(mdir) != RK_OK) die_status();
    {
        snprintf(path, sizeof(path), "%s/model.safetensors", mdir);
        if (rk_trainer_export(&tr, path) != RK_OK) die_status();
        if (write_model_config(o.model, mdir, cd.data->label_names, nl) != RK_OK) die_status();
        copy_tokenizer_files(o.model, mdir);
    }
    struct rk_metrics met;
    if (evaluate(m, &tte, nl, o.batch, pad, NULL, NULL, &met) != RK_OK) die_status();
    /* per-label thresholds tuned on val (reported separately; the main figures use 0.5) */
    float * thr = NULL;
    struct rk_metrics met_t = { 0 };
    if (n_va > 0) {
        float * vl = rk_xmalloc(sizeof(float) * (size_t) (n_va * nl));
        struct rk_metrics vm;
        if (evaluate(m, &tva, nl, o.batch, pad, NULL, vl, &vm) != RK_OK) die_status();
        rk_metrics_free(&vm);
        thr = tune_thresholds(vl, tva.y, n_va, nl);
        free(vl);
        if (evaluate(m, &tte, nl, o.batch, pad, thr, NULL, &met_t) != RK_OK) die_status();
    }
    printf("rk-finetune  model=%s  data=%s  eval=%s  device=%s  epochs=%lld lr=%g batch=%lldx%lld max_length=%lld\n",
           o.model, o.data, o.test ? o.test : "test split", be->name, (long long) o.epochs, o.lr, (long long) o.batch,
           (long long) o.accum, (long long) L);
    printf("train %lld docs, %lld steps in %.1f s (%.0f tokens/s); eval %lld docs, %lld labels\n\n", (long long) n_tr,
           (long long) (step - first_step), train_s, tokens_done / train_s, (long long) n_te, (long long) nl);
    rk_print_metrics(stdout, &met, cd.data->label_names);
    if (thr) {
        printf("\nwith per-label thresholds tuned on val: micro F1 %.4f, macro F1 %.4f\n", met_t.micro_f1, met_t.macro_f1);
    }

    snprintf(path, sizeof(path), "%s/log.json", o.outdir);
    if (rk_write_json_atomic(path, log) != RK_OK) die_status();
    char * svg = loss_svg(losses, step, val_step, val_f1, nv);
    snprintf(path, sizeof(path), "%s/loss.svg", o.outdir);
    if (rk_write_file_atomic(path, svg) != RK_OK) die_status();
    free(svg);
    if (o.out) {
        cJSON * j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "technique", "finetune");
        cJSON_AddItemToObject(j, "config", cJSON_Duplicate(run_cfg, true));
        cJSON_AddStringToObject(j, "eval", o.test ? o.test : "test split");
        cJSON_AddStringToObject(j, "split", cd.split_path);
        cJSON_AddStringToObject(j, "device", be->name);
        cJSON_AddNumberToObject(j, "steps", (double) step);
        cJSON_AddNumberToObject(j, "train_seconds", train_s);
        cJSON_AddNumberToObject(j, "tokens_per_second", tokens_done / train_s);
        cJSON_AddNumberToObject(j, "final_loss", step > 0 ? losses[step - 1] : 0.0);
        cJSON_AddItemToObject(j, "metrics", rk_metrics_to_json(&met, cd.data->label_names));
        if (thr) {
            cJSON_AddItemToObject(j, "metrics_val_tuned_thresholds", rk_metrics_to_json(&met_t, cd.data->label_names));
            cJSON * ta = cJSON_AddArrayToObject(j, "val_tuned_thresholds");
            for (int64_t k = 0; k < nl; k++) cJSON_AddItemToArray(ta, cJSON_CreateNumber(1.0 / (1.0 + exp(-thr[k]))));
        }
        if (rk_write_json_atomic(o.out, j) != RK_OK) die_status();
        cJSON_Delete(j);
    }
    fprintf(stderr, "rk-finetune: model in %s, log in %s/log.json, curve in %s/loss.svg\n", mdir, o.outdir, o.outdir);
    rk_metrics_free(&met);
    rk_metrics_free(&met_t);
    free(thr);
    for (int64_t i = 0; i < n_micro; i++) {
        free(bb[i].ids);
        free(bb[i].mask);
        free(bb[i].y);
    }
    free(perm);
    free(losses);
    free(val_step);
    free(val_f1);
    cJSON_Delete(log);
    cJSON_Delete(run_cfg);
    rk_trainer_free(&tr);
    tokens_free(&ttr);
    tokens_free(&tva);
    tokens_free(&tte);
    free(itr);
    free(iva);
    free(ite);
    rk_bert_cls_free(m);
    rk_wordpiece_free(tok);
    rk_backend_free(be);
    rk_cli_data_free(&cd);
    return 0;
}
