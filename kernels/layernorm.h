/*
 * layernorm.h: C ABI of the layernorm op(s): CPU reference (kernels/layernorm_cpu.c) and, with CUDA, the launcher (kernels/layernorm.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_LAYERNORM_H
#define RK_KERNELS_LAYERNORM_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU reference, f32, rows contiguous. dst (N,C) = LN(x + residual) * w + b; residual/b may be NULL.
 * dst may alias x or residual. Cannot fail. */
void rk_cpu_layernorm(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_tensor * w,
                      const struct rk_tensor * b, const struct rk_tensor * residual,
                      const struct rk_layernorm_params * p);

/* RK_OP_LAYERNORM_BWD (see host/backend.h): dx (N,C) = gradient of x + residual (overwritten, may alias dout);
 * dw, db (C) accumulated, either may be NULL. mean/rstd are recomputed from x (+ residual). Cannot fail.
 * kernels/layernorm_bwd_cpu.c. */
void rk_cpu_layernorm_bwd(struct rk_tensor * dx, struct rk_tensor * dw, struct rk_tensor * db,
                          const struct rk_tensor * dout, const struct rk_tensor * x, const struct rk_tensor * w,
                          const struct rk_tensor * residual, const struct rk_layernorm_params * p);

#ifdef __cplusplus
}
#endif
#endif
