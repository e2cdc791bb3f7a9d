/*
 * encode.c: batched sentence embedding (see encode.h) and the progress reporter.
 */
#include "models/encode.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>

double rk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

void rk_progress_start(struct rk_progress * p, const char * label, const char * unit, int64_t total, bool enabled) {
    *p = (struct rk_progress) { .label = label, .unit = unit, .total = total, .t0 = rk_now(), .enabled = enabled };
    p->last = p->t0;
}

static void progress_print(struct rk_progress * p, int64_t done, bool final) {
    const double now = rk_now(), el = now - p->t0;
    const double rate = el > 0 ? (double) done / el : 0.0;
    const double eta  = rate > 0 ? (double) (p->total - done) / rate : 0.0;
    fprintf(stderr, "%s: %lld/%lld %s (%.1f %s/s, %s %02d:%02d)\n", p->label, (long long) done, (long long) p->total,
            p->unit, rate, p->unit, final ? "took" : "ETA", (int) ((final ? el : eta) / 60),
            (int) (final ? el : eta) % 60);
    p->last = now;
}

void rk_progress_update(struct rk_progress * p, int64_t done) {
    if (p->enabled && rk_now() - p->last >= 2.0) progress_print(p, done, false);
}

void rk_progress_end(struct rk_progress * p, int64_t done) {
    if (p->enabled) progress_print(p, done, true);
}

struct len_idx {
    int64_t len, idx;
};

/* longest first; ties by index so the order is deterministic */
static int by_len_desc(const void * a, const void * b) {
    const struct len_idx * x = a, * y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

enum rk_status rk_encode_texts(struct rk_bert * m, const struct rk_wordpiece * tok, const char * const * texts,
                               int64_t n, const struct rk_encode_opts * opts, float * out) {
    return rk_encode_texts_stats(m, tok, texts, n, opts, out, NULL);
}

enum rk_status rk_encode_texts_stats(struct rk_bert * m, const struct rk_wordpiece * tok, const char * const * texts,
                                     int64_t n, const struct rk_encode_opts * opts, float * out,
                                     struct rk_encode_stats * stats) {
    const double  t0 = rk_now();
    int64_t       L  = opts->max_length > 0 ? opts->max_length
                     : m->pooling.max_seq_length > 0 ? m->pooling.max_seq_length : 512;
    if (L > m->cfg.max_position) L = m->cfg.max_position;
    if (L < 2) return rk_set_error(RK_STATUS_ARG, "encode: max length %lld is below 2", (long long) L);
    const int64_t Bmax = opts->batch > 0 ? opts->batch : 32;
    const int64_t C    = m->cfg.hidden_size;

    /* tokenize everything first (parallel), then order by length */
    int32_t *        all = rk_xmalloc(sizeof(int32_t) * (size_t) (n * L));
    struct len_idx * li  = rk_xmalloc(sizeof(*li) * (size_t) (n ? n : 1));
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; i++) {
        li[i].len = rk_wordpiece_encode(tok, texts[i], all + i * L, L);
        li[i].idx = i;
    }
    qsort(li, (size_t) n, sizeof(*li), by_len_desc);

    int32_t * ids  = rk_xmalloc(sizeof(int32_t) * (size_t) (Bmax * L));
    int32_t * mask = rk_xmalloc(sizeof(int32_t) * (size_t) (Bmax * L));
    float *   emb  = rk_xmalloc(sizeof(float) * (size_t) (Bmax * C));
    const int32_t pad = rk_wordpiece_special(tok)->pad;
    struct rk_progress pr;
    rk_progress_start(&pr, "embed", "docs", n, opts->progress);
    enum rk_status s = RK_OK;
    int64_t tokens = 0, padded = 0;
    for (int64_t b0 = 0; b0 < n && s == RK_OK; b0 += Bmax) {
        const int64_t B = n - b0 < Bmax ? n - b0 : Bmax;
        const int64_t T = li[b0].len; /* longest in this batch: sorted */
        for (int64_t r = 0; r < B; r++) {
            const struct len_idx * e = &li[b0 + r];
            for (int64_t t = 0; t < T; t++) {
                const bool real  = t < e->len;
                ids[r * T + t]   = real ? all[e->idx * L + t] : pad;
                mask[r * T + t]  = real ? 1 : 0;
            }
            tokens += e->len;
        }
        padded += B * T;
        s = rk_bert_forward(m, ids, mask, NULL, B, T);
        if (s == RK_OK) s = rk_bert_pool_f32(m, opts->pool, opts->normalize, emb);
        if (s == RK_OK) {
            for (int64_t r = 0; r < B; r++) memcpy(out + li[b0 + r].idx * C, emb + r * C, sizeof(float) * (size_t) C);
        }
        rk_progress_update(&pr, b0 + B);
    }
    if (s == RK_OK) rk_progress_end(&pr, n);
    free(ids);
    free(mask);
    free(emb);
    free(li);
    free(all);
    if (stats) *stats = (struct rk_encode_stats) { .seconds = rk_now() - t0, .tokens = tokens, .padded = padded };
    return s;
}

/* ---- embedding cache ------------------------------------------------------------------------- */

/* FNV-1a, 64-bit */
static uint64_t fnv1a(uint64_t h, const void * data, size_t n) {
    const unsigned char * p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t rk_embeddings_key(const char * model_dir, const struct rk_encode_opts * opts, const char * const * texts,
                           int64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    h          = fnv1a(h, model_dir, strlen(model_dir) + 1);
    const int64_t fields[4] = { opts->max_length, (int64_t) opts->pool, opts->normalize, n };
    h = fnv1a(h, fields, sizeof(fields));
    for (int64_t i = 0; i < n; i++) h = fnv1a(h, texts[i], strlen(texts[i]) + 1);
    return h;
}

enum rk_status rk_embeddings_load(const char * path, uint64_t key, int64_t n, int64_t C, float * out) {
    FILE * f = fopen(path, "rb");
    if (!f) return rk_set_error(RK_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    char     magic[4];
    uint32_t ver = 0;
    uint64_t k   = 0;
    int64_t  nn = 0, cc = 0;
    enum rk_status s = RK_OK;
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "RKEM", 4) != 0 || fread(&ver, 4, 1, f) != 1 || ver != 1 ||
        fread(&k, 8, 1, f) != 1 || fread(&nn, 8, 1, f) != 1 || fread(&cc, 8, 1, f) != 1) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: byte 0: not an rk embedding cache (version 1)", path);
    } else if (k != key || nn != n || cc != C) {
        s = rk_set_error(RK_STATUS_ARG, "%s: does not match these documents, model and options", path);
    } else if (fread(out, sizeof(float), (size_t) (n * C), f) != (size_t) (n * C)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: byte 32: truncated (expected %lld floats)", path, (long long) (n * C));
    }
    fclose(f);
    return s;
}

enum rk_status rk_embeddings_save(const char * path, uint64_t key, int64_t n, int64_t C, const float * emb) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    FILE * f = fopen(tmp, "wb");
    if (!f) return rk_set_error(RK_STATUS_IO, "%s: cannot write: %s", path, strerror(errno));
    const uint32_t ver = 1;
    bool ok = fwrite("RKEM", 1, 4, f) == 4 && fwrite(&ver, 4, 1, f) == 1 && fwrite(&key, 8, 1, f) == 1 &&
              fwrite(&n, 8, 1, f) == 1 && fwrite(&C, 8, 1, f) == 1 &&
              fwrite(emb, sizeof(float), (size_t) (n * C), f) == (size_t) (n * C);
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return rk_set_error(RK_STATUS_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return RK_OK;
}
