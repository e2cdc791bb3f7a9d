/*
 * erf_ex2.h: a branch-free erf(x) in fp32 with one exp2 and no division, for the GELU kernel variants of
 * kernels/elementwise.cu (variants 3 and 4) and for the CPU test that bounds its error (tests/test_cpu_ops.c,
 * erf_ex2_accuracy). Host and device: C (the tests) and CUDA (the kernels) include it.
 *
 *   erf(x) = sign(x) (1 - 2^P(t)),  t = min(|x|, RK_ERF_EX2_TMAX),  P(t) = t Q(t) ~ log2(erfc(t)), Q of degree 8.
 *
 * P is a weighted minimax fit of log2(erfc(t)) on [0, RK_ERF_EX2_TMAX], the weight ln2 erfc(t) making the error
 * that of erfc (and so of erf) in absolute terms: 2.4e-9 in exact arithmetic (Lawson-iterated weighted least squares
 * in double, coefficients then rounded to float). Past TMAX = 3.925, erfc(t) < 3e-8 (half an ulp of 1), and the
 * result is 1 - 2^P(TMAX), i.e. 1 within an ulp. P(0) = 0, so erf(+-0) = +-0; NaN gives NaN; erf(+-inf) = +-1.
 *
 * Cost per element (sm_90 PTX of rk_gelu_ex2): 2 mul, a compare and select (the clamp), 8 FMA + 1 mul (Horner),
 * one ex2.approx.ftz (a single MUFU.EX2), a sub, a copysign and the GELU FMA: 16 instructions, no branch and no
 * reciprocal (the A&S 7.1.26 form of commit 52fb6a0 needed one). CUDA 13's erff in the same GELU is 26: two degree-6
 * polynomials whose coefficients are selected one by one (7 selects), and a branch around its ex2.
 *
 * Accuracy, |rk_erf_ex2(x) - erf(x)| over all floats (the test walks a dense grid of float bit patterns, tails
 * included): 8.5e-8 with a correctly rounded exp2 (host, emulator; the test asserts <= 1e-7). The device's
 * ex2.approx.ftz is within 2 ulp of 2^P (CUDA C Programming Guide, exp2f); recomputing with 2^P moved by 2 ulp
 * either way gives 1.83e-7 (asserted <= 2e-7). GELU through it: |error| <= 9.1e-8 |x| on the host. All far below
 * the rounding of a 16-bit output (bf16 2^-9, f16 2^-12 relative), so the kernels use it for f16/bf16 outputs
 * only; f32 outputs keep erff.
 */
#ifndef RK_KERNELS_ERF_EX2_H
#define RK_KERNELS_ERF_EX2_H

#include <math.h>

#ifdef __CUDACC__
#define RK_ERF_EX2_FN static __host__ __device__ __forceinline__
#else
#define RK_ERF_EX2_FN static inline
#endif

#define RK_ERF_EX2_TMAX 3.925f

/* P(t) ~ log2(erfc(t)) for 0 <= t <= RK_ERF_EX2_TMAX (see the header); a NaN t gives NaN. Cannot fail. */
RK_ERF_EX2_FN float rk_erf_ex2_log2erfc(float t) {
    float q = 1.158568466e-05f;
    q       = fmaf(q, t, -1.528758876e-04f);
    q       = fmaf(q, t, 8.482578560e-04f);
    q       = fmaf(q, t, -2.275586361e-03f);
    q       = fmaf(q, t, 8.661231550e-05f);
    q       = fmaf(q, t, 2.772269212e-02f);
    q       = fmaf(q, t, -1.483070552e-01f);
    q       = fmaf(q, t, -9.184430838e-01f);
    q       = fmaf(q, t, -1.627907276e+00f);
    return q * t;
}

/* 2^x: one MUFU.EX2 on the device (ex2.approx.ftz.f32, within 2 ulp; x here is in [-25, 0]), exp2f on the host. */
RK_ERF_EX2_FN float rk_erf_ex2_exp2(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

/* erf(x), branch-free; error bounds in the header. Cannot fail. */
RK_ERF_EX2_FN float rk_erf_ex2(float x) {
    const float a = fabsf(x);
    const float t = a > RK_ERF_EX2_TMAX ? RK_ERF_EX2_TMAX : a; /* a NaN stays NaN (the comparison is false) */
    return copysignf(1.0f - rk_erf_ex2_exp2(rk_erf_ex2_log2erfc(t)), x);
}

/* GELU, erf form, the same formula as rk_gelu_f32 (0.5 x (1 + erf(x / sqrt 2))) with rk_erf_ex2 for erff. */
RK_ERF_EX2_FN float rk_gelu_ex2(float x) {
    const float h = 0.5f * x;
    return fmaf(h, rk_erf_ex2(x * 0.70710678118654752f), h);
}

#endif
