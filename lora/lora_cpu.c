/*
 * lora_cpu.c: LoRA adapters on the CPU: the config and target-module matcher, the adapter parameter struct and
 * its PEFT initialisation, and the reference ops LORA_FWD / LORA_BWD / merge / unmerge (f32, OpenBLAS).
 * Shapes and contracts: lora/lora.h. Adapter files: lora/adapter.c.
 */
#include "lora/lora.h"

#include "check.h"
#include "kernels/dropout.h"
#include "quant/nf4.h"
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
    if (dA) {
        float *       tmp;
        const float * xm = masked_input(x, mask, sh.M * sh.K, &tmp);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, K, M, s, g, r, xm, K, 1.0f, dA, K);
        free(tmp);
    }
    /* dB += s dy^T u */
    if (dB) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, r, M, s, dy, N, u, r, 1.0f, dB, r);
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
    /* W (N,K) += s B (N,r) A (r,K), rounded as PEFT's merge: d = B A with one fused multiply-add per rank term in
     * rank order, then W + (d * s) with two roundings. Not sgemm: its summation order depends on the BLAS and the
     * kernel it picks for the CPU (the GPU machine's BLAS gave other last bits), and a merge into 4 bits must be
     * bit-exact with PEFT + bitsandbytes on every machine (tests/test_lora.c). */
    check_shape(sh);
    const int64_t N = sh.N, K = sh.K, r = sh.r;
#pragma omp parallel
    {
        float * d = rk_xmalloc(sizeof(float) * (size_t) (K > 0 ? K : 1)); /* one row of B A */
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            for (int64_t k = 0; k < K; k++) d[k] = 0.0f;
            for (int64_t j = 0; j < r; j++) {
                const float b = B[n * r + j], * a = A + j * K;
                for (int64_t k = 0; k < K; k++) d[k] = fmaf(b, a[k], d[k]);
            }
            float * w = W + n * K;
            for (int64_t k = 0; k < K; k++) {
                const float ds = d[k] * s;
                w[k] += ds;
            }
        }
        free(d);
    }
}

void rk_cpu_lora_unmerge(float * W, const float * A, const float * B, float s, struct rk_lora_shape sh) {
    rk_cpu_lora_merge(W, A, B, -s, sh);
}

/* ------------------------------------------------------------------------------------------------
 * the ops RK_OP_LORA_FWD / RK_OP_LORA_BWD (host/backend.h) over the reference math */

/* Rows of t seen as (rows, cols) with contiguous rows: its element count / cols, or -1 when t is not that. */
static int64_t op_rows(const struct rk_tensor * t, int64_t cols) {
    if (!t || !rk_tensor_is_contiguous(t) || t->ne[t->ndim - 1] != cols) return -1;
    return rk_tensor_nelements(t) / cols;
}

/* The shape of an op call from A (r,K), B (N,r), x (M,K) and an (M,N) tensor mn; RK_STATUS_ARG when they disagree. */
static enum rk_status op_shape(const char * op, const struct rk_tensor * x, const struct rk_tensor * A,
                               const struct rk_tensor * B, const struct rk_tensor * mn, const struct rk_lora_params * p,
                               struct rk_lora_shape * sh) {
    if (A->ndim != 2 || B->ndim != 2 || !rk_tensor_is_contiguous(A) || !rk_tensor_is_contiguous(B))
        return rk_set_error(RK_STATUS_ARG, "%s: A and B must be contiguous 2-D tensors", op);
    sh->r = A->ne[0];
    sh->K = A->ne[1];
    sh->N = B->ne[0];
    sh->M = op_rows(x, sh->K);
    if (B->ne[1] != sh->r || sh->r < 1 || sh->M < 0 || op_rows(mn, sh->N) != sh->M)
        return rk_set_error(RK_STATUS_ARG, "%s: shapes disagree: A (%lld,%lld), B (%lld,%lld), x %lld rows", op,
                            (long long) A->ne[0], (long long) A->ne[1], (long long) B->ne[0], (long long) B->ne[1],
                            (long long) sh->M);
    if (!(p->dropout >= 0.0f && p->dropout <= 1.0f))
        return rk_set_error(RK_STATUS_ARG, "%s: dropout p = %g outside [0, 1]", op, (double) p->dropout);
    return RK_OK;
}

/* The scaled keep factors (M,K) of the DROPOUT op's rule for (p, seed, offset): DROPOUT applied to ones. NULL when
 * p = 0 (no dropout). free() the result. */
static float * dropout_mask(const struct rk_lora_params * p, int64_t M, int64_t K) {
    if (p->dropout == 0.0f) return NULL;
    float * mask = rk_xmalloc(sizeof(float) * (size_t) (M * K > 0 ? M * K : 1));
    for (int64_t i = 0; i < M * K; i++) mask[i] = 1.0f;
    struct rk_tensor               t  = rk_tensor_host(mask, RK_DTYPE_F32, 1, (int64_t[]) { M * K > 0 ? M * K : 1 });
    const struct rk_dropout_params dp = { .p = p->dropout, .seed = p->seed, .offset = p->offset };
    if (M * K > 0) rk_cpu_dropout(&t, &t, &dp);
    return mask;
}

enum rk_status rk_cpu_lora_fwd_op(struct rk_tensor * y, struct rk_tensor * u, const struct rk_tensor * x,
                                  const struct rk_tensor * A, const struct rk_tensor * B,
                                  const struct rk_lora_params * p) {
    /* x (M,K), A (r,K), B (N,r); y (M,N) +=; u (M,r) out or NULL */
    struct rk_lora_shape sh = { 0 };
    RK_TRY(op_shape("LORA_FWD", x, A, B, y, p, &sh));
    if (u && op_rows(u, sh.r) != sh.M)
        return rk_set_error(RK_STATUS_ARG, "LORA_FWD: u must be contiguous (%lld, %lld)", (long long) sh.M,
                            (long long) sh.r);
    float * mask = dropout_mask(p, sh.M, sh.K);
    float * ub   = u ? u->data : rk_xmalloc(sizeof(float) * (size_t) (sh.M * sh.r > 0 ? sh.M * sh.r : 1));
    rk_cpu_lora_fwd(y->data, ub, x->data, NULL, NULL, A->data, B->data, p->scale, mask, sh);
    if (!u) free(ub);
    free(mask);
    return RK_OK;
}

enum rk_status rk_cpu_lora_bwd_op(struct rk_tensor * dx, const struct rk_tensor * dy, const struct rk_tensor * x,
                                  const struct rk_tensor * u, const struct rk_tensor * A, const struct rk_tensor * B,
                                  const struct rk_lora_params * p) {
    /* dy (M,N), x (M,K), u (M,r), A (r,K), B (N,r); dx (M,K) +=, dA (r,K) +=, dB (N,r) += */
    struct rk_lora_shape sh = { 0 };
    RK_TRY(op_shape("LORA_BWD", x, A, B, dy, p, &sh));
    if (dx && !dx->data) dx = NULL;
    if (op_rows(u, sh.r) != sh.M || (dx && op_rows(dx, sh.K) != sh.M) ||
        (p->dA && (!rk_tensor_is_contiguous(p->dA) || rk_tensor_nelements(p->dA) != sh.r * sh.K)) ||
        (p->dB && (!rk_tensor_is_contiguous(p->dB) || rk_tensor_nelements(p->dB) != sh.N * sh.r)))
        return rk_set_error(RK_STATUS_ARG, "LORA_BWD: u (%lld,%lld), dx (%lld,%lld), dA, dB must be contiguous and "
                            "match", (long long) sh.M, (long long) sh.r, (long long) sh.M, (long long) sh.K);
    float * mask = dropout_mask(p, sh.M, sh.K);
    rk_cpu_lora_bwd(dx ? dx->data : NULL, p->dA ? p->dA->data : NULL, p->dB ? p->dB->data : NULL, dy->data, x->data,
                    u->data, NULL, A->data, B->data, p->scale, mask, sh);
    free(mask);
    return RK_OK;
}

/* ------------------------------------------------------------------------------------------------
 * merge into a 4-bit base */

/* W4 <- quantize(dequantize(W4) + s B A), with W4's own format. */
static enum rk_status merge_nf4(struct rk_nf4_tensor * w, const float * A, const float * B, float s, int64_t r) {
    if (r < 1) return rk_set_error(RK_STATUS_ARG, "lora merge_nf4: rank r = %lld", (long long) r);
    float * deq = malloc(sizeof(float) * (size_t) w->n);
    if (!deq) return rk_set_error(RK_STATUS_OOM, "lora merge_nf4: no memory for a %lld-value weight", (long long) w->n);
    rk_cpu_nf4_dequantize(w, deq);
    rk_cpu_lora_merge(deq, A, B, s, (struct rk_lora_shape) { .M = 0, .K = w->n_cols, .N = w->n_rows, .r = r });
    struct rk_nf4_tensor q;
    enum rk_status       st = rk_cpu_nf4_quantize(deq, w->n_rows, w->n_cols, w->blocksize, w->kind, w->double_quant, &q);
    free(deq);
    if (st != RK_OK) return st;
    rk_nf4_tensor_free(w);
    *w = q;
    return RK_OK;
}

enum rk_status rk_cpu_lora_merge_nf4(struct rk_nf4_tensor * w, const float * A, const float * B, float s, int64_t r) {
    return merge_nf4(w, A, B, s, r);
}

enum rk_status rk_cpu_lora_unmerge_nf4(struct rk_nf4_tensor * w, const float * A, const float * B, float s,
                                       int64_t r) {
    return merge_nf4(w, A, B, -s, r);
}
