/*
 * bert_cls.c: BertForSequenceClassification (multi-label) for training, as a sequence of ops: a training forward
 * that keeps its activations, the BCE-with-logits loss, and a backward through every layer (see bert_cls.h).
 *
 * Forward (train), per layer l, x = xs[l]:
 *   qkv = x Wqkv^T + b;  att = attention(q, k, v, mask) (lse kept);  ao = drop(att Wo^T + bo)
 *   h1  = LN1(ao + x);   fcp = h1 W1^T + b1;  pr = drop(gelu(fcp) W2^T + b2);  xs[l+1] = LN2(pr + h1)
 * Backward, with dres = d loss / d xs[l+1]:
 *   dres = LN2_bwd(dres)                     (the gradient of pr and of h1 alike)
 *   dfc  = gelu'(fcp) * (drop(dres) W2);     dres += dfc W1                       = d h1
 *   dres = LN1_bwd(dres);                    datt = drop(dres) Wo;  dqkv = attn_bwd(datt);  dres += dqkv Wqkv
 * Weight gradients accumulate into the gradient block at every step (MATMUL_BWD accumulate, LN/EMBED_BWD +=).
 *
 * Gradient checkpointing (m->grad_checkpointing): the forward keeps only the layer inputs xs; the per-layer
 * buffers (qkv, att, lse, ao, h1, fcp, pr) hold one layer, and the backward recomputes layer l's forward from
 * xs[l] just before its backward, with the same dropout masks (Philox offsets depend on step and site only), so
 * the gradients are those of the uncheckpointed run (bit-identical on the CPU: the same ops on the same values).
 */
#include "models/bert_cls.h"

#include "check.h"
#include "io/config.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN_BYTES 256

static size_t align_up(size_t n) { return (n + ALIGN_BYTES - 1) / ALIGN_BYTES * ALIGN_BYTES; }

static int64_t esize(enum rk_dtype t) { return (int64_t) rk_dtype_traits[t].type_size; }

/* N(0, std) via Box-Muller on a xorshift stream (HF _init_weights uses normal_(0, initializer_range)). */
static float rand_normal(uint64_t * s, double std) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        u[i] = ((double) (*s >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float) (std * sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* ---- loading ----------------------------------------------------------------------------------- */

/* dropout probabilities from config.json (absent fields: HF's defaults 0.1; classifier_dropout null: hidden) */
static enum rk_status load_dropout(struct rk_bert_cls * m, const char * model_dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", model_dir);
    cJSON * doc = NULL;
    RK_TRY(rk_json_load_file(path, &doc));
    m->hidden_dropout = m->attn_dropout = 0.1f;
    const char * keys[3] = { "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout" };
    float *      dst[3]  = { &m->hidden_dropout, &m->attn_dropout, &m->classifier_dropout };
    m->classifier_dropout = -1.0f;
    enum rk_status s = RK_OK;
    for (int i = 0; i < 3 && s == RK_OK; i++) {
        const cJSON * j = cJSON_GetObjectItemCaseSensitive(doc, keys[i]);
        if (!j || cJSON_IsNull(j)) continue;
        if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0.0 && j->valuedouble <= 1.0)) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: field '%s' must be a probability in [0, 1]", path, keys[i]);
            break;
        }
        *dst[i] = (float) j->valuedouble;
    }
    if (m->classifier_dropout < 0.0f) m->classifier_dropout = m->hidden_dropout;
    cJSON_Delete(doc);
    return s;
}

/*
 * Places one head tensor (ne) at *off in the head block and fills it from the checkpoint entry e (shape-checked),
 * or with N(0, 0.02) / zeros when e is NULL.
 */
static enum rk_status head_place(struct rk_bert_cls * m, struct rk_tensor * t, int ndim, const int64_t * ne,
                                 const char * name, const struct rk_st_entry * e, size_t * off, bool dry,
                                 uint64_t * rng, const char * dir) {
    rk_tensor_init(t, m->be->act_dtype, ndim, ne, name);
    const size_t at = *off;
    *off += align_up(rk_tensor_nbytes(t));
    if (dry) return RK_OK;
    t->data    = (char *) m->head.memory + at;
    t->backend = m->be;
    const int64_t n    = rk_tensor_nelements(t);
    float *       host = rk_xmalloc(sizeof(float) * (size_t) n);
    enum rk_status s   = RK_OK;
    if (e) {
        bool ok = e->ndim == ndim;
        for (int d = 0; ok && d < ndim; d++) ok = e->shape[d] == ne[d];
        if (!ok) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: tensor '%s' has shape [%lld%s], expected [%lld%s]", dir, e->name,
                             (long long) e->shape[0], e->ndim > 1 ? ", ..." : "", (long long) ne[0],
                             ndim > 1 ? ", ..." : "");
        } else {
            s = rk_safetensors_read_f32(NULL, e, host, n);
        }
    } else {
        for (int64_t i = 0; i < n; i++) host[i] = ndim == 2 ? rand_normal(rng, 0.02) : 0.0f;
    }
    if (s == RK_OK) s = rk_tensor_set_f32(t, host);
    free(host);
    return s;
}

static enum rk_status load_head(struct rk_bert_cls * m, const struct rk_st_set * st, const char * dir,
                                int64_t n_labels, uint64_t seed) {
    static const char * const cls_prefixes[] = { "", NULL };
    const int64_t              C = m->bert->cfg.hidden_size;
    /* st NULL: a random head (rk_bert_cls_init_random) */
    const struct rk_st_entry * pw = st ? rk_st_set_find_any(st, "pooler.dense.weight", NULL) : NULL;
    const struct rk_st_entry * pb = st ? rk_st_set_find_any(st, "pooler.dense.bias", NULL) : NULL;
    const struct rk_st_entry * cw = st ? rk_st_set_find_any(st, "classifier.weight", cls_prefixes) : NULL;
    const struct rk_st_entry * cb = st ? rk_st_set_find_any(st, "classifier.bias", cls_prefixes) : NULL;
    if (!pw || !pb) pw = pb = NULL; /* a half-present pooler is re-initialised as a whole */
    if (!cw || !cb) cw = cb = NULL;
    if (n_labels <= 0) {
        if (!cw || cw->ndim != 2)
            return rk_set_error(RK_STATUS_ARG, "%s: no classifier in the checkpoint: the number of labels is needed", dir);
        n_labels = cw->shape[0];
    }
    if (cw && (cw->ndim != 2 || cw->shape[0] != n_labels))
        return rk_set_error(RK_STATUS_FORMAT, "%s: checkpoint classifier '%s' has %lld labels, %lld requested", dir,
                            cw->name, (long long) cw->shape[0], (long long) n_labels);
    m->n_labels  = n_labels;
    uint64_t rng = seed ? seed : 0x9E3779B97F4A7C15ull;
    for (int pass = 0; pass < 2; pass++) {
        const bool dry = pass == 0;
        size_t     off = 0;
        struct rk_bert_cls_head * h = &m->head;
        RK_TRY(head_place(m, &h->pool_w, 2, (int64_t[]) { C, C }, "bert.pooler.dense.weight", pw, &off, dry, &rng, dir));
        RK_TRY(head_place(m, &h->pool_b, 1, (int64_t[]) { C }, "bert.pooler.dense.bias", pb, &off, dry, &rng, dir));
        RK_TRY(head_place(m, &h->cls_w, 2, (int64_t[]) { n_labels, C }, "classifier.weight", cw, &off, dry, &rng, dir));
        RK_TRY(head_place(m, &h->cls_b, 1, (int64_t[]) { n_labels }, "classifier.bias", cb, &off, dry, &rng, dir));
        if (dry) {
            h->nbytes = off;
            h->memory = m->be->alloc(m->be, off);
            if (!h->memory) return rk_set_error(RK_STATUS_OOM, "%s: cannot allocate the classification head", dir);
        }
    }
    return RK_OK;
}

/* t's twin in the gradient block: same shape, data at the same offset from base_to as t's from base_from. */
static struct rk_tensor mirror(const struct rk_tensor * t, const void * base_from, void * base_to) {
    struct rk_tensor g = *t;
    g.data             = (char *) base_to + ((const char *) t->data - (const char *) base_from);
    g.owns_data        = false;
    return g;
}

static enum rk_status alloc_grads(struct rk_bert_cls * m) {
    struct rk_backend *           be = m->be;
    const struct rk_bert_params * p  = &m->bert->params;
    const size_t total = p->nbytes + m->head.nbytes;
    m->grad_memory     = be->alloc(be, total);
    if (!m->grad_memory) return rk_set_error(RK_STATUS_OOM, "bert_cls: cannot allocate %zu bytes of gradients", total);
    struct rk_bert_params * g = &m->grads;
    g->memory = m->grad_memory;
    g->nbytes = p->nbytes;
    g->layers = rk_xcalloc((size_t) m->bert->cfg.n_layer, sizeof(struct rk_bert_layer));
    void * gb = m->grad_memory;
    g->wte      = mirror(&p->wte, p->memory, gb);
    g->wpe      = mirror(&p->wpe, p->memory, gb);
    g->wtt      = mirror(&p->wtt, p->memory, gb);
    g->emb_ln_w = mirror(&p->emb_ln_w, p->memory, gb);
    g->emb_ln_b = mirror(&p->emb_ln_b, p->memory, gb);
    for (int64_t l = 0; l < m->bert->cfg.n_layer; l++) {
        const struct rk_bert_layer * L = &p->layers[l];
        struct rk_bert_layer *       G = &g->layers[l];
        const struct rk_tensor * src[12] = { &L->qkv_w, &L->qkv_b, &L->ao_w,  &L->ao_b,   &L->ln1_w, &L->ln1_b,
                                             &L->fc_w,  &L->fc_b,  &L->proj_w, &L->proj_b, &L->ln2_w, &L->ln2_b };
        struct rk_tensor *       dst[12] = { &G->qkv_w, &G->qkv_b, &G->ao_w,  &G->ao_b,   &G->ln1_w, &G->ln1_b,
                                             &G->fc_w,  &G->fc_b,  &G->proj_w, &G->proj_b, &G->ln2_w, &G->ln2_b };
        for (int i = 0; i < 12; i++) *dst[i] = mirror(src[i], p->memory, gb);
    }
    void * hb = (char *) gb + p->nbytes;
    m->head_grads.pool_w = mirror(&m->head.pool_w, m->head.memory, hb);
    m->head_grads.pool_b = mirror(&m->head.pool_b, m->head.memory, hb);
    m->head_grads.cls_w  = mirror(&m->head.cls_w, m->head.memory, hb);
    m->head_grads.cls_b  = mirror(&m->head.cls_b, m->head.memory, hb);
    return rk_bert_cls_zero_grad(m);
}

enum rk_status rk_bert_cls_load(const char * model_dir, int64_t n_labels, uint64_t seed, struct rk_backend * be,
                                struct rk_bert_cls ** out) {
    *out                 = NULL;
    struct rk_bert_cls * m = rk_xcalloc(1, sizeof(*m));
    m->be                = be;
    m->seed              = seed;
    enum rk_status s     = rk_bert_load(model_dir, be, &m->bert);
    if (s == RK_OK) s = load_dropout(m, model_dir);
    struct rk_st_set * st = NULL;
    if (s == RK_OK) s = rk_safetensors_open_dir(model_dir, &st);
    if (s == RK_OK) s = load_head(m, st, model_dir, n_labels, seed);
    rk_st_set_close(st);
    if (s == RK_OK) s = alloc_grads(m);
    if (s != RK_OK) {
        rk_bert_cls_free(m);
        return s;
    }
    *out = m;
    return RK_OK;
}

enum rk_status rk_bert_cls_init_random(const struct rk_bert_config * cfg, int64_t n_labels, uint64_t seed,
                                       struct rk_backend * be, struct rk_bert_cls ** out) {
    *out = NULL;
    if (n_labels <= 0) return rk_set_error(RK_STATUS_ARG, "bert_cls: %lld labels", (long long) n_labels);
    struct rk_bert_cls * m = rk_xcalloc(1, sizeof(*m));
    m->be                  = be;
    m->seed                = seed;
    m->hidden_dropout = m->attn_dropout = m->classifier_dropout = 0.1f;
    enum rk_status s       = rk_bert_init_random(cfg, be, seed, &m->bert);
    if (s == RK_OK) s = load_head(m, NULL, "random", n_labels, seed);
    if (s == RK_OK) s = alloc_grads(m);
    if (s != RK_OK) {
        rk_bert_cls_free(m);
        return s;
    }
    *out = m;
    return RK_OK;
}

static void free_acts(struct rk_bert_cls_acts * a) {
    struct rk_tensor ** ts[] = { &a->emb,    &a->xs,     &a->qkv,    &a->att,     &a->lse,    &a->ao,   &a->h1,
                                 &a->fcp,    &a->pr,     &a->fca,    &a->ids,     &a->types,  &a->mask, &a->cls,
                                 &a->pre,    &a->pooled, &a->pooled_d, &a->logits, &a->labels, &a->dlogits,
                                 &a->loss,   &a->dres,   &a->dtmp,   &a->datt,    &a->dfc,    &a->dqkv, &a->dcls,
                                 &a->dpool };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        rk_tensor_free(*ts[i]);
        *ts[i] = NULL;
    }
    a->N_max = a->B_max = 0;
}

void rk_bert_cls_free(struct rk_bert_cls * m) {
    if (!m) return;
    free_acts(&m->acts);
    if (m->grad_memory) m->be->free(m->be, m->grad_memory);
    free(m->grads.layers);
    if (m->head.memory) m->be->free(m->be, m->head.memory);
    rk_bert_free(m->bert);
    free(m);
}

enum rk_status rk_bert_cls_zero_grad(struct rk_bert_cls * m) {
    /* the whole block, alignment gaps included, as one flat tensor of the weights' dtype (gaps are multiples of
     * 256 bytes, so of every element size) */
    const enum rk_dtype dt = m->bert->params.wte.dtype;
    const size_t        n  = m->bert->params.nbytes + m->head.nbytes;
    RK_ASSERT(n % (size_t) esize(dt) == 0);
    struct rk_tensor g;
    rk_tensor_init(&g, dt, 1, (int64_t[]) { (int64_t) (n / (size_t) esize(dt)) }, "grads");
    g.data    = m->grad_memory;
    g.backend = m->be;
    struct rk_op_call c = { .op = RK_OP_FILL, .dst = &g };
    c.p.fill.value      = 0.0f;
    return rk_op(m->be, &c);
}

/* ---- activations ------------------------------------------------------------------------------- */

/* Grows the activation buffers to N tokens in B sequences (train: the per-layer buffers too). */
static enum rk_status ensure_acts(struct rk_bert_cls * m, int64_t B, int64_t N) {
    struct rk_bert_cls_acts * a = &m->acts;
    const int64_t want_kept = m->grad_checkpointing ? 1 : m->bert->cfg.n_layer;
    if (N <= a->N_max && B <= a->B_max && a->n_kept == want_kept) return RK_OK;
    const int64_t Nn = N > a->N_max ? N : a->N_max, Bn = B > a->B_max ? B : a->B_max;
    free_acts(a);
    const struct rk_bert_config * c = &m->bert->cfg;
    const int64_t       C = c->hidden_size, I = c->intermediate_size, NL = c->n_layer, NH = c->n_head, L = m->n_labels;
    const enum rk_dtype dt = m->be->act_dtype, f32 = RK_DTYPE_F32, i32 = RK_DTYPE_I32;
    const int64_t       NK = m->grad_checkpointing ? 1 : NL; /* layers whose intermediates are kept */
    struct { struct rk_tensor ** t; enum rk_dtype dt; int64_t rows, cols; const char * name; } spec[] = {
        { &a->emb, dt, Nn, C, "emb" },           { &a->xs, dt, (NL + 1) * Nn, C, "xs" },
        { &a->qkv, dt, NK * Nn, 3 * C, "qkv" },  { &a->att, dt, NK * Nn, C, "att" },
        { &a->lse, f32, NK * Nn, NH, "lse" },    { &a->ao, dt, NK * Nn, C, "ao" },
        { &a->h1, dt, NK * Nn, C, "h1" },        { &a->fcp, dt, NK * Nn, I, "fcp" },
        { &a->pr, dt, NK * Nn, C, "pr" },        { &a->fca, dt, Nn, I, "fca" },
        { &a->ids, i32, Nn, 1, "ids" },          { &a->types, i32, Nn, 1, "types" },
        { &a->mask, i32, Nn, 1, "mask" },        { &a->cls, dt, Bn, C, "cls" },
        { &a->pre, dt, Bn, C, "pre" },           { &a->pooled, dt, Bn, C, "pooled" },
        { &a->pooled_d, dt, Bn, C, "pooled_d" }, { &a->logits, dt, Bn, L, "logits" },
        { &a->labels, dt, Bn, L, "labels" },     { &a->dlogits, dt, Bn, L, "dlogits" },
        { &a->loss, f32, 1, 1, "loss" },         { &a->dres, dt, Nn, C, "dres" },
        { &a->dtmp, dt, Nn, C, "dtmp" },         { &a->datt, dt, Nn, C, "datt" },
        { &a->dfc, dt, Nn, I, "dfc" },           { &a->dqkv, dt, Nn, 3 * C, "dqkv" },
        { &a->dcls, dt, Bn, C, "dcls" },         { &a->dpool, dt, Bn, C, "dpool" },
    };
    for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
        *spec[i].t = rk_tensor_new(m->be, spec[i].dt, 2, (int64_t[]) { spec[i].rows, spec[i].cols }, spec[i].name);
        if (!*spec[i].t) {
            free_acts(a);
            return rk_set_error(RK_STATUS_OOM, "bert_cls: cannot allocate activations for %lld tokens", (long long) Nn);
        }
    }
    a->N_max     = Nn;
    a->B_max     = Bn;
    a->n_kept    = NK;
    return RK_OK;
}

/* The contiguous (rows, cols) view of block `blk` of a buffer made of blocks of blk_rows rows. */
static struct rk_tensor block(const struct rk_tensor * t, int64_t blk, int64_t blk_rows, int64_t rows, int64_t cols) {
    const int64_t e = esize(t->dtype);
    return rk_tensor_view(t, 2, (int64_t[]) { rows, cols }, (int64_t[]) { cols * e, e },
                          (size_t) (blk * blk_rows * cols * e));
}

/* (B, T, C) view of a contiguous (B*T, C) view */
static struct rk_tensor btc(const struct rk_tensor * t2, int64_t B, int64_t T) {
    const int64_t C = t2->ne[1], e = esize(t2->dtype);
    return rk_tensor_view(t2, 3, (int64_t[]) { B, T, C }, (int64_t[]) { T * C * e, C * e, e }, 0);
}

/* (B, NH, T, HS) head view into a contiguous (B*T, W) row buffer, heads starting at column col0 */
static struct rk_tensor heads_hs(const struct rk_tensor * t2, int64_t B, int64_t T, int64_t NH, int64_t HS,
                                 int64_t col0) {
    const int64_t W = t2->ne[1], e = esize(t2->dtype);
    return rk_tensor_view(t2, 4, (int64_t[]) { B, NH, T, HS }, (int64_t[]) { T * W * e, HS * e, W * e, e },
                          (size_t) (col0 * e));
}

/* ---- op helpers -------------------------------------------------------------------------------- */

/* dx = dout w (overwritten, or += with dx_acc); dw += dout^T x; db += colsum(dout) */
static enum rk_status matmul_bwd(struct rk_backend * be, struct rk_tensor * dx, const struct rk_tensor * dout,
                                 const struct rk_tensor * x, const struct rk_tensor * w, struct rk_tensor * dw,
                                 struct rk_tensor * db, bool dx_acc) {
    struct rk_op_call c = { .op = RK_OP_MATMUL_BWD, .dst = dx, .src = { dout, x, w, dw, db } };
    c.p.matmul_bwd      = (struct rk_matmul_bwd_params) { .accumulate = true, .dx_accumulate = dx_acc };
    return rk_op(be, &c);
}

/* dx = gradient of the LayerNorm input sum (may alias dout); dw, db += */
static enum rk_status layernorm_bwd(struct rk_backend * be, struct rk_tensor * dx, const struct rk_tensor * dout,
                                    const struct rk_tensor * x, const struct rk_tensor * w,
                                    const struct rk_tensor * res, struct rk_tensor * dw, struct rk_tensor * db,
                                    float eps) {
    struct rk_op_call c = { .op = RK_OP_LAYERNORM_BWD, .dst = dx, .src = { dout, x, w, res, dw, db } };
    c.p.layernorm.eps   = eps;
    return rk_op(be, &c);
}

/* Dropout call sites per step: embeddings, two per layer, the classifier input. */
static uint64_t n_sites(const struct rk_bert_cls * m) { return 2 * (uint64_t) m->bert->cfg.n_layer + 2; }

/* y = dropout(x) for call site `site` of the step `step`; the backward is the same call on the gradient. */
static enum rk_status dropout(struct rk_bert_cls * m, struct rk_tensor * y, const struct rk_tensor * x, float p,
                              uint64_t step, uint64_t site) {
    struct rk_op_call c = { .op = RK_OP_DROPOUT, .dst = y, .src = { x } };
    c.p.dropout         = (struct rk_dropout_params) { .p = p, .seed = m->seed, .offset = step * n_sites(m) + site };
    return rk_op(m->be, &c);
}

/* dst = tanh(x) (the pooler activation) */
static enum rk_status tanh_op(struct rk_backend * be, struct rk_tensor * dst, const struct rk_tensor * x) {
    struct rk_op_call c = { .op = RK_OP_TANH, .dst = dst, .src = { x } };
    return rk_op(be, &c);
}

/* dy = dy * (1 - y^2), y = tanh(x) from the forward */
static enum rk_status tanh_bwd_op(struct rk_backend * be, struct rk_tensor * dy, const struct rk_tensor * y) {
    struct rk_op_call c = { .op = RK_OP_TANH_BWD, .dst = dy, .src = { dy, y } };
    return rk_op(be, &c);
}

/* ---- forward ----------------------------------------------------------------------------------- */

/*
 * The head on encoder output x3 (B,T,C): pooled, logits, and with labels the loss and dlogits. p_cls is the
 * classifier dropout (0 in eval).
 */
static enum rk_status head_forward(struct rk_bert_cls * m, const struct rk_tensor * x3, int64_t B, bool with_labels,
                                   float p_cls, uint64_t step) {
    struct rk_backend *       be = m->be;
    struct rk_bert_cls_acts * a  = &m->acts;
    const int64_t C = m->bert->cfg.hidden_size, L = m->n_labels;
    struct rk_tensor cls = block(a->cls, 0, 0, B, C), pre = block(a->pre, 0, 0, B, C);
    struct rk_tensor pooled = block(a->pooled, 0, 0, B, C), pooled_d = block(a->pooled_d, 0, 0, B, C);
    struct rk_tensor logits = block(a->logits, 0, 0, B, L);
    /* HF pools hidden_states[:, 0] whatever the mask says: no mask here */
    struct rk_op_call pc = { .op = RK_OP_POOL, .dst = &cls, .src = { x3, NULL } };
    pc.p.pool.mode       = RK_POOL_CLS;
    RK_TRY(rk_op(be, &pc));
    RK_TRY(rk_op_matmul(be, &pre, &cls, &m->head.pool_w, &m->head.pool_b, RK_ACT_NONE));
    RK_TRY(tanh_op(be, &pooled, &pre));
    const struct rk_tensor * cin = &pooled;
    if (p_cls > 0.0f) {
        RK_TRY(dropout(m, &pooled_d, &pooled, p_cls, step, n_sites(m) - 1));
        cin = &pooled_d;
    }
    RK_TRY(rk_op_matmul(be, &logits, cin, &m->head.cls_w, &m->head.cls_b, RK_ACT_NONE));
    if (with_labels) {
        struct rk_tensor labels = block(a->labels, 0, 0, B, L), dl = block(a->dlogits, 0, 0, B, L);
        struct rk_tensor loss   = rk_tensor_view(a->loss, 1, (int64_t[]) { 1 }, (int64_t[]) { 4 }, 0);
        struct rk_op_call bc    = { .op = RK_OP_BCE_LOGITS, .dst = &loss, .src = { &logits, &labels, NULL, &dl } };
        bc.p.loss.dlogits_scale = m->loss_scale;
        RK_TRY(rk_op(be, &bc));
    }
    return RK_OK;
}

static enum rk_status check_inputs(const struct rk_bert_cls * m, const int32_t * ids, const int32_t * type_ids,
                                   int64_t B, int64_t T) {
    const struct rk_bert_config * cfg = &m->bert->cfg;
    if (B <= 0 || T <= 0) return rk_set_error(RK_STATUS_ARG, "bert_cls: empty batch (%lld x %lld)", (long long) B, (long long) T);
    if (T > cfg->max_position)
        return rk_set_error(RK_STATUS_ARG, "bert_cls: sequence length %lld exceeds max_position_embeddings %lld",
                            (long long) T, (long long) cfg->max_position);
    for (int64_t i = 0; i < B * T; i++) {
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return rk_set_error(RK_STATUS_ARG, "bert_cls: token id %d at %lld outside the vocabulary (%lld)", ids[i],
                                (long long) i, (long long) cfg->vocab_size);
        if (type_ids && (type_ids[i] < 0 || type_ids[i] >= cfg->type_vocab_size))
            return rk_set_error(RK_STATUS_ARG, "bert_cls: token type %d at %lld outside %lld types", type_ids[i],
                                (long long) i, (long long) cfg->type_vocab_size);
    }
    return RK_OK;
}

/*
 * Views of layer l's training activations for a (B, T) batch: the layer input xs[l] and output xs[l+1], and the
 * intermediates in slot l (slot 0 with gradient checkpointing, where one layer's worth is kept).
 */
struct layer_views {
    struct rk_tensor x, xn, qkv, att, ao, h1, fcp, pr, fca; /* (N, .) rows */
    struct rk_tensor lse;                                   /* (B, NH, T) f32 */
    struct rk_tensor q, k, v, o;                            /* (B, NH, T, HS) views into qkv and att */
};

static struct layer_views layer_views(const struct rk_bert_cls * m, int64_t l, int64_t B, int64_t T) {
    const struct rk_bert_cls_acts * a   = &m->acts;
    const struct rk_bert_config *   cfg = &m->bert->cfg;
    const int64_t N = B * T, Nm = a->N_max, C = cfg->hidden_size, I = cfg->intermediate_size, NH = cfg->n_head;
    const int64_t HS = C / NH, slot = m->grad_checkpointing ? 0 : l;
    struct layer_views v;
    v.x   = block(a->xs, l, Nm, N, C);
    v.xn  = block(a->xs, l + 1, Nm, N, C);
    v.qkv = block(a->qkv, slot, Nm, N, 3 * C);
    v.att = block(a->att, slot, Nm, N, C);
    v.ao  = block(a->ao, slot, Nm, N, C);
    v.h1  = block(a->h1, slot, Nm, N, C);
    v.fcp = block(a->fcp, slot, Nm, N, I);
    v.pr  = block(a->pr, slot, Nm, N, C);
    v.fca = block(a->fca, 0, Nm, N, I);
    v.lse = rk_tensor_view(a->lse, 3, (int64_t[]) { B, NH, T }, (int64_t[]) { NH * T * 4, T * 4, 4 },
                           (size_t) (slot * Nm * NH * 4));
    v.q   = heads_hs(&v.qkv, B, T, NH, HS, 0);
    v.k   = heads_hs(&v.qkv, B, T, NH, HS, C);
    v.v   = heads_hs(&v.qkv, B, T, NH, HS, 2 * C);
    v.o   = heads_hs(&v.att, B, T, NH, HS, 0);
    return v;
}

/*
 * Training forward of layer l on lv->x, dropout masks of `step`. write_out false skips the last LayerNorm
 * (xs[l+1]): the recomputation of gradient checkpointing needs only the intermediates.
 */
static enum rk_status layer_forward(struct rk_bert_cls * m, const struct layer_views * lv, int64_t l,
                                    const struct rk_tensor * mask, uint64_t step, bool write_out) {
    struct rk_backend *           be  = m->be;
    const struct rk_bert_config * cfg = &m->bert->cfg;
    const struct rk_bert_layer *  Ly  = &m->bert->params.layers[l];
    const float                   eps = cfg->layer_norm_eps, ph = m->hidden_dropout;
    /* the views are const; the ops write through their data pointers */
    struct layer_views v = *lv;
    RK_TRY(rk_op_matmul(be, &v.qkv, &v.x, &Ly->qkv_w, &Ly->qkv_b, RK_ACT_NONE));
    struct rk_op_call at = { .op = RK_OP_ATTN_FWD, .dst = &v.o, .src = { &v.q, &v.k, &v.v, mask, &v.lse } };
    at.p.attn            = (struct rk_attn_params) { .scale = 1.0f / sqrtf((float) (cfg->hidden_size / cfg->n_head)) };
    RK_TRY(rk_op(be, &at));
    RK_TRY(rk_op_matmul(be, &v.ao, &v.att, &Ly->ao_w, &Ly->ao_b, RK_ACT_NONE));
    if (ph > 0.0f) RK_TRY(dropout(m, &v.ao, &v.ao, ph, step, 1 + 2 * (uint64_t) l));
    RK_TRY(rk_op_layernorm(be, &v.h1, &v.ao, &Ly->ln1_w, &Ly->ln1_b, &v.x, eps));
    RK_TRY(rk_op_matmul(be, &v.fcp, &v.h1, &Ly->fc_w, &Ly->fc_b, RK_ACT_NONE));
    struct rk_op_call gc = { .op = RK_OP_GELU, .dst = &v.fca, .src = { &v.fcp } };
    RK_TRY(rk_op(be, &gc));
    RK_TRY(rk_op_matmul(be, &v.pr, &v.fca, &Ly->proj_w, &Ly->proj_b, RK_ACT_NONE));
    if (ph > 0.0f) RK_TRY(dropout(m, &v.pr, &v.pr, ph, step, 2 + 2 * (uint64_t) l));
    if (write_out) RK_TRY(rk_op_layernorm(be, &v.xn, &v.pr, &Ly->ln2_w, &Ly->ln2_b, &v.h1, eps));
    return RK_OK;
}

static enum rk_status train_forward(struct rk_bert_cls * m, int64_t B, int64_t T, uint64_t step) {
    struct rk_backend *           be  = m->be;
    struct rk_bert_cls_acts *     a   = &m->acts;
    const struct rk_bert_config * cfg = &m->bert->cfg;
    const struct rk_bert_params * P   = &m->bert->params;
    const int64_t N = B * T, Nm = a->N_max, C = cfg->hidden_size;
    const float   eps = cfg->layer_norm_eps, ph = m->hidden_dropout;

    struct rk_tensor ids_t   = rk_tensor_view(a->ids, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor types_t = rk_tensor_view(a->types, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor mask_t  = rk_tensor_view(a->mask, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor emb = block(a->emb, 0, Nm, N, C), emb3 = btc(&emb, B, T);
    struct rk_tensor x0  = block(a->xs, 0, Nm, N, C);
    struct rk_op_call ec = { .op = RK_OP_EMBED, .dst = &emb3,
                             .src = { &P->wte, &ids_t, &P->wpe, &P->wtt, m->have_types ? &types_t : NULL } };
    RK_TRY(rk_op(be, &ec));
    RK_TRY(rk_op_layernorm(be, &x0, &emb, &P->emb_ln_w, &P->emb_ln_b, NULL, eps));
    if (ph > 0.0f) RK_TRY(dropout(m, &x0, &x0, ph, step, 0));

    for (int64_t l = 0; l < cfg->n_layer; l++) {
        const struct layer_views lv = layer_views(m, l, B, T);
        RK_TRY(layer_forward(m, &lv, l, &mask_t, step, true));
    }
    return RK_OK;
}

enum rk_status rk_bert_cls_forward(struct rk_bert_cls * m, const int32_t * ids, const int32_t * mask,
                                   const int32_t * type_ids, int64_t B, int64_t T, const float * labels,
                                   float * loss_out, float * logits_out, bool train) {
    m->have_train = false;
    RK_TRY(check_inputs(m, ids, type_ids, B, T));
    if (train && m->attn_dropout > 0.0f && !m->ignore_attn_dropout)
        return rk_set_error(RK_STATUS_UNSUPPORTED,
                            "bert_cls: attention_probs_dropout_prob %g is not implemented (the fused attention op has "
                            "no dropout); set ignore_attn_dropout to train without it",
                            (double) m->attn_dropout);
    const int64_t N = B * T, C = m->bert->cfg.hidden_size, L = m->n_labels;
    RK_TRY(ensure_acts(m, B, N));
    struct rk_bert_cls_acts * a = &m->acts;
    m->B = B;
    m->T = T;
    m->have_types = type_ids != NULL;
    if (labels) {
        struct rk_tensor lab = block(a->labels, 0, 0, B, L);
        RK_TRY(rk_tensor_set_f32(&lab, labels));
    }
    const uint64_t step = m->step;
    struct rk_tensor x3;
    if (train) {
        struct rk_tensor ids_t   = rk_tensor_view(a->ids, 1, (int64_t[]) { N }, (int64_t[]) { 4 }, 0);
        struct rk_tensor types_t = rk_tensor_view(a->types, 1, (int64_t[]) { N }, (int64_t[]) { 4 }, 0);
        struct rk_tensor mask_t  = rk_tensor_view(a->mask, 1, (int64_t[]) { N }, (int64_t[]) { 4 }, 0);
        RK_TRY(rk_tensor_set(&ids_t, ids, (size_t) N * 4));
        RK_TRY(rk_tensor_set(&mask_t, mask, (size_t) N * 4));
        if (type_ids) RK_TRY(rk_tensor_set(&types_t, type_ids, (size_t) N * 4));
        RK_TRY(train_forward(m, B, T, step));
        struct rk_tensor xl = block(a->xs, m->bert->cfg.n_layer, a->N_max, N, C);
        x3                  = btc(&xl, B, T);
    } else {
        RK_TRY(rk_bert_forward(m->bert, ids, mask, type_ids, B, T));
        struct rk_tensor xl = block(m->bert->acts.x, 0, 0, N, C);
        x3                  = btc(&xl, B, T);
    }
    RK_TRY(head_forward(m, &x3, B, labels != NULL, train ? m->classifier_dropout : 0.0f, step));
    RK_TRY(m->be->synchronize(m->be));
    if (labels && loss_out) RK_TRY(rk_tensor_get(a->loss, loss_out, sizeof(float)));
    if (logits_out) {
        struct rk_tensor lg = block(a->logits, 0, 0, B, L);
        RK_TRY(rk_tensor_get_f32(&lg, logits_out));
    }
    if (train) {
        m->fwd_step   = step;
        m->step       = step + 1;
        m->have_train = labels != NULL;
    }
    return RK_OK;
}

/* ---- backward ---------------------------------------------------------------------------------- */

enum rk_status rk_bert_cls_backward(struct rk_bert_cls * m) {
    if (!m->have_train)
        return rk_set_error(RK_STATUS_ARG, "bert_cls: backward needs a train forward with labels just before it");
    struct rk_backend *           be  = m->be;
    struct rk_bert_cls_acts *     a   = &m->acts;
    const struct rk_bert_config * cfg = &m->bert->cfg;
    const struct rk_bert_params * P   = &m->bert->params;
    struct rk_bert_params *       G   = &m->grads;
    const int64_t B = m->B, T = m->T, N = B * T, Nm = a->N_max, C = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t NH = cfg->n_head, HS = C / NH, L = m->n_labels, NL = cfg->n_layer;
    const float   eps = cfg->layer_norm_eps, ph = m->hidden_dropout, pc = m->classifier_dropout;
    const uint64_t step = m->fwd_step;

    /* head */
    struct rk_tensor dl = block(a->dlogits, 0, 0, B, L), pooled = block(a->pooled, 0, 0, B, C);
    struct rk_tensor pooled_d = block(a->pooled_d, 0, 0, B, C), cls = block(a->cls, 0, 0, B, C);
    struct rk_tensor dpool = block(a->dpool, 0, 0, B, C), dcls = block(a->dcls, 0, 0, B, C);
    RK_TRY(matmul_bwd(be, &dpool, &dl, pc > 0.0f ? &pooled_d : &pooled, &m->head.cls_w, &m->head_grads.cls_w,
                      &m->head_grads.cls_b, false));
    if (pc > 0.0f) RK_TRY(dropout(m, &dpool, &dpool, pc, step, n_sites(m) - 1));
    RK_TRY(tanh_bwd_op(be, &dpool, &pooled));
    RK_TRY(matmul_bwd(be, &dcls, &dpool, &cls, &m->head.pool_w, &m->head_grads.pool_w, &m->head_grads.pool_b, false));
    struct rk_tensor dres = block(a->dres, 0, Nm, N, C), dres3 = btc(&dres, B, T);
    struct rk_tensor xl = block(a->xs, NL, Nm, N, C), xl3 = btc(&xl, B, T);
    struct rk_op_call pb = { .op = RK_OP_POOL_BWD, .dst = &dres3, .src = { &dcls, &xl3, NULL } };
    pb.p.pool.mode       = RK_POOL_CLS;
    RK_TRY(rk_op(be, &pb));

    /* layers, last first; dres holds d loss / d xs[l+1] on entry, d loss / d xs[l] on exit */
    struct rk_tensor mask_t = rk_tensor_view(a->mask, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor dtmp = block(a->dtmp, 0, Nm, N, C), datt = block(a->datt, 0, Nm, N, C);
    struct rk_tensor dfc = block(a->dfc, 0, Nm, N, I), fca = block(a->fca, 0, Nm, N, I);
    struct rk_tensor dqkv = block(a->dqkv, 0, Nm, N, 3 * C);
    struct rk_tensor dq = heads_hs(&dqkv, B, T, NH, HS, 0), dk = heads_hs(&dqkv, B, T, NH, HS, C);
    struct rk_tensor dv = heads_hs(&dqkv, B, T, NH, HS, 2 * C), datt4 = heads_hs(&datt, B, T, NH, HS, 0);
    for (int64_t l = NL - 1; l >= 0; l--) {
        const struct rk_bert_layer * Ly = &P->layers[l];
        struct rk_bert_layer *       Gy = &G->layers[l];
        struct layer_views           lv = layer_views(m, l, B, T);
        if (m->grad_checkpointing) RK_TRY(layer_forward(m, &lv, l, &mask_t, step, false));

        /* xs[l+1] = LN2(pr + h1) */
        RK_TRY(layernorm_bwd(be, &dres, &dres, &lv.pr, &Ly->ln2_w, &lv.h1, &Gy->ln2_w, &Gy->ln2_b, eps));
        const struct rk_tensor * dpr = &dres;
        if (ph > 0.0f) {
            RK_TRY(dropout(m, &dtmp, &dres, ph, step, 2 + 2 * (uint64_t) l));
            dpr = &dtmp;
        }
        struct rk_op_call gc = { .op = RK_OP_GELU, .dst = &fca, .src = { &lv.fcp } }; /* recompute gelu(fcp) */
        RK_TRY(rk_op(be, &gc));
        RK_TRY(matmul_bwd(be, &dfc, dpr, &fca, &Ly->proj_w, &Gy->proj_w, &Gy->proj_b, false));
        struct rk_op_call gb = { .op = RK_OP_GELU_BWD, .dst = &dfc, .src = { &dfc, &lv.fcp } };
        RK_TRY(rk_op(be, &gb));
        RK_TRY(matmul_bwd(be, &dres, &dfc, &lv.h1, &Ly->fc_w, &Gy->fc_w, &Gy->fc_b, true)); /* dres = d h1 */

        /* h1 = LN1(ao + x) */
        RK_TRY(layernorm_bwd(be, &dres, &dres, &lv.ao, &Ly->ln1_w, &lv.x, &Gy->ln1_w, &Gy->ln1_b, eps));
        const struct rk_tensor * dao = &dres;
        if (ph > 0.0f) {
            RK_TRY(dropout(m, &dtmp, &dres, ph, step, 1 + 2 * (uint64_t) l));
            dao = &dtmp;
        }
        RK_TRY(matmul_bwd(be, &datt, dao, &lv.att, &Ly->ao_w, &Gy->ao_w, &Gy->ao_b, false));
        struct rk_op_call ab = { .op     = RK_OP_ATTN_BWD,
                                 .dst    = &dq,
                                 .src    = { &lv.q, &lv.k, &lv.v, &lv.o, &datt4, &lv.lse } };
        ab.p.attn_bwd        = (struct rk_attn_bwd_params) {
                   .attn = { .scale = 1.0f / sqrtf((float) HS) }, .mask = &mask_t, .dk = &dk, .dv = &dv };
        RK_TRY(rk_op(be, &ab));
        RK_TRY(matmul_bwd(be, &dres, &dqkv, &lv.x, &Ly->qkv_w, &Gy->qkv_w, &Gy->qkv_b, true)); /* dres = d xs[l] */
    }

    /* xs[0] = dropout(LN(emb)) */
    if (ph > 0.0f) RK_TRY(dropout(m, &dres, &dres, ph, step, 0));
    struct rk_tensor emb = block(a->emb, 0, Nm, N, C);
    RK_TRY(layernorm_bwd(be, &dres, &dres, &emb, &P->emb_ln_w, NULL, &G->emb_ln_w, &G->emb_ln_b, eps));
    struct rk_tensor ids_t   = rk_tensor_view(a->ids, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_tensor types_t = rk_tensor_view(a->types, 2, (int64_t[]) { B, T }, (int64_t[]) { T * 4, 4 }, 0);
    struct rk_op_call eb     = { .op = RK_OP_EMBED_BWD, .dst = &G->wte,
                                 .src = { &dres3, &ids_t, m->have_types ? &types_t : NULL, &G->wpe, &G->wtt } };
    RK_TRY(rk_op(be, &eb));
    return be->synchronize(be);
}

/* ---- named parameters -------------------------------------------------------------------------- */

static void add_param(struct rk_named_param * out, int64_t * n, const char * name, const struct rk_tensor * p,
                      const struct rk_tensor * g) {
    struct rk_named_param * e = &out[(*n)++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->param = *p;
    e->grad  = *g;
    e->param.owns_data = e->grad.owns_data = false;
    snprintf(e->param.name, sizeof(e->param.name), "%.63s", name);
    snprintf(e->grad.name, sizeof(e->grad.name), "%.63s", name);
}

/* Row block i (of 3) of a fused (3C, C) weight or (3C) bias. */
static struct rk_tensor third(const struct rk_tensor * t, int i) {
    const int64_t e = esize(t->dtype), C = t->ne[0] / 3;
    if (t->ndim == 2) {
        return rk_tensor_view(t, 2, (int64_t[]) { C, t->ne[1] }, (int64_t[]) { t->ne[1] * e, e },
                              (size_t) (i * C * t->ne[1] * e));
    }
    return rk_tensor_view(t, 1, (int64_t[]) { C }, (int64_t[]) { e }, (size_t) (i * C * e));
}

int64_t rk_bert_cls_params(struct rk_bert_cls * m, struct rk_named_param ** out) {
    const int64_t           NL = m->bert->cfg.n_layer;
    struct rk_named_param * ps = rk_xcalloc((size_t) (5 + 16 * NL + 4), sizeof(*ps));
    int64_t                 n  = 0;
    const struct rk_bert_params * P = &m->bert->params;
    const struct rk_bert_params * G = &m->grads;
    add_param(ps, &n, "bert.embeddings.word_embeddings.weight", &P->wte, &G->wte);
    add_param(ps, &n, "bert.embeddings.position_embeddings.weight", &P->wpe, &G->wpe);
    add_param(ps, &n, "bert.embeddings.token_type_embeddings.weight", &P->wtt, &G->wtt);
    add_param(ps, &n, "bert.embeddings.LayerNorm.weight", &P->emb_ln_w, &G->emb_ln_w);
    add_param(ps, &n, "bert.embeddings.LayerNorm.bias", &P->emb_ln_b, &G->emb_ln_b);
    static const char * const qkv_names[3] = { "query", "key", "value" };
    for (int64_t l = 0; l < NL; l++) {
        const struct rk_bert_layer * Ly = &P->layers[l];
        const struct rk_bert_layer * Gy = &G->layers[l];
        char name[160];
#define NM(suffix) (snprintf(name, sizeof(name), "bert.encoder.layer.%lld.%s", (long long) l, suffix), name)
        for (int i = 0; i < 3; i++) {
            char suffix[64];
            struct rk_tensor pw = third(&Ly->qkv_w, i), gw = third(&Gy->qkv_w, i);
            struct rk_tensor pb = third(&Ly->qkv_b, i), gb = third(&Gy->qkv_b, i);
            snprintf(suffix, sizeof(suffix), "attention.self.%s.weight", qkv_names[i]);
            add_param(ps, &n, NM(suffix), &pw, &gw);
            snprintf(suffix, sizeof(suffix), "attention.self.%s.bias", qkv_names[i]);
            add_param(ps, &n, NM(suffix), &pb, &gb);
        }
        add_param(ps, &n, NM("attention.output.dense.weight"), &Ly->ao_w, &Gy->ao_w);
        add_param(ps, &n, NM("attention.output.dense.bias"), &Ly->ao_b, &Gy->ao_b);
        add_param(ps, &n, NM("attention.output.LayerNorm.weight"), &Ly->ln1_w, &Gy->ln1_w);
        add_param(ps, &n, NM("attention.output.LayerNorm.bias"), &Ly->ln1_b, &Gy->ln1_b);
        add_param(ps, &n, NM("intermediate.dense.weight"), &Ly->fc_w, &Gy->fc_w);
        add_param(ps, &n, NM("intermediate.dense.bias"), &Ly->fc_b, &Gy->fc_b);
        add_param(ps, &n, NM("output.dense.weight"), &Ly->proj_w, &Gy->proj_w);
        add_param(ps, &n, NM("output.dense.bias"), &Ly->proj_b, &Gy->proj_b);
        add_param(ps, &n, NM("output.LayerNorm.weight"), &Ly->ln2_w, &Gy->ln2_w);
        add_param(ps, &n, NM("output.LayerNorm.bias"), &Ly->ln2_b, &Gy->ln2_b);
#undef NM
    }
    add_param(ps, &n, "bert.pooler.dense.weight", &m->head.pool_w, &m->head_grads.pool_w);
    add_param(ps, &n, "bert.pooler.dense.bias", &m->head.pool_b, &m->head_grads.pool_b);
    add_param(ps, &n, "classifier.weight", &m->head.cls_w, &m->head_grads.cls_w);
    add_param(ps, &n, "classifier.bias", &m->head.cls_b, &m->head_grads.cls_b);
    RK_ASSERT(n == 5 + 16 * NL + 4);
    *out = ps;
    return n;
}
