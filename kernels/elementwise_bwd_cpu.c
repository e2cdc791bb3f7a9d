/*
 * elementwise_bwd_cpu.c: CPU reference of RK_OP_GELU_BWD (erf form, the derivative of RK_OP_GELU).
 */
#include "check.h"
#include "kernels/elementwise.h"

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* dx, dout, x: same shape, contiguous; dx may alias dout. */
void rk_cpu_gelu_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * x) {
    const int64_t n = rk_tensor_nelements(x);
    RK_ASSERT(rk_tensor_nelements(dx) == n && rk_tensor_nelements(dout) == n);
    RK_ASSERT(rk_tensor_is_contiguous(dx) && rk_tensor_is_contiguous(dout) && rk_tensor_is_contiguous(x));
    const float * a = x->data;
    const float * d = dout->data;
    float *       o = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = d[i] * rk_gelu_grad_f32(a[i]);
}

void rk_cpu_tanh_bwd(struct rk_tensor * dx, const struct rk_tensor * dout, const struct rk_tensor * y) {
    const int64_t n = rk_tensor_nelements(y);
    RK_ASSERT(rk_tensor_nelements(dx) == n && rk_tensor_nelements(dout) == n);
    RK_ASSERT(rk_tensor_is_contiguous(dx) && rk_tensor_is_contiguous(dout) && rk_tensor_is_contiguous(y));
    const float * a = y->data;
    const float * d = dout->data;
    float *       o = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = d[i] * (1.0f - a[i] * a[i]);
}
