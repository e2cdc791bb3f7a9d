/*
 * dropout_cpu.c: CPU reference of RK_OP_DROPOUT (forward and, applied to dout, backward). Each group of four
 * elements costs one Philox block; elements are independent, so the loop is split freely among threads.
 */
#include "check.h"
#include "kernels/dropout.h"

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

void rk_cpu_dropout(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_dropout_params * p) {
    const int64_t n = rk_tensor_nelements(x);
    RK_ASSERT(rk_tensor_nelements(dst) == n && rk_tensor_is_contiguous(x) && rk_tensor_is_contiguous(dst));
    RK_ASSERT(p->p >= 0.0f && p->p <= 1.0f);
    const float * a = x->data;
    float *       o = dst->data;
    if (p->p >= 1.0f) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) o[i] = 0.0f;
        return;
    }
    const float    scale  = 1.0f / (1.0f - p->p);
    const uint32_t key[2] = { (uint32_t) p->seed, (uint32_t) (p->seed >> 32) };
    const int64_t  nblk   = (n + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < nblk; g++) {
        const uint32_t ctr[4] = { (uint32_t) g, (uint32_t) ((uint64_t) g >> 32), (uint32_t) p->offset,
                                  (uint32_t) (p->offset >> 32) };
        uint32_t       r[4];
        rk_philox4x32_10(ctr, key, r);
        for (int64_t l = 0; l < 4 && g * 4 + l < n; l++) {
            const float u = (float) (r[l] >> 8) * (1.0f / 16777216.0f); /* as rk_dropout_uniform */
            o[g * 4 + l]  = u >= p->p ? a[g * 4 + l] * scale : 0.0f;
        }
    }
}
