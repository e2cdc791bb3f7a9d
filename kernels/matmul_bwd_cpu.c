/*
 * matmul_bwd_cpu.c: CPU RK_OP_MATMUL_BWD through OpenBLAS. With y = x w^T + b (w in PyTorch's (N,K) layout):
 *   dx = dout w       sgemm(NoTrans, NoTrans), (M,N) (N,K)
 *   dw = dout^T x     sgemm(Trans,   NoTrans), (N,M) (M,K)
 *   db = sum over the rows of dout
 * The op is linear; an activation epilogue is undone first by its own backward op (GELU_BWD).
 */
#include "check.h"
#include "kernels/matmul.h"

#include <cblas.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

void rk_cpu_matmul_bwd(struct rk_tensor * dx, struct rk_tensor * dw, struct rk_tensor * db,
                       const struct rk_tensor * dout, const struct rk_tensor * x, const struct rk_tensor * w,
                       const struct rk_matmul_bwd_params * p) {
    const int64_t M = x->ne[0], K = x->ne[1], N = w->ne[0];
    RK_ASSERT(w->ne[1] == K && dout->ne[0] == M && dout->ne[1] == N);
    RK_ASSERT(x->nb[1] == 4 && dout->nb[1] == 4 && rk_tensor_is_contiguous(w));
    const int64_t ldd = dout->nb[0] / 4, ldx = x->nb[0] / 4;
    if (!p->skip_dx) {
        RK_ASSERT(dx->ne[0] == M && dx->ne[1] == K && dx->nb[1] == 4);
        if (M > 0 && K > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) M, (int) K, (int) N, 1.0f, dout->data,
                        (int) ldd, w->data, (int) K, p->dx_accumulate ? 1.0f : 0.0f, dx->data, (int) (dx->nb[0] / 4));
        }
    }
    if (dw) {
        RK_ASSERT(dw->ne[0] == N && dw->ne[1] == K && rk_tensor_is_contiguous(dw));
        if (N > 0 && K > 0) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) N, (int) K, (int) M, 1.0f, dout->data,
                        (int) ldd, x->data, (int) ldx, p->accumulate ? 1.0f : 0.0f, dw->data, (int) K);
        }
    }
    if (db) {
        RK_ASSERT(rk_tensor_nelements(db) == N && rk_tensor_is_contiguous(db));
        float *       o = db->data;
        const float * d = dout->data;
        /* one thread per column, rows in order: deterministic; summed in double */
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            double s = 0.0;
            for (int64_t m = 0; m < M; m++) s += d[m * ldd + n];
            o[n] = (p->accumulate ? o[n] : 0.0f) + (float) s;
        }
    }
}
