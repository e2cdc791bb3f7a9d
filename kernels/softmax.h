/*
 * softmax.h: C ABI of the softmax op(s): CPU reference (kernels/softmax_cpu.c) and, with CUDA, the launcher (kernels/softmax.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_SOFTMAX_H
#define RK_KERNELS_SOFTMAX_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU reference, f32, rows contiguous: dst (N,C) = softmax(x * scale). Cannot fail. */
void rk_cpu_softmax(struct rk_tensor * dst, const struct rk_tensor * x, const struct rk_softmax_params * p);

/* RK_OP_SOFTMAX_BWD: dx (N,C) = scale * y * (dy - sum(dy * y)), rows contiguous; dx may alias dy.
 * Cannot fail. kernels/softmax_bwd_cpu.c. */
void rk_cpu_softmax_bwd(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * y,
                        const struct rk_softmax_params * p);

#ifdef __cplusplus
}
#endif
#endif
