/*
 * softmax_cpu.c: CPU reference of RK_OP_SOFTMAX: numerically stable softmax of scaled rows.
 */
#include "check.h"
#include "kernels/softmax.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* x, dst: (N,C), rows contiguous. A row of all -inf gives zeros (never NaN). */
void rk_cpu_softmax(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_softmax_params * p) {
    const int64_t N = x->ne[0], C = x->ne[1];
    RK_ASSERT(dst->ne[0] == N && dst->ne[1] == C && x->nb[1] == 4 && dst->nb[1] == 4);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float * xr = (const float *) ((const char *) x->data + n * x->nb[0]);
        float *       o  = (float *) ((char *) dst->data + n * dst->nb[0]);
        float         mx = -INFINITY;
        for (int64_t c = 0; c < C; c++) mx = fmaxf(mx, xr[c] * p->scale);
        if (mx == -INFINITY) {
            for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
            continue;
        }
        double sum = 0.0;
        for (int64_t c = 0; c < C; c++) {
            o[c] = expf(xr[c] * p->scale - mx);
            sum += o[c];
        }
        const float inv = (float) (1.0 / sum);
        for (int64_t c = 0; c < C; c++) o[c] *= inv;
    }
}
