/*
 * logreg.h: one-vs-rest L2-regularised logistic regression, the objective of sklearn
 * LogisticRegression(C=1.0) (penalty l2, fit_intercept, solver lbfgs) on each label:
 *
 *     min_{w, b}  sum_i [ log(1 + exp(z_i)) - y_i z_i ] + 0.5 / C * ||w||^2,    z_i = x_i . w + b
 *
 * (the intercept b is not penalised; no standardisation of X, as sklearn). We minimise the same function
 * divided by n, as sklearn does, with our own L-BFGS (history 10, strong-Wolfe line search) in double
 * precision, starting from zero.
 *
 * Convergence: sklearn stops at max|grad| <= tol = 1e-4 of that scaled objective or after max_iter = 100
 * iterations, which often leaves the coefficients visibly short of the optimum (even tol=1e-12 stops on
 * scipy's ftol near max|grad| ~ 1e-5). We default to tol = 1e-9 with up to max_iter = 1000 iterations, so the
 * result is the optimum itself (within ~1e-8 of a Newton-polished solution in tests/test_classify.c; about 50
 * iterations on 6000 x 384 embeddings) and predictions agree with default sklearn except for rows right at the
 * decision boundary.
 */
#ifndef RK_CLASSIFY_LOGREG_H
#define RK_CLASSIFY_LOGREG_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_logreg_params {
    double  C;              /* inverse L2 strength: 1.0 (sklearn default) */
    bool    fit_intercept;  /* true (sklearn default); false fixes b = 0 */
    int64_t max_iter;       /* L-BFGS iterations per label: 1000 (sklearn: 100) */
    double  tol;            /* stop when max |grad| of the n-scaled objective <= tol: 1e-9 (sklearn: 1e-4) */
    int     history;        /* L-BFGS memory pairs: 10 (scipy's maxcor) */
    bool    progress;       /* progress line on stderr for fits over 2 s: true */
};

/* Fills the defaults listed above; cannot fail. */
void rk_logreg_params_default(struct rk_logreg_params * p);

/* A fitted model; every array is owned by the struct. */
struct rk_logreg {
    int64_t   d, L;
    double *  coef;       /* (L, d) weights w per label */
    double *  intercept;  /* (L) intercepts b */
    int64_t * n_iter;     /* (L) L-BFGS iterations used (0 for a constant label) */
    double *  grad_max;   /* (L) final max |grad| of the n-scaled objective (0 for a constant label) */
    int8_t *  constant;   /* (L) -1: fitted; 0 or 1: the label was constant in training, predicted as is */
};

/*
 * Fits L binary models on X (n, d) f32 row-major and Y (n, L) uint8 row-major. threads <= 0 uses OpenMP's
 * default; the result does not depend on it (each label is solved by one thread with fixed-order sums).
 * On success *out is a new model freed with rk_logreg_free; on bad arguments returns RK_STATUS_ARG, sets the
 * error and leaves *out NULL. Labels that stop at max_iter before reaching tol are not an error: their
 * n_iter == max_iter and grad_max > tol say so.
 */
enum rk_status rk_logreg_fit(const struct rk_logreg_params * p, const float * X, const uint8_t * Y, int64_t n,
                             int64_t d, int64_t L, int threads, struct rk_logreg ** out);

/*
 * Scores X (n, d): decision (n, L) = x . w + b (may be NULL), proba (n, L) = sigmoid(decision) (may be NULL),
 * Yhat (n, L) = decision > 0 (may be NULL), as sklearn's decision_function / predict_proba / predict.
 * Constant labels give decision -inf / +inf, proba 0 / 1. Cannot fail for valid shapes.
 */
void rk_logreg_predict(const struct rk_logreg * m, const float * X, int64_t n, double * decision, float * proba,
                       uint8_t * Yhat, int threads);

void rk_logreg_free(struct rk_logreg * m); /* NULL is fine */

#ifdef __cplusplus
}
#endif
#endif
