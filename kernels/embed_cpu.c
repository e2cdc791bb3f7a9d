/*
 * embed_cpu.c: CPU reference of RK_OP_EMBED (BERT embeddings before their LayerNorm).
 */
#include "check.h"
#include "kernels/embed.h"

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

/*
 * dst (B,T,C) = wte[ids[b,t]] + wpe[pos_offset + t] + wtt[type_ids[b,t]]  (HF BertEmbeddings, absolute positions)
 * wte (V,C), ids (B,T) i32, wpe (P,C) or NULL, wtt (NTT,C) or NULL, type_ids (B,T) i32 or NULL (type 0).
 */
enum rk_status rk_cpu_embed(struct rk_tensor * dst, const struct rk_tensor * wte, const struct rk_tensor * ids,
                            const struct rk_tensor * wpe, const struct rk_tensor * wtt,
                            const struct rk_tensor * type_ids, const struct rk_embed_params * p) {
    const int64_t B = ids->ne[0], T = ids->ne[1], C = wte->ne[1], V = wte->ne[0];
    RK_ASSERT(dst->ne[0] == B && dst->ne[1] == T && dst->ne[2] == C);
    RK_ASSERT(rk_tensor_is_contiguous(dst) && rk_tensor_is_contiguous(ids));
    const int32_t * id = ids->data;
    const int32_t * tt = type_ids ? type_ids->data : NULL;
    /* validate first, so a bad id is an error and not a wild read */
    for (int64_t i = 0; i < B * T; i++) {
        if (id[i] < 0 || id[i] >= V) return rk_set_error(RK_STATUS_ARG, "embed: token id %d at %lld outside vocab of %lld",
                                                         id[i], (long long) i, (long long) V);
        if (tt && wtt && (tt[i] < 0 || tt[i] >= wtt->ne[0]))
            return rk_set_error(RK_STATUS_ARG, "embed: token type %d at %lld outside %lld types", tt[i], (long long) i,
                                (long long) wtt->ne[0]);
    }
    if (wpe && p->pos_offset + T > wpe->ne[0])
        return rk_set_error(RK_STATUS_ARG, "embed: %lld positions exceed max_position_embeddings %lld",
                            (long long) (p->pos_offset + T), (long long) wpe->ne[0]);
    const float * E  = wte->data;
    const float * P  = wpe ? wpe->data : NULL;
    const float * TT = wtt ? wtt->data : NULL;
    float *       out = dst->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < B * T; i++) {
        const int64_t t  = i % T;
        const float * we = E + (int64_t) id[i] * C;
        const float * pe = P ? P + (p->pos_offset + t) * C : NULL;
        const float * te = TT ? TT + (int64_t) (tt ? tt[i] : 0) * C : NULL;
        float *       o  = out + i * C;
        for (int64_t c = 0; c < C; c++) {
            float s = we[c];
            if (pe) s += pe[c];
            if (te) s += te[c];
            o[c] = s;
        }
    }
    return RK_OK;
}
