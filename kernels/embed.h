/*
 * embed.h: C ABI of the embed op(s): CPU reference (kernels/embed_cpu.c) and, with CUDA, the launcher (kernels/embed.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_EMBED_H
#define RK_KERNELS_EMBED_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU reference, f32. dst (B,T,C); ids/type_ids i32 (B,T); wpe/wtt/type_ids may be NULL. Returns
 * RK_STATUS_ARG when an id is out of range. */
enum rk_status rk_cpu_embed(struct rk_tensor * dst, const struct rk_tensor * wte, const struct rk_tensor * ids,
                            const struct rk_tensor * wpe, const struct rk_tensor * wtt,
                            const struct rk_tensor * type_ids, const struct rk_embed_params * p);

/* RK_OP_EMBED_BWD: dwte (V,C) += , dwpe (P,C) += (or NULL), dwtt (NTT,C) += (or NULL) from dout (B,T,C).
 * Deterministic whatever the thread count. RK_STATUS_ARG (nothing written) when an id is out of range.
 * kernels/embed_bwd_cpu.c. */
enum rk_status rk_cpu_embed_bwd(struct rk_tensor * dwte, struct rk_tensor * dwpe, struct rk_tensor * dwtt,
                                const struct rk_tensor * dout, const struct rk_tensor * ids,
                                const struct rk_tensor * type_ids, const struct rk_embed_params * p);

#ifdef __cplusplus
}
#endif
#endif
