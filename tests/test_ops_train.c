/*
 * test_ops_train.c: parity of the CUDA training kernels against their CPU references (STYLE.md 6), with the harness
 * of tests/test_ops.c (tests/ops_harness.h: seeded inputs rounded to the case dtype, redzones and a NaN prefill
 * around every device buffer, normalized-MSE + element-wise bounds, case strings, RK_TEST_FILTER, RK_TEST_SEED).
 *
 *   EMBED_BWD, BCE_LOGITS, SOFTMAX_XENT, DROPOUT run through rk_op() on the backend; the optimizer kernels of
 *   kernels/cuda_train_ops.h (AdamW, sumsq, scale) and the loss-scale argument of the losses are launchers, called
 *   directly. Expectations:
 *   - EMBED_BWD: exact. Each table element is old + the tokens of its row in token order, in fp32, rounded once:
 *     the CPU reference's f32 arithmetic, so the device must give round(ref) bit for bit. Every case runs twice and
 *     the two results must be bit-identical (determinism with repeated ids). Out-of-range ids (device only) are
 *     skipped: the reference is the CPU run without those tokens for that table.
 *   - DROPOUT: exact: the keep pattern must equal rk_cpu_dropout's bit for bit, and each value round(x * scale).
 *   - ADAMW: f32 p, m, v within 2 ulp of rk_cpu_adamw_update after every step (expected: identical), with the
 *     gradient rounded to its dtype and multiplied by grad_mul as the device does; the compute copy exact.
 *   - SUMSQ: within 1e-6 relative of the double sum; two runs bit-identical; inf and NaN propagate.
 *   - losses: normalized-MSE + element-wise bounds scaled to the gradient's size (1/count).
 * RK_TEST_BACKEND=cpu runs the tables against the CPU backend (and the CPU optimizer functions in the launchers'
 * place): a self-test of this file without a GPU. Cases the CPU cannot run (16-bit dtypes, strided rows, device-only
 * behaviour) are reported as skipped. cr_skip_test only when there is no CUDA device or no CUDA in the build.
 * Run on a GPU:  make CUDA_ARCH=90 build/tests/test_ops_train && build/tests/test_ops_train --jobs 1
 */
#include "ops_harness.h"

#include "kernels/dropout.h"
#include "kernels/embed.h"
#include "kernels/loss.h"
#include "train/optim.h"
#ifdef RK_HAVE_CUDA
#include "kernels/cuda_ops.h"
#include "kernels/cuda_train_ops.h"
#endif

/* ------------------------------------------------------------------------------------------------
 * helpers */

static bool on_cuda(const struct rk_backend * be) { return be->device == RK_DEVICE_CUDA; }

/* The case result of a launcher called directly (synchronizes first). */
static int launcher_rc(struct rk_backend * be, enum rk_status s, const char * cs) {
    cr_assert(be->synchronize(be) == RK_OK);
    if (s == RK_OK) return CASE_PASS;
    fprintf(stderr, "    %s: %s: %s\n", cs, s == RK_STATUS_UNSUPPORTED ? "unsupported" : rk_status_name(s),
            rk_last_error());
    return s == RK_STATUS_UNSUPPORTED ? CASE_SKIP : CASE_FAIL;
}

static int skip_case(const char * cs, const char * why) {
    fprintf(stderr, "    %s: %s\n", cs, why);
    return CASE_SKIP;
}

/* A dense 1-D buffer of n elements of dt in m, values vals (NULL: left as NaN); returns its view. */
static struct rk_tensor vec_tensor(struct dmem * m, struct rk_backend * be, enum rk_dtype dt, int64_t n,
                                   const float * vals, const char * name) {
    struct rk_tensor t = padded_tensor(m, be, dt, 1, (int64_t[]) { n > 0 ? n : 1 }, 0, name);
    if (vals) view_set(m, &t, vals);
    return t;
}

/* Fetches view v of m as f32 (also the redzone check); *ok &= the check. Returns malloc'd values. */
static float * fetch_f32(struct dmem * m, const struct rk_tensor * v, const char * cs, const char * what, bool * ok) {
    uint8_t * got = NULL;
    *ok           = dmem_fetch(m, cs, what, &got) && *ok;
    float * g     = rk_xmalloc((size_t) rk_tensor_nelements(v) * sizeof(float));
    view_get(m, got, v, g);
    free(got);
    return g;
}

/* Exact comparison (bit patterns of the f32 values; NaN never equal). */
static bool check_exact(const char * cs, const char * what, const float * got, const float * ref, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &ref[i], sizeof(float)) == 0 && !isnan(got[i])) continue;
        if (bad < 5) {
            fprintf(stderr, "    %s: %s[%lld]: ref %.9g got %.9g (exact match required)\n", cs, what, (long long) i,
                    (double) ref[i], (double) got[i]);
        }
        bad++;
    }
    if (bad) fprintf(stderr, "    %s: %s: %lld of %lld elements differ\n", cs, what, (long long) bad, (long long) n);
    return bad == 0;
}

/* Distance in units in the last place between two finite floats (INT64_MAX when either is not finite). */
static int64_t ulp_dist(float a, float b) {
    if (!isfinite(a) || !isfinite(b)) return INT64_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    const int64_t oa = ia < 0 ? (int64_t) INT32_MIN - ia : ia, ob = ib < 0 ? (int64_t) INT32_MIN - ib : ib;
    return oa > ob ? oa - ob : ob - oa;
}

static bool check_ulp(const char * cs, const char * what, const float * got, const float * ref, int64_t n,
                      int64_t max_ulp) {
    int64_t bad = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t d = ulp_dist(got[i], ref[i]);
        if (d > worst) worst = d;
        if (d <= max_ulp) continue;
        if (bad < 5) {
            fprintf(stderr, "    %s: %s[%lld]: ref %.9g got %.9g (%lld ulp > %lld)\n", cs, what, (long long) i,
                    (double) ref[i], (double) got[i], (long long) d, (long long) max_ulp);
        }
        bad++;
    }
    if (bad) fprintf(stderr, "    %s: %s: %lld of %lld elements off by more than %lld ulp\n", cs, what, (long long) bad,
                     (long long) n, (long long) max_ulp);
    return bad == 0;
}

static void round_all(enum rk_dtype dt, float * v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = round_to(dt, v[i]);
}

static float * copy_vec(const float * v, int64_t n) {
    float * c = rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(float));
    if (n > 0) memcpy(c, v, (size_t) n * sizeof(float));
    return c;
}

/* Walks a case table: builds each case string, applies RK_TEST_FILTER, seeds from the case string, tallies. */
typedef void (*case_name_fn)(const void * c, char * cs, size_t n);
typedef int (*case_run_fn)(struct rk_backend * be, const void * c, const char * cs, struct rng * r);

static void run_table(const char * test, const void * cases, size_t n_cases, size_t case_size, case_name_fn name,
                      case_run_fn run) {
    struct rk_backend * be = cuda_or_skip(test);
    struct tally        t  = { 0 };
    for (size_t i = 0; i < n_cases; i++) {
        const void * c = (const char *) cases + i * case_size;
        char         cs[320];
        name(c, cs, sizeof(cs));
        if (!case_selected(cs)) continue;
        struct rng   r  = { run_seed() ^ fnv1a(cs) };
        const double t0 = now_ms();
        tally_add(&t, cs, run(be, c, cs, &r), t0);
    }
    rk_backend_free(be);
    tally_finish(test, &t);
}

#define RUN_TABLE(test, cases, name, run) \
    run_table(test, cases, sizeof(cases) / sizeof((cases)[0]), sizeof((cases)[0]), name, run)

#define BF RK_DTYPE_BF16
#define HF RK_DTYPE_F16
#define F32 RK_DTYPE_F32
#define NO_COPY RK_DTYPE_COUNT /* AdamW without a compute copy */

/* ------------------------------------------------------------------------------------------------
 * EMBED_BWD */

enum { IDS_RANDOM = 0, IDS_REPEAT, IDS_SAME };
static const char * const ids_names[] = { "random", "repeat", "same" };

struct eb_case {
    enum rk_dtype dg, dw;       /* dout dtype, gradient-table dtype */
    int64_t       B, T, C, V;   /* V: vocab rows */
    int64_t       P;            /* rows of dwpe (0: no dwpe) */
    int64_t       NTT;          /* rows of dwtt (0: no dwtt) */
    bool          type_ids;     /* type ids given (else every token is type 0) */
    int64_t       pos_offset;
    int           ids;          /* IDS_*: random over V, three values, or all the same */
    int64_t       pad;          /* row padding of dout and the tables */
    bool          bad;          /* one token id = V and one type id = NTT (device: skipped) */
};

static const struct eb_case eb_cases[] = {
    /*  dg   dw    B    T    C     V    P  NTT  tids off ids         pad bad */
    { F32, F32, 2, 77, 768, 1000, 128, 2, true, 0, IDS_RANDOM, 0, false },  /* BERT-like, 2 channel chunks */
    { F32, F32, 1, 1, 5, 3, 1, 0, false, 0, IDS_RANDOM, 0, false },         /* N = 1, odd C */
    { F32, F32, 8, 128, 128, 30, 130, 2, true, 2, IDS_REPEAT, 0, false },   /* heavy repeats, pos_offset 2 */
    { F32, F32, 4, 300, 64, 50, 0, 1, false, 0, IDS_SAME, 0, false },       /* one row takes every token */
    { F32, F32, 3, 33, 97, 200, 40, 3, true, 5, IDS_RANDOM, 0, false },     /* odd C: scalar path */
    { F32, F32, 2, 50, 96, 100, 50, 2, true, 0, IDS_REPEAT, 3, false },     /* strided rows */
    { F32, F32, 2, 40, 64, 20, 40, 2, true, 0, IDS_REPEAT, 0, true },       /* out-of-range ids */
    { BF, BF, 2, 77, 1030, 500, 77, 2, true, 0, IDS_REPEAT, 0, false },     /* 2 chunks of 1024, repeats */
    { BF, BF, 4, 64, 384, 3000, 64, 2, true, 0, IDS_RANDOM, 0, false },
    { HF, HF, 2, 64, 256, 40, 64, 2, false, 0, IDS_REPEAT, 0, false },
    { BF, F32, 4, 64, 384, 40, 64, 2, true, 0, IDS_REPEAT, 0, false },      /* bf16 dout, f32 master grads */
    { HF, F32, 1, 17, 33, 9, 17, 1, false, 0, IDS_SAME, 1, false },
};

static void eb_name(const void * cv, char * cs, size_t n) {
    const struct eb_case * c = cv;
    snprintf(cs, n, "EMBED_BWD(dout=%s,grads=%s,B=%lld,T=%lld,C=%lld,V=%lld,P=%lld,NTT=%lld,type_ids=%d,"
             "pos_offset=%lld,ids=%s,pad=%lld,bad_ids=%d)", dtn(c->dg), dtn(c->dw), (long long) c->B, (long long) c->T,
             (long long) c->C, (long long) c->V, (long long) c->P, (long long) c->NTT, c->type_ids,
             (long long) c->pos_offset, ids_names[c->ids], (long long) c->pad, c->bad);
}

/* The reference of one table: rk_cpu_embed_bwd with the tokens whose key is out of range left out (their dout rows
 * zeroed and their keys set to 0: adding +0 leaves row 0 unchanged). which: 0 word, 1 position, 2 type. */
static void eb_reference(const struct eb_case * c, int which, float * tab, const float * g, const int32_t * ids,
                         const int32_t * tt) {
    const int64_t N = c->B * c->T, C = c->C;
    float *       gz  = copy_vec(g, N * C);
    int32_t *     idz = rk_xmalloc((size_t) N * sizeof(int32_t));
    int32_t *     ttz = rk_xmalloc((size_t) N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) {
        const bool bad_id = ids[i] < 0 || ids[i] >= c->V;
        const bool bad_tt = c->type_ids && (tt[i] < 0 || tt[i] >= c->NTT);
        idz[i]            = bad_id ? 0 : ids[i];
        ttz[i]            = c->type_ids ? (bad_tt ? 0 : tt[i]) : 0;
        if ((which == 0 && bad_id) || (which == 2 && bad_tt)) memset(gz + i * C, 0, (size_t) C * sizeof(float));
    }
    float *          junk = rk_xcalloc((size_t) (c->V * C), sizeof(float)); /* dwte of the position/type runs */
    struct rk_tensor hg   = host_t(gz, 3, (int64_t[]) { c->B, c->T, C });
    struct rk_tensor hi   = rk_tensor_host(idz, RK_DTYPE_I32, 2, (int64_t[]) { c->B, c->T });
    struct rk_tensor ht   = rk_tensor_host(ttz, RK_DTYPE_I32, 2, (int64_t[]) { c->B, c->T });
    struct rk_tensor he   = host_t(which == 0 ? tab : junk, 2, (int64_t[]) { c->V, C });
    struct rk_tensor hp   = host_t(tab, 2, (int64_t[]) { c->P > 0 ? c->P : 1, C });
    struct rk_tensor htt  = host_t(tab, 2, (int64_t[]) { c->NTT > 0 ? c->NTT : 1, C });
    struct rk_embed_params p = { .pos_offset = c->pos_offset };
    const enum rk_status   s = rk_cpu_embed_bwd(&he, which == 1 ? &hp : NULL, which == 2 ? &htt : NULL, &hg, &hi,
                                                c->type_ids ? &ht : NULL, &p);
    cr_assert(s == RK_OK, "CPU embed_bwd reference failed: %s", rk_last_error());
    free(junk);
    free(gz);
    free(idz);
    free(ttz);
}

static int run_embed_bwd(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct eb_case * c = cv;
    if (c->bad && !on_cuda(be)) return skip_case(cs, "out-of-range ids are skipped on the device only");
    const int64_t N = c->B * c->T, C = c->C;
    float *       g = rand_vec(r, c->dg, N * C, 1.0f);
    int32_t *     ids = rk_xmalloc((size_t) N * sizeof(int32_t));
    int32_t *     tt  = rk_xmalloc((size_t) N * sizeof(int32_t));
    const int64_t three[3] = { rng_int(r, c->V), rng_int(r, c->V), rng_int(r, c->V) };
    for (int64_t i = 0; i < N; i++) {
        ids[i] = (int32_t) (c->ids == IDS_RANDOM   ? rng_int(r, c->V)
                            : c->ids == IDS_REPEAT ? three[rng_int(r, 3)]
                                                   : 7 % c->V);
        tt[i]  = (int32_t) (c->NTT > 0 ? rng_int(r, c->NTT) : 0);
    }
    if (c->bad) {
        ids[N / 2] = (int32_t) c->V;
        ids[N - 1] = -3;
        tt[N / 3]  = (int32_t) c->NTT;
    }
    /* tables: old values (rounded to the table dtype), then the references computed in f32 and rounded once */
    const int64_t rows[3] = { c->V, c->P, c->NTT };
    float *       tab0[3] = { NULL, NULL, NULL }, *ref[3] = { NULL, NULL, NULL };
    for (int k = 0; k < 3; k++) {
        if (rows[k] == 0) continue;
        tab0[k] = rand_vec(r, c->dw, rows[k] * C, 1.0f);
        ref[k]  = copy_vec(tab0[k], rows[k] * C);
        eb_reference(c, k, ref[k], g, ids, tt);
        round_all(c->dw, ref[k], rows[k] * C);
    }

    struct dmem      mg = { 0 }, mi = { 0 }, mt = { 0 }, mtab[3] = { { 0 } };
    struct rk_tensor tg = padded_tensor(&mg, be, c->dg, 3, (int64_t[]) { c->B, c->T, C }, c->pad, "dout");
    struct rk_tensor ti = padded_tensor(&mi, be, RK_DTYPE_I32, 2, (int64_t[]) { c->B, c->T }, 0, "ids");
    struct rk_tensor ttt = { 0 }, ttab[3] = { { 0 } };
    view_set(&mg, &tg, g);
    view_set_i32(&mi, &ti, ids);
    if (c->type_ids) {
        ttt = padded_tensor(&mt, be, RK_DTYPE_I32, 2, (int64_t[]) { c->B, c->T }, 0, "type_ids");
        view_set_i32(&mt, &ttt, tt);
        dmem_upload(&mt);
    }
    const char * tab_names[3] = { "dwte", "dwpe", "dwtt" };
    for (int k = 0; k < 3; k++) {
        if (rows[k] == 0) continue;
        ttab[k] = padded_tensor(&mtab[k], be, c->dw, 2, (int64_t[]) { rows[k], C }, c->pad, tab_names[k]);
        view_set(&mtab[k], &ttab[k], tab0[k]);
        view_mark_output(&mtab[k], &ttab[k]);
    }
    dmem_upload(&mg);
    dmem_upload(&mi);

    struct rk_op_call call = { .op = RK_OP_EMBED_BWD, .dst = &ttab[0],
                               .src = { &tg, &ti, c->type_ids ? &ttt : NULL, c->P ? &ttab[1] : NULL,
                                        c->NTT ? &ttab[2] : NULL } };
    call.p.embed = (struct rk_embed_params) { .pos_offset = c->pos_offset };
    int      rc     = CASE_PASS;
    bool     ok     = true;
    float *  first[3] = { NULL, NULL, NULL };
    for (int run = 0; run < 2 && rc == CASE_PASS; run++) { /* twice: the second run must repeat the first's bits */
        for (int k = 0; k < 3; k++) {
            if (rows[k]) dmem_upload(&mtab[k]);
        }
        rc = gpu_op(be, &call, cs);
        if (rc != CASE_PASS) break;
        for (int k = 0; k < 3; k++) {
            if (rows[k] == 0) continue;
            float * got = fetch_f32(&mtab[k], &ttab[k], cs, tab_names[k], &ok);
            if (run == 0) {
                ok       = check_exact(cs, tab_names[k], got, ref[k], rows[k] * C) && ok;
                first[k] = got;
            } else {
                char what[64];
                snprintf(what, sizeof(what), "%s (second run vs first)", tab_names[k]);
                ok = check_exact(cs, what, got, first[k], rows[k] * C) && ok;
                free(got);
            }
        }
    }
    if (rc == CASE_PASS) {
        ok = check_unchanged(&mg, cs, "dout") && check_unchanged(&mi, cs, "ids") && ok;
        if (c->type_ids) ok = check_unchanged(&mt, cs, "type_ids") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mg);
    dmem_free(&mi);
    dmem_free(&mt);
    for (int k = 0; k < 3; k++) {
        dmem_free(&mtab[k]);
        free(tab0[k]);
        free(ref[k]);
        free(first[k]);
    }
    free(g);
    free(ids);
    free(tt);
    return rc;
}

Test(cuda_train_ops, embed_bwd) { RUN_TABLE("EMBED_BWD", eb_cases, eb_name, run_embed_bwd); }

/* ------------------------------------------------------------------------------------------------
 * BCE_LOGITS and SOFTMAX_XENT */

enum { DL_NONE = 0, DL_OUT, DL_ALIAS }; /* no dlogits / a separate buffer / written over the logits */
static const char * const dl_names[] = { "none", "out", "alias" };

/* Tolerance of a gradient whose elements are at most about `mag` (1/count of the mean). */
static struct tol grad_tol(enum rk_dtype dt, double mag) {
    switch (dt) {
        case RK_DTYPE_F32: return (struct tol) { 1e-10, 1e-6 * mag, 1e-5 };
        case RK_DTYPE_F16: return (struct tol) { 1e-5, 1e-7 + 2e-3 * mag, 2e-3 }; /* f16 subnormals below 6e-5 */
        default: return (struct tol) { 1e-4, 1e-2 * mag, 1e-2 };
    }
}
static const struct tol loss_tol = { 1e-10, 1e-6, 1e-5 };

/* Device buffers of a loss case: logits (+ dlogits, separate or the same buffer), loss (1) f32. */
struct loss_bufs {
    struct dmem      mx, md, ml;
    struct rk_tensor tx, td, tl;
    struct dmem *    mdl; /* where dlogits live: &md, &mx (alias) or NULL */
};

static void loss_bufs_init(struct loss_bufs * b, struct rk_backend * be, enum rk_dtype dt, int64_t N, int64_t C,
                           int64_t pad, int dl, const float * x) {
    memset(b, 0, sizeof(*b));
    const int64_t ne[2] = { N, C };
    b->tx = padded_tensor(&b->mx, be, dt, 2, ne, pad, "logits");
    view_set(&b->mx, &b->tx, x);
    if (dl == DL_OUT) {
        b->td  = padded_tensor(&b->md, be, dt, 2, ne, pad, "dlogits");
        b->mdl = &b->md;
    } else if (dl == DL_ALIAS) {
        b->td  = b->tx;
        b->mdl = &b->mx;
    }
    if (b->mdl) view_mark_output(b->mdl, &b->td);
    b->tl = vec_tensor(&b->ml, be, RK_DTYPE_F32, 1, NULL, "loss");
    view_mark_output(&b->ml, &b->tl);
    dmem_upload(&b->mx);
    if (dl == DL_OUT) dmem_upload(&b->md);
    dmem_upload(&b->ml);
}

/* Checks the loss, dlogits (when present) and that the logits are unchanged (when not overwritten). */
static bool loss_bufs_check(struct loss_bufs * b, const char * cs, float loss_ref, const float * dref,
                            struct tol dtol) {
    bool ok = check_output(&b->ml, &b->tl, &loss_ref, cs, "loss", loss_tol);
    if (b->mdl) ok = check_output(b->mdl, &b->td, dref, cs, "dlogits", dtol) && ok;
    if (b->mdl != &b->mx) ok = check_unchanged(&b->mx, cs, "logits") && ok;
    return ok;
}

static void loss_bufs_free(struct loss_bufs * b) {
    dmem_free(&b->mx);
    dmem_free(&b->md);
    dmem_free(&b->ml);
}

struct bce_case {
    enum rk_dtype dt;
    int64_t       N, L;
    bool          pos_weight;
    int           dl;      /* DL_* */
    bool          soft;    /* soft targets in [0, 1] instead of 0/1 */
    float         xscale;  /* logits uniform in [-xscale, xscale] */
    int64_t       pad;     /* row padding of logits, targets, dlogits */
    float         gscale;  /* dlogits_scale (the op's params) */
};

static const struct bce_case bce_cases[] = {
    /*  dt   N    L    pw     dl        soft  xs    pad gscale */
    { F32, 32, 90, true, DL_OUT, false, 4.0f, 0, 1.0f },     /* multi-label head */
    { F32, 1, 1, false, DL_OUT, false, 1.0f, 0, 1.0f },
    { F32, 7, 13, true, DL_ALIAS, true, 3.0f, 0, 1.0f },
    { F32, 300, 1000, false, DL_OUT, false, 2.0f, 0, 1.0f }, /* 3e5 elements in one block */
    { F32, 16, 33, true, DL_OUT, false, 40.0f, 0, 1.0f },    /* |x| up to 40: softplus without overflow */
    { F32, 5, 21, false, DL_NONE, true, 2.0f, 0, 1.0f },
    { F32, 9, 30, true, DL_OUT, false, 4.0f, 3, 1.0f },      /* strided rows */
    { F32, 32, 90, true, DL_OUT, false, 4.0f, 0, 1024.0f },  /* loss scale on the gradient */
    { BF, 32, 90, true, DL_OUT, false, 4.0f, 0, 1.0f },
    { BF, 7, 13, false, DL_ALIAS, true, 8.0f, 0, 1.0f },
    { HF, 32, 90, true, DL_ALIAS, false, 4.0f, 0, 1.0f },
    { HF, 64, 200, false, DL_OUT, true, 4.0f, 0, 65536.0f }, /* fp16 with a loss scale: no underflow */
};

static void bce_name(const void * cv, char * cs, size_t n) {
    const struct bce_case * c = cv;
    snprintf(cs, n, "BCE_LOGITS(dtype=%s,N=%lld,L=%lld,pos_weight=%d,dlogits=%s,soft=%d,xscale=%g,pad=%lld,"
             "dlogits_scale=%g)", dtn(c->dt), (long long) c->N, (long long) c->L, c->pos_weight, dl_names[c->dl],
             c->soft, (double) c->xscale, (long long) c->pad, (double) c->gscale);
}

static int run_bce(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct bce_case * c = cv;
    const int64_t N = c->N, L = c->L, n = N * L;
    float *       x  = rand_vec(r, c->dt, n, c->xscale);
    float *       y  = rk_xmalloc((size_t) n * sizeof(float));
    float *       pw = rk_xmalloc((size_t) L * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        y[i] = round_to(c->dt, c->soft ? 0.5f + 0.5f * rng_uniform(r) : (float) (rng_next(r) & 1));
    }
    for (int64_t j = 0; j < L; j++) pw[j] = round_to(c->dt, 1.75f + 1.25f * rng_uniform(r)); /* [0.5, 3) */
    float *          dref = rk_xmalloc((size_t) n * sizeof(float));
    float            lref = 0.0f;
    struct rk_tensor hl = host_t(&lref, 1, (int64_t[]) { 1 }), hd = host_t(dref, 2, (int64_t[]) { N, L });
    struct rk_tensor hx = host_t(x, 2, (int64_t[]) { N, L }), hy = host_t(y, 2, (int64_t[]) { N, L });
    struct rk_tensor hp = host_t(pw, 1, (int64_t[]) { L });
    rk_cpu_bce_logits(&hl, &hd, &hx, &hy, c->pos_weight ? &hp : NULL, c->gscale);

    struct loss_bufs b;
    loss_bufs_init(&b, be, c->dt, N, L, c->pad, c->dl, x);
    struct dmem      my = { 0 }, mp = { 0 };
    struct rk_tensor ty = padded_tensor(&my, be, c->dt, 2, (int64_t[]) { N, L }, c->pad, "targets");
    struct rk_tensor tp = vec_tensor(&mp, be, c->dt, L, pw, "pos_weight");
    view_set(&my, &ty, y);
    dmem_upload(&my);
    dmem_upload(&mp);
    struct rk_op_call call = { .op = RK_OP_BCE_LOGITS, .dst = &b.tl,
                               .src = { &b.tx, &ty, c->pos_weight ? &tp : NULL, b.mdl ? &b.td : NULL } };
    call.p.loss.dlogits_scale = c->gscale;
    int rc                    = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        double pwmax = 1.0;
        for (int64_t j = 0; c->pos_weight && j < L; j++) pwmax = fmax(pwmax, pw[j]);
        bool ok = loss_bufs_check(&b, cs, lref, dref, grad_tol(c->dt, pwmax * c->gscale / (double) n));
        ok = check_unchanged(&my, cs, "targets") && check_unchanged(&mp, cs, "pos_weight") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    loss_bufs_free(&b);
    dmem_free(&my);
    dmem_free(&mp);
    free(x);
    free(y);
    free(pw);
    free(dref);
    return rc;
}

Test(cuda_train_ops, bce_logits) { RUN_TABLE("BCE_LOGITS", bce_cases, bce_name, run_bce); }

enum { IGN_NONE = 0, IGN_SOME, IGN_ALL };
static const char * const ign_names[] = { "none", "some", "all" };

struct xent_case {
    enum rk_dtype dt;
    int64_t       N, V;
    int           ign;     /* IGN_*: rows with target RK_XENT_IGNORE_INDEX */
    int           dl;      /* DL_* */
    float         xscale;
    int64_t       pad;
    bool          bad;     /* one target = V (device: NaN loss and a NaN dlogits row) */
    float         gscale;  /* dlogits_scale; not 1 on CUDA: the launcher directly (its scratch is checked too) */
};

static const struct xent_case xent_cases[] = {
    /*  dt   N     V      ign       dl        xs    pad bad    gscale */
    { F32, 32, 10, IGN_SOME, DL_OUT, 4.0f, 0, false, 1.0f },     /* classifier head */
    { F32, 1, 1, IGN_NONE, DL_OUT, 1.0f, 0, false, 1.0f },
    { F32, 1, 7, IGN_NONE, DL_ALIAS, 2.0f, 0, false, 1.0f },
    { F32, 300, 2, IGN_SOME, DL_OUT, 4.0f, 0, false, 1.0f },
    { F32, 4, 50000, IGN_SOME, DL_OUT, 8.0f, 0, false, 1.0f },   /* LM-sized vocab */
    { F32, 3, 50257, IGN_NONE, DL_ALIAS, 8.0f, 0, false, 1.0f }, /* odd V: scalar path */
    { F32, 6, 1000, IGN_ALL, DL_OUT, 4.0f, 0, false, 1.0f },     /* loss 0, zero gradient */
    { F32, 8, 333, IGN_SOME, DL_NONE, 30.0f, 0, false, 1.0f },
    { F32, 9, 130, IGN_SOME, DL_OUT, 4.0f, 5, false, 1.0f },     /* strided rows */
    { F32, 16, 100, IGN_SOME, DL_OUT, 4.0f, 0, true, 1.0f },     /* out-of-range target */
    { F32, 32, 10, IGN_SOME, DL_OUT, 4.0f, 0, false, 512.0f },
    { BF, 4, 50000, IGN_SOME, DL_ALIAS, 8.0f, 0, false, 1.0f },
    { BF, 32, 30522, IGN_SOME, DL_OUT, 4.0f, 0, false, 1.0f },
    { BF, 5, 50257, IGN_NONE, DL_OUT, 4.0f, 3, false, 1.0f },
    { HF, 8, 50000, IGN_SOME, DL_OUT, 8.0f, 0, false, 1.0f },
    { HF, 64, 17, IGN_SOME, DL_ALIAS, 4.0f, 0, false, 65536.0f },
};

static void xent_name(const void * cv, char * cs, size_t n) {
    const struct xent_case * c = cv;
    snprintf(cs, n, "SOFTMAX_XENT(dtype=%s,N=%lld,V=%lld,ignore=%s,dlogits=%s,xscale=%g,pad=%lld,bad_target=%d,"
             "dlogits_scale=%g)", dtn(c->dt), (long long) c->N, (long long) c->V, ign_names[c->ign], dl_names[c->dl],
             (double) c->xscale, (long long) c->pad, c->bad, (double) c->gscale);
}

/* The out-of-range-target case: the loss must be NaN and the bad row of dlogits all NaN; the other rows must match
 * the reference (made with a valid target in the bad row, so the row count is the same). */
static bool xent_check_bad(struct loss_bufs * b, const char * cs, int64_t bad_row, int64_t V, const float * dref,
                           struct tol dtol) {
    bool    ok   = true;
    float * loss = fetch_f32(&b->ml, &b->tl, cs, "loss", &ok);
    if (!isnan(loss[0])) {
        fprintf(stderr, "    %s: loss %g, expected NaN for an out-of-range target\n", cs, (double) loss[0]);
        ok = false;
    }
    free(loss);
    if (b->mdl) {
        const int64_t n = rk_tensor_nelements(&b->td);
        float *       d = fetch_f32(b->mdl, &b->td, cs, "dlogits", &ok);
        float *       e = copy_vec(dref, n);
        int64_t       not_nan = 0;
        for (int64_t j = bad_row * V; j < (bad_row + 1) * V; j++) {
            not_nan += !isnan(d[j]);
            d[j] = e[j] = 0.0f; /* checked here */
        }
        if (not_nan) {
            fprintf(stderr, "    %s: %lld elements of the bad row of dlogits are not NaN\n", cs, (long long) not_nan);
        }
        ok = not_nan == 0 && ok;
        ok = check_close(cs, "dlogits (other rows)", d, e, n, dtol) && ok;
        free(d);
        free(e);
    }
    return ok;
}

static int run_xent(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct xent_case * c = cv;
    if (c->bad && !on_cuda(be)) return skip_case(cs, "the CPU returns RK_STATUS_ARG for a bad target");
    const int64_t N = c->N, V = c->V;
    float *       x  = rand_vec(r, c->dt, N * V, c->xscale);
    int32_t *     tg = rk_xmalloc((size_t) N * sizeof(int32_t));
    for (int64_t i = 0; i < N; i++) {
        const bool ign = c->ign == IGN_ALL || (c->ign == IGN_SOME && (i % 3 == 1 || rng_int(r, 4) == 0));
        tg[i]          = ign ? RK_XENT_IGNORE_INDEX : (int32_t) rng_int(r, V);
    }
    const int64_t bad_row = N / 2;
    if (c->bad) tg[bad_row] = 0; /* valid for the reference (same row count); V on the device */
    int64_t count = 0;
    for (int64_t i = 0; i < N; i++) count += tg[i] != RK_XENT_IGNORE_INDEX;
    float *          dref = rk_xmalloc((size_t) (N * V) * sizeof(float));
    float            lref = 0.0f;
    struct rk_tensor hl = host_t(&lref, 1, (int64_t[]) { 1 }), hd = host_t(dref, 2, (int64_t[]) { N, V });
    struct rk_tensor hx = host_t(x, 2, (int64_t[]) { N, V });
    struct rk_tensor ht = rk_tensor_host(tg, RK_DTYPE_I32, 1, (int64_t[]) { N });
    cr_assert(rk_cpu_softmax_xent(&hl, &hd, &hx, &ht, c->gscale) == RK_OK, "CPU reference: %s", rk_last_error());
    if (c->bad) tg[bad_row] = (int32_t) V;

    struct loss_bufs b;
    loss_bufs_init(&b, be, c->dt, N, V, c->pad, c->dl, x);
    struct dmem      mt = { 0 };
    struct rk_tensor tt = padded_tensor(&mt, be, RK_DTYPE_I32, 1, (int64_t[]) { N }, 0, "targets");
    view_set_i32(&mt, &tt, tg);
    dmem_upload(&mt);
    int rc;
    if (c->gscale == 1.0f || !on_cuda(be)) { /* the op (dlogits_scale in its params); else the launcher's scratch */
        struct rk_op_call call = { .op  = RK_OP_SOFTMAX_XENT, .dst = &b.tl,
                                   .src = { &b.tx, &tt, b.mdl ? &b.td : NULL } };
        call.p.loss.dlogits_scale = c->gscale;
        rc = gpu_op(be, &call, cs);
    } else {
#ifdef RK_HAVE_CUDA
        struct dmem      ms = { 0 };
        const int64_t    ns = rk_cuda_softmax_xent_scratch_size(N);
        struct rk_tensor sc = vec_tensor(&ms, be, RK_DTYPE_F32, ns, NULL, "scratch");
        view_mark_output(&ms, &sc);
        dmem_upload(&ms);
        const cudaStream_t st = rk_backend_cuda_stream(be);
        /* too small a scratch is an argument error, nothing launched */
        cr_assert(rk_cuda_softmax_xent(&b.tl, NULL, &b.tx, &tt, c->gscale, sc.data, ns - 1, st) == RK_STATUS_ARG);
        rc = launcher_rc(be, rk_cuda_softmax_xent(&b.tl, b.mdl ? &b.td : NULL, &b.tx, &tt, c->gscale, sc.data, ns, st),
                         cs);
        if (rc == CASE_PASS && !check_unchanged(&ms, cs, "scratch")) rc = CASE_FAIL;
        dmem_free(&ms);
#else
        rc = CASE_SKIP;
#endif
    }
    if (rc == CASE_PASS) {
        const struct tol dtol = grad_tol(c->dt, c->gscale / (double) (count > 0 ? count : 1));
        bool ok = c->bad ? xent_check_bad(&b, cs, bad_row, V, dref, dtol) : loss_bufs_check(&b, cs, lref, dref, dtol);
        if (c->bad && b.mdl != &b.mx) ok = check_unchanged(&b.mx, cs, "logits") && ok;
        ok = check_unchanged(&mt, cs, "targets") && ok;
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    loss_bufs_free(&b);
    dmem_free(&mt);
    free(x);
    free(tg);
    free(dref);
    return rc;
}

Test(cuda_train_ops, softmax_xent) { RUN_TABLE("SOFTMAX_XENT", xent_cases, xent_name, run_xent); }

/* ------------------------------------------------------------------------------------------------
 * DROPOUT */

struct do_case {
    enum rk_dtype dt;
    int64_t       N, C;
    float         p;
    uint64_t      seed, offset;
    int64_t       pad;
    bool          inplace;
};

static const struct do_case do_cases[] = {
    /*  dt   N     C     p      seed                 offset                 pad inplace */
    { F32, 77, 768, 0.1f, 42, 0, 0, false },
    { F32, 1, 1, 0.5f, 1, 2, 0, false },
    { F32, 3, 7, 0.5f, (1ull << 40) + 3, (1ull << 32) + 5, 0, false }, /* n % 4 != 0; high key and counter words */
    { F32, 64, 1024, 0.0f, 5, 6, 0, false },                           /* p = 0: a copy */
    { F32, 64, 1024, 1.0f, 5, 6, 0, true },                            /* p = 1: zeros */
    { F32, 1024, 1027, 0.5f, 7, 123456789, 0, true },                  /* > 2^20 elements */
    { F32, 5, 333, 0.3f, 9, 10, 3, false },                            /* strided rows */
    { BF, 64, 3072, 0.1f, 11, 12, 0, true },
    { BF, 33, 1001, 0.9f, 13, 14, 1, false },
    { HF, 5, 4099, 0.3f, 15, 16, 3, false },
    { HF, 128, 768, 0.1f, 0xdeadbeefcafef00dull, 99, 0, false },
};

static void do_name(const void * cv, char * cs, size_t n) {
    const struct do_case * c = cv;
    snprintf(cs, n, "DROPOUT(dtype=%s,N=%lld,C=%lld,p=%g,seed=%llu,offset=%llu,pad=%lld,inplace=%d)", dtn(c->dt),
             (long long) c->N, (long long) c->C, (double) c->p, (unsigned long long) c->seed,
             (unsigned long long) c->offset, (long long) c->pad, c->inplace);
}

static int run_dropout(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct do_case * c = cv;
    const int64_t          n = c->N * c->C;
    float *                x = rand_vec(r, c->dt, n, 1.0f);
    float *                ref = rk_xmalloc((size_t) n * sizeof(float));
    struct rk_dropout_params p = { .p = c->p, .seed = c->seed, .offset = c->offset };
    struct rk_tensor hx = host_t(x, 2, (int64_t[]) { c->N, c->C }), hd = host_t(ref, 2, (int64_t[]) { c->N, c->C });
    rk_cpu_dropout(&hd, &hx, &p);
    round_all(c->dt, ref, n);
    int64_t kept = 0; /* sanity of the reference: the kept fraction is about 1 - p */
    for (int64_t i = 0; i < n; i++) kept += ref[i] != 0.0f;
    if (n >= 10000) {
        cr_assert(fabs((double) kept / (double) n - (1.0 - c->p)) < 0.02, "%s: kept %lld", cs, (long long) kept);
    }

    struct dmem      mx = { 0 }, md = { 0 };
    struct rk_tensor tx = padded_tensor(&mx, be, c->dt, 2, (int64_t[]) { c->N, c->C }, c->pad, "x"), td;
    view_set(&mx, &tx, x);
    struct dmem * mdst = dst_inplace_or_new(be, &mx, &tx, &md, &td, c->inplace, c->pad);
    dmem_upload(&mx);
    struct rk_op_call call = { .op = RK_OP_DROPOUT, .dst = &td, .src = { &tx } };
    call.p.dropout         = p;
    int rc = gpu_op(be, &call, cs);
    if (rc == CASE_PASS) {
        bool    ok  = true;
        float * got = fetch_f32(mdst, &td, cs, "dst", &ok);
        int64_t mask_bad = 0;
        for (int64_t i = 0; i < n; i++) mask_bad += (got[i] != 0.0f) != (ref[i] != 0.0f);
        if (mask_bad) fprintf(stderr, "    %s: keep mask differs at %lld of %lld elements\n", cs, (long long) mask_bad,
                              (long long) n);
        ok = mask_bad == 0 && check_exact(cs, "dst", got, ref, n) && ok;
        if (!c->inplace) ok = check_unchanged(&mx, cs, "x") && ok;
        free(got);
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    dmem_free(&md);
    free(x);
    free(ref);
    return rc;
}

Test(cuda_train_ops, dropout) { RUN_TABLE("DROPOUT", do_cases, do_name, run_dropout); }

/* The Philox stream itself: the CPU reference's mask is the documented rk_dropout_uniform rule. */
Test(cuda_train_ops, dropout_reference_uses_the_documented_stream) {
    float            x[37], y[37];
    struct rk_tensor hx = host_t(x, 1, (int64_t[]) { 37 }), hy = host_t(y, 1, (int64_t[]) { 37 });
    for (int i = 0; i < 37; i++) x[i] = 1.0f + (float) i;
    struct rk_dropout_params p = { .p = 0.4f, .seed = 0x123456789abcull, .offset = (1ull << 33) + 1 };
    rk_cpu_dropout(&hy, &hx, &p);
    for (int i = 0; i < 37; i++) {
        const bool keep = rk_dropout_uniform(p.seed, p.offset, (uint64_t) i) >= p.p;
        cr_assert((y[i] != 0.0f) == keep, "element %d", i);
    }
}

/* ------------------------------------------------------------------------------------------------
 * optimizer kernels: AdamW, sumsq, scale (launchers; the CPU functions stand in on the CPU backend) */

struct adam_case {
    enum rk_dtype gdt;      /* gradient dtype */
    enum rk_dtype cdt;      /* compute copy dtype, NO_COPY for none */
    int64_t       n;
    float         grad_mul;
    float         gscale;   /* gradients uniform in [-gscale, gscale] before rounding */
    double        wd;
    int           steps;
};

static const struct adam_case adam_cases[] = {
    /*  gdt  cdt      n              grad_mul          gscale   wd    steps */
    { F32, NO_COPY, 1, 1.0f, 1.0f, 0.0, 3 },
    { F32, BF, 1000, 1.0f, 1.0f, 0.01, 5 },
    { F32, HF, (1 << 20) + 3, 0.125f, 2.0f, 0.01, 3 },
    { F32, F32, 4099, 0.37f, 1e-3f, 0.1, 4 },
    { BF, BF, 4097, 1.0f, 1.0f, 0.01, 5 },
    { BF, NO_COPY, 100003, 0.5f, 4.0f, 0.0, 3 },
    { HF, HF, 777, 1.0f / 65536.0f, 60000.0f, 0.01, 3 }, /* loss-scaled fp16 grads, unscaled through grad_mul */
};

static void adam_name(const void * cv, char * cs, size_t n) {
    const struct adam_case * c = cv;
    snprintf(cs, n, "ADAMW(grad=%s,compute=%s,n=%lld,grad_mul=%g,gscale=%g,wd=%g,steps=%d)", dtn(c->gdt),
             c->cdt == NO_COPY ? "none" : dtn(c->cdt), (long long) c->n, (double) c->grad_mul, (double) c->gscale,
             c->wd, c->steps);
}

/* One AdamW step in place on the buffers: the CUDA launcher, or on the CPU backend its CPU equivalent. */
static enum rk_status adam_step(struct rk_backend * be, const struct adam_case * c, float * p, void * g, float * m,
                                float * v, void * compute, const struct rk_adamw_scalars * s) {
#ifdef RK_HAVE_CUDA
    if (on_cuda(be)) {
        return rk_cuda_adamw_update(p, g, c->gdt, m, v, c->n, s, c->grad_mul, compute, c->cdt,
                                    rk_backend_cuda_stream(be));
    }
#endif
    (void) be;
    if (c->gdt != RK_DTYPE_F32 || (c->cdt != NO_COPY && c->cdt != RK_DTYPE_F32)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "CPU stand-in: f32 gradients and copies only");
    }
    float * gm = rk_xmalloc((size_t) c->n * sizeof(float));
    for (int64_t i = 0; i < c->n; i++) gm[i] = ((float *) g)[i] * c->grad_mul;
    rk_cpu_adamw_update(p, gm, m, v, c->n, s);
    if (compute) memcpy(compute, p, (size_t) c->n * sizeof(float));
    free(gm);
    return RK_OK;
}

static int run_adamw(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct adam_case * c = cv;
    const int64_t            n = c->n;
    float *                  p_ref = rand_vec(r, RK_DTYPE_F32, n, 1.0f);
    float *                  m_ref = rk_xcalloc((size_t) n, sizeof(float));
    float *                  v_ref = rk_xcalloc((size_t) n, sizeof(float));
    float *                  zero  = rk_xcalloc((size_t) n, sizeof(float));
    struct dmem              mp = { 0 }, mm = { 0 }, mv = { 0 }, mg = { 0 }, mc = { 0 };
    struct rk_tensor         tp = vec_tensor(&mp, be, RK_DTYPE_F32, n, p_ref, "p");
    struct rk_tensor         tm = vec_tensor(&mm, be, RK_DTYPE_F32, n, zero, "m");
    struct rk_tensor         tv = vec_tensor(&mv, be, RK_DTYPE_F32, n, zero, "v");
    struct rk_tensor         tg = vec_tensor(&mg, be, c->gdt, n, NULL, "g"), tc = { 0 };
    view_mark_output(&mp, &tp);
    view_mark_output(&mm, &tm);
    view_mark_output(&mv, &tv);
    if (c->cdt != NO_COPY) {
        tc = vec_tensor(&mc, be, c->cdt, n, NULL, "compute");
        view_mark_output(&mc, &tc);
        dmem_upload(&mc);
    }
    dmem_upload(&mp);
    dmem_upload(&mm);
    dmem_upload(&mv);
    const struct rk_adamw_config cfg = rk_adamw_config_default(1e-3, c->wd);
    int                          rc  = CASE_PASS;
    for (int step = 1; step <= c->steps && rc == CASE_PASS; step++) {
        /* this step's gradient, as the device holds it; the reference sees it times grad_mul, rounded to f32 */
        float * g  = rand_vec(r, c->gdt, n, c->gscale);
        float * gm = rk_xmalloc((size_t) n * sizeof(float));
        for (int64_t i = 0; i < n; i++) gm[i] = g[i] * c->grad_mul;
        view_set(&mg, &tg, g);
        dmem_upload(&mg);
        const struct rk_adamw_scalars s = rk_adamw_scalars(&cfg, 1e-3 * (1.0 - 0.1 * step), c->wd, step);
        rk_cpu_adamw_update(p_ref, gm, m_ref, v_ref, n, &s);
        rc = launcher_rc(be, adam_step(be, c, tp.data, tg.data, tm.data, tv.data, c->cdt != NO_COPY ? tc.data : NULL,
                                       &s), cs);
        if (rc == CASE_PASS) {
            char    what[64];
            bool    ok = true;
            float * got;
            snprintf(what, sizeof(what), "p (step %d)", step);
            got = fetch_f32(&mp, &tp, cs, what, &ok);
            ok  = check_ulp(cs, what, got, p_ref, n, 2) && ok;
            free(got);
            snprintf(what, sizeof(what), "m (step %d)", step);
            got = fetch_f32(&mm, &tm, cs, what, &ok);
            ok  = check_ulp(cs, what, got, m_ref, n, 2) && ok;
            free(got);
            snprintf(what, sizeof(what), "v (step %d)", step);
            got = fetch_f32(&mv, &tv, cs, what, &ok);
            ok  = check_ulp(cs, what, got, v_ref, n, 2) && ok;
            free(got);
            if (c->cdt != NO_COPY) {
                float * pc = copy_vec(p_ref, n);
                round_all(c->cdt, pc, n);
                snprintf(what, sizeof(what), "compute copy (step %d)", step);
                got = fetch_f32(&mc, &tc, cs, what, &ok);
                ok  = check_exact(cs, what, got, pc, n) && ok;
                free(got);
                free(pc);
            }
            ok = check_unchanged(&mg, cs, "g") && ok;
            rc = ok ? CASE_PASS : CASE_FAIL;
        }
        free(g);
        free(gm);
    }
    dmem_free(&mp);
    dmem_free(&mm);
    dmem_free(&mv);
    dmem_free(&mg);
    dmem_free(&mc);
    free(p_ref);
    free(m_ref);
    free(v_ref);
    free(zero);
    return rc;
}

Test(cuda_train_ops, adamw) { RUN_TABLE("ADAMW", adam_cases, adam_name, run_adamw); }

enum { SPECIAL_NONE = 0, SPECIAL_INF, SPECIAL_NAN };
static const char * const special_names[] = { "none", "inf", "nan" };

struct sumsq_case {
    enum rk_dtype dt;
    int64_t       n;
    float         xscale;
    int           special;  /* SPECIAL_*: one element set to inf or NaN */
};

static const struct sumsq_case sumsq_cases[] = {
    { F32, 0, 1.0f, SPECIAL_NONE },
    { F32, 1, 1.0f, SPECIAL_NONE },
    { F32, 1000, 1.0f, SPECIAL_NONE },
    { F32, 4099, 1e3f, SPECIAL_NONE },
    { F32, (1 << 22) + 5, 1.0f, SPECIAL_NONE }, /* more than RK_CUDA_SUMSQ_MAX_BLOCKS blocks' worth */
    { F32, 100000, 1.0f, SPECIAL_INF },
    { F32, 100000, 1.0f, SPECIAL_NAN },
    { BF, 100003, 1.0f, SPECIAL_NONE },
    { BF, 5000, 1.0f, SPECIAL_INF },
    { HF, 65537, 100.0f, SPECIAL_NONE },
    { HF, 999, 1.0f, SPECIAL_NAN },
};

static void sumsq_name(const void * cv, char * cs, size_t n) {
    const struct sumsq_case * c = cv;
    snprintf(cs, n, "SUMSQ(dtype=%s,n=%lld,xscale=%g,special=%s)", dtn(c->dt), (long long) c->n, (double) c->xscale,
             special_names[c->special]);
}

/* *out (host) = the sum of squares of the buffer: the CUDA launcher (twice, results must be bit-identical), or on
 * the CPU backend rk_cpu_sumsq on the same f32 values. */
static int sumsq_run(struct rk_backend * be, const struct sumsq_case * c, const struct rk_tensor * tx, const char * cs,
                     float * out) {
#ifdef RK_HAVE_CUDA
    if (on_cuda(be)) {
        const int64_t    ns = rk_cuda_sumsq_scratch_size(c->n);
        struct dmem      ms = { 0 }, mo = { 0 };
        struct rk_tensor ts = vec_tensor(&ms, be, RK_DTYPE_F32, ns, NULL, "scratch");
        struct rk_tensor to = vec_tensor(&mo, be, RK_DTYPE_F32, 1, NULL, "out");
        view_mark_output(&ms, &ts);
        view_mark_output(&mo, &to);
        dmem_upload(&ms);
        dmem_upload(&mo);
        const cudaStream_t st = rk_backend_cuda_stream(be);
        cr_assert(ns >= 1 && ns <= RK_CUDA_SUMSQ_MAX_BLOCKS);
        cr_assert(rk_cuda_sumsq(tx->data, c->dt, c->n, to.data, ts.data, ns - 1, st) == RK_STATUS_ARG);
        float twice[2];
        int   rc = CASE_PASS;
        for (int k = 0; k < 2 && rc == CASE_PASS; k++) {
            rc = launcher_rc(be, rk_cuda_sumsq(tx->data, c->dt, c->n, to.data, ts.data, ns, st), cs);
            bool    ok = true;
            float * o  = rc == CASE_PASS ? fetch_f32(&mo, &to, cs, "out", &ok) : NULL;
            if (o) twice[k] = o[0];
            free(o);
            if (!ok) rc = CASE_FAIL;
        }
        if (rc == CASE_PASS && memcmp(&twice[0], &twice[1], sizeof(float)) != 0) {
            fprintf(stderr, "    %s: two runs gave %.9g and %.9g\n", cs, (double) twice[0], (double) twice[1]);
            rc = CASE_FAIL;
        }
        if (rc == CASE_PASS && !check_unchanged(&ms, cs, "scratch")) rc = CASE_FAIL;
        *out = twice[0];
        dmem_free(&ms);
        dmem_free(&mo);
        return rc;
    }
#endif
    (void) be;
    if (c->dt != RK_DTYPE_F32) return skip_case(cs, "CPU stand-in: f32 only");
    *out = (float) rk_cpu_sumsq(tx->data, c->n);
    return CASE_PASS;
}

static int run_sumsq(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct sumsq_case * c = cv;
    float *                   x = rand_vec(r, c->dt, c->n, c->xscale);
    if (c->special != SPECIAL_NONE && c->n > 0) x[c->n * 2 / 3] = c->special == SPECIAL_INF ? -INFINITY : NAN;
    const double     ref = rk_cpu_sumsq(x, c->n); /* double, in index order */
    struct dmem      mx  = { 0 };
    struct rk_tensor tx  = vec_tensor(&mx, be, c->dt, c->n, x, "x");
    dmem_upload(&mx);
    float got = 0.0f;
    int   rc  = sumsq_run(be, c, &tx, cs, &got);
    if (rc == CASE_PASS) {
        bool ok = check_unchanged(&mx, cs, "x");
        if (c->special == SPECIAL_INF) {
            ok = isinf(got) && got > 0 && ok;
        } else if (c->special == SPECIAL_NAN) {
            ok = isnan(got) && ok;
        } else {
            const double err = fabs((double) got - ref);
            if (err > 1e-6 * ref) {
                fprintf(stderr, "    %s: got %.9g, double sum %.9g (rel err %.3g > 1e-6)\n", cs, (double) got, ref,
                        ref > 0 ? err / ref : err);
                ok = false;
            }
        }
        if (!ok) fprintf(stderr, "    %s: got %.9g, reference %.9g\n", cs, (double) got, ref);
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    free(x);
    return rc;
}

Test(cuda_train_ops, sumsq) { RUN_TABLE("SUMSQ", sumsq_cases, sumsq_name, run_sumsq); }

struct scale_case {
    enum rk_dtype dt;
    int64_t       n;
    float         s;
};

static const struct scale_case scale_cases[] = {
    { F32, 1, 0.5f }, { F32, 100003, 0.37f }, { F32, (1 << 20) + 1, 1.0f / 65536.0f },
    { BF, 4097, 0.37f }, { HF, 1000, 3.0f },
};

static void scale_name(const void * cv, char * cs, size_t n) {
    const struct scale_case * c = cv;
    snprintf(cs, n, "SCALE(dtype=%s,n=%lld,s=%g)", dtn(c->dt), (long long) c->n, (double) c->s);
}

static int run_scale(struct rk_backend * be, const void * cv, const char * cs, struct rng * r) {
    const struct scale_case * c = cv;
    float *                   x = rand_vec(r, c->dt, c->n, 1.0f);
    float *                   ref = copy_vec(x, c->n);
    rk_cpu_scale(ref, c->n, c->s);
    round_all(c->dt, ref, c->n);
    struct dmem      mx = { 0 };
    struct rk_tensor tx = vec_tensor(&mx, be, c->dt, c->n, x, "x");
    view_mark_output(&mx, &tx);
    dmem_upload(&mx);
    int rc;
#ifdef RK_HAVE_CUDA
    if (on_cuda(be)) {
        rc = launcher_rc(be, rk_cuda_scale(tx.data, c->dt, c->n, c->s, rk_backend_cuda_stream(be)), cs);
    } else
#endif
    if (c->dt == RK_DTYPE_F32) {
        rk_cpu_scale(tx.data, c->n, c->s);
        rc = CASE_PASS;
    } else {
        rc = skip_case(cs, "CPU stand-in: f32 only");
    }
    if (rc == CASE_PASS) {
        bool    ok  = true;
        float * got = fetch_f32(&mx, &tx, cs, "x", &ok);
        ok          = check_exact(cs, "x", got, ref, c->n) && ok;
        free(got);
        rc = ok ? CASE_PASS : CASE_FAIL;
    }
    dmem_free(&mx);
    free(x);
    free(ref);
    return rc;
}

Test(cuda_train_ops, scale) { RUN_TABLE("SCALE", scale_cases, scale_name, run_scale); }

/* ------------------------------------------------------------------------------------------------
 * unsupported combinations are reported, never a crash */

Test(cuda_train_ops, unsupported_is_reported) {
    struct rk_backend * be = cuda_or_skip("UNSUPPORTED (training ops)");
    struct dmem         m  = { 0 };
    dmem_init(&m, be, 4096);
    struct rk_tensor a    = dmem_view(&m, RK_DTYPE_BF16, 2, (int64_t[]) { 4, 8 }, NULL, 0, "a");
    struct rk_tensor f    = dmem_view(&m, RK_DTYPE_F32, 2, (int64_t[]) { 4, 8 }, NULL, 0, "f");
    struct rk_tensor i32  = dmem_view(&m, RK_DTYPE_I32, 2, (int64_t[]) { 4, 8 }, NULL, 0, "i");
    struct rk_tensor ids  = dmem_view(&m, RK_DTYPE_I32, 2, (int64_t[]) { 1, 4 }, NULL, 0, "ids");
    struct rk_tensor loss = dmem_view(&m, RK_DTYPE_F32, 1, (int64_t[]) { 1 }, NULL, 0, "loss");
    struct rk_tensor col  = dmem_view(&m, RK_DTYPE_BF16, 2, (int64_t[]) { 4, 8 }, (int64_t[]) { 2, 8 }, 0, "colmajor");
    struct rk_op_call calls[] = {
        { .op = RK_OP_DROPOUT, .dst = &i32, .src = { &i32 } },                /* integer activations */
        { .op = RK_OP_DROPOUT, .dst = &a, .src = { &f } },                    /* mixed dtypes */
        { .op = RK_OP_DROPOUT, .dst = &a, .src = { &col } },                  /* last dim not contiguous */
        { .op = RK_OP_BCE_LOGITS, .dst = &loss, .src = { &a, &f } },          /* targets' dtype differs */
        { .op = RK_OP_BCE_LOGITS, .dst = &a, .src = { &a, &a } },             /* loss not (1) f32 */
        { .op = RK_OP_SOFTMAX_XENT, .dst = &loss, .src = { &a, &f } },        /* targets not i32 */
        { .op = RK_OP_SOFTMAX_XENT, .dst = &loss, .src = { &a, &ids, &f } },  /* dlogits' dtype differs */
        { .op = RK_OP_EMBED_BWD, .dst = &i32, .src = { &a, &ids } },          /* integer table */
        { .op = RK_OP_EMBED_BWD, .dst = &f, .src = { &a, &f } },              /* ids not i32 */
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        cr_assert(!be->supports_op(be, &calls[i]), "call %zu (%s) should be unsupported", i, rk_op_names[calls[i].op]);
        cr_assert(rk_op(be, &calls[i]) == RK_STATUS_UNSUPPORTED, "call %zu (%s)", i, rk_op_names[calls[i].op]);
    }
#ifdef RK_HAVE_CUDA
    if (on_cuda(be)) {
        const cudaStream_t st = rk_backend_cuda_stream(be);
        const struct rk_adamw_scalars s0 = { 0 };
        cr_assert(rk_cuda_adamw_update(f.data, i32.data, RK_DTYPE_I32, f.data, f.data, 4, &s0, 1.0f, NULL,
                                       RK_DTYPE_COUNT, st) == RK_STATUS_UNSUPPORTED);
        cr_assert(rk_cuda_sumsq(i32.data, RK_DTYPE_I32, 4, f.data, f.data, 8, st) == RK_STATUS_UNSUPPORTED);
        cr_assert(rk_cuda_scale(i32.data, RK_DTYPE_I32, 4, 2.0f, st) == RK_STATUS_UNSUPPORTED);
        cr_assert(be->synchronize(be) == RK_OK);
    }
#endif
    dmem_free(&m);
    rk_backend_free(be);
}
