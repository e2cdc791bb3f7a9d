/*
 * softmax_bwd_cpu.c: CPU reference of RK_OP_SOFTMAX_BWD. For y = softmax(scale x):
 * dx = scale * y * (dy - sum_c dy*y)  (the Jacobian-vector product, as ggml's SOFT_MAX_BACK).
 */
#include "check.h"
#include "kernels/softmax.h"

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* dx, dy, y: (N,C), rows contiguous; dx may alias dy (each element is read before it is written). */
void rk_cpu_softmax_bwd(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * y,
                        const struct rk_softmax_params * p) {
    const int64_t N = y->ne[0], C = y->ne[1];
    RK_ASSERT(dx->ne[0] == N && dx->ne[1] == C && dy->ne[0] == N && dy->ne[1] == C);
    RK_ASSERT(dx->nb[1] == 4 && dy->nb[1] == 4 && y->nb[1] == 4);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float * yr = (const float *) ((const char *) y->data + n * y->nb[0]);
        const float * gr = (const float *) ((const char *) dy->data + n * dy->nb[0]);
        float *       o  = (float *) ((char *) dx->data + n * dx->nb[0]);
        double        s  = 0.0;
        for (int64_t c = 0; c < C; c++) s += (double) gr[c] * yr[c];
        const float dot = (float) s;
        for (int64_t c = 0; c < C; c++) o[c] = p->scale * yr[c] * (gr[c] - dot);
    }
}
