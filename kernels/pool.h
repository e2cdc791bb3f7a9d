/*
 * pool.h: C ABI of the pool op(s): CPU reference (kernels/pool_cpu.c) and, with CUDA, the launcher (kernels/pool.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_POOL_H
#define RK_KERNELS_POOL_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU references, f32. pool: x (B,T,C), mask (B,T) i32 or NULL, dst (B,C). l2norm: rows of (N,C).
 * Cannot fail. */
void rk_cpu_pool(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * mask,
                 const struct rk_pool_params * p);
void rk_cpu_l2norm(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_l2norm_params * p);

/* RK_OP_POOL_BWD: dx (B,T,C) overwritten from dout (B,C); x (B,T,C) is the forward input (for MAX);
 * mask (B,T) i32 or NULL. Cannot fail. kernels/pool_bwd_cpu.c. */
void rk_cpu_pool_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * x,
                     const struct rk_tensor * mask, const struct rk_pool_params * p);

#ifdef __cplusplus
}
#endif
#endif
