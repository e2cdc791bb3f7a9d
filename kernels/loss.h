/*
 * loss.h: C ABI of the loss ops RK_OP_BCE_LOGITS and RK_OP_SOFTMAX_XENT: CPU references in kernels/loss_cpu.c.
 * Each computes the mean loss and, in the same pass, the gradient of that mean with respect to the logits.
 * Shapes and semantics: see the ops' comments in host/backend.h.
 */
#ifndef RK_KERNELS_LOSS_H
#define RK_KERNELS_LOSS_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * BCE with logits, mean over N*L (torch.nn.BCEWithLogitsLoss). logits, targets (N,L) f32 contiguous;
 * pos_weight (L) or NULL; loss (1) f32; dlogits (N,L) or NULL, may alias logits, multiplied by dlogits_scale
 * (dynamic loss scaling; 1 for none; the loss is not scaled). Cannot fail.
 */
void rk_cpu_bce_logits(struct rk_tensor * loss, struct rk_tensor * dlogits, const struct rk_tensor * logits,
                       const struct rk_tensor * targets, const struct rk_tensor * pos_weight, float dlogits_scale);

/*
 * Softmax cross-entropy, mean over the rows whose target is not RK_XENT_IGNORE_INDEX. logits (N,V) rows
 * contiguous; targets (N) i32; loss (1) f32; dlogits (N,V) rows contiguous or NULL, may alias logits, multiplied
 * by dlogits_scale as in rk_cpu_bce_logits. Returns RK_STATUS_ARG (nothing written) for a target outside [0,V)
 * that is not the ignore index.
 */
enum rk_status rk_cpu_softmax_xent(struct rk_tensor * loss, struct rk_tensor * dlogits,
                                   const struct rk_tensor * logits, const struct rk_tensor * targets,
                                   float dlogits_scale);

#ifdef __cplusplus
}
#endif
#endif
