/*
 * test_cli.c: the rk-embed driver end to end, as a user runs it: a small arXiv-schema file through the tiny
 * golden model (the article's data set shape goes through the same path as Reuters), and every kind of bad input
 * giving one line on stderr that names the file, a non-zero exit, and no results file.
 */
#include "rk.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char g_dir[256];

/* Runs the driver with args (shell-quoted by the caller); returns the exit status, stderr into err. The driver is
 * build/rk-embed, or $RK_TEST_BIN_DIR/rk-embed (the emulated build's, under make emu-test). */
static int run_embed(const char * args, char * err, size_t n) {
    char cmd[8192], errpath[512], bin[4096];
    const char * bd = getenv("RK_TEST_BIN_DIR");
    if (bd && *bd == '/') {
        snprintf(bin, sizeof(bin), "%s", bd);
    } else {
        snprintf(bin, sizeof(bin), "%s/%s", rk_test_root(), bd && *bd ? bd : "build");
    }
    snprintf(errpath, sizeof(errpath), "%s/stderr.txt", g_dir);
    snprintf(cmd, sizeof(cmd), "cd %s && %s/rk-embed %s >%s/stdout.txt 2>%s", g_dir, bin, args, g_dir, errpath);
    int rc = system(cmd);
    FILE * f = fopen(errpath, "r");
    cr_assert(f != NULL);
    size_t k = fread(err, 1, n - 1, f);
    err[k]   = '\0';
    fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static int count_lines(const char * s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void setup(void) {
    snprintf(g_dir, sizeof(g_dir), "%s", rk_test_tmpdir());
    char p[512];
    snprintf(p, sizeof(p), "%s/arxiv.csv", g_dir);
    rk_test_write_arxiv(p, 120);
    /* a copy of the tiny golden model we can break */
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp -r %s/tests/golden/tiny_bert %s/model", rk_test_root(), g_dir);
    cr_assert_eq(system(cmd), 0);
}

static bool exists(const char * rel) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    struct stat st;
    return stat(p, &st) == 0;
}

TestSuite(cli, .init = setup, .timeout = 120);

Test(cli, arxiv_schema_end_to_end_with_tiny_model) {
    char err[8192];
    int rc = run_embed("--model model --data arxiv.csv --device cpu --classifier logreg --out res.json", err, sizeof(err));
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    cr_assert(exists("res.json") && exists("splits/arxiv.seed42.csv"));
    char p[512], buf[65536];
    snprintf(p, sizeof(p), "%s/res.json", g_dir);
    FILE * f = fopen(p, "r");
    size_t k = fread(buf, 1, sizeof(buf) - 1, f);
    buf[k]   = '\0';
    fclose(f);
    cr_assert(strstr(buf, "\"micro_f1\"") && strstr(buf, "Quantitative Finance"), "%s", buf);
    /* stdout has the table */
    snprintf(p, sizeof(p), "%s/stdout.txt", g_dir);
    f = fopen(p, "r");
    k = fread(buf, 1, sizeof(buf) - 1, f);
    buf[k] = '\0';
    fclose(f);
    cr_assert(strstr(buf, "micro F1") && strstr(buf, "Physics"), "%s", buf);
    /* a second run reuses the split file */
    rc = run_embed("--model model --data arxiv.csv --device cpu --classifier forest --out res2.json", err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "loaded"), "%s", err);
}

/* Every failure: exit non-zero, exactly one stderr line, naming what, and no results file. */
static void expect_fail(const char * args, const char * must_name) {
    char err[8192];
    int  rc = run_embed(args, err, sizeof(err));
    cr_assert_neq(rc, 0, "expected failure for: %s", args);
    cr_assert_eq(count_lines(err), 1, "expected one stderr line, got: %s", err);
    cr_assert(strstr(err, must_name) != NULL, "message '%s' does not name '%s'", err, must_name);
    cr_assert(!exists("out.json"), "a results file was written despite the failure");
}

Test(cli, missing_model_directory) {
    expect_fail("--model nope --data arxiv.csv --device cpu --out out.json", "nope");
}

Test(cli, truncated_safetensors) {
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "truncate -s 5000 %s/model/model.safetensors", g_dir);
    cr_assert_eq(system(cmd), 0);
    expect_fail("--model model --data arxiv.csv --device cpu --out out.json", "model.safetensors");
}

Test(cli, safetensors_header_past_end) {
    char p[512];
    snprintf(p, sizeof(p), "%s/model/model.safetensors", g_dir);
    FILE * f = fopen(p, "r+b");
    uint64_t big = 1u << 30;
    cr_assert_eq(fwrite(&big, 8, 1, f), 1);
    fclose(f);
    expect_fail("--model model --data arxiv.csv --device cpu --out out.json", "model.safetensors");
}

Test(cli, config_missing_field) {
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sed -i '/num_attention_heads/d' %s/model/config.json", g_dir);
    cr_assert_eq(system(cmd), 0);
    expect_fail("--model model --data arxiv.csv --device cpu --out out.json", "num_attention_heads");
}

Test(cli, csv_wrong_field_count) {
    char p[512];
    const char bad[] = "ID,TITLE,ABSTRACT,A,B\n1,t,a,0,1\n2,t,a,1\n";
    rk_test_write_file(p, sizeof(p), g_dir, "bad.csv", bad, sizeof(bad) - 1);
    expect_fail("--model model --data bad.csv --device cpu --out out.json", "line 3");
}

Test(cli, csv_label_not_binary) {
    char p[512];
    const char bad[] = "ID,TITLE,ABSTRACT,A,B\n1,t,a,0,1\n2,t,a,2,0\n";
    rk_test_write_file(p, sizeof(p), g_dir, "bad.csv", bad, sizeof(bad) - 1);
    expect_fail("--model model --data bad.csv --device cpu --out out.json", "bad.csv");
}

Test(cli, csv_empty_file) {
    char p[512];
    rk_test_write_file(p, sizeof(p), g_dir, "empty.csv", "", 0);
    expect_fail("--model model --data empty.csv --device cpu --out out.json", "empty.csv");
}

Test(cli, test_file_with_other_labels) {
    char p[512];
    const char other[] = "ID,TITLE,ABSTRACT,X,Y\n1,t,a,0,1\n";
    rk_test_write_file(p, sizeof(p), g_dir, "other.csv", other, sizeof(other) - 1);
    expect_fail("--model model --data arxiv.csv --test other.csv --device cpu --out out.json", "other.csv");
}

Test(cli, bad_flag_values) {
    expect_fail("--model model --data arxiv.csv --batch zero --out out.json", "--batch");
    expect_fail("--model model --data arxiv.csv --pooling median --out out.json", "--pooling");
    expect_fail("--model model --data arxiv.csv --device tpu --out out.json", "tpu");
    expect_fail("--data arxiv.csv --out out.json", "--model");
}

/* --cache: the second run reuses the embeddings and gives the same figures; a stale or truncated cache is recomputed. */
Test(cli, embedding_cache) {
    char err[8192];
    int rc = run_embed("--model model --data arxiv.csv --device cpu --classifier logreg --cache emb.bin --out a.json", err,
                       sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(exists("emb.bin"));
    rc = run_embed("--model model --data arxiv.csv --device cpu --classifier logreg --cache emb.bin --out b.json", err,
                   sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "from cache"), "%s", err);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cd %s && grep micro_f1 a.json > fa && grep micro_f1 b.json > fb && cmp -s fa fb", g_dir);
    cr_assert_eq(system(cmd), 0, "cached run gives other figures");
    /* other options: not reused (pooling changes the key) */
    rc = run_embed("--model model --data arxiv.csv --device cpu --classifier logreg --pooling max --cache emb.bin", err,
                   sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(!strstr(err, "from cache"), "%s", err);
    snprintf(cmd, sizeof(cmd), "truncate -s 100 %s/emb.bin", g_dir);
    cr_assert_eq(system(cmd), 0);
    rc = run_embed("--model model --data arxiv.csv --device cpu --pooling max --cache emb.bin", err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(err, "emb.bin: byte 32: truncated") && strstr(err, "recomputing"), "%s", err);
    rc = run_embed("--model model --data arxiv.csv --device cpu --pooling max --cache emb.bin", err, sizeof(err));
    cr_assert(rc == 0 && strstr(err, "from cache"), "the rewritten cache is used: %s", err);
}

/* The embeddings of a cache file (rk_embeddings_save: "RKEM", version, key, n, C, then n x C floats). */
static float * read_cache(const char * rel, int64_t * n, int64_t * C) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    FILE * f = fopen(p, "rb");
    cr_assert(f != NULL, "%s", p);
    char     magic[4];
    uint32_t ver;
    uint64_t key;
    cr_assert(fread(magic, 1, 4, f) == 4 && fread(&ver, 4, 1, f) == 1 && fread(&key, 8, 1, f) == 1 &&
              fread(n, 8, 1, f) == 1 && fread(C, 8, 1, f) == 1 && *n > 0 && *C > 0);
    float * e = malloc(sizeof(float) * (size_t) (*n * *C));
    cr_assert(e != NULL);
    cr_assert(fread(e, sizeof(float), (size_t) (*n * *C), f) == (size_t) (*n * *C));
    fclose(f);
    return e;
}

static double json_num(const char * rel, const char * field) {
    char p[512], buf[65536];
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    FILE * f = fopen(p, "r");
    cr_assert(f != NULL, "%s", p);
    const size_t k = fread(buf, 1, sizeof(buf) - 1, f);
    buf[k]         = '\0';
    fclose(f);
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", field);
    const char * s = strstr(buf, key);
    cr_assert(s != NULL, "%s has no %s", rel, field);
    return strtod(s + strlen(key), NULL);
}

/* --device cuda against --device cpu on the same documents: every document's embedding (through the caches) within
 * cosine 0.999 of the CPU's, and micro/macro F1 within 0.05 (the tiny model with 16-bit activations on the GPU).
 * Skips when the binary finds no CUDA device; under make emu-test the emulated build has one. */
Test(cli, cuda_matches_cpu) {
    char err[8192];
    int  rc = run_embed("--model model --data arxiv.csv --device cpu --classifier logreg --cache cpu.bin --out cpu.json",
                        err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
    rc = run_embed("--model model --data arxiv.csv --device cuda --classifier logreg --cache cuda.bin --out cuda.json",
                   err, sizeof(err));
    if (rc != 0 && strstr(err, "no CUDA device")) cr_skip_test("%s", err);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    int64_t n1, c1, n2, c2;
    float * a = read_cache("cpu.bin", &n1, &c1), * b = read_cache("cuda.bin", &n2, &c2);
    cr_assert(n1 == n2 && c1 == c2);
    double worst = 1.0;
    for (int64_t i = 0; i < n1; i++) {
        const double cs = rk_cosine_f32(a + i * c1, b + i * c1, c1);
        if (!(cs >= worst)) worst = cs; /* NaN too */
    }
    cr_log_info("cuda vs cpu: worst cosine %.6f over %lld documents", worst, (long long) n1);
    cr_assert(worst >= 0.999, "an embedding on cuda has cosine %.6f to the cpu's", worst);
    for (int m = 0; m < 2; m++) {
        const char * fld = m ? "macro_f1" : "micro_f1";
        const double x = json_num("cpu.json", fld), y = json_num("cuda.json", fld);
        cr_assert(fabs(x - y) <= 0.05, "%s: cpu %.4f cuda %.4f", fld, x, y);
    }
    free(a);
    free(b);
}
