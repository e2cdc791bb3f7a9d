/*
 * lora_cpu.c: LoRA adapters on the CPU: the config and target-module matcher, the adapter parameter struct and
 * its PEFT initialisation, and the reference ops LORA_FWD / LORA_BWD / merge / unmerge (f32, OpenBLAS).
 * Shapes and contracts: lora/lora.h. Adapter files: lora/adapter.c.
 */
#include "lora/lora.h"

#include "check.h"
#include "rng.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * config */

void rk_lora_config_default(struct rk_lora_config * cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->r       = 8;
    cfg->alpha   = 8.0f;
    cfg->dropout = 0.0f;
    snprintf(cfg->bias, sizeof(cfg->bias), "none");
}

void rk_lora_config_set_targets(struct rk_lora_config * cfg, const char * const * targets, int64_t n) {
    char ** old   = cfg->target_modules;
    int64_t old_n = cfg->n_target;
    cfg->target_modules = n > 0 ? rk_xcalloc((size_t) n, sizeof(char *)) : NULL;
    for (int64_t i = 0; i < n; i++) cfg->target_modules[i] = rk_xstrdup(targets[i]);
    cfg->n_target = n;
    for (int64_t i = 0; i < old_n; i++) free(old[i]);
    free(old);
}

void rk_lora_config_free(struct rk_lora_config * cfg) {
    if (!cfg) return;
    for (int64_t i = 0; i < cfg->n_target; i++) free(cfg->target_modules[i]);
    free(cfg->target_modules);
    cfg->target_modules = NULL;
    cfg->n_target       = 0;
}

float rk_lora_scale(const struct rk_lora_config * cfg) {
    /* PEFT: self.scaling[adapter] = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r */
    return cfg->use_rslora ? (float) ((double) cfg->alpha / sqrt((double) cfg->r))
                           : (float) ((double) cfg->alpha / (double) cfg->r);
}

bool rk_lora_target_match(const char * name, const char * const * targets, int64_t n_target) {
    const size_t ln = strlen(name);
    for (int64_t i = 0; i < n_target; i++) {
        const char * t  = targets[i];
        const size_t lt = strlen(t);
        if (lt == 0) continue;
        if (strcmp(name, t) == 0) return true;
        /* a suffix on a module boundary: "...<.>target" */
        if (ln > lt && name[ln - lt - 1] == '.' && strcmp(name + ln - lt, t) == 0) return true;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------------
 * adapter parameters */

enum rk_status rk_lora_adapter_new(const struct rk_lora_config * cfg, int64_t n_module, const char * const * names,
                                   const int64_t * K, const int64_t * N, struct rk_lora_adapter ** out) {
    *out = NULL;
    if (cfg->r < 1) return rk_set_error(RK_STATUS_ARG, "lora: rank r = %lld, want >= 1", (long long) cfg->r);
    if (n_module < 0) return rk_set_error(RK_STATUS_ARG, "lora: n_module = %lld", (long long) n_module);
    int64_t n_params = 0;
    for (int64_t i = 0; i < n_module; i++) {
        if (K[i] < 1 || N[i] < 1)
            return rk_set_error(RK_STATUS_ARG, "lora: module %s: in/out features %lld x %lld", names[i],
                                (long long) K[i], (long long) N[i]);
        if (strlen(names[i]) >= RK_LORA_NAME_MAX)
            return rk_set_error(RK_STATUS_ARG, "lora: module name too long: %.60s...", names[i]);
        for (int64_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return rk_set_error(RK_STATUS_ARG, "lora: module %s listed twice", names[i]);
        n_params += cfg->r * (K[i] + N[i]);
    }
    struct rk_lora_adapter * ad = calloc(1, sizeof(*ad));
    if (!ad) return rk_set_error(RK_STATUS_OOM, "lora: out of memory");
    ad->modules = calloc((size_t) (n_module > 0 ? n_module : 1), sizeof(*ad->modules));
    ad->data    = calloc((size_t) (n_params > 0 ? n_params : 1), sizeof(float));
    if (!ad->modules || !ad->data) {
        free(ad->modules);
        free(ad->data);
        free(ad);
        return rk_set_error(RK_STATUS_OOM, "lora: out of memory for %lld adapter parameters", (long long) n_params);
    }
    ad->cfg                = *cfg;
    ad->cfg.target_modules = NULL;
    ad->cfg.n_target       = 0;
    rk_lora_config_set_targets(&ad->cfg, (const char * const *) cfg->target_modules, cfg->n_target);
    ad->n_module = n_module;
    ad->n_params = n_params;
    float * p    = ad->data;
    for (int64_t i = 0; i < n_module; i++) {
        struct rk_lora_module * m = &ad->modules[i];
        snprintf(m->name, sizeof(m->name), "%s", names[i]);
        m->K = K[i];
        m->N = N[i];
        m->A = p;
        p += cfg->r * K[i];
        m->B = p;
        p += N[i] * cfg->r;
    }
    *out = ad;
    return RK_OK;
}

void rk_lora_adapter_free(struct rk_lora_adapter * ad) {
    if (!ad) return;
    rk_lora_config_free(&ad->cfg);
    free(ad->modules);
    free(ad->data);
    free(ad);
}

struct rk_lora_module * rk_lora_adapter_find(const struct rk_lora_adapter * ad, const char * name) {
    for (int64_t i = 0; i < ad->n_module; i++)
        if (strcmp(ad->modules[i].name, name) == 0) return &ad->modules[i];
    return NULL;
}

void rk_lora_adapter_init_peft(struct rk_lora_adapter * ad, uint64_t seed) {
    struct rk_rng rng;
    rk_rng_seed(&rng, seed);
    const int64_t r = ad->cfg.r;
    for (int64_t i = 0; i < ad->n_module; i++) {
        struct rk_lora_module * m = &ad->modules[i];
        /* kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + 5)), bound = gain * sqrt(3 / fan_in) = 1 / sqrt(K) */
        const double bound = 1.0 / sqrt((double) m->K);
        for (int64_t j = 0; j < r * m->K; j++) m->A[j] = (float) ((2.0 * rk_rng_uniform(&rng) - 1.0) * bound);
        memset(m->B, 0, sizeof(float) * (size_t) (m->N * r));
    }
}

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

static void check_shape(struct rk_lora_shape sh) {
    RK_ASSERT(sh.M >= 0 && sh.K >= 1 && sh.N >= 1 && sh.r >= 1);
    /* cblas takes int sizes and leading dimensions */
    RK_ASSERT(sh.M <= INT_MAX && sh.K <= INT_MAX && sh.N <= INT_MAX && sh.r <= INT_MAX);
}

/* x * mask into a new buffer (M,K), or x itself when mask is NULL. */
static const float * masked_input(const float * x, const float * mask, int64_t n, float ** tmp) {
    *tmp = NULL;
    if (!mask) return x;
    float * xm = rk_xmalloc(sizeof(float) * (size_t) (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) xm[i] = x[i] * mask[i];
    *tmp = xm;
    return xm;
}

void rk_cpu_lora_fwd(float * y, float * u, const float * x, const float * W, const float * b, const float * A,
                     const float * B, float s, const float * mask, struct rk_lora_shape sh) {
    /* x (M,K), W (N,K), b (N), A (r,K), B (N,r), mask (M,K); u (M,r), y (M,N) */
    check_shape(sh);
    const int M = (int) sh.M, K = (int) sh.K, N = (int) sh.N, r = (int) sh.r;
    if (M == 0) return;
    /* frozen base: y = x W^T + b */
    if (W) {
        for (int64_t i = 0; i < sh.M; i++) {
            if (b) memcpy(y + i * sh.N, b, sizeof(float) * (size_t) N);
            else memset(y + i * sh.N, 0, sizeof(float) * (size_t) N);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K, 1.0f, y, N);
    }
    /* adapter: u = (x * mask) A^T, the one pass over x; then y += s u B^T (a rank-r update, cheap) */
    float *       tmp;
    const float * xm = masked_input(x, mask, sh.M * sh.K, &tmp);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, r, K, 1.0f, xm, K, A, K, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, r, s, u, r, B, r, 1.0f, y, N);
    free(tmp);
}

void rk_cpu_lora_bwd(float * dx, float * dA, float * dB, const float * dy, const float * x, const float * u,
                     const float * W, const float * A, const float * B, float s, const float * mask,
                     struct rk_lora_shape sh) {
    /* dy (M,N), x (M,K), u (M,r), W (N,K), A (r,K), B (N,r), mask (M,K); dx (M,K), dA (r,K), dB (N,r) */
    check_shape(sh);
    const int M = (int) sh.M, K = (int) sh.K, N = (int) sh.N, r = (int) sh.r;
    if (M == 0) return;
    /* g = dy B (M,r): the gradient reaching u, before the scale */
    float * g = rk_xmalloc(sizeof(float) * (size_t) (sh.M * sh.r));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, r, N, 1.0f, dy, N, B, r, 0.0f, g, r);
    /* dA += s g^T (x * mask) */
    float *       tmp;
    const float * xm = masked_input(x, mask, sh.M * sh.K, &tmp);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, K, M, s, g, r, xm, K, 1.0f, dA, K);
    free(tmp);
    /* dB += s dy^T u */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, r, M, s, dy, N, u, r, 1.0f, dB, r);
    if (dx) {
        if (W) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dy, N, W, K, 1.0f, dx, K);
        if (!mask) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, r, s, g, r, A, K, 1.0f, dx, K);
        } else {
            /* dropout's backward multiplies by the same mask */
            float * ga = rk_xmalloc(sizeof(float) * (size_t) (sh.M * sh.K));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, r, s, g, r, A, K, 0.0f, ga, K);
            for (int64_t i = 0; i < sh.M * sh.K; i++) dx[i] += ga[i] * mask[i];
            free(ga);
        }
    }
    free(g);
}

void rk_cpu_lora_merge(float * W, const float * A, const float * B, float s, struct rk_lora_shape sh) {
    /* W (N,K) += s B (N,r) A (r,K) */
    check_shape(sh);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) sh.N, (int) sh.K, (int) sh.r, s, B, (int) sh.r,
                A, (int) sh.K, 1.0f, W, (int) sh.K);
}

void rk_cpu_lora_unmerge(float * W, const float * A, const float * B, float s, struct rk_lora_shape sh) {
    rk_cpu_lora_merge(W, A, B, -s, sh);
}
