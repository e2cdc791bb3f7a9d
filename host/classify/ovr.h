/*
 * ovr.h: one-vs-rest multi-label classification: one binary classifier per label, behind one small API that
 * wraps the random forest (forest.h) and the L2 logistic regression (logreg.h).
 *
 * Shapes: X is (n, d) f32 row-major (e.g. sentence embeddings, d ~ 384-1024), Y and Yhat are (n, L) uint8 0/1
 * row-major (any non-zero byte in Y counts as 1), proba is (n, L) f32, the probability of label = 1.
 *
 * Long fits print a progress line on stderr (labels done / total, rate, ETA): updated in place with \r when
 * stderr is a terminal, otherwise as plain lines at most every 2 s. Nothing is printed for fits under 2 s.
 */
#ifndef RK_CLASSIFY_OVR_H
#define RK_CLASSIFY_OVR_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

enum rk_clf_kind {
    RK_CLF_FOREST = 0,  /* sklearn RandomForestClassifier() defaults, see forest.h */
    RK_CLF_LOGREG,      /* sklearn LogisticRegression() objective, see logreg.h */
    RK_CLF_COUNT
};

const char * rk_clf_kind_name(enum rk_clf_kind k); /* "forest", "logreg"; cannot fail */

struct rk_ovr; /* a fitted one-vs-rest model: kind, d, L and the per-label classifiers */

/*
 * Fits one binary classifier per label with the kind's default parameters. seed drives the forest's
 * bootstrap and feature sampling (logreg is deterministic and ignores it); the result depends on the seed
 * only, not on `threads` (<= 0: OpenMP's default). A label that is all 0 or all 1 in Y gets a constant
 * prediction. On success *out is a new model the caller frees with rk_ovr_free; on failure (RK_STATUS_ARG
 * for bad shapes or NULL pointers) *out is NULL and the error is set.
 */
enum rk_status rk_ovr_fit(enum rk_clf_kind kind, const float * X, const uint8_t * Y, int64_t n, int64_t d,
                          int64_t L, uint64_t seed, int threads, struct rk_ovr ** out);

/*
 * Predicts the (n, L) 0/1 matrix Yhat and, when proba is not NULL, the (n, L) probabilities. X must have the
 * d columns the model was fitted with. Forest: Yhat = proba > 0.5 (sklearn's argmax, ties go to 0);
 * logreg: Yhat = decision > 0. Returns RK_STATUS_ARG on NULL pointers or n < 0.
 */
enum rk_status rk_ovr_predict(const struct rk_ovr * m, const float * X, int64_t n, uint8_t * Yhat, float * proba);

void    rk_ovr_free(struct rk_ovr * m); /* NULL is fine */
int64_t rk_ovr_n_labels(const struct rk_ovr * m);   /* L; cannot fail */
int64_t rk_ovr_n_features(const struct rk_ovr * m); /* d; cannot fail */

/* ------------------------------------------------------------------------------------------------
 * internal: the progress line shared by forest.c and logreg.c */
struct rk_clf_progress {
    const char * what;     /* "forest", "logreg" */
    const char * unit;     /* "labels" */
    int64_t      total;    /* work items in the fit */
    int64_t      per_unit; /* work items per displayed unit (trees per label for the forest) */
    int64_t      done;
    double       t0, t_last;
    bool         enabled, tty, printed;
};

/* Starts the clock. enabled = false makes every call a no-op. Cannot fail. */
void rk_clf_progress_init(struct rk_clf_progress * p, const char * what, int64_t total, int64_t per_unit,
                          bool enabled);
/* Adds k finished items; thread-safe (call it from inside an OpenMP region). Cannot fail. */
void rk_clf_progress_add(struct rk_clf_progress * p, int64_t k);
/* Prints the final line (only when a line was printed before). Cannot fail. */
void rk_clf_progress_end(struct rk_clf_progress * p);

#ifdef __cplusplus
}
#endif
#endif
