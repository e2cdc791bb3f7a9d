/*
 * cuda_bf16.h (host emulation, tests/emu, C++ only): __nv_bfloat16 and __nv_bfloat162 as 16-bit storage with the
 * conversion intrinsics rk's kernels use. float -> bf16 rounds to nearest even (host/rk.c rk_f32_to_bf16) and turns
 * every NaN into 0x7fff, as the CUDA intrinsics do. No arithmetic operators: kernels convert to fp32 explicitly.
 */
#ifndef RK_EMU_CUDA_BF16_H
#define RK_EMU_CUDA_BF16_H

#include <stdint.h>

extern "C" {
uint16_t rk_f32_to_bf16(float f);
float    rk_bf16_to_f32(uint16_t h);
}

struct __nv_bfloat16 {
    unsigned short __x;
};
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline float          __bfloat162float(__nv_bfloat16 h) { return rk_bf16_to_f32(h.__x); }
static inline __nv_bfloat16  __float2bfloat16_rn(float f) {
    return { (unsigned short) (f != f ? 0x7fffu : rk_f32_to_bf16(f)) };
}
static inline __nv_bfloat16  __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline __nv_bfloat16  __ushort_as_bfloat16(unsigned short u) { return { u }; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return { __float2bfloat16_rn(lo), __float2bfloat16_rn(hi) };
}
static inline float          __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
static inline float          __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }

#endif
