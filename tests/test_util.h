/*
 * test_util.h: small helpers shared by the Criterion suites: paths to the repo, the fetched models and the
 * golden files, and a temporary directory per test.
 */
#ifndef RK_TEST_UTIL_H
#define RK_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

#endif
