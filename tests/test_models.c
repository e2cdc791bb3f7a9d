/*
 * test_models.c: the BERT encoder against PyTorch golden data (tests/golden/gen_bert.py):
 *   - a tiny random BertModel: last hidden states within 1e-4 on the CPU backend;
 *   - all-MiniLM-L6-v2: our WordPiece ids equal HF's, sentence embeddings cosine > 0.9999 against
 *     sentence-transformers, and per-token hidden states close to transformers' BertModel;
 *   - the same model on the CUDA backend against the CPU backend (skipped when no GPU is present).
 */
#include "golden.h"
#include "test_util.h"

#include "backend.h"
#include "models/bert.h"
#include "models/encode.h"
#include "tokenizer/wordpiece.h"

#include <math.h>

static double max_abs_diff(const float * a, const float * b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(!isnan(a[i]), "NaN at %lld", (long long) i);
        double d = fabs((double) a[i] - (double) b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* Hidden states of the golden tiny model on backend be; returns max |diff| over valid tokens. */
static double tiny_bert_diff(struct rk_backend * be) {
    char dir[4096], gpath[4096];
    rk_test_path(dir, sizeof(dir), "tests/golden/tiny_bert");
    struct rk_gold g = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/tiny_bert.rkgd"));
    const struct rk_gold_tensor * ids = rk_gold_get(&g, "ids"), * mask = rk_gold_get(&g, "mask");
    const struct rk_gold_tensor * types = rk_gold_get(&g, "types"), * hid = rk_gold_get(&g, "hidden");
    struct rk_bert * m = NULL;
    cr_assert_eq(rk_bert_load(dir, be, &m), RK_OK, "%s", rk_last_error());
    const int64_t B = ids->dims[0], T = ids->dims[1], C = m->cfg.hidden_size;
    cr_assert_eq(hid->dims[2], C);
    cr_assert_eq(rk_bert_forward(m, ids->data, mask->data, types->data, B, T), RK_OK, "%s", rk_last_error());
    float * out = malloc(sizeof(float) * (size_t) (B * T * C));
    cr_assert_eq(rk_bert_hidden_f32(m, out), RK_OK, "%s", rk_last_error());
    double worst = 0.0;
    const int32_t * mk = mask->data;
    for (int64_t i = 0; i < B * T; i++) {
        if (!mk[i]) continue; /* HF computes padded positions too, but they are meaningless */
        double d = max_abs_diff(out + i * C, (const float *) hid->data + i * C, C);
        if (d > worst) worst = d;
    }
    free(out);
    rk_bert_free(m);
    rk_gold_free(&g);
    return worst;
}

Test(bert, tiny_random_model_matches_pytorch_cpu) {
    struct rk_backend * be = rk_backend_cpu_init(2);
    double d = tiny_bert_diff(be);
    cr_log_info("tiny BERT cpu: max |diff| %.3g", d);
    cr_assert(d < 1e-4, "hidden states differ from PyTorch by %.3g (limit 1e-4)", d);
    rk_backend_free(be);
}

Test(bert, tiny_random_model_cuda) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) cr_skip_test("no CUDA device: %s", rk_last_error());
    double d = tiny_bert_diff(be);
    cr_log_info("tiny BERT cuda (%s): max |diff| %.3g", rk_dtype_traits[be->act_dtype].name, d);
    cr_assert(d < 5e-2, "CUDA hidden states differ from PyTorch by %.3g (limit 5e-2 for 16-bit activations)", d);
    rk_backend_free(be);
}

/* Reads the JSON-lines sentences (each line a JSON string) with cJSON. */
#include <cJSON.h>
static char ** read_sentences(int64_t * n) {
    char path[4096];
    FILE * f = fopen(rk_test_path(path, sizeof(path), "tests/golden/minilm_sentences.txt"), "r");
    cr_assert(f != NULL);
    char ** out = NULL;
    char line[8192];
    *n = 0;
    while (fgets(line, sizeof(line), f)) {
        cJSON * j = cJSON_Parse(line);
        cr_assert(j && cJSON_IsString(j));
        out = realloc(out, sizeof(char *) * (size_t) (*n + 1));
        out[(*n)++] = strdup(j->valuestring);
        cJSON_Delete(j);
    }
    fclose(f);
    return out;
}

static void minilm_check(struct rk_backend * be, double min_cos) {
    char dir[4096], gpath[4096];
    rk_test_model_dir(dir, sizeof(dir), "all-MiniLM-L6-v2");
    struct rk_gold g = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/minilm.rkgd"));
    const struct rk_gold_tensor * gids = rk_gold_get(&g, "ids"), * gemb = rk_gold_get(&g, "embeddings");
    int64_t n = 0;
    char ** s = read_sentences(&n);
    cr_assert_eq(n, gids->dims[0]);
    const int64_t T = gids->dims[1];

    struct rk_wordpiece * tok = NULL;
    cr_assert_eq(rk_wordpiece_load(dir, &tok), RK_OK, "%s", rk_last_error());
    /* the tokenizer agrees with HF on every sentence */
    int32_t * ids = calloc((size_t) T, sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) {
        int64_t len = rk_wordpiece_encode(tok, s[i], ids, T);
        const int32_t * ref = (const int32_t *) gids->data + i * T;
        for (int64_t t = 0; t < T; t++) {
            int32_t want = ref[t], got = t < len ? ids[t] : 0;
            cr_assert_eq(got, want, "sentence %lld token %lld: id %d, HF %d", (long long) i, (long long) t, got, want);
        }
    }
    free(ids);

    struct rk_bert * m = NULL;
    cr_assert_eq(rk_bert_load(dir, be, &m), RK_OK, "%s", rk_last_error());
    cr_assert(m->pooling.present && m->pooling.mode == RK_POOL_MEAN && m->pooling.normalize);
    const int64_t C = m->cfg.hidden_size;
    float * emb = malloc(sizeof(float) * (size_t) (n * C));
    struct rk_encode_opts o = { .max_length = m->pooling.max_seq_length, .batch = 7, .pool = RK_POOL_MEAN,
                                .normalize = true, .progress = false };
    cr_assert_eq(rk_encode_texts(m, tok, (const char * const *) s, n, &o, emb), RK_OK, "%s", rk_last_error());
    double worst = 1.0;
    for (int64_t i = 0; i < n; i++) {
        double c = rk_cosine_f32(emb + i * C, (const float *) gemb->data + i * C, C);
        if (c < worst) worst = c;
        cr_assert(c > min_cos, "sentence %lld: cosine %.7f against sentence-transformers (limit %.5f)", (long long) i, c,
                  min_cos);
    }
    cr_log_info("MiniLM on %s: worst cosine %.8f over %lld sentences", be->name, worst, (long long) n);

    /* per-token hidden states of 4 sentences against transformers' BertModel */
    const struct rk_gold_tensor * i4 = rk_gold_get(&g, "ids4"), * m4 = rk_gold_get(&g, "mask4"), * h4 = rk_gold_get(&g, "hidden4");
    const int64_t B4 = i4->dims[0], T4 = i4->dims[1];
    cr_assert_eq(rk_bert_forward(m, i4->data, m4->data, NULL, B4, T4), RK_OK, "%s", rk_last_error());
    float * hid = malloc(sizeof(float) * (size_t) (B4 * T4 * C));
    cr_assert_eq(rk_bert_hidden_f32(m, hid), RK_OK);
    double worst_h = 0.0;
    for (int64_t i = 0; i < B4 * T4; i++) {
        if (!((const int32_t *) m4->data)[i]) continue;
        double d = max_abs_diff(hid + i * C, (const float *) h4->data + i * C, C);
        if (d > worst_h) worst_h = d;
    }
    cr_log_info("MiniLM on %s: hidden states max |diff| %.3g", be->name, worst_h);
    if (be->device == RK_DEVICE_CPU) cr_assert(worst_h < 1e-3, "hidden states differ by %.3g", worst_h);
    free(hid);
    free(emb);
    for (int64_t i = 0; i < n; i++) free(s[i]);
    free(s);
    rk_bert_free(m);
    rk_wordpiece_free(tok);
    rk_gold_free(&g);
}

Test(bert, minilm_matches_sentence_transformers_cpu, .timeout = 120) {
    struct rk_backend * be = rk_backend_cpu_init(2);
    minilm_check(be, 0.9999);
    rk_backend_free(be);
}

Test(bert, minilm_cuda, .timeout = 120) {
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) cr_skip_test("no CUDA device: %s", rk_last_error());
    minilm_check(be, 0.999);
    rk_backend_free(be);
}

/* A broken model directory gives an error naming the file, not a crash. */
Test(bert, load_errors) {
    struct rk_backend * be = rk_backend_cpu_init(1);
    struct rk_bert * m = NULL;
    cr_assert_neq(rk_bert_load("/nonexistent/model", be, &m), RK_OK);
    cr_assert(strstr(rk_last_error(), "/nonexistent/model") != NULL, "%s", rk_last_error());
    cr_assert_null(m);
    rk_backend_free(be);
}
