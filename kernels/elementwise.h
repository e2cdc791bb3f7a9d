/*
 * elementwise.h: C ABI of the elementwise op(s): CPU reference (kernels/elementwise_cpu.c) and, with CUDA, the launcher (kernels/elementwise.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_ELEMENTWISE_H
#define RK_KERNELS_ELEMENTWISE_H

#include "backend.h"

#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GELU, erf form: 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.functional.gelu(approximate="none"). */
static inline float rk_gelu_f32(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
/* CPU references, f32, contiguous. Cannot fail. */
void rk_cpu_gelu(struct rk_tensor * dst, const struct rk_tensor * x);
void rk_cpu_add(struct rk_tensor * dst, const struct rk_tensor * a, const struct rk_tensor * b);

#ifdef __cplusplus
}
#endif
#endif
