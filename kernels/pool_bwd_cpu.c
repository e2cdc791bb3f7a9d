/*
 * pool_bwd_cpu.c: CPU reference of RK_OP_POOL_BWD, the backward of RK_OP_POOL (CLS / mean / max / last over the
 * valid tokens). MAX routes each channel's gradient to the first valid token holding the maximum, matching the
 * forward's left-to-right fmaxf scan; torch.max's choice among ties is unspecified, so ties are ours to fix.
 */
#include "check.h"
#include "kernels/pool.h"

#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* dout (B,C), x (B,T,C), mask (B,T) i32 or NULL, dx (B,T,C): contiguous. */
void rk_cpu_pool_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * x,
                     const struct rk_tensor * mask, const struct rk_pool_params * p) {
    const int64_t B = x->ne[0], T = x->ne[1], C = x->ne[2];
    RK_ASSERT(dx->ne[0] == B && dx->ne[1] == T && dx->ne[2] == C && dout->ne[0] == B && dout->ne[1] == C);
    RK_ASSERT(rk_tensor_is_contiguous(dx) && rk_tensor_is_contiguous(dout) && rk_tensor_is_contiguous(x));
    RK_ASSERT(p->mode >= 0 && p->mode < RK_POOL_COUNT);
    const int32_t * mk = mask ? mask->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float * xb = (const float *) x->data + b * T * C;
        const float * g  = (const float *) dout->data + b * C;
        float *       d  = (float *) dx->data + b * T * C;
        memset(d, 0, sizeof(float) * (size_t) (T * C));
        int64_t n = 0, last = -1;
        for (int64_t t = 0; t < T; t++) {
            if (!mk || mk[b * T + t]) {
                n++;
                last = t;
            }
        }
        if (n == 0) continue;
        switch (p->mode) {
            case RK_POOL_CLS:
                for (int64_t c = 0; c < C; c++) d[c] = g[c];
                break;
            case RK_POOL_LAST:
                for (int64_t c = 0; c < C; c++) d[last * C + c] = g[c];
                break;
            case RK_POOL_MEAN: {
                const float inv = 1.0f / (float) n;
                for (int64_t t = 0; t < T; t++) {
                    if (mk && !mk[b * T + t]) continue;
                    for (int64_t c = 0; c < C; c++) d[t * C + c] = g[c] * inv;
                }
                break;
            }
            case RK_POOL_MAX:
                for (int64_t c = 0; c < C; c++) {
                    int64_t arg = -1;
                    float   mx  = 0.0f;
                    for (int64_t t = 0; t < T; t++) {
                        if (mk && !mk[b * T + t]) continue;
                        const float v = xb[t * C + c];
                        if (arg < 0 || v > mx) { /* strict: the first maximum wins */
                            arg = t;
                            mx  = v;
                        }
                    }
                    d[arg * C + c] = g[c];
                }
                break;
            case RK_POOL_COUNT: break;
        }
    }
}
