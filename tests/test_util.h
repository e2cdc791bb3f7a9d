/*
 * test_util.h: small helpers shared by the Criterion suites: paths to the repo, the fetched models and the
 * golden files, and a temporary directory per test.
 */
#ifndef RK_TEST_UTIL_H
#define RK_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* RK_TEST_FILTER: substrings separated by '|', any of which selects a parity case by its case string (unset or
 * empty: every case); the device check's sanitizer runs rely on the alternatives. */
static inline bool case_selected(const char * name) {
    const char * f = getenv("RK_TEST_FILTER");
    if (!f || !*f) return true;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", f);
    char * save = NULL;
    for (char * tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        if (*tok && strstr(name, tok)) return true;
    }
    return false;
}

/* Repository root: $RK_ROOT (set by `make test`) or the current directory. */
static inline const char * rk_test_root(void) {
    const char * r = getenv("RK_ROOT");
    return r && *r ? r : ".";
}

/* Writes "<root>/<rel>" into buf and returns buf. */
static inline const char * rk_test_path(char * buf, size_t n, const char * rel) {
    snprintf(buf, n, "%s/%s", rk_test_root(), rel);
    return buf;
}

/*
 * Path of a fetched model directory (models/<name>). The real-model tests never skip: a missing model is a
 * failure that says how to fetch it (`make models`).
 */
static inline const char * rk_test_model_dir(char * buf, size_t n, const char * name) {
    snprintf(buf, n, "%s/models/%s", rk_test_root(), name);
    char probe[4160];
    snprintf(probe, sizeof(probe), "%s/config.json", buf);
    cr_assert(access(probe, R_OK) == 0, "model %s not found: run `make models` first", buf);
    return buf;
}

/* Makes a fresh temporary directory for one test and returns its path (static storage). */
static inline const char * rk_test_tmpdir(void) {
    static char dir[256];
    snprintf(dir, sizeof(dir), "/tmp/rk_test_XXXXXX");
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp failed");
    return dir;
}

/* Writes a text file; returns its path in buf. */
static inline const char * rk_test_write_file(char * buf, size_t n, const char * dir, const char * name,
                                              const void * data, size_t len) {
    snprintf(buf, n, "%s/%s", dir, name);
    FILE * f = fopen(buf, "wb");
    cr_assert(f != NULL, "cannot write %s", buf);
    cr_assert(fwrite(data, 1, len, f) == len);
    fclose(f);
    return buf;
}

/* The Reuters training file: $RK_DATASETS/reuters21578/train.csv.gz, else ../shared/datasets/... beside the repo.
 * Missing is a failure, not a skip. */
static inline const char * rk_test_reuters_path(void) {
    static char path[4096];
    const char * dir = getenv("RK_DATASETS");
    if (dir && *dir) {
        snprintf(path, sizeof(path), "%s/reuters21578/train.csv.gz", dir);
    } else {
        snprintf(path, sizeof(path), "%s/../shared/datasets/reuters21578/train.csv.gz", rk_test_root());
    }
    cr_assert(access(path, R_OK) == 0, "Reuters-21578 train file %s not found: set RK_DATASETS to the folder that "
              "holds reuters21578/train.csv.gz (see ../shared/datasets/README.md)", path);
    return path;
}

/* Seeded uniform test inputs (STYLE.md 6): the seed is printed and RK_TEST_SEED overrides it. */
static uint64_t rk_test_rng_state;
static inline void rk_test_seed(uint64_t default_seed) {
    const char * s    = getenv("RK_TEST_SEED");
    rk_test_rng_state = s ? strtoull(s, NULL, 10) : default_seed;
    if (!rk_test_rng_state) rk_test_rng_state = 1;
    cr_log_info("seed %llu (RK_TEST_SEED overrides)", (unsigned long long) rk_test_rng_state);
}
/* Uniform in [-1, 1] (xorshift64). */
static inline float rk_test_urand(void) {
    rk_test_rng_state ^= rk_test_rng_state << 13;
    rk_test_rng_state ^= rk_test_rng_state >> 7;
    rk_test_rng_state ^= rk_test_rng_state << 17;
    return (float) ((double) (rk_test_rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
/* n values from rk_test_urand in a new buffer (free it). */
static inline float * rk_test_rand_buf(int64_t n) {
    float * p = malloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = rk_test_urand();
    return p;
}

/* Writes an arXiv-schema file (ID,TITLE,ABSTRACT + the 6 topic labels) of n rows whose labels follow simple word cues, so a classifier can learn them. */
static inline void rk_test_write_arxiv(const char * path, int n) {
    FILE * f = fopen(path, "w");
    cr_assert(f != NULL);
    fputs("ID,TITLE,ABSTRACT,Computer Science,Physics,Mathematics,Statistics,Quantitative Biology,Quantitative Finance\n",
          f);
    static const char * topics[6][2] = {
        { "model data", "we train a model on data" },   { "physics theory", "a theory of physics" },
        { "theory of rings", "the theory of rings, in abstract" }, { "data rate", "the rate of data, in the model" },
        { "grain", "grain and oil in the body" },        { "stock market bank", "the stock market and the bank rate" },
    };
    for (int i = 0; i < n; i++) {
        int a = i % 6, b = (i / 6) % 6;
        int lab[6] = { 0 };
        lab[a] = 1;
        if (i % 4 == 0) lab[b] = 1;
        fprintf(f, "%d,\"%s, %s\",\"%s. %s\"", i + 1, topics[a][0], i % 4 == 0 ? topics[b][0] : "",
                topics[a][1], i % 4 == 0 ? topics[b][1] : "the end");
        for (int j = 0; j < 6; j++) fprintf(f, ",%d", lab[j]);
        fputc('\n', f);
    }
    fclose(f);
}


#endif
