/*
 * test_grad.c: every CPU backward op and loss against central finite differences in double precision
 * (STYLE.md 6, [G] test-backend-ops "grad" mode). Each case writes a small double-precision forward of its op
 * here, independent of the kernels, and a scalar L = sum(forward(params) * R) for a fixed random R (the losses
 * are scalars already). The analytic gradient from our f32 op (called through rk_op on the CPU backend, with
 * dout = R) must match (L(p + h) - L(p - h)) / 2h element by element: |got - fd| <= 1e-4 + 1e-3 |fd|.
 * Inputs are uniform in [-1, 1] from a fixed, printed seed; RK_TEST_SEED overrides it.
 * Dropout has no smooth forward: its Philox generator is checked on a known-answer vector, and its mask for
 * determinism, keep rate and forward/backward consistency.
 */
#include "test_util.h"

#include "backend.h"
#include "kernels/dropout.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------
 * harness */

static uint64_t            g_rng;
static struct rk_backend * g_be;

static void setup(void) {
    const char * s = getenv("RK_TEST_SEED");
    g_rng          = s ? strtoull(s, NULL, 10) : 4321;
    if (g_rng == 0) g_rng = 1;
    cr_log_info("seed %llu (RK_TEST_SEED overrides)", (unsigned long long) g_rng);
    g_be = rk_backend_cpu_init(2);
    cr_assert(g_be != NULL);
}
static void teardown(void) { rk_backend_free(g_be); }

static double urand(void) { /* uniform in [-1, 1], exactly representable in f32 */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double) (float) ((double) (g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* a double parameter array and its f32 copy */
static double * drand_buf(int64_t n, double scale) {
    double * p = malloc(sizeof(double) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (double) (float) (urand() * scale);
    return p;
}
static float * to_f32(const double * p, int64_t n) {
    float * f = malloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) f[i] = (float) p[i];
    return f;
}
static float * fill_f32(int64_t n, float v) {
    float * f = malloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) f[i] = v;
    return f;
}

static struct rk_tensor T1(void * d, enum rk_dtype t, int64_t a) { return rk_tensor_host(d, t, 1, (int64_t[]) { a }); }
static struct rk_tensor T2(void * d, enum rk_dtype t, int64_t a, int64_t b) {
    return rk_tensor_host(d, t, 2, (int64_t[]) { a, b });
}
static struct rk_tensor T3(void * d, int64_t a, int64_t b, int64_t c) {
    return rk_tensor_host(d, RK_DTYPE_F32, 3, (int64_t[]) { a, b, c });
}
static struct rk_tensor T4(void * d, int64_t a, int64_t b, int64_t c, int64_t e) {
    return rk_tensor_host(d, RK_DTYPE_F32, 4, (int64_t[]) { a, b, c, e });
}

static void run_op(const struct rk_op_call * c) {
    const enum rk_status s = rk_op(g_be, c);
    cr_assert(s == RK_OK, "%s: %s (%s)", rk_op_names[c->op], rk_status_name(s), rk_last_error());
}

typedef double (*loss_fn)(const void * ctx);

#define FD_H 1e-5

/*
 * Central differences of f over each element of param (n doubles, perturbed in place and restored) against
 * grad (f32, minus `base` where the op accumulated onto a prefilled buffer).
 */
static void fd_check(loss_fn f, const void * ctx, double * param, int64_t n, const float * grad, float base,
                     const char * what) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double old = param[i];
        param[i]         = old + FD_H;
        const double lp  = f(ctx);
        param[i]         = old - FD_H;
        const double lm  = f(ctx);
        param[i]         = old;
        const double fd  = (lp - lm) / (2.0 * FD_H);
        const double got = (double) grad[i] - base;
        cr_assert(isfinite(got), "%s: grad[%lld] = %g is not finite", what, (long long) i, got);
        const double err = fabs(got - fd);
        cr_assert(err <= 1e-4 + 1e-3 * fabs(fd), "%s: grad[%lld] = %.7g, finite difference %.7g", what, (long long) i,
                  got, fd);
        if (err > worst) worst = err;
    }
    cr_log_info("%s: %lld elements, max |grad - fd| %.2e", what, (long long) n, worst);
}

TestSuite(grad, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------------------------------------
 * MATMUL_BWD: y = x w^T + b */

struct mm_ctx { int64_t M, N, K; double *x, *w, *b, *R; };

static double mm_loss(const void * vc) {
    const struct mm_ctx * c = vc;
    double                L = 0.0;
    for (int64_t m = 0; m < c->M; m++)
        for (int64_t n = 0; n < c->N; n++) {
            double y = c->b[n];
            for (int64_t k = 0; k < c->K; k++) y += c->x[m * c->K + k] * c->w[n * c->K + k];
            L += y * c->R[m * c->N + n];
        }
    return L;
}

Test(grad, matmul) {
    const int64_t M = 5, N = 6, K = 7, ldx = 9;
    struct mm_ctx c = { M, N, K, drand_buf(M * K, 1), drand_buf(N * K, 1), drand_buf(N, 1), drand_buf(M * N, 1) };
    /* x as a strided view (row stride 9), as the models pass slices of fused buffers */
    float * xs = fill_f32(M * ldx, 7.0f);
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++) xs[m * ldx + k] = (float) c.x[m * K + k];
    float * wf = to_f32(c.w, N * K), * Rf = to_f32(c.R, M * N);
    float * dx = fill_f32(M * K, 0.0f), * dw = fill_f32(N * K, 0.5f), * db = fill_f32(N, 0.25f);
    struct rk_tensor xb = T2(xs, RK_DTYPE_F32, M, ldx);
    struct rk_tensor X  = rk_tensor_view(&xb, 2, (int64_t[]) { M, K }, (int64_t[]) { ldx * 4, 4 }, 0);
    struct rk_tensor W = T2(wf, RK_DTYPE_F32, N, K), D = T2(Rf, RK_DTYPE_F32, M, N);
    struct rk_tensor DX = T2(dx, RK_DTYPE_F32, M, K), DW = T2(dw, RK_DTYPE_F32, N, K), DB = T1(db, RK_DTYPE_F32, N);
    struct rk_op_call call = { .op = RK_OP_MATMUL_BWD, .dst = &DX, .src = { &D, &X, &W, &DW, &DB },
                               .p.matmul_bwd = { .accumulate = true } };
    run_op(&call);
    fd_check(mm_loss, &c, c.x, M * K, dx, 0.0f, "MATMUL_BWD dx");
    fd_check(mm_loss, &c, c.w, N * K, dw, 0.5f, "MATMUL_BWD dw (accumulated onto 0.5)");
    fd_check(mm_loss, &c, c.b, N, db, 0.25f, "MATMUL_BWD db (accumulated onto 0.25)");

    /* overwrite mode, frozen input: dst's data is never touched */
    struct rk_tensor DX0 = DX;
    DX0.data             = NULL;
    call.dst             = &DX0;
    call.p.matmul_bwd    = (struct rk_matmul_bwd_params) { .skip_dx = true };
    run_op(&call);
    fd_check(mm_loss, &c, c.w, N * K, dw, 0.0f, "MATMUL_BWD dw (overwritten, skip_dx)");
    fd_check(mm_loss, &c, c.b, N, db, 0.0f, "MATMUL_BWD db (overwritten)");

    /* dx accumulate: a residual stream that already holds a gradient */
    for (int64_t i = 0; i < M * K; i++) dx[i] = 1.0f;
    call.dst          = &DX;
    call.src[3]       = NULL;
    call.src[4]       = NULL;
    call.p.matmul_bwd = (struct rk_matmul_bwd_params) { .dx_accumulate = true };
    run_op(&call);
    fd_check(mm_loss, &c, c.x, M * K, dx, 1.0f, "MATMUL_BWD dx (accumulated onto 1)");
    free(c.x); free(c.w); free(c.b); free(c.R); free(xs); free(wf); free(Rf); free(dx); free(dw); free(db);
}

/* ------------------------------------------------------------------------------------------------
 * GELU_BWD */

struct ew_ctx { int64_t n; double *x, *R; };

static double gelu_loss(const void * vc) {
    const struct ew_ctx * c = vc;
    double                L = 0.0;
    for (int64_t i = 0; i < c->n; i++) L += 0.5 * c->x[i] * (1.0 + erf(c->x[i] / sqrt(2.0))) * c->R[i];
    return L;
}

Test(grad, gelu) {
    const int64_t n = 61;
    struct ew_ctx c = { n, drand_buf(n, 4.0), drand_buf(n, 1) };
    float * xf = to_f32(c.x, n), * Rf = to_f32(c.R, n), * dx = fill_f32(n, 0.0f);
    struct rk_tensor X = T1(xf, RK_DTYPE_F32, n), D = T1(Rf, RK_DTYPE_F32, n), DX = T1(dx, RK_DTYPE_F32, n);
    struct rk_op_call call = { .op = RK_OP_GELU_BWD, .dst = &DX, .src = { &D, &X } };
    run_op(&call);
    fd_check(gelu_loss, &c, c.x, n, dx, 0.0f, "GELU_BWD");
    call.dst = &D; /* in place over dout */
    run_op(&call);
    for (int64_t i = 0; i < n; i++) cr_assert(Rf[i] == dx[i], "GELU_BWD in place differs at %lld", (long long) i);
    free(c.x); free(c.R); free(xf); free(Rf); free(dx);
}

/* ------------------------------------------------------------------------------------------------
 * LAYERNORM_BWD */

struct ln_ctx { int64_t N, C; double eps; double *x, *r, *w, *b, *R; };

static double ln_loss(const void * vc) {
    const struct ln_ctx * c = vc;
    double                L = 0.0;
    for (int64_t n = 0; n < c->N; n++) {
        double mu = 0.0, var = 0.0;
        for (int64_t k = 0; k < c->C; k++) mu += c->x[n * c->C + k] + (c->r ? c->r[n * c->C + k] : 0.0);
        mu /= (double) c->C;
        for (int64_t k = 0; k < c->C; k++) var += pow(c->x[n * c->C + k] + (c->r ? c->r[n * c->C + k] : 0.0) - mu, 2);
        var /= (double) c->C;
        for (int64_t k = 0; k < c->C; k++) {
            const double s = c->x[n * c->C + k] + (c->r ? c->r[n * c->C + k] : 0.0);
            L += ((s - mu) / sqrt(var + c->eps) * c->w[k] + c->b[k]) * c->R[n * c->C + k];
        }
    }
    return L;
}

static void ln_case(bool residual) {
    const int64_t N = 4, C = 9;
    struct ln_ctx c = { N, C, 1e-5, drand_buf(N * C, 1), residual ? drand_buf(N * C, 1) : NULL, drand_buf(C, 1),
                        drand_buf(C, 1), drand_buf(N * C, 1) };
    float * xf = to_f32(c.x, N * C), * rf = residual ? to_f32(c.r, N * C) : NULL, * wf = to_f32(c.w, C);
    float * Rf = to_f32(c.R, N * C), * dx = fill_f32(N * C, 0.0f), * dw = fill_f32(C, 0.1f), * db = fill_f32(C, 0.1f);
    struct rk_tensor X = T2(xf, RK_DTYPE_F32, N, C), Rs = T2(rf, RK_DTYPE_F32, N, C), W = T1(wf, RK_DTYPE_F32, C);
    struct rk_tensor D = T2(Rf, RK_DTYPE_F32, N, C), DX = T2(dx, RK_DTYPE_F32, N, C);
    struct rk_tensor DW = T1(dw, RK_DTYPE_F32, C), DB = T1(db, RK_DTYPE_F32, C);
    struct rk_op_call call = { .op = RK_OP_LAYERNORM_BWD, .dst = &DX,
                               .src = { &D, &X, &W, residual ? &Rs : NULL, &DW, &DB }, .p.layernorm = { .eps = 1e-5f } };
    run_op(&call);
    const char * tag = residual ? "LAYERNORM_BWD(residual)" : "LAYERNORM_BWD";
    char what[96];
    snprintf(what, sizeof(what), "%s dx", tag);
    fd_check(ln_loss, &c, c.x, N * C, dx, 0.0f, what);
    if (residual) {
        snprintf(what, sizeof(what), "%s dresidual (= dx)", tag);
        fd_check(ln_loss, &c, c.r, N * C, dx, 0.0f, what);
    }
    snprintf(what, sizeof(what), "%s dw (accumulated onto 0.1)", tag);
    fd_check(ln_loss, &c, c.w, C, dw, 0.1f, what);
    snprintf(what, sizeof(what), "%s db (accumulated onto 0.1)", tag);
    fd_check(ln_loss, &c, c.b, C, db, 0.1f, what);
    /* dx in place over dout gives the same values */
    call.dst    = &D;
    call.src[4] = call.src[5] = NULL;
    run_op(&call);
    for (int64_t i = 0; i < N * C; i++) cr_assert(Rf[i] == dx[i], "%s in place differs at %lld", tag, (long long) i);
    free(c.x); free(c.r); free(c.w); free(c.b); free(c.R); free(xf); free(rf); free(wf); free(Rf); free(dx); free(dw);
    free(db);
}

Test(grad, layernorm) {
    ln_case(false);
    ln_case(true);
}

/* ------------------------------------------------------------------------------------------------
 * SOFTMAX_BWD */

struct sm_ctx { int64_t N, C; double scale; double *x, *R; };

static double sm_loss(const void * vc) {
    const struct sm_ctx * c = vc;
    double                L = 0.0;
    for (int64_t n = 0; n < c->N; n++) {
        double mx = -INFINITY, s = 0.0;
        for (int64_t k = 0; k < c->C; k++) mx = fmax(mx, c->scale * c->x[n * c->C + k]);
        for (int64_t k = 0; k < c->C; k++) s += exp(c->scale * c->x[n * c->C + k] - mx);
        for (int64_t k = 0; k < c->C; k++) L += exp(c->scale * c->x[n * c->C + k] - mx) / s * c->R[n * c->C + k];
    }
    return L;
}

Test(grad, softmax) {
    const int64_t N = 3, C = 11;
    struct sm_ctx c = { N, C, 0.7, drand_buf(N * C, 3), drand_buf(N * C, 1) };
    float * xf = to_f32(c.x, N * C), * Rf = to_f32(c.R, N * C), * y = fill_f32(N * C, 0), * dx = fill_f32(N * C, 0);
    struct rk_tensor X = T2(xf, RK_DTYPE_F32, N, C), D = T2(Rf, RK_DTYPE_F32, N, C);
    struct rk_tensor Y = T2(y, RK_DTYPE_F32, N, C), DX = T2(dx, RK_DTYPE_F32, N, C);
    struct rk_op_call fwd = { .op = RK_OP_SOFTMAX, .dst = &Y, .src = { &X }, .p.softmax = { .scale = 0.7f } };
    run_op(&fwd);
    struct rk_op_call call = { .op = RK_OP_SOFTMAX_BWD, .dst = &DX, .src = { &D, &Y }, .p.softmax = { .scale = 0.7f } };
    run_op(&call);
    fd_check(sm_loss, &c, c.x, N * C, dx, 0.0f, "SOFTMAX_BWD");
    free(c.x); free(c.R); free(xf); free(Rf); free(y); free(dx);
}

/* ------------------------------------------------------------------------------------------------
 * ATTN_BWD */

struct at_ctx {
    int64_t B, NH, NKV, Tq, Tk, HS;
    struct rk_attn_params p;
    const int32_t *       mask;
    double *q, *k, *v, *R;
};

static double at_loss(const void * vc) {
    const struct at_ctx * c = vc;
    const int64_t         g = c->NH / c->NKV;
    double                L = 0.0;
    double *              s = malloc(sizeof(double) * (size_t) c->Tk);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->NH; h++)
            for (int64_t i = 0; i < c->Tq; i++) {
                const double * qi   = c->q + ((b * c->NH + h) * c->Tq + i) * c->HS;
                const int64_t  qpos = c->p.q_offset + i;
                double         mx   = -INFINITY;
                for (int64_t j = 0; j < c->Tk; j++) {
                    bool ok = !c->mask || c->mask[b * c->Tk + j];
                    if (c->p.causal && j > qpos) ok = false;
                    if (c->p.window > 0 && j <= qpos - c->p.window) ok = false;
                    s[j] = -INFINITY;
                    if (!ok) continue;
                    const double * kj = c->k + ((b * c->NKV + h / g) * c->Tk + j) * c->HS;
                    double         d  = 0.0;
                    for (int64_t e = 0; e < c->HS; e++) d += qi[e] * kj[e];
                    s[j] = d * c->p.scale;
                    mx   = fmax(mx, s[j]);
                }
                if (mx == -INFINITY) continue; /* output row is zero */
                double sum = 0.0;
                for (int64_t j = 0; j < c->Tk; j++) sum += s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                const double * Ri = c->R + ((b * c->NH + h) * c->Tq + i) * c->HS;
                for (int64_t j = 0; j < c->Tk; j++) {
                    if (s[j] == -INFINITY) continue;
                    const double   pj = exp(s[j] - mx) / sum;
                    const double * vj = c->v + ((b * c->NKV + h / g) * c->Tk + j) * c->HS;
                    for (int64_t e = 0; e < c->HS; e++) L += pj * vj[e] * Ri[e];
                }
            }
    free(s);
    return L;
}

static void attn_case(int64_t B, int64_t NH, int64_t NKV, int64_t Tq, int64_t Tk, int64_t HS, bool causal,
                      int64_t window, int64_t q_offset, bool with_mask) {
    const int64_t nq = B * NH * Tq * HS, nk = B * NKV * Tk * HS;
    int32_t *     mask = NULL;
    if (with_mask) { /* batch 0: the last two keys padded; batch 1: fully padded */
        mask = malloc(sizeof(int32_t) * (size_t) (B * Tk));
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < Tk; j++) mask[b * Tk + j] = b == 1 ? 0 : j < Tk - 2;
    }
    struct at_ctx c = { B, NH, NKV, Tq, Tk, HS,
                        { .scale = 1.0f / sqrtf((float) HS), .causal = causal, .window = window, .q_offset = q_offset },
                        mask, drand_buf(nq, 1.5), drand_buf(nk, 1.5), drand_buf(nk, 1), drand_buf(nq, 1) };
    float * qf = to_f32(c.q, nq), * kf = to_f32(c.k, nk), * vf = to_f32(c.v, nk), * Rf = to_f32(c.R, nq);
    float * o = fill_f32(nq, 0), * lse = fill_f32(B * NH * Tq, 0);
    float * dq = fill_f32(nq, 9), * dk = fill_f32(nk, 9), * dv = fill_f32(nk, 9); /* overwritten, not accumulated */
    struct rk_tensor Q = T4(qf, B, NH, Tq, HS), K = T4(kf, B, NKV, Tk, HS), V = T4(vf, B, NKV, Tk, HS);
    struct rk_tensor O = T4(o, B, NH, Tq, HS), D = T4(Rf, B, NH, Tq, HS), LSE = T3(lse, B, NH, Tq);
    struct rk_tensor DQ = T4(dq, B, NH, Tq, HS), DK = T4(dk, B, NKV, Tk, HS), DV = T4(dv, B, NKV, Tk, HS);
    struct rk_tensor M = T2(mask, RK_DTYPE_I32, B, Tk);
    struct rk_op_call fwd = { .op = RK_OP_ATTN_FWD, .dst = &O, .src = { &Q, &K, &V, mask ? &M : NULL, &LSE },
                              .p.attn = c.p };
    run_op(&fwd);
    struct rk_op_call call = { .op = RK_OP_ATTN_BWD, .dst = &DQ, .src = { &Q, &K, &V, &O, &D, &LSE },
                               .p.attn_bwd = { .attn = c.p, .mask = mask ? &M : NULL, .dk = &DK, .dv = &DV } };
    run_op(&call);
    char what[160];
    const int n = snprintf(what, sizeof(what), "ATTN_BWD(B=%lld,NH=%lld,NKV=%lld,Tq=%lld,Tk=%lld,HS=%lld,causal=%d,"
                           "window=%lld,q_offset=%lld,mask=%d)", (long long) B, (long long) NH, (long long) NKV,
                           (long long) Tq, (long long) Tk, (long long) HS, causal, (long long) window,
                           (long long) q_offset, with_mask);
    char * tail = what + n;
    snprintf(tail, sizeof(what) - (size_t) n, " dq");
    fd_check(at_loss, &c, c.q, nq, dq, 0.0f, what);
    snprintf(tail, sizeof(what) - (size_t) n, " dk");
    fd_check(at_loss, &c, c.k, nk, dk, 0.0f, what);
    snprintf(tail, sizeof(what) - (size_t) n, " dv");
    fd_check(at_loss, &c, c.v, nk, dv, 0.0f, what);
    if (with_mask) { /* the fully padded batch: exactly zero, never NaN */
        for (int64_t i = 0; i < NH * Tq * HS; i++) cr_assert(dq[NH * Tq * HS + i] == 0.0f, "%s: padded dq", what);
        for (int64_t i = 0; i < NKV * Tk * HS; i++)
            cr_assert(dk[NKV * Tk * HS + i] == 0.0f && dv[NKV * Tk * HS + i] == 0.0f, "%s: padded dk/dv", what);
    }
    free(mask); free(c.q); free(c.k); free(c.v); free(c.R); free(qf); free(kf); free(vf); free(Rf); free(o);
    free(lse); free(dq); free(dk); free(dv);
}

Test(grad, attention) {
    attn_case(2, 2, 2, 5, 5, 4, false, 0, 0, false);
    attn_case(2, 2, 2, 6, 6, 4, true, 0, 0, false);
    attn_case(2, 2, 2, 5, 5, 4, false, 0, 0, true);  /* padding, batch 1 fully padded */
    attn_case(2, 2, 2, 6, 6, 8, true, 0, 0, true);
    attn_case(1, 4, 2, 7, 7, 4, true, 0, 0, false);  /* GQA 4/2 */
    attn_case(2, 4, 2, 6, 6, 4, false, 0, 0, true);  /* GQA 4/2 with padding */
    attn_case(1, 2, 1, 8, 8, 4, true, 3, 0, false);  /* sliding window */
    attn_case(1, 4, 2, 3, 7, 4, true, 2, 4, false);  /* KV-cache style: query offset 4, window 2 */
}

/* ------------------------------------------------------------------------------------------------
 * EMBED_BWD */

struct em_ctx { int64_t B, T, C, pos_offset; const int32_t *ids, *tt; double *wte, *wpe, *wtt, *R; };

static double em_loss(const void * vc) {
    const struct em_ctx * c = vc;
    double                L = 0.0;
    for (int64_t i = 0; i < c->B * c->T; i++)
        for (int64_t k = 0; k < c->C; k++) {
            const double e = c->wte[c->ids[i] * c->C + k] + c->wpe[(c->pos_offset + i % c->T) * c->C + k] +
                             c->wtt[c->tt[i] * c->C + k];
            L += e * c->R[i * c->C + k];
        }
    return L;
}

Test(grad, embed) {
    const int64_t B = 2, T = 4, C = 5, V = 6, P = 8, NTT = 2, pos_offset = 2;
    const int32_t ids[8] = { 3, 1, 3, 3, 0, 5, 1, 3 }; /* repeated ids within and across rows */
    const int32_t tt[8]  = { 0, 0, 1, 1, 1, 0, 1, 0 };
    struct em_ctx c = { B, T, C, pos_offset, ids, tt, drand_buf(V * C, 1), drand_buf(P * C, 1), drand_buf(NTT * C, 1),
                        drand_buf(B * T * C, 1) };
    float * Rf = to_f32(c.R, B * T * C);
    float * de = fill_f32(V * C, 1.0f), * dp = fill_f32(P * C, 1.0f), * dt = fill_f32(NTT * C, 1.0f);
    struct rk_tensor D = T3(Rf, B, T, C), I = T2((void *) ids, RK_DTYPE_I32, B, T), TT = T2((void *) tt, RK_DTYPE_I32, B, T);
    struct rk_tensor DE = T2(de, RK_DTYPE_F32, V, C), DP = T2(dp, RK_DTYPE_F32, P, C), DT = T2(dt, RK_DTYPE_F32, NTT, C);
    struct rk_op_call call = { .op = RK_OP_EMBED_BWD, .dst = &DE, .src = { &D, &I, &TT, &DP, &DT },
                               .p.embed = { .pos_offset = pos_offset } };
    run_op(&call);
    fd_check(em_loss, &c, c.wte, V * C, de, 1.0f, "EMBED_BWD dwte (accumulated onto 1)");
    fd_check(em_loss, &c, c.wpe, P * C, dp, 1.0f, "EMBED_BWD dwpe");
    fd_check(em_loss, &c, c.wtt, NTT * C, dt, 1.0f, "EMBED_BWD dwtt");
    /* an out-of-range id is an error, and nothing is written */
    const int32_t bad[8] = { 0, 1, 2, 6, 0, 0, 0, 0 };
    struct rk_tensor Ib = T2((void *) bad, RK_DTYPE_I32, B, T);
    float            before = de[0];
    call.src[1]             = &Ib;
    cr_assert(rk_op(g_be, &call) == RK_STATUS_ARG);
    cr_assert(de[0] == before);
    free(c.wte); free(c.wpe); free(c.wtt); free(c.R); free(Rf); free(de); free(dp); free(dt);
}

/* ------------------------------------------------------------------------------------------------
 * POOL_BWD */

struct pl_ctx { int64_t B, T, C; enum rk_pool_mode mode; const int32_t * mask; double *x, *R; };

static double pl_loss(const void * vc) {
    const struct pl_ctx * c = vc;
    double                L = 0.0;
    for (int64_t b = 0; b < c->B; b++) {
        int64_t n = 0, last = -1;
        for (int64_t t = 0; t < c->T; t++)
            if (c->mask[b * c->T + t]) { n++; last = t; }
        if (!n) continue;
        for (int64_t k = 0; k < c->C; k++) {
            double v = 0.0;
            const double * xb = c->x + b * c->T * c->C;
            switch (c->mode) {
                case RK_POOL_CLS: v = xb[k]; break;
                case RK_POOL_LAST: v = xb[last * c->C + k]; break;
                case RK_POOL_MEAN:
                    for (int64_t t = 0; t < c->T; t++) if (c->mask[b * c->T + t]) v += xb[t * c->C + k];
                    v /= (double) n;
                    break;
                default:
                    v = -INFINITY;
                    for (int64_t t = 0; t < c->T; t++) if (c->mask[b * c->T + t]) v = fmax(v, xb[t * c->C + k]);
            }
            L += v * c->R[b * c->C + k];
        }
    }
    return L;
}

Test(grad, pool) {
    const int64_t B = 3, T = 5, C = 4;
    const int32_t mask[15] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 }; /* row 2 fully padded */
    static const char * names[RK_POOL_COUNT] = { "CLS", "MEAN", "MAX", "LAST" };
    for (int mode = 0; mode < RK_POOL_COUNT; mode++) {
        struct pl_ctx c = { B, T, C, (enum rk_pool_mode) mode, mask, drand_buf(B * T * C, 1), drand_buf(B * C, 1) };
        float * xf = to_f32(c.x, B * T * C), * Rf = to_f32(c.R, B * C), * dx = fill_f32(B * T * C, 9.0f);
        struct rk_tensor X = T3(xf, B, T, C), D = T2(Rf, RK_DTYPE_F32, B, C), DX = T3(dx, B, T, C);
        struct rk_tensor M = T2((void *) mask, RK_DTYPE_I32, B, T);
        struct rk_op_call call = { .op = RK_OP_POOL_BWD, .dst = &DX, .src = { &D, &X, &M },
                                   .p.pool = { .mode = (enum rk_pool_mode) mode } };
        run_op(&call);
        char what[64];
        snprintf(what, sizeof(what), "POOL_BWD(%s)", names[mode]);
        fd_check(pl_loss, &c, c.x, B * T * C, dx, 0.0f, what);
        free(c.x); free(c.R); free(xf); free(Rf); free(dx);
    }
    /* MAX ties: the whole gradient goes to the first valid token holding the maximum */
    float x[2 * 3 * 1] = { 0.5f, 2.0f, 2.0f, 1.0f, 1.0f, 1.0f }, g[2] = { 3.0f, 4.0f }, dx[6];
    const int32_t mk[6] = { 1, 1, 1, 0, 1, 1 };
    struct rk_tensor X = T3(x, 2, 3, 1), D = T2(g, RK_DTYPE_F32, 2, 1), DX = T3(dx, 2, 3, 1);
    struct rk_tensor M = T2((void *) mk, RK_DTYPE_I32, 2, 3);
    struct rk_op_call call = { .op = RK_OP_POOL_BWD, .dst = &DX, .src = { &D, &X, &M }, .p.pool = { .mode = RK_POOL_MAX } };
    run_op(&call);
    const float want[6] = { 0, 3, 0, 0, 4, 0 };
    for (int i = 0; i < 6; i++) cr_assert(dx[i] == want[i], "POOL_BWD(MAX) tie: dx[%d] = %g, want %g", i, dx[i], want[i]);
}

/* ------------------------------------------------------------------------------------------------
 * BCE_LOGITS */

struct bce_ctx { int64_t N, L; double *x, *y, *pw; };

static double bce_loss(const void * vc) {
    const struct bce_ctx * c = vc;
    double                 s = 0.0;
    for (int64_t i = 0; i < c->N * c->L; i++) {
        const double x = c->x[i], y = c->y[i], pw = c->pw ? c->pw[i % c->L] : 1.0;
        /* -[pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], written with log1p in double */
        const double log_sig  = x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
        const double log_1msg = x >= 0 ? -x - log1p(exp(-x)) : -log1p(exp(x));
        s -= pw * y * log_sig + (1.0 - y) * log_1msg;
    }
    return s / (double) (c->N * c->L);
}

static void bce_case(bool with_pw, double scale, bool fd) {
    const int64_t N = 4, L = 5;
    struct bce_ctx c = { N, L, drand_buf(N * L, scale), drand_buf(N * L, 1), NULL };
    for (int64_t i = 0; i < N * L; i++) c.y[i] = c.y[i] > 0 ? 1.0 : 0.0;
    if (scale > 10) { /* saturate: every logit at +-scale, both label signs */
        for (int64_t i = 0; i < N * L; i++) c.x[i] = (i % 2 ? 1 : -1) * scale;
    }
    if (with_pw) {
        c.pw = drand_buf(L, 1);
        for (int64_t l = 0; l < L; l++) c.pw[l] = (double) (float) (1.75 + 1.25 * c.pw[l]); /* in [0.5, 3] */
    }
    float * xf = to_f32(c.x, N * L), * yf = to_f32(c.y, N * L), * pwf = with_pw ? to_f32(c.pw, L) : NULL;
    float * dl = fill_f32(N * L, 9.0f), loss = -1.0f;
    struct rk_tensor X = T2(xf, RK_DTYPE_F32, N, L), Y = T2(yf, RK_DTYPE_F32, N, L), PW = T1(pwf, RK_DTYPE_F32, L);
    struct rk_tensor DL = T2(dl, RK_DTYPE_F32, N, L), LO = T1(&loss, RK_DTYPE_F32, 1);
    struct rk_op_call call = { .op = RK_OP_BCE_LOGITS, .dst = &LO, .src = { &X, &Y, with_pw ? &PW : NULL, &DL } };
    run_op(&call);
    char what[96];
    snprintf(what, sizeof(what), "BCE_LOGITS(pos_weight=%d,|x|<=%g)", with_pw, scale);
    const double ref = bce_loss(&c);
    cr_assert(isfinite(loss) && fabs(loss - ref) <= 1e-6 + 1e-5 * fabs(ref), "%s: loss %.8g, want %.8g", what, loss, ref);
    for (int64_t i = 0; i < N * L; i++) cr_assert(isfinite(dl[i]), "%s: dlogits[%lld] not finite", what, (long long) i);
    if (fd) {
        fd_check(bce_loss, &c, c.x, N * L, dl, 0.0f, what);
    } else { /* saturated: compare with the closed form pw y (sigmoid - 1) + (1 - y) sigmoid */
        for (int64_t i = 0; i < N * L; i++) {
            const double x = c.x[i], sg = 1.0 / (1.0 + exp(-x)), pw = c.pw ? c.pw[i % L] : 1.0;
            const double g = (pw * c.y[i] * (sg - 1.0) + (1.0 - c.y[i]) * sg) / (double) (N * L);
            cr_assert(fabs(dl[i] - g) <= 1e-7 + 1e-5 * fabs(g), "%s: dlogits[%lld] %g, want %g", what, (long long) i,
                      dl[i], g);
        }
    }
    free(c.x); free(c.y); free(c.pw); free(xf); free(yf); free(pwf); free(dl);
}

Test(grad, bce_logits) {
    bce_case(false, 3.0, true);
    bce_case(true, 3.0, true);
    bce_case(false, 30.0, false);
    bce_case(true, 30.0, false);
    bce_case(true, 1e4, false);
}

/* ------------------------------------------------------------------------------------------------
 * SOFTMAX_XENT */

struct xe_ctx { int64_t N, V; const int32_t * tg; double * x; };

static double xe_loss(const void * vc) {
    const struct xe_ctx * c = vc;
    double                s = 0.0;
    int64_t               n = 0;
    for (int64_t r = 0; r < c->N; r++) {
        if (c->tg[r] == RK_XENT_IGNORE_INDEX) continue;
        const double * x  = c->x + r * c->V;
        double         mx = -INFINITY, z = 0.0;
        for (int64_t k = 0; k < c->V; k++) mx = fmax(mx, x[k]);
        for (int64_t k = 0; k < c->V; k++) z += exp(x[k] - mx);
        s += mx + log(z) - x[c->tg[r]];
        n++;
    }
    return n ? s / (double) n : 0.0;
}

Test(grad, softmax_xent) {
    const int64_t N = 6, V = 7;
    const int32_t tg[6] = { 3, RK_XENT_IGNORE_INDEX, 0, 6, RK_XENT_IGNORE_INDEX, 3 };
    struct xe_ctx c = { N, V, tg, drand_buf(N * V, 4) };
    float * xf = to_f32(c.x, N * V), * dl = fill_f32(N * V, 9.0f), loss = -1.0f;
    struct rk_tensor X = T2(xf, RK_DTYPE_F32, N, V), DL = T2(dl, RK_DTYPE_F32, N, V), LO = T1(&loss, RK_DTYPE_F32, 1);
    struct rk_tensor TG = T1((void *) tg, RK_DTYPE_I32, N);
    struct rk_op_call call = { .op = RK_OP_SOFTMAX_XENT, .dst = &LO, .src = { &X, &TG, &DL } };
    run_op(&call);
    const double ref = xe_loss(&c);
    cr_assert(fabs(loss - ref) <= 1e-6 + 1e-5 * fabs(ref), "SOFTMAX_XENT: loss %.8g, want %.8g", loss, ref);
    fd_check(xe_loss, &c, c.x, N * V, dl, 0.0f, "SOFTMAX_XENT dlogits");
    /* in place over the logits: the same gradient */
    call.src[2] = &X;
    run_op(&call);
    for (int64_t i = 0; i < N * V; i++) cr_assert(xf[i] == dl[i], "SOFTMAX_XENT in place differs at %lld", (long long) i);
    /* every row ignored: loss 0 and zero gradient (torch gives NaN) */
    const int32_t none[6] = { -100, -100, -100, -100, -100, -100 };
    struct rk_tensor TN   = T1((void *) none, RK_DTYPE_I32, N);
    call.src[1]           = &TN;
    call.src[2]           = &DL;
    run_op(&call);
    cr_assert(loss == 0.0f);
    for (int64_t i = 0; i < N * V; i++) cr_assert(dl[i] == 0.0f);
    /* a target outside [0, V) that is not the ignore index is an error */
    const int32_t bad[6] = { 0, 7, 0, 0, 0, 0 };
    struct rk_tensor TB  = T1((void *) bad, RK_DTYPE_I32, N);
    call.src[1]          = &TB;
    cr_assert(rk_op(g_be, &call) == RK_STATUS_ARG);
    free(c.x); free(xf); free(dl);
}

/* ------------------------------------------------------------------------------------------------
 * DROPOUT */

Test(grad, philox_known_answer) {
    /* Random123 known-answer vector for philox4x32_10: counter 0, key 0 */
    const uint32_t ctr[4] = { 0, 0, 0, 0 }, key[2] = { 0, 0 };
    const uint32_t want[4] = { 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u };
    uint32_t       out[4];
    rk_philox4x32_10(ctr, key, out);
    for (int i = 0; i < 4; i++) cr_assert(out[i] == want[i], "philox word %d: %08x, want %08x", i, out[i], want[i]);
}

Test(grad, dropout) {
    const int64_t n = 1 << 20;
    const float   p = 0.1f;
    float * x = fill_f32(n, 0), * y1 = fill_f32(n, 0), * y2 = fill_f32(n, 0), * y3 = fill_f32(n, 0);
    for (int64_t i = 0; i < n; i++) x[i] = (float) (0.5 + 0.5 * fabs(urand())); /* nonzero: a zero output is a drop */
    struct rk_tensor X = T1(x, RK_DTYPE_F32, n), Y1 = T1(y1, RK_DTYPE_F32, n), Y2 = T1(y2, RK_DTYPE_F32, n);
    struct rk_tensor Y3 = T1(y3, RK_DTYPE_F32, n);
    struct rk_op_call call = { .op = RK_OP_DROPOUT, .dst = &Y1, .src = { &X },
                               .p.dropout = { .p = p, .seed = 1234567, .offset = 42 } };
    run_op(&call);
    call.dst = &Y2;
    run_op(&call); /* same (seed, offset): the same mask */
    call.dst              = &Y3;
    call.p.dropout.offset = 43;
    run_op(&call);
    const float scale = 1.0f / (1.0f - p);
    int64_t     kept = 0, same3 = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(y1[i] == y2[i], "DROPOUT: same seed/offset differ at %lld", (long long) i);
        cr_assert(y1[i] == 0.0f || y1[i] == x[i] * scale, "DROPOUT: y[%lld] = %g", (long long) i, y1[i]);
        cr_assert((y1[i] != 0.0f) == (rk_dropout_uniform(1234567, 42, (uint64_t) i) >= p));
        kept += y1[i] != 0.0f;
        same3 += (y1[i] != 0.0f) == (y3[i] != 0.0f);
    }
    const double frac = (double) kept / (double) n; /* binomial sd sqrt(p (1 - p) / n) = 3e-4 */
    cr_log_info("DROPOUT p=%g: kept %.5f", p, frac);
    cr_assert(fabs(frac - (1.0 - p)) < 3e-3, "DROPOUT: kept fraction %g, want %g", frac, 1.0 - p);
    /* another offset: an independent mask (agreement p^2 + (1-p)^2 = 0.82, not 1) */
    cr_assert(fabs((double) same3 / (double) n - 0.82) < 5e-3, "DROPOUT: offsets 42 and 43 agree on %lld", (long long) same3);
    /* backward: the same op on dout with the same params is d(sum(y * R))/dx = R * keep * scale */
    float * R = fill_f32(n, 0), * dx = fill_f32(n, 0);
    for (int64_t i = 0; i < n; i++) R[i] = (float) urand();
    struct rk_tensor RT = T1(R, RK_DTYPE_F32, n), DX = T1(dx, RK_DTYPE_F32, n);
    call = (struct rk_op_call) { .op = RK_OP_DROPOUT, .dst = &DX, .src = { &RT },
                                 .p.dropout = { .p = p, .seed = 1234567, .offset = 42 } };
    run_op(&call);
    for (int64_t i = 0; i < n; i++)
        cr_assert(dx[i] == (y1[i] != 0.0f ? R[i] * scale : 0.0f), "DROPOUT bwd at %lld", (long long) i);
    /* p = 0 copies, p = 1 zeros */
    call.src[0] = &X;
    call.dst = &Y1;
    call.p.dropout.p = 0.0f;
    run_op(&call);
    for (int64_t i = 0; i < n; i++) cr_assert(y1[i] == x[i]);
    call.p.dropout.p = 1.0f;
    run_op(&call);
    for (int64_t i = 0; i < n; i++) cr_assert(y1[i] == 0.0f);
    free(x); free(y1); free(y2); free(y3); free(R); free(dx);
}
