/*
 * blas_shim.c: a small stand-in for libopenblas.so.0 on a lent GPU machine, whose image has no OpenBLAS and where
 * carrying Debian's (36 MB) does not fit. It provides only what rk calls: cblas_sgemm (row- and column-major, any
 * transposes) and openblas_set_num_threads. Plain blocked loops with OpenMP over rows: correct, and fast enough for
 * the CPU references of the CUDA tests and benches, which use small shapes. Never used on the CPU machines.
 *   gcc -O3 -march=x86-64-v3 -fopenmp -shared -fPIC -Wl,-soname,libopenblas.so.0 -o libopenblas.so.0 blas_shim.c
 */
#include <stddef.h>

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };

void openblas_set_num_threads(int n) { (void) n; }

/* C(M,N) = alpha op(A) op(B) + beta C, row-major view; element (i,k) of op(A) at A[i*sa_r + k*sa_c]. */
static void sgemm_rm(int M, int N, int K, float alpha, const float * A, long sar, long sac, const float * B, long sbr,
                     long sbc, float beta, float * C, long ldc) {
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < M; i++) {
        float * c = C + (long) i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            const float a = alpha * A[(long) i * sar + (long) k * sac];
            const float * b = B + (long) k * sbr;
            if (sbc == 1) {
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (int j = 0; j < N; j++) c[j] += a * b[(long) j * sbc];
            }
        }
    }
}

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float * A, int lda, const float * B, int ldb, float beta, float * C, int ldc) {
    if (order == CblasColMajor) { /* C^T = op(B)^T op(A)^T in row-major terms */
        cblas_sgemm(CblasRowMajor, tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
        return;
    }
    const long sar = ta == CblasNoTrans ? lda : 1, sac = ta == CblasNoTrans ? 1 : lda;
    const long sbr = tb == CblasNoTrans ? ldb : 1, sbc = tb == CblasNoTrans ? 1 : ldb;
    sgemm_rm(M, N, K, alpha, A, sar, sac, B, sbr, sbc, beta, C, ldc);
}
