/*
 * bench_embed_cpu: sentence-embedding throughput of a BERT encoder on the CPU backend (documents/s).
 *
 *   build/bench/bench_embed_cpu [--model DIR] [--data CSV] [--n N] [--max-length 256] [--batch 32] [--threads T]
 *
 * Correctness first: the golden sentences (tests/golden/minilm.rkgd, from sentence-transformers) are embedded and
 * every cosine must exceed 0.9999, else nothing is timed. Then the first N documents of the data file (rendered
 * with the default template, as rk-embed does) are embedded once to warm up and REPS times timed; the median is
 * reported. Peer: bench/peers/embed_st.py (sentence-transformers, same documents, threads, max length and batch);
 * bench/run_cpu.sh runs both in one go and prints the ratio.
 */
#include "backend.h"
#include "bench_common.h"
#include "check.h"
#include "datasets/dataset.h"
#include "models/bert.h"
#include "models/encode.h"
#include "tokenizer/wordpiece.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Golden check: returns the worst cosine against sentence-transformers, or -1 when the golden file is missing. */
static double golden_check(struct rk_bert * m, struct rk_wordpiece * tok, const char * root) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/golden/minilm_sentences.txt", root);
    FILE * f = fopen(path, "r");
    if (!f) return -1.0;
    char * s[64];
    int    n = 0;
    char   line[16384];
    while (n < 64 && fgets(line, sizeof(line), f)) {
        /* each line is a JSON string; the bench only needs plain ones, so unescape \" \\ \n minimally */
        char * o = rk_xmalloc(strlen(line) + 1), * w = o;
        for (char * p = line + 1; *p && !(*p == '"' && (p[1] == '\n' || p[1] == '\0')); p++) {
            if (*p == '\\' && p[1]) {
                p++;
                *w++ = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
            } else {
                *w++ = *p;
            }
        }
        *w     = '\0';
        s[n++] = o;
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/tests/golden/minilm.rkgd", root);
    long            sz  = 0;
    unsigned char * buf = rk_bench_gold_read(path, &sz);
    if (!buf) return -1.0;
    const int64_t C   = m->cfg.hidden_size;
    int64_t       nel = 0;
    const float * ref = rk_bench_gold_get(buf, sz, "embeddings", &nel);
    if (ref && nel != n * C) ref = NULL;
    double worst = -1.0;
    if (ref) {
        float * e = rk_xmalloc(sizeof(float) * (size_t) (n * C));
        struct rk_encode_opts o = { .max_length = 256, .batch = 8, .pool = RK_POOL_MEAN, .normalize = true };
        if (rk_encode_texts(m, tok, (const char * const *) s, n, &o, e) == RK_OK) {
            worst = 1.0;
            for (int i = 0; i < n; i++) {
                const double cs = rk_cosine_f32(e + i * C, ref + i * C, C);
                if (!(cs >= worst)) worst = cs; /* NaN too */
            }
        }
        free(e);
    }
    free(buf);
    for (int i = 0; i < n; i++) free(s[i]);
    return worst;
}

int main(int argc, char ** argv) {
    const char * model = "models/all-MiniLM-L6-v2";
    const char * data  = "../shared/datasets/reuters21578/train.csv.gz";
    const char * root  = getenv("RK_ROOT") ? getenv("RK_ROOT") : ".";
    int64_t n = 512, max_len = 256, batch = 32, threads = 0, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--data")) data = argv[i + 1];
        else if (!strcmp(argv[i], "--n")) n = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-length")) max_len = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoll(argv[i + 1]);
        else { fprintf(stderr, "bench_embed_cpu: unknown option %s\n", argv[i]); return 2; }
    }
    struct rk_backend * be = rk_backend_cpu_init((int) threads);
    struct rk_wordpiece * tok = NULL;
    struct rk_bert * m = NULL;
    struct rk_dataset * d = NULL;
    if (rk_wordpiece_load(model, &tok) != RK_OK || rk_bert_load(model, be, &m) != RK_OK ||
        rk_dataset_load(data, NULL, &d) != RK_OK) {
        fprintf(stderr, "bench_embed_cpu: %s\n", rk_last_error());
        return 1;
    }
    double worst = golden_check(m, tok, root);
    if (worst < 0.9999) {
        fprintf(stderr, "bench_embed_cpu: correctness check failed (worst cosine %.6f); not timing\n", worst);
        return 1;
    }
    if (n > d->n_docs) n = d->n_docs;
    const int64_t C = m->cfg.hidden_size;
    float * out = rk_xmalloc(sizeof(float) * (size_t) (n * C));
    struct rk_encode_opts o = { .max_length = max_len, .batch = batch, .pool = RK_POOL_MEAN, .normalize = true };
    struct rk_encode_stats st;
    if (rk_encode_texts_stats(m, tok, (const char * const *) d->texts, n, &o, out, &st) != RK_OK) { /* warm-up */
        fprintf(stderr, "bench_embed_cpu: %s\n", rk_last_error());
        return 1;
    }
    double t[32];
    if (reps > 32) reps = 32;
    for (int64_t r = 0; r < reps; r++) {
        rk_encode_texts_stats(m, tok, (const char * const *) d->texts, n, &o, out, &st);
        t[r] = st.seconds;
    }
    qsort(t, (size_t) reps, sizeof(double), rk_bench_cmp_double);
    const double med = t[reps / 2];
    /* docs/s = documents / median wall time of tokenize + forward + pool */
    printf("embed_cpu model=%s n=%lld max_length=%lld batch=%lld threads=%d golden_cos=%.6f tokens=%lld ours_s=%.3f ours_docs_per_s=%.1f\n",
           model, (long long) n, (long long) max_len, (long long) batch, omp_get_max_threads(), worst, (long long) st.tokens, med,
           (double) n / med);
    free(out);
    rk_bert_free(m);
    rk_wordpiece_free(tok);
    rk_dataset_free(d);
    rk_backend_free(be);
    return 0;
}
