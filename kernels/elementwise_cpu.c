/*
 * elementwise_cpu.c: CPU references of RK_OP_GELU (erf form), RK_OP_ADD, RK_OP_TANH and RK_OP_FILL.
 */
#include "check.h"
#include "kernels/elementwise.h"

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* dst, x: same shape, contiguous. */
void rk_cpu_gelu(struct rk_tensor * dst, const struct rk_tensor * x) {
    const int64_t n = rk_tensor_nelements(x);
    RK_ASSERT(rk_tensor_nelements(dst) == n && rk_tensor_is_contiguous(x) && rk_tensor_is_contiguous(dst));
    const float * a = x->data;
    float *       o = dst->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = rk_gelu_f32(a[i]);
}

/* dst, a, b: same shape, contiguous. */
void rk_cpu_add(struct rk_tensor * dst, const struct rk_tensor * a, const struct rk_tensor * b) {
    const int64_t n = rk_tensor_nelements(a);
    RK_ASSERT(rk_tensor_nelements(b) == n && rk_tensor_nelements(dst) == n);
    RK_ASSERT(rk_tensor_is_contiguous(a) && rk_tensor_is_contiguous(b) && rk_tensor_is_contiguous(dst));
    const float * x = a->data;
    const float * y = b->data;
    float *       o = dst->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}

void rk_cpu_tanh(struct rk_tensor * dst, const struct rk_tensor * x) {
    const int64_t n = rk_tensor_nelements(x);
    RK_ASSERT(rk_tensor_nelements(dst) == n && rk_tensor_is_contiguous(x) && rk_tensor_is_contiguous(dst));
    const float * a = x->data;
    float *       o = dst->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = tanhf(a[i]);
}

void rk_cpu_fill(struct rk_tensor * dst, float value) {
    const int64_t n = rk_tensor_nelements(dst);
    RK_ASSERT(rk_tensor_is_contiguous(dst));
    if (dst->dtype == RK_DTYPE_I32) {
        int32_t * o = dst->data;
        for (int64_t i = 0; i < n; i++) o[i] = (int32_t) value;
        return;
    }
    RK_ASSERT(dst->dtype == RK_DTYPE_F32);
    float * o = dst->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = value;
}
