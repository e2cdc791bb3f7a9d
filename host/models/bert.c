/*
 * bert.c: BERT encoder forward as a sequence of ops (one model code for every backend).
 *
 *   x = LN(wte[ids] + wpe[pos] + wtt[type])
 *   per layer:  qkv = x Wqkv^T + b           (one GEMM for q, k and v)
 *               att = attention(q, k, v, key padding mask)   q/k/v are strided views into qkv
 *               x   = LN(x + att Wo^T + bo)
 *               x   = LN(x + gelu(x W1^T + b1) W2^T + b2)
 */
#include "models/bert.h"

#include "check.h"
#include "io/safetensors.h"
#include "nvtx.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ALIGN_BYTES 256

static size_t align_up(size_t n) { return (n + ALIGN_BYTES - 1) / ALIGN_BYTES * ALIGN_BYTES; }

/* ---- weight loading ---------------------------------------------------------------------------- */

struct loader {
    const struct rk_st_set * st;
    const char *             dir;
    struct rk_backend *      be;
    char *                   base;   /* backend memory */
    size_t                   off;    /* next free byte */
    size_t                   cap;
    bool                     dry;    /* sizing pass: count bytes only */
    uint64_t                 rng;    /* != 0: random weights (benchmarks), no checkpoint */
};

/* N(0, 0.02) as BertModel's init, via Box-Muller on a xorshift stream. */
static float rand_normal(uint64_t * s) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        u[i] = ((double) (*s >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float) (0.02 * sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static const char * const name_prefixes[] = { "", "bert.", "model.", NULL };

/* Finds name, or its old-style alias (LayerNorm gamma/beta). */
static const struct rk_st_entry * find_weight(const struct loader * ld, const char * name) {
    const struct rk_st_entry * e = rk_st_set_find_any(ld->st, name, name_prefixes);
    if (e) return e;
    char alt[200];
    const char * dot = strrchr(name, '.');
    if (dot && strstr(name, "LayerNorm")) {
        const char * suffix = strcmp(dot, ".weight") == 0 ? ".gamma" : strcmp(dot, ".bias") == 0 ? ".beta" : NULL;
        if (suffix) {
            snprintf(alt, sizeof(alt), "%.*s%s", (int) (dot - name), name, suffix);
            return rk_st_set_find_any(ld->st, alt, name_prefixes);
        }
    }
    return NULL;
}

/*
 * Places a tensor of shape ne in the weight block and fills it from the named checkpoint tensors, stacked along
 * dim 0 (several names: q, k, v into one (3C, C)). In the sizing pass only the offset advances.
 */
static enum rk_status place(struct loader * ld, struct rk_tensor * t, int ndim, const int64_t * ne,
                            const char * const * names, int n_names) {
    rk_tensor_init(t, ld->be->act_dtype, ndim, ne, names[0]);
    const size_t nbytes = rk_tensor_nbytes(t);
    const size_t off    = ld->off;
    ld->off += align_up(nbytes);
    if (ld->dry) return RK_OK;
    RK_ASSERT(ld->off <= ld->cap);
    t->data    = ld->base + off;
    t->backend = ld->be;

    const int64_t n     = rk_tensor_nelements(t);
    float *       host  = rk_xmalloc((size_t) n * sizeof(float));
    int64_t       at    = 0;
    enum rk_status s    = RK_OK;
    if (ld->rng) {
        const bool ln = strstr(names[0], "LayerNorm") != NULL;
        const bool is_bias = strstr(names[0], "bias") != NULL;
        for (int64_t i = 0; i < n; i++) host[i] = ln ? (is_bias ? 0.0f : 1.0f) : rand_normal(&ld->rng);
        n_names = 0; /* nothing to read */
    }
    for (int i = 0; i < n_names && s == RK_OK; i++) {
        const struct rk_st_entry * e = find_weight(ld, names[i]);
        if (!e) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: weights have no tensor '%s'", ld->dir, names[i]);
            break;
        }
        const int64_t part = n / n_names;
        /* shape check: the stacked parts must each be ne with dim 0 divided by n_names */
        int64_t expect[RK_MAX_DIMS];
        for (int d = 0; d < ndim; d++) expect[d] = ne[d];
        expect[0] /= n_names;
        bool shape_ok = e->ndim == ndim;
        for (int d = 0; shape_ok && d < ndim; d++) shape_ok = e->shape[d] == expect[d];
        if (!shape_ok) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' has shape [%lld%s], expected [%lld%s]", ld->dir,
                             e->name, (long long) e->shape[0], e->ndim > 1 ? ", ..." : "", (long long) expect[0],
                             ndim > 1 ? ", ..." : "");
            break;
        }
        const struct rk_safetensors * file = NULL;
        for (int64_t f = 0; f < ld->st->n_files && !file; f++) {
            if (rk_safetensors_find(ld->st->files[f], e->name) == e) file = ld->st->files[f];
        }
        RK_ASSERT(file != NULL);
        s = rk_safetensors_read_f32(file, e, host + at, part);
        at += part;
    }
    if (s == RK_OK) s = rk_tensor_set_f32(t, host);
    free(host);
    return s;
}

static enum rk_status place1(struct loader * ld, struct rk_tensor * t, int ndim, const int64_t * ne, const char * name) {
    return place(ld, t, ndim, ne, &name, 1);
}

static enum rk_status load_params(struct rk_bert * m, struct loader * ld) {
    const struct rk_bert_config * c = &m->cfg;
    const int64_t C = c->hidden_size, I = c->intermediate_size;
    struct rk_bert_params * p = &m->params;
    RK_TRY(place1(ld, &p->wte, 2, (int64_t[]) { c->vocab_size, C }, "embeddings.word_embeddings.weight"));
    RK_TRY(place1(ld, &p->wpe, 2, (int64_t[]) { c->max_position, C }, "embeddings.position_embeddings.weight"));
    RK_TRY(place1(ld, &p->wtt, 2, (int64_t[]) { c->type_vocab_size, C }, "embeddings.token_type_embeddings.weight"));
    RK_TRY(place1(ld, &p->emb_ln_w, 1, (int64_t[]) { C }, "embeddings.LayerNorm.weight"));
    RK_TRY(place1(ld, &p->emb_ln_b, 1, (int64_t[]) { C }, "embeddings.LayerNorm.bias"));
    for (int64_t l = 0; l < c->n_layer; l++) {
        struct rk_bert_layer * L = &p->layers[l];
        char n[8][160];
        const char * pre = "encoder.layer";
#define NM(i, suffix) (snprintf(n[i], sizeof(n[i]), "%s.%lld.%s", pre, (long long) l, suffix), n[i])
        const char * qkv_w[3] = { NM(0, "attention.self.query.weight"), NM(1, "attention.self.key.weight"),
                                  NM(2, "attention.self.value.weight") };
        RK_TRY(place(ld, &L->qkv_w, 2, (int64_t[]) { 3 * C, C }, qkv_w, 3));
        const char * qkv_b[3] = { NM(3, "attention.self.query.bias"), NM(4, "attention.self.key.bias"),
                                  NM(5, "attention.self.value.bias") };
        RK_TRY(place(ld, &L->qkv_b, 1, (int64_t[]) { 3 * C }, qkv_b, 3));
        RK_TRY(place1(ld, &L->ao_w, 2, (int64_t[]) { C, C }, NM(0, "attention.output.dense.weight")));
        RK_TRY(place1(ld, &L->ao_b, 1, (int64_t[]) { C }, NM(0, "attention.output.dense.bias")));
        RK_TRY(place1(ld, &L->ln1_w, 1, (int64_t[]) { C }, NM(0, "attention.output.LayerNorm.weight")));
        RK_TRY(place1(ld, &L->ln1_b, 1, (int64_t[]) { C }, NM(0, "attention.output.LayerNorm.bias")));
        RK_TRY(place1(ld, &L->fc_w, 2, (int64_t[]) { I, C }, NM(0, "intermediate.dense.weight")));
        RK_TRY(place1(ld, &L->fc_b, 1, (int64_t[]) { I }, NM(0, "intermediate.dense.bias")));
        RK_TRY(place1(ld, &L->proj_w, 2, (int64_t[]) { C, I }, NM(0, "output.dense.weight")));
        RK_TRY(place1(ld, &L->proj_b, 1, (int64_t[]) { C }, NM(0, "output.dense.bias")));
        RK_TRY(place1(ld, &L->ln2_w, 1, (int64_t[]) { C }, NM(0, "output.LayerNorm.weight")));
        RK_TRY(place1(ld, &L->ln2_b, 1, (int64_t[]) { C }, NM(0, "output.LayerNorm.bias")));
#undef NM
    }
    return RK_OK;
}

static enum rk_status alloc_and_fill(struct rk_bert * m, const struct rk_st_set * st, const char * model_dir,
                                     uint64_t seed);

enum rk_status rk_bert_load(const char * model_dir, struct rk_backend * be, struct rk_bert ** out) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", model_dir);
    struct rk_bert * m = rk_xcalloc(1, sizeof(*m));
    m->be = be;
    enum rk_status s = rk_bert_config_load(path, &m->cfg);
    if (s == RK_OK) s = rk_st_pooling_load(model_dir, &m->pooling);
    struct rk_st_set * st = NULL;
    if (s == RK_OK) s = rk_safetensors_open_dir(model_dir, &st);
    if (s != RK_OK) {
        free(m);
        return s;
    }
    s = alloc_and_fill(m, st, model_dir, 0);
    rk_st_set_close(st);
    if (s != RK_OK) {
        rk_bert_free(m);
        return s;
    }
    *out = m;
    return RK_OK;
}

enum rk_status rk_bert_init_random(const struct rk_bert_config * cfg, struct rk_backend * be, uint64_t seed,
                                   struct rk_bert ** out) {
    struct rk_bert * m = rk_xcalloc(1, sizeof(*m));
    m->be  = be;
    m->cfg = *cfg;
    enum rk_status s = alloc_and_fill(m, NULL, "random", seed ? seed : 1);
    if (s != RK_OK) {
        rk_bert_free(m);
        return s;
    }
    *out = m;
    return RK_OK;
}

enum rk_status rk_bert_config_named(const char * name, struct rk_bert_config * cfg) {
    struct rk_bert_config c = { .vocab_size = 30522, .hidden_size = 768, .n_layer = 12, .n_head = 12,
                                .intermediate_size = 3072, .max_position = 512, .type_vocab_size = 2,
                                .layer_norm_eps = 1e-12f, .pad_token_id = 0 };
    snprintf(c.hidden_act, sizeof(c.hidden_act), "gelu");
    snprintf(c.model_type, sizeof(c.model_type), "bert");
    if (!strcmp(name, "large")) {
        c.hidden_size = 1024, c.n_layer = 24, c.n_head = 16, c.intermediate_size = 4096;
    } else if (!strcmp(name, "minilm")) {
        c.hidden_size = 384, c.n_layer = 6, c.n_head = 12, c.intermediate_size = 1536;
    } else if (strcmp(name, "base")) {
        return rk_set_error(RK_STATUS_ARG, "unknown BERT shape '%s' (base, large, minilm)", name);
    }
    *cfg = c;
    return RK_OK;
}

static enum rk_status alloc_and_fill(struct rk_bert * m, const struct rk_st_set * st, const char * model_dir,
                                     uint64_t seed) {
    struct rk_backend * be = m->be;
    enum rk_status      s;
    m->params.layers = rk_xcalloc((size_t) m->cfg.n_layer, sizeof(struct rk_bert_layer));
    struct loader ld = { .st = st, .dir = model_dir, .be = be, .dry = true, .rng = seed };
    s = load_params(m, &ld); /* sizing pass: cannot fail */
    RK_ASSERT(s == RK_OK);
    ld.cap  = ld.off;
    ld.off  = 0;
    ld.dry  = false;
    ld.base = be->alloc(be, ld.cap);
    if (!ld.base) {
        s = rk_set_error(RK_STATUS_OOM, "%s: cannot allocate %zu bytes of weights on %s", model_dir, ld.cap, be->name);
    } else {
        m->params.memory = ld.base;
        m->params.nbytes = ld.cap;
        s                = load_params(m, &ld);
    }
    return s;
}

static void free_acts(struct rk_bert_acts * a) {
    struct rk_tensor ** ts[] = { &a->x, &a->qkv, &a->att, &a->tmp, &a->fc, &a->ids, &a->types, &a->mask, &a->pooled };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        rk_tensor_free(*ts[i]);
        *ts[i] = NULL;
    }
    a->B_max = a->T_max = 0;
}

void rk_bert_free(struct rk_bert * m) {
    if (!m) return;
    free_acts(&m->acts);
    if (m->params.memory) m->be->free(m->be, m->params.memory);
    free(m->params.layers);
    free(m);
}

/* Grows the activation buffers to hold B x T tokens. */
static enum rk_status ensure_acts(struct rk_bert * m, int64_t B, int64_t T) {
    struct rk_bert_acts * a = &m->acts;
    if (B <= a->B_max && T <= a->T_max && B * T <= a->B_max * a->T_max) return RK_OK;
    const int64_t Bn = B > a->B_max ? B : a->B_max, Tn = T > a->T_max ? T : a->T_max;
    free_acts(a);
    const int64_t N = Bn * Tn, C = m->cfg.hidden_size, I = m->cfg.intermediate_size;
    const enum rk_dtype dt = m->be->act_dtype;
    struct { struct rk_tensor ** t; enum rk_dtype dt; int64_t rows, cols; const char * name; } spec[] = {
        { &a->x, dt, N, C, "x" },          { &a->qkv, dt, N, 3 * C, "qkv" },
        { &a->att, dt, N, C, "att" },      { &a->tmp, dt, N, C, "tmp" },
        { &a->fc, dt, N, I, "fc" },        { &a->ids, RK_DTYPE_I32, N, 1, "ids" },
        { &a->types, RK_DTYPE_I32, N, 1, "types" }, { &a->mask, RK_DTYPE_I32, N, 1, "mask" },
        { &a->pooled, dt, Bn, C, "pooled" },
    };
    for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
        *spec[i].t = rk_tensor_new(m->be, spec[i].dt, 2, (int64_t[]) { spec[i].rows, spec[i].cols }, spec[i].name);
        if (!*spec[i].t) {
            free_acts(a);
            return RK_STATUS_OOM;
        }
    }
    a->B_max = Bn;
    a->T_max = Tn;
    return RK_OK;
}

/* A 2-D (rows, cols) view of the first rows of t, keeping t's row stride. */
static struct rk_tensor rows_view(const struct rk_tensor * t, int64_t rows, int64_t cols) {
    return rk_tensor_view(t, 2, (int64_t[]) { rows, cols }, (int64_t[]) { t->nb[0], t->nb[1] }, 0);
}

/* x = LN(x + h w^T + b) * ln_w + ln_b, the end of a post-LN block. in_gemm: the GEMM adds x itself (accumulate,
   cuBLASLt beta = 1) and the LayerNorm runs in place (x read and written: two passes); else the GEMM writes tmp and
   the LayerNorm adds the residual (tmp and x read, x written: three). */
static enum rk_status residual_ln(struct rk_backend * be, bool in_gemm, struct rk_tensor * x, struct rk_tensor * tmp,
                                  const struct rk_tensor * h, const struct rk_tensor * w, const struct rk_tensor * b,
                                  const struct rk_tensor * ln_w, const struct rk_tensor * ln_b, float eps) {
    if (in_gemm) {
        RK_TRY(rk_op_matmul_add(be, x, h, w, b));
        return rk_op_layernorm(be, x, x, ln_w, ln_b, NULL, eps);
    }
    RK_TRY(rk_op_matmul(be, tmp, h, w, b, RK_ACT_NONE));
    return rk_op_layernorm(be, x, tmp, ln_w, ln_b, x, eps);
}

enum rk_status rk_bert_forward(struct rk_bert * m, const int32_t * ids, const int32_t * mask, const int32_t * type_ids,
                               int64_t B, int64_t T) {
    const struct rk_bert_config * cfg = &m->cfg;
    if (B <= 0 || T <= 0) return rk_set_error(RK_STATUS_ARG, "bert: empty batch (%lld x %lld)", (long long) B, (long long) T);
    if (T > cfg->max_position)
        return rk_set_error(RK_STATUS_ARG, "bert: sequence length %lld exceeds max_position_embeddings %lld",
                            (long long) T, (long long) cfg->max_position);
    for (int64_t i = 0; i < B * T; i++) {
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return rk_set_error(RK_STATUS_ARG, "bert: token id %d at %lld outside the vocabulary (%lld)", ids[i],
                                (long long) i, (long long) cfg->vocab_size);
        if (type_ids && (type_ids[i] < 0 || type_ids[i] >= cfg->type_vocab_size))
            return rk_set_error(RK_STATUS_ARG, "bert: token type %d at %lld outside %lld types", type_ids[i],
                                (long long) i, (long long) cfg->type_vocab_size);
    }
    RK_TRY(ensure_acts(m, B, T));
    struct rk_backend *   be = m->be;
    struct rk_bert_acts * a  = &m->acts;
    const int64_t N = B * T, C = cfg->hidden_size, I = cfg->intermediate_size, NH = cfg->n_head, HS = C / NH;
    const size_t  es = rk_dtype_traits[be->act_dtype].type_size;
    m->B = B;
    m->T = T;

    struct rk_tensor ids_t   = rk_tensor_view(a->ids, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor mask_t  = rk_tensor_view(a->mask, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor types_t = rk_tensor_view(a->types, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    RK_TRY(rk_tensor_set(&ids_t, ids, (size_t) N * 4));
    RK_TRY(rk_tensor_set(&mask_t, mask, (size_t) N * 4));
    if (type_ids) RK_TRY(rk_tensor_set(&types_t, type_ids, (size_t) N * 4));

    struct rk_tensor x   = rows_view(a->x, N, C);
    struct rk_tensor x3  = rk_tensor_view(a->x, 3, (int64_t[]) { B, T, C }, (int64_t[]) { T * C * (int64_t) es, C * (int64_t) es, (int64_t) es }, 0);
    struct rk_tensor qkv = rows_view(a->qkv, N, 3 * C);
    struct rk_tensor att = rows_view(a->att, N, C);
    struct rk_tensor tmp = rows_view(a->tmp, N, C);
    struct rk_tensor fc  = rows_view(a->fc, N, I);

    /* q, k, v: (B, NH, T, HS) views into the fused (B, T, 3C) buffer; att: (B, NH, T, HS) view of (B, T, C) */
    const int64_t e     = (int64_t) es;
    const int64_t qkv_nb[4] = { T * 3 * C * e, HS * e, 3 * C * e, e };
    const int64_t att_nb[4] = { T * C * e, HS * e, C * e, e };
    const int64_t shp[4]    = { B, NH, T, HS };
    struct rk_tensor q  = rk_tensor_view(a->qkv, 4, shp, qkv_nb, 0);
    struct rk_tensor k  = rk_tensor_view(a->qkv, 4, shp, qkv_nb, (size_t) (C * e));
    struct rk_tensor v  = rk_tensor_view(a->qkv, 4, shp, qkv_nb, (size_t) (2 * C * e));
    struct rk_tensor o4 = rk_tensor_view(a->att, 4, shp, att_nb, 0);

    rk_backend_nvtx_push(be, "bert.embeddings");
    struct rk_op_call emb = { .op = RK_OP_EMBED, .dst = &x3,
                              .src = { &m->params.wte, &ids_t, &m->params.wpe, &m->params.wtt, type_ids ? &types_t : NULL } };
    RK_TRY(rk_op(be, &emb));
    RK_TRY(rk_op_layernorm(be, &x, &x, &m->params.emb_ln_w, &m->params.emb_ln_b, NULL, cfg->layer_norm_eps));
    rk_backend_nvtx_pop(be);

    /* post-LN blocks: the residual in the sublayer's last GEMM (residual_ln); RK_BERT_RESIDUAL_VARIANT=2 adds it in
       the LayerNorm instead, for comparison (0, the default, and 1: the GEMM) */
    const bool res_in_gemm = rk_env_variant("RK_BERT_RESIDUAL_VARIANT", 3) != 2;
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        const struct rk_bert_layer * L = &m->params.layers[l];
        char name[32];
        snprintf(name, sizeof(name), "bert.layer%lld", (long long) l);
        rk_backend_nvtx_push(be, name);
        RK_TRY(rk_op_matmul(be, &qkv, &x, &L->qkv_w, &L->qkv_b, RK_ACT_NONE));
        struct rk_op_call at = { .op = RK_OP_ATTN_FWD, .dst = &o4, .src = { &q, &k, &v, &mask_t, NULL } };
        at.p.attn = (struct rk_attn_params) { .scale = 1.0f / sqrtf((float) HS) };
        RK_TRY(rk_op(be, &at));
        RK_TRY(residual_ln(be, res_in_gemm, &x, &tmp, &att, &L->ao_w, &L->ao_b, &L->ln1_w, &L->ln1_b, cfg->layer_norm_eps));
        RK_TRY(rk_op_matmul(be, &fc, &x, &L->fc_w, &L->fc_b, RK_ACT_GELU));
        RK_TRY(residual_ln(be, res_in_gemm, &x, &tmp, &fc, &L->proj_w, &L->proj_b, &L->ln2_w, &L->ln2_b,
                           cfg->layer_norm_eps));
        rk_backend_nvtx_pop(be);
    }
    return RK_OK;
}

enum rk_status rk_bert_hidden_f32(struct rk_bert * m, float * out) {
    const int64_t N = m->B * m->T, C = m->cfg.hidden_size;
    struct rk_tensor x = rk_tensor_view(m->acts.x, 2, (int64_t[]) { N, C }, m->acts.x->nb, 0);
    RK_TRY(m->be->synchronize(m->be));
    return rk_tensor_get_f32(&x, out);
}

enum rk_status rk_bert_pool_f32(struct rk_bert * m, enum rk_pool_mode mode, bool normalize, float * out) {
    struct rk_backend * be = m->be;
    const int64_t B = m->B, T = m->T, C = m->cfg.hidden_size;
    const int64_t e = (int64_t) rk_dtype_traits[be->act_dtype].type_size;
    struct rk_tensor x3     = rk_tensor_view(m->acts.x, 3, (int64_t[]) { B, T, C }, (int64_t[]) { T * C * e, C * e, e }, 0);
    struct rk_tensor mask_t = rk_tensor_view(m->acts.mask, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor pooled = rk_tensor_view(m->acts.pooled, 2, (int64_t[]) { B, C }, (int64_t[]) { C * e, e }, 0);
    struct rk_op_call pc    = { .op = RK_OP_POOL, .dst = &pooled, .src = { &x3, &mask_t } };
    pc.p.pool.mode          = mode;
    RK_TRY(rk_op(be, &pc));
    if (normalize) {
        struct rk_op_call nc = { .op = RK_OP_L2NORM, .dst = &pooled, .src = { &pooled } };
        nc.p.l2norm.eps      = 1e-12f;
        RK_TRY(rk_op(be, &nc));
    }
    RK_TRY(be->synchronize(be));
    return rk_tensor_get_f32(&pooled, out);
}
