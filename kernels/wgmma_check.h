/*
 * wgmma_check.h: C ABI of the device self-test of the Hopper warpgroup-MMA primitives (kernels/wgmma.cuh) in the
 * exact forms the attention kernels (kernels/attn.cu, attention variants 6-12) use them. Each "combo" is
 * one small kernel run on the device and compared on the host with a double-precision product, so that when the
 * attention parity tests fail on a real H100/H200 the failing primitive layout is named at once. Built only with
 * CUDA (-DRK_HAVE_CUDA); the caller is tests/test_wgmma.c. The combos are listed in kernels/wgmma_check.cu.
 */
#ifndef RK_KERNELS_WGMMA_CHECK_H
#define RK_KERNELS_WGMMA_CHECK_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Deliberate layout defects, for proving that the check fails (tests/test_wgmma.c, cuda_wgmma/detects_defects). */
enum rk_wgmma_defect {
    RK_WGMMA_DEFECT_NONE = 0,
    RK_WGMMA_DEFECT_SBO,      /* SS: both K-major descriptors with SBO 512 instead of 1024 */
    RK_WGMMA_DEFECT_RS_KSTEP, /* RS: B's k-step 1024 bytes (8 keys) instead of 2048 (16 keys) */
    RK_WGMMA_DEFECT_RS_LBO,   /* RS: B's LBO half the 64-column panel stride (visible at N = 128 only) */
    RK_WGMMA_DEFECT_PACK,     /* RS: A fragment registers 1 and 2 swapped (rows + 8 taken for columns + 8) */
    RK_WGMMA_DEFECT_TMA_COORD, /* tma-pipe: the A tile of k-block kb loaded from column 64 kb + 8 */
    RK_WGMMA_DEFECT_COUNT
};

/* Number of combos (ids 0 .. count - 1). Cannot fail. */
int rk_cuda_wgmma_check_count(void);

/* The combo's name, e.g. "ss,N=64,K=128,bf16,scale_d=0" or "chain-v6,HS=64,BN=128,bf16"; "?" out of range.
   Cannot fail. */
const char * rk_cuda_wgmma_check_name(int combo);

/* The defect's short name ("none", "sbo", "rs-kstep", "rs-lbo", "pack", "tma-coord"); "?" out of range. Cannot
   fail. */
const char * rk_cuda_wgmma_defect_name(int defect);

/*
 * Runs combo `combo` on the current CUDA device (allocates its inputs and outputs, launches, synchronizes, frees)
 * and compares its output with the host's double-precision product (exact: the inputs are small dyadic numbers,
 * so every fp32 sum is exact whatever the order). msg (msg_len bytes, NUL-terminated, may be NULL when msg_len is
 * 0) receives one line: what ran on success, else the first mismatch (matrix, row, col, got, want, how many
 * differ) or why nothing ran. Returns RK_OK when every element matches; RK_STATUS_DEVICE on a mismatch;
 * RK_STATUS_UNSUPPORTED without launching anything when there is no CUDA device or it is not compute capability
 * 9.0 (the build has sm_90a code for wgmma only), or when the device's shared memory is too small;
 * RK_STATUS_ARG for a combo or defect out of range. The error message (rk_last_error) is set too. A CUDA fault
 * aborts (RK_CUDA_CHECK), so callers that must survive one run each combo in its own process.
 */
enum rk_status rk_cuda_wgmma_check(int combo, char * msg, size_t msg_len);

/* rk_cuda_wgmma_check with a deliberate defect (enum rk_wgmma_defect) in the kernel's layouts: a working check
   must report a mismatch (RK_STATUS_DEVICE) for it. Same contract otherwise. */
enum rk_status rk_cuda_wgmma_check_defect(int combo, int defect, char * msg, size_t msg_len);

#ifdef __cplusplus
}
#endif
#endif
