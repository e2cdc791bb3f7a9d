/*
 * layernorm_cpu.c: CPU reference of RK_OP_LAYERNORM, torch.nn.LayerNorm semantics (biased variance, eps inside
 * the square root), with an optional residual added first (post-LN BERT).
 */
#include "check.h"
#include "kernels/layernorm.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* x, residual, dst: (N,C) with contiguous rows (row stride nb[0] may exceed C); w, b: (C). */
void rk_cpu_layernorm(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * w,
                      const struct rk_tensor * b, const struct rk_tensor * residual,
                      const struct rk_layernorm_params * p) {
    const int64_t N = x->ne[0], C = x->ne[1];
    RK_ASSERT(dst->ne[0] == N && dst->ne[1] == C && w->ne[0] == C);
    RK_ASSERT(x->nb[1] == 4 && dst->nb[1] == 4 && (!residual || residual->nb[1] == 4));
    const float * W  = w->data;
    const float * Bv = b ? b->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float * xr = (const float *) ((const char *) x->data + n * x->nb[0]);
        const float * rr = residual ? (const float *) ((const char *) residual->data + n * residual->nb[0]) : NULL;
        float *       o  = (float *) ((char *) dst->data + n * dst->nb[0]);
        /* two passes in double for the statistics: the reference must not lose digits on large C */
        double mean = 0.0;
        for (int64_t c = 0; c < C; c++) {
            float v = xr[c] + (rr ? rr[c] : 0.0f);
            o[c]    = v; /* dst may alias x or residual: the sum is stored first, then read back */
            mean += v;
        }
        mean /= (double) C;
        double var = 0.0;
        for (int64_t c = 0; c < C; c++) {
            double d = o[c] - mean;
            var += d * d;
        }
        var /= (double) C;
        const float rstd = (float) (1.0 / sqrt(var + (double) p->eps));
        const float m    = (float) mean;
        for (int64_t c = 0; c < C; c++) o[c] = (o[c] - m) * rstd * W[c] + (Bv ? Bv[c] : 0.0f);
    }
}
