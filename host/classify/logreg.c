/*
 * logreg.c: one-vs-rest L2 logistic regression (sklearn LogisticRegression objective, see logreg.h), solved
 * per label by our own L-BFGS with a strong-Wolfe line search (Nocedal & Wright, Numerical Optimization,
 * 2nd ed., Algorithms 7.4, 3.5 and 3.6).
 *
 * One objective evaluation is a single pass over X: for each row, z = x . w + b, then the residual
 * r = (sigmoid(z) - y) / n is folded into the gradient right away (g += r x) while the row is in L1.
 * Everything is double precision with fixed-order sums, so a label's result does not depend on threads.
 */
#include "classify/logreg.h"
#include "classify/ovr.h"
#include "check.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void rk_logreg_params_default(struct rk_logreg_params * p) {
    p->C             = 1.0;
    p->fit_intercept = true;
    p->max_iter      = 1000;
    p->tol           = 1e-9;
    p->history       = 10;
    p->progress      = true;
}

/* ------------------------------------------------------------------------------------------------
 * the objective */

/* log(1 + exp(z)) without overflow */
static double softplus(double z) { return z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

static double sigmoid(double z) {
    if (z >= 0.0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* x . w for an f32 row and f64 weights; 8 independent accumulators in a fixed order (vectorises, deterministic) */
static double dot_f32_f64(const float * x, const double * w, int64_t d) {
    double  acc[8] = {0};
    int64_t j      = 0;
    for (; j + 8 <= d; j += 8) {
        for (int k = 0; k < 8; k++) acc[k] += (double) x[j + k] * w[j + k];
    }
    double s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < d; j++) s += (double) x[j] * w[j];
    return s;
}

struct lr_problem {
    const float *   X;      /* (n, d) */
    const uint8_t * Y;      /* (n, L), column `label` is the target */
    int64_t         n, d, L, label;
    double          lambda; /* 1 / (C n): the L2 weight of the n-scaled objective */
    bool            fit_intercept;
};

/*
 * f(v) = (1/n) sum_i [softplus(z_i) - y_i z_i] + 0.5 lambda ||w||^2 with v = (w (d), b), z_i = x_i . w + b.
 * Writes the gradient (d + 1) into g and returns f. Without an intercept b stays 0 and g[d] = 0.
 */
static double lr_eval(const struct lr_problem * pb, const double * v, double * g) {
    const int64_t n = pb->n, d = pb->d;
    const double  inv_n = 1.0 / (double) n;
    const double  b     = pb->fit_intercept ? v[d] : 0.0;
    memset(g, 0, (size_t) (d + 1) * sizeof(double));
    double loss = 0.0, gb = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float * x = pb->X + i * d;
        double        z = b + dot_f32_f64(x, v, d);
        double        y = pb->Y[i * pb->L + pb->label] ? 1.0 : 0.0;
        loss += softplus(z) - y * z;
        double r = (sigmoid(z) - y) * inv_n;
        gb += r;
        for (int64_t j = 0; j < d; j++) g[j] += r * (double) x[j];
    }
    double ww = 0.0;
    for (int64_t j = 0; j < d; j++) {
        ww += v[j] * v[j];
        g[j] += pb->lambda * v[j];
    }
    g[d] = pb->fit_intercept ? gb : 0.0;
    return loss * inv_n + 0.5 * pb->lambda * ww;
}

/* ------------------------------------------------------------------------------------------------
 * L-BFGS */

static double vdot(const double * a, const double * b, int64_t p) {
    double s = 0.0;
    for (int64_t j = 0; j < p; j++) s += a[j] * b[j];
    return s;
}

static double vmax_abs(const double * a, int64_t p) {
    double m = 0.0;
    for (int64_t j = 0; j < p; j++) m = fmax(m, fabs(a[j]));
    return m;
}

/* One point on the search line: step a, phi(a) = f(x + a dir) and phi'(a) = grad . dir. */
struct ls_point {
    double a, f, dphi;
};

struct lbfgs_ws {
    int64_t  p;
    double * x_try; /* (p) trial point */
    double * g_try; /* (p) its gradient */
};

/* Evaluates phi at step a into pt (and ws->x_try, ws->g_try). */
static void ls_eval(const struct lr_problem * pb, struct lbfgs_ws * ws, const double * x, const double * dir,
                    double a, struct ls_point * pt) {
    for (int64_t j = 0; j < ws->p; j++) ws->x_try[j] = x[j] + a * dir[j];
    pt->a    = a;
    pt->f    = lr_eval(pb, ws->x_try, ws->g_try);
    pt->dphi = vdot(ws->g_try, dir, ws->p);
}

/*
 * Line search from x (value f0, slope dphi0 < 0) along dir, starting at step a0. The objective is strictly
 * convex, so phi' is increasing and the search brackets the root of phi' by its sign alone (secant steps,
 * safeguarded to the middle 80% of the bracket). A step is accepted under the strong Wolfe conditions
 * |phi'(a)| <= c2 |phi'(0)| plus sufficient decrease, where, as in Hager & Zhang's approximate Wolfe
 * conditions (SIAM J. Optim. 16, 2005), a value within rounding of f0 also counts: near the optimum f changes
 * by less than its own rounding error while the gradient still carries information, and this is what lets the
 * solver drive max|grad| to 1e-9 and below. On success the point is in ws->x_try / ws->g_try, its value in
 * *f_out, and true is returned; false means no acceptable step within the evaluation budget.
 */
static bool line_search(const struct lr_problem * pb, struct lbfgs_ws * ws, const double * x, const double * dir,
                        double f0, double dphi0, double a0, double * f_out) {
    const double    c1 = 1e-4, c2 = 0.9, f_eps = 1e-10 * (1.0 + fabs(f0));
    const int       max_eval = 40;
    struct ls_point lo = {0.0, f0, dphi0}, hi = {INFINITY, INFINITY, INFINITY}, cur;
    double          a = a0;
    for (int n_eval = 0; n_eval < max_eval; n_eval++) {
        ls_eval(pb, ws, x, dir, a, &cur);
        bool finite = isfinite(cur.f) && isfinite(cur.dphi);
        if (finite && fabs(cur.dphi) <= -c2 * dphi0 && (cur.f <= f0 + c1 * a * dphi0 || cur.f <= f0 + f_eps)) {
            *f_out = cur.f;
            return true;
        }
        if (finite && cur.dphi < 0.0) lo = cur; /* still going down: the root of phi' lies beyond a */
        else hi = cur;                          /* overshot (or overflowed) */
        if (isinf(hi.a)) {
            /* no upper end yet: secant extrapolation on phi', kept within [2a, 10a] */
            double next = 10.0 * a;
            if (lo.a > 0.0 && cur.dphi > dphi0) next = lo.a - lo.dphi * lo.a / (lo.dphi - dphi0);
            a = fmin(fmax(next, 2.0 * a), 10.0 * a);
        } else {
            double w = hi.a - lo.a;
            a        = 0.5 * (lo.a + hi.a);
            if (isfinite(hi.dphi) && hi.dphi > lo.dphi) {
                double s = lo.a - lo.dphi * w / (hi.dphi - lo.dphi);
                if (s >= lo.a + 0.1 * w && s <= hi.a - 0.1 * w) a = s;
            }
            if (w <= 1e-16 * hi.a) break;
        }
    }
    return false;
}

/*
 * Minimises the n-scaled objective of one label from v = 0. Writes v (d + 1), returns the iteration count
 * and the final max |grad| in *gmax.
 */
static int64_t lbfgs_solve(const struct lr_problem * pb, const struct rk_logreg_params * prm, double * v,
                           double * gmax) {
    const int64_t p = pb->d + 1;
    const int     m = prm->history > 0 ? prm->history : 10;
    double *      buf = rk_xcalloc((size_t) (p * (5 + 2 * (int64_t) m) + 2 * m), sizeof(double));
    double *      g = buf, *dir = g + p, *x_try = dir + p, *g_try = x_try + p, *q = g_try + p;
    double *      S = q + p, *Yd = S + p * m, *rho = Yd + p * m, *alpha = rho + m;
    struct lbfgs_ws ws = {p, x_try, g_try};

    memset(v, 0, (size_t) p * sizeof(double));
    double  f     = lr_eval(pb, v, g);
    int64_t it    = 0;
    int     n_mem = 0, head = 0; /* pairs stored; next slot to write */
    while (vmax_abs(g, p) > prm->tol && it < prm->max_iter) {
        /* two-loop recursion: dir = -H g */
        for (int64_t j = 0; j < p; j++) q[j] = g[j];
        for (int k = 0; k < n_mem; k++) {
            int s = (head - 1 - k + m) % m;
            alpha[s] = rho[s] * vdot(S + s * p, q, p);
            for (int64_t j = 0; j < p; j++) q[j] -= alpha[s] * Yd[s * p + j];
        }
        double gamma = 1.0;
        if (n_mem > 0) {
            int s = (head - 1 + m) % m;
            gamma = 1.0 / (rho[s] * vdot(Yd + s * p, Yd + s * p, p));
        }
        for (int64_t j = 0; j < p; j++) q[j] *= gamma;
        for (int k = n_mem - 1; k >= 0; k--) {
            int    s    = (head - 1 - k + m) % m;
            double beta = rho[s] * vdot(Yd + s * p, q, p);
            for (int64_t j = 0; j < p; j++) q[j] += (alpha[s] - beta) * S[s * p + j];
        }
        for (int64_t j = 0; j < p; j++) dir[j] = -q[j];
        double dphi0 = vdot(g, dir, p);
        if (!(dphi0 < 0.0)) { /* not a descent direction: forget the history, go downhill */
            n_mem = 0;
            for (int64_t j = 0; j < p; j++) dir[j] = -g[j];
            dphi0 = -vdot(g, g, p);
        }
        double a0 = n_mem == 0 ? fmin(1.0, 1.0 / sqrt(vdot(g, g, p))) : 1.0;
        double f_new;
        if (!line_search(pb, &ws, v, dir, f, dphi0, a0, &f_new)) break;
        it++;
        /* new pair s = x_new - x, y = g_new - g */
        double * s_k = S + head * p, *y_k = Yd + head * p;
        for (int64_t j = 0; j < p; j++) {
            s_k[j] = x_try[j] - v[j];
            y_k[j] = g_try[j] - g[j];
        }
        double sy = vdot(s_k, y_k, p), yy = vdot(y_k, y_k, p);
        if (sy > 1e-12 * yy && sy > 0.0) { /* keep only pairs with positive curvature */
            rho[head] = 1.0 / sy;
            head      = (head + 1) % m;
            n_mem     = n_mem < m ? n_mem + 1 : m;
        }
        memcpy(v, x_try, (size_t) p * sizeof(double));
        memcpy(g, g_try, (size_t) p * sizeof(double));
        f = f_new;
    }
    *gmax = vmax_abs(g, p);
    free(buf);
    return it;
}

/* ------------------------------------------------------------------------------------------------
 * public API */

void rk_logreg_free(struct rk_logreg * m) {
    if (!m) return;
    free(m->coef);
    free(m->intercept);
    free(m->n_iter);
    free(m->grad_max);
    free(m->constant);
    free(m);
}

enum rk_status rk_logreg_fit(const struct rk_logreg_params * p, const float * X, const uint8_t * Y, int64_t n,
                             int64_t d, int64_t L, int threads, struct rk_logreg ** out) {
    if (out) *out = NULL;
    if (!p || !X || !Y || !out || n < 1 || d < 1 || L < 1) {
        return rk_set_error(RK_STATUS_ARG, "rk_logreg_fit: need params, X, Y, out and n, d, L >= 1 (n=%lld d=%lld "
                            "L=%lld)", (long long) n, (long long) d, (long long) L);
    }
    if (!(p->C > 0.0) || p->max_iter < 0 || !(p->tol >= 0.0)) {
        return rk_set_error(RK_STATUS_ARG, "rk_logreg_fit: need C > 0, max_iter >= 0, tol >= 0 (C=%g max_iter=%lld "
                            "tol=%g)", p->C, (long long) p->max_iter, p->tol);
    }
    struct rk_logreg * m = rk_xcalloc(1, sizeof(*m));
    m->d         = d;
    m->L         = L;
    m->coef      = rk_xcalloc((size_t) (L * d), sizeof(double));
    m->intercept = rk_xcalloc((size_t) L, sizeof(double));
    m->n_iter    = rk_xcalloc((size_t) L, sizeof(int64_t));
    m->grad_max  = rk_xcalloc((size_t) L, sizeof(double));
    m->constant  = rk_xcalloc((size_t) L, sizeof(int8_t));

    struct rk_clf_progress prog;
    rk_clf_progress_init(&prog, "logreg", L, 1, p->progress);
    int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt)
    {
        double * v = rk_xmalloc((size_t) (d + 1) * sizeof(double));
#pragma omp for schedule(dynamic, 1)
        for (int64_t l = 0; l < L; l++) {
            int64_t n_pos = 0;
            for (int64_t i = 0; i < n; i++) n_pos += Y[i * L + l] != 0;
            if (n_pos == 0 || n_pos == n) {
                m->constant[l] = n_pos == n ? 1 : 0;
            } else {
                struct lr_problem pb = {X, Y, n, d, L, l, 1.0 / (p->C * (double) n), p->fit_intercept};
                m->constant[l] = -1;
                m->n_iter[l]   = lbfgs_solve(&pb, p, v, &m->grad_max[l]);
                memcpy(m->coef + l * d, v, (size_t) d * sizeof(double));
                m->intercept[l] = p->fit_intercept ? v[d] : 0.0;
            }
            rk_clf_progress_add(&prog, 1);
        }
        free(v);
    }
    rk_clf_progress_end(&prog);
    *out = m;
    return RK_OK;
}

void rk_logreg_predict(const struct rk_logreg * m, const float * X, int64_t n, double * decision, float * proba,
                       uint8_t * Yhat, int threads) {
    const int64_t d = m->d, L = m->L;
    int           nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t l = 0; l < L; l++) {
            double z;
            if (m->constant[l] >= 0) z = m->constant[l] ? INFINITY : -INFINITY;
            else z = m->intercept[l] + dot_f32_f64(X + i * d, m->coef + l * d, d);
            if (decision) decision[i * L + l] = z;
            if (proba) proba[i * L + l] = (float) sigmoid(z);
            if (Yhat) Yhat[i * L + l] = z > 0.0;
        }
    }
}
