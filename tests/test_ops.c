/*
 * test_ops.c: parity of every CUDA forward op against its CPU reference (STYLE.md 6, after [G] test-backend-ops),
 * through the harness in tests/ops_harness.h (seeded inputs rounded to the case dtype, redzones and NaN prefill,
 * normalized-MSE plus element-wise bounds, RK_TEST_FILTER, RK_TEST_BACKEND=cpu self-test; see that header).
 * Backward and training ops: tests/test_ops_bwd.c.
 *
 * Attention cases also run every numbered kernel variant of kernels/attn_cuda.h on the same inputs ("[variant=..]"
 * in the case string), and the embedding case list includes the fused embed+LayerNorm launcher (rk_cuda_embed).
 * LAYERNORM, GELU and the MATMUL cases with the GELU epilogue (rk_cuda_bias_act) likewise run every variant of
 * RK_LAYERNORM_N_VARIANTS / RK_GELU_N_VARIANTS (kernels/cuda_ops.h), each tallied as its own "[variant=..]" case.
 * Example: RK_TEST_FILTER='ATTN_FWD(dtype=bf16,B=2|variant=plain' build/tests/test_ops --filter 'cuda_ops/attn_fwd'
 * Some CPU references assert on strided views, so under RK_TEST_BACKEND=cpu select cases with RK_TEST_FILTER.
 */
#include "ops_harness.h"

#include "kernels/attn.h"
#include "kernels/elementwise.h"
#include "kernels/embed.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/pool.h"
#include "kernels/softmax.h"
#ifdef RK_HAVE_CUDA
#include "kernels/attn_cuda.h"
#include "kernels/cuda_ops.h"
#endif

#include <stdarg.h>

/* ------------------------------------------------------------------------------------------------
 * the GELU, LayerNorm and matmul + GELU kernel variants (kernels/cuda_ops.h): every one on CUDA, only the default
 * elsewhere */

enum { VK_GELU = 0, VK_LAYERNORM, VK_MMGELU };

static int variant_count(struct rk_backend * be, int kind) {
#ifdef RK_HAVE_CUDA
    if (be->device == RK_DEVICE_CUDA) {
        return kind == VK_GELU ? RK_GELU_N_VARIANTS : kind == VK_LAYERNORM ? RK_LAYERNORM_N_VARIANTS
                                                                            : RK_MATMUL_GELU_N_VARIANTS;
    }
#endif
    (void) be;
    (void) kind;
    return 1;
}

static const char * variant_name(int kind, int v) {
#ifdef RK_HAVE_CUDA
    return kind == VK_GELU ? rk_cuda_gelu_variant_name(v)
           : kind == VK_LAYERNORM ? rk_cuda_layernorm_variant_name(v)
                                  : rk_cuda_matmul_gelu_variant_name(v);
#else
    (void) kind;
    (void) v;
    return "default";
#endif
}

/* From now on the CUDA launchers run variant v (0: the default). */
static void variant_set(struct rk_backend * be, int kind, int v) {
#ifdef RK_HAVE_CUDA
    if (be->device == RK_DEVICE_CUDA) {
        const enum rk_status s = kind == VK_GELU ? rk_cuda_gelu_set_variant(v)
                                 : kind == VK_LAYERNORM ? rk_cuda_layernorm_set_variant(v)
                                                        : rk_cuda_matmul_gelu_set_variant(v);
        cr_assert(s == RK_OK, "setting variant %d: %s", v, rk_last_error());
    }
#endif
    (void) be;
    (void) kind;
    (void) v;
}

/* ------------------------------------------------------------------------------------------------
 * LAYERNORM */

enum { ALIAS_NONE = 0, ALIAS_X, ALIAS_RES };

struct ln_case {
    enum rk_dtype dt;
    int64_t       N, C;
    bool          residual, bias;
    int           alias; /* dst aliases x or residual */
    int64_t       pad;   /* row padding of every row tensor (strided rows) */
};

static const struct ln_case ln_cases[] = {
    { RK_DTYPE_BF16, 77, 768, false, true, ALIAS_NONE, 0 },
    { RK_DTYPE_BF16, 77, 768, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_BF16, 64, 384, true, true, ALIAS_RES, 0 },  /* BERT: x = LN(sublayer + x) */
    { RK_DTYPE_BF16, 33, 768, false, true, ALIAS_X, 0 },   /* BERT embeddings: x = LN(x) */
    { RK_DTYPE_BF16, 3, 1024, false, false, ALIAS_NONE, 8 },
    { RK_DTYPE_BF16, 5, 4103, true, true, ALIAS_NONE, 3 }, /* odd C: scalar path */
    { RK_DTYPE_BF16, 1, 384, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_BF16, 300, 1024, true, true, ALIAS_RES, 16 },
    { RK_DTYPE_F16, 77, 768, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_F16, 16, 4103, false, true, ALIAS_X, 0 },
    { RK_DTYPE_F32, 77, 768, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_F32, 7, 4103, true, true, ALIAS_NONE, 5 },
    { RK_DTYPE_F32, 9, 4096, true, false, ALIAS_RES, 0 },
    /* for the register variants: one row, rows not a multiple of a block's, C not a multiple of 8 (scalar), tiny and
     * odd C, strided and unaligned views, the longest rows they hold (2048) and one past it (v1 fallback) */
    { RK_DTYPE_BF16, 1, 768, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_BF16, 77, 768, true, true, ALIAS_RES, 0 },
    { RK_DTYPE_BF16, 13, 384, true, true, ALIAS_RES, 0 },
    { RK_DTYPE_BF16, 77, 100, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_BF16, 40, 5, true, false, ALIAS_X, 3 },
    { RK_DTYPE_BF16, 33, 2048, true, true, ALIAS_NONE, 16 },
    { RK_DTYPE_BF16, 9, 2056, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_BF16, 50, 96, false, true, ALIAS_NONE, 2 },
    { RK_DTYPE_F16, 77, 1024, true, true, ALIAS_NONE, 0 },
    { RK_DTYPE_F16, 21, 77, true, true, ALIAS_RES, 1 },
    { RK_DTYPE_F32, 50, 768, true, true, ALIAS_X, 8 },
    { RK_DTYPE_F32, 35, 200, true, true, ALIAS_NONE, 0 },
};

static int run_layernorm(struct rk_backend * be, const struct ln_case * c, const char * cs, struct rng * r) {
    const int64_t N = c->N, C = c->C;
    const float   eps = 1e-12f;
    float *       x   = rand_vec(r, c->dt, N * C, 1.0f);
    float *       res = c->residual ? rand_vec(r, c->dt, N * C, 1.0f) : NULL;
    float *       w   = rand_vec(r, c->dt, C, 1.0f);
    float *       b   = c->bias ? rand_vec(r, c->dt, C, 1.0f) : NULL;
    float *       ref = rk_xmalloc((size_t) (N * C) * sizeof(float));

    /* CPU reference on the rounded inputs */
    struct rk_tensor hx = host_t(x, 2, (int64_t[]) { N, C }), hw = host_t(w, 1, (int64_t[]) { C });
    struct rk_tensor hb = host_t(b, 1, (int64_t[]) { C }), hr = host_t(res, 2, (int64_t[]) { N, C });
    struct rk_tensor hd = host_t(ref, 2, (int64_t[]) { N, C });
    struct rk_layernorm_params p = { .eps = eps };
    rk_cpu_layernorm(&hd, &hx, &hw, b ? &hb : NULL, res ? &hr : NULL, &p);

    struct dmem mx = { 0 }, mr = { 0 }, mw = { 0 }, mb = { 0 }, md = { 0 };
    const int64_t ne[2] = { N, C };
    struct rk_tensor tx = padded_tensor(&mx, be, c->dt, 2, ne, c->pad, "x");
    struct rk_tensor tr = { 0 }, tw, tb = { 0 }, td;
    if (res) tr = padded_tensor(&mr, be, c->dt, 2, ne, c->pad, "res");
    dmem_init(&mw, be, (size_t) C * rk_dtype_traits[c->dt].type_size);
    tw = dmem_view(&mw, c->dt, 1, (int64_t[]) { C }, NULL, 0, "w");
    if (b) {
        dmem_init(&mb, be, (size_t) C * rk_dtype_traits[c->dt].type_size);
        tb = dmem_view(&mb, c->dt, 1, (int64_t[]) { C }, NULL, 0, "b");
    }
    view_set(&mx, &tx, x);
    if (res) view_set(&mr, &tr, res);
    view_set(&mw, &tw, w);
    if (b) view_set(&mb, &tb, b);
    struct dmem * mdst = &md;
    if (c->alias == ALIAS_X) {
        td   = tx;
        mdst = &mx;
    } else if (c->alias == ALIAS_RES) {
        td   = tr;
        mdst = &mr;
    } else {
        td = padded_tensor(&md, be, c->dt, 2, ne, c->pad, "dst");
    }
    view_mark_output(mdst, &td);
    dmem_upload(&mx);
    if (res) dmem_upload(&mr);
    dmem_upload(&mw);
    if (b) dmem_upload(&mb);
    if (c->alias == ALIAS_NONE) dmem_upload(&md);

    struct rk_op_call call = { .op = RK_OP_LAYERNORM, .dst = &td, .src = { &tx, &tw, b ? &tb : NULL, res ? &tr : NULL } };
    call.p.layernorm = p;
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        bool ok = check_output(mdst, &td, ref, cs, "dst", tol_for(c->dt));
        if (mdst != &mx) ok = check_unchanged(&mx, cs, "x") && ok;
        if (res && mdst != &mr) ok = check_unchanged(&mr, cs, "residual") && ok;
        ok = check_unchanged(&mw, cs, "w") && ok;
        if (b) ok = check_unchanged(&mb, cs, "b") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    dmem_free(&mr);
    dmem_free(&mw);
    dmem_free(&mb);
    dmem_free(&md);
    free(x);
    free(res);
    free(w);
    free(b);
    free(ref);
    return rc;
}

/* Every case through every variant (the same inputs: the rng is seeded from the case string without the variant). */
Test(cuda_ops, layernorm) {
    struct rk_backend * be = cuda_or_skip("LAYERNORM");
    struct tally        t  = { 0 };
    for (size_t i = 0; i < sizeof(ln_cases) / sizeof(ln_cases[0]); i++) {
        const struct ln_case * c = &ln_cases[i];
        char cs0[256], cs[400];
        snprintf(cs0, sizeof(cs0), "LAYERNORM(dtype=%s,N=%lld,C=%lld,residual=%d,bias=%d,alias=%s,pad=%lld)",
                 dtn(c->dt), (long long) c->N, (long long) c->C, c->residual, c->bias,
                 c->alias == ALIAS_X ? "x" : c->alias == ALIAS_RES ? "residual" : "none", (long long) c->pad);
        for (int v = 0; v < variant_count(be, VK_LAYERNORM); v++) {
            snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, variant_name(VK_LAYERNORM, v));
            if (!case_selected(cs)) continue;
            struct rng r  = { run_seed() ^ fnv1a(cs0) };
            double     t0 = now_ms();
            variant_set(be, VK_LAYERNORM, v);
            tally_add(&t, cs, run_layernorm(be, c, cs, &r), t0);
        }
    }
    variant_set(be, VK_LAYERNORM, 0);
    rk_backend_free(be);
    tally_finish("LAYERNORM", &t);
}

/* ------------------------------------------------------------------------------------------------
 * MATMUL */

struct mm_case {
    enum rk_dtype dt;
    int64_t       M, N, K;
    bool          bias, gelu;
    int64_t       x_pad; /* x rows padded (x a column slice of a wider buffer, like q of a fused qkv) */
    int64_t       d_pad; /* dst rows padded */
    bool          acc;   /* accumulate: dst starts as random values, which the product adds to (the residual) */
};

static const struct mm_case mm_cases[] = {
    { RK_DTYPE_BF16, 77, 385, 129, true, false, 0, 0, false }, /* awkward: nothing a multiple of 8 */
    { RK_DTYPE_BF16, 77, 385, 129, true, true, 0, 0, false },
    { RK_DTYPE_BF16, 77, 385, 129, false, false, 0, 0, false },
    { RK_DTYPE_BF16, 64, 768, 768, true, false, 0, 0, false },
    { RK_DTYPE_BF16, 200, 2304, 768, true, false, 0, 0, false }, /* BERT-base QKV */
    { RK_DTYPE_BF16, 77, 3072, 768, true, true, 0, 0, false },   /* BERT-base FFN up + GELU */
    { RK_DTYPE_BF16, 77, 768, 3072, true, false, 0, 0, false },  /* BERT-base FFN down */
    { RK_DTYPE_BF16, 1, 3, 5, false, false, 0, 0, false },
    { RK_DTYPE_BF16, 1, 384, 384, true, true, 0, 0, false },
    { RK_DTYPE_BF16, 77, 768, 768, true, false, 1536, 0, false }, /* x = a 768-column slice of a (77, 2304) buffer */
    { RK_DTYPE_BF16, 33, 64, 96, true, true, 37, 3, false },       /* odd strides: cuBLAS fallback territory */
    { RK_DTYPE_BF16, 130, 96, 64, false, true, 0, 8, false },
    /* the fused GEMM + GELU (matmul + GELU variants 2 to 6; kernels/matmul_gelu.cu): M a partial tile, two N tiles,
     * padded rows; one exact tile with one k-block and no bias; a MiniLM FFN-up shape with 3 rows; N = 384 (3 tiles
     * of 128, not of 256: variant 2 falls back) */
    { RK_DTYPE_F16, 200, 512, 128, true, true, 16, 48, false },
    { RK_DTYPE_BF16, 128, 256, 64, false, true, 0, 0, false },
    { RK_DTYPE_BF16, 3, 1536, 384, true, true, 0, 0, false },
    { RK_DTYPE_BF16, 300, 384, 448, true, true, 0, 0, false },
    { RK_DTYPE_F16, 77, 385, 129, true, true, 0, 0, false },
    { RK_DTYPE_F16, 200, 2304, 768, true, false, 0, 0, false },
    { RK_DTYPE_F16, 33, 64, 96, true, false, 37, 3, false },
    { RK_DTYPE_F32, 77, 385, 129, true, true, 0, 0, false },
    { RK_DTYPE_F32, 64, 256, 512, true, false, 5, 0, false },
    { RK_DTYPE_F32, 3, 1, 7, false, false, 0, 0, false },
    /* accumulate (BERT's residual in the GEMM epilogue): the BERT-base output projection and FFN down shapes, with
     * and without bias, GELU after the sum, padded rows (the GemmEx fallback too), f16 and f32 */
    { RK_DTYPE_BF16, 77, 768, 768, true, false, 0, 0, true },
    { RK_DTYPE_BF16, 77, 768, 3072, true, false, 0, 0, true },
    { RK_DTYPE_BF16, 77, 385, 129, false, false, 0, 0, true },
    { RK_DTYPE_BF16, 33, 64, 96, true, true, 37, 3, true },
    { RK_DTYPE_F16, 200, 768, 768, true, false, 1536, 8, true },
    { RK_DTYPE_F32, 64, 256, 512, true, true, 5, 0, true },
};

static int run_matmul(struct rk_backend * be, const struct mm_case * c, const char * cs, struct rng * r) {
    const int64_t M = c->M, N = c->N, K = c->K;
    float *       x   = rand_vec(r, c->dt, M * K, 1.0f);
    float *       w   = rand_vec(r, c->dt, N * K, 1.0f);
    float *       b   = c->bias ? rand_vec(r, c->dt, N, 1.0f) : NULL;
    float *       d0  = c->acc ? rand_vec(r, c->dt, M * N, 4.0f) : NULL; /* dst before: the residual */
    float *       ref = rk_xmalloc((size_t) (M * N) * sizeof(float));
    if (d0) memcpy(ref, d0, (size_t) (M * N) * sizeof(float));
    struct rk_matmul_params p = { .act = c->gelu ? RK_ACT_GELU : RK_ACT_NONE, .accumulate = c->acc };
    struct rk_tensor hx = host_t(x, 2, (int64_t[]) { M, K }), hw = host_t(w, 2, (int64_t[]) { N, K });
    struct rk_tensor hb = host_t(b, 1, (int64_t[]) { N }), hd = host_t(ref, 2, (int64_t[]) { M, N });
    rk_cpu_matmul(&hd, &hx, &hw, b ? &hb : NULL, &p);

    struct dmem      mx = { 0 }, mw = { 0 }, mb = { 0 }, md = { 0 };
    struct rk_tensor tx = padded_tensor(&mx, be, c->dt, 2, (int64_t[]) { M, K }, c->x_pad, "x");
    struct rk_tensor tw = padded_tensor(&mw, be, c->dt, 2, (int64_t[]) { N, K }, 0, "w");
    struct rk_tensor tb = { 0 };
    if (b) tb = padded_tensor(&mb, be, c->dt, 1, (int64_t[]) { N }, 0, "bias");
    struct rk_tensor td = padded_tensor(&md, be, c->dt, 2, (int64_t[]) { M, N }, c->d_pad, "dst");
    view_set(&mx, &tx, x);
    view_set(&mw, &tw, w);
    if (b) view_set(&mb, &tb, b);
    if (d0) view_set(&md, &td, d0);
    view_mark_output(&md, &td);
    dmem_upload(&mx);
    dmem_upload(&mw);
    if (b) dmem_upload(&mb);
    dmem_upload(&md);

    struct rk_op_call call = { .op = RK_OP_MATMUL, .dst = &td, .src = { &tx, &tw, b ? &tb : NULL } };
    call.p.matmul = p;
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        /* accumulate: dst = d0 + (x w^T + b) may be rounded at the magnitude of its terms (cuBLASLt: the product,
         * or a split-K partial, in the output type before C is added, as PyTorch's linear then add), so a result
         * that cancels is bounded relative to max(|d0|, |x w^T + b|) rather than to itself */
        float * mag = NULL;
        if (d0) {
            mag = rk_xmalloc((size_t) (M * N) * sizeof(float));
            for (int64_t i = 0; i < M * N; i++) mag[i] = fmaxf(fabsf(d0[i]), fabsf(ref[i] - d0[i]));
        }
        bool ok = check_output_mag(&md, &td, ref, mag, cs, "dst", tol_for(c->dt));
        free(mag);
        ok = check_unchanged(&mx, cs, "x") && ok;
        ok = check_unchanged(&mw, cs, "w") && ok;
        if (b) ok = check_unchanged(&mb, cs, "bias") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    dmem_free(&mw);
    dmem_free(&mb);
    dmem_free(&md);
    free(x);
    free(w);
    free(b);
    free(d0);
    free(ref);
    return rc;
}

/* True when the fused GEMM of matmul + GELU variant v must take case c on this backend: the limits that
   kernels/cuda_ops.h documents for rk_cuda_matmul_gelu_fused (sm_90 for the wgmma variants 2-4 and 6, sm_80 and newer for
   the mma.sync variant 5: every device the suites run on has its 96 KB of shared memory) (the harness's buffers are 256-byte aligned, a padded view
   starts pad / 2 elements into its buffer). */
static bool mm_wg_takes(struct rk_backend * be, const struct mm_case * c, int v) {
#ifdef RK_HAVE_CUDA
    const int64_t bn = rk_cuda_matmul_gelu_tile_n(v);
    const int     cc = be->device == RK_DEVICE_CUDA ? rk_backend_cuda_cc(be) : 0;
    return be->device == RK_DEVICE_CUDA && (v == 5 ? cc >= 80 : cc == 90) && bn > 0 && c->gelu && !c->acc &&
           c->dt != RK_DTYPE_F32 && c->K % 64 == 0 && c->N % bn == 0 && (c->K + c->x_pad) % 8 == 0 &&
           (c->N + c->d_pad) % 8 == 0 && (c->x_pad / 2) % 8 == 0 && (c->d_pad / 2) % 8 == 0;
#else
    (void) be;
    (void) c;
    (void) v;
    return false;
#endif
}

static uint64_t mm_wg_calls(struct rk_backend * be) {
#ifdef RK_HAVE_CUDA
    if (be->device == RK_DEVICE_CUDA) return rk_cuda_matmul_gelu_fused_calls();
#endif
    (void) be;
    return 0;
}

/* The cases with the GELU epilogue run every GELU pass variant behind cuBLASLt (matmul + GELU variant 1,
   "[variant=<GELU variant>]") and every fused wgmma variant ("[variant=mm-<variant>]"): the fused kernel must have
   run for the cases within its limits (mm_wg_takes), and the others must fall back to the cuBLASLt path. */
Test(cuda_ops, matmul) {
    struct rk_backend * be = cuda_or_skip("MATMUL");
    struct tally        t  = { 0 };
    for (size_t i = 0; i < sizeof(mm_cases) / sizeof(mm_cases[0]); i++) {
        const struct mm_case * c = &mm_cases[i];
        char cs0[256], cs[400];
        snprintf(cs0, sizeof(cs0), "MATMUL(dtype=%s,M=%lld,N=%lld,K=%lld,bias=%d,gelu=%d,x_pad=%lld,dst_pad=%lld%s)",
                 dtn(c->dt), (long long) c->M, (long long) c->N, (long long) c->K, c->bias, c->gelu,
                 (long long) c->x_pad, (long long) c->d_pad, c->acc ? ",accumulate=1" : "");
        const int ngv = c->gelu ? variant_count(be, VK_GELU) : 1;
        const int nmv = c->gelu ? variant_count(be, VK_MMGELU) : 1;
        /* runs 0 .. ngv - 1: the GELU pass variants; then the fused matmul variants 2 .. nmv - 1 */
        for (int run = 0; run < ngv + (nmv > 2 ? nmv - 2 : 0); run++) {
            const int gv = run < ngv ? run : 0, mv = run < ngv ? 1 : run - ngv + 2;
            if (!c->gelu) {
                snprintf(cs, sizeof(cs), "%s", cs0);
            } else if (run < ngv) {
                snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, variant_name(VK_GELU, gv));
            } else {
                snprintf(cs, sizeof(cs), "%s[variant=mm-%s]", cs0, variant_name(VK_MMGELU, mv));
            }
            if (!case_selected(cs)) continue;
            struct rng r  = { run_seed() ^ fnv1a(cs0) };
            double     t0 = now_ms();
            variant_set(be, VK_GELU, gv);
            if (c->gelu) variant_set(be, VK_MMGELU, mv);
            const uint64_t calls0 = mm_wg_calls(be);
            int            rc     = run_matmul(be, c, cs, &r);
            const bool     fused  = mm_wg_calls(be) != calls0, want = mv >= 2 && mm_wg_takes(be, c, mv);
            if (rc == CASE_PASS && fused != want) {
                fprintf(stderr, "    %s: the fused kernel %s\n", cs, want ? "did not run" : "ran outside its limits");
                rc = CASE_FAIL;
            }
            tally_add(&t, cs, rc, t0);
        }
    }
    variant_set(be, VK_GELU, 0);
    variant_set(be, VK_MMGELU, 0);
    rk_backend_free(be);
    tally_finish("MATMUL", &t);
}

/* ------------------------------------------------------------------------------------------------
 * GELU and ADD */

struct ew_case {
    enum rk_dtype dt;
    int64_t       N, C;
    int64_t       pad;
    bool          inplace; /* dst aliases the (first) input */
    float         scale;   /* inputs uniform in [-scale, scale]; 0: 3 */
};

static const struct ew_case ew_cases[] = {
    { RK_DTYPE_BF16, 77, 3072, 0, false, 0 }, { RK_DTYPE_BF16, 3, 1001, 0, false, 0 },
    { RK_DTYPE_BF16, 1, 7, 0, false, 0 },     { RK_DTYPE_BF16, 77, 768, 8, false, 0 },
    { RK_DTYPE_BF16, 64, 768, 0, true, 0 },   { RK_DTYPE_BF16, 5, 99, 3, true, 0 },
    { RK_DTYPE_F16, 77, 3072, 0, false, 0 },  { RK_DTYPE_F16, 3, 1001, 5, false, 0 },
    { RK_DTYPE_F32, 77, 768, 0, false, 0 },   { RK_DTYPE_F32, 3, 1001, 2, true, 0 },
    /* for the GELU variants: a dense length no multiple of a v2 chunk, one row of one vector, strided rows of a few
     * vectors (several rows per block), rows past the grid's y limit (the row loop), the erf tails (|x| / sqrt 2
     * past rk_erf_ex2's clamp) */
    { RK_DTYPE_BF16, 13, 4104, 0, true, 0 },  { RK_DTYPE_BF16, 1, 8, 0, false, 0 },
    { RK_DTYPE_BF16, 300, 40, 16, false, 0 }, { RK_DTYPE_F16, 600000, 1, 1, false, 0 },
    { RK_DTYPE_BF16, 77, 3072, 0, false, 8 }, { RK_DTYPE_F16, 33, 776, 0, true, 8 },
};

/* op_is_add: ADD(dst, a, b) else GELU(dst, a). Inputs scaled by 3 (unless the case says) so GELU sees its curved
 * region and tails. */
static int run_elementwise(struct rk_backend * be, const struct ew_case * c, bool op_is_add, const char * cs,
                           struct rng * r) {
    const int64_t N = c->N, C = c->C, ne[2] = { N, C };
    const float   sc  = c->scale > 0.0f ? c->scale : 3.0f;
    float *       a   = rand_vec(r, c->dt, N * C, sc);
    float *       b   = op_is_add ? rand_vec(r, c->dt, N * C, sc) : NULL;
    float *       ref = rk_xmalloc((size_t) (N * C) * sizeof(float));
    struct rk_tensor ha = host_t(a, 2, ne), hb = host_t(b, 2, ne), hd = host_t(ref, 2, ne);
    if (op_is_add) {
        rk_cpu_add(&hd, &ha, &hb);
    } else {
        rk_cpu_gelu(&hd, &ha);
    }
    struct dmem      ma = { 0 }, mb = { 0 }, md = { 0 };
    struct rk_tensor ta = padded_tensor(&ma, be, c->dt, 2, ne, c->pad, "a");
    struct rk_tensor tb = { 0 };
    if (b) tb = padded_tensor(&mb, be, c->dt, 2, ne, c->pad + 1, "b");
    view_set(&ma, &ta, a);
    if (b) view_set(&mb, &tb, b);
    struct rk_tensor td;
    struct dmem *    mdst = &md;
    if (c->inplace) {
        td   = ta;
        mdst = &ma;
    } else {
        td = padded_tensor(&md, be, c->dt, 2, ne, c->pad, "dst");
        dmem_upload(&md);
    }
    view_mark_output(mdst, &td);
    dmem_upload(&ma);
    if (b) dmem_upload(&mb);
    struct rk_op_call call = { .op = op_is_add ? RK_OP_ADD : RK_OP_GELU, .dst = &td, .src = { &ta, b ? &tb : NULL } };
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        bool ok = check_output(mdst, &td, ref, cs, "dst", tol_for(c->dt));
        if (!c->inplace) ok = check_unchanged(&ma, cs, "a") && ok;
        if (b) ok = check_unchanged(&mb, cs, "b") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&ma);
    dmem_free(&mb);
    dmem_free(&md);
    free(a);
    free(b);
    free(ref);
    return rc;
}

static void elementwise_test(bool op_is_add) {
    const char *        opn = op_is_add ? "ADD" : "GELU";
    struct rk_backend * be  = cuda_or_skip(opn);
    struct tally        t   = { 0 };
    for (size_t i = 0; i < sizeof(ew_cases) / sizeof(ew_cases[0]); i++) {
        const struct ew_case * c = &ew_cases[i];
        char cs0[256], cs[400];
        snprintf(cs0, sizeof(cs0), "%s(dtype=%s,N=%lld,C=%lld,pad=%lld,inplace=%d", opn, dtn(c->dt), (long long) c->N,
                 (long long) c->C, (long long) c->pad, c->inplace);
        if (c->scale > 0.0f) snprintf(cs0 + strlen(cs0), sizeof(cs0) - strlen(cs0), ",scale=%g", (double) c->scale);
        snprintf(cs0 + strlen(cs0), sizeof(cs0) - strlen(cs0), ")");
        /* GELU: every variant, "[variant=..]"; ADD has none */
        const int nv = op_is_add ? 1 : variant_count(be, VK_GELU);
        for (int v = 0; v < nv; v++) {
            if (op_is_add) {
                snprintf(cs, sizeof(cs), "%s", cs0);
            } else {
                snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, variant_name(VK_GELU, v));
            }
            if (!case_selected(cs)) continue;
            struct rng r  = { run_seed() ^ fnv1a(cs0) };
            double     t0 = now_ms();
            if (!op_is_add) variant_set(be, VK_GELU, v);
            tally_add(&t, cs, run_elementwise(be, c, op_is_add, cs, &r), t0);
        }
    }
    if (!op_is_add) variant_set(be, VK_GELU, 0);
    rk_backend_free(be);
    tally_finish(opn, &t);
}

Test(cuda_ops, gelu) { elementwise_test(false); }
Test(cuda_ops, add) { elementwise_test(true); }

/* ------------------------------------------------------------------------------------------------
 * SOFTMAX */

struct sm_case {
    enum rk_dtype dt;
    int64_t       N, C;
    float         scale;
    int64_t       pad;
    bool          neg_inf; /* row 0 all -inf (-> zeros), row 1 every other element -inf */
};

static const struct sm_case sm_cases[] = {
    { RK_DTYPE_BF16, 77, 77, 0.125f, 0, false }, { RK_DTYPE_BF16, 12, 1000, 4.0f, 0, false },
    { RK_DTYPE_BF16, 5, 4099, 1.0f, 3, false },  { RK_DTYPE_BF16, 4, 64, 2.0f, 0, true },
    { RK_DTYPE_F16, 77, 77, 0.125f, 0, false },  { RK_DTYPE_F16, 6, 333, 4.0f, 1, true },
    { RK_DTYPE_F32, 12, 1000, 4.0f, 0, false },  { RK_DTYPE_F32, 3, 7, 1.0f, 0, true },
    /* the register-resident kernel (v2) at 1, 8 and 4 vectors per lane, scalar at 8; and v1 again past 2048 */
    { RK_DTYPE_BF16, 9, 256, 1.0f, 0, true },    { RK_DTYPE_BF16, 3, 2048, 0.5f, 0, false },
    { RK_DTYPE_F32, 5, 512, 2.0f, 0, true },     { RK_DTYPE_F16, 4, 250, 1.0f, 0, false },
    { RK_DTYPE_BF16, 2, 2056, 1.0f, 0, false },
};

static int run_softmax(struct rk_backend * be, const struct sm_case * c, const char * cs, struct rng * r) {
    const int64_t N = c->N, C = c->C, ne[2] = { N, C };
    float *       x   = rand_vec(r, c->dt, N * C, 1.0f);
    float *       ref = rk_xmalloc((size_t) (N * C) * sizeof(float));
    if (c->neg_inf && N >= 2) {
        for (int64_t j = 0; j < C; j++) x[j] = -INFINITY;
        for (int64_t j = 0; j < C; j += 2) x[C + j] = -INFINITY;
    }
    struct rk_softmax_params p = { .scale = c->scale };
    struct rk_tensor hx = host_t(x, 2, ne), hd = host_t(ref, 2, ne);
    rk_cpu_softmax(&hd, &hx, &p);
    struct dmem      mx = { 0 }, md = { 0 };
    struct rk_tensor tx = padded_tensor(&mx, be, c->dt, 2, ne, c->pad, "x");
    struct rk_tensor td = padded_tensor(&md, be, c->dt, 2, ne, c->pad, "dst");
    view_set(&mx, &tx, x);
    view_mark_output(&md, &td);
    dmem_upload(&mx);
    dmem_upload(&md);
    struct rk_op_call call = { .op = RK_OP_SOFTMAX, .dst = &td, .src = { &tx } };
    call.p.softmax = p;
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        struct tol tl = tol_for(c->dt);
        tl.atol       = 1e-6; /* outputs are ~1/C: the bound must be relative */
        bool ok = check_output(&md, &td, ref, cs, "dst", tl);
        ok      = check_unchanged(&mx, cs, "x") && ok;
        rc      = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    dmem_free(&md);
    free(x);
    free(ref);
    return rc;
}

Test(cuda_ops, softmax) {
    struct rk_backend * be = cuda_or_skip("SOFTMAX");
    struct tally        t  = { 0 };
    for (size_t i = 0; i < sizeof(sm_cases) / sizeof(sm_cases[0]); i++) {
        const struct sm_case * c = &sm_cases[i];
        char cs[256];
        snprintf(cs, sizeof(cs), "SOFTMAX(dtype=%s,N=%lld,C=%lld,scale=%g,pad=%lld,neg_inf=%d)", dtn(c->dt),
                 (long long) c->N, (long long) c->C, (double) c->scale, (long long) c->pad, c->neg_inf);
        if (!case_selected(cs)) continue;
        struct rng r  = { run_seed() ^ fnv1a(cs) };
        double     t0 = now_ms();
        tally_add(&t, cs, run_softmax(be, c, cs, &r), t0);
    }
    rk_backend_free(be);
    tally_finish("SOFTMAX", &t);
}

/* ------------------------------------------------------------------------------------------------
 * EMBED (and the fused embedding LayerNorm launcher) */

struct emb_case {
    enum rk_dtype dt;
    int64_t       B, T, C, V, P, NTT;
    bool          wpe, wtt, type_ids;
    int64_t       pos_offset;
    bool          fused_ln; /* rk_cuda_embed with the LayerNorm fused (direct launcher call) */
};

static const struct emb_case emb_cases[] = {
    { RK_DTYPE_BF16, 2, 77, 768, 1000, 512, 2, true, true, true, 0, false },
    { RK_DTYPE_BF16, 2, 77, 768, 1000, 512, 2, true, true, false, 0, false }, /* no type ids: type 0 */
    { RK_DTYPE_BF16, 1, 1, 384, 50, 16, 2, true, true, false, 0, false },
    { RK_DTYPE_BF16, 3, 20, 100, 33, 64, 1, true, false, false, 2, false },  /* C % 8 != 0, RoBERTa-style offset */
    { RK_DTYPE_F16, 2, 77, 384, 1001, 512, 2, true, true, true, 0, false },
    { RK_DTYPE_F32, 2, 7, 64, 10, 7, 2, false, false, false, 0, false },
    { RK_DTYPE_BF16, 2, 77, 768, 1000, 512, 2, true, true, true, 0, true },
    { RK_DTYPE_BF16, 3, 20, 100, 33, 64, 1, true, false, false, 2, true },
    { RK_DTYPE_F32, 2, 77, 384, 1000, 512, 2, true, true, true, 0, true },
};

static int run_embed(struct rk_backend * be, const struct emb_case * c, const char * cs, struct rng * r) {
    const int64_t B = c->B, T = c->T, C = c->C, N = B * T;
    const float   eps = 1e-12f;
    float *       wte = rand_vec(r, c->dt, c->V * C, 1.0f);
    float *       wpe = c->wpe ? rand_vec(r, c->dt, c->P * C, 1.0f) : NULL;
    float *       wtt = c->wtt ? rand_vec(r, c->dt, c->NTT * C, 1.0f) : NULL;
    float *       lnw = c->fused_ln ? rand_vec(r, c->dt, C, 1.0f) : NULL;
    float *       lnb = c->fused_ln ? rand_vec(r, c->dt, C, 1.0f) : NULL;
    int32_t *     ids = rk_xmalloc((size_t) N * sizeof(int32_t));
    int32_t *     tid = rk_xmalloc((size_t) N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) {
        ids[i] = (int32_t) rng_int(r, c->V);
        tid[i] = (int32_t) rng_int(r, c->NTT);
    }
    float * ref = rk_xmalloc((size_t) (N * C) * sizeof(float));
    struct rk_embed_params p = { .pos_offset = c->pos_offset };
    struct rk_tensor hte = host_t(wte, 2, (int64_t[]) { c->V, C }), hpe = host_t(wpe, 2, (int64_t[]) { c->P, C });
    struct rk_tensor htt = host_t(wtt, 2, (int64_t[]) { c->NTT, C }), hd = host_t(ref, 3, (int64_t[]) { B, T, C });
    struct rk_tensor hid = rk_tensor_host(ids, RK_DTYPE_I32, 2, (int64_t[]) { B, T });
    struct rk_tensor htd = rk_tensor_host(tid, RK_DTYPE_I32, 2, (int64_t[]) { B, T });
    cr_assert(rk_cpu_embed(&hd, &hte, &hid, wpe ? &hpe : NULL, wtt ? &htt : NULL, c->type_ids ? &htd : NULL, &p) == RK_OK);
    if (c->fused_ln) {
        struct rk_tensor hw = host_t(lnw, 1, (int64_t[]) { C }), hb = host_t(lnb, 1, (int64_t[]) { C });
        struct rk_tensor h2 = host_t(ref, 2, (int64_t[]) { N, C });
        struct rk_layernorm_params lp = { .eps = eps };
        rk_cpu_layernorm(&h2, &h2, &hw, &hb, NULL, &lp);
    }

    struct dmem m[8] = { 0 }; /* wte, wpe, wtt, ids, tids, dst, lnw, lnb */
    struct rk_tensor tte = padded_tensor(&m[0], be, c->dt, 2, (int64_t[]) { c->V, C }, 0, "wte");
    struct rk_tensor tpe = { 0 }, ttt = { 0 }, tlw = { 0 }, tlb = { 0 };
    if (wpe) tpe = padded_tensor(&m[1], be, c->dt, 2, (int64_t[]) { c->P, C }, 0, "wpe");
    if (wtt) ttt = padded_tensor(&m[2], be, c->dt, 2, (int64_t[]) { c->NTT, C }, 0, "wtt");
    struct rk_tensor tid_ = padded_tensor(&m[3], be, RK_DTYPE_I32, 2, (int64_t[]) { B, T }, 0, "ids");
    struct rk_tensor ttd  = padded_tensor(&m[4], be, RK_DTYPE_I32, 2, (int64_t[]) { B, T }, 0, "type_ids");
    struct rk_tensor td   = padded_tensor(&m[5], be, c->dt, 3, (int64_t[]) { B, T, C }, 0, "dst");
    if (lnw) {
        tlw = padded_tensor(&m[6], be, c->dt, 1, (int64_t[]) { C }, 0, "ln_w");
        tlb = padded_tensor(&m[7], be, c->dt, 1, (int64_t[]) { C }, 0, "ln_b");
        view_set(&m[6], &tlw, lnw);
        view_set(&m[7], &tlb, lnb);
    }
    view_set(&m[0], &tte, wte);
    if (wpe) view_set(&m[1], &tpe, wpe);
    if (wtt) view_set(&m[2], &ttt, wtt);
    view_set_i32(&m[3], &tid_, ids);
    view_set_i32(&m[4], &ttd, tid);
    view_mark_output(&m[5], &td);
    for (int i = 0; i < 8; i++) {
        if (m[i].dev) dmem_upload(&m[i]);
    }

    int rc;
    if (!c->fused_ln) {
        struct rk_op_call call = { .op  = RK_OP_EMBED, .dst = &td,
                                   .src = { &tte, &tid_, wpe ? &tpe : NULL, wtt ? &ttt : NULL, c->type_ids ? &ttd : NULL } };
        call.p.embed = p;
        rc           = gpu_op(be, &call, cs);
    } else if (be->device != RK_DEVICE_CUDA) {
        rc = CASE_SKIP; /* direct launcher call: CUDA only */
    } else {
#ifdef RK_HAVE_CUDA
        enum rk_status s = rk_cuda_embed(&td, &tte, &tid_, wpe ? &tpe : NULL, wtt ? &ttt : NULL,
                                         c->type_ids ? &ttd : NULL, &p, &tlw, &tlb, eps, rk_backend_cuda_stream(be));
        rc = s == RK_OK ? CASE_PASS : s == RK_STATUS_UNSUPPORTED ? CASE_SKIP : CASE_FAIL;
        if (s != RK_OK) fprintf(stderr, "    %s: rk_cuda_embed: %s: %s\n", cs, rk_status_name(s), rk_last_error());
        cr_assert(be->synchronize(be) == RK_OK);
#else
        rc = CASE_SKIP;
#endif
    }
    if (rc == CASE_PASS) {
        bool ok = check_output(&m[5], &td, ref, cs, "dst", tol_for(c->dt));
        for (int i = 0; i < 8; i++) {
            if (i != 5 && m[i].dev) ok = check_unchanged(&m[i], cs, "input") && ok;
        }
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    for (int i = 0; i < 8; i++) dmem_free(&m[i]);
    free(wte);
    free(wpe);
    free(wtt);
    free(lnw);
    free(lnb);
    free(ids);
    free(tid);
    free(ref);
    return rc;
}

Test(cuda_ops, embed) {
    struct rk_backend * be = cuda_or_skip("EMBED");
    struct tally        t  = { 0 };
    for (size_t i = 0; i < sizeof(emb_cases) / sizeof(emb_cases[0]); i++) {
        const struct emb_case * c = &emb_cases[i];
        char cs[256];
        snprintf(cs, sizeof(cs), "EMBED(dtype=%s,B=%lld,T=%lld,C=%lld,V=%lld,wpe=%d,wtt=%d,type_ids=%d,pos_offset=%lld,"
                 "fused_ln=%d)", dtn(c->dt), (long long) c->B, (long long) c->T, (long long) c->C, (long long) c->V,
                 c->wpe, c->wtt, c->type_ids, (long long) c->pos_offset, c->fused_ln);
        if (!case_selected(cs)) continue;
        struct rng r  = { run_seed() ^ fnv1a(cs) };
        double     t0 = now_ms();
        tally_add(&t, cs, run_embed(be, c, cs, &r), t0);
    }
    rk_backend_free(be);
    tally_finish("EMBED", &t);
}

/* ------------------------------------------------------------------------------------------------
 * POOL and L2NORM */


struct pool_case {
    enum rk_dtype     dt;
    int64_t           B, T, C;
    enum rk_pool_mode mode;
    int               mask;
    int64_t           pad; /* x rows padded */
};

static const char * const pool_names[] = { "cls", "mean", "max", "last" };

#define POOL_ALL_MODES(dt, B, T, C, mask, pad) \
    { dt, B, T, C, RK_POOL_CLS, mask, pad }, { dt, B, T, C, RK_POOL_MEAN, mask, pad }, \
    { dt, B, T, C, RK_POOL_MAX, mask, pad }, { dt, B, T, C, RK_POOL_LAST, mask, pad }

static const struct pool_case pool_cases[] = {
    POOL_ALL_MODES(RK_DTYPE_BF16, 3, 77, 384, MASK_NONE, 0),
    POOL_ALL_MODES(RK_DTYPE_BF16, 3, 77, 384, MASK_RIGHT, 0),
    POOL_ALL_MODES(RK_DTYPE_BF16, 4, 77, 384, MASK_HOLES, 8),
    POOL_ALL_MODES(RK_DTYPE_F16, 3, 1, 100, MASK_RIGHT, 0),
    POOL_ALL_MODES(RK_DTYPE_F32, 5, 33, 768, MASK_HOLES, 0),
};

static int run_pool(struct rk_backend * be, const struct pool_case * c, const char * cs, struct rng * r) {
    const int64_t B = c->B, T = c->T, C = c->C;
    float *       x   = rand_vec(r, c->dt, B * T * C, 1.0f);
    int32_t *     mk  = rk_xmalloc((size_t) (B * T) * sizeof(int32_t));
    float *       ref = rk_xmalloc((size_t) (B * C) * sizeof(float));
    if (c->mask != MASK_NONE) fill_mask(mk, B, T, c->mask, r);
    struct rk_pool_params p = { .mode = c->mode };
    struct rk_tensor hx = host_t(x, 3, (int64_t[]) { B, T, C }), hd = host_t(ref, 2, (int64_t[]) { B, C });
    struct rk_tensor hm = rk_tensor_host(mk, RK_DTYPE_I32, 2, (int64_t[]) { B, T });
    rk_cpu_pool(&hd, &hx, c->mask != MASK_NONE ? &hm : NULL, &p);
    struct dmem      mx = { 0 }, mm = { 0 }, md = { 0 };
    struct rk_tensor tx = padded_tensor(&mx, be, c->dt, 3, (int64_t[]) { B, T, C }, c->pad, "x");
    struct rk_tensor tm = padded_tensor(&mm, be, RK_DTYPE_I32, 2, (int64_t[]) { B, T }, 0, "mask");
    struct rk_tensor td = padded_tensor(&md, be, c->dt, 2, (int64_t[]) { B, C }, 0, "dst");
    view_set(&mx, &tx, x);
    view_set_i32(&mm, &tm, mk);
    view_mark_output(&md, &td);
    dmem_upload(&mx);
    dmem_upload(&mm);
    dmem_upload(&md);
    struct rk_op_call call = { .op = RK_OP_POOL, .dst = &td, .src = { &tx, c->mask != MASK_NONE ? &tm : NULL } };
    call.p.pool = p;
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        bool ok = check_output(&md, &td, ref, cs, "dst", tol_for(c->dt));
        ok      = check_unchanged(&mx, cs, "x") && ok;
        ok      = check_unchanged(&mm, cs, "mask") && ok;
        rc      = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    dmem_free(&mm);
    dmem_free(&md);
    free(x);
    free(mk);
    free(ref);
    return rc;
}

Test(cuda_ops, pool) {
    struct rk_backend * be = cuda_or_skip("POOL");
    struct tally        t  = { 0 };
    for (size_t i = 0; i < sizeof(pool_cases) / sizeof(pool_cases[0]); i++) {
        const struct pool_case * c = &pool_cases[i];
        char cs[256];
        snprintf(cs, sizeof(cs), "POOL(dtype=%s,B=%lld,T=%lld,C=%lld,mode=%s,mask=%s,pad=%lld)", dtn(c->dt),
                 (long long) c->B, (long long) c->T, (long long) c->C, pool_names[c->mode], mask_names[c->mask],
                 (long long) c->pad);
        if (!case_selected(cs)) continue;
        struct rng r  = { run_seed() ^ fnv1a(cs) };
        double     t0 = now_ms();
        tally_add(&t, cs, run_pool(be, c, cs, &r), t0);
    }
    rk_backend_free(be);
    tally_finish("POOL", &t);
}

struct l2_case {
    enum rk_dtype dt;
    int64_t       N, C;
    bool          zero_row, inplace;
};

static const struct l2_case l2_cases[] = {
    { RK_DTYPE_BF16, 3, 384, true, false }, { RK_DTYPE_BF16, 77, 768, false, true }, { RK_DTYPE_BF16, 2, 100, false, false },
    { RK_DTYPE_F16, 5, 384, true, true },   { RK_DTYPE_F32, 3, 1024, true, false },  { RK_DTYPE_F32, 1, 7, false, true },
};

static int run_l2norm(struct rk_backend * be, const struct l2_case * c, const char * cs, struct rng * r) {
    const int64_t N = c->N, C = c->C, ne[2] = { N, C };
    float *       x   = rand_vec(r, c->dt, N * C, 1.0f);
    float *       ref = rk_xmalloc((size_t) (N * C) * sizeof(float));
    if (c->zero_row) memset(x + (N - 1) * C, 0, (size_t) C * sizeof(float));
    struct rk_l2norm_params p = { .eps = 1e-12f };
    struct rk_tensor hx = host_t(x, 2, ne), hd = host_t(ref, 2, ne);
    rk_cpu_l2norm(&hd, &hx, &p);
    struct dmem      mx = { 0 }, md = { 0 };
    struct rk_tensor tx = padded_tensor(&mx, be, c->dt, 2, ne, 0, "x");
    struct rk_tensor td;
    struct dmem *    mdst = &md;
    view_set(&mx, &tx, x);
    if (c->inplace) {
        td   = tx;
        mdst = &mx;
    } else {
        td = padded_tensor(&md, be, c->dt, 2, ne, 0, "dst");
        dmem_upload(&md);
    }
    view_mark_output(mdst, &td);
    dmem_upload(&mx);
    struct rk_op_call call = { .op = RK_OP_L2NORM, .dst = &td, .src = { &tx } };
    call.p.l2norm = p;
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        struct tol tl = tol_for(c->dt);
        tl.atol       = tl.atol / 10; /* outputs are ~1/sqrt(C) */
        bool ok = check_output(mdst, &td, ref, cs, "dst", tl);
        if (!c->inplace) ok = check_unchanged(&mx, cs, "x") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    dmem_free(&md);
    free(x);
    free(ref);
    return rc;
}

Test(cuda_ops, l2norm) {
    struct rk_backend * be = cuda_or_skip("L2NORM");
    struct tally        t  = { 0 };
    for (size_t i = 0; i < sizeof(l2_cases) / sizeof(l2_cases[0]); i++) {
        const struct l2_case * c = &l2_cases[i];
        char cs[256];
        snprintf(cs, sizeof(cs), "L2NORM(dtype=%s,N=%lld,C=%lld,zero_row=%d,inplace=%d)", dtn(c->dt), (long long) c->N,
                 (long long) c->C, c->zero_row, c->inplace);
        if (!case_selected(cs)) continue;
        struct rng r  = { run_seed() ^ fnv1a(cs) };
        double     t0 = now_ms();
        tally_add(&t, cs, run_l2norm(be, c, cs, &r), t0);
    }
    rk_backend_free(be);
    tally_finish("L2NORM", &t);
}

/* ------------------------------------------------------------------------------------------------
 * ATTN_FWD */

struct attn_case {
    enum rk_dtype dt;
    int64_t       B, Tq, Tk, NH, NKV, HS;
    bool          causal;
    int64_t       window, q_offset;
    int           mask;      /* MASK_NONE / MASK_RIGHT (row 2 fully padded when B >= 3) / MASK_HOLES */
    bool          fused;     /* q, k, v are strided views into one (B, T, (NH + 2 NKV) HS) buffer (Tq == Tk) */
    bool          dst_bthd;  /* dst is a (B, NH, T, HS) view of a (B, T, NH * HS) buffer */
    bool          lse;
    float         scale_mul; /* scale = scale_mul / sqrt(HS) */
    bool          sm75;      /* run on the forced sm_75 path (attn_fwd_sm75 test) */
};

#define BF RK_DTYPE_BF16
#define HF RK_DTYPE_F16
static const struct attn_case attn_cases[] = {
    /*  dt   B  Tq   Tk   NH NKV  HS causal win  qoff  mask        fused  bthd   lse    scale sm75 */
    { BF, 2, 77, 77, 12, 12, 64, true, 0, 0, MASK_NONE, false, false, false, 1.0f, false },
    { BF, 1, 1, 1, 12, 12, 64, false, 0, 0, MASK_NONE, false, false, true, 1.0f, false },
    { BF, 3, 128, 128, 12, 12, 64, false, 0, 0, MASK_RIGHT, false, false, true, 1.0f, false },
    { BF, 3, 200, 200, 12, 12, 32, false, 0, 0, MASK_HOLES, false, false, true, 4.0f, false },
    { BF, 1, 200, 200, 12, 12, 80, true, 0, 0, MASK_NONE, false, false, true, 1.0f, false },
    { BF, 1, 128, 128, 12, 12, 128, false, 0, 0, MASK_NONE, false, false, true, 1.0f, false },
    { BF, 3, 77, 77, 8, 2, 64, true, 0, 0, MASK_RIGHT, false, false, true, 1.0f, false },
    { BF, 1, 200, 200, 8, 2, 128, true, 16, 0, MASK_NONE, false, false, true, 1.0f, false },
    { BF, 2, 77, 77, 12, 12, 64, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false },
    { BF, 3, 128, 128, 12, 12, 64, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false }, /* BERT-like */
    { BF, 3, 1, 1, 12, 12, 64, false, 0, 0, MASK_RIGHT, false, false, true, 1.0f, false },   /* row 2: no key */
    { BF, 3, 200, 200, 12, 12, 80, false, 16, 0, MASK_HOLES, false, false, true, 1.0f, false },
    { BF, 2, 1, 77, 12, 12, 64, true, 0, 76, MASK_RIGHT, false, false, true, 1.0f, false },  /* decode step */
    { BF, 1, 16, 200, 8, 2, 128, true, 16, 184, MASK_NONE, false, false, true, 1.0f, false }, /* chunk + window */
    { BF, 1, 77, 77, 12, 12, 32, true, 0, 0, MASK_NONE, true, false, true, 1.0f, false },
    { BF, 3, 77, 77, 8, 2, 80, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false },     /* fused GQA */
    { BF, 4, 19, 19, 3, 3, 16, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false },     /* the tiny BERT (golden) */
    /* several key tiles of every tile size (64, 128) with holes in the padding mask, HS 64 and 128 */
    { BF, 2, 300, 300, 4, 4, 64, false, 0, 0, MASK_HOLES, false, false, true, 4.0f, false },
    { BF, 3, 200, 200, 4, 2, 128, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false },    /* row 2: no key */
    { HF, 2, 333, 333, 4, 4, 128, true, 64, 0, MASK_HOLES, false, false, true, 1.0f, false },
    /* 6 key tiles of 128 (5 of 128 + a part): each of two K/V stages reused three times, so the mbarrier phase parity
     * of the warp-specialized variant wraps; a chunk at q_offset 500, GQA; and a long HS = 64 row set with padding */
    { BF, 1, 200, 700, 2, 1, 128, true, 0, 500, MASK_HOLES, false, false, true, 1.0f, false },
    { HF, 1, 130, 660, 2, 2, 64, false, 0, 0, MASK_RIGHT, false, false, true, 1.0f, false },
    /* f32: the CUDA kernels take 16-bit inputs (these report skipped there); they check this harness on the CPU */
    { RK_DTYPE_F32, 3, 77, 77, 8, 2, 64, true, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false },
    { RK_DTYPE_F32, 2, 1, 77, 12, 12, 32, true, 16, 76, MASK_HOLES, false, false, true, 1.0f, false },
    { HF, 2, 77, 77, 12, 12, 64, true, 0, 0, MASK_NONE, false, false, true, 1.0f, false },
    { HF, 3, 128, 128, 12, 12, 64, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, false },
    { HF, 1, 200, 200, 8, 2, 128, true, 16, 0, MASK_NONE, false, false, true, 1.0f, false },
    { HF, 3, 200, 200, 12, 12, 80, false, 0, 0, MASK_HOLES, false, false, true, 4.0f, false },
    /* forced sm_75 path: f16 activations */
    { HF, 2, 77, 77, 12, 12, 64, true, 0, 0, MASK_NONE, false, false, true, 1.0f, true },
    { HF, 3, 128, 128, 12, 12, 64, false, 0, 0, MASK_RIGHT, true, true, true, 1.0f, true },
    { HF, 1, 200, 200, 12, 12, 80, false, 0, 0, MASK_NONE, false, false, true, 1.0f, true },
    { HF, 1, 128, 128, 12, 12, 128, true, 0, 0, MASK_NONE, false, false, true, 1.0f, true },
    { HF, 3, 77, 77, 8, 2, 32, false, 0, 0, MASK_HOLES, false, false, true, 4.0f, true },
    { HF, 1, 200, 200, 8, 2, 128, true, 16, 0, MASK_NONE, false, false, true, 1.0f, true },
    { HF, 3, 1, 1, 12, 12, 64, false, 0, 0, MASK_RIGHT, false, false, true, 1.0f, true },
    { HF, 2, 1, 77, 12, 12, 64, true, 0, 76, MASK_RIGHT, false, false, true, 1.0f, true },
    { BF, 3, 77, 77, 12, 12, 64, true, 0, 0, MASK_RIGHT, true, true, true, 1.0f, true },     /* bf16 on sm_75 */
};
#undef BF
#undef HF

/*
 * Runs one case through the dispatcher (variant 0, automatic) and, with CUDA, through every numbered kernel variant
 * of kernels/attn_cuda.h on the same inputs and reference (STYLE.md 6: test every variant). Each run is tallied as
 * its own line, "<case>[variant=<name>]", which RK_TEST_FILTER can select.
 */
static void run_attn(struct rk_backend * be, const struct attn_case * c, const char * cs0, struct tally * t) {
    const int64_t B = c->B, Tq = c->Tq, Tk = c->Tk, NH = c->NH, NKV = c->NKV, HS = c->HS;
    const int64_t es = (int64_t) rk_dtype_traits[c->dt].type_size;
#ifdef RK_HAVE_CUDA
    const int n_variants = be->device == RK_DEVICE_CUDA ? RK_ATTN_FWD_N_VARIANTS : 1;
#else
    const int n_variants = 1;
#endif
    char cs[400];
    bool any = false;
    for (int vi = 0; vi < n_variants && !any; vi++) {
#ifdef RK_HAVE_CUDA
        snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, vi == 0 ? "auto" : rk_cuda_attn_fwd_variant_name(vi));
#else
        snprintf(cs, sizeof(cs), "%s[variant=auto]", cs0);
#endif
        any = case_selected(cs);
    }
    if (!any) return;

    struct rng r = { run_seed() ^ fnv1a(cs0) };
    float *    q  = rand_vec(&r, c->dt, B * NH * Tq * HS, 1.0f);
    float *    k  = rand_vec(&r, c->dt, B * NKV * Tk * HS, 1.0f);
    float *    v  = rand_vec(&r, c->dt, B * NKV * Tk * HS, 1.0f);
    int32_t *  mk = rk_xmalloc((size_t) (B * Tk) * sizeof(int32_t));
    if (c->mask != MASK_NONE) fill_mask(mk, B, Tk, c->mask, &r);
    float * ref     = rk_xmalloc((size_t) (B * NH * Tq * HS) * sizeof(float));
    float * lse_ref = rk_xmalloc((size_t) (B * NH * Tq) * sizeof(float));
    struct rk_attn_params p = { .scale = c->scale_mul / sqrtf((float) HS), .causal = c->causal, .window = c->window,
                                .q_offset = c->q_offset };
    const int64_t qne[4] = { B, NH, Tq, HS }, kne[4] = { B, NKV, Tk, HS };
    struct rk_tensor hq = host_t(q, 4, qne), hk = host_t(k, 4, kne), hv = host_t(v, 4, kne);
    struct rk_tensor hd = host_t(ref, 4, qne), hl = host_t(lse_ref, 3, (int64_t[]) { B, NH, Tq });
    struct rk_tensor hm = rk_tensor_host(mk, RK_DTYPE_I32, 2, (int64_t[]) { B, Tk });
    rk_cpu_attn_fwd(&hd, &hq, &hk, &hv, c->mask != MASK_NONE ? &hm : NULL, &hl, &p);

    /* device side: m[0] q (or fused qkv), m[1] k, m[2] v, m[3] mask, m[4] dst, m[5] lse */
    struct dmem      m[6] = { 0 };
    struct rk_tensor tq, tk, tv, td, tm = { 0 }, tl = { 0 };
    if (c->fused) {
        cr_assert(Tq == Tk, "fused qkv needs Tq == Tk");
        const int64_t W      = (NH + 2 * NKV) * HS; /* elements per token */
        const int64_t nbq[4] = { Tq * W * es, HS * es, W * es, es };
        dmem_init(&m[0], be, (size_t) (B * Tq * W * es));
        tq = dmem_view(&m[0], c->dt, 4, qne, nbq, 0, "q");
        tk = dmem_view(&m[0], c->dt, 4, kne, nbq, (size_t) (NH * HS * es), "k");
        tv = dmem_view(&m[0], c->dt, 4, kne, nbq, (size_t) ((NH + NKV) * HS * es), "v");
        view_set(&m[0], &tq, q);
        view_set(&m[0], &tk, k);
        view_set(&m[0], &tv, v);
    } else {
        tq = padded_tensor(&m[0], be, c->dt, 4, qne, 0, "q");
        tk = padded_tensor(&m[1], be, c->dt, 4, kne, 0, "k");
        tv = padded_tensor(&m[2], be, c->dt, 4, kne, 0, "v");
        view_set(&m[0], &tq, q);
        view_set(&m[1], &tk, k);
        view_set(&m[2], &tv, v);
    }
    if (c->mask != MASK_NONE) {
        tm = padded_tensor(&m[3], be, RK_DTYPE_I32, 2, (int64_t[]) { B, Tk }, 0, "mask");
        view_set_i32(&m[3], &tm, mk);
    }
    if (c->dst_bthd) {
        const int64_t nbd[4] = { Tq * NH * HS * es, HS * es, NH * HS * es, es };
        dmem_init(&m[4], be, (size_t) (B * Tq * NH * HS * es));
        td = dmem_view(&m[4], c->dt, 4, qne, nbd, 0, "dst");
    } else {
        td = padded_tensor(&m[4], be, c->dt, 4, qne, 0, "dst");
    }
    view_mark_output(&m[4], &td);
    if (c->lse) {
        tl = padded_tensor(&m[5], be, RK_DTYPE_F32, 3, (int64_t[]) { B, NH, Tq }, 0, "lse");
        view_mark_output(&m[5], &tl);
    }
    for (int i = 0; i < 4; i++) {
        if (m[i].dev) dmem_upload(&m[i]);
    }

    for (int vi = 0; vi < n_variants; vi++) {
#ifdef RK_HAVE_CUDA
        snprintf(cs, sizeof(cs), "%s[variant=%s]", cs0, vi == 0 ? "auto" : rk_cuda_attn_fwd_variant_name(vi));
#else
        snprintf(cs, sizeof(cs), "%s[variant=auto]", cs0);
#endif
        if (!case_selected(cs)) continue;
        const double t0 = now_ms();
        dmem_upload(&m[4]); /* outputs back to NaN before every run */
        if (c->lse) dmem_upload(&m[5]);
        int rc;
        if (vi == 0) {
            struct rk_op_call call = { .op = RK_OP_ATTN_FWD, .dst = &td,
                                       .src = { &tq, &tk, &tv, c->mask != MASK_NONE ? &tm : NULL, c->lse ? &tl : NULL } };
            call.p.attn = p;
            rc          = gpu_op(be, &call, cs);
            /* the automatic choice takes every 16-bit case (variant 1 takes any shape): unsupported is a failure */
            if (rc == CASE_SKIP && c->dt != RK_DTYPE_F32 && be->device == RK_DEVICE_CUDA) {
                fprintf(stderr, "    %s: the automatic variant refused a 16-bit case\n", cs);
                rc = CASE_FAIL;
            }
        } else {
#ifdef RK_HAVE_CUDA
            const enum rk_status s = rk_cuda_attn_fwd_variant(&td, &tq, &tk, &tv, c->mask != MASK_NONE ? &tm : NULL,
                                                              c->lse ? &tl : NULL, &p, c->sm75, vi,
                                                              rk_backend_cuda_stream(be));
            cr_assert(be->synchronize(be) == RK_OK);
            if (s != RK_OK) fprintf(stderr, "    %s: %s: %s\n", cs, rk_status_name(s), rk_last_error());
            rc = s == RK_OK ? CASE_PASS : s == RK_STATUS_UNSUPPORTED ? CASE_SKIP : CASE_FAIL;
#else
            rc = CASE_SKIP;
#endif
        }
        if (rc == CASE_PASS) {
            struct tol tl_o = tol_for(c->dt);
            /* outputs are averages of v (|o| ~ 0.1): absolute bounds tighter than the generic ones */
            tl_o.atol = c->dt == RK_DTYPE_BF16 ? 4e-3 : 1e-3;
            bool ok = check_output(&m[4], &td, ref, cs, "dst", tl_o);
            if (c->lse) ok = check_output(&m[5], &tl, lse_ref, cs, "lse", (struct tol) { 1e-8, 1e-3, 1e-4 }) && ok;
            for (int i = 0; i < 4; i++) {
                if (m[i].dev) ok = check_unchanged(&m[i], cs, "input") && ok;
            }
            rc = ok ? CASE_PASS : CASE_FAIL;
        }
        tally_add(t, cs, rc, t0);
    }
    for (int i = 0; i < 6; i++) dmem_free(&m[i]);
    free(q);
    free(k);
    free(v);
    free(mk);
    free(ref);
    free(lse_ref);
}

static void attn_test(bool sm75) {
    const char *        test = sm75 ? "ATTN_FWD (forced sm_75 path)" : "ATTN_FWD";
    struct rk_backend * be   = cuda_or_skip_path(test, sm75);
    struct tally t = { 0 };
    for (size_t i = 0; i < sizeof(attn_cases) / sizeof(attn_cases[0]); i++) {
        const struct attn_case * c = &attn_cases[i];
        if (c->sm75 != sm75) continue;
        char cs[320];
        snprintf(cs, sizeof(cs), "ATTN_FWD(dtype=%s,B=%lld,T=%lld,Tk=%lld,NH=%lld,NKV=%lld,HS=%lld,causal=%d,window=%lld,"
                 "q_offset=%lld,mask=%s,fused_qkv=%d,dst_bthd=%d,lse=%d,scale=%gx,sm75=%d)", dtn(c->dt), (long long) c->B,
                 (long long) c->Tq, (long long) c->Tk, (long long) c->NH, (long long) c->NKV, (long long) c->HS,
                 c->causal, (long long) c->window, (long long) c->q_offset, mask_names[c->mask], c->fused, c->dst_bthd,
                 c->lse, (double) c->scale_mul, c->sm75);
        run_attn(be, c, cs, &t);
    }
    rk_backend_free(be);
    tally_finish(test, &t);
}

Test(cuda_ops, attn_fwd) { attn_test(false); }
Test(cuda_ops, attn_fwd_sm75) { attn_test(true); }

/* ------------------------------------------------------------------------------------------------
 * backend contract: no device is not fatal; unsupported combinations are reported, never a crash */

Test(cuda_backend, init_without_device_is_not_fatal) {
    rk_clear_error();
    struct rk_backend * be = rk_backend_cuda_init(0);
    if (be) {
        cr_assert(be->device == RK_DEVICE_CUDA);
        cr_assert(be->act_dtype == RK_DTYPE_BF16 || be->act_dtype == RK_DTYPE_F16);
        rk_backend_free(be);
    } else {
        cr_assert(strlen(rk_last_error()) > 0, "rk_backend_cuda_init returned NULL without an error message");
        fprintf(stderr, "no CUDA backend here: %s\n", rk_last_error());
    }
    cr_assert(rk_backend_cuda_init(1 << 20) == NULL, "a device index that does not exist must give NULL");
}

/* The variant switches of kernels/cuda_ops.h: the environment's default read once, set / reset, range checks. Needs
 * no device (nothing is launched). */
Test(cuda_ops, variant_selection) {
#ifdef RK_HAVE_CUDA
    setenv("RK_GELU_VARIANT", "3", 1);      /* this process only: Criterion runs each test in its own */
    setenv("RK_LAYERNORM_VARIANT", "x", 1); /* not a variant: the built-in default, with a warning */
    cr_assert_eq(rk_cuda_gelu_variant(), 3);
    cr_assert_eq(rk_cuda_layernorm_variant(), 2, "an unusable value gives the built-in default, 2 (kernels/layernorm.cu)");
    setenv("RK_GELU_VARIANT", "2", 1); /* read once: no effect now */
    cr_assert(rk_cuda_gelu_set_variant(4) == RK_OK);
    cr_assert_eq(rk_cuda_gelu_variant(), 4);
    cr_assert(rk_cuda_gelu_set_variant(0) == RK_OK);
    cr_assert_eq(rk_cuda_gelu_variant(), 3);
    cr_assert(rk_cuda_gelu_set_variant(RK_GELU_N_VARIANTS) == RK_STATUS_ARG);
    cr_assert(rk_cuda_layernorm_set_variant(-1) == RK_STATUS_ARG);
    cr_assert_eq(rk_cuda_gelu_variant(), 3, "a rejected variant must change nothing");
    cr_assert(rk_cuda_layernorm_set_variant(RK_LAYERNORM_N_VARIANTS - 1) == RK_OK);
    cr_assert_eq(rk_cuda_layernorm_variant(), RK_LAYERNORM_N_VARIANTS - 1);
    for (int v = 0; v < RK_GELU_N_VARIANTS; v++) cr_assert(strcmp(rk_cuda_gelu_variant_name(v), "?") != 0);
    for (int v = 0; v < RK_LAYERNORM_N_VARIANTS; v++) cr_assert(strcmp(rk_cuda_layernorm_variant_name(v), "?") != 0);
    cr_assert_str_eq(rk_cuda_gelu_variant_name(RK_GELU_N_VARIANTS), "?");
    /* the matmul + GELU choice: the same knob; only 2 to 6 have a fused kernel, whose launcher refuses the others */
    setenv("RK_MATMUL_GELU_VARIANT", "3", 1);
    cr_assert_eq(rk_cuda_matmul_gelu_variant(), 3);
    cr_assert(rk_cuda_matmul_gelu_set_variant(1) == RK_OK);
    cr_assert_eq(rk_cuda_matmul_gelu_variant(), 1);
    cr_assert(rk_cuda_matmul_gelu_set_variant(RK_MATMUL_GELU_N_VARIANTS) == RK_STATUS_ARG);
    for (int v = 0; v < RK_MATMUL_GELU_N_VARIANTS; v++) cr_assert(strcmp(rk_cuda_matmul_gelu_variant_name(v), "?") != 0);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(1), 0);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(2), 256);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(3), 128);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(4), 256);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(5), 128);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(6), 128);
    cr_assert_eq(rk_cuda_matmul_gelu_tile_n(RK_MATMUL_GELU_N_VARIANTS), 0);
    cr_assert(rk_cuda_matmul_gelu_fused(NULL, NULL, NULL, NULL, 1, NULL) == RK_STATUS_ARG);
#else
    cr_skip_test("no CUDA in this build");
#endif
}

/* RK_PROFILE=1 on the CUDA backend: the ops are timed with events and summed per op, MATMUL's kinds together. */
Test(cuda_ops, profile) {
#ifdef RK_HAVE_CUDA
    setenv("RK_PROFILE", "1", 1); /* this process only: Criterion runs each test in its own */
    struct rk_backend * be = cuda_or_skip("PROFILE");
    if (be->device != RK_DEVICE_CUDA) {
        rk_backend_free(be);
        cr_skip_test("the profile is the CUDA backend's");
    }
    const enum rk_dtype dt = be->act_dtype;
    struct rk_tensor *  x  = rk_tensor_new(be, dt, 2, (int64_t[]) { 4, 64 }, "x");
    struct rk_tensor *  w  = rk_tensor_new(be, dt, 2, (int64_t[]) { 128, 64 }, "w");
    struct rk_tensor *  d  = rk_tensor_new(be, dt, 2, (int64_t[]) { 4, 128 }, "d");
    cr_assert(x && w && d);
    float * h = rk_xcalloc(128 * 64, sizeof(float));
    for (int i = 0; i < 128 * 64; i++) h[i] = (float) ((i * 7) % 13 - 6) / 8.0f;
    cr_assert(rk_tensor_set_f32(x, h) == RK_OK && rk_tensor_set_f32(w, h) == RK_OK);
    cr_assert(rk_op_matmul(be, d, x, w, NULL, RK_ACT_NONE) == RK_OK);
    cr_assert(rk_op_matmul(be, d, x, w, NULL, RK_ACT_GELU) == RK_OK);
    cr_assert(rk_op_matmul_add(be, d, x, w, NULL) == RK_OK);
    long         calls = -1;
    const double ms    = rk_backend_cuda_profile_ms(be, RK_OP_MATMUL, &calls);
    cr_assert_eq(calls, 3, "three MATMUL calls (plain, GELU, accumulate), got %ld", calls);
    cr_assert(ms > 0.0 && isfinite(ms), "MATMUL time %g ms", ms);
    cr_assert_eq(rk_backend_cuda_profile_ms(be, RK_OP_SOFTMAX, &calls), 0.0);
    cr_assert_eq(calls, 0);
    free(h);
    rk_tensor_free(x);
    rk_tensor_free(w);
    rk_tensor_free(d);
    rk_backend_free(be);
#else
    cr_skip_test("no CUDA in this build");
#endif
}

Test(cuda_ops, unsupported_is_reported) {
    struct rk_backend * be = cuda_or_skip("UNSUPPORTED");
    struct odd_views    v;
    odd_views_init(&v, be);
    struct rk_op_call calls[] = {
        { .op = RK_OP_GELU, .dst = &v.i32, .src = { &v.i32 } },      /* integer activations */
        { .op = RK_OP_ADD, .dst = &v.a, .src = { &v.a, &v.f } },     /* mixed dtypes */
        { .op = RK_OP_MATMUL, .dst = &v.a, .src = { &v.a, &v.f } },  /* mixed dtypes */
        { .op = RK_OP_SOFTMAX, .dst = &v.a, .src = { &v.col } },     /* last dim not contiguous */
        { .op = RK_OP_LAYERNORM, .dst = &v.f, .src = { &v.f, &v.a } }, /* weight dtype differs */
    };
    expect_unsupported(be, calls, sizeof(calls) / sizeof(calls[0]));
    dmem_free(&v.m);
    rk_backend_free(be);
}
