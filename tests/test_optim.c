/*
 * test_optim.c: AdamW, HF parameter groups, clip_grad_norm_, LR schedules and the loss scaler (host/train/optim.h,
 * host/train/schedule.h) against torch and transformers.
 *
 * Golden data: tests/golden/optim_adamw.rkgd and optim_sched.rkgd, written by tests/golden/gen_optim.py with
 * torch.optim.AdamW (foreach/fused off), clip_grad_norm_ and transformers' schedulers on the CPU. Five AdamW steps
 * with HF groups, linear warmup 2 / total 5 and clipping at 1.0 must give the same parameters within 1e-6 relative
 * (the only known source of difference is torch's MKL f32 sqrt, within 1 ulp), the same lrs (1e-12) and norms
 * (1e-6). Schedule multipliers must match to 1e-12 (they are computed with the same double formulas).
 */
#include "test_util.h"
#include "golden.h"

#include "train/optim.h"
#include "train/schedule.h"

#include <float.h>
#include <math.h>

static struct rk_gold load(const char * rel) {
    char p[4096];
    return rk_gold_load(rk_test_path(p, sizeof(p), rel));
}

/* A double stored as two i32 words (gen_optim.py dbits). */
static double gold_double(const struct rk_gold_tensor * t, int64_t i) {
    double d;
    memcpy(&d, (const int32_t *) t->data + 2 * i, sizeof(d));
    return d;
}

static void assert_close_rel(double got, double ref, double rtol, double atol, const char * what, int64_t i) {
    cr_assert(fabs(got - ref) <= atol + rtol * fabs(ref), "%s[%lld]: got %.17g, torch %.17g (diff %.3g)", what,
              (long long) i, got, ref, got - ref);
}

/* ---- AdamW against torch ------------------------------------------------------------------------------------ */

#define MAX_T 16

struct model {
    int             n;
    struct rk_param p[MAX_T];
    char            names[MAX_T][64];
};

/* The tensors named p0.<name> in file order, with private copies of param and fresh grads. */
static struct model model_from_gold(const struct rk_gold * g) {
    struct model m = { 0 };
    for (int i = 0; i < g->count; i++) {
        const struct rk_gold_tensor * t = &g->t[i];
        if (strncmp(t->name, "p0.", 3) != 0) continue;
        cr_assert(m.n < MAX_T);
        snprintf(m.names[m.n], sizeof(m.names[m.n]), "%s", t->name + 3);
        struct rk_param * p = &m.p[m.n];
        p->name             = m.names[m.n];
        p->n                = t->n;
        p->param            = malloc((size_t) t->n * sizeof(float));
        p->grad             = calloc((size_t) t->n, sizeof(float));
        memcpy(p->param, t->data, (size_t) t->n * sizeof(float));
        m.n++;
    }
    cr_assert(m.n > 0);
    return m;
}

static void model_free(struct model * m) {
    for (int i = 0; i < m->n; i++) {
        free(m->p[i].param);
        free(m->p[i].grad);
        free(m->p[i].compute);
    }
}

static const struct rk_gold_tensor * gstep(const struct rk_gold * g, const char * prefix, int k, const char * name) {
    char key[160];
    snprintf(key, sizeof(key), "%s%d.%s", prefix, k, name);
    return rk_gold_get(g, key);
}

Test(optim, adamw_hf_groups_linear_warmup_clip_match_torch) {
    struct rk_gold g = load("tests/golden/optim_adamw.rkgd");
    struct model   m = model_from_gold(&g);

    // HF's grouping of these names (Trainer.get_decay_parameter_names)
    const struct rk_gold_tensor * names = rk_gold_get(&g, "names");
    cr_assert_eq(names->n, m.n);
    for (int i = 0; i < m.n; i++) {
        cr_assert_eq(rk_optim_name_decays(m.p[i].name), ((int32_t *) names->data)[i] != 0, "decay rule: %s",
                     m.p[i].name);
    }

    struct rk_adamw              opt;
    const struct rk_adamw_config cfg = rk_adamw_config_default(1e-3, 0.01);
    cr_assert_eq(rk_adamw_init_hf(&opt, &cfg, m.p, m.n), RK_OK, "%s", rk_last_error());
    cr_assert_eq(opt.n_groups, 2);
    cr_assert_eq(opt.group_wd[0], 0.01);
    cr_assert_eq(opt.group_wd[1], 0.0);
    cr_assert_eq(opt.v, opt.m + opt.n_elems, "m and v share one allocation");

    const struct rk_schedule      sched  = rk_schedule_make(RK_SCHED_LINEAR, 1e-3, 2, 5);
    const struct rk_gold_tensor * norm   = rk_gold_get(&g, "norm");
    const struct rk_gold_tensor * lrbits = rk_gold_get(&g, "lr_bits");
    double                        worst  = 0.0;
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < m.n; i++) {
            const struct rk_gold_tensor * gt = gstep(&g, "g", k, m.names[i]);
            memcpy(m.p[i].grad, gt->data, (size_t) gt->n * sizeof(float));
        }
        float total = 0.0f;
        cr_assert(rk_optim_clip_grad_norm(opt.params, opt.n_params, 1.0, &total));
        assert_close_rel(total, ((float *) norm->data)[k], 1e-6, 0.0, "total norm", k);
        for (int i = 0; i < m.n; i++) {
            const struct rk_gold_tensor * gc = gstep(&g, "gc", k, m.names[i]);
            for (int64_t j = 0; j < gc->n; j++) {
                assert_close_rel(m.p[i].grad[j], ((float *) gc->data)[j], 1e-6, 1e-12, "clipped grad", j);
            }
        }
        const double lr = rk_schedule_lr(&sched, k);
        assert_close_rel(lr, gold_double(lrbits, k), 1e-12, 0.0, "lr", k);
        rk_adamw_step(&opt, lr);
        cr_assert_eq(opt.step, k + 1);
        for (int i = 0; i < m.n; i++) {
            const struct rk_gold_tensor * pt = gstep(&g, "p", k + 1, m.names[i]);
            for (int64_t j = 0; j < pt->n; j++) {
                const double ref = ((float *) pt->data)[j], got = m.p[i].param[j];
                char         what[128];
                snprintf(what, sizeof(what), "step %d %s", k, m.names[i]);
                assert_close_rel(got, ref, 1e-6, 1e-9, what, j);
                if (ref != 0.0) worst = fmax(worst, fabs(got - ref) / fabs(ref));
            }
        }
    }
    cr_log_info("adamw: worst relative parameter difference to torch over 5 steps: %.3g", worst);
    rk_adamw_free(&opt);
    model_free(&m);
    rk_gold_free(&g);
}

/* ---- schedules ------------------------------------------------------------------------------------------------ */

Test(optim, schedules_match_transformers) {
    struct rk_gold g     = load("tests/golden/optim_sched.rkgd");
    const int64_t  total = 20, warmup = rk_schedule_warmup_steps(0.1, total);
    cr_assert_eq(warmup, 2);
    for (int kind = 0; kind < RK_SCHED_COUNT; kind++) {
        enum rk_sched_kind parsed;
        cr_assert_eq(rk_schedule_kind_from_name(rk_sched_names[kind], &parsed), RK_OK);
        cr_assert_eq((int) parsed, kind);
        const struct rk_schedule s = rk_schedule_make(parsed, 1e-3, warmup, total);
        char                     key[96];
        snprintf(key, sizeof(key), "sched.%s_bits", rk_sched_names[kind]);
        const struct rk_gold_tensor * lam = rk_gold_get(&g, key);
        snprintf(key, sizeof(key), "sched_lr.%s_bits", rk_sched_names[kind]);
        const struct rk_gold_tensor * lr = rk_gold_get(&g, key);
        cr_assert_eq(lam->dims[0], total + 1);
        for (int64_t k = 0; k <= total; k++) {
            assert_close_rel(rk_schedule_lambda(&s, k), gold_double(lam, k), 1e-12, 0.0, rk_sched_names[kind], k);
            assert_close_rel(rk_schedule_lr(&s, k), gold_double(lr, k), 1e-12, 0.0, rk_sched_names[kind], k);
        }
    }
    const struct rk_gold_tensor * rows   = rk_gold_get(&g, "warmup");
    const struct rk_gold_tensor * ratios = rk_gold_get(&g, "warmup_ratio_bits");
    for (int64_t r = 0; r < rows->dims[0]; r++) {
        const int32_t * row = (const int32_t *) rows->data + 3 * r;
        cr_assert_eq(rk_schedule_warmup_steps(gold_double(ratios, r), row[1]), row[2], "warmup %g of %d: want %d",
                     gold_double(ratios, r), row[1], row[2]);
    }
    enum rk_sched_kind k = RK_SCHED_LINEAR;
    cr_assert_eq(rk_schedule_kind_from_name("polynomial", &k), RK_STATUS_UNSUPPORTED);
    cr_assert_eq(k, RK_SCHED_LINEAR);
    rk_gold_free(&g);
}

Test(optim, decay_names_match_hf_trainer) {
    struct rk_gold g = load("tests/golden/optim_sched.rkgd");
    int            n = 0;
    for (int i = 0; i < g.count; i++) {
        if (strncmp(g.t[i].name, "decay:", 6) != 0) continue;
        const char * name = g.t[i].name + 6;
        cr_assert_eq(rk_optim_name_decays(name), ((int32_t *) g.t[i].data)[0] != 0, "%s: HF decays = %d", name,
                     ((int32_t *) g.t[i].data)[0]);
        n++;
    }
    cr_assert(n >= 10);
    cr_assert(rk_optim_name_decays(NULL));
    rk_gold_free(&g);
}

/* ---- clipping, zeroing, loss scaling ------------------------------------------------------------------------- */

Test(optim, clip_reports_nonfinite_and_leaves_small_grads) {
    float           ga[3] = { 0.3f, -0.4f, 0.0f }, gb[2] = { 0.0f, 0.0f }, pa[3] = { 0 }, pb[2] = { 0 };
    struct rk_param ps[2] = {
        { "a.weight", pa, ga, 3, NULL, RK_DTYPE_F32 },
        { "b.bias", pb, gb, 2, NULL, RK_DTYPE_F32 },
    };
    float           total = 0.0f;
    cr_assert(rk_optim_clip_grad_norm(ps, 2, 1.0, &total));
    cr_assert_float_eq(total, 0.5f, 1e-7f);
    cr_assert(ga[0] == 0.3f && ga[1] == -0.4f, "a norm below max_norm leaves the grads untouched");

    cr_assert(rk_optim_clip_grad_norm(ps, 2, 0.25, &total));
    const float coef = 0.25f / (0.5f + 1e-6f);
    cr_assert(ga[0] == 0.3f * coef && ga[1] == -0.4f * coef);

    gb[1] = INFINITY;
    const float keep = ga[0];
    cr_assert(!rk_optim_clip_grad_norm(ps, 2, 1.0, &total));
    cr_assert(isinf(total));
    cr_assert(ga[0] == keep, "a non-finite norm leaves the grads for the caller");
    gb[1] = NAN;
    cr_assert(!rk_optim_clip_grad_norm(ps, 2, 1.0, &total));
    cr_assert(isnan(total));

    rk_optim_zero_grad(ps, 2);
    for (int i = 0; i < 3; i++) cr_assert(ga[i] == 0.0f);
    for (int i = 0; i < 2; i++) cr_assert(gb[i] == 0.0f);
}

Test(optim, loss_scaler_follows_grad_scaler) {
    struct rk_loss_scaler ls = rk_loss_scaler_default();
    cr_assert(ls.scale == 65536.0f && ls.growth_interval == 2000 && ls.growth_factor == 2.0 &&
              ls.backoff_factor == 0.5);

    float           g[4] = { 1.5f * 65536.0f, -2.0f * 65536.0f, 0.0f, 3.0f * 65536.0f };
    float           p[4] = { 0 };
    struct rk_param ps   = { "w", p, g, 4, NULL, RK_DTYPE_F32 };
    cr_assert(rk_loss_scaler_unscale(&ls, &ps, 1));
    cr_assert(g[0] == 1.5f && g[1] == -2.0f && g[2] == 0.0f && g[3] == 3.0f);
    rk_loss_scaler_update(&ls, false);
    cr_assert(ls.scale == 65536.0f && ls.growth_tracker == 1);

    // injected inf: found, the scale backs off, the tracker restarts
    g[2] = INFINITY;
    const bool finite = rk_loss_scaler_unscale(&ls, &ps, 1);
    cr_assert(!finite);
    rk_loss_scaler_update(&ls, !finite);
    cr_assert(ls.scale == 32768.0f && ls.growth_tracker == 0);
    g[2] = NAN;
    cr_assert(!rk_loss_scaler_unscale(&ls, &ps, 1));

    // 2000 consecutive good steps double the scale, at the 2000th
    for (int i = 0; i < 1999; i++) rk_loss_scaler_update(&ls, false);
    cr_assert(ls.scale == 32768.0f && ls.growth_tracker == 1999);
    rk_loss_scaler_update(&ls, false);
    cr_assert(ls.scale == 65536.0f && ls.growth_tracker == 0);

    // growth that would overflow f32 keeps the old scale
    ls.scale          = FLT_MAX;
    ls.growth_tracker = ls.growth_interval - 1;
    rk_loss_scaler_update(&ls, false);
    cr_assert(ls.scale == FLT_MAX && ls.growth_tracker == 0);
}

/* ---- mixed precision compute copy, argument errors ----------------------------------------------------------- */

Test(optim, compute_copy_is_rounded_master) {
    enum { N = 1000 };
    float *    pa = malloc(N * sizeof(float)), *ga = malloc(N * sizeof(float));
    float *    pb = malloc(N * sizeof(float)), *gb = malloc(N * sizeof(float));
    uint16_t * ca = malloc(N * sizeof(uint16_t)), *cb = malloc(N * sizeof(uint16_t));
    for (int i = 0; i < N; i++) {
        pa[i] = pb[i] = sinf(0.37f * (float) i) * 0.8f;
        ga[i] = gb[i] = cosf(1.3f * (float) i) * 1e-2f;
    }
    struct rk_param ps[2] = {
        { "dense.weight", pa, ga, N, ca, RK_DTYPE_BF16 },
        { "dense.bias", pb, gb, N, cb, RK_DTYPE_F16 },
    };
    struct rk_adamw              opt;
    const struct rk_adamw_config cfg = rk_adamw_config_default(1e-3, 0.01);
    cr_assert_eq(rk_adamw_init_hf(&opt, &cfg, ps, 2), RK_OK);
    for (int s = 0; s < 3; s++) rk_adamw_step(&opt, 1e-3);
    for (int i = 0; i < N; i++) {
        cr_assert(ca[i] == rk_f32_to_bf16(pa[i]), "bf16 copy [%d]", i);
        cr_assert(cb[i] == rk_f32_to_f16(pb[i]), "f16 copy [%d]", i);
    }
    // decay applies to the weight only: with equal inputs the two tensors now differ by the decoupled decay
    cr_assert(pa[1] != pb[1]);
    rk_adamw_free(&opt);
    cr_assert(opt.state == NULL);

    ps[0].compute_dtype = RK_DTYPE_F32;
    cr_assert_eq(rk_adamw_init_hf(&opt, &cfg, ps, 2), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), "dense.weight") != NULL, "%s", rk_last_error());
    ps[0].compute_dtype = RK_DTYPE_BF16;
    ps[1].grad          = NULL;
    cr_assert_eq(rk_adamw_init_hf(&opt, &cfg, ps, 2), RK_STATUS_ARG);
    free(pa), free(ga), free(pb), free(gb), free(ca), free(cb);
}
