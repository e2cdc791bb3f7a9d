/*
 * test_finetune.c: rk-finetune as a user runs it, on a small arXiv-schema file and the tiny golden encoder:
 * it learns (test micro F1), writes what it promises (results, log, loss curve, a model folder with HF names and
 * labels), resumes exactly after a stop (the same losses and the same final weights as an uninterrupted run), and
 * fails on bad input with one line and no results file.
 */
#include "test_util.h"

#include "io/safetensors.h"

#include <cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char g_dir[256];

static void setup(void) {
    snprintf(g_dir, sizeof(g_dir), "%s", rk_test_tmpdir());
    char p[512];
    snprintf(p, sizeof(p), "%s/arxiv.csv", g_dir);
    rk_test_write_arxiv(p, 240);
}

TestSuite(finetune, .init = setup, .timeout = 300); /* generous: the machine may be shared */

/* Runs rk-finetune in the test folder; stderr into err. */
static int run_ft(const char * args, char * err, size_t n) {
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "cd %s && %s/build/rk-finetune --model %s/tests/golden/tiny_bert --data arxiv.csv "
             "--device cpu --threads 2 %s >stdout.txt 2>stderr.txt", g_dir, rk_test_root(), rk_test_root(), args);
    int rc = system(cmd);
    char p[512];
    snprintf(p, sizeof(p), "%s/stderr.txt", g_dir);
    FILE * f = fopen(p, "r");
    cr_assert(f != NULL);
    size_t k = fread(err, 1, n - 1, f);
    err[k]   = '\0';
    fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static cJSON * read_json(const char * rel) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    FILE * f = fopen(p, "r");
    cr_assert(f != NULL, "%s missing", p);
    static char buf[1 << 20];
    size_t k = fread(buf, 1, sizeof(buf) - 1, f);
    buf[k]   = '\0';
    fclose(f);
    cJSON * j = cJSON_Parse(buf);
    cr_assert(j != NULL, "%s is not JSON", p);
    return j;
}

static bool exists(const char * rel) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    struct stat st;
    return stat(p, &st) == 0;
}

Test(finetune, learns_and_writes_its_outputs) {
    char err[1 << 16];
    int rc = run_ft("--epochs 30 --batch 8 --lr 3e-3 --warmup-ratio 0.1 --output-dir run --out res.json", err, sizeof(err));
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    cJSON * r = read_json("res.json");
    const double f1 = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "metrics"), "micro_f1")->valuedouble;
    cr_assert(f1 > 0.8, "test micro F1 %.3f after fine-tuning (the labels follow word cues)", f1);
    cJSON * tuned = cJSON_GetObjectItem(r, "metrics_val_tuned_thresholds");
    cr_assert(tuned && cJSON_GetObjectItem(tuned, "micro_f1"), "no figures with val-tuned thresholds");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "val_tuned_thresholds")), 6);
    cJSON_Delete(r);
    cr_assert(exists("run/log.json") && exists("run/loss.svg") && exists("run/checkpoint/optimizer.safetensors"));
    cr_assert(exists("run/model/model.safetensors") && exists("run/model/vocab.txt"));
    cJSON * cfg = read_json("run/model/config.json");
    cr_assert_str_eq(cJSON_GetObjectItem(cfg, "problem_type")->valuestring, "multi_label_classification");
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "id2label"), "5")->valuestring, "Quantitative Finance");
    cJSON_Delete(cfg);
    /* the loss went down: mean of the last 20 steps well below the first 20 */
    cJSON * log = read_json("run/log.json");
    cJSON * st  = cJSON_GetObjectItem(log, "steps");
    const int n = cJSON_GetArraySize(st);
    double a = 0, b = 0;
    for (int i = 0; i < 20; i++) {
        a += cJSON_GetObjectItem(cJSON_GetArrayItem(st, i), "loss")->valuedouble;
        b += cJSON_GetObjectItem(cJSON_GetArrayItem(st, n - 1 - i), "loss")->valuedouble;
    }
    cr_assert(b < 0.5 * a, "loss %.3f -> %.3f", a / 20, b / 20);
    cJSON_Delete(log);
}

/* losses of steps [from, to] in a log */
static void losses(const char * rel, int from, int to, double * out) {
    cJSON * log = read_json(rel);
    cJSON * st  = cJSON_GetObjectItem(log, "steps");
    int     k   = 0;
    for (int i = 0; i < cJSON_GetArraySize(st); i++) {
        cJSON * e    = cJSON_GetArrayItem(st, i);
        const int s_ = (int) cJSON_GetObjectItem(e, "step")->valuedouble;
        if (s_ >= from && s_ <= to) out[k++] = cJSON_GetObjectItem(e, "loss")->valuedouble;
    }
    cr_assert_eq(k, to - from + 1, "%s: steps %d..%d not all logged", rel, from, to);
    cJSON_Delete(log);
}

Test(finetune, resume_continues_exactly) {
    char err[1 << 16];
    /* dropout on (tiny_bert's config has 0.1), two epochs, a stop in the middle of the second */
    const char * common = "--epochs 2 --batch 8 --lr 1e-3 --seed 7";
    char args[512];
    snprintf(args, sizeof(args), "%s --max-steps 40 --save-steps 20 --output-dir A", common);
    cr_assert_eq(run_ft(args, err, sizeof(err)), 0, "%s", err);
    snprintf(args, sizeof(args), "%s --max-steps 30 --save-steps 30 --output-dir B", common);
    cr_assert_eq(run_ft(args, err, sizeof(err)), 0, "%s", err);
    snprintf(args, sizeof(args), "%s --max-steps 40 --save-steps 20 --output-dir B --resume", common);
    cr_assert_eq(run_ft(args, err, sizeof(err)), 0, "%s", err);
    cr_assert(strstr(err, "resumed"), "%s", err);
    double la[10], lb[10];
    losses("A/log.json", 31, 40, la);
    losses("B/log.json", 31, 40, lb);
    for (int i = 0; i < 10; i++) cr_assert(la[i] == lb[i], "step %d: %.9g uninterrupted, %.9g resumed", 31 + i, la[i], lb[i]);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cmp -s %s/A/model/model.safetensors %s/B/model/model.safetensors", g_dir, g_dir);
    cr_assert_eq(system(cmd), 0, "final weights differ between the uninterrupted and the resumed run");
}

/* --grad-checkpointing recomputes each layer in the backward: the same losses and bit-identical final weights. */
Test(finetune, grad_checkpointing_changes_nothing) {
    char err[1 << 16];
    const char * common = "--epochs 1 --batch 8 --lr 1e-3 --seed 3 --max-steps 12 --save-steps 100";
    char args[512];
    snprintf(args, sizeof(args), "%s --output-dir P", common);
    cr_assert_eq(run_ft(args, err, sizeof(err)), 0, "%s", err);
    snprintf(args, sizeof(args), "%s --output-dir Q --grad-checkpointing", common);
    cr_assert_eq(run_ft(args, err, sizeof(err)), 0, "%s", err);
    double lp[12], lq[12];
    losses("P/log.json", 1, 12, lp);
    losses("Q/log.json", 1, 12, lq);
    for (int i = 0; i < 12; i++) cr_assert(lp[i] == lq[i], "step %d: %.9g plain, %.9g checkpointed", 1 + i, lp[i], lq[i]);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cmp -s %s/P/model/model.safetensors %s/Q/model/model.safetensors", g_dir, g_dir);
    cr_assert_eq(system(cmd), 0, "final weights differ with --grad-checkpointing");
}

static void expect_fail(const char * args, const char * must_name) {
    char err[1 << 16];
    int  rc = run_ft(args, err, sizeof(err));
    cr_assert_neq(rc, 0, "expected failure for: %s", args);
    int lines = 0;
    for (const char * p = err; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 1, "expected one stderr line, got: %s", err);
    cr_assert(strstr(err, must_name) != NULL, "'%s' does not name '%s'", err, must_name);
    cr_assert(!exists("out.json"));
}

Test(finetune, bad_input) {
    expect_fail("--dtype bf16 --out out.json", "--dtype");
    expect_fail("--dtype f8 --out out.json", "--dtype");
    expect_fail("--resume --output-dir nothing --out out.json", "nothing/checkpoint");
    expect_fail("--scheduler wavy --out out.json", "wavy");
    expect_fail("--lr -1 --out out.json", "--lr");
}

/* --init-bias-prior: with lr 0 the saved classifier biases are the train labels' log-odds (arXiv file: each label on
 * 1/6 to 1/3 of the documents, so log-odds between log(1/11) and log(1/2)), not HF's zeros. */
Test(finetune, init_bias_prior) {
    char err[1 << 16];
    cr_assert_eq(run_ft("--init-bias-prior --lr 0 --max-steps 1 --output-dir bp", err, sizeof(err)), 0, "%s", err);
    char p[512];
    snprintf(p, sizeof(p), "%s/bp/model/model.safetensors", g_dir);
    struct rk_safetensors * st = NULL;
    cr_assert_eq(rk_safetensors_open(p, &st), RK_OK, "%s", rk_last_error());
    const struct rk_st_entry * e = rk_safetensors_find(st, "classifier.bias");
    cr_assert(e != NULL);
    float b[6];
    cr_assert_eq(rk_safetensors_read_f32(st, e, b, 6), RK_OK);
    for (int j = 0; j < 6; j++) cr_assert(b[j] > logf(1.0f / 11.0f) && b[j] < logf(0.5f), "bias %d = %g", j, b[j]);
    rk_safetensors_close(st);
}
