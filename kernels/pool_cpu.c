/*
 * pool_cpu.c: CPU references of RK_OP_POOL (CLS / mean / max / last over valid tokens) and RK_OP_L2NORM.
 * Mean pooling divides by max(count, 1e-9) as sentence-transformers does; max pooling ignores padded tokens.
 */
#include "check.h"
#include "kernels/pool.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* x (B,T,C) contiguous; mask (B,T) i32 or NULL; dst (B,C). A row with no valid token gives zeros. */
void rk_cpu_pool(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * mask,
                 const struct rk_pool_params * p) {
    const int64_t B = x->ne[0], T = x->ne[1], C = x->ne[2];
    RK_ASSERT(dst->ne[0] == B && dst->ne[1] == C && rk_tensor_is_contiguous(x) && rk_tensor_is_contiguous(dst));
    const int32_t * mk = mask ? mask->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float * xb = (const float *) x->data + b * T * C;
        float *       o  = (float *) dst->data + b * C;
        int64_t       n = 0, last = -1;
        for (int64_t t = 0; t < T; t++) {
            if (!mk || mk[b * T + t]) {
                n++;
                last = t;
            }
        }
        for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
        if (n == 0) continue;
        switch (p->mode) {
            case RK_POOL_CLS:
                for (int64_t c = 0; c < C; c++) o[c] = xb[c];
                break;
            case RK_POOL_LAST:
                for (int64_t c = 0; c < C; c++) o[c] = xb[last * C + c];
                break;
            case RK_POOL_MEAN:
            case RK_POOL_MAX: {
                const bool is_max = p->mode == RK_POOL_MAX;
                if (is_max) {
                    for (int64_t c = 0; c < C; c++) o[c] = -INFINITY;
                }
                for (int64_t t = 0; t < T; t++) {
                    if (mk && !mk[b * T + t]) continue;
                    const float * xr = xb + t * C;
                    if (is_max) {
                        for (int64_t c = 0; c < C; c++) o[c] = fmaxf(o[c], xr[c]);
                    } else {
                        for (int64_t c = 0; c < C; c++) o[c] += xr[c];
                    }
                }
                if (!is_max) {
                    const float inv = 1.0f / (float) n;
                    for (int64_t c = 0; c < C; c++) o[c] *= inv;
                }
                break;
            }
            case RK_POOL_COUNT: RK_ASSERT(!"bad pool mode");
        }
    }
}

/* x, dst (N,C) contiguous: x / max(||x||, eps), as torch.nn.functional.normalize. */
void rk_cpu_l2norm(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_l2norm_params * p) {
    const int64_t N = x->ne[0], C = x->ne[1];
    RK_ASSERT(dst->ne[0] == N && dst->ne[1] == C);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float * xr = (const float *) x->data + n * C;
        float *       o  = (float *) dst->data + n * C;
        double        s  = 0.0;
        for (int64_t c = 0; c < C; c++) s += (double) xr[c] * xr[c];
        const float inv = (float) (1.0 / fmax(sqrt(s), (double) p->eps));
        for (int64_t c = 0; c < C; c++) o[c] = xr[c] * inv;
    }
}
