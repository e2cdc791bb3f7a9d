/*
 * nvtx.h: named ranges for Nsight Systems around model layers. On the CUDA backend they become NVTX ranges;
 * on the CPU (or a build without CUDA) they do nothing. Cannot fail.
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
