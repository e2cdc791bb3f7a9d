/*
 * cuda_fp16.h (host emulation, tests/emu, C++ only): __half and __half2 as 16-bit storage with the conversion
 * intrinsics rk's kernels use. float -> half rounds to nearest even (host/rk.c rk_f32_to_f16) and turns every NaN
 * into 0x7fff, as the CUDA intrinsics do. No arithmetic operators: kernels convert to fp32 explicitly.
 */
#ifndef RK_EMU_CUDA_FP16_H
#define RK_EMU_CUDA_FP16_H

#include <stdint.h>

extern "C" {
uint16_t rk_f32_to_f16(float f);
float    rk_f16_to_f32(uint16_t h);
}

struct __half {
    unsigned short __x;
};
struct alignas(4) __half2 {
    __half x, y;
};

static inline float          __half2float(__half h) { return rk_f16_to_f32(h.__x); }
static inline __half         __float2half_rn(float f) { return { (unsigned short) (f != f ? 0x7fffu : rk_f32_to_f16(f)) }; }
static inline __half         __float2half(float f) { return __float2half_rn(f); }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline short          __half_as_short(__half h) { return (short) h.__x; }
static inline __half         __ushort_as_half(unsigned short u) { return { u }; }
static inline __half2        __floats2half2_rn(float lo, float hi) { return { __float2half_rn(lo), __float2half_rn(hi) }; }
static inline __half2        __float2half2_rn(float f) { return __floats2half2_rn(f, f); }
static inline float          __low2float(__half2 h) { return __half2float(h.x); }
static inline float          __high2float(__half2 h) { return __half2float(h.y); }

#endif
