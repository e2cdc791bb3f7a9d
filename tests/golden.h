/*
 * golden.h: reader for the golden files written by tests/golden/rkgold.py (format described there).
 */
#ifndef RK_TEST_GOLDEN_H
#define RK_TEST_GOLDEN_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rk_gold_tensor {
    char    name[64];
    int     is_int;     /* 0 = f32, 1 = i32 */
    int     ndim;
    int64_t dims[4];
    int64_t n;
    void *  data;
};

struct rk_gold {
    int                     count;
    struct rk_gold_tensor * t;
};

/* Loads a golden file; fails the test (cr_assert) on any malformation. */
static inline struct rk_gold rk_gold_load(const char * path) {
    struct rk_gold g = { 0 };
    FILE * f = fopen(path, "rb");
    cr_assert(f != NULL, "golden file %s missing (regenerate with tests/golden/*.py)", path);
    char     magic[4];
    uint32_t ver = 0, cnt = 0;
    cr_assert(fread(magic, 1, 4, f) == 4 && memcmp(magic, "RKGD", 4) == 0, "%s: bad magic", path);
    cr_assert(fread(&ver, 4, 1, f) == 1 && ver == 1 && fread(&cnt, 4, 1, f) == 1, "%s: bad header", path);
    g.count = (int) cnt;
    g.t     = calloc(cnt, sizeof(*g.t));
    for (uint32_t i = 0; i < cnt; i++) {
        struct rk_gold_tensor * t = &g.t[i];
        uint32_t len = 0, code = 0, nd = 0;
        cr_assert(fread(&len, 4, 1, f) == 1 && len < sizeof(t->name), "%s: bad name", path);
        cr_assert(fread(t->name, 1, len, f) == len);
        cr_assert(fread(&code, 4, 1, f) == 1 && fread(&nd, 4, 1, f) == 1 && nd <= 4, "%s: bad tensor", path);
        t->is_int = (int) code;
        t->ndim   = (int) nd;
        t->n      = 1;
        for (uint32_t d = 0; d < nd; d++) {
            cr_assert(fread(&t->dims[d], 8, 1, f) == 1);
            t->n *= t->dims[d];
        }
        t->data = malloc((size_t) (t->n ? t->n : 1) * 4);
        cr_assert(fread(t->data, 4, (size_t) t->n, f) == (size_t) t->n, "%s: %s truncated", path, t->name);
    }
    fclose(f);
    return g;
}

static inline const struct rk_gold_tensor * rk_gold_get(const struct rk_gold * g, const char * name) {
    for (int i = 0; i < g->count; i++) {
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    }
    cr_assert_fail("golden tensor '%s' missing", name);
    return NULL;
}

static inline void rk_gold_free(struct rk_gold * g) {
    for (int i = 0; i < g->count; i++) free(g->t[i].data);
    free(g->t);
    g->t     = NULL;
    g->count = 0;
}

#endif
