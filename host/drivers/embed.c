/*
 * rk-embed: technique 1. Encoder hidden states -> pooled sentence embeddings -> one-vs-rest classifier.
 *
 *   rk-embed --model DIR --data CSV [--pooling cls|mean|max] [--classifier forest|logreg] [--max-length N]
 *            [--batch N] [--threads N] [--seed N] [--test CSV] [--out results.json] [--device auto|cpu|cuda] ...
 *
 * Embeds the train split and the evaluation documents (the test split, or every row of --test), fits the
 * classifier on the train split's embeddings, and reports micro/macro F1 and per-label scores: a table on
 * stdout, the same figures as JSON in --out. Progress goes to stderr.
 */
#include "backend.h"
#include "check.h"
#include "classify/metrics.h"
#include "classify/ovr.h"
#include "cli.h"
#include "datasets/dataset.h"
#include "datasets/split.h"
#include "models/bert.h"
#include "models/encode.h"
#include "tokenizer/wordpiece.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE * f) {
    fprintf(f,
            "usage: rk-embed --model DIR --data CSV [options]\n"
            "\n"
            "Technique 1: sentence embeddings from a BERT-family encoder + a one-vs-rest classifier.\n"
            "\n"
            "  --model DIR          Hugging Face model folder (config.json, model.safetensors, vocab.txt or\n"
            "                       tokenizer.json; sentence-transformers pooling files are honoured)\n"
            "  --data CSV           labelled data, gzip or plain (ID, text columns, 0/1 label columns)\n"
            "  --test CSV           evaluate on this labelled file (same labels) instead of the test split;\n"
            "                       the classifier is still fitted on the train split of --data\n"
            "  --pooling MODE       cls | mean | max (default: the model's sentence-transformers pooling, else cls)\n"
            "  --normalize 0|1      L2-normalise embeddings (default: as the model's modules.json says)\n"
            "  --classifier KIND    forest (default; 100 trees, sklearn defaults) | logreg (L2, C=1)\n"
            "  --max-length N       tokens per document incl. [CLS]/[SEP] (default: model's max_seq_length or 512)\n"
            "  --batch N            documents per forward pass (default 32)\n"
            "  --threads N          CPU threads (default: all cores)\n"
            "  --seed N             seed of the split and the forest (default 42)\n"
            "  --split PATH         split file to use or create (default splits/<data>.seed<seed>.csv)\n"
            "  --fractions A,B,C    train/val/test fractions when a split is created (default 0.80,0.05,0.15)\n"
            "  --text-columns LIST  comma list of text columns (default: auto: TITLE, BODY, ABSTRACT, TEXT)\n"
            "  --label-columns LIST comma list of label columns (default: every column after the text)\n"
            "  --template T         text template, e.g. 'Title: {TITLE}\\nBody: {BODY}'\n"
            "  --device D           auto (default) | cpu | cuda\n"
            "  --out PATH           results JSON (written atomically)\n"
            "  --cache PATH         embedding cache: reused when it matches the model, options and documents,\n"
            "                       else (re)computed and saved (to compare classifiers without re-embedding)\n"
            "  --help               this text\n");
}

struct opts {
    const char * model, * data, * test, * out, * split, * device, * cache;
    const char * pooling, * classifier;
    int64_t      normalize; /* -1 = model default */
    int64_t      max_length, batch, threads, seed;
    double       fractions[3];
    struct rk_dataset_spec spec;
};

static void die(const char * msg) {
    fprintf(stderr, "rk-embed: %s\n", msg);
    exit(1);
}

static void die_status(void) { die(rk_last_error()); }

static void parse(int argc, char ** argv, struct opts * o) {
    *o = (struct opts) { .device = "auto", .classifier = "forest", .normalize = -1, .batch = 32, .seed = 42,
                         .fractions = { 0.80, 0.05, 0.15 } };
    enum { O_MODEL = 256, O_DATA, O_TEST, O_OUT, O_SPLIT, O_DEVICE, O_POOL, O_CLF, O_NORM, O_MAXLEN, O_BATCH,
           O_THREADS, O_SEED, O_FRAC, O_TEXT, O_LABEL, O_TMPL, O_HELP, O_CACHE };
    static const struct option lo[] = {
        { "model", 1, 0, O_MODEL },        { "data", 1, 0, O_DATA },          { "test", 1, 0, O_TEST },
        { "out", 1, 0, O_OUT },            { "split", 1, 0, O_SPLIT },        { "device", 1, 0, O_DEVICE },
        { "pooling", 1, 0, O_POOL },       { "classifier", 1, 0, O_CLF },     { "normalize", 1, 0, O_NORM },
        { "max-length", 1, 0, O_MAXLEN },  { "batch", 1, 0, O_BATCH },        { "threads", 1, 0, O_THREADS },
        { "seed", 1, 0, O_SEED },          { "fractions", 1, 0, O_FRAC },     { "text-columns", 1, 0, O_TEXT },
        { "label-columns", 1, 0, O_LABEL }, { "template", 1, 0, O_TMPL },     { "help", 0, 0, O_HELP },
        { "cache", 1, 0, O_CACHE },
        { 0, 0, 0, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        enum rk_status s = RK_OK;
        switch (c) {
            case O_MODEL:   o->model = optarg; break;
            case O_DATA:    o->data = optarg; break;
            case O_TEST:    o->test = optarg; break;
            case O_OUT:     o->out = optarg; break;
            case O_SPLIT:   o->split = optarg; break;
            case O_DEVICE:  o->device = optarg; break;
            case O_POOL:    o->pooling = optarg; break;
            case O_CLF:     o->classifier = optarg; break;
            case O_NORM:    s = rk_cli_int("--normalize", optarg, 0, 1, &o->normalize); break;
            case O_MAXLEN:  s = rk_cli_int("--max-length", optarg, 2, 1 << 20, &o->max_length); break;
            case O_BATCH:   s = rk_cli_int("--batch", optarg, 1, 1 << 16, &o->batch); break;
            case O_THREADS: s = rk_cli_int("--threads", optarg, 1, 4096, &o->threads); break;
            case O_SEED:    s = rk_cli_int("--seed", optarg, 0, INT64_MAX, &o->seed); break;
            case O_TEXT:    o->spec.text_columns = optarg; break;
            case O_LABEL:   o->spec.label_columns = optarg; break;
            case O_TMPL:    o->spec.template_ = optarg; break;
            case O_CACHE:   o->cache = optarg; break;
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
    if (o->pooling && strcmp(o->pooling, "cls") && strcmp(o->pooling, "mean") && strcmp(o->pooling, "max"))
        die("--pooling: expected cls, mean or max");
    if (strcmp(o->classifier, "forest") && strcmp(o->classifier, "logreg")) die("--classifier: expected forest or logreg");
}

/* Copies the rows idx[0..n) of the data set's labels into a dense (n, L) array. */
static uint8_t * gather_labels(const struct rk_dataset * d, const int64_t * idx, int64_t n) {
    uint8_t * y = rk_xmalloc((size_t) (n * d->n_labels));
    for (int64_t i = 0; i < n; i++) memcpy(y + i * d->n_labels, d->labels + idx[i] * d->n_labels, (size_t) d->n_labels);
    return y;
}

int main(int argc, char ** argv) {
    struct opts o;
    parse(argc, argv, &o);

    /* ---- inputs: everything that can fail on bad input is checked before the long work starts */
    struct rk_cli_data cd;
    if (rk_cli_data_load(&cd, o.data, o.test, &o.spec) != RK_OK) die_status();
    struct rk_dataset * data = cd.data, * test = cd.test;
    struct rk_backend * be = rk_backend_from_name(o.device, (int) o.threads);
    if (!be) die_status();
    struct rk_wordpiece * tok = NULL;
    if (rk_wordpiece_load(o.model, &tok) != RK_OK) die_status();
    struct rk_bert * model = NULL;
    if (rk_bert_load(o.model, be, &model) != RK_OK) die_status();

    /* the split is written only once every input has been read successfully */
    if (rk_cli_data_split(&cd, o.data, o.split, (uint64_t) o.seed, o.fractions) != RK_OK) die_status();
    const char * split_path = cd.split_path;
    const uint8_t * fold    = cd.fold;
    fprintf(stderr, "rk-embed: split %s %s\n", split_path, cd.split_created ? "created" : "loaded");

    enum rk_pool_mode pool = model->pooling.present ? model->pooling.mode : RK_POOL_CLS;
    if (o.pooling) pool = !strcmp(o.pooling, "cls") ? RK_POOL_CLS : !strcmp(o.pooling, "mean") ? RK_POOL_MEAN : RK_POOL_MAX;
    const bool normalize = o.normalize >= 0 ? o.normalize == 1 : model->pooling.normalize;
    const char * pool_name = pool == RK_POOL_CLS ? "cls" : pool == RK_POOL_MEAN ? "mean" : "max";

    /* ---- documents: train split, then the evaluation set */
    (void) fold;
    int64_t n_train = 0, n_eval = 0;
    int64_t * itrain = rk_cli_data_indices(&cd, RK_SPLIT_TRAIN, &n_train);
    int64_t * ieval  = rk_cli_data_indices(&cd, RK_SPLIT_TEST, &n_eval);
    const struct rk_dataset * evd = rk_cli_data_source(&cd, RK_SPLIT_TEST);
    if (n_train == 0 || n_eval == 0) die("the split leaves no training or no evaluation documents");

    const int64_t n_all = n_train + n_eval, C = model->cfg.hidden_size;
    const char ** texts = rk_xmalloc(sizeof(char *) * (size_t) n_all);
    for (int64_t i = 0; i < n_train; i++) texts[i] = data->texts[itrain[i]];
    for (int64_t i = 0; i < n_eval; i++) texts[n_train + i] = evd->texts[ieval[i]];
    float * X = rk_xmalloc(sizeof(float) * (size_t) (n_all * C));
    struct rk_encode_opts eo = { .max_length = o.max_length, .batch = o.batch, .pool = pool, .normalize = normalize,
                                 .progress = true };
    struct rk_encode_stats es = { 0 };
    const uint64_t key = rk_embeddings_key(o.model, &eo, texts, n_all);
    bool cached = false;
    if (o.cache) {
        enum rk_status cs = rk_embeddings_load(o.cache, key, n_all, C, X);
        if (cs == RK_OK) {
            cached = true;
            fprintf(stderr, "rk-embed: embeddings from cache %s\n", o.cache);
        } else if (cs != RK_STATUS_IO) { /* a cache is only a cache: a stale or broken one is recomputed */
            fprintf(stderr, "rk-embed: %s; recomputing\n", rk_last_error());
        }
        rk_clear_error();
    }
    if (!cached) {
        fprintf(stderr, "rk-embed: embedding %lld documents on %s (%s pooling%s)\n", (long long) n_all, be->name,
                pool_name, normalize ? ", normalised" : "");
        if (rk_encode_texts_stats(model, tok, texts, n_all, &eo, X, &es) != RK_OK) die_status();
        if (o.cache && rk_embeddings_save(o.cache, key, n_all, C, X) != RK_OK) die_status();
    }
    const double docs_per_s = cached || es.seconds <= 0 ? 0.0 : (double) n_all / es.seconds;

    /* ---- classifier */
    uint8_t * ytrain = gather_labels(data, itrain, n_train);
    uint8_t * yeval  = gather_labels(evd, ieval, n_eval);
    const enum rk_clf_kind kind = !strcmp(o.classifier, "forest") ? RK_CLF_FOREST : RK_CLF_LOGREG;
    struct rk_ovr * clf = NULL;
    const double t_fit = rk_now();
    if (rk_ovr_fit(kind, X, ytrain, n_train, C, data->n_labels, (uint64_t) o.seed, (int) o.threads, &clf) != RK_OK)
        die_status();
    const double fit_s = rk_now() - t_fit;
    uint8_t * yhat = rk_xmalloc((size_t) (n_eval * data->n_labels));
    if (rk_ovr_predict(clf, X + n_train * C, n_eval, yhat, NULL) != RK_OK) die_status();
    struct rk_metrics met;
    if (rk_metrics_compute(yeval, yhat, n_eval, data->n_labels, &met) != RK_OK) die_status();

    /* ---- report */
    printf("rk-embed  model=%s  data=%s  eval=%s  device=%s  pooling=%s%s  classifier=%s\n", o.model, o.data,
           test ? o.test : "test split", be->name, pool_name, normalize ? "+l2" : "", o.classifier);
    if (cached) printf("train %lld docs, eval %lld docs, %lld labels; embeddings from cache %s, fit %.1f s\n\n", (long long) n_train,
                       (long long) n_eval, (long long) data->n_labels, o.cache, fit_s);
    else printf("train %lld docs, eval %lld docs, %lld labels; embedding %.1f s (%.1f docs/s, %lld tokens, %.0f%% padding), fit %.1f s\n\n",
           (long long) n_train, (long long) n_eval, (long long) data->n_labels, es.seconds, docs_per_s,
           (long long) es.tokens, es.padded ? 100.0 * (double) (es.padded - es.tokens) / (double) es.padded : 0.0, fit_s);
    rk_print_metrics(stdout, &met, data->label_names);
    if (o.out) {
        cJSON * j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "technique", "embed");
        cJSON_AddStringToObject(j, "model", o.model);
        cJSON_AddStringToObject(j, "data", o.data);
        cJSON_AddStringToObject(j, "eval", test ? o.test : "test split");
        cJSON_AddStringToObject(j, "split", split_path);
        cJSON_AddStringToObject(j, "device", be->name);
        cJSON_AddStringToObject(j, "pooling", pool_name);
        cJSON_AddBoolToObject(j, "normalize", normalize);
        cJSON_AddStringToObject(j, "classifier", o.classifier);
        cJSON_AddNumberToObject(j, "seed", (double) o.seed);
        cJSON_AddNumberToObject(j, "n_train", (double) n_train);
        cJSON_AddNumberToObject(j, "n_eval", (double) n_eval);
        cJSON_AddNumberToObject(j, "embed_seconds", es.seconds);
        cJSON_AddNumberToObject(j, "docs_per_second", docs_per_s);
        cJSON_AddNumberToObject(j, "fit_seconds", fit_s);
        cJSON_AddItemToObject(j, "metrics", rk_metrics_to_json(&met, data->label_names));
        if (rk_write_json_atomic(o.out, j) != RK_OK) die_status();
        cJSON_Delete(j);
        fprintf(stderr, "rk-embed: results written to %s\n", o.out);
    }
    rk_metrics_free(&met);
    rk_ovr_free(clf);
    free(yhat);
    free(ytrain);
    free(yeval);
    free(X);
    free(texts);
    free(itrain);
    free(ieval);
    rk_bert_free(model);
    rk_wordpiece_free(tok);
    rk_backend_free(be);
    rk_cli_data_free(&cd);
    return 0;
}
