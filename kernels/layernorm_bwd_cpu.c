/*
 * layernorm_bwd_cpu.c: CPU reference of RK_OP_LAYERNORM_BWD. With s = x (+ residual), xhat = (s - mean) rstd,
 * y = xhat w + b (torch.nn.LayerNorm, biased variance):
 *   db += sum_n dout;  dw += sum_n dout * xhat
 *   ds  = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)),  g = dout * w
 * mean and rstd are recomputed from the forward's inputs (two passes in double, as the forward), so no
 * statistics buffer is kept between the passes. ds is the gradient of x and of residual alike.
 */
#include "check.h"
#include "kernels/layernorm.h"

#include <math.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

#define ROW(t, n) ((const float *) ((const char *) (t)->data + (n) * (t)->nb[0]))

void rk_cpu_layernorm_bwd(struct rk_tensor * dx, struct rk_tensor * dw, struct rk_tensor * db,
                          const struct rk_tensor * dout, const struct rk_tensor * x, const struct rk_tensor * w,
                          const struct rk_tensor * residual, const struct rk_layernorm_params * p) {
    const int64_t N = x->ne[0], C = x->ne[1];
    RK_ASSERT(dx->ne[0] == N && dx->ne[1] == C && dout->ne[0] == N && dout->ne[1] == C && w->ne[0] == C);
    RK_ASSERT(x->nb[1] == 4 && dx->nb[1] == 4 && dout->nb[1] == 4 && (!residual || residual->nb[1] == 4));
    RK_ASSERT(!dw || (rk_tensor_nelements(dw) == C && rk_tensor_is_contiguous(dw)));
    RK_ASSERT(!db || (rk_tensor_nelements(db) == C && rk_tensor_is_contiguous(db)));
    const float * W    = w->data;
    float *       mean = malloc(sizeof(float) * (size_t) (N > 0 ? N : 1));
    float *       rstd = malloc(sizeof(float) * (size_t) (N > 0 ? N : 1));
    RK_ASSERT(mean && rstd);
    /* 1. statistics, exactly as the forward computes them */
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float * xr = ROW(x, n);
        const float * rr = residual ? ROW(residual, n) : NULL;
        double        m  = 0.0;
        for (int64_t c = 0; c < C; c++) m += xr[c] + (rr ? rr[c] : 0.0f);
        m /= (double) C;
        double var = 0.0;
        for (int64_t c = 0; c < C; c++) {
            const double d = (double) (xr[c] + (rr ? rr[c] : 0.0f)) - m;
            var += d * d;
        }
        var /= (double) C;
        mean[n] = (float) m;
        rstd[n] = (float) (1.0 / sqrt(var + (double) p->eps));
    }
    /* 2. dw, db before dx (dx may alias dout): one thread per column, rows in order, so deterministic */
    if (dw || db) {
        float * DW = dw ? dw->data : NULL;
        float * DB = db ? db->data : NULL;
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < C; c++) {
            double sw = 0.0, sb = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const float s  = ROW(x, n)[c] + (residual ? ROW(residual, n)[c] : 0.0f);
                const float g  = ROW(dout, n)[c];
                sw += (double) g * ((s - mean[n]) * rstd[n]);
                sb += g;
            }
            if (DW) DW[c] += (float) sw;
            if (DB) DB[c] += (float) sb;
        }
    }
    /* 3. dx per row */
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float * xr = ROW(x, n);
        const float * rr = residual ? ROW(residual, n) : NULL;
        const float * gr = ROW(dout, n);
        float *       o  = (float *) ((char *) dx->data + n * dx->nb[0]);
        double        sg = 0.0, sgx = 0.0;
        for (int64_t c = 0; c < C; c++) {
            const float xh = (xr[c] + (rr ? rr[c] : 0.0f) - mean[n]) * rstd[n];
            const float g  = gr[c] * W[c];
            sg += g;
            sgx += (double) g * xh;
        }
        const float mg = (float) (sg / (double) C), mgx = (float) (sgx / (double) C);
        for (int64_t c = 0; c < C; c++) {
            const float xh = (xr[c] + (rr ? rr[c] : 0.0f) - mean[n]) * rstd[n];
            o[c]           = rstd[n] * (gr[c] * W[c] - mg - xh * mgx);
        }
    }
    free(mean);
    free(rstd);
}
