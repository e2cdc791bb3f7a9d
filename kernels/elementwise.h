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
/*
 * exp(x) for x <= 0 in a form the compiler vectorizes (no calls, no branches): x = n ln2 + r with |r| <= ln2/2,
 * exp(r) by a degree-6 Taylor polynomial (relative error < 2e-7 there), 2^n from the exponent bits. Inputs below
 * -87 (and -inf) give exactly 0. For softmax weights and erf; tests compare against libm.
 */
static inline float rk_exp_neg_fast(float x) {
    const float xc = x < -87.0f ? -87.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick: vectorizes, unlike roundf */
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float       p = 1.0f / 720.0f;
    p             = p * r + 1.0f / 120.0f;
    p             = p * r + 1.0f / 24.0f;
    p             = p * r + 1.0f / 6.0f;
    p             = p * r + 0.5f;
    p             = p * r + 1.0f;
    p             = p * r + 1.0f;
    const int32_t e = ((int32_t) n + 127) << 23;
    float         scale;
    __builtin_memcpy(&scale, &e, 4);
    return xc <= -87.0f ? 0.0f : p * scale;
}

/*
 * erf(x), vectorizable: Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7), odd extension for x < 0.
 */
static inline float rk_erf_fast(float x) {
    const float a = x < 0.0f ? -x : x;
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float       y = 1.061405429f;
    y             = y * t - 1.453152027f;
    y             = y * t + 1.421413741f;
    y             = y * t - 0.284496736f;
    y             = y * t + 0.254829592f;
    y             = 1.0f - y * t * rk_exp_neg_fast(-a * a);
    return x < 0.0f ? -y : y;
}

/* GELU through rk_erf_fast: the fast path of the matmul epilogue; within 1e-7 * |x| of rk_gelu_f32. */
static inline float rk_gelu_fast(float x) { return 0.5f * x * (1.0f + rk_erf_fast(x * 0.70710678118654752f)); }

/* CPU references, f32, contiguous. Cannot fail. */
void rk_cpu_gelu(struct rk_tensor * dst, const struct rk_tensor * x);
void rk_cpu_add(struct rk_tensor * dst, const struct rk_tensor * a, const struct rk_tensor * b);

/* d gelu(x) / dx, erf form: Phi(x) + x phi(x). Cannot fail. */
static inline float rk_gelu_grad_f32(float x) {
    const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
/* RK_OP_GELU_BWD: dx = dout * gelu'(x); same shape, contiguous; dx may alias dout. Cannot fail.
 * kernels/elementwise_bwd_cpu.c. */
void rk_cpu_gelu_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * x);

/* RK_OP_TANH: dst = tanhf(x); RK_OP_TANH_BWD: dx = dout * (1 - y*y) with y the forward output. Same shape,
 * contiguous; outputs may alias inputs. Cannot fail. kernels/elementwise_cpu.c, kernels/elementwise_bwd_cpu.c. */
void rk_cpu_tanh(struct rk_tensor * dst, const struct rk_tensor * x);
void rk_cpu_tanh_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * y);
/* RK_OP_FILL: every element of dst (contiguous, f32 or i32) = value (i32: (int32_t) value). Cannot fail. */
void rk_cpu_fill(struct rk_tensor * dst, float value);

#ifdef __cplusplus
}
#endif
#endif
