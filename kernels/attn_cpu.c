/*
 * attn_cpu.c: CPU reference of RK_OP_ATTN_FWD: softmax(q k^T * scale + mask) v per (batch, head), with key
 * padding masks, causal masking (with a query offset for KV-cache decoding), a sliding window and grouped-query
 * heads. Scores are formed one query row at a time in a per-thread buffer; the softmax runs in fp32 with the
 * row maximum subtracted, and the row's logsumexp is written out for the backward pass.
 *
 * Two paths compute the same function:
 *   plain  one query row at a time with scalar loops: the reference (RK_CPU_REF=1 forces it);
 *   blas   per (batch, head) and block of 128 query rows, S = q k^T and O = P v as OpenBLAS sgemm calls inside
 *          an OpenMP loop over (batch, head, block) (the OpenMP build of OpenBLAS runs each call on its thread).
 * tests/test_cpu_ops.c checks that they agree.
 */
#include "check.h"
#include "kernels/attn.h"
#include "kernels/elementwise.h"

#include <math.h>
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* Dot product with 8 independent partial sums (vectorizes without reassociation flags). */
static inline float dot_f32(const float * a, const float * b, int64_t n) {
    float   acc[8] = { 0 };
    int64_t i      = 0;
    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
    }
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

#define AT(t, b, h, i) ((const float *) ((const char *) (t)->data + (b) * (t)->nb[0] + (h) * (t)->nb[1] + (i) * (t)->nb[2]))

/*
 * q (B,NH,Tq,HS), k/v (B,NKV,Tk,HS), dst (B,NH,Tq,HS): strided, innermost dim contiguous.
 * mask (B,Tk) i32 or NULL; lse (B,NH,Tq) f32 contiguous or NULL.
 */
static void attn_fwd_plain(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                     const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                     const struct rk_attn_params * p) {
    const int64_t B = q->ne[0], NH = q->ne[1], Tq = q->ne[2], HS = q->ne[3];
    const int64_t NKV = k->ne[1], Tk = k->ne[2];
    RK_ASSERT(k->ne[0] == B && v->ne[0] == B && v->ne[1] == NKV && v->ne[2] == Tk);
    RK_ASSERT(k->ne[3] == HS && v->ne[3] == HS && NKV > 0 && NH % NKV == 0);
    RK_ASSERT(dst->ne[0] == B && dst->ne[1] == NH && dst->ne[2] == Tq && dst->ne[3] == HS);
    RK_ASSERT(q->nb[3] == 4 && k->nb[3] == 4 && v->nb[3] == 4 && dst->nb[3] == 4);
    RK_ASSERT(!mask || (mask->ne[0] == B && mask->ne[1] == Tk && rk_tensor_is_contiguous(mask)));
    RK_ASSERT(!lse || (rk_tensor_nelements(lse) == B * NH * Tq && rk_tensor_is_contiguous(lse)));
    const int64_t   group = NH / NKV;
    const int32_t * mk    = mask ? mask->data : NULL;

#pragma omp parallel
    {
        float * s = malloc((size_t) (Tk > 0 ? Tk : 1) * sizeof(float));
        RK_ASSERT(s != NULL);
#pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < B; b++) {
            for (int64_t h = 0; h < NH; h++) {
                const int64_t hk = h / group;
                for (int64_t i = 0; i < Tq; i++) {
                    const float * qi   = AT(q, b, h, i);
                    float *       o    = (float *) AT(dst, b, h, i);
                    const int64_t qpos = p->q_offset + i;
                    float         mx   = -INFINITY;
                    for (int64_t j = 0; j < Tk; j++) {
                        bool ok = !mk || mk[b * Tk + j] != 0;
                        if (p->causal && j > qpos) ok = false;
                        if (p->window > 0 && j <= qpos - p->window) ok = false;
                        s[j] = ok ? dot_f32(qi, AT(k, b, hk, j), HS) * p->scale : -INFINITY;
                        if (s[j] > mx) mx = s[j];
                    }
                    for (int64_t d = 0; d < HS; d++) o[d] = 0.0f;
                    float * l = lse ? (float *) lse->data + (b * NH + h) * Tq + i : NULL;
                    if (mx == -INFINITY) { /* no key to attend to */
                        if (l) *l = -INFINITY;
                        continue;
                    }
                    double sum = 0.0;
                    for (int64_t j = 0; j < Tk; j++) {
                        s[j] = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
                        sum += s[j];
                    }
                    const float inv = (float) (1.0 / sum);
                    for (int64_t j = 0; j < Tk; j++) {
                        if (s[j] == 0.0f) continue;
                        const float   w  = s[j] * inv;
                        const float * vj = AT(v, b, hk, j);
                        for (int64_t d = 0; d < HS; d++) o[d] += w * vj[d];
                    }
                    if (l) *l = mx + (float) log(sum);
                }
            }
        }
        free(s);
    }
}

#define ATTN_QBLOCK 128


/* S (rows x Tk) -> P in place, with masking; writes lse for the rows when l != NULL. */
static void masked_softmax_rows(float * S, int64_t rows, int64_t Tk, int64_t q0, const int32_t * mk,
                                const struct rk_attn_params * p, float * l) {
    for (int64_t r = 0; r < rows; r++) {
        float *       s    = S + r * Tk;
        const int64_t qpos = p->q_offset + q0 + r;
        /* keys in [lo, hi) pass the causal and window rules; the padding mask is applied per key */
        const int64_t hi = p->causal ? (qpos + 1 < Tk ? qpos + 1 : Tk) : Tk;
        const int64_t lo = p->window > 0 && qpos - p->window + 1 > 0 ? qpos - p->window + 1 : 0;
        float         mx = -INFINITY;
        for (int64_t j = 0; j < Tk; j++) {
            const bool ok = (!mk || mk[j] != 0) && j >= lo && j < hi;
            s[j]          = ok ? s[j] : -INFINITY;
            mx            = s[j] > mx ? s[j] : mx;
        }
        if (mx == -INFINITY) {
            memset(s, 0, sizeof(float) * (size_t) Tk);
            if (l) l[r] = -INFINITY;
            continue;
        }
        /* masked entries are -inf: clamped to -87 inside exp_neg_fast and returned as exactly 0 */
        float sum8[8] = { 0 };
        int64_t j = 0;
        for (; j + 8 <= Tk; j += 8) {
            for (int u = 0; u < 8; u++) {
                s[j + u] = rk_exp_neg_fast(s[j + u] - mx);
                sum8[u] += s[j + u];
            }
        }
        double sum = 0.0;
        for (; j < Tk; j++) {
            s[j] = rk_exp_neg_fast(s[j] - mx);
            sum += s[j];
        }
        for (int u = 0; u < 8; u++) sum += sum8[u];
        const float inv = (float) (1.0 / sum);
        for (j = 0; j < Tk; j++) s[j] *= inv;
        if (l) l[r] = mx + (float) log(sum);
    }
}

static void attn_fwd_blas(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                          const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                          const struct rk_attn_params * p) {
    const int64_t B = q->ne[0], NH = q->ne[1], Tq = q->ne[2], HS = q->ne[3];
    const int64_t NKV = k->ne[1], Tk = k->ne[2], group = NH / NKV;
    const int64_t nblk = (Tq + ATTN_QBLOCK - 1) / ATTN_QBLOCK;
    const int32_t * mk = mask ? mask->data : NULL;
    RK_ASSERT(q->nb[2] % 4 == 0 && k->nb[2] % 4 == 0 && v->nb[2] % 4 == 0 && dst->nb[2] % 4 == 0);
#pragma omp parallel
    {
        float * S = malloc(sizeof(float) * (size_t) (ATTN_QBLOCK * (Tk > 0 ? Tk : 1)));
        RK_ASSERT(S != NULL);
#pragma omp for collapse(3) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            for (int64_t h = 0; h < NH; h++) {
                for (int64_t blk = 0; blk < nblk; blk++) {
                    const int64_t hk   = h / group;
                    const int64_t q0   = blk * ATTN_QBLOCK;
                    const int64_t rows = Tq - q0 < ATTN_QBLOCK ? Tq - q0 : ATTN_QBLOCK;
                    const float * Q    = AT(q, b, h, q0);
                    const float * K    = AT(k, b, hk, 0);
                    const float * V    = AT(v, b, hk, 0);
                    float *       O    = (float *) AT(dst, b, h, q0);
                    float *       l    = lse ? (float *) lse->data + (b * NH + h) * Tq + q0 : NULL;
                    /* S = scale * Q K^T: (rows x HS) (HS x Tk) */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) Tk, (int) HS, p->scale, Q,
                                (int) (q->nb[2] / 4), K, (int) (k->nb[2] / 4), 0.0f, S, (int) Tk);
                    masked_softmax_rows(S, rows, Tk, q0, mk ? mk + b * Tk : NULL, p, l);
                    /* O = P V: (rows x Tk) (Tk x HS) */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) HS, (int) Tk, 1.0f, S,
                                (int) Tk, V, (int) (v->nb[2] / 4), 0.0f, O, (int) (dst->nb[2] / 4));
                }
            }
        }
        free(S);
    }
}

void rk_cpu_attn_fwd(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                     const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                     const struct rk_attn_params * p) {
    static int use_ref = -1;
    if (use_ref < 0) use_ref = getenv("RK_CPU_REF") && getenv("RK_CPU_REF")[0] == '1';
    if (use_ref || q->ne[2] == 0 || k->ne[2] == 0) {
        attn_fwd_plain(dst, q, k, v, mask, lse, p);
        return;
    }
    /* the shape checks of the plain path apply to both */
    RK_ASSERT(k->ne[0] == q->ne[0] && v->ne[0] == q->ne[0] && v->ne[1] == k->ne[1] && v->ne[2] == k->ne[2]);
    RK_ASSERT(k->ne[3] == q->ne[3] && v->ne[3] == q->ne[3] && k->ne[1] > 0 && q->ne[1] % k->ne[1] == 0);
    RK_ASSERT(dst->ne[0] == q->ne[0] && dst->ne[1] == q->ne[1] && dst->ne[2] == q->ne[2] && dst->ne[3] == q->ne[3]);
    RK_ASSERT(q->nb[3] == 4 && k->nb[3] == 4 && v->nb[3] == 4 && dst->nb[3] == 4);
    RK_ASSERT(!mask || (mask->ne[0] == q->ne[0] && mask->ne[1] == k->ne[2] && rk_tensor_is_contiguous(mask)));
    RK_ASSERT(!lse || (rk_tensor_nelements(lse) == q->ne[0] * q->ne[1] * q->ne[2] && rk_tensor_is_contiguous(lse)));
    attn_fwd_blas(dst, q, k, v, mask, lse, p);
}

/* The plain path, for tests that compare the two. */
void rk_cpu_attn_fwd_plain(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                           const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                           const struct rk_attn_params * p) {
    attn_fwd_plain(dst, q, k, v, mask, lse, p);
}
