/*
 * embed_bwd_cpu.c: CPU reference of RK_OP_EMBED_BWD, the scatter-add of dout into the embedding tables.
 * Repeated ids add up. Determinism without atomics: the channels are split among the threads, and each thread
 * adds the tokens of its channel range in token order, so the result is the same for any thread count.
 */
#include "check.h"
#include "kernels/embed.h"

#include <omp.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/* dout (B,T,C) contiguous; ids, type_ids (B,T) i32; dwte (V,C), dwpe (P,C), dwtt (NTT,C) contiguous, += */
enum rk_status rk_cpu_embed_bwd(struct rk_tensor * dwte, struct rk_tensor * dwpe, struct rk_tensor * dwtt,
                                const struct rk_tensor * dout, const struct rk_tensor * ids,
                                const struct rk_tensor * type_ids, const struct rk_embed_params * p) {
    const int64_t B = ids->ne[0], T = ids->ne[1], C = dwte->ne[1], V = dwte->ne[0];
    RK_ASSERT(dout->ne[0] == B && dout->ne[1] == T && dout->ne[2] == C);
    RK_ASSERT(rk_tensor_is_contiguous(dout) && rk_tensor_is_contiguous(ids) && rk_tensor_is_contiguous(dwte));
    RK_ASSERT(!dwpe || (dwpe->ne[1] == C && rk_tensor_is_contiguous(dwpe)));
    RK_ASSERT(!dwtt || (dwtt->ne[1] == C && rk_tensor_is_contiguous(dwtt)));
    RK_ASSERT(!type_ids || (rk_tensor_nelements(type_ids) == B * T && rk_tensor_is_contiguous(type_ids)));
    const int32_t * id = ids->data;
    const int32_t * tt = type_ids ? type_ids->data : NULL;
    for (int64_t i = 0; i < B * T; i++) {
        if (id[i] < 0 || id[i] >= V)
            return rk_set_error(RK_STATUS_ARG, "embed_bwd: token id %d at %lld outside vocab of %lld", id[i],
                                (long long) i, (long long) V);
        if (tt && dwtt && (tt[i] < 0 || tt[i] >= dwtt->ne[0]))
            return rk_set_error(RK_STATUS_ARG, "embed_bwd: token type %d at %lld outside %lld types", tt[i],
                                (long long) i, (long long) dwtt->ne[0]);
    }
    if (dwpe && p->pos_offset + T > dwpe->ne[0])
        return rk_set_error(RK_STATUS_ARG, "embed_bwd: %lld positions exceed the %lld rows of dwpe",
                            (long long) (p->pos_offset + T), (long long) dwpe->ne[0]);
    const float * G   = dout->data;
    float *       DE  = dwte->data;
    float *       DP  = dwpe ? dwpe->data : NULL;
    float *       DT  = dwtt ? dwtt->data : NULL;
#pragma omp parallel
    {
        /* this thread's channel range [c0, c1) */
        const int     nt = omp_get_num_threads(), it = omp_get_thread_num();
        const int64_t c0 = C * it / nt, c1 = C * (it + 1) / nt;
        if (c1 > c0) {
            for (int64_t i = 0; i < B * T; i++) {
                const int64_t t = i % T;
                const float * g = G + i * C;
                float *       e = DE + (int64_t) id[i] * C;
                for (int64_t c = c0; c < c1; c++) e[c] += g[c];
                if (DP) {
                    float * pe = DP + (p->pos_offset + t) * C;
                    for (int64_t c = c0; c < c1; c++) pe[c] += g[c];
                }
                if (DT) {
                    float * te = DT + (int64_t) (tt ? tt[i] : 0) * C;
                    for (int64_t c = c0; c < c1; c++) te[c] += g[c];
                }
            }
        }
    }
    return RK_OK;
}
