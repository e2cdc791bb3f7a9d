/*
 * test_cpu_ops.c: the CPU backend's fast paths against independent references: the BLAS attention against the
 * plain per-row attention, the OpenBLAS matmul (with bias, GELU and accumulate) against a double-precision triple loop, and
 * LayerNorm / softmax / pooling against double-precision formulas. Seeded inputs (RK_TEST_SEED overrides).
 * Also the error bound of rk_erf_ex2 (kernels/erf_ex2.h, the fast erf of the CUDA GELU variants) against erf() in
 * double over a dense grid of float bit patterns.
 */
#include "test_util.h"

#include "backend.h"
#include "kernels/attn.h"
#include "kernels/elementwise.h"
#include "kernels/erf_ex2.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/pool.h"
#include "kernels/softmax.h"

#include <math.h>

static void seed_rng(void) { rk_test_seed(1234); }
static float * rand_buf(int64_t n) { return rk_test_rand_buf(n); }

static void assert_close(const float * got, const float * ref, int64_t n, double atol, double rtol, const char * what) {
    for (int64_t i = 0; i < n; i++) {
        cr_assert(!isnan(got[i]), "%s: NaN at %lld", what, (long long) i);
        if (isinf(ref[i])) {
            cr_assert(got[i] == ref[i], "%s: at %lld got %g, want %g", what, (long long) i, got[i], ref[i]);
            continue;
        }
        cr_assert(fabs((double) got[i] - ref[i]) <= atol + rtol * fabs(ref[i]), "%s: at %lld got %.7g, want %.7g",
                  what, (long long) i, got[i], ref[i]);
    }
}

TestSuite(cpu_ops, .init = seed_rng);

/* attention: q/k/v as strided views into a fused (B, T, (NH + 2 NKV) HS) buffer, like the models use */
static void attn_case(int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HS, bool causal, int64_t window,
                      bool with_mask) {
    const int64_t W = (NH + 2 * NKV) * HS;
    float * buf = rand_buf(B * T * W);
    int32_t * mask = NULL;
    if (with_mask) {
        mask = malloc(sizeof(int32_t) * (size_t) (B * T));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) mask[b * T + t] = b == 1 ? 0 : t < T - b * 3; /* batch 1: fully padded */
    }
    const int64_t nbq[4] = { T * W * 4, HS * 4, W * 4, 4 };
    struct rk_tensor base = rk_tensor_host(buf, RK_DTYPE_F32, 1, (int64_t[]) { B * T * W });
    struct rk_tensor q = rk_tensor_view(&base, 4, (int64_t[]) { B, NH, T, HS }, nbq, 0);
    struct rk_tensor k = rk_tensor_view(&base, 4, (int64_t[]) { B, NKV, T, HS }, nbq, (size_t) (NH * HS * 4));
    struct rk_tensor v = rk_tensor_view(&base, 4, (int64_t[]) { B, NKV, T, HS }, nbq, (size_t) ((NH + NKV) * HS * 4));
    float * o1 = calloc((size_t) (B * T * NH * HS), 4), * o2 = calloc((size_t) (B * T * NH * HS), 4);
    float * l1 = calloc((size_t) (B * NH * T), 4), * l2 = calloc((size_t) (B * NH * T), 4);
    const int64_t shp[4] = { B, NH, T, HS };
    struct rk_tensor O1 = rk_tensor_host(o1, RK_DTYPE_F32, 4, shp), O2 = rk_tensor_host(o2, RK_DTYPE_F32, 4, shp);
    struct rk_tensor L1 = rk_tensor_host(l1, RK_DTYPE_F32, 3, shp), L2 = rk_tensor_host(l2, RK_DTYPE_F32, 3, shp);
    struct rk_tensor M = rk_tensor_host(mask, RK_DTYPE_I32, 2, (int64_t[]) { B, T });
    struct rk_attn_params p = { .scale = 1.0f / sqrtf((float) HS), .causal = causal, .window = window };
    rk_cpu_attn_fwd(&O1, &q, &k, &v, mask ? &M : NULL, &L1, &p);
    rk_cpu_attn_fwd_plain(&O2, &q, &k, &v, mask ? &M : NULL, &L2, &p);
    char what[128];
    snprintf(what, sizeof(what), "ATTN_FWD(B=%lld,T=%lld,NH=%lld,NKV=%lld,HS=%lld,causal=%d,window=%lld,mask=%d)",
             (long long) B, (long long) T, (long long) NH, (long long) NKV, (long long) HS, causal, (long long) window,
             with_mask);
    assert_close(o1, o2, B * T * NH * HS, 1e-5, 1e-4, what);
    assert_close(l1, l2, B * NH * T, 1e-5, 1e-5, what);
    /* backward: the BLAS path against the plain one, from the same forward */
    {
        const int64_t nq = B * T * NH * HS, nk = B * T * NKV * HS;
        float * g = rand_buf(nq);
        float * dq1 = calloc((size_t) nq, 4), * dq2 = calloc((size_t) nq, 4);
        float * dk1 = calloc((size_t) nk, 4), * dk2 = calloc((size_t) nk, 4);
        float * dv1 = calloc((size_t) nk, 4), * dv2 = calloc((size_t) nk, 4);
        const int64_t shk[4] = { B, NKV, T, HS };
        struct rk_tensor G = rk_tensor_host(g, RK_DTYPE_F32, 4, shp);
        struct rk_tensor DQ1 = rk_tensor_host(dq1, RK_DTYPE_F32, 4, shp), DQ2 = rk_tensor_host(dq2, RK_DTYPE_F32, 4, shp);
        struct rk_tensor DK1 = rk_tensor_host(dk1, RK_DTYPE_F32, 4, shk), DK2 = rk_tensor_host(dk2, RK_DTYPE_F32, 4, shk);
        struct rk_tensor DV1 = rk_tensor_host(dv1, RK_DTYPE_F32, 4, shk), DV2 = rk_tensor_host(dv2, RK_DTYPE_F32, 4, shk);
        rk_cpu_attn_bwd(&DQ1, &DK1, &DV1, &q, &k, &v, &O2, &G, &L2, mask ? &M : NULL, &p);
        rk_cpu_attn_bwd_plain(&DQ2, &DK2, &DV2, &q, &k, &v, &O2, &G, &L2, mask ? &M : NULL, &p);
        assert_close(dq1, dq2, nq, 1e-5, 1e-3, what);
        assert_close(dk1, dk2, nk, 1e-5, 1e-3, what);
        assert_close(dv1, dv2, nk, 1e-5, 1e-3, what);
        free(g); free(dq1); free(dq2); free(dk1); free(dk2); free(dv1); free(dv2);
    }
    if (with_mask) { /* the fully padded batch gives zeros and lse -inf */
        for (int64_t i = 0; i < NH * T * HS; i++) cr_assert(o1[1 * NH * T * HS + i] == 0.0f, "%s: padded row not zero", what);
        cr_assert(isinf(l1[1 * NH * T]) && l1[1 * NH * T] < 0, "%s", what);
    }
    free(buf); free(mask); free(o1); free(o2); free(l1); free(l2);
}

Test(cpu_ops, attention_blas_matches_plain_fwd_and_bwd) {
    attn_case(2, 77, 4, 4, 32, false, 0, false);
    attn_case(3, 200, 4, 2, 64, true, 0, true);
    attn_case(1, 300, 8, 2, 16, true, 16, false);
    attn_case(2, 129, 2, 1, 80, false, 0, true);
    attn_case(1, 1, 2, 2, 8, true, 0, false);
}

Test(cpu_ops, matmul_matches_double_loop) {
    const int64_t M = 77, N = 385, K = 129, ldx = 140;
    float * x = rand_buf(M * ldx), * w = rand_buf(N * K), * b = rand_buf(N);
    float * o = calloc((size_t) (M * N), 4), * ref = calloc((size_t) (M * N), 4);
    struct rk_tensor xb = rk_tensor_host(x, RK_DTYPE_F32, 2, (int64_t[]) { M, ldx });
    struct rk_tensor X  = rk_tensor_view(&xb, 2, (int64_t[]) { M, K }, (int64_t[]) { ldx * 4, 4 }, 0); /* strided rows */
    struct rk_tensor W  = rk_tensor_host(w, RK_DTYPE_F32, 2, (int64_t[]) { N, K });
    struct rk_tensor Bv = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { N });
    struct rk_tensor O  = rk_tensor_host(o, RK_DTYPE_F32, 2, (int64_t[]) { M, N });
    float * d0 = rand_buf(M * N); /* dst before an accumulating product (the residual) */
    for (int mode = 0; mode < 6; mode++) { /* act (none, GELU) x accumulate (no, yes) x bias (yes, yes, none) */
        const int act = mode & 1, acc = (mode >> 1) & 1, nob = mode >= 4;
        struct rk_matmul_params p = { .act = act ? RK_ACT_GELU : RK_ACT_NONE, .accumulate = acc || nob };
        memcpy(o, d0, sizeof(float) * (size_t) (M * N));
        rk_cpu_matmul(&O, &X, &W, nob ? NULL : &Bv, &p);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = (nob ? 0.0 : b[n]) + (p.accumulate ? d0[m * N + n] : 0.0);
                for (int64_t kk = 0; kk < K; kk++) s += (double) x[m * ldx + kk] * w[n * K + kk];
                ref[m * N + n] = act ? (float) (0.5 * s * (1.0 + erf(s / sqrt(2.0)))) : (float) s;
            }
        char what[64];
        snprintf(what, sizeof(what), "MATMUL(gelu=%d, accumulate=%d, bias=%d)", act, p.accumulate, !nob);
        assert_close(o, ref, M * N, 1e-4, 1e-4, what);
    }
    free(d0);
    free(x); free(w); free(b); free(o); free(ref);
}

Test(cpu_ops, layernorm_softmax_pool_match_double) {
    const int64_t N = 5, C = 1031;
    float * x = rand_buf(N * C), * r = rand_buf(N * C), * w = rand_buf(C), * b = rand_buf(C);
    float * o = calloc((size_t) (N * C), 4), * ref = calloc((size_t) (N * C), 4);
    const int64_t sh[2] = { N, C };
    struct rk_tensor X = rk_tensor_host(x, RK_DTYPE_F32, 2, sh), R = rk_tensor_host(r, RK_DTYPE_F32, 2, sh);
    struct rk_tensor Wt = rk_tensor_host(w, RK_DTYPE_F32, 1, (int64_t[]) { C }), Bt = rk_tensor_host(b, RK_DTYPE_F32, 1, (int64_t[]) { C });
    struct rk_tensor O = rk_tensor_host(o, RK_DTYPE_F32, 2, sh);
    struct rk_layernorm_params lp = { .eps = 1e-5f };
    rk_cpu_layernorm(&O, &X, &Wt, &Bt, &R, &lp);
    for (int64_t n = 0; n < N; n++) {
        double mu = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mu += (double) x[n * C + c] + r[n * C + c];
        mu /= C;
        for (int64_t c = 0; c < C; c++) var += pow((double) x[n * C + c] + r[n * C + c] - mu, 2);
        var /= C;
        for (int64_t c = 0; c < C; c++)
            ref[n * C + c] = (float) (((double) x[n * C + c] + r[n * C + c] - mu) / sqrt(var + 1e-5) * w[c] + b[c]);
    }
    assert_close(o, ref, N * C, 1e-5, 1e-5, "LAYERNORM(residual)");

    struct rk_softmax_params sp = { .scale = 0.7f };
    rk_cpu_softmax(&O, &X, &sp);
    for (int64_t n = 0; n < N; n++) {
        double mx = -1e30, s = 0;
        for (int64_t c = 0; c < C; c++) mx = fmax(mx, 0.7 * x[n * C + c]);
        for (int64_t c = 0; c < C; c++) s += exp(0.7 * x[n * C + c] - mx);
        for (int64_t c = 0; c < C; c++) ref[n * C + c] = (float) (exp(0.7 * x[n * C + c] - mx) / s);
    }
    assert_close(o, ref, N * C, 1e-7, 1e-5, "SOFTMAX");

    /* pooling over (B=N, T=C/...): use B=5, T=7, Cp=13 with a mask; row 2 fully padded */
    const int64_t B = 5, T = 7, Cp = 13;
    int32_t mk[35];
    for (int i = 0; i < 35; i++) mk[i] = (i / 7 == 2) ? 0 : (i % 7) < 7 - (i / 7);
    struct rk_tensor X3 = rk_tensor_host(x, RK_DTYPE_F32, 3, (int64_t[]) { B, T, Cp });
    struct rk_tensor MK = rk_tensor_host(mk, RK_DTYPE_I32, 2, (int64_t[]) { B, T });
    struct rk_tensor P  = rk_tensor_host(o, RK_DTYPE_F32, 2, (int64_t[]) { B, Cp });
    for (int mode = 0; mode < RK_POOL_COUNT; mode++) {
        struct rk_pool_params pp = { .mode = (enum rk_pool_mode) mode };
        rk_cpu_pool(&P, &X3, &MK, &pp);
        for (int64_t bb = 0; bb < B; bb++) {
            int64_t cnt = 0, last = -1;
            for (int64_t t = 0; t < T; t++) if (mk[bb * T + t]) { cnt++; last = t; }
            for (int64_t c = 0; c < Cp; c++) {
                double v = 0;
                if (cnt) {
                    if (mode == RK_POOL_CLS) v = x[(bb * T) * Cp + c];
                    else if (mode == RK_POOL_LAST) v = x[(bb * T + last) * Cp + c];
                    else if (mode == RK_POOL_MEAN) { for (int64_t t = 0; t < T; t++) if (mk[bb * T + t]) v += x[(bb * T + t) * Cp + c]; v /= cnt; }
                    else { v = -1e30; for (int64_t t = 0; t < T; t++) if (mk[bb * T + t]) v = fmax(v, x[(bb * T + t) * Cp + c]); }
                }
                ref[bb * Cp + c] = (float) v;
            }
        }
        assert_close(o, ref, B * Cp, 1e-6, 1e-6, "POOL");
    }
    free(x); free(r); free(w); free(b); free(o); free(ref);
}

/* Every enum-indexed name table is complete (a missing designated initializer would leave a NULL). */
Test(cpu_ops, name_tables_complete) {
    for (int i = 0; i < RK_OP_COUNT; i++) cr_assert(rk_op_names[i] != NULL, "op %d has no name", i);
    for (int i = 0; i < RK_DTYPE_COUNT; i++) cr_assert(rk_dtype_traits[i].name != NULL, "dtype %d has no traits", i);
    for (int i = 0; i < RK_STATUS_COUNT; i++) cr_assert(strcmp(rk_status_name((enum rk_status) i), "unknown status") != 0);
}

/*
 * rk_erf_ex2 (kernels/erf_ex2.h) against erf() in double: every 61st float bit pattern of [0, +inf] (35 million
 * values, denormals and tails included), every float step of 2^-20 over [0, 4.5] (where the error lives), the
 * special values, and odd symmetry. Two bounds: with this host's exp2f (what the emulator runs), and the device's,
 * where ex2.approx may be off by 2 ulp: the result is recomputed with 2^P moved by +-2 ulp. Also GELU through it
 * against the double formula, relative to |x| (its error is 0.5 |x| times erf's).
 */
static double erf_ex2_err(float x, double * hw) {
    const double ref = erf((double) x);
    const float  r   = rk_erf_ex2(x);
    const double e0  = fabs((double) r - ref);
    const float  a   = fabsf(x);
    const float  e   = exp2f(rk_erf_ex2_log2erfc(a > RK_ERF_EX2_TMAX ? RK_ERF_EX2_TMAX : a));
    const float  u   = e - nextafterf(e, 0.0f); /* one ulp of 2^P (<= 1: the spacing below it) */
    const float  lo  = copysignf(1.0f - (e - 2.0f * u), x), hi = copysignf(1.0f - (e + 2.0f * u), x);
    *hw = fmax(e0, fmax(fabs((double) lo - ref), fabs((double) hi - ref)));
    return e0;
}

Test(cpu_ops, erf_ex2_accuracy) {
    double  worst = 0.0, worst_hw = 0.0, worst_gelu = 0.0;
    float   at = 0.0f, at_hw = 0.0f;
    int64_t n  = 0;
    for (int pass = 0; pass < 2; pass++) {
        const uint32_t end = pass == 0 ? 0x7f800000u : (uint32_t) (4.5 * 1048576.0);
        const uint32_t step = pass == 0 ? 61u : 1u;
        for (uint32_t i = 0; i <= end; i += step) {
            float x;
            if (pass == 0) {
                memcpy(&x, &i, 4);
            } else {
                x = (float) i * (1.0f / 1048576.0f);
            }
            double       hw;
            const double e = erf_ex2_err(x, &hw);
            if (e > worst) worst = e, at = x;
            if (hw > worst_hw) worst_hw = hw, at_hw = x;
            if ((i & 1023u) == 0) {
                cr_assert(rk_erf_ex2(-x) == -rk_erf_ex2(x), "rk_erf_ex2 is not odd at %.9g", (double) x);
                erf_ex2_err(-x, &hw);
            }
            if (x < 30.0f) {
                const double g = 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
                const double q = fabs((double) rk_gelu_ex2(x) - g) / fmax(fabs((double) x), 1e-30);
                const double qn = fabs((double) rk_gelu_ex2(-x) + 0.5 * x * erfc(x / sqrt(2.0))) / fmax(x, 1e-30);
                if (q > worst_gelu) worst_gelu = q;
                if (qn > worst_gelu) worst_gelu = qn;
            }
            n++;
        }
    }
    fprintf(stderr, "rk_erf_ex2 over %lld floats: max |err| %.3g at %.9g (host exp2f); %.3g at %.9g with ex2 off by "
                    "2 ulp (device bound); gelu: max |err| / |x| %.3g\n",
            (long long) n, worst, (double) at, worst_hw, (double) at_hw, worst_gelu);
    cr_assert(worst <= 1e-7, "rk_erf_ex2: max |err| %.3g at %.9g (bound 1e-7)", worst, (double) at);
    cr_assert(worst_hw <= 2e-7, "rk_erf_ex2, device bound: max |err| %.3g at %.9g (bound 2e-7)", worst_hw,
              (double) at_hw);
    cr_assert(worst_gelu <= 1.2e-7, "rk_gelu_ex2: max |err| / |x| %.3g (bound 1.2e-7)", worst_gelu);
    /* special values */
    cr_assert(rk_erf_ex2(0.0f) == 0.0f && !signbit(rk_erf_ex2(0.0f)) && signbit(rk_erf_ex2(-0.0f)));
    cr_assert(rk_erf_ex2(INFINITY) == 1.0f && rk_erf_ex2(-INFINITY) == -1.0f);
    cr_assert(isnan(rk_erf_ex2(NAN)) && isnan(rk_gelu_ex2(NAN)));
    cr_assert(rk_gelu_ex2(INFINITY) == INFINITY && rk_gelu_ex2(-1e30f) == 0.0f);
}

/* rk_env_variant: what the kernel-variant environment variables (RK_ATTN_FWD_VARIANT, ...) accept */
Test(cpu_ops, env_variant_parsing) {
    const char * name = "RK_TEST_ENV_VARIANT";
    unsetenv(name);
    cr_assert_eq(rk_env_variant(name, 5), 0, "unset");
    const struct {
        const char * value;
        int          want;
    } cases[] = { { "", 0 }, { "0", 0 }, { "1", 1 }, { "4", 4 }, { "5", 0 }, { "-1", 0 }, { "3x", 0 }, { "abc", 0 } };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv(name, cases[i].value, 1);
        cr_assert_eq(rk_env_variant(name, 5), cases[i].want, "%s=\"%s\"", name, cases[i].value);
    }
    unsetenv(name);
}

/* rk_variant_knob: the builtin default when the variable is unset, the variable's value otherwise (read once), set
 * and reset to the default with 0, out-of-range values refused and the setting kept. */
Test(cpu_ops, variant_knob) {
    unsetenv("RK_TEST_KNOB_A");
    struct rk_variant_knob a = RK_VARIANT_KNOB("RK_TEST_KNOB_A", "test a", 4, 1);
    cr_assert_eq(rk_variant_knob_get(&a), 1);
    cr_assert_eq(rk_variant_knob_set(&a, 3), RK_OK);
    cr_assert_eq(rk_variant_knob_get(&a), 3);
    cr_assert_eq(rk_variant_knob_set(&a, 4), RK_STATUS_ARG);
    cr_assert_eq(rk_variant_knob_set(&a, -1), RK_STATUS_ARG);
    cr_assert_eq(rk_variant_knob_get(&a), 3, "a refused value keeps the setting");
    cr_assert_eq(rk_variant_knob_set(&a, 0), RK_OK);
    cr_assert_eq(rk_variant_knob_get(&a), 1);
    setenv("RK_TEST_KNOB_B", "2", 1);
    struct rk_variant_knob b = RK_VARIANT_KNOB("RK_TEST_KNOB_B", "test b", 4, 1);
    cr_assert_eq(rk_variant_knob_get(&b), 2);
    setenv("RK_TEST_KNOB_B", "3", 1); /* read once */
    cr_assert_eq(rk_variant_knob_set(&b, 1), RK_OK);
    cr_assert_eq(rk_variant_knob_set(&b, 0), RK_OK);
    cr_assert_eq(rk_variant_knob_get(&b), 2);
    unsetenv("RK_TEST_KNOB_B");
}
