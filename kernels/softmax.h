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

#ifdef __cplusplus
}
#endif
#endif
