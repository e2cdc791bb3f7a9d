/*
 * check.h: asserts that stay on in release builds, and checked allocation.
 * CUDA/cuBLAS checks live in host/cuda_check.h (only CUDA translation units include it).
 */
#ifndef RK_CHECK_H
#define RK_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RK_NORETURN __attribute__((noreturn))
#else
#define RK_NORETURN
#endif

/* Prints "rk: assertion failed: <cond> (<file>:<line>)" to stderr and aborts. */
RK_NORETURN void rk_abort(const char * what, const char * file, int line);

/* Always on, also with -DNDEBUG (STYLE.md 5). */
#define RK_ASSERT(cond)                                                   \
    do {                                                                  \
        if (!(cond)) rk_abort("assertion failed: " #cond, __FILE__, __LINE__); \
    } while (0)

/* Expensive checks: compiled only with -DRK_DEBUG. */
#ifdef RK_DEBUG
#define RK_DEBUG_ASSERT(cond) RK_ASSERT(cond)
#else
#define RK_DEBUG_ASSERT(cond) ((void) 0)
#endif

/* Allocation that aborts on failure (host memory for small bookkeeping only). */
void * rk_xmalloc(size_t n);
void * rk_xcalloc(size_t n, size_t size);
void * rk_xrealloc(void * p, size_t n);
char * rk_xstrdup(const char * s);

/* Propagates a non-OK status. */
#define RK_TRY(expr)                              \
    do {                                          \
        enum rk_status rk_try_s_ = (expr);        \
        if (rk_try_s_ != RK_OK) return rk_try_s_; \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
