/*
 * ovr.c: the one-vs-rest front end (rk_ovr_*) over forest.c and logreg.c, and the progress line both use.
 */
#include "classify/ovr.h"
#include "classify/forest.h"
#include "classify/logreg.h"
#include "check.h"

#include <omp.h>
#include <unistd.h>

struct rk_ovr {
    enum rk_clf_kind    kind;
    int64_t             d, L;
    int                 threads;  /* as given to rk_ovr_fit, reused for prediction */
    struct rk_forest *  forest;   /* kind == RK_CLF_FOREST */
    struct rk_logreg *  logreg;   /* kind == RK_CLF_LOGREG */
};

static const char * const kind_names[RK_CLF_COUNT] = {
    [RK_CLF_FOREST] = "forest",
    [RK_CLF_LOGREG] = "logreg",
};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == RK_CLF_COUNT, "kind_names out of date");

const char * rk_clf_kind_name(enum rk_clf_kind k) {
    return (k >= 0 && k < RK_CLF_COUNT) ? kind_names[k] : "unknown classifier";
}

enum rk_status rk_ovr_fit(enum rk_clf_kind kind, const float * X, const uint8_t * Y, int64_t n, int64_t d,
                          int64_t L, uint64_t seed, int threads, struct rk_ovr ** out) {
    if (out) *out = NULL;
    if (!out) return rk_set_error(RK_STATUS_ARG, "rk_ovr_fit: out is NULL");
    struct rk_ovr m = {.kind = kind, .d = d, .L = L, .threads = threads};
    switch (kind) {
    case RK_CLF_FOREST: {
        struct rk_forest_params p;
        rk_forest_params_default(&p);
        RK_TRY(rk_forest_fit(&p, X, Y, n, d, L, seed, threads, &m.forest));
        break;
    }
    case RK_CLF_LOGREG: {
        struct rk_logreg_params p;
        rk_logreg_params_default(&p);
        RK_TRY(rk_logreg_fit(&p, X, Y, n, d, L, threads, &m.logreg));
        break;
    }
    default:
        return rk_set_error(RK_STATUS_ARG, "rk_ovr_fit: unknown classifier kind %d", (int) kind);
    }
    *out  = rk_xmalloc(sizeof(m));
    **out = m;
    return RK_OK;
}

enum rk_status rk_ovr_predict(const struct rk_ovr * m, const float * X, int64_t n, uint8_t * Yhat, float * proba) {
    if (!m || (!X && n > 0) || !Yhat || n < 0) {
        return rk_set_error(RK_STATUS_ARG, "rk_ovr_predict: need a model, X and Yhat, n >= 0 (n=%lld)",
                            (long long) n);
    }
    if (m->kind == RK_CLF_FOREST) {
        float * pr = proba ? proba : rk_xmalloc((size_t) (n * m->L) * sizeof(float));
        rk_forest_predict_proba(m->forest, X, n, pr, m->threads);
        for (int64_t k = 0; k < n * m->L; k++) Yhat[k] = pr[k] > 0.5f;
        if (!proba) free(pr);
    } else {
        rk_logreg_predict(m->logreg, X, n, NULL, proba, Yhat, m->threads);
    }
    return RK_OK;
}

void rk_ovr_free(struct rk_ovr * m) {
    if (!m) return;
    rk_forest_free(m->forest);
    rk_logreg_free(m->logreg);
    free(m);
}

int64_t rk_ovr_n_labels(const struct rk_ovr * m) { return m->L; }
int64_t rk_ovr_n_features(const struct rk_ovr * m) { return m->d; }

/* ------------------------------------------------------------------------------------------------
 * progress line */

#define PROGRESS_DELAY_S    2.0 /* nothing for fits shorter than this */
#define PROGRESS_TTY_S      0.2 /* refresh period of the \r line on a terminal */
#define PROGRESS_PLAIN_S    2.0 /* period of plain lines when stderr is a file or pipe */

void rk_clf_progress_init(struct rk_clf_progress * p, const char * what, int64_t total, int64_t per_unit,
                          bool enabled) {
    p->what     = what;
    p->unit     = "labels";
    p->total    = total;
    p->per_unit = per_unit > 0 ? per_unit : 1;
    p->done     = 0;
    p->t0       = omp_get_wtime();
    p->t_last   = p->t0;
    p->enabled  = enabled;
    p->tty      = isatty(STDERR_FILENO);
    p->printed  = false;
}

static void format_duration(char * buf, size_t n, double s) {
    if (s < 60.0) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600.0) snprintf(buf, n, "%dm%02ds", (int) (s / 60.0), (int) s % 60);
    else snprintf(buf, n, "%dh%02dm", (int) (s / 3600.0), ((int) s % 3600) / 60);
}

static void progress_print(struct rk_clf_progress * p, double now, bool final) {
    double el   = now - p->t0;
    double rate = el > 0.0 ? (double) p->done / el : 0.0; /* items per second */
    char   eta[32], ela[32];
    format_duration(eta, sizeof(eta), rate > 0.0 ? (double) (p->total - p->done) / rate : 0.0);
    format_duration(ela, sizeof(ela), el);
    double units = (double) p->done / (double) p->per_unit, total_units = (double) p->total / (double) p->per_unit;
    fprintf(stderr, "%s%s: %.1f/%.0f %s, %.2f %s/s, elapsed %s, ETA %s%s", p->tty ? "\r" : "", p->what, units,
            total_units, p->unit, rate / (double) p->per_unit, p->unit, ela, final ? "0s" : eta,
            (p->tty && !final) ? "   " : "\n");
    fflush(stderr);
    p->printed = true;
}

void rk_clf_progress_add(struct rk_clf_progress * p, int64_t k) {
    if (!p->enabled) return;
#pragma omp critical(rk_clf_progress)
    {
        p->done += k;
        double now = omp_get_wtime();
        if (now - p->t0 >= PROGRESS_DELAY_S && now - p->t_last >= (p->tty ? PROGRESS_TTY_S : PROGRESS_PLAIN_S)) {
            p->t_last = now;
            progress_print(p, now, false);
        }
    }
}

void rk_clf_progress_end(struct rk_clf_progress * p) {
    if (p->enabled && p->printed) progress_print(p, omp_get_wtime(), true);
}
