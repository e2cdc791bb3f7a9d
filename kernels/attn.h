/*
 * attn.h: C ABI of the attn op(s): CPU reference (kernels/attn_cpu.c) and, with CUDA, the launcher (kernels/attn.cu).
 * Shapes and semantics: see the op's comment in host/backend.h.
 */
#ifndef RK_KERNELS_ATTN_H
#define RK_KERNELS_ATTN_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * CPU reference attention forward, f32, strided (B,NH,T,HS) views (see RK_OP_ATTN_FWD in host/backend.h).
 * mask (B,Tk) i32 or NULL; lse (B,NH,Tq) f32 or NULL. Cannot fail (shapes are asserted).
 */
void rk_cpu_attn_fwd(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                     const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                     const struct rk_attn_params * p);
/* The same function computed one query row at a time with scalar loops: the reference for the BLAS path. */
void rk_cpu_attn_fwd_plain(struct rk_tensor * dst, const struct rk_tensor * q, const struct rk_tensor * k,
                           const struct rk_tensor * v, const struct rk_tensor * mask, struct rk_tensor * lse,
                           const struct rk_attn_params * p);

/*
 * CPU reference attention backward (RK_OP_ATTN_BWD in host/backend.h), one query row at a time.
 * dq (B,NH,Tq,HS), dk/dv (B,NKV,Tk,HS) overwritten; o, dout (B,NH,Tq,HS); lse (B,NH,Tq) from the forward.
 * Cannot fail (shapes are asserted). kernels/attn_bwd_cpu.c.
 */
void rk_cpu_attn_bwd(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv, const struct rk_tensor * q,
                     const struct rk_tensor * k, const struct rk_tensor * v, const struct rk_tensor * o,
                     const struct rk_tensor * dout, const struct rk_tensor * lse, const struct rk_tensor * mask,
                     const struct rk_attn_params * p);
/* The same function one query row at a time: the reference for the BLAS path of rk_cpu_attn_bwd. */
void rk_cpu_attn_bwd_plain(struct rk_tensor * dq, struct rk_tensor * dk, struct rk_tensor * dv, const struct rk_tensor * q,
                     const struct rk_tensor * k, const struct rk_tensor * v, const struct rk_tensor * o,
                     const struct rk_tensor * dout, const struct rk_tensor * lse, const struct rk_tensor * mask,
                     const struct rk_attn_params * p);

#ifdef __cplusplus
}
#endif
#endif
