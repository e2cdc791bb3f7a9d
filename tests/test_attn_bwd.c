/*
 * test_attn_bwd.c: parity of the CUDA attention backward (RK_OP_ATTN_BWD, kernels/attn_bwd.cu) against the CPU
 * reference rk_cpu_attn_bwd, with the harness of tests/ops_harness.h (STYLE.md 6).
 *
 * For each case of the table:
 *   - q, k, v and dout are uniform in [-1, 1] from a seed derived from the run seed (printed; RK_TEST_SEED
 *     overrides) and the case string, rounded to the case dtype;
 *   - the CPU forward rk_cpu_attn_fwd gives o and lse on those values; o is rounded to the dtype (what a 16-bit
 *     forward hands the backward) and the CPU backward rk_cpu_attn_bwd runs on exactly the rounded values, with the
 *     same f32 lse the device gets;
 *   - every device buffer has redzones and a NaN prefill (ops_harness.h); dq, dk and dv must each pass a normalized-MSE
 *     bound and |got - ref| <= atol + rtol |ref| with atol relative to the largest |ref| of that output (the
 *     gradients are small: about 1e-2 for these inputs);
 *   - the case runs through the backend (rk_op, variant auto) and then through every numbered kernel variant of
 *     rk_cuda_attn_bwd_variant on the same inputs, each tallied as "<case>[variant=<name>]".
 * Cases cover B = 1..3 (row 2 of a right-padded mask is all padding: lse = -inf, dq = 0, and its keys get
 * dk = dv = 0), T not a multiple of the tiles (77, 130), T = 1, HS 32/64/80/128, NH = NKV and grouped-query heads
 * (NH 8 / NKV 2), causal, sliding windows, q_offset (decode and chunked prefill), random padding holes, fused-QKV
 * strided views (q, k, v and dq, dk, dv as views into (B, T, (NH + 2 NKV) HS) buffers; o and dout (B, T, C)),
 * padded rows and rows that are not 16-byte aligned (the plain kernels take those), and the forced sm_75 path.
 * RK_TEST_FILTER selects cases by substring; RK_TEST_BACKEND=cpu runs the table against the CPU backend (the f32
 * cases; a self-test of this file without a GPU).
 *
 *     build/tests/test_attn_bwd --verbose
 *     RK_TEST_FILTER='HS=128|variant=plain' build/tests/test_attn_bwd --filter 'cuda_ops/attn_bwd'
 */
#include "ops_harness.h"

#include "kernels/attn.h"
#ifdef RK_HAVE_CUDA
#include "kernels/attn_cuda.h"
#endif

/* dense rows; rows padded by 16 elements (still 16-byte aligned); rows 2 bytes off 16-byte alignment (the tensor-core
 * variant reports unsupported, the automatic choice takes the plain kernels); fused QKV views */
enum { LAYOUT_DENSE = 0, LAYOUT_PADDED, LAYOUT_UNALIGNED, LAYOUT_FUSED };
static const char * const layout_names[] = { "dense", "padded", "unaligned", "fused_qkv" };

struct bwd_case {
    enum rk_dtype dt;
    int64_t       B, Tq, Tk, NH, NKV, HS;
    bool          causal;
    int64_t       window, q_offset;
    int           mask;      /* MASK_NONE / MASK_RIGHT (row 2 fully padded when B >= 3) / MASK_HOLES */
    int           layout;    /* LAYOUT_*; fused needs Tq == Tk */
    float         scale_mul; /* scale = scale_mul / sqrt(HS) */
    bool          sm75;      /* run on the forced sm_75 path (attn_bwd_sm75 test) */
};

#define BF RK_DTYPE_BF16
#define HF RK_DTYPE_F16
static const struct bwd_case bwd_cases[] = {
    /*  dt   B  Tq   Tk   NH NKV  HS  causal win qoff  mask        layout            scale sm75 */
    { BF, 2, 77, 77, 12, 12, 64, true, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, false },
    { BF, 1, 1, 1, 4, 4, 64, false, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, false },
    { BF, 3, 130, 130, 4, 4, 64, false, 0, 0, MASK_RIGHT, LAYOUT_PADDED, 1.0f, false },
    { BF, 3, 130, 130, 4, 4, 32, false, 0, 0, MASK_HOLES, LAYOUT_DENSE, 4.0f, false },
    { BF, 1, 130, 130, 4, 4, 80, true, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, false },
    { BF, 2, 130, 130, 4, 4, 128, false, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, false },
    { BF, 2, 77, 77, 8, 2, 64, true, 0, 0, MASK_RIGHT, LAYOUT_DENSE, 1.0f, false },
    { BF, 1, 200, 200, 8, 2, 128, true, 16, 0, MASK_NONE, LAYOUT_PADDED, 1.0f, false },
    { BF, 2, 77, 77, 12, 12, 64, false, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, false },
    { BF, 3, 1, 1, 4, 4, 64, false, 0, 0, MASK_RIGHT, LAYOUT_DENSE, 1.0f, false },   /* row 2: no key */
    { BF, 2, 1, 77, 4, 4, 64, true, 0, 76, MASK_RIGHT, LAYOUT_DENSE, 1.0f, false },  /* decode step */
    { BF, 1, 16, 200, 8, 2, 128, true, 16, 184, MASK_NONE, LAYOUT_DENSE, 1.0f, false }, /* chunk + window */
    { BF, 1, 77, 77, 4, 4, 32, true, 0, 0, MASK_NONE, LAYOUT_FUSED, 1.0f, false },
    { BF, 3, 77, 77, 8, 2, 80, false, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, false },   /* fused GQA, HS 80 */
    { BF, 2, 130, 130, 4, 4, 64, false, 37, 0, MASK_HOLES, LAYOUT_UNALIGNED, 1.0f, false },
    { BF, 2, 33, 130, 8, 2, 64, true, 0, 97, MASK_NONE, LAYOUT_PADDED, 1.0f, false },  /* chunked prefill */
    { BF, 1, 130, 77, 4, 4, 64, false, 0, 0, MASK_HOLES, LAYOUT_DENSE, 1.0f, false },  /* Tq > Tk */
    { BF, 3, 130, 130, 8, 2, 128, true, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, false },
    { BF, 4, 19, 19, 3, 3, 16, false, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, false },  /* the tiny BERT of the golden tests */
    { HF, 2, 77, 77, 12, 12, 64, true, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, false },
    { HF, 3, 130, 130, 4, 4, 64, false, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, false },
    { HF, 1, 200, 200, 8, 2, 128, true, 16, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, false },
    { HF, 3, 130, 130, 4, 4, 80, false, 0, 0, MASK_HOLES, LAYOUT_DENSE, 4.0f, false },
    { HF, 2, 77, 77, 4, 4, 32, true, 0, 0, MASK_NONE, LAYOUT_PADDED, 1.0f, false },
    { HF, 4, 19, 19, 3, 3, 16, false, 0, 0, MASK_HOLES, LAYOUT_FUSED, 1.0f, false },
    /* f32: the CUDA kernels take 16-bit inputs (these report skipped there); they check this file on the CPU */
    { RK_DTYPE_F32, 3, 77, 77, 8, 2, 64, true, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, false },
    { RK_DTYPE_F32, 2, 1, 77, 4, 4, 32, true, 16, 76, MASK_HOLES, LAYOUT_UNALIGNED, 1.0f, false },
    /* forced sm_75 path: f16 (fp16 m16n8k8), and bf16 (plain kernels) */
    { HF, 2, 77, 77, 4, 4, 64, true, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, true },
    { HF, 3, 130, 130, 4, 4, 64, false, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, true },
    { HF, 1, 130, 130, 8, 2, 128, true, 16, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, true },
    { HF, 3, 77, 77, 8, 2, 32, false, 0, 0, MASK_HOLES, LAYOUT_DENSE, 4.0f, true },
    { HF, 2, 1, 77, 4, 4, 64, true, 0, 76, MASK_RIGHT, LAYOUT_DENSE, 1.0f, true },
    { HF, 1, 130, 130, 4, 4, 80, false, 0, 0, MASK_NONE, LAYOUT_DENSE, 1.0f, true },
    { BF, 3, 77, 77, 4, 4, 64, true, 0, 0, MASK_RIGHT, LAYOUT_FUSED, 1.0f, true },
};
#undef BF
#undef HF

/* Host values of one case (logical (B, heads, T, HS) order) and the CPU references. */
struct bwd_host {
    float * q, * k, * v, * o, * dout, * lse;
    int32_t * mask;
    float * dq, * dk, * dv; /* references */
};

/* Device buffers and views: m[0] q (or the fused qkv), m[1] k, m[2] v, m[3] o, m[4] dout, m[5] lse, m[6] mask,
 * m[7] dq (or the fused dqkv), m[8] dk, m[9] dv. */
struct bwd_dev {
    struct dmem      m[10];
    struct rk_tensor q, k, v, o, dout, lse, mask, dq, dk, dv;
};

static void bwd_host_init(struct bwd_host * hst, const struct bwd_case * c, struct rng * r) {
    const int64_t B = c->B, Tq = c->Tq, Tk = c->Tk, NH = c->NH, NKV = c->NKV, HS = c->HS;
    const int64_t nq = B * NH * Tq * HS, nk = B * NKV * Tk * HS;
    hst->q    = rand_vec(r, c->dt, nq, 1.0f);
    hst->k    = rand_vec(r, c->dt, nk, 1.0f);
    hst->v    = rand_vec(r, c->dt, nk, 1.0f);
    hst->dout = rand_vec(r, c->dt, nq, 1.0f);
    hst->mask = rk_xmalloc((size_t) (B * Tk > 0 ? B * Tk : 1) * sizeof(int32_t));
    if (c->mask != MASK_NONE) fill_mask(hst->mask, B, Tk, c->mask, r);
    hst->o   = rk_xmalloc((size_t) (nq > 0 ? nq : 1) * sizeof(float));
    hst->lse = rk_xmalloc((size_t) (B * NH * Tq > 0 ? B * NH * Tq : 1) * sizeof(float));
    hst->dq  = rk_xmalloc((size_t) (nq > 0 ? nq : 1) * sizeof(float));
    hst->dk  = rk_xmalloc((size_t) (nk > 0 ? nk : 1) * sizeof(float));
    hst->dv  = rk_xmalloc((size_t) (nk > 0 ? nk : 1) * sizeof(float));

    const struct rk_attn_params p = { .scale = c->scale_mul / sqrtf((float) HS), .causal = c->causal,
                                      .window = c->window, .q_offset = c->q_offset };
    const int64_t qne[4] = { B, NH, Tq, HS }, kne[4] = { B, NKV, Tk, HS }, lne[3] = { B, NH, Tq };
    struct rk_tensor tq = host_t(hst->q, 4, qne), tk = host_t(hst->k, 4, kne), tv = host_t(hst->v, 4, kne);
    struct rk_tensor to = host_t(hst->o, 4, qne), tg = host_t(hst->dout, 4, qne), tl = host_t(hst->lse, 3, lne);
    struct rk_tensor tdq = host_t(hst->dq, 4, qne), tdk = host_t(hst->dk, 4, kne), tdv = host_t(hst->dv, 4, kne);
    struct rk_tensor tm  = rk_tensor_host(hst->mask, RK_DTYPE_I32, 2, (int64_t[]) { B, Tk });
    const struct rk_tensor * mk = c->mask != MASK_NONE ? &tm : NULL;
    rk_cpu_attn_fwd(&to, &tq, &tk, &tv, mk, &tl, &p);
    for (int64_t i = 0; i < nq; i++) hst->o[i] = round_to(c->dt, hst->o[i]); /* what a 16-bit forward returns */
    rk_cpu_attn_bwd(&tdq, &tdk, &tdv, &tq, &tk, &tv, &to, &tg, &tl, mk, &p);
}

static void bwd_host_free(struct bwd_host * hst) {
    free(hst->q);
    free(hst->k);
    free(hst->v);
    free(hst->o);
    free(hst->dout);
    free(hst->lse);
    free(hst->mask);
    free(hst->dq);
    free(hst->dk);
    free(hst->dv);
}

/* Allocates the device buffers of case c in its layout, writes the inputs into their images and marks the outputs. */
static void bwd_dev_init(struct bwd_dev * d, struct rk_backend * be, const struct bwd_case * c,
                         const struct bwd_host * hst) {
    const int64_t B = c->B, Tq = c->Tq, Tk = c->Tk, NH = c->NH, NKV = c->NKV, HS = c->HS;
    const int64_t es = (int64_t) rk_dtype_traits[c->dt].type_size;
    const int64_t qne[4] = { B, NH, Tq, HS }, kne[4] = { B, NKV, Tk, HS };
    memset(d, 0, sizeof(*d));
    if (c->layout == LAYOUT_FUSED) {
        cr_assert(Tq == Tk, "fused qkv needs Tq == Tk");
        const int64_t W = (NH + 2 * NKV) * HS, C = NH * HS; /* elements per token */
        const int64_t nbf[4] = { Tq * W * es, HS * es, W * es, es }, nbc[4] = { Tq * C * es, HS * es, C * es, es };
        const size_t  koff = (size_t) (NH * HS * es), voff = (size_t) ((NH + NKV) * HS * es);
        for (int i = 0; i < 2; i++) {
            struct dmem * m = &d->m[i == 0 ? 0 : 7];
            dmem_init(m, be, (size_t) (B * Tq * W * es));
            struct rk_tensor * tq = i == 0 ? &d->q : &d->dq, * tk = i == 0 ? &d->k : &d->dk, * tv = i == 0 ? &d->v : &d->dv;
            *tq = dmem_view(m, c->dt, 4, qne, nbf, 0, i == 0 ? "q" : "dq");
            *tk = dmem_view(m, c->dt, 4, kne, nbf, koff, i == 0 ? "k" : "dk");
            *tv = dmem_view(m, c->dt, 4, kne, nbf, voff, i == 0 ? "v" : "dv");
        }
        dmem_init(&d->m[3], be, (size_t) (B * Tq * C * es));
        dmem_init(&d->m[4], be, (size_t) (B * Tq * C * es));
        d->o    = dmem_view(&d->m[3], c->dt, 4, qne, nbc, 0, "o");
        d->dout = dmem_view(&d->m[4], c->dt, 4, qne, nbc, 0, "dout");
    } else {
        /* padded: 16 elements of row padding, the view 8 elements in (16-byte aligned rows); unaligned: 2, 1 in */
        const int64_t pad = c->layout == LAYOUT_PADDED ? 16 : c->layout == LAYOUT_UNALIGNED ? 2 : 0;
        d->q    = padded_tensor(&d->m[0], be, c->dt, 4, qne, pad, "q");
        d->k    = padded_tensor(&d->m[1], be, c->dt, 4, kne, pad, "k");
        d->v    = padded_tensor(&d->m[2], be, c->dt, 4, kne, pad, "v");
        d->o    = padded_tensor(&d->m[3], be, c->dt, 4, qne, pad, "o");
        d->dout = padded_tensor(&d->m[4], be, c->dt, 4, qne, pad, "dout");
        d->dq   = padded_tensor(&d->m[7], be, c->dt, 4, qne, pad, "dq");
        d->dk   = padded_tensor(&d->m[8], be, c->dt, 4, kne, pad, "dk");
        d->dv   = padded_tensor(&d->m[9], be, c->dt, 4, kne, pad, "dv");
    }
    /* lse strided on the padded layout (the CPU backend takes it dense only: no f32 case uses that layout) */
    d->lse = padded_tensor(&d->m[5], be, RK_DTYPE_F32, 3, (int64_t[]) { B, NH, Tq }, c->layout == LAYOUT_PADDED ? 3 : 0,
                           "lse");
    view_set(&d->m[0], &d->q, hst->q);
    view_set(c->layout == LAYOUT_FUSED ? &d->m[0] : &d->m[1], &d->k, hst->k);
    view_set(c->layout == LAYOUT_FUSED ? &d->m[0] : &d->m[2], &d->v, hst->v);
    view_set(&d->m[3], &d->o, hst->o);
    view_set(&d->m[4], &d->dout, hst->dout);
    view_set(&d->m[5], &d->lse, hst->lse);
    if (c->mask != MASK_NONE) {
        d->mask = padded_tensor(&d->m[6], be, RK_DTYPE_I32, 2, (int64_t[]) { B, Tk }, 0, "mask");
        view_set_i32(&d->m[6], &d->mask, hst->mask);
    }
    view_mark_output(&d->m[7], &d->dq);
    view_mark_output(c->layout == LAYOUT_FUSED ? &d->m[7] : &d->m[8], &d->dk);
    view_mark_output(c->layout == LAYOUT_FUSED ? &d->m[7] : &d->m[9], &d->dv);
    for (int i = 0; i < 7; i++) {
        if (d->m[i].dev) dmem_upload(&d->m[i]);
    }
}

/* Largest |x|, at least 1e-3: a reference that is (almost) all zero, such as dq with a single key (dS = 0 up to
 * rounding), gets an absolute bound of rel * 1e-3 instead of one that only an exact 0 passes. */
static double max_abs(const float * x, int64_t n) {
    double m = 1e-3;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double) x[i]));
    return m;
}

/* Compares dq, dk, dv of one run with the references; also the redzones and that the inputs are unchanged. */
static bool bwd_check(struct bwd_dev * d, const struct bwd_case * c, const struct bwd_host * hst, const char * cs) {
    /* P and dS go to the tensor cores as 16-bit values, and the outputs are 16-bit: errors relative to the output
       scale, 2^-8 (bf16) or 2^-10 (f16) at worst per element, far less on average */
    const bool bf = c->dt == RK_DTYPE_BF16;
    const double nmse = bf ? 5e-5 : c->dt == RK_DTYPE_F16 ? 4e-6 : 1e-9;
    const double rel  = bf ? 2e-2 : c->dt == RK_DTYPE_F16 ? 4e-3 : 1e-4;
    const struct {
        struct dmem *            m;
        const struct rk_tensor * t;
        const float *            ref;
        const char *             what;
    } outs[3] = {
        { &d->m[7], &d->dq, hst->dq, "dq" },
        { c->layout == LAYOUT_FUSED ? &d->m[7] : &d->m[8], &d->dk, hst->dk, "dk" },
        { c->layout == LAYOUT_FUSED ? &d->m[7] : &d->m[9], &d->dv, hst->dv, "dv" },
    };
    bool ok = true;
    for (int i = 0; i < 3; i++) {
        const int64_t n  = rk_tensor_nelements(outs[i].t);
        struct tol    tl = { nmse, rel * max_abs(outs[i].ref, n), rel };
        ok               = check_output(outs[i].m, outs[i].t, outs[i].ref, cs, outs[i].what, tl) && ok;
    }
    for (int i = 0; i < 7; i++) {
        if (d->m[i].dev) ok = check_unchanged(&d->m[i], cs, "input") && ok;
    }
    return ok;
}

/*
 * Runs one case through the backend (variant auto) and, with CUDA, through every numbered variant of
 * rk_cuda_attn_bwd_variant on the same inputs and references (STYLE.md 6: test every variant).
 */
static void run_bwd(struct rk_backend * be, const struct bwd_case * c, const char * cs0, struct tally * t) {
#ifdef RK_HAVE_CUDA
    const int n_variants = be->device == RK_DEVICE_CUDA ? RK_ATTN_BWD_N_VARIANTS : 1;
#define VARIANT_NAME(vi) ((vi) == 0 ? "auto" : rk_cuda_attn_bwd_variant_name(vi))
#else
    const int n_variants = 1;
#define VARIANT_NAME(vi) ((void) (vi), "auto")
#endif
    char cs[400];
    bool any = false;
    for (int vi = 0; vi < n_variants && !any; vi++) {
        snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, VARIANT_NAME(vi));
        any = case_selected(cs);
    }
    if (!any) return;

    struct rng      r = { run_seed() ^ fnv1a(cs0) };
    struct bwd_host hst;
    struct bwd_dev  d;
    bwd_host_init(&hst, c, &r);
    bwd_dev_init(&d, be, c, &hst);
    const struct rk_attn_params p = { .scale = c->scale_mul / sqrtf((float) c->HS), .causal = c->causal,
                                      .window = c->window, .q_offset = c->q_offset };
    const struct rk_tensor * mk = c->mask != MASK_NONE ? &d.mask : NULL;
#ifdef RK_HAVE_CUDA
    const size_t scratch_bytes = rk_cuda_attn_bwd_scratch_bytes(&d.q, &d.k);
    void *       scratch       = be->device == RK_DEVICE_CUDA ? be->alloc(be, scratch_bytes) : NULL;
    cr_assert(be->device != RK_DEVICE_CUDA || scratch != NULL, "scratch allocation of %zu bytes failed", scratch_bytes);
#endif

    for (int vi = 0; vi < n_variants; vi++) {
        snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, VARIANT_NAME(vi));
        if (!case_selected(cs)) continue;
        const double t0 = now_ms();
        for (int i = 7; i < 10; i++) {
            if (d.m[i].dev) dmem_upload(&d.m[i]); /* outputs back to NaN before every run */
        }
        int rc;
        if (vi == 0) {
            struct rk_op_call call = { .op = RK_OP_ATTN_BWD, .dst = &d.dq,
                                       .src = { &d.q, &d.k, &d.v, &d.o, &d.dout, &d.lse } };
            call.p.attn_bwd = (struct rk_attn_bwd_params) { .attn = p, .mask = mk, .dk = &d.dk, .dv = &d.dv };
            rc              = gpu_op(be, &call, cs);
        } else {
#ifdef RK_HAVE_CUDA
            const enum rk_status s = rk_cuda_attn_bwd_variant(&d.dq, &d.dk, &d.dv, &d.q, &d.k, &d.v, &d.o, &d.dout, &d.lse,
                                                              mk, &p, scratch, scratch_bytes, c->sm75, vi,
                                                              rk_backend_cuda_stream(be));
            cr_assert(be->synchronize(be) == RK_OK);
            if (s != RK_OK) fprintf(stderr, "    %s: %s: %s\n", cs, rk_status_name(s), rk_last_error());
            rc = s == RK_OK ? CASE_PASS : s == RK_STATUS_UNSUPPORTED ? CASE_SKIP : CASE_FAIL;
#else
            rc = CASE_SKIP;
#endif
        }
        if (rc == CASE_PASS) rc = bwd_check(&d, c, &hst, cs) ? CASE_PASS : CASE_FAIL;
        tally_add(t, cs, rc, t0);
    }
#undef VARIANT_NAME
#ifdef RK_HAVE_CUDA
    if (scratch) be->free(be, scratch);
#endif
    for (int i = 0; i < 10; i++) dmem_free(&d.m[i]);
    bwd_host_free(&hst);
}

static void bwd_test(bool sm75) {
    const char *        test = sm75 ? "ATTN_BWD (forced sm_75 path)" : "ATTN_BWD";
    struct rk_backend * be   = cuda_or_skip_path(test, sm75);
    struct tally t = { 0 };
    for (size_t i = 0; i < sizeof(bwd_cases) / sizeof(bwd_cases[0]); i++) {
        const struct bwd_case * c = &bwd_cases[i];
        if (c->sm75 != sm75) continue;
        char cs[320];
        snprintf(cs, sizeof(cs), "ATTN_BWD(dtype=%s,B=%lld,T=%lld,Tk=%lld,NH=%lld,NKV=%lld,HS=%lld,causal=%d,window=%lld,"
                 "q_offset=%lld,mask=%s,layout=%s,scale=%gx,sm75=%d)", dtn(c->dt), (long long) c->B, (long long) c->Tq,
                 (long long) c->Tk, (long long) c->NH, (long long) c->NKV, (long long) c->HS, c->causal,
                 (long long) c->window, (long long) c->q_offset, mask_names[c->mask], layout_names[c->layout],
                 (double) c->scale_mul, c->sm75);
        run_bwd(be, c, cs, &t);
    }
    rk_backend_free(be);
    tally_finish(test, &t);
}

Test(cuda_ops, attn_bwd) { bwd_test(false); }
Test(cuda_ops, attn_bwd_sm75) { bwd_test(true); }

/* Argument checks of the launcher that need no kernel to run: a missing or short scratch, mismatched shapes. */
Test(cuda_ops, attn_bwd_args) {
    struct rk_backend * be = cuda_or_skip("ATTN_BWD arguments");
#ifdef RK_HAVE_CUDA
    if (be->device == RK_DEVICE_CUDA) {
        struct dmem      m = { 0 };
        const int64_t    ne[4] = { 1, 2, 8, 64 };
        dmem_init(&m, be, 4096); /* nothing is launched: the views may overlap */
        struct rk_tensor x   = dmem_view(&m, RK_DTYPE_BF16, 4, ne, NULL, 0, "x");
        struct rk_tensor l   = dmem_view(&m, RK_DTYPE_F32, 3, (int64_t[]) { 1, 2, 8 }, NULL, 0, "lse");
        struct rk_tensor bad = dmem_view(&m, RK_DTYPE_BF16, 4, (int64_t[]) { 1, 2, 7, 64 }, NULL, 0, "bad");
        const struct rk_attn_params p = { .scale = 0.125f };
        const size_t need = rk_cuda_attn_bwd_scratch_bytes(&x, &x);
        cr_assert(need >= 2 * 2 * 8 * sizeof(float) && need % 256 == 0, "scratch bytes %zu", need);
        cudaStream_t st = rk_backend_cuda_stream(be);
        cr_assert(rk_cuda_attn_bwd(&x, &x, &x, &x, &x, &x, &x, &x, &l, NULL, &p, NULL, 0, false, st) == RK_STATUS_ARG,
                  "no scratch must be an argument error");
        cr_assert(rk_cuda_attn_bwd(&x, &x, &x, &x, &x, &x, &x, &x, &l, NULL, &p, m.dev, need - 16, false, st) ==
                  RK_STATUS_ARG, "a short scratch must be an argument error");
        cr_assert(rk_cuda_attn_bwd(&bad, &x, &x, &x, &x, &x, &x, &x, &l, NULL, &p, m.dev, need, false, st) ==
                  RK_STATUS_ARG, "a dq of another shape must be an argument error");
        cr_assert(rk_cuda_attn_bwd_variant(&x, &x, &x, &x, &x, &x, &x, &x, &l, NULL, &p, m.dev, need, false,
                                           RK_ATTN_BWD_N_VARIANTS, st) == RK_STATUS_ARG, "an unknown variant");
        cr_assert(strcmp(rk_cuda_attn_bwd_variant_name(RK_ATTN_BWD_N_VARIANTS), "?") == 0);
        cr_assert(be->synchronize(be) == RK_OK);
        dmem_free(&m);
    }
#endif
    rk_backend_free(be);
}
