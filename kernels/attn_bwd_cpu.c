/*
 * attn_bwd_cpu.c: CPU reference of RK_OP_ATTN_BWD, the FlashAttention-2 backward (Dao 2023, Algorithm 2) one
 * query row at a time. P is recomputed from the forward's lse, so no (Tq, Tk) matrix is kept:
 *   p_j  = exp(scale q.k_j - lse)          for the keys the row may attend (same rules as attn_cpu.c)
 *   D    = dout . o                         (= rowsum(dP * P), FA-2's trick)
 *   dp_j = dout . v_j;  ds_j = p_j (dp_j - D)
 *   dq  = scale sum_j ds_j k_j;  dk_j += scale ds_j q;  dv_j += p_j dout
 * Work is split over (batch, kv head): the thread owning a kv head walks the query heads of its group and their
 * rows in order, so dk/dv (summed over the group for grouped-query attention) are race-free and deterministic.
 *
 * Two paths compute the same function, as for the forward (attn_cpu.c):
 *   plain  the per-row loops above: the reference (RK_CPU_REF=1 forces it, rk_cpu_attn_bwd_plain always);
 *   blas   per (batch, kv head) and block of 128 query rows: S = q k^T, dP = dout v^T, dq = ds k, dk += ds^T q,
 *          dv += p^T dout as OpenBLAS sgemm calls (the OpenMP build runs each on its calling thread).
 * tests/test_cpu_ops.c checks that they agree.
 */
#include "check.h"
#include "kernels/attn.h"
#include "kernels/elementwise.h"

#include <cblas.h>
#include <stdlib.h>

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

#define AT(t, b, h, i) ((const float *) ((const char *) (t)->data + (b) * (t)->nb[0] + (h) * (t)->nb[1] + (i) * (t)->nb[2]))
#define ATW(t, b, h, i) ((float *) ((char *) (t)->data + (b) * (t)->nb[0] + (h) * (t)->nb[1] + (i) * (t)->nb[2]))

static float dotf(const float * a, const float * b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static bool same_shape4(const struct rk_tensor * a, const struct rk_tensor * b) {
    return a->ndim == 4 && b->ndim == 4 && a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->ne[2] == b->ne[2] &&
           a->ne[3] == b->ne[3];
}

void rk_cpu_attn_bwd_plain(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv, const struct rk_tensor * q,
                     const struct rk_tensor * k, const struct rk_tensor * v, const struct rk_tensor * o,
                     const struct rk_tensor * dout, const struct rk_tensor * lse, const struct rk_tensor * mask,
                     const struct rk_attn_params * p) {
    const int64_t B = q->ne[0], NH = q->ne[1], Tq = q->ne[2], HS = q->ne[3];
    const int64_t NKV = k->ne[1], Tk = k->ne[2];
    RK_ASSERT(k->ne[0] == B && k->ne[3] == HS && NKV > 0 && NH % NKV == 0 && same_shape4(k, v));
    RK_ASSERT(same_shape4(q, o) && same_shape4(q, dout) && same_shape4(q, dq) && same_shape4(k, dk) &&
              same_shape4(k, dv));
    RK_ASSERT(q->nb[3] == 4 && k->nb[3] == 4 && v->nb[3] == 4 && o->nb[3] == 4 && dout->nb[3] == 4 &&
              dq->nb[3] == 4 && dk->nb[3] == 4 && dv->nb[3] == 4);
    RK_ASSERT(!mask || (mask->ne[0] == B && mask->ne[1] == Tk && rk_tensor_is_contiguous(mask)));
    RK_ASSERT(rk_tensor_nelements(lse) == B * NH * Tq && rk_tensor_is_contiguous(lse));
    const int64_t   group = NH / NKV;
    const int32_t * mk    = mask ? mask->data : NULL;
    const float *   L     = lse->data;

#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t hk = 0; hk < NKV; hk++) {
            for (int64_t j = 0; j < Tk; j++) {
                memset(ATW(dk, b, hk, j), 0, sizeof(float) * (size_t) HS);
                memset(ATW(dv, b, hk, j), 0, sizeof(float) * (size_t) HS);
            }
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                for (int64_t i = 0; i < Tq; i++) {
                    const float * qi   = AT(q, b, h, i);
                    const float * gi   = AT(dout, b, h, i);
                    float *       dqi  = ATW(dq, b, h, i);
                    const float   l    = L[(b * NH + h) * Tq + i];
                    const int64_t qpos = p->q_offset + i;
                    memset(dqi, 0, sizeof(float) * (size_t) HS);
                    if (l == -INFINITY) continue; /* no valid key: the forward wrote zeros */
                    const float D = dotf(gi, AT(o, b, h, i), HS);
                    for (int64_t j = 0; j < Tk; j++) {
                        bool ok = !mk || mk[b * Tk + j] != 0;
                        if (p->causal && j > qpos) ok = false;
                        if (p->window > 0 && j <= qpos - p->window) ok = false;
                        if (!ok) continue;
                        const float * kj = AT(k, b, hk, j);
                        const float   pj = expf(dotf(qi, kj, HS) * p->scale - l);
                        const float   ds = pj * (dotf(gi, AT(v, b, hk, j), HS) - D);
                        float *       dvj = ATW(dv, b, hk, j);
                        float *       dkj = ATW(dk, b, hk, j);
                        for (int64_t d = 0; d < HS; d++) {
                            dvj[d] += pj * gi[d];
                            dkj[d] += p->scale * ds * qi[d];
                            dqi[d] += p->scale * ds * kj[d];
                        }
                    }
                }
            }
        }
    }
}

#define ATTN_BWD_QBLOCK 128

static void attn_bwd_blas(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv, const struct rk_tensor * q,
                          const struct rk_tensor * k, const struct rk_tensor * v, const struct rk_tensor * o,
                          const struct rk_tensor * dout, const struct rk_tensor * lse, const struct rk_tensor * mask,
                          const struct rk_attn_params * p) {
    const int64_t B = q->ne[0], NH = q->ne[1], Tq = q->ne[2], HS = q->ne[3];
    const int64_t NKV = k->ne[1], Tk = k->ne[2], group = NH / NKV;
    const int32_t * mk = mask ? mask->data : NULL;
    const float *   L  = lse->data;
#define LD(t) ((int) ((t)->nb[2] / 4))
#pragma omp parallel
    {
        float * S  = malloc(sizeof(float) * (size_t) (ATTN_BWD_QBLOCK * (Tk > 0 ? Tk : 1)));
        float * dP = malloc(sizeof(float) * (size_t) (ATTN_BWD_QBLOCK * (Tk > 0 ? Tk : 1)));
        RK_ASSERT(S != NULL && dP != NULL);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            for (int64_t hk = 0; hk < NKV; hk++) {
                for (int64_t j = 0; j < Tk; j++) {
                    memset(ATW(dk, b, hk, j), 0, sizeof(float) * (size_t) HS);
                    memset(ATW(dv, b, hk, j), 0, sizeof(float) * (size_t) HS);
                }
                const float * K = AT(k, b, hk, 0), * V = AT(v, b, hk, 0);
                for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                    for (int64_t q0 = 0; q0 < Tq; q0 += ATTN_BWD_QBLOCK) {
                        const int64_t rows = Tq - q0 < ATTN_BWD_QBLOCK ? Tq - q0 : ATTN_BWD_QBLOCK;
                        const float * Q = AT(q, b, h, q0), * G = AT(dout, b, h, q0);
                        /* S = scale Q K^T, dP = dout V^T: (rows x Tk) */
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) Tk, (int) HS, p->scale, Q,
                                    LD(q), K, LD(k), 0.0f, S, (int) Tk);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) Tk, (int) HS, 1.0f, G,
                                    LD(dout), V, LD(v), 0.0f, dP, (int) Tk);
                        /* P = exp(S - lse) on the keys the row may attend; dS = P (dP - D), kept in S */
                        for (int64_t r = 0; r < rows; r++) {
                            const int64_t i = q0 + r, qpos = p->q_offset + i;
                            const float   l = L[(b * NH + h) * Tq + i];
                            float * s = S + r * Tk, * dp = dP + r * Tk;
                            if (l == -INFINITY) { /* no valid key: nothing flows back (dS = P = 0) */
                                memset(s, 0, sizeof(float) * (size_t) Tk);
                                memset(dp, 0, sizeof(float) * (size_t) Tk);
                                continue;
                            }
                            const float   D  = dotf(G + r * LD(dout), AT(o, b, h, i), HS);
                            const int64_t hi = p->causal ? (qpos + 1 < Tk ? qpos + 1 : Tk) : Tk;
                            const int64_t lo = p->window > 0 && qpos - p->window + 1 > 0 ? qpos - p->window + 1 : 0;
                            for (int64_t j = 0; j < Tk; j++) {
                                const bool  ok = (!mk || mk[b * Tk + j] != 0) && j >= lo && j < hi;
                                const float pj = ok ? rk_exp_neg_fast(s[j] - l) : 0.0f;
                                s[j]           = pj * (dp[j] - D);
                                dp[j]          = pj;
                            }
                        }
                        /* dq = scale dS K (rows x HS); dk += scale dS^T Q (Tk x HS); dv += P^T dout (Tk x HS) */
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) HS, (int) Tk, p->scale, S,
                                    (int) Tk, K, LD(k), 0.0f, ATW(dq, b, h, q0), LD(dq));
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) Tk, (int) HS, (int) rows, p->scale, S,
                                    (int) Tk, Q, LD(q), 1.0f, ATW(dk, b, hk, 0), LD(dk));
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) Tk, (int) HS, (int) rows, 1.0f, dP,
                                    (int) Tk, G, LD(dout), 1.0f, ATW(dv, b, hk, 0), LD(dv));
                    }
                }
            }
        }
        free(S);
        free(dP);
    }
#undef LD
}

void rk_cpu_attn_bwd(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv, const struct rk_tensor * q,
                     const struct rk_tensor * k, const struct rk_tensor * v, const struct rk_tensor * o,
                     const struct rk_tensor * dout, const struct rk_tensor * lse, const struct rk_tensor * mask,
                     const struct rk_attn_params * p) {
    static int use_ref = -1;
    if (use_ref < 0) use_ref = getenv("RK_CPU_REF") && getenv("RK_CPU_REF")[0] == '1';
    const bool strides_ok = q->nb[2] % 4 == 0 && k->nb[2] % 4 == 0 && v->nb[2] % 4 == 0 && dout->nb[2] % 4 == 0 &&
                            dq->nb[2] % 4 == 0 && dk->nb[2] % 4 == 0 && dv->nb[2] % 4 == 0;
    if (use_ref || !strides_ok || q->ne[2] == 0 || k->ne[2] == 0) {
        rk_cpu_attn_bwd_plain(dq, dk, dv, q, k, v, o, dout, lse, mask, p);
        return;
    }
    /* the plain path's shape checks hold for both */
    RK_ASSERT(k->ne[0] == q->ne[0] && k->ne[3] == q->ne[3] && k->ne[1] > 0 && q->ne[1] % k->ne[1] == 0 &&
              same_shape4(k, v));
    RK_ASSERT(same_shape4(q, o) && same_shape4(q, dout) && same_shape4(q, dq) && same_shape4(k, dk) &&
              same_shape4(k, dv));
    RK_ASSERT(q->nb[3] == 4 && k->nb[3] == 4 && v->nb[3] == 4 && o->nb[3] == 4 && dout->nb[3] == 4 &&
              dq->nb[3] == 4 && dk->nb[3] == 4 && dv->nb[3] == 4);
    RK_ASSERT(!mask || (mask->ne[0] == q->ne[0] && mask->ne[1] == k->ne[2] && rk_tensor_is_contiguous(mask)));
    RK_ASSERT(rk_tensor_nelements(lse) == q->ne[0] * q->ne[1] * q->ne[2] && rk_tensor_is_contiguous(lse));
    attn_bwd_blas(dq, dk, dv, q, k, v, o, dout, lse, mask, p);
}
