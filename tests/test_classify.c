/*
 * test_classify.c: one-vs-rest classifiers and metrics (host/classify/) against scikit-learn.
 *
 * Golden files come from tests/golden/gen_classify.py:
 *   - metrics: sklearn f1_score / precision_recall_fscore_support / accuracy_score / hamming_loss on fixed
 *     (Y, Yhat) pairs, edge cases included; ours must equal them to 1e-12.
 *   - logistic regression: coefficients against the exact optimum of sklearn's objective (LogisticRegression
 *     with tol=1e-12, polished by Newton steps in the generator) to 1e-6 relative, and test predictions
 *     against default LogisticRegression() (<= 1% flips, only near the boundary).
 *   - random forest: test micro / macro F1 within 0.05 of sklearn's mean over 5 seeds and well above the
 *     majority-class baseline (the RNGs differ, so trees cannot match one for one).
 * Synthetic checks: forest determinism for a seed, the same model for 1 and 2 threads, constant labels, the
 * rk_ovr front end and argument errors.
 */
#include "classify/forest.h"
#include "classify/logreg.h"
#include "classify/metrics.h"
#include "classify/ovr.h"
#include "test_util.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------
 * golden text files: blocks "matrix <name> <rows> <cols>" then the values; '#' lines are comments */

struct gmat {
    char     name[64];
    int64_t  rows, cols;
    double * v;
};

struct gfile {
    int          n;
    struct gmat  m[64];
};

static void gfile_load(struct gfile * g, const char * rel) {
    char path[4096];
    rk_test_path(path, sizeof(path), rel);
    FILE * f = fopen(path, "r");
    cr_assert(f != NULL, "cannot open %s\nHINT: run `python3 tests/golden/gen_classify.py`", path);
    memset(g, 0, sizeof(*g));
    char line[256];
    while (fscanf(f, " %255s", line) == 1) {
        if (line[0] == '#') {
            int c;
            while ((c = fgetc(f)) != '\n' && c != EOF) {}
            continue;
        }
        cr_assert(strcmp(line, "matrix") == 0, "%s: expected 'matrix', got '%s'", path, line);
        cr_assert(g->n < 64, "%s: too many matrices", path);
        struct gmat * m = &g->m[g->n++];
        cr_assert(fscanf(f, " %63s %lld %lld", m->name, (long long *) &m->rows, (long long *) &m->cols) == 3);
        m->v = malloc((size_t) (m->rows * m->cols) * sizeof(double));
        for (int64_t k = 0; k < m->rows * m->cols; k++) {
            cr_assert(fscanf(f, " %lf", &m->v[k]) == 1, "%s: short matrix %s", path, m->name);
        }
    }
    fclose(f);
}

static const struct gmat * gfile_get(const struct gfile * g, const char * name) {
    for (int k = 0; k < g->n; k++) {
        if (strcmp(g->m[k].name, name) == 0) return &g->m[k];
    }
    cr_assert_fail("golden matrix %s missing\nHINT: run `python3 tests/golden/gen_classify.py`", name);
    return NULL;
}

static void gfile_free(struct gfile * g) {
    for (int k = 0; k < g->n; k++) free(g->m[k].v);
}

static float * gmat_f32(const struct gmat * m) {
    float * x = malloc((size_t) (m->rows * m->cols) * sizeof(float));
    for (int64_t k = 0; k < m->rows * m->cols; k++) x[k] = (float) m->v[k];
    return x;
}

static uint8_t * gmat_u8(const struct gmat * m) {
    uint8_t * y = malloc((size_t) (m->rows * m->cols));
    for (int64_t k = 0; k < m->rows * m->cols; k++) y[k] = (uint8_t) m->v[k];
    return y;
}

/* the models data set */
struct dataset {
    struct gfile g;
    float *      Xtr, *Xte;
    uint8_t *    Ytr, *Yte;
    int64_t      ntr, nte, d, L;
};

static void dataset_load(struct dataset * ds) {
    gfile_load(&ds->g, "tests/golden/classify_models.txt");
    const struct gmat *xtr = gfile_get(&ds->g, "X_train"), *ytr = gfile_get(&ds->g, "Y_train");
    const struct gmat *xte = gfile_get(&ds->g, "X_test"), *yte = gfile_get(&ds->g, "Y_test");
    ds->ntr = xtr->rows;
    ds->nte = xte->rows;
    ds->d   = xtr->cols;
    ds->L   = ytr->cols;
    cr_assert(ytr->rows == ds->ntr && yte->rows == ds->nte && xte->cols == ds->d && yte->cols == ds->L);
    ds->Xtr = gmat_f32(xtr);
    ds->Xte = gmat_f32(xte);
    ds->Ytr = gmat_u8(ytr);
    ds->Yte = gmat_u8(yte);
}

static void dataset_free(struct dataset * ds) {
    free(ds->Xtr);
    free(ds->Xte);
    free(ds->Ytr);
    free(ds->Yte);
    gfile_free(&ds->g);
}

/* ------------------------------------------------------------------------------------------------
 * metrics */

static void expect_close(double got, double want, double tol, const char * what, int k) {
    cr_expect(fabs(got - want) <= tol, "case %d %s: got %.17g, sklearn %.17g", k, what, got, want);
}

Test(metrics, golden_sklearn) {
    struct gfile g;
    gfile_load(&g, "tests/golden/classify_metrics.txt");
    int n_cases = (int) gfile_get(&g, "n_cases")->v[0];
    cr_assert(n_cases >= 5);
    for (int k = 0; k < n_cases; k++) {
        char name[64];
        snprintf(name, sizeof(name), "case%d_Y", k);
        const struct gmat * y = gfile_get(&g, name);
        snprintf(name, sizeof(name), "case%d_Yhat", k);
        const struct gmat * p = gfile_get(&g, name);
        snprintf(name, sizeof(name), "case%d_scalars", k);
        const double * s = gfile_get(&g, name)->v;
        snprintf(name, sizeof(name), "case%d_per_label", k);
        const double * pl = gfile_get(&g, name)->v;
        uint8_t *Y = gmat_u8(y), *P = gmat_u8(p);

        struct rk_metrics m;
        cr_assert_eq(rk_metrics_compute(Y, P, y->rows, y->cols, &m), RK_OK);
        cr_assert(m.n == y->rows && m.L == y->cols);
        const double tol = 1e-12;
        expect_close(m.micro_f1, s[0], tol, "micro_f1", k);
        expect_close(m.macro_f1, s[1], tol, "macro_f1", k);
        expect_close(m.micro_precision, s[2], tol, "micro_precision", k);
        expect_close(m.micro_recall, s[3], tol, "micro_recall", k);
        expect_close(m.macro_precision, s[4], tol, "macro_precision", k);
        expect_close(m.macro_recall, s[5], tol, "macro_recall", k);
        expect_close(m.subset_accuracy, s[6], tol, "subset_accuracy", k);
        expect_close(m.hamming_loss, s[7], tol, "hamming_loss", k);
        for (int64_t l = 0; l < m.L; l++) {
            const struct rk_label_scores * ls = &m.per_label[l];
            expect_close(ls->precision, pl[l * 4 + 0], tol, "precision[l]", k);
            expect_close(ls->recall, pl[l * 4 + 1], tol, "recall[l]", k);
            expect_close(ls->f1, pl[l * 4 + 2], tol, "f1[l]", k);
            cr_expect_eq(ls->support, (int64_t) pl[l * 4 + 3], "case %d support[%lld]", k, (long long) l);
            cr_expect_eq(ls->support, ls->tp + ls->fn);
        }
        rk_metrics_free(&m);
        cr_assert(m.per_label == NULL);
        free(Y);
        free(P);
    }
    gfile_free(&g);
}

/* A label never true and never predicted scores F1 0 and still counts in the macro mean (zero_division=0). */
Test(metrics, absent_label_counts_as_zero) {
    const uint8_t Y[]    = {1, 0, 0, 1, 0, 0}; /* (2, 3): only label 0 is ever true */
    const uint8_t Yhat[] = {1, 0, 0, 1, 0, 0};
    struct rk_metrics m;
    cr_assert_eq(rk_metrics_compute(Y, Yhat, 2, 3, &m), RK_OK);
    cr_expect_eq(m.per_label[0].f1, 1.0);
    cr_expect_eq(m.per_label[1].f1, 0.0);
    cr_expect_eq(m.per_label[2].f1, 0.0);
    cr_expect(fabs(m.macro_f1 - 1.0 / 3.0) < 1e-15);
    cr_expect_eq(m.micro_f1, 1.0);
    cr_expect_eq(m.subset_accuracy, 1.0);
    cr_expect_eq(m.hamming_loss, 0.0);
    rk_metrics_free(&m);
}

Test(metrics, json) {
    const uint8_t Y[]    = {1, 0, 1, 1};
    const uint8_t Yhat[] = {1, 1, 0, 1};
    struct rk_metrics m;
    cr_assert_eq(rk_metrics_compute(Y, Yhat, 2, 2, &m), RK_OK);
    char *  names[] = {"earn", "acq"};
    cJSON * j       = rk_metrics_to_json(&m, names);
    cr_assert(j != NULL);
    cr_expect_eq(cJSON_GetObjectItem(j, "micro_f1")->valuedouble, m.micro_f1);
    cr_expect_eq(cJSON_GetObjectItem(j, "hamming_loss")->valuedouble, 0.5);
    cr_expect_eq(cJSON_GetObjectItem(j, "n")->valuedouble, 2.0);
    cJSON * pl = cJSON_GetObjectItem(j, "per_label");
    cr_assert(cJSON_IsArray(pl) && cJSON_GetArraySize(pl) == 2);
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pl, 1), "label")->valuestring, "acq");
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pl, 0), "fp")->valuedouble, 0.0);
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pl, 1), "fp")->valuedouble, 1.0);
    cJSON_Delete(j);
    j = rk_metrics_to_json(&m, NULL); /* labels by index */
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "per_label"), 1), "label")
                     ->valuedouble, 1.0);
    cJSON_Delete(j);
    rk_metrics_free(&m);
}

Test(metrics, bad_args) {
    const uint8_t     y[] = {1};
    struct rk_metrics m;
    cr_expect_eq(rk_metrics_compute(y, y, 0, 1, &m), RK_STATUS_ARG);
    cr_expect_eq(rk_metrics_compute(NULL, y, 1, 1, &m), RK_STATUS_ARG);
    cr_expect(strstr(rk_last_error(), "rk_metrics_compute") != NULL);
    cr_expect(m.per_label == NULL);
    rk_metrics_free(&m);
    rk_metrics_free(NULL);
}

/* ------------------------------------------------------------------------------------------------
 * logistic regression */

Test(logreg, golden_sklearn) {
    struct dataset ds;
    dataset_load(&ds);
    struct rk_logreg_params p;
    rk_logreg_params_default(&p);
    p.progress = false;
    struct rk_logreg * m = NULL;
    cr_assert_eq(rk_logreg_fit(&p, ds.Xtr, ds.Ytr, ds.ntr, ds.d, ds.L, 2, &m), RK_OK);

    const double * coef = gfile_get(&ds.g, "logreg_coef_tight")->v;
    const double * icpt = gfile_get(&ds.g, "logreg_intercept_tight")->v;
    for (int64_t l = 0; l < ds.L; l++) {
        int64_t n_pos = 0;
        for (int64_t i = 0; i < ds.ntr; i++) n_pos += ds.Ytr[i * ds.L + l];
        if (n_pos == 0 || n_pos == ds.ntr) {
            cr_expect_eq(m->constant[l], n_pos ? 1 : 0, "label %lld is constant", (long long) l);
            continue;
        }
        cr_expect_eq(m->constant[l], -1);
        cr_expect(m->grad_max[l] <= p.tol, "label %lld: |grad| %g after %lld iterations", (long long) l,
                  m->grad_max[l], (long long) m->n_iter[l]);
        double wn = 0.0, dn = 0.0;
        for (int64_t j = 0; j < ds.d; j++) {
            wn = fmax(wn, fabs(coef[l * ds.d + j]));
            dn = fmax(dn, fabs(m->coef[l * ds.d + j] - coef[l * ds.d + j]));
        }
        cr_log_info("logreg label %lld: %lld iterations, max|grad| %.2g, max|coef - optimum| %.2g (max|coef| %.3g)",
                    (long long) l, (long long) m->n_iter[l], m->grad_max[l], dn, wn);
        cr_expect(dn <= 1e-6 * wn, "label %lld: max |coef - sklearn| = %g (max |coef| %g)", (long long) l, dn, wn);
        cr_expect(fabs(m->intercept[l] - icpt[l]) <= 1e-6 * fmax(1.0, fabs(icpt[l])),
                  "label %lld: intercept %.9g, sklearn %.9g", (long long) l, m->intercept[l], icpt[l]);
    }

    /* test predictions against default LogisticRegression(): flips only near the boundary, at most 1% */
    const double * yhat_sk = gfile_get(&ds.g, "logreg_yhat_test_default")->v;
    const double * dec_sk  = gfile_get(&ds.g, "logreg_decision_test_default")->v;
    int64_t        nL      = ds.nte * ds.L;
    uint8_t *      yhat    = malloc((size_t) nL);
    double *       dec     = malloc((size_t) nL * sizeof(double));
    float *        proba   = malloc((size_t) nL * sizeof(float));
    rk_logreg_predict(m, ds.Xte, ds.nte, dec, proba, yhat, 1);
    int64_t flips = 0;
    for (int64_t k = 0; k < nL; k++) {
        cr_expect_eq(yhat[k], dec[k] > 0.0);
        cr_expect(proba[k] >= 0.0f && proba[k] <= 1.0f);
        if (yhat[k] != (uint8_t) yhat_sk[k]) {
            flips++;
            cr_expect(fabs(dec_sk[k]) < 0.1, "flip at %lld far from the boundary (sklearn decision %g)",
                      (long long) k, dec_sk[k]);
        }
    }
    cr_expect(flips * 100 <= nL, "%lld of %lld predictions differ from sklearn", (long long) flips, (long long) nL);
    free(yhat);
    free(dec);
    free(proba);
    rk_logreg_free(m);
    dataset_free(&ds);
}

/* The solver's result does not depend on the thread count. */
Test(logreg, threads_invariant) {
    struct dataset ds;
    dataset_load(&ds);
    struct rk_logreg_params p;
    rk_logreg_params_default(&p);
    p.progress = false;
    struct rk_logreg *m1 = NULL, *m2 = NULL;
    cr_assert_eq(rk_logreg_fit(&p, ds.Xtr, ds.Ytr, ds.ntr, ds.d, ds.L, 1, &m1), RK_OK);
    cr_assert_eq(rk_logreg_fit(&p, ds.Xtr, ds.Ytr, ds.ntr, ds.d, ds.L, 2, &m2), RK_OK);
    cr_expect(memcmp(m1->coef, m2->coef, (size_t) (ds.L * ds.d) * sizeof(double)) == 0);
    cr_expect(memcmp(m1->intercept, m2->intercept, (size_t) ds.L * sizeof(double)) == 0);
    rk_logreg_free(m1);
    rk_logreg_free(m2);
    dataset_free(&ds);
}

Test(logreg, bad_args) {
    struct rk_logreg_params p;
    rk_logreg_params_default(&p);
    float              x[2] = {0, 1};
    uint8_t            y[2] = {0, 1};
    struct rk_logreg * m    = (struct rk_logreg *) 1;
    cr_expect_eq(rk_logreg_fit(&p, x, y, 0, 1, 1, 1, &m), RK_STATUS_ARG);
    cr_expect(m == NULL);
    p.C = 0.0;
    cr_expect_eq(rk_logreg_fit(&p, x, y, 2, 1, 1, 1, &m), RK_STATUS_ARG);
    rk_logreg_free(NULL);
}

/* ------------------------------------------------------------------------------------------------
 * random forest */

static struct rk_forest * fit_forest(const struct dataset * ds, uint64_t seed, int threads) {
    struct rk_forest_params p;
    rk_forest_params_default(&p);
    p.progress          = false;
    struct rk_forest * f = NULL;
    cr_assert_eq(rk_forest_fit(&p, ds->Xtr, ds->Ytr, ds->ntr, ds->d, ds->L, seed, threads, &f), RK_OK,
                 "%s", rk_last_error());
    return f;
}

Test(forest, golden_f1_sklearn) {
    struct dataset ds;
    dataset_load(&ds);
    const double * sk   = gfile_get(&ds.g, "forest_f1_test_mean")->v;
    const double * base = gfile_get(&ds.g, "majority_f1_test")->v;
    int64_t        nL   = ds.nte * ds.L;
    float *        pr   = malloc((size_t) nL * sizeof(float));
    uint8_t *      yhat = malloc((size_t) nL);
    for (uint64_t seed = 0; seed < 3; seed++) {
        struct rk_forest * f = fit_forest(&ds, seed, 2);
        rk_forest_predict_proba(f, ds.Xte, ds.nte, pr, 2);
        for (int64_t k = 0; k < nL; k++) yhat[k] = pr[k] > 0.5f;
        struct rk_metrics m;
        cr_assert_eq(rk_metrics_compute(ds.Yte, yhat, ds.nte, ds.L, &m), RK_OK);
        cr_log_info("forest seed %llu: micro F1 %.4f (sklearn %.4f), macro F1 %.4f (sklearn %.4f), %lld nodes",
                    (unsigned long long) seed, m.micro_f1, sk[0], m.macro_f1, sk[1],
                    (long long) rk_forest_n_nodes(f));
        cr_expect(fabs(m.micro_f1 - sk[0]) <= 0.05, "seed %llu micro F1 %.4f vs sklearn %.4f",
                  (unsigned long long) seed, m.micro_f1, sk[0]);
        cr_expect(fabs(m.macro_f1 - sk[1]) <= 0.05, "seed %llu macro F1 %.4f vs sklearn %.4f",
                  (unsigned long long) seed, m.macro_f1, sk[1]);
        cr_expect(m.micro_f1 >= base[0] + 0.15 && m.macro_f1 >= base[1] + 0.2,
                  "F1 %.4f / %.4f not well above the majority baseline %.4f / %.4f", m.micro_f1, m.macro_f1,
                  base[0], base[1]);
        /* constant labels: never positive in train -> 0; always positive -> 1 */
        for (int64_t i = 0; i < ds.nte; i++) {
            cr_expect_eq(pr[i * ds.L + 5], 0.0f);
            cr_expect_eq(pr[i * ds.L + 6], 1.0f);
        }
        rk_metrics_free(&m);
        rk_forest_free(f);
    }
    free(pr);
    free(yhat);
    dataset_free(&ds);
}

/* Same seed -> bitwise the same probabilities, for 1 and 2 threads; another seed -> other trees. */
Test(forest, deterministic_and_threads_invariant) {
    struct dataset ds;
    dataset_load(&ds);
    int64_t            nL = ds.nte * ds.L;
    float *            p1 = malloc((size_t) nL * sizeof(float));
    float *            p2 = malloc((size_t) nL * sizeof(float));
    struct rk_forest * a  = fit_forest(&ds, 42, 1);
    struct rk_forest * b  = fit_forest(&ds, 42, 2);
    cr_expect_eq(rk_forest_n_nodes(a), rk_forest_n_nodes(b));
    rk_forest_predict_proba(a, ds.Xte, ds.nte, p1, 1);
    rk_forest_predict_proba(b, ds.Xte, ds.nte, p2, 2);
    cr_expect(memcmp(p1, p2, (size_t) nL * sizeof(float)) == 0, "seed 42: 1 and 2 threads differ");
    struct rk_forest * c = fit_forest(&ds, 43, 2);
    rk_forest_predict_proba(c, ds.Xte, ds.nte, p2, 2);
    cr_expect(memcmp(p1, p2, (size_t) nL * sizeof(float)) != 0, "seeds 42 and 43 gave the same forest");
    rk_forest_free(a);
    rk_forest_free(b);
    rk_forest_free(c);
    free(p1);
    free(p2);
    dataset_free(&ds);
}

/* A fully grown tree without bootstrap fits the training set exactly when all rows are distinct. */
Test(forest, no_bootstrap_fits_train) {
    struct dataset ds;
    dataset_load(&ds);
    struct rk_forest_params p;
    rk_forest_params_default(&p);
    p.progress           = false;
    p.bootstrap          = false;
    p.n_trees            = 3;
    p.max_features       = ds.d;
    struct rk_forest * f = NULL;
    cr_assert_eq(rk_forest_fit(&p, ds.Xtr, ds.Ytr, ds.ntr, ds.d, ds.L, 7, 2, &f), RK_OK);
    float * pr = malloc((size_t) (ds.ntr * ds.L) * sizeof(float));
    rk_forest_predict_proba(f, ds.Xtr, ds.ntr, pr, 2);
    /* rows of X_train can repeat (count features), so allow the few duplicates with mixed labels */
    int64_t wrong = 0;
    for (int64_t k = 0; k < ds.ntr * ds.L; k++) wrong += (pr[k] > 0.5f) != (ds.Ytr[k] != 0);
    cr_expect(wrong <= ds.ntr * ds.L / 100, "%lld training cells wrong", (long long) wrong);
    free(pr);
    rk_forest_free(f);
    dataset_free(&ds);
}

Test(forest, bad_args) {
    struct rk_forest_params p;
    rk_forest_params_default(&p);
    float              x[2] = {0, NAN};
    uint8_t            y[2] = {0, 1};
    struct rk_forest * f    = (struct rk_forest *) 1;
    cr_expect_eq(rk_forest_fit(&p, x, y, 0, 1, 1, 0, 1, &f), RK_STATUS_ARG);
    cr_expect(f == NULL);
    cr_expect_eq(rk_forest_fit(&p, x, y, 2, 1, 1, 0, 1, &f), RK_STATUS_ARG); /* NaN */
    cr_expect(strstr(rk_last_error(), "not finite") != NULL);
    x[1]           = 1.0f;
    p.max_features = 2;
    cr_expect_eq(rk_forest_fit(&p, x, y, 2, 1, 1, 0, 1, &f), RK_STATUS_ARG);
    rk_forest_free(NULL);
}

/* ------------------------------------------------------------------------------------------------
 * the rk_ovr front end */

/* Constant labels (all 0, all 1) and a learnable one, for both kinds: constants predicted, no crash. */
Test(ovr, constant_labels) {
    enum { N = 64, D = 3, L = 3 };
    float   X[N * D];
    uint8_t Y[N * L];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) X[i * D + j] = (float) ((i * 7 + j * 13) % 17) - 8.0f;
        Y[i * L + 0] = 0;
        Y[i * L + 1] = 1;
        Y[i * L + 2] = X[i * D + 0] > 0.0f;
    }
    for (int kind = 0; kind < RK_CLF_COUNT; kind++) {
        struct rk_ovr * m = NULL;
        cr_assert_eq(rk_ovr_fit((enum rk_clf_kind) kind, X, Y, N, D, L, 1, 2, &m), RK_OK, "%s",
                     rk_last_error());
        cr_expect_eq(rk_ovr_n_labels(m), L);
        cr_expect_eq(rk_ovr_n_features(m), D);
        uint8_t yhat[N * L];
        float   pr[N * L];
        cr_assert_eq(rk_ovr_predict(m, X, N, yhat, pr), RK_OK);
        int64_t wrong = 0;
        for (int i = 0; i < N; i++) {
            cr_expect_eq(yhat[i * L + 0], 0, "%s", rk_clf_kind_name((enum rk_clf_kind) kind));
            cr_expect_eq(yhat[i * L + 1], 1);
            cr_expect_eq(pr[i * L + 0], 0.0f);
            cr_expect_eq(pr[i * L + 1], 1.0f);
            wrong += yhat[i * L + 2] != Y[i * L + 2];
            for (int l = 0; l < L; l++) cr_expect_eq(yhat[i * L + l], pr[i * L + l] > 0.5f);
        }
        cr_expect(wrong <= 2, "%s: %lld errors on a separable label", rk_clf_kind_name((enum rk_clf_kind) kind),
                  (long long) wrong);
        uint8_t yhat2[N * L];
        cr_assert_eq(rk_ovr_predict(m, X, N, yhat2, NULL), RK_OK);
        cr_expect(memcmp(yhat, yhat2, sizeof(yhat)) == 0);
        rk_ovr_free(m);
    }
}

Test(ovr, bad_args) {
    float           x[2] = {0, 1};
    uint8_t         y[2] = {0, 1};
    struct rk_ovr * m    = (struct rk_ovr *) 1;
    cr_expect_eq(rk_ovr_fit((enum rk_clf_kind) 7, x, y, 2, 1, 1, 0, 1, &m), RK_STATUS_ARG);
    cr_expect(m == NULL);
    cr_expect_eq(rk_ovr_fit(RK_CLF_FOREST, NULL, y, 2, 1, 1, 0, 1, &m), RK_STATUS_ARG);
    cr_expect_eq(rk_ovr_fit(RK_CLF_LOGREG, x, y, 2, 1, 1, 0, 1, NULL), RK_STATUS_ARG);
    cr_expect_eq(rk_ovr_predict(NULL, x, 2, y, NULL), RK_STATUS_ARG);
    cr_expect_str_eq(rk_clf_kind_name(RK_CLF_LOGREG), "logreg");
    rk_ovr_free(NULL);
}
