/*
 * matmul_cpu.c: CPU RK_OP_MATMUL through OpenBLAS: dst = x @ w^T + bias (+ dst with accumulate), then the activation
 * epilogue.
 * The weight keeps PyTorch's Linear layout (N,K), so the product is sgemm(NoTrans, Trans).
 */
#include "check.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"

#include <cblas.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* x (M,K) rows contiguous, row stride x->nb[0]; w (N,K) contiguous; bias (N) or NULL; dst (M,N) likewise. */
void rk_cpu_matmul(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * w,
                   const struct rk_tensor * bias, const struct rk_matmul_params * p) {
    const int64_t M = x->ne[0], K = x->ne[1], N = w->ne[0];
    RK_ASSERT(w->ne[1] == K && dst->ne[0] == M && dst->ne[1] == N);
    RK_ASSERT(x->nb[1] == 4 && dst->nb[1] == 4 && rk_tensor_is_contiguous(w));
    const int64_t lda = x->nb[0] / 4, ldc = dst->nb[0] / 4;
    const float * bv  = bias ? bias->data : NULL;
    /* the bias enters through beta = 1 on rows pre-filled with it (or added to the old rows with accumulate): one
       pass over dst fewer */
    if (bv && p->accumulate) {
#pragma omp parallel for schedule(static)
        for (int64_t m = 0; m < M; m++) {
            float * o = (float *) dst->data + m * ldc;
            for (int64_t n = 0; n < N; n++) o[n] += bv[n];
        }
    } else if (bv) {
        for (int64_t m = 0; m < M; m++) memcpy((float *) dst->data + m * ldc, bv, sizeof(float) * (size_t) N);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) N, (int) K, 1.0f, x->data, (int) lda,
                w->data, (int) K, bv || p->accumulate ? 1.0f : 0.0f, dst->data, (int) ldc);
    if (p->act == RK_ACT_NONE) return;
    RK_ASSERT(p->act == RK_ACT_GELU);
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float * o = (float *) dst->data + m * ldc;
        for (int64_t n = 0; n < N; n++) o[n] = rk_gelu_fast(o[n]);
    }
}
