/*
 * test_lora.c: LoRA adapters (lora/lora.h).
 *   - golden: a PEFT adapter folder (tests/golden/lora_adapter, written by tests/golden/gen_lora.py) loaded by our
 *     loader; our forward/backward/merge on the recorded inputs against torch autograd and PEFT's merge()
 *   - save/load round trip (PEFT tensor names, bit-exact values, config fields); RK_LORA_EXPORT=DIR also writes
 *     the re-saved golden adapter to DIR, for `python3 tests/golden/gen_lora.py --check DIR`
 *   - the backward against central finite differences of a double-precision forward (with and without a mask)
 *   - merge then plain matmul equals the unmerged forward; unmerge restores W
 *   - PEFT's target-module matcher, the Kaiming-uniform init, loader errors naming file and tensor
 * Seeded inputs (RK_TEST_SEED overrides).
 */
#include "test_util.h"

#include "golden.h"
#include "io/safetensors.h"
#include "kernels/dropout.h"
#include "lora/lora.h"
#include "quant/nf4.h"

#include <cblas.h>
#include <math.h>
#include <sys/stat.h>

static void seed_rng(void) { rk_test_seed(4321); }
static float urand(void) { return rk_test_urand(); }
static float * rand_buf(int64_t n) { return rk_test_rand_buf(n); }
static float * zeros(int64_t n) { return calloc((size_t) (n > 0 ? n : 1), sizeof(float)); }

static void assert_close(const float * got, const float * ref, int64_t n, double atol, double rtol, const char * what) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(!isnan(got[i]), "%s: NaN at %lld", what, (long long) i);
        const double d = fabs((double) got[i] - ref[i]);
        cr_assert(d <= atol + rtol * fabs(ref[i]), "%s: at %lld got %.8g, want %.8g", what, (long long) i, got[i],
                  ref[i]);
        if (d > worst) worst = d;
    }
    cr_log_info("%s: max abs diff %.3g", what, worst);
}

TestSuite(lora, .init = seed_rng);

static const char * const GOLD_MODULES[] = {
    "encoder.layer.0.attention.self.query",
    "encoder.layer.0.attention.self.value",
    "encoder.layer.0.output.dense",
};

static const char * gold_dir(char * buf, size_t n) { return rk_test_path(buf, n, "tests/golden/lora_adapter"); }

static const float * gold(const struct rk_gold * g, int i, const char * what, int64_t n) {
    char name[64];
    snprintf(name, sizeof(name), "m%d.%s", i, what);
    const struct rk_gold_tensor * t = rk_gold_get(g, name);
    cr_assert_eq(t->n, n, "%s: %lld elements, want %lld", name, (long long) t->n, (long long) n);
    return t->data;
}

/* ---- golden: PEFT's adapter, torch's numbers --------------------------------------------------------------- */

Test(lora, golden_peft) {
    char dir[512], gpath[512];
    struct rk_lora_adapter * ad = NULL;
    cr_assert_eq(rk_lora_adapter_load(gold_dir(dir, sizeof(dir)), &ad), RK_OK, "%s", rk_last_error());
    struct rk_gold g = rk_gold_load(rk_test_path(gpath, sizeof(gpath), "tests/golden/lora.rkgd"));

    /* config */
    cr_assert_eq(ad->cfg.r, 4);
    cr_assert_float_eq(ad->cfg.alpha, 8.0f, 0);
    cr_assert_float_eq(ad->cfg.dropout, 0.0f, 0);
    cr_assert(!ad->cfg.use_rslora);
    cr_assert_str_eq(ad->cfg.bias, "none");
    cr_assert_str_eq(ad->cfg.base_model, "rk-tiny-test");
    cr_assert_eq(ad->cfg.n_target, 3);
    const float s = rk_lora_scale(&ad->cfg);
    cr_assert_float_eq(s, ((float *) rk_gold_get(&g, "scale")->data)[0], 0);
    cr_assert_eq(ad->n_module, 3);

    for (int i = 0; i < 3; i++) {
        const struct rk_lora_module * m = rk_lora_adapter_find(ad, GOLD_MODULES[i]);
        cr_assert(m != NULL, "module %s missing", GOLD_MODULES[i]);
        cr_assert(rk_lora_target_match(m->name, (const char * const *) ad->cfg.target_modules, ad->cfg.n_target));
        const int64_t K = m->K, N = m->N, r = ad->cfg.r, M = rk_gold_get(&g, "m0.x")->dims[0];
        const struct rk_lora_shape sh = { .M = M, .K = K, .N = N, .r = r };
        /* the loaded adapter is PEFT's, bit for bit */
        cr_assert(memcmp(m->A, gold(&g, i, "A", r * K), sizeof(float) * (size_t) (r * K)) == 0, "%s: A", m->name);
        cr_assert(memcmp(m->B, gold(&g, i, "B", N * r), sizeof(float) * (size_t) (N * r)) == 0, "%s: B", m->name);
        const float * W = gold(&g, i, "W", N * K), * b = gold(&g, i, "b", N), * x = gold(&g, i, "x", M * K);
        const float * dy = gold(&g, i, "dy", M * N);

        float * y = zeros(M * N), * u = zeros(M * r);
        rk_cpu_lora_fwd(y, u, x, W, b, m->A, m->B, s, NULL, sh);
        assert_close(y, gold(&g, i, "y", M * N), M * N, 1e-6, 1e-5, "y");

        float * dx = zeros(M * K), * dA = zeros(r * K), * dB = zeros(N * r);
        rk_cpu_lora_bwd(dx, dA, dB, dy, x, u, W, m->A, m->B, s, NULL, sh);
        assert_close(dx, gold(&g, i, "dx", M * K), M * K, 1e-6, 1e-5, "dx");
        assert_close(dA, gold(&g, i, "dA", r * K), r * K, 1e-6, 1e-5, "dA");
        assert_close(dB, gold(&g, i, "dB", N * r), N * r, 1e-6, 1e-5, "dB");

        float * Wm = malloc(sizeof(float) * (size_t) (N * K));
        memcpy(Wm, W, sizeof(float) * (size_t) (N * K));
        rk_cpu_lora_merge(Wm, m->A, m->B, s, sh);
        assert_close(Wm, gold(&g, i, "Wmerged", N * K), N * K, 1e-6, 1e-5, "merged W");
        rk_cpu_lora_unmerge(Wm, m->A, m->B, s, sh);
        assert_close(Wm, W, N * K, 1e-6, 1e-5, "unmerged W");
        free(Wm);
        free(y);
        free(u);
        free(dx);
        free(dA);
        free(dB);
    }
    rk_gold_free(&g);
    rk_lora_adapter_free(ad);
}

/* ---- save / load ----------------------------------------------------------------------------------------- */

static void assert_same_adapter(const struct rk_lora_adapter * a, const struct rk_lora_adapter * b) {
    cr_assert_eq(a->cfg.r, b->cfg.r);
    cr_assert_float_eq(a->cfg.alpha, b->cfg.alpha, 0);
    cr_assert_float_eq(a->cfg.dropout, b->cfg.dropout, 0);
    cr_assert_eq(a->cfg.use_rslora, b->cfg.use_rslora);
    cr_assert_str_eq(a->cfg.bias, b->cfg.bias);
    cr_assert_str_eq(a->cfg.task_type, b->cfg.task_type);
    cr_assert_str_eq(a->cfg.base_model, b->cfg.base_model);
    cr_assert_eq(a->cfg.n_target, b->cfg.n_target);
    cr_assert_eq(a->cfg.target_is_regex, b->cfg.target_is_regex);
    for (int64_t i = 0; i < a->cfg.n_target; i++) cr_assert_str_eq(a->cfg.target_modules[i], b->cfg.target_modules[i]);
    cr_assert_eq(a->n_module, b->n_module);
    for (int64_t i = 0; i < a->n_module; i++) {
        const struct rk_lora_module * mb = rk_lora_adapter_find(b, a->modules[i].name);
        cr_assert(mb != NULL, "module %s lost", a->modules[i].name);
        cr_assert(mb->K == a->modules[i].K && mb->N == a->modules[i].N);
        const size_t na = sizeof(float) * (size_t) (a->cfg.r * mb->K), nbb = sizeof(float) * (size_t) (mb->N * a->cfg.r);
        cr_assert(memcmp(a->modules[i].A, mb->A, na) == 0, "%s: A differs", mb->name);
        cr_assert(memcmp(a->modules[i].B, mb->B, nbb) == 0, "%s: B differs", mb->name);
    }
}

Test(lora, save_load_roundtrip) {
    char dir[512], path[600];
    struct rk_lora_adapter * ad = NULL, * back = NULL;
    cr_assert_eq(rk_lora_adapter_load(gold_dir(dir, sizeof(dir)), &ad), RK_OK, "%s", rk_last_error());
    const char * tmp = rk_test_tmpdir();
    cr_assert_eq(rk_lora_adapter_save(ad, tmp), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_lora_adapter_load(tmp, &back), RK_OK, "%s", rk_last_error());
    assert_same_adapter(ad, back);

    /* our file carries exactly PEFT's tensor names, dtypes and shapes, and PEFT's metadata */
    struct rk_safetensors * ours = NULL, * peft = NULL;
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", tmp);
    cr_assert_eq(rk_safetensors_open(path, &ours), RK_OK, "%s", rk_last_error());
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    cr_assert_eq(rk_safetensors_open(path, &peft), RK_OK, "%s", rk_last_error());
    cr_assert_eq(ours->n, peft->n);
    for (int64_t i = 0; i < peft->n; i++) {
        const struct rk_st_entry * p = &peft->entries[i], * o = rk_safetensors_find(ours, p->name);
        cr_assert(o != NULL, "tensor %s missing from our file", p->name);
        cr_assert(o->dtype == p->dtype && o->ndim == p->ndim && o->nbytes == p->nbytes, "%s", p->name);
        cr_assert(memcmp(o->shape, p->shape, sizeof(o->shape)) == 0, "%s: shape", p->name);
        cr_assert(memcmp(o->data, p->data, p->nbytes) == 0, "%s: bytes", p->name);
        cr_assert_eq((uintptr_t) o->data % 8, 0, "%s: data not 8-byte aligned", p->name);
    }
    cr_assert_str_eq(rk_safetensors_meta(ours, "format"), "pt");
    rk_safetensors_close(ours);
    rk_safetensors_close(peft);

    /* saving again over the same folder replaces the files */
    const float a0 = ad->modules[0].A[0];
    ad->modules[0].A[0] += 1.0f;
    cr_assert_eq(rk_lora_adapter_save(ad, tmp), RK_OK, "%s", rk_last_error());
    rk_lora_adapter_free(back);
    cr_assert_eq(rk_lora_adapter_load(tmp, &back), RK_OK, "%s", rk_last_error());
    assert_same_adapter(ad, back);
    ad->modules[0].A[0] = a0;

    const char * exp = getenv("RK_LORA_EXPORT");
    if (exp && *exp) {
        mkdir(exp, 0777);
        cr_assert_eq(rk_lora_adapter_save(ad, exp), RK_OK, "%s", rk_last_error());
        cr_log_info("wrote the re-saved golden adapter to %s", exp);
    }
    rk_lora_adapter_free(ad);
    rk_lora_adapter_free(back);
}

Test(lora, save_load_new_adapter) {
    struct rk_lora_config cfg;
    rk_lora_config_default(&cfg);
    cfg.r          = 3;
    cfg.alpha      = 16.0f;
    cfg.dropout    = 0.1f;
    cfg.use_rslora = true;
    snprintf(cfg.task_type, sizeof(cfg.task_type), "SEQ_CLS");
    const char * targets[] = { "q_proj", "v_proj" };
    rk_lora_config_set_targets(&cfg, targets, 2);
    const char *  names[] = { "model.layers.1.self_attn.v_proj", "model.layers.0.self_attn.q_proj" };
    const int64_t K[] = { 10, 7 }, N[] = { 5, 7 };
    struct rk_lora_adapter * ad = NULL, * back = NULL;
    cr_assert_eq(rk_lora_adapter_new(&cfg, 2, names, K, N, &ad), RK_OK, "%s", rk_last_error());
    rk_lora_config_free(&cfg);
    rk_lora_adapter_init_peft(ad, 11);
    for (int64_t i = 0; i < ad->n_module; i++)
        for (int64_t j = 0; j < ad->modules[i].N * ad->cfg.r; j++) ad->modules[i].B[j] = urand();
    cr_assert_float_eq(rk_lora_scale(&ad->cfg), (float) (16.0 / sqrt(3.0)), 1e-7);
    const char * tmp = rk_test_tmpdir();
    cr_assert_eq(rk_lora_adapter_save(ad, tmp), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_lora_adapter_load(tmp, &back), RK_OK, "%s", rk_last_error());
    assert_same_adapter(ad, back);
    /* loaded modules come sorted by name */
    cr_assert_str_eq(back->modules[0].name, "model.layers.0.self_attn.q_proj");
    rk_lora_adapter_free(ad);
    rk_lora_adapter_free(back);
}

/* ---- loader errors name the file and the tensor ------------------------------------------------------------ */

/* A safetensors file with F32 tensors (name, d0, d1), zero data. */
static void write_st(const char * path, int n, const char * const * names, const int64_t (*shape)[2]) {
    char   hdr[4096];
    size_t len = (size_t) snprintf(hdr, sizeof(hdr), "{");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = 4 * (size_t) (shape[i][0] * shape[i][1]);
        len += (size_t) snprintf(hdr + len, sizeof(hdr) - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],"
                                 "\"data_offsets\":[%zu,%zu]}", i ? "," : "", names[i], (long long) shape[i][0],
                                 (long long) shape[i][1], off, off + nb);
        off += nb;
    }
    len += (size_t) snprintf(hdr + len, sizeof(hdr) - len, "}");
    FILE * f = fopen(path, "wb");
    cr_assert(f != NULL);
    uint64_t hn = len;
    fwrite(&hn, 8, 1, f);
    fwrite(hdr, 1, len, f);
    for (size_t i = 0; i < off; i++) fputc(0, f);
    fclose(f);
}

static void expect_load_error(const char * dir, enum rk_status want, const char * needle1, const char * needle2) {
    struct rk_lora_adapter * ad = NULL;
    enum rk_status s = rk_lora_adapter_load(dir, &ad);
    cr_assert_eq(s, want, "status %s, want %s (%s)", rk_status_name(s), rk_status_name(want), rk_last_error());
    cr_assert(ad == NULL);
    cr_assert(strstr(rk_last_error(), needle1) != NULL, "message '%s' lacks '%s'", rk_last_error(), needle1);
    if (needle2) cr_assert(strstr(rk_last_error(), needle2) != NULL, "message '%s' lacks '%s'", rk_last_error(), needle2);
}

Test(lora, load_errors) {
    char path[600];
    const char * tmp = rk_test_tmpdir();
    expect_load_error(tmp, RK_STATUS_IO, "adapter_config.json", NULL);

    const char * cfg = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"bias\": \"none\","
                       " \"target_modules\": [\"query\"]}";
    rk_test_write_file(path, sizeof(path), tmp, "adapter_config.json", cfg, strlen(cfg));
    expect_load_error(tmp, RK_STATUS_IO, "adapter_model.safetensors", NULL);

    const char * n1[] = { "base_model.model.enc.query.lora_A.weight" };
    const int64_t s1[][2] = { { 4, 8 } };
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", tmp);
    write_st(path, 1, n1, s1);
    expect_load_error(tmp, RK_STATUS_FORMAT, "adapter_model.safetensors", "enc.query has lora_A but no lora_B");

    const char * n2[] = { "base_model.model.enc.query.lora_A.weight", "base_model.model.enc.query.lora_B.weight" };
    const int64_t s2[][2] = { { 4, 8 }, { 6, 5 } };
    write_st(path, 2, n2, s2);
    expect_load_error(tmp, RK_STATUS_FORMAT, "adapter_model.safetensors", "enc.query.lora_B.weight");

    const int64_t s3[][2] = { { 4, 8 }, { 6, 4 } };
    write_st(path, 2, n2, s3);
    struct rk_lora_adapter * ad = NULL;
    cr_assert_eq(rk_lora_adapter_load(tmp, &ad), RK_OK, "%s", rk_last_error());
    cr_assert(ad->n_module == 1 && ad->modules[0].K == 8 && ad->modules[0].N == 6);
    cr_assert_str_eq(ad->modules[0].name, "enc.query");
    rk_lora_adapter_free(ad);

    /* an adapter name left in the key ("lora_A.default.weight") is accepted */
    const char * n4[] = { "enc.key.lora_A.default.weight", "enc.key.lora_B.default.weight" };
    write_st(path, 2, n4, s3);
    cr_assert_eq(rk_lora_adapter_load(tmp, &ad), RK_OK, "%s", rk_last_error());
    cr_assert_str_eq(ad->modules[0].name, "enc.key");
    rk_lora_adapter_free(ad);

    const char * n5[] = { "base_model.model.enc.query.lora_A.weight", "base_model.model.classifier.weight" };
    write_st(path, 2, n5, s3);
    expect_load_error(tmp, RK_STATUS_UNSUPPORTED, "adapter_model.safetensors", "classifier.weight");

    const char * cfg2 = "{\"peft_type\": \"LORA\", \"r\": 4, \"bias\": \"all\"}";
    rk_test_write_file(path, sizeof(path), tmp, "adapter_config.json", cfg2, strlen(cfg2));
    expect_load_error(tmp, RK_STATUS_UNSUPPORTED, "adapter_config.json", "bias");
    const char * cfg3 = "{\"peft_type\": \"IA3\", \"r\": 4}";
    rk_test_write_file(path, sizeof(path), tmp, "adapter_config.json", cfg3, strlen(cfg3));
    expect_load_error(tmp, RK_STATUS_FORMAT, "adapter_config.json", "peft_type");
    const char * cfg4 = "{\"r\": 4, ";
    rk_test_write_file(path, sizeof(path), tmp, "adapter_config.json", cfg4, strlen(cfg4));
    expect_load_error(tmp, RK_STATUS_FORMAT, "adapter_config.json", NULL);
}

/* ---- target matcher ------------------------------------------------------------------------------------- */

Test(lora, target_match) {
    const char * t[] = { "query", "value", "output.dense" };
    cr_assert(rk_lora_target_match("encoder.layer.0.attention.self.query", t, 3));
    cr_assert(rk_lora_target_match("encoder.layer.11.attention.self.value", t, 3));
    cr_assert(rk_lora_target_match("query", t, 3));                              /* equal */
    cr_assert(rk_lora_target_match("encoder.layer.0.output.dense", t, 3));
    cr_assert(rk_lora_target_match("encoder.layer.0.attention.output.dense", t, 3)); /* as PEFT: suffix rule */
    cr_assert(!rk_lora_target_match("encoder.layer.0.attention.self.key", t, 3));
    cr_assert(!rk_lora_target_match("encoder.layer.0.intermediate.dense", t, 3));
    cr_assert(!rk_lora_target_match("encoder.layer.0.attention.self.myquery", t, 3)); /* not on a '.' boundary */
    cr_assert(!rk_lora_target_match("encoder.layer.0.query.weight", t, 3));         /* must end with it */
    cr_assert(!rk_lora_target_match("dense", t, 3));
    cr_assert(!rk_lora_target_match("x.query", t, 0));
    const char * empty[] = { "" };
    cr_assert(!rk_lora_target_match("a.b", empty, 1));
}

/* ---- init ----------------------------------------------------------------------------------------------- */

Test(lora, init_peft) {
    struct rk_lora_config cfg;
    rk_lora_config_default(&cfg);
    cr_assert(cfg.r == 8 && cfg.alpha == 8.0f && cfg.dropout == 0.0f && !cfg.use_rslora);
    cr_assert_float_eq(rk_lora_scale(&cfg), 1.0f, 0);
    const char *  names[] = { "a", "b" };
    const int64_t K[] = { 256, 64 }, N[] = { 32, 16 };
    struct rk_lora_adapter * a1 = NULL, * a2 = NULL;
    cr_assert_eq(rk_lora_adapter_new(&cfg, 2, names, K, N, &a1), RK_OK);
    cr_assert_eq(rk_lora_adapter_new(&cfg, 2, names, K, N, &a2), RK_OK);
    cr_assert_eq(a1->n_params, 8 * (256 + 32) + 8 * (64 + 16));
    for (int64_t j = 0; j < a1->n_params; j++) a1->data[j] = 7.0f; /* B must be reset */
    rk_lora_adapter_init_peft(a1, 42);
    rk_lora_adapter_init_peft(a2, 42);
    cr_assert(memcmp(a1->data, a2->data, sizeof(float) * (size_t) a1->n_params) == 0, "same seed, same values");
    for (int i = 0; i < 2; i++) {
        const struct rk_lora_module * m = &a1->modules[i];
        const double bound = 1.0 / sqrt((double) m->K);
        double sum = 0, sq = 0;
        const int64_t n = cfg.r * m->K;
        for (int64_t j = 0; j < n; j++) {
            cr_assert(fabs(m->A[j]) <= bound, "A[%lld] = %g outside +-%g", (long long) j, m->A[j], bound);
            sum += m->A[j];
            sq += (double) m->A[j] * m->A[j];
        }
        /* U(-b, b): mean 0, variance b^2/3; loose bounds for n = 512 / 2048 draws */
        cr_assert(fabs(sum / n) < 0.15 * bound, "mean %g", sum / n);
        cr_assert(fabs(sq / n / (bound * bound / 3.0) - 1.0) < 0.15, "variance ratio %g", sq / n / (bound * bound / 3));
        for (int64_t j = 0; j < m->N * cfg.r; j++) cr_assert(m->B[j] == 0.0f);
    }
    rk_lora_adapter_init_peft(a2, 43);
    cr_assert(memcmp(a1->data, a2->data, sizeof(float) * (size_t) a1->n_params) != 0, "seed changes values");
    rk_lora_adapter_free(a1);
    rk_lora_adapter_free(a2);

    struct rk_lora_adapter * bad = NULL;
    const char * dup[] = { "a", "a" };
    cr_assert_eq(rk_lora_adapter_new(&cfg, 2, dup, K, N, &bad), RK_STATUS_ARG);
    cr_assert(bad == NULL);
    cfg.r = 0;
    cr_assert_eq(rk_lora_adapter_new(&cfg, 2, names, K, N, &bad), RK_STATUS_ARG);
}

/* ---- finite differences ----------------------------------------------------------------------------------- */

/* L = sum(dy * y) in double, y = x W^T + b + s ((x*mask) A^T) B^T */
static double loss_ref(const double * x, const double * W, const double * b, const double * A, const double * B,
                       const double * mask, const float * dy, double s, struct rk_lora_shape sh) {
    double L = 0;
    double * u = calloc((size_t) sh.r, sizeof(double));
    for (int64_t i = 0; i < sh.M; i++) {
        for (int64_t k = 0; k < sh.r; k++) {
            double acc = 0;
            for (int64_t j = 0; j < sh.K; j++) acc += x[i * sh.K + j] * (mask ? mask[i * sh.K + j] : 1.0) * A[k * sh.K + j];
            u[k] = acc;
        }
        for (int64_t n = 0; n < sh.N; n++) {
            double y = b[n];
            for (int64_t j = 0; j < sh.K; j++) y += x[i * sh.K + j] * W[n * sh.K + j];
            for (int64_t k = 0; k < sh.r; k++) y += s * u[k] * B[n * sh.r + k];
            L += y * dy[i * sh.N + n];
        }
    }
    free(u);
    return L;
}

static double * to_double(const float * p, int64_t n) {
    double * d = malloc(sizeof(double) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}

/* Central differences of loss_ref with respect to every element of v (n), against grad. */
static void fd_check(double * v, int64_t n, const float * grad, const char * what, const double * x, const double * W,
                     const double * b, const double * A, const double * B, const double * mask, const float * dy,
                     double s, struct rk_lora_shape sh) {
    const double eps = 1e-4;
    for (int64_t i = 0; i < n; i++) {
        const double keep = v[i];
        v[i]              = keep + eps;
        const double lp   = loss_ref(x, W, b, A, B, mask, dy, s, sh);
        v[i]              = keep - eps;
        const double lm   = loss_ref(x, W, b, A, B, mask, dy, s, sh);
        v[i]              = keep;
        const double num  = (lp - lm) / (2 * eps);
        cr_assert(fabs(num - grad[i]) <= 1e-4 + 1e-4 * fabs(num), "%s[%lld]: backward %.8g, finite differences %.8g",
                  what, (long long) i, grad[i], num);
    }
}

static void fd_case(struct rk_lora_shape sh, bool with_mask, float s) {
    const int64_t M = sh.M, K = sh.K, N = sh.N, r = sh.r;
    float * x = rand_buf(M * K), * W = rand_buf(N * K), * b = rand_buf(N), * A = rand_buf(r * K), * B = rand_buf(N * r);
    float * dy = rand_buf(M * N), * mask = NULL;
    if (with_mask) { /* p = 0.25: keep factors 0 or 1/(1-p) */
        mask = malloc(sizeof(float) * (size_t) (M * K));
        for (int64_t i = 0; i < M * K; i++) mask[i] = urand() < -0.5f ? 0.0f : 1.0f / 0.75f;
    }
    float * y = zeros(M * N), * u = zeros(M * r);
    rk_cpu_lora_fwd(y, u, x, W, b, A, B, s, mask, sh);
    /* gradients accumulate: start from 1 and subtract it afterwards */
    float * dx = rand_buf(M * K), * dA = rand_buf(r * K), * dB = rand_buf(N * r);
    float * dx0 = malloc(sizeof(float) * (size_t) (M * K)), * dA0 = malloc(sizeof(float) * (size_t) (r * K));
    float * dB0 = malloc(sizeof(float) * (size_t) (N * r));
    memcpy(dx0, dx, sizeof(float) * (size_t) (M * K));
    memcpy(dA0, dA, sizeof(float) * (size_t) (r * K));
    memcpy(dB0, dB, sizeof(float) * (size_t) (N * r));
    rk_cpu_lora_bwd(dx, dA, dB, dy, x, u, W, A, B, s, mask, sh);
    for (int64_t i = 0; i < M * K; i++) dx[i] -= dx0[i];
    for (int64_t i = 0; i < r * K; i++) dA[i] -= dA0[i];
    for (int64_t i = 0; i < N * r; i++) dB[i] -= dB0[i];

    double * xd = to_double(x, M * K), * Wd = to_double(W, N * K), * bd = to_double(b, N), * Ad = to_double(A, r * K);
    double * Bd = to_double(B, N * r), * md = mask ? to_double(mask, M * K) : NULL;
    /* the forward itself against the double formula: sum(dy * y) */
    double L = 0;
    for (int64_t i = 0; i < M * N; i++) L += (double) dy[i] * y[i];
    const double Lref = loss_ref(xd, Wd, bd, Ad, Bd, md, dy, s, sh);
    cr_assert(fabs(L - Lref) <= 1e-4 * (1 + fabs(Lref)), "forward: %.8g vs %.8g", L, Lref);
    fd_check(xd, M * K, dx, "dx", xd, Wd, bd, Ad, Bd, md, dy, s, sh);
    fd_check(Ad, r * K, dA, "dA", xd, Wd, bd, Ad, Bd, md, dy, s, sh);
    fd_check(Bd, N * r, dB, "dB", xd, Wd, bd, Ad, Bd, md, dy, s, sh);

    /* dx NULL (first layer) and W NULL (adapter path only) are allowed */
    float * dA2 = zeros(r * K), * dB2 = zeros(N * r), * dxa = zeros(M * K);
    rk_cpu_lora_bwd(NULL, dA2, dB2, dy, x, u, W, A, B, s, mask, sh);
    assert_close(dA2, dA, r * K, 1e-5, 1e-5, "dA (dx NULL)");
    rk_cpu_lora_bwd(dxa, dA2, dB2, dy, x, u, NULL, A, B, s, mask, sh);
    float * y2 = zeros(M * N), * u2 = zeros(M * r);
    rk_cpu_lora_fwd(y2, u2, x, NULL, NULL, A, B, s, mask, sh); /* adapter path only, accumulated into 0 */
    for (int64_t i = 0; i < M * N; i++) y2[i] += 0; /* y - base must equal it */
    float * base = zeros(M * N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < N; n++) {
            double acc = b[n];
            for (int64_t j = 0; j < K; j++) acc += (double) x[i * K + j] * W[n * K + j];
            base[i * N + n] = (float) (y[i * N + n] - acc);
        }
    assert_close(y2, base, M * N, 1e-4, 1e-4, "adapter-only forward");
    float * xm_grad = zeros(M * K);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < K; j++) {
            double acc = 0;
            for (int64_t n = 0; n < N; n++) acc += (double) dy[i * N + n] * W[n * K + j];
            xm_grad[i * K + j] = (float) (dx[i * K + j] - acc);
        }
    assert_close(dxa, xm_grad, M * K, 1e-4, 1e-4, "adapter-only dx");

    free(x); free(W); free(b); free(A); free(B); free(dy); free(mask); free(y); free(u);
    free(dx); free(dA); free(dB); free(dx0); free(dA0); free(dB0);
    free(xd); free(Wd); free(bd); free(Ad); free(Bd); free(md);
    free(dA2); free(dB2); free(dxa); free(y2); free(u2); free(base); free(xm_grad);
}

Test(lora, backward_finite_differences) {
    fd_case((struct rk_lora_shape) { .M = 5, .K = 7, .N = 6, .r = 3 }, false, 2.0f);
    fd_case((struct rk_lora_shape) { .M = 1, .K = 9, .N = 4, .r = 1 }, false, 0.5f);
    fd_case((struct rk_lora_shape) { .M = 6, .K = 8, .N = 5, .r = 4 }, true, 1.5f);
}

/* ---- merge == unmerged forward ------------------------------------------------------------------------------ */

Test(lora, merge_matches_forward) {
    const struct rk_lora_shape sh = { .M = 33, .K = 96, .N = 80, .r = 8 };
    const int64_t M = sh.M, K = sh.K, N = sh.N, r = sh.r;
    const float s = 2.0f;
    float * x = rand_buf(M * K), * W = rand_buf(N * K), * b = rand_buf(N), * A = rand_buf(r * K), * B = rand_buf(N * r);
    float * y = zeros(M * N), * u = zeros(M * r), * Wm = malloc(sizeof(float) * (size_t) (N * K));
    rk_cpu_lora_fwd(y, u, x, W, b, A, B, s, NULL, sh);
    memcpy(Wm, W, sizeof(float) * (size_t) (N * K));
    rk_cpu_lora_merge(Wm, A, B, s, sh);
    /* plain matmul with the merged weight */
    float * ym = zeros(M * N);
    for (int64_t i = 0; i < M; i++) memcpy(ym + i * N, b, sizeof(float) * (size_t) N);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) N, (int) K, 1.0f, x, (int) K, Wm, (int) K,
                1.0f, ym, (int) N);
    assert_close(ym, y, M * N, 1e-5, 1e-5, "merged forward");
    rk_cpu_lora_unmerge(Wm, A, B, s, sh);
    assert_close(Wm, W, N * K, 1e-5, 1e-5, "unmerge");
    free(x); free(W); free(b); free(A); free(B); free(y); free(u); free(Wm); free(ym);
}

/* ---- the ops RK_OP_LORA_FWD / RK_OP_LORA_BWD on the CPU backend ------------------------------------------- */

static struct rk_tensor host2(float * d, int64_t a, int64_t b) {
    return rk_tensor_host(d, RK_DTYPE_F32, 2, (int64_t[]) { a, b });
}

static float * dup_buf(const float * p, int64_t n) {
    float * d = malloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    memcpy(d, p, sizeof(float) * (size_t) n);
    return d;
}

/* The DROPOUT op's keep factors for n elements (0 or 1/(1-p)), drawn element by element with rk_dropout_uniform
 * (not through rk_cpu_dropout, which the op uses): NULL for p = 0. */
static float * keep_factors(float p, uint64_t seed, uint64_t offset, int64_t n) {
    if (p == 0.0f) return NULL;
    float * m = malloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) m[i] = rk_dropout_uniform(seed, offset, (uint64_t) i) >= p ? 1.0f / (1.0f - p) : 0.0f;
    return m;
}

static enum rk_status op_fwd(struct rk_backend * be, float * y, float * u, const float * x, const float * A,
                             const float * B, struct rk_lora_shape sh, const struct rk_lora_params * p) {
    struct rk_tensor ty = host2(y, sh.M, sh.N), tu = host2(u, sh.M, sh.r), tx = host2((float *) x, sh.M, sh.K);
    struct rk_tensor tA = host2((float *) A, sh.r, sh.K), tB = host2((float *) B, sh.N, sh.r);
    struct rk_op_call c = { .op = RK_OP_LORA_FWD, .dst = &ty, .src = { &tx, &tA, &tB, u ? &tu : NULL } };
    c.p.lora = *p;
    return rk_op(be, &c);
}

/* dx NULL: a dst with no data (no input gradient); dA / dB NULL: not wanted. */
static enum rk_status op_bwd(struct rk_backend * be, float * dx, float * dA, float * dB, const float * dy,
                             const float * x, const float * u, const float * A, const float * B, struct rk_lora_shape sh,
                             const struct rk_lora_params * p) {
    struct rk_tensor tdx = host2(dx, sh.M, sh.K), tdy = host2((float *) dy, sh.M, sh.N);
    struct rk_tensor tx = host2((float *) x, sh.M, sh.K), tu = host2((float *) u, sh.M, sh.r);
    struct rk_tensor tA = host2((float *) A, sh.r, sh.K), tB = host2((float *) B, sh.N, sh.r);
    struct rk_tensor tdA = host2(dA, sh.r, sh.K), tdB = host2(dB, sh.N, sh.r);
    struct rk_op_call c = { .op = RK_OP_LORA_BWD, .dst = &tdx, .src = { &tdy, &tx, &tu, &tA, &tB } };
    c.p.lora    = *p;
    c.p.lora.dA = dA ? &tdA : NULL;
    c.p.lora.dB = dB ? &tdB : NULL;
    return rk_op(be, &c);
}

struct op_case {
    struct rk_lora_shape sh;
    float                p, s;
};

/* The op against the reference math with an independently drawn mask; u against DROPOUT(x) A^T. */
Test(lora, ops_cpu_vs_reference) {
    static const struct op_case cases[] = {
        { { .M = 5, .K = 7, .N = 6, .r = 3 }, 0.0f, 2.0f },     { { .M = 33, .K = 96, .N = 80, .r = 8 }, 0.1f, 0.5f },
        { { .M = 1, .K = 9, .N = 4, .r = 1 }, 0.5f, 1.0f },     { { .M = 64, .K = 384, .N = 1000, .r = 16 }, 0.1f, 2.0f },
        { { .M = 7, .K = 13, .N = 11, .r = 64 }, 0.25f, 0.25f }, { { .M = 4, .K = 10, .N = 3, .r = 2 }, 1.0f, 1.0f },
    };
    struct rk_backend * be = rk_backend_cpu_init(2);
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        const struct rk_lora_shape sh = cases[ci].sh;
        const int64_t M = sh.M, K = sh.K, N = sh.N, r = sh.r;
        const struct rk_lora_params p = { .scale = cases[ci].s, .dropout = cases[ci].p, .seed = 99 + ci, .offset = 7 };
        float * x = rand_buf(M * K), * A = rand_buf(r * K), * B = rand_buf(N * r), * y0 = rand_buf(M * N);
        float * dy = rand_buf(M * N), * dx0 = rand_buf(M * K), * dA0 = rand_buf(r * K), * dB0 = rand_buf(N * r);
        float * mask = keep_factors(p.dropout, p.seed, p.offset, M * K);

        float * y = dup_buf(y0, M * N), * u = zeros(M * r), * yr = dup_buf(y0, M * N), * ur = zeros(M * r);
        cr_assert_eq(op_fwd(be, y, u, x, A, B, sh, &p), RK_OK, "%s", rk_last_error());
        rk_cpu_lora_fwd(yr, ur, x, NULL, NULL, A, B, p.scale, mask, sh);
        assert_close(y, yr, M * N, 1e-6, 1e-6, "op y");
        assert_close(u, ur, M * r, 1e-6, 1e-6, "op u");

        /* the keep rule is DROPOUT's for flat index m*K + k: u = DROPOUT(x) A^T */
        float * xd = zeros(M * K), * u2 = zeros(M * r);
        struct rk_tensor tx = host2(x, M, K), txd = host2(xd, M, K);
        struct rk_op_call dc = { .op = RK_OP_DROPOUT, .dst = &txd, .src = { &tx } };
        dc.p.dropout = (struct rk_dropout_params) { .p = p.dropout, .seed = p.seed, .offset = p.offset };
        cr_assert_eq(rk_op(be, &dc), RK_OK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) r, (int) K, 1.0f, xd, (int) K, A, (int) K,
                    0.0f, u2, (int) r);
        assert_close(u, u2, M * r, 1e-5, 1e-5, "u = DROPOUT(x) A^T");

        /* inference: u NULL gives the same y */
        float * y3 = dup_buf(y0, M * N);
        cr_assert_eq(op_fwd(be, y3, NULL, x, A, B, sh, &p), RK_OK, "%s", rk_last_error());
        assert_close(y3, y, M * N, 0, 0, "y without u");

        float * dx = dup_buf(dx0, M * K), * dA = dup_buf(dA0, r * K), * dB = dup_buf(dB0, N * r);
        float * dxr = dup_buf(dx0, M * K), * dAr = dup_buf(dA0, r * K), * dBr = dup_buf(dB0, N * r);
        cr_assert_eq(op_bwd(be, dx, dA, dB, dy, x, u, A, B, sh, &p), RK_OK, "%s", rk_last_error());
        rk_cpu_lora_bwd(dxr, dAr, dBr, dy, x, u, NULL, A, B, p.scale, mask, sh);
        assert_close(dx, dxr, M * K, 1e-6, 1e-6, "op dx");
        assert_close(dA, dAr, r * K, 1e-6, 1e-6, "op dA");
        assert_close(dB, dBr, N * r, 1e-6, 1e-6, "op dB");
        if (p.dropout >= 1.0f) { /* everything dropped: the adapter adds nothing, u = 0 */
            assert_close(y, y0, M * N, 0, 0, "p = 1: y unchanged");
            assert_close(dx, dx0, M * K, 0, 0, "p = 1: dx unchanged");
            assert_close(dA, dA0, r * K, 0, 0, "p = 1: dA unchanged");
        }
        free(x); free(A); free(B); free(y0); free(dy); free(dx0); free(dA0); free(dB0); free(mask);
        free(y); free(u); free(yr); free(ur); free(xd); free(u2); free(y3);
        free(dx); free(dA); free(dB); free(dxr); free(dAr); free(dBr);
    }
    rk_backend_free(be);
}

/* The op's backward against central finite differences with dropout on (p = 0.1, the mask fixed by seed/offset). */
Test(lora, op_backward_finite_differences_dropout) {
    const struct rk_lora_shape  sh = { .M = 6, .K = 8, .N = 5, .r = 4 };
    const int64_t               M = sh.M, K = sh.K, N = sh.N, r = sh.r;
    const struct rk_lora_params p  = { .scale = 1.5f, .dropout = 0.1f, .seed = 2026, .offset = 3 };
    float * mask = keep_factors(p.dropout, p.seed, p.offset, M * K);
    int64_t dropped = 0;
    for (int64_t i = 0; i < M * K; i++) dropped += mask[i] == 0.0f;
    cr_assert(dropped > 0 && dropped < M * K / 2, "seed drops %lld of %lld: pick another", (long long) dropped,
              (long long) (M * K));
    float * x = rand_buf(M * K), * A = rand_buf(r * K), * B = rand_buf(N * r), * dy = rand_buf(M * N);
    float * y = zeros(M * N), * u = zeros(M * r), * dx = zeros(M * K), * dA = zeros(r * K), * dB = zeros(N * r);
    struct rk_backend * be = rk_backend_cpu_init(2);
    cr_assert_eq(op_fwd(be, y, u, x, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    cr_assert_eq(op_bwd(be, dx, dA, dB, dy, x, u, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    /* the double-precision model: a zero frozen base, the adapter with the DROPOUT op's mask */
    double * Wd = calloc((size_t) (N * K), sizeof(double)), * bd = calloc((size_t) N, sizeof(double));
    double * xd = to_double(x, M * K), * Ad = to_double(A, r * K), * Bd = to_double(B, N * r);
    double * md = to_double(mask, M * K);
    double L = 0;
    for (int64_t i = 0; i < M * N; i++) L += (double) dy[i] * y[i];
    const double Lref = loss_ref(xd, Wd, bd, Ad, Bd, md, dy, p.scale, sh);
    cr_assert(fabs(L - Lref) <= 1e-5 * (1 + fabs(Lref)), "forward: %.8g vs %.8g", L, Lref);
    fd_check(xd, M * K, dx, "dx", xd, Wd, bd, Ad, Bd, md, dy, p.scale, sh);
    fd_check(Ad, r * K, dA, "dA", xd, Wd, bd, Ad, Bd, md, dy, p.scale, sh);
    fd_check(Bd, N * r, dB, "dB", xd, Wd, bd, Ad, Bd, md, dy, p.scale, sh);
    /* a dropped input element gets no gradient */
    for (int64_t i = 0; i < M * K; i++)
        if (mask[i] == 0.0f) cr_assert(dx[i] == 0.0f, "dx[%lld] = %g for a dropped element", (long long) i, dx[i]);
    rk_backend_free(be);
    free(mask); free(x); free(A); free(B); free(dy); free(y); free(u); free(dx); free(dA); free(dB);
    free(Wd); free(bd); free(xd); free(Ad); free(Bd); free(md);
}

/* Every gradient accumulates; a dx without data and NULL dA / dB are skipped. */
Test(lora, op_gradient_accumulation) {
    const struct rk_lora_shape  sh = { .M = 9, .K = 20, .N = 12, .r = 4 };
    const int64_t               M = sh.M, K = sh.K, N = sh.N, r = sh.r;
    const struct rk_lora_params p  = { .scale = 2.0f, .dropout = 0.1f, .seed = 5, .offset = 11 };
    float * x = rand_buf(M * K), * A = rand_buf(r * K), * B = rand_buf(N * r), * dy = rand_buf(M * N);
    float * y = zeros(M * N), * u = zeros(M * r);
    struct rk_backend * be = rk_backend_cpu_init(2);
    cr_assert_eq(op_fwd(be, y, u, x, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    /* one step from zero */
    float * dx1 = zeros(M * K), * dA1 = zeros(r * K), * dB1 = zeros(N * r);
    cr_assert_eq(op_bwd(be, dx1, dA1, dB1, dy, x, u, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    /* two steps from G0: G0 + 2 * step */
    float * dx = rand_buf(M * K), * dA = rand_buf(r * K), * dB = rand_buf(N * r);
    float * want_x = dup_buf(dx, M * K), * want_A = dup_buf(dA, r * K), * want_B = dup_buf(dB, N * r);
    for (int64_t i = 0; i < M * K; i++) want_x[i] += 2 * dx1[i];
    for (int64_t i = 0; i < r * K; i++) want_A[i] += 2 * dA1[i];
    for (int64_t i = 0; i < N * r; i++) want_B[i] += 2 * dB1[i];
    for (int k = 0; k < 2; k++) cr_assert_eq(op_bwd(be, dx, dA, dB, dy, x, u, A, B, sh, &p), RK_OK);
    assert_close(dx, want_x, M * K, 1e-5, 1e-5, "dx accumulated twice");
    assert_close(dA, want_A, r * K, 1e-5, 1e-5, "dA accumulated twice");
    assert_close(dB, want_B, N * r, 1e-5, 1e-5, "dB accumulated twice");
    /* no input gradient (dst without data): dA, dB as before */
    float * dA2 = zeros(r * K), * dB2 = zeros(N * r);
    cr_assert_eq(op_bwd(be, NULL, dA2, dB2, dy, x, u, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    assert_close(dA2, dA1, r * K, 0, 0, "dA without dx");
    assert_close(dB2, dB1, N * r, 0, 0, "dB without dx");
    /* only the input gradient */
    float * dx2 = zeros(M * K);
    cr_assert_eq(op_bwd(be, dx2, NULL, NULL, dy, x, u, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    assert_close(dx2, dx1, M * K, 0, 0, "dx without dA, dB");
    rk_backend_free(be);
    free(x); free(A); free(B); free(dy); free(y); free(u); free(dx1); free(dA1); free(dB1);
    free(dx); free(dA); free(dB); free(want_x); free(want_A); free(want_B); free(dA2); free(dB2); free(dx2);
}

Test(lora, op_errors) {
    const struct rk_lora_shape  sh = { .M = 3, .K = 8, .N = 5, .r = 2 };
    struct rk_lora_params       p  = { .scale = 1.0f };
    float * x = rand_buf(3 * 8), * A = rand_buf(2 * 8), * B = rand_buf(5 * 2), * y = zeros(3 * 5), * u = zeros(3 * 2);
    struct rk_backend * be = rk_backend_cpu_init(1);
    /* A (r,K) with K = 7 against x's 8 columns */
    const struct rk_lora_shape bad = { .M = 3, .K = 7, .N = 5, .r = 2 };
    struct rk_tensor ty = host2(y, 3, 5), tx = host2(x, 3, 8), tA = host2(A, bad.r, bad.K), tB = host2(B, 5, 2);
    struct rk_op_call c = { .op = RK_OP_LORA_FWD, .dst = &ty, .src = { &tx, &tA, &tB } };
    c.p.lora = p;
    cr_assert_eq(rk_op(be, &c), RK_STATUS_ARG);
    p.dropout = 1.5f;
    cr_assert_eq(op_fwd(be, y, u, x, A, B, sh, &p), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), "dropout") != NULL, "%s", rk_last_error());
    /* 16-bit tensors are the CUDA backend's: unsupported here */
    p.dropout = 0.0f;
    ty.dtype  = RK_DTYPE_BF16;
    c.p.lora  = p;
    tA        = host2(A, 2, 8);
    cr_assert_eq(rk_op(be, &c), RK_STATUS_UNSUPPORTED);
    rk_backend_free(be);
    free(x); free(A); free(B); free(y); free(u);
}

/* ---- LoRA over an NF4 base (QLoRA): PEFT's lora.bnb.Linear4bit on bitsandbytes' CPU path -------------------- */

static void assert_bytes_i32(const uint8_t * got, const struct rk_gold_tensor * want, int64_t n, const char * what) {
    cr_assert_eq(want->n, n, "%s: %lld bytes, want %lld", what, (long long) want->n, (long long) n);
    const int32_t * w = want->data;
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != (uint8_t) w[i] && bad++ == 0) first = i;
    cr_assert(bad == 0, "%s: %lld of %lld bytes differ (first at %lld: 0x%02x, want 0x%02x)", what, (long long) bad,
              (long long) n, (long long) first, got[first], (uint8_t) w[first]);
}

static void assert_bits(const float * got, const struct rk_gold_tensor * want, int64_t n, const char * what) {
    cr_assert_eq(want->n, n, "%s: %lld values, want %lld", what, (long long) want->n, (long long) n);
    const float * w = want->data;
    for (int64_t i = 0; i < n; i++)
        cr_assert(got[i] == w[i], "%s[%lld]: %.9g, want %.9g (bit-exact)", what, (long long) i, got[i], w[i]);
}

static struct rk_nf4_tensor quantize_or_fail(const float * W, int64_t N, int64_t K, bool dq) {
    struct rk_nf4_tensor t;
    cr_assert_eq(rk_cpu_nf4_quantize(W, N, K, 64, RK_QUANT4_NF4, dq, &t), RK_OK, "%s", rk_last_error());
    return t;
}

/*
 * The adapted layer y = NF4 base + LoRA: the base through the dequantized f32 weight and the ops MATMUL /
 * MATMUL_BWD, the adapter through LORA_FWD / LORA_BWD, against PEFT's forward and autograd on bnb's CPU Linear4bit.
 */
Test(lora, nf4_base_peft_golden) {
    char path[600];
    struct rk_gold g = rk_gold_load(rk_test_path(path, sizeof(path), "tests/golden/lora_nf4.rkgd"));
    const struct rk_gold_tensor * gW = rk_gold_get(&g, "W"), * gA = rk_gold_get(&g, "A"), * gx = rk_gold_get(&g, "x");
    const int64_t N = gW->dims[0], K = gW->dims[1], r = gA->dims[0], M = gx->dims[0];
    const struct rk_lora_shape sh = { .M = M, .K = K, .N = N, .r = r };
    const float s = ((float *) rk_gold_get(&g, "scale")->data)[0];
    float * A = rk_gold_get(&g, "A")->data, * B = rk_gold_get(&g, "B")->data, * b = rk_gold_get(&g, "b")->data;
    float * x = gx->data, * dy = rk_gold_get(&g, "dy")->data;

    /* our quantizer gives bnb's W4 */
    struct rk_nf4_tensor w4 = quantize_or_fail(gW->data, N, K, false);
    assert_bytes_i32(w4.packed, rk_gold_get(&g, "w4.packed"), (N * K + 1) / 2, "W4 packed");
    assert_bits(w4.absmax, rk_gold_get(&g, "w4.absmax"), w4.n_blocks, "W4 absmax");
    float * deq = zeros(N * K);
    rk_cpu_nf4_dequantize(&w4, deq);
    assert_bits(deq, rk_gold_get(&g, "w4.deq"), N * K, "dequant(W4)");

    /* forward: MATMUL with the dequantized weight, then LORA_FWD into the same y */
    struct rk_backend * be = rk_backend_cpu_init(2);
    float * y = zeros(M * N), * u = zeros(M * r);
    struct rk_tensor ty = host2(y, M, N), tx = host2(x, M, K), tW = host2(deq, N, K);
    struct rk_tensor tb = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { N });
    cr_assert_eq(rk_op_matmul(be, &ty, &tx, &tW, &tb, RK_ACT_NONE), RK_OK, "%s", rk_last_error());
    const struct rk_lora_params p = { .scale = s };
    cr_assert_eq(op_fwd(be, y, u, x, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    assert_close(y, rk_gold_get(&g, "y")->data, M * N, 1e-5, 1e-5, "y (NF4 base + LoRA)");

    /* backward: the frozen base's dx = dy dequant(W4) by MATMUL_BWD, the adapter's terms added by LORA_BWD */
    float * dx = zeros(M * K), * dA = zeros(r * K), * dB = zeros(N * r);
    struct rk_tensor tdx = host2(dx, M, K), tdy = host2(dy, M, N);
    struct rk_op_call mb = { .op = RK_OP_MATMUL_BWD, .dst = &tdx, .src = { &tdy, &tx, &tW } };
    cr_assert_eq(rk_op(be, &mb), RK_OK, "%s", rk_last_error());
    cr_assert_eq(op_bwd(be, dx, dA, dB, dy, x, u, A, B, sh, &p), RK_OK, "%s", rk_last_error());
    assert_close(dx, rk_gold_get(&g, "dx")->data, M * K, 1e-5, 1e-5, "dx");
    assert_close(dA, rk_gold_get(&g, "dA")->data, r * K, 1e-5, 1e-5, "dA");
    assert_close(dB, rk_gold_get(&g, "dB")->data, N * r, 1e-5, 1e-5, "dB");
    rk_backend_free(be);

    /* merge_and_unload: dequantize, add s B A, re-quantize; bit for bit with PEFT + bnb */
    cr_assert_eq(rk_cpu_lora_merge_nf4(&w4, A, B, s, r), RK_OK, "%s", rk_last_error());
    assert_bytes_i32(w4.packed, rk_gold_get(&g, "merged.packed"), (N * K + 1) / 2, "merged packed");
    assert_bits(w4.absmax, rk_gold_get(&g, "merged.absmax"), w4.n_blocks, "merged absmax");
    rk_cpu_nf4_dequantize(&w4, deq);
    assert_bits(deq, rk_gold_get(&g, "merged.deq"), N * K, "dequant(merged)");
    /* merge_adapter then unmerge_adapter: two trips through 4 bits */
    cr_assert_eq(rk_cpu_lora_unmerge_nf4(&w4, A, B, s, r), RK_OK, "%s", rk_last_error());
    assert_bytes_i32(w4.packed, rk_gold_get(&g, "unmerged.packed"), (N * K + 1) / 2, "unmerged packed");
    assert_bits(w4.absmax, rk_gold_get(&g, "unmerged.absmax"), w4.n_blocks, "unmerged absmax");
    rk_nf4_tensor_free(&w4);

    /*
     * A double-quantized base (compress_statistics=True): the merge keeps the format. bnb's offset is torch's float32
     * mean of absmax, rk_cpu_nf4_quantize's a double mean rounded once; they may differ by an ulp, which moves every
     * dequantized value by about as much. So the base gets bnb's nested state, after checking that the codes agree
     * exactly and the offset and scales within 1 ulp; the packed nibbles must then agree bit for bit, before and
     * after the merge, and the dequantized merge to 1e-6 (the merged offset is rk's again).
     */
    struct rk_nf4_tensor wdq = quantize_or_fail(gW->data, N, K, true);
    assert_bytes_i32(wdq.packed, rk_gold_get(&g, "dq.packed"), (N * K + 1) / 2, "dq packed");
    assert_bytes_i32(wdq.absmax_q, rk_gold_get(&g, "dq.absmax_q"), wdq.n_blocks, "dq absmax codes");
    const struct rk_gold_tensor * gsc = rk_gold_get(&g, "dq.scale");
    cr_assert_eq(gsc->n, (wdq.n_blocks + wdq.nested_blocksize - 1) / wdq.nested_blocksize);
    assert_close(wdq.absmax_scale, gsc->data, gsc->n, 0, 1e-6, "dq absmax scales");
    memcpy(wdq.absmax_scale, gsc->data, sizeof(float) * (size_t) gsc->n);
    const float boff = ((float *) rk_gold_get(&g, "dq.offset")->data)[0];
    cr_assert(fabsf(wdq.absmax_offset - boff) <= 1.2e-7f * boff, "dq offset %.9g, bnb %.9g", wdq.absmax_offset, boff);
    wdq.absmax_offset = boff;
    rk_cpu_nf4_dequantize(&wdq, deq);
    assert_bits(deq, rk_gold_get(&g, "dq.deq"), N * K, "dequant(dq W4)");
    cr_assert_eq(rk_cpu_lora_merge_nf4(&wdq, A, B, s, r), RK_OK, "%s", rk_last_error());
    cr_assert(wdq.double_quant);
    assert_bytes_i32(wdq.packed, rk_gold_get(&g, "dq.merged.packed"), (N * K + 1) / 2, "dq merged packed");
    rk_cpu_nf4_dequantize(&wdq, deq);
    assert_close(deq, rk_gold_get(&g, "dq.merged.deq")->data, N * K, 0, 1e-6, "dequant(dq merged)");
    rk_nf4_tensor_free(&wdq);

    struct rk_nf4_tensor w0 = quantize_or_fail(gW->data, N, K, false);
    cr_assert_eq(rk_cpu_lora_merge_nf4(&w0, A, B, s, 0), RK_STATUS_ARG);
    rk_nf4_tensor_free(&w0);
    free(deq); free(y); free(u); free(dx); free(dA); free(dB);
    rk_gold_free(&g);
}

/* ---- CUDA parity: LORA_FWD / LORA_BWD on the device against the CPU op on the same 16-bit-rounded inputs ------
 * Three ways per case: through rk_op on the CUDA backend ([backend]: its own choice of variant, its cuBLAS handle and
 * scratch), and the launchers rk_cuda_lora_fwd/bwd with each variant ([fused]: lora.cu's kernels; [unfused]: cuBLAS). Every
 * device buffer sits between 256-byte guards, rows may be padded (a row stride above the width), and guards, row
 * gaps and inputs are pre-filled and must come back unchanged; an output element the kernel never writes stays
 * NaN (0xFF bytes) and fails the comparison. Skipped without a CUDA device (STYLE.md 6). RK_TEST_FILTER selects
 * cases by substring of the case string. */

/* Its own suite, so its own seed: without one the xorshift state stays 0 and every input is -1. */
TestSuite(lora_cuda, .init = seed_rng);

#ifdef RK_HAVE_CUDA
#include "kernels/cuda_ops.h"
#include "lora/lora_cuda.h"

#include <cublas_v2.h>

#define GUARD 256

enum { CASE_PASS = 0, CASE_FAIL, CASE_SKIP };

static float round_dt(enum rk_dtype dt, float v) {
    return dt == RK_DTYPE_BF16 ? rk_bf16_to_f32(rk_f32_to_bf16(v)) : dt == RK_DTYPE_F16 ? rk_f16_to_f32(rk_f32_to_f16(v)) : v;
}

/* n uniform values times scale, rounded to dt (free()). */
static float * rand_dt(enum rk_dtype dt, int64_t n, float scale) {
    float * v = malloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = round_dt(dt, urand() * scale);
    return v;
}

/* A (rows, cols) matrix with row stride ld on the device, between guards; the rest of the buffer is 0xFF. */
struct gbuf {
    struct rk_backend * be;
    enum rk_dtype       dt;
    int64_t             rows, cols, ld;
    size_t              bytes;
    uint8_t *           dev;
    uint8_t *           img; /* what was uploaded */
};

static size_t gb_off(const struct gbuf * b, int64_t i, int64_t j) {
    return GUARD + (size_t) (i * b->ld + j) * rk_dtype_traits[b->dt].type_size;
}

static void put_elem(uint8_t * p, enum rk_dtype dt, float v) {
    if (dt == RK_DTYPE_F32) memcpy(p, &v, 4);
    else {
        const uint16_t h = dt == RK_DTYPE_BF16 ? rk_f32_to_bf16(v) : rk_f32_to_f16(v);
        memcpy(p, &h, 2);
    }
}

static float get_elem(const uint8_t * p, enum rk_dtype dt) {
    if (dt == RK_DTYPE_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return dt == RK_DTYPE_BF16 ? rk_bf16_to_f32(h) : rk_f16_to_f32(h);
}

/* Uploads vals (rows*cols, or NULL: left as 0xFF) and returns the 2-D view. */
static struct rk_tensor gb_init(struct gbuf * b, struct rk_backend * be, enum rk_dtype dt, int64_t rows, int64_t cols,
                                int64_t ld, const float * vals, const char * name) {
    *b = (struct gbuf) { .be = be, .dt = dt, .rows = rows, .cols = cols, .ld = ld };
    const size_t es = rk_dtype_traits[dt].type_size;
    b->bytes        = 2 * GUARD + (size_t) ((rows > 0 ? rows - 1 : 0) * ld + cols) * es;
    b->dev          = be->alloc(be, b->bytes);
    cr_assert(b->dev != NULL, "device allocation of %zu bytes", b->bytes);
    b->img = malloc(b->bytes);
    memset(b->img, 0xFF, b->bytes);
    if (vals)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) put_elem(b->img + gb_off(b, i, j), dt, vals[i * cols + j]);
    cr_assert_eq(be->copy_to_device(be, b->dev, b->img, b->bytes), RK_OK);
    struct rk_tensor t;
    rk_tensor_init(&t, dt, 2, (int64_t[]) { rows, cols }, name);
    t.nb[0]   = ld * (int64_t) es;
    t.data    = b->dev + GUARD;
    t.backend = be;
    return t;
}

/* Downloads b; out (rows*cols, or NULL) gets the values. Every byte outside the matrix (and, for an input, every
 * byte) must be as uploaded; prints the first change and returns false otherwise. */
static bool gb_fetch(struct gbuf * b, float * out, bool is_output, const char * cs, const char * what) {
    uint8_t * got = malloc(b->bytes);
    cr_assert_eq(b->be->copy_to_host(b->be, got, b->dev, b->bytes), RK_OK);
    const size_t es = rk_dtype_traits[b->dt].type_size;
    int64_t      bad = 0;
    for (size_t i = 0; i < b->bytes; i++) {
        if (got[i] == b->img[i]) continue;
        bool in_matrix = false;
        if (is_output && i >= GUARD && i < b->bytes - GUARD) {
            const int64_t e = (int64_t) ((i - GUARD) / es);
            in_matrix       = e % b->ld < b->cols && e / b->ld < b->rows;
        }
        if (in_matrix) continue;
        if (bad++ < 3)
            fprintf(stderr, "    %s: %s: byte %lld (%s) changed 0x%02x -> 0x%02x\n", cs, what, (long long) i - GUARD,
                    i < GUARD || i >= b->bytes - GUARD ? "guard" : is_output ? "row gap" : "input", b->img[i], got[i]);
    }
    if (out)
        for (int64_t i = 0; i < b->rows; i++)
            for (int64_t j = 0; j < b->cols; j++) out[i * b->cols + j] = get_elem(got + gb_off(b, i, j), b->dt);
    free(got);
    return bad == 0;
}

static void gb_free(struct gbuf * b) {
    if (b->dev) b->be->free(b->be, b->dev);
    free(b->img);
    memset(b, 0, sizeof(*b));
}

/*
 * nmse and |got - ref| <= atol + rtol |ref| per element, as tests/test_ops.c; NaN fails. rounded_g: the output sums
 * many products with g = dy B, which the device rounds to dt before the tensor cores (as PEFT's 16-bit autograd
 * does) and the CPU keeps in f32; each term then carries its own relative rounding error (up to u, the unit
 * roundoff of dt: 2^-8 bf16, 2^-11 f16), so the error of a sum is about u/sqrt(3) times the output's rms whatever
 * the element: atol is raised to 4 u rms(ref) (7 standard deviations).
 */
static bool close_dt(const char * cs, const char * what, const float * got, const float * ref, int64_t n,
                     enum rk_dtype dt, bool rounded_g) {
    const double nmse_max = dt == RK_DTYPE_F16 ? 1e-5 : dt == RK_DTYPE_F32 ? 1e-9 : 1e-4;
    const double rtol = dt == RK_DTYPE_F16 ? 4e-3 : dt == RK_DTYPE_F32 ? 1e-4 : 2e-2;
    double       atol = dt == RK_DTYPE_F16 ? 2e-3 : dt == RK_DTYPE_F32 ? 1e-4 : 1e-2;
    if (rounded_g && dt != RK_DTYPE_F32) {
        double sq = 0;
        for (int64_t i = 0; i < n; i++) sq += (double) ref[i] * ref[i];
        const double u = dt == RK_DTYPE_F16 ? 0x1p-11 : 0x1p-8, rms = sqrt(sq / (double) (n > 0 ? n : 1));
        if (4 * u * rms > atol) atol = 4 * u * rms;
    }
    double e2 = 0, r2 = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double) got[i] - ref[i]);
        if (isnan(got[i]) || !(e <= atol + rtol * fabs(ref[i]))) {
            if (bad++ < 4) fprintf(stderr, "    %s: %s[%lld]: ref %.7g got %.7g\n", cs, what, (long long) i, ref[i], got[i]);
        } else {
            e2 += e * e;
        }
        r2 += (double) ref[i] * ref[i];
    }
    const double nmse = r2 > 0 ? e2 / r2 : e2;
    if (bad || nmse > nmse_max)
        fprintf(stderr, "    %s: %s: %lld of %lld out of tolerance, nmse %.3g (limit %.3g)\n", cs, what,
                (long long) bad, (long long) n, nmse, nmse_max);
    return bad == 0 && nmse <= nmse_max;
}

struct cuda_case {
    int64_t       M, K, N, r;
    float         p;
    enum rk_dtype dt;
    int64_t       pad;       /* row padding of x, y, dy, dx (elements) */
    bool          f32_grads; /* dA, dB in f32 (master gradients), else in dt */
};

static const struct cuda_case cuda_cases[] = {
    { 1, 384, 1000, 8, 0.0f, RK_DTYPE_BF16, 0, true },      { 7, 1000, 384, 1, 0.1f, RK_DTYPE_BF16, 8, true },
    { 64, 4096, 384, 16, 0.1f, RK_DTYPE_BF16, 0, true },    { 1000, 384, 4096, 64, 0.0f, RK_DTYPE_BF16, 0, false },
    { 1000, 1000, 1000, 16, 0.1f, RK_DTYPE_F16, 3, true },  { 64, 384, 1000, 64, 0.25f, RK_DTYPE_F16, 0, true },
    { 7, 4096, 4096, 16, 0.0f, RK_DTYPE_BF16, 0, true },    { 1000, 4096, 1000, 8, 0.1f, RK_DTYPE_BF16, 0, true },
    { 64, 1000, 4096, 1, 0.0f, RK_DTYPE_F16, 8, false },    { 1, 4096, 384, 64, 0.1f, RK_DTYPE_F16, 0, true },
    { 33, 384, 384, 20, 0.1f, RK_DTYPE_BF16, 1, true },     { 100, 512, 768, 40, 0.0f, RK_DTYPE_F16, 0, true },
    { 129, 96, 200, 24, 0.5f, RK_DTYPE_BF16, 0, false },    { 16, 64, 64, 8, 1.0f, RK_DTYPE_BF16, 0, true },
    /* odd K and N with even row strides (the paired y/dx stores at the last column); 33 dy chunks over 17 splits */
    { 17, 129, 257, 17, 0.1f, RK_DTYPE_F16, 1, true },      { 1000, 64, 2112, 8, 0.1f, RK_DTYPE_BF16, 0, true },
};

static const char * dtname(enum rk_dtype dt) { return rk_dtype_traits[dt].name; }

/* The inputs of a case (rounded to its dtype) and the CPU op's results on them. */
struct cuda_ref {
    float * x, * A, * B, * y0, * dy, * dx0, * dA0, * dB0; /* inputs */
    float * y, * u, * dx, * dA, * dB;                     /* CPU results; u rounded to dt is the backward's input */
};

static struct cuda_ref cuda_reference(const struct cuda_case * c, const struct rk_lora_params * p) {
    const int64_t M = c->M, K = c->K, N = c->N, r = c->r;
    const enum rk_dtype gdt = c->f32_grads ? RK_DTYPE_F32 : c->dt;
    struct cuda_ref R;
    R.x   = rand_dt(c->dt, M * K, 1.0f);
    R.A   = rand_dt(c->dt, r * K, 1.0f / sqrtf((float) K));
    R.B   = rand_dt(c->dt, N * r, 1.0f / sqrtf((float) r));
    R.y0  = rand_dt(c->dt, M * N, 1.0f);
    R.dy  = rand_dt(c->dt, M * N, 1.0f / sqrtf((float) N));
    R.dx0 = rand_dt(c->dt, M * K, 0.1f);
    R.dA0 = rand_dt(gdt, r * K, 0.1f);
    R.dB0 = rand_dt(gdt, N * r, 0.1f);
    R.y = dup_buf(R.y0, M * N), R.u = zeros(M * r);
    R.dx = dup_buf(R.dx0, M * K), R.dA = dup_buf(R.dA0, r * K), R.dB = dup_buf(R.dB0, N * r);
    struct rk_backend * cpu = rk_backend_cpu_init(2);
    const struct rk_lora_shape sh = { .M = M, .K = K, .N = N, .r = r };
    cr_assert_eq(op_fwd(cpu, R.y, R.u, R.x, R.A, R.B, sh, p), RK_OK, "%s", rk_last_error());
    for (int64_t i = 0; i < M * r; i++) R.u[i] = round_dt(c->dt, R.u[i]);
    cr_assert_eq(op_bwd(cpu, R.dx, R.dA, R.dB, R.dy, R.x, R.u, R.A, R.B, sh, p), RK_OK, "%s", rk_last_error());
    rk_backend_free(cpu);
    return R;
}

static void cuda_ref_free(struct cuda_ref * R) {
    float ** f[] = { &R->x, &R->A, &R->B, &R->y0, &R->dy, &R->dx0, &R->dA0, &R->dB0, &R->y, &R->u, &R->dx, &R->dA, &R->dB };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
}

/* RK_TEST_BACKEND=cpu: the CPU backend in the device's place, cases run in f32 and fused only: a self-test of this
 * harness (guards, row gaps, comparisons) on a machine without a GPU. */
static bool harness_self_test(void) {
    const char * b = getenv("RK_TEST_BACKEND");
    return b && strcmp(b, "cpu") == 0;
}

static struct rk_backend * cuda_or_skip(void) {
    if (harness_self_test()) {
        fprintf(stderr, "lora CUDA parity: harness self-test on the CPU backend (f32, fused only)\n");
        return rk_backend_cpu_init(2);
    }
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (!be) cr_skip_test("no CUDA device (%s)", rk_last_error());
    fprintf(stderr, "lora CUDA parity on %s\n", be->name);
    return be;
}

/* The status of a launch as a case result: CASE_PASS (after a synchronize), CASE_SKIP when unsupported, CASE_FAIL. */
static int case_status(struct rk_backend * be, enum rk_status s, const char * cs) {
    if (s == RK_OK) {
        cr_assert_eq(be->synchronize(be), RK_OK);
        return CASE_PASS;
    }
    fprintf(stderr, "    %s: %s: %s\n", cs, s == RK_STATUS_UNSUPPORTED ? "unsupported" : "failed", rk_last_error());
    return s == RK_STATUS_UNSUPPORTED ? CASE_SKIP : CASE_FAIL;
}

/* How a case runs: through rk_op (the backend picks), or the launcher with one variant. */
enum lora_how { HOW_BACKEND, HOW_FUSED, HOW_UNFUSED, HOW_COUNT };
static const char * const how_name[HOW_COUNT] = { "backend", "fused", "unfused" };

/* Variant v's workspace with fresh scratch, none when it needs none (release ws.scratch with be->free). */
static struct rk_cuda_lora_ws variant_ws(struct rk_backend * be, cublasHandle_t h, enum rk_lora_variant v, bool bwd,
                                         const struct cuda_case * c) {
    const size_t need = rk_cuda_lora_scratch_bytes(v, bwd, c->M, c->K, c->N, c->r, c->dt);
    const struct rk_cuda_lora_ws ws = { v, v == RK_LORA_UNFUSED ? h : NULL, need ? be->alloc(be, need) : NULL, need };
    cr_assert(need == 0 || ws.scratch != NULL);
    return ws;
}

/* Runs the forward (rk_op, or the launcher with one variant) and checks y, u and the untouched inputs. */
static int cuda_fwd_case(struct rk_backend * be, cublasHandle_t h, const struct cuda_case * c, enum lora_how how,
                         const struct rk_lora_params * p, const struct cuda_ref * R, const char * cs) {
    const int64_t M = c->M, K = c->K, N = c->N, r = c->r;
    struct gbuf bx, bA, bB, by, bu;
    struct rk_tensor tx = gb_init(&bx, be, c->dt, M, K, K + c->pad, R->x, "x");
    struct rk_tensor tA = gb_init(&bA, be, c->dt, r, K, K, R->A, "A");
    struct rk_tensor tB = gb_init(&bB, be, c->dt, N, r, r, R->B, "B");
    struct rk_tensor ty = gb_init(&by, be, c->dt, M, N, N + c->pad, R->y0, "y");
    struct rk_tensor tu = gb_init(&bu, be, c->dt, M, r, r, NULL, "u");
    enum rk_status s;
    void * scratch = NULL;
    if (how == HOW_BACKEND) {
        struct rk_op_call call = { .op = RK_OP_LORA_FWD, .dst = &ty, .src = { &tx, &tA, &tB, &tu } };
        call.p.lora            = *p;
        s                      = rk_op(be, &call);
    } else {
        const struct rk_cuda_lora_ws ws =
            variant_ws(be, h, how == HOW_FUSED ? RK_LORA_FUSED : RK_LORA_UNFUSED, false, c);
        scratch = ws.scratch;
        s = rk_cuda_lora_fwd(&ty, &tu, &tx, &tA, &tB, p, &ws, rk_backend_cuda_stream(be));
    }
    int rc = case_status(be, s, cs);
    if (rc == CASE_PASS) {
        float * y = zeros(M * N), * u = zeros(M * r);
        bool ok = gb_fetch(&by, y, true, cs, "y") & gb_fetch(&bu, u, true, cs, "u");
        ok = close_dt(cs, "y", y, R->y, M * N, c->dt, false) & close_dt(cs, "u", u, R->u, M * r, c->dt, false) & ok;
        ok = gb_fetch(&bx, NULL, false, cs, "x") & gb_fetch(&bA, NULL, false, cs, "A") &
             gb_fetch(&bB, NULL, false, cs, "B") & ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
        free(y);
        free(u);
    }
    if (scratch) be->free(be, scratch);
    gb_free(&bx); gb_free(&bA); gb_free(&bB); gb_free(&by); gb_free(&bu);
    return rc;
}

/* The backward's device buffers for a case (inputs from R; dA, dB in f32 or the case dtype). */
struct bwd_bufs {
    struct gbuf      dy, x, u, A, B, dx, dA, dB;
    struct rk_tensor tdy, tx, tu, tA, tB, tdx, tdA, tdB;
};

static void bwd_bufs_init(struct bwd_bufs * b, struct rk_backend * be, const struct cuda_case * c,
                          const struct cuda_ref * R) {
    const int64_t       M = c->M, K = c->K, N = c->N, r = c->r;
    const enum rk_dtype gdt = c->f32_grads ? RK_DTYPE_F32 : c->dt;
    b->tdy = gb_init(&b->dy, be, c->dt, M, N, N + c->pad, R->dy, "dy");
    b->tx  = gb_init(&b->x, be, c->dt, M, K, K + c->pad, R->x, "x");
    b->tu  = gb_init(&b->u, be, c->dt, M, r, r, R->u, "u");
    b->tA  = gb_init(&b->A, be, c->dt, r, K, K, R->A, "A");
    b->tB  = gb_init(&b->B, be, c->dt, N, r, r, R->B, "B");
    b->tdx = gb_init(&b->dx, be, c->dt, M, K, K + c->pad, R->dx0, "dx");
    b->tdA = gb_init(&b->dA, be, gdt, r, K, K, R->dA0, "dA");
    b->tdB = gb_init(&b->dB, be, gdt, N, r, r, R->dB0, "dB");
}

static void bwd_bufs_free(struct bwd_bufs * b) {
    struct gbuf * g[] = { &b->dy, &b->x, &b->u, &b->A, &b->B, &b->dx, &b->dA, &b->dB };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) gb_free(g[i]);
}

/* Downloads dx, dA, dB into out[0..2] (sizes M*K, r*K, N*r) and checks every buffer's guards and inputs. */
static bool bwd_bufs_fetch(struct bwd_bufs * b, float * out[3], const char * cs) {
    bool ok = gb_fetch(&b->dx, out[0], true, cs, "dx") & gb_fetch(&b->dA, out[1], true, cs, "dA") &
              gb_fetch(&b->dB, out[2], true, cs, "dB");
    return gb_fetch(&b->dy, NULL, false, cs, "dy") & gb_fetch(&b->x, NULL, false, cs, "x") &
           gb_fetch(&b->u, NULL, false, cs, "u") & gb_fetch(&b->A, NULL, false, cs, "A") &
           gb_fetch(&b->B, NULL, false, cs, "B") & ok;
}

/* Runs the backward (rk_op, or the launcher with one variant) and checks dx, dA, dB and the untouched inputs. */
static int cuda_bwd_case(struct rk_backend * be, cublasHandle_t h, const struct cuda_case * c, enum lora_how how,
                         const struct rk_lora_params * p, const struct cuda_ref * R, const char * cs) {
    const int64_t   n[3] = { c->M * c->K, c->r * c->K, c->N * c->r };
    struct bwd_bufs b;
    bwd_bufs_init(&b, be, c, R);
    struct rk_lora_params pp = *p;
    pp.dA                    = &b.tdA;
    pp.dB                    = &b.tdB;
    enum rk_status s;
    void * scratch = NULL;
    if (how == HOW_BACKEND) {
        struct rk_op_call call = { .op = RK_OP_LORA_BWD, .dst = &b.tdx, .src = { &b.tdy, &b.tx, &b.tu, &b.tA, &b.tB } };
        call.p.lora            = pp;
        s                      = rk_op(be, &call);
    } else {
        const struct rk_cuda_lora_ws ws =
            variant_ws(be, h, how == HOW_FUSED ? RK_LORA_FUSED : RK_LORA_UNFUSED, true, c);
        scratch = ws.scratch;
        s = rk_cuda_lora_bwd(&b.tdx, &b.tdy, &b.tx, &b.tu, &b.tA, &b.tB, &pp, &ws, rk_backend_cuda_stream(be));
    }
    int rc = case_status(be, s, cs);
    if (rc == CASE_PASS) {
        float * got[3] = { zeros(n[0]), zeros(n[1]), zeros(n[2]) };
        bool    ok     = bwd_bufs_fetch(&b, got, cs);
        ok = close_dt(cs, "dx", got[0], R->dx, n[0], c->dt, true) & close_dt(cs, "dA", got[1], R->dA, n[1], c->dt, true) &
             close_dt(cs, "dB", got[2], R->dB, n[2], c->dt, false) & ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
        for (int i = 0; i < 3; i++) free(got[i]);
    }
    if (scratch) be->free(be, scratch);
    bwd_bufs_free(&b);
    return rc;
}

Test(lora_cuda, parity) {
    struct rk_backend * be = cuda_or_skip();
    const bool          cpu = be->device == RK_DEVICE_CPU;
    cublasHandle_t      h   = NULL;
    if (!cpu) cr_assert_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    int n[3] = { 0, 0, 0 };
    for (size_t ci = 0; ci < sizeof(cuda_cases) / sizeof(cuda_cases[0]); ci++) {
        struct cuda_case         cc = cuda_cases[ci];
        const struct cuda_case * c  = &cc;
        if (cpu) cc.dt = RK_DTYPE_F32;
        const struct rk_lora_params p = { .scale = 2.0f, .dropout = c->p, .seed = 1234 + ci, .offset = 99 };
        struct cuda_ref R = cuda_reference(c, &p);
        for (int op = 0; op < 2; op++) {
            for (int how = 0; how < (cpu ? 1 : HOW_COUNT); how++) {
                char cs[200];
                snprintf(cs, sizeof(cs), "LORA_%s(dtype=%s,M=%lld,K=%lld,N=%lld,r=%lld,p=%g,pad=%lld,grads=%s)[%s]",
                         op ? "BWD" : "FWD", dtname(c->dt), (long long) c->M, (long long) c->K, (long long) c->N,
                         (long long) c->r, (double) c->p, (long long) c->pad, c->f32_grads ? "f32" : dtname(c->dt),
                         how_name[how]);
                if (!case_selected(cs)) continue;
                const int rc = op ? cuda_bwd_case(be, h, c, (enum lora_how) how, &p, &R, cs)
                                  : cuda_fwd_case(be, h, c, (enum lora_how) how, &p, &R, cs);
                fprintf(stderr, "  %s %s\n", rc == CASE_PASS ? "ok  " : rc == CASE_FAIL ? "FAIL" : "skip", cs);
                n[rc]++;
            }
        }
        cuda_ref_free(&R);
    }
    fprintf(stderr, "lora_cuda/parity: %d passed, %d failed, %d skipped as unsupported\n", n[CASE_PASS],
            n[CASE_FAIL], n[CASE_SKIP]);
    if (h) cublasDestroy(h);
    rk_backend_free(be);
    cr_assert_eq(n[CASE_FAIL], 0, "%d case(s) failed (see above)", n[CASE_FAIL]);
}

/* Same inputs, same bits: every reduction has one owner and a fixed order. */
Test(lora_cuda, deterministic) {
    struct rk_backend *         be = cuda_or_skip();
    const struct cuda_case      c  = { 1000, 4096, 1000, 16, 0.1f, be->act_dtype, 0, true }; /* f32 on the CPU */
    const struct rk_lora_params p  = { .scale = 2.0f, .dropout = c.p, .seed = 7, .offset = 1 };
    struct cuda_ref             R  = cuda_reference(&c, &p);
    const int64_t               n[3] = { c.M * c.K, c.r * c.K, c.N * c.r };
    float *                     got[2][3];
    for (int run = 0; run < 2; run++) {
        struct bwd_bufs b;
        bwd_bufs_init(&b, be, &c, &R);
        struct rk_op_call call = { .op = RK_OP_LORA_BWD, .dst = &b.tdx, .src = { &b.tdy, &b.tx, &b.tu, &b.tA, &b.tB } };
        call.p.lora    = p;
        call.p.lora.dA = &b.tdA;
        call.p.lora.dB = &b.tdB;
        const enum rk_status s = rk_op(be, &call);
        cr_assert_eq(s, RK_OK, "%s", rk_last_error()); /* the backend's own activation dtype: always supported */
        for (int i = 0; i < 3; i++) got[run][i] = zeros(n[i]);
        cr_assert(bwd_bufs_fetch(&b, got[run], "deterministic"));
        bwd_bufs_free(&b);
    }
    for (int i = 0; i < 3; i++) {
        cr_assert(memcmp(got[0][i], got[1][i], sizeof(float) * (size_t) n[i]) == 0, "%s differs between runs",
                  i == 0 ? "dx" : i == 1 ? "dA" : "dB");
        free(got[0][i]);
        free(got[1][i]);
    }
    cuda_ref_free(&R);
    rk_backend_free(be);
}
#else
Test(lora_cuda, parity) { cr_skip_test("this build has no CUDA backend"); }
#endif
