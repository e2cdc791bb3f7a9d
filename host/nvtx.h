/*
 * nvtx.h: named ranges for Nsight Systems around model layers. On the CUDA backend they become NVTX ranges
 * (nvtx3, header-only: nothing to link); on the CPU backend, a NULL backend or a build without CUDA they do nothing.
 * Every push needs its pop. Cannot fail. Defined in host/backend_cuda.c (both builds). The CUDA dispatcher already
 * wraps each op in a range named by rk_op_names, so these are for the layers above the ops.
 */
#ifndef RK_NVTX_H
#define RK_NVTX_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

void rk_backend_nvtx_push(struct rk_backend * be, const char * name);
void rk_backend_nvtx_pop(struct rk_backend * be);

#ifdef __cplusplus
}
#endif
#endif
