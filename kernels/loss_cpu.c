/*
 * loss_cpu.c: CPU references of RK_OP_BCE_LOGITS and RK_OP_SOFTMAX_XENT.
 *
 * BCE with logits, as torch.nn.BCEWithLogitsLoss: l = pw y softplus(-x) + (1 - y) softplus(x), with the stable
 * softplus(x) = max(x, 0) + log1p(exp(-|x|)) (no overflow at |x| = 30 or 1e4); dl/dx = pw y (sigmoid(x) - 1) +
 * (1 - y) sigmoid(x), which is sigmoid(x) - y when pw = 1.
 *
 * Softmax cross-entropy: per row an online max / sum-of-exp pass (one read of the row, no probability buffer),
 * loss = m + log(s) - x[target]; then dlogits = (softmax - onehot) / count written in a second read of the row.
 * Row losses go to a per-row buffer and are summed in order, so the loss does not depend on the thread count.
 */
#include "check.h"
#include "kernels/loss.h"

#include <math.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

static double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

void rk_cpu_bce_logits(struct rk_tensor * loss, struct rk_tensor * dlogits, const struct rk_tensor * logits,
                       const struct rk_tensor * targets, const struct rk_tensor * pos_weight, float dlogits_scale) {
    const int64_t N = logits->ne[0], L = logits->ndim > 1 ? logits->ne[1] : 1;
    const int64_t n = rk_tensor_nelements(logits);
    RK_ASSERT(rk_tensor_nelements(targets) == n && rk_tensor_nelements(loss) == 1);
    RK_ASSERT(rk_tensor_is_contiguous(logits) && rk_tensor_is_contiguous(targets));
    RK_ASSERT(!dlogits || (rk_tensor_nelements(dlogits) == n && rk_tensor_is_contiguous(dlogits)));
    RK_ASSERT(!pos_weight || (rk_tensor_nelements(pos_weight) == L && rk_tensor_is_contiguous(pos_weight)));
    const float * X   = logits->data;
    const float * Y   = targets->data;
    const float * PW  = pos_weight ? pos_weight->data : NULL;
    float *       D   = dlogits ? dlogits->data : NULL;
    double *      row = malloc(sizeof(double) * (size_t) (N > 0 ? N : 1));
    RK_ASSERT(row != NULL);
    const double inv = n > 0 ? 1.0 / (double) n : 0.0, ginv = inv * (double) dlogits_scale;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        double s = 0.0;
        for (int64_t c = 0; c < L; c++) {
            const int64_t i  = r * L + c;
            const double  x  = X[i], y = Y[i], pw = PW ? PW[c] : 1.0;
            const double  sp = softplus_d(x);                   /* softplus(x) = -log(1 - sigmoid(x)) */
            s += pw * y * (sp - x) + (1.0 - y) * sp;            /* softplus(-x) = softplus(x) - x     */
            if (D) {
                const double sg = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
                D[i]            = (float) ((pw * y * (sg - 1.0) + (1.0 - y) * sg) * ginv);
            }
        }
        row[r] = s;
    }
    double tot = 0.0;
    for (int64_t r = 0; r < N; r++) tot += row[r];
    free(row);
    *(float *) loss->data = (float) (tot * inv);
}

enum rk_status rk_cpu_softmax_xent(struct rk_tensor * loss, struct rk_tensor * dlogits,
                                   const struct rk_tensor * logits, const struct rk_tensor * targets,
                                   float dlogits_scale) {
    const int64_t N = logits->ne[0], V = logits->ne[1];
    RK_ASSERT(logits->ndim == 2 && logits->nb[1] == 4 && rk_tensor_nelements(loss) == 1);
    RK_ASSERT(rk_tensor_nelements(targets) == N && rk_tensor_is_contiguous(targets));
    RK_ASSERT(!dlogits || (dlogits->ne[0] == N && dlogits->ne[1] == V && dlogits->nb[1] == 4));
    const int32_t * tg    = targets->data;
    int64_t         count = 0;
    for (int64_t r = 0; r < N; r++) {
        if (tg[r] == RK_XENT_IGNORE_INDEX) continue;
        if (tg[r] < 0 || tg[r] >= V)
            return rk_set_error(RK_STATUS_ARG, "softmax_xent: target %d at row %lld outside [0, %lld)", tg[r],
                                (long long) r, (long long) V);
        count++;
    }
    const double inv = count > 0 ? 1.0 / (double) count : 0.0, ginv = inv * (double) dlogits_scale;
    double *     row = malloc(sizeof(double) * (size_t) (N > 0 ? N : 1));
    RK_ASSERT(row != NULL);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float * x = (const float *) ((const char *) logits->data + r * logits->nb[0]);
        float *       d = dlogits ? (float *) ((char *) dlogits->data + r * dlogits->nb[0]) : NULL;
        row[r]          = 0.0;
        if (tg[r] == RK_XENT_IGNORE_INDEX) {
            if (d) {
                for (int64_t c = 0; c < V; c++) d[c] = 0.0f;
            }
            continue;
        }
        /* online max and sum of exp(x - max): one read of the row */
        double m = -INFINITY, s = 0.0;
        for (int64_t c = 0; c < V; c++) {
            const double v = x[c];
            if (v > m) {
                s = s * exp(m - v) + 1.0;
                m = v;
            } else {
                s += exp(v - m);
            }
        }
        const double lse = m + log(s);
        const double xt  = x[tg[r]]; /* read before d overwrites the row when it aliases x */
        row[r]           = lse - xt;
        if (d) {
            const int64_t t = tg[r];
            for (int64_t c = 0; c < V; c++) d[c] = (float) (exp((double) x[c] - lse) * ginv);
            d[t] = (float) ((exp(xt - lse) - 1.0) * ginv);
        }
    }
    double tot = 0.0;
    for (int64_t r = 0; r < N; r++) tot += row[r];
    free(row);
    *(float *) loss->data = (float) (tot * inv);
    return RK_OK;
}
