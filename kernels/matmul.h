/*
 * matmul.h: C ABI of the matmul op(s): CPU reference (kernels/matmul_cpu.c) and, with CUDA, the launcher (kernels/matmul.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_MATMUL_H
#define RK_KERNELS_MATMUL_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU, f32 through OpenBLAS sgemm. dst (M,N) = x (M,K) @ w (N,K)^T + bias, then the activation.
 * x and dst may have a row stride larger than their width (views). Cannot fail. */
void rk_cpu_matmul(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * w,
                   const struct rk_tensor * bias, const struct rk_matmul_params * p);

/* CPU backward of MATMUL (RK_OP_MATMUL_BWD, see host/backend.h), f32 through OpenBLAS sgemm.
 * dout (M,N), x (M,K) rows contiguous; w (N,K) contiguous; dx (M,K) (unused when p->skip_dx), dw (N,K) or NULL,
 * db (N) or NULL. Cannot fail (shapes are asserted). kernels/matmul_bwd_cpu.c. */
void rk_cpu_matmul_bwd(struct rk_tensor * dx, struct rk_tensor * dw, struct rk_tensor * db,
                       const struct rk_tensor * dout, const struct rk_tensor * x, const struct rk_tensor * w,
                       const struct rk_matmul_bwd_params * p);

#ifdef __cplusplus
}
#endif
#endif
