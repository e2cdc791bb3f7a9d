/*
 * cli.c: shared driver helpers (see cli.h).
 */
#include "cli.h"

#include "check.h"
#include "datasets/dataset.h"
#include "datasets/split.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum rk_status rk_cli_int(const char * flag, const char * s, int64_t lo, int64_t hi, int64_t * out) {
    char * end = NULL;
    errno      = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        return rk_set_error(RK_STATUS_ARG, "%s: '%s' is not an integer in [%lld, %lld]", flag, s ? s : "",
                            (long long) lo, (long long) hi);
    }
    *out = v;
    return RK_OK;
}

enum rk_status rk_cli_double(const char * flag, const char * s, double lo, double hi, double * out) {
    char * end = NULL;
    errno      = 0;
    double v   = s ? strtod(s, &end) : 0.0;
    if (!s || !*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        return rk_set_error(RK_STATUS_ARG, "%s: '%s' is not a number in [%g, %g]", flag, s ? s : "", lo, hi);
    }
    *out = v;
    return RK_OK;
}

enum rk_status rk_cli_fractions(const char * flag, const char * s, double out[3]) {
    char * a = rk_xstrdup(s), * save = NULL;
    int    k = 0;
    enum rk_status st = RK_OK;
    double v[3] = { 0 };
    for (char * t = strtok_r(a, ",", &save); t && st == RK_OK; t = strtok_r(NULL, ",", &save), k++) {
        if (k < 3) st = rk_cli_double(flag, t, 0.0, 1.0, &v[k]);
    }
    free(a);
    if (st == RK_OK && (k != 3 || fabs(v[0] + v[1] + v[2] - 1.0) > 1e-6))
        st = rk_set_error(RK_STATUS_ARG, "%s: '%s' is not three numbers summing to 1", flag, s);
    if (st == RK_OK) memcpy(out, v, sizeof(v));
    return st;
}

enum rk_status rk_write_file_atomic(const char * path, const char * text) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    FILE * f = fopen(tmp, "wb");
    if (!f) return rk_set_error(RK_STATUS_IO, "%s: cannot write: %s", path, strerror(errno));
    const size_t n  = strlen(text);
    bool         ok = fwrite(text, 1, n, f) == n;
    ok              = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rk_set_error(RK_STATUS_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return RK_OK;
}

enum rk_status rk_write_json_atomic(const char * path, const cJSON * json) {
    char * text = cJSON_Print(json);
    if (!text) return rk_set_error(RK_STATUS_OOM, "%s: cannot format JSON", path);
    size_t n   = strlen(text);
    char * txt = rk_xmalloc(n + 2);
    memcpy(txt, text, n);
    txt[n]     = '\n';
    txt[n + 1] = '\0';
    cJSON_free(text);
    enum rk_status s = rk_write_file_atomic(path, txt);
    free(txt);
    return s;
}

/* mkdir -p of the folder holding path. */
static enum rk_status make_parent(const char * path) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    char * dir = dirname(buf);
    if (strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0) return RK_OK;
    for (char * p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rk_set_error(RK_STATUS_IO, "%s: cannot create folder: %s", dir, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return rk_set_error(RK_STATUS_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    return RK_OK;
}

void rk_cli_default_split_path(const char * data_path, uint64_t seed, char * buf, size_t n) {
    /* "<folder>-<file stem>": data sets are often all called train.csv, their folders tell them apart */
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", data_path);
    char * slash = strrchr(tmp, '/');
    const char * base = slash ? slash + 1 : tmp;
    const char * parent = "";
    if (slash) {
        *slash = '\0';
        char * p2 = strrchr(tmp, '/');
        parent    = p2 ? p2 + 1 : tmp;
        if (!strcmp(parent, ".") || !strcmp(parent, "..")) parent = "";
    }
    char stem[4096];
    snprintf(stem, sizeof(stem), "%s", base);
    const char * const exts[] = { ".gz", ".csv" }; /* strip "x.csv.gz" to "x" */
    for (int i = 0; i < 2; i++) {
        size_t ls = strlen(stem), le = strlen(exts[i]);
        if (ls > le && strcmp(stem + ls - le, exts[i]) == 0) stem[ls - le] = '\0';
    }
    snprintf(buf, n, "splits/%s%s%s.seed%llu.csv", parent, *parent ? "-" : "", stem, (unsigned long long) seed);
}

enum rk_status rk_cli_split(const struct rk_dataset * d, const char * split_path, const double fractions[3],
                            uint64_t seed, uint8_t * fold, bool * created) {
    *created = false;
    if (access(split_path, F_OK) == 0) return rk_split_read(split_path, d, fold);
    RK_TRY(rk_split_iterative(d->labels, d->n_docs, d->n_labels, fractions, 3, seed, fold));
    RK_TRY(make_parent(split_path));
    RK_TRY(rk_split_write(split_path, d, fold));
    *created = true;
    return RK_OK;
}

void rk_print_metrics(FILE * f, const struct rk_metrics * m, char ** label_names) {
    fprintf(f, "%-24s %8s\n", "metric", "value");
    fprintf(f, "%-24s %8.4f\n", "micro F1", m->micro_f1);
    fprintf(f, "%-24s %8.4f\n", "macro F1", m->macro_f1);
    fprintf(f, "%-24s %8.4f\n", "micro precision", m->micro_precision);
    fprintf(f, "%-24s %8.4f\n", "micro recall", m->micro_recall);
    fprintf(f, "%-24s %8.4f\n", "subset accuracy", m->subset_accuracy);
    fprintf(f, "%-24s %8.4f\n", "hamming loss", m->hamming_loss);
    fprintf(f, "\n%-20s %8s %9s %9s %9s\n", "label", "support", "precision", "recall", "f1");
    for (int64_t j = 0; j < m->L; j++) {
        const struct rk_label_scores * s = &m->per_label[j];
        fprintf(f, "%-20s %8lld %9.4f %9.4f %9.4f\n", label_names ? label_names[j] : "?", (long long) s->support,
                s->precision, s->recall, s->f1);
    }
}

enum rk_status rk_cli_data_load(struct rk_cli_data * d, const char * data_path, const char * test_path,
                                const void * spec) {
    memset(d, 0, sizeof(*d));
    RK_TRY(rk_dataset_load(data_path, spec, &d->data));
    if (test_path) {
        RK_TRY(rk_dataset_load(test_path, spec, &d->test));
        RK_TRY(rk_dataset_check_compatible(d->data, d->test));
    }
    return RK_OK;
}

enum rk_status rk_cli_data_split(struct rk_cli_data * d, const char * data_path, const char * split_opt,
                                 uint64_t seed, const double fractions[3]) {
    if (split_opt) snprintf(d->split_path, sizeof(d->split_path), "%s", split_opt);
    else rk_cli_default_split_path(data_path, seed, d->split_path, sizeof(d->split_path));
    d->fold = rk_xmalloc((size_t) (d->data->n_docs ? d->data->n_docs : 1));
    return rk_cli_split(d->data, d->split_path, fractions, seed, d->fold, &d->split_created);
}

const struct rk_dataset * rk_cli_data_source(const struct rk_cli_data * d, int which) {
    return which == RK_SPLIT_TEST && d->test ? d->test : d->data;
}

int64_t * rk_cli_data_indices(const struct rk_cli_data * d, int which, int64_t * n) {
    if (which == RK_SPLIT_TEST && d->test) {
        *n          = d->test->n_docs;
        int64_t * i = rk_xmalloc(sizeof(int64_t) * (size_t) (*n ? *n : 1));
        for (int64_t k = 0; k < *n; k++) i[k] = k;
        return i;
    }
    *n          = rk_split_indices(d->fold, d->data->n_docs, (uint8_t) which, NULL);
    int64_t * i = rk_xmalloc(sizeof(int64_t) * (size_t) (*n ? *n : 1));
    rk_split_indices(d->fold, d->data->n_docs, (uint8_t) which, i);
    return i;
}

void rk_cli_data_free(struct rk_cli_data * d) {
    rk_dataset_free(d->data);
    rk_dataset_free(d->test);
    free(d->fold);
    memset(d, 0, sizeof(*d));
}
