/*
 * emu_device.h (host emulation, tests/emu): the device side of CUDA C++ as host C++, for the kernel translation units
 * that tests/emu/cu2cpp.py produces from the .cu files (kernels/, quant/, lora/). It is force-included (g++ -include)
 * before the .cu file is preprocessed; cu2cpp.py then rewrites what the preprocessor cannot: __shared__ variables,
 * <<<...>>> launches and inline PTX (asm statements).
 *
 * A launch runs on the calling host thread before it returns: one block after another, each block's threads as
 * fibers of one host thread (tests/emu/emu_fiber.cpp). A fiber runs until it reaches a barrier or a warp collective
 * (__syncthreads*, __syncwarp, shuffles, ballots, ldmatrix, mma), so every collective is a real rendezvous of the
 * threads it names, and the runtime checks that they all reached the same one (see tests/emu/README.md).
 */
#ifndef RK_EMU_DEVICE_H
#define RK_EMU_DEVICE_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime_api.h"

/* ---- qualifiers: meaningless on the host ----------------------------------------------------------------------- */
#define __device__
#define __global__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __grid_constant__
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* __shared__ and asm are deliberately not macros: cu2cpp.py rewrites them after preprocessing. */

/* ---- built-in vector types ------------------------------------------------------------------------------------- */
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return { x, y }; }
static inline float4 make_float4(float x, float y, float z, float w) { return { x, y, z, w }; }
static inline uint2  make_uint2(unsigned x, unsigned y) { return { x, y }; }
static inline uint4  make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return { x, y, z, w }; }
static inline int4   make_int4(int x, int y, int z, int w) { return { x, y, z, w }; }

/* ---- the runtime's device-side interface (tests/emu/emu_fiber.cpp) --------------------------------------------- */
namespace emu {
extern uint3 block_idx;
extern dim3  grid_dim, block_dim;
const uint3 & thread_idx();
int           lane();
[[noreturn]] void fault(const char * fmt, ...) __attribute__((format(printf, 1, 2)));

void     sync_block(const char * file, int line);
int      sync_block_reduce(int kind, int pred, const char * file, int line); /* kind: 1 or, 2 and, 3 count */
void     sync_warp(const char * file, int line, unsigned mask = 0xffffffffu);
/* Warp exchange: publishes v, waits for every lane of mask, returns the value lane src published (src must be in
 * mask). kind names the intrinsic in messages; every lane of mask must call the same intrinsic at the same site. */
uint64_t exchange(unsigned mask, uint64_t v, int src, const char * kind, const char * file, int line);
unsigned ballot(unsigned mask, int pred, const char * kind, const char * file, int line);

void *   smem_static(const void * key, size_t size, size_t align, const char * name);
void *   smem_dynamic();
uint32_t cvta_shared(const void * p);

/* One operand of an inline-PTX statement: outputs ("=r", "+f", ...) by address, inputs by value. */
struct asm_arg {
    char     kind; /* the constraint letter: r (32-bit), l (64-bit), h (16-bit), f (f32), d (f64), n (immediate) */
    bool     out;
    void *   ptr;
    uint64_t val;
};
template <class T> static inline asm_arg asm_out(char kind, T & lv) {
    static_assert(std::is_arithmetic<T>::value, "asm output");
    return { kind, true, (void *) &lv, sizeof(T) };
}
template <class T> static inline asm_arg asm_in(char kind, const T & v) {
    asm_arg a = { kind, false, nullptr, 0 };
    if constexpr (std::is_pointer<T>::value) {
        a.val = (uint64_t) (uintptr_t) v;
    } else if constexpr (std::is_same<T, float>::value) {
        memcpy(&a.val, &v, 4);
    } else if constexpr (std::is_same<T, double>::value) {
        memcpy(&a.val, &v, 8);
    } else {
        a.val = (uint64_t) v;
    }
    return a;
}
/* Runs one inline-PTX template (tests/emu/emu_ptx.cpp); aborts on an instruction it does not know. */
void run_asm(const char * tmpl, asm_arg * args, int n, const char * file, int line);

void launch(const char * name, const void * key, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            void (*body)(void *), void * ctx);
} // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx  (::emu::block_idx)
#define blockDim  (::emu::block_dim)
#define gridDim   (::emu::grid_dim)
static constexpr int warpSize = 32;

/* <<<grid, block, smem, stream>>>(args) becomes emu_launch("kernel", kernel, grid, block, smem, stream, args). The
 * arguments are converted to the kernel's parameter types once, as a call would; each thread gets its own copies. */
template <class... P, class... A>
static inline void emu_launch(const char * name, void (*k)(P...), dim3 grid, dim3 block, size_t smem,
                              cudaStream_t stream, A &&... a) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    typedef std::tuple<typename std::decay<P>::type...> args_t;
    args_t args(static_cast<typename std::decay<P>::type>(std::forward<A>(a))...);
    struct ctx_t {
        void (*k)(P...);
        args_t * args;
    } c = { k, &args };
    ::emu::launch(name, (const void *) k, grid, block, smem, stream,
                  [](void * p) { ctx_t * cx = (ctx_t *) p; std::apply(cx->k, *cx->args); }, &c);
}

template <class... P> static inline cudaError_t cudaFuncSetAttribute(void (*f)(P...), cudaFuncAttribute a, int v) {
    return cudaFuncSetAttribute((const void *) f, a, v);
}

/* ---- barriers and warp collectives ----------------------------------------------------------------------------- */
#define __syncthreads()          ::emu::sync_block(__FILE__, __LINE__)
#define __syncthreads_or(p)      ::emu::sync_block_reduce(1, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_and(p)     ::emu::sync_block_reduce(2, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_count(p)   ::emu::sync_block_reduce(3, (p) != 0, __FILE__, __LINE__)
#define __syncwarp(...)          ::emu::sync_warp(__FILE__, __LINE__ __VA_OPT__(,) __VA_ARGS__)
#define __shfl_sync(...)         ::emu::shfl_idx(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...)     ::emu::shfl_xor(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...)      ::emu::shfl_up(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...)    ::emu::shfl_down(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(m, p)      ::emu::ballot((m), (p) != 0, "__ballot_sync", __FILE__, __LINE__)
#define __any_sync(m, p)         (::emu::ballot((m), (p) != 0, "__any_sync", __FILE__, __LINE__) != 0u)
#define __all_sync(m, p)         (::emu::ballot((m), (p) != 0, "__all_sync", __FILE__, __LINE__) == (unsigned) (m))
#define __trap()                 ::emu::fault("__trap() at %s:%d", __FILE__, __LINE__)
#define __cvta_generic_to_shared(p) ((size_t) ::emu::cvta_shared(p))

namespace emu {
template <class T> static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T> static inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof(T));
    return v;
}
/* Source lane of each shuffle form inside its width-segment; -1 keeps the caller's own value (PTX shfl rules). */
template <class T> static inline T shfl_idx(const char * f, int l, unsigned mask, T v, int src, int width = 32) {
    const int base = lane() & ~(width - 1);
    return from_bits<T>(exchange(mask, to_bits(v), base + (src & (width - 1)), "__shfl_sync", f, l));
}
template <class T> static inline T shfl_xor(const char * f, int l, unsigned mask, T v, int m, int width = 32) {
    const int me = lane(), src = me ^ m;
    const bool own = (src & ~(width - 1)) != (me & ~(width - 1));
    return from_bits<T>(exchange(mask, to_bits(v), own ? me : src, "__shfl_xor_sync", f, l));
}
template <class T> static inline T shfl_up(const char * f, int l, unsigned mask, T v, unsigned d, int width = 32) {
    const int me = lane(), src = me - (int) d;
    const bool own = src < (me & ~(width - 1));
    return from_bits<T>(exchange(mask, to_bits(v), own ? me : src, "__shfl_up_sync", f, l));
}
template <class T> static inline T shfl_down(const char * f, int l, unsigned mask, T v, unsigned d, int width = 32) {
    const int me = lane(), src = me + (int) d;
    const bool own = src >= (me & ~(width - 1)) + width;
    return from_bits<T>(exchange(mask, to_bits(v), own ? me : src, "__shfl_down_sync", f, l));
}
} // namespace emu

/* ---- memory fences and atomics: one fiber runs at a time, so a read-modify-write is atomic --------------------- */
static inline void __threadfence() {}
static inline void __threadfence_block() {}
template <class T> static inline T atomicAdd(T * p, T v) { T o = *p; *p = o + v; return o; }
template <class T> static inline T atomicMax(T * p, T v) { T o = *p; *p = o < v ? v : o; return o; }
template <class T> static inline T atomicMin(T * p, T v) { T o = *p; *p = v < o ? v : o; return o; }
template <class T> static inline T atomicExch(T * p, T v) { T o = *p; *p = v; return o; }
template <class T> static inline T atomicCAS(T * p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }

/* ---- cache-hinted loads and stores: plain accesses here -------------------------------------------------------- */
template <class T> static inline T __ldg(const T * p) { return *p; }
template <class T> static inline T __ldcs(const T * p) { return *p; }
template <class T> static inline T __ldcg(const T * p) { return *p; }
template <class T> static inline T __ldca(const T * p) { return *p; }
template <class T> static inline T __ldlu(const T * p) { return *p; }
template <class T> static inline T __ldcv(const T * p) { return *p; }
template <class T> static inline void __stcs(T * p, T v) { *p = v; }
template <class T> static inline void __stcg(T * p, T v) { *p = v; }
template <class T> static inline void __stwb(T * p, T v) { *p = v; }

/* ---- integer intrinsics ---------------------------------------------------------------------------------------- */
static inline int      __popc(unsigned x) { return __builtin_popcount(x); }
static inline int      __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int      __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned) x); }
static inline int      __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long) x); }
static inline int      __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned) (((uint64_t) a * b) >> 32); }
/* PTX prmt (default mode): byte i of the result is byte (s >> 4i) & 7 of the 8-byte value {y, x}, sign-replicated
 * when bit 3 of that selector nibble is set. */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = ((uint64_t) y << 32) | x;
    unsigned       r = 0;
    for (int i = 0; i < 4; i++) {
        const unsigned sel = (s >> (4 * i)) & 0xfu;
        unsigned       b   = (unsigned) (v >> (8 * (sel & 7u))) & 0xffu;
        if (sel & 8u) b = (b & 0x80u) ? 0xffu : 0u;
        r |= b << (8 * i);
    }
    return r;
}

/* ---- float intrinsics: IEEE round-to-nearest host arithmetic (compiled with -ffp-contract=off) ----------------- */
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int   __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float a) { return a != a ? 0.0f : a < 0.0f ? 0.0f : a > 1.0f ? 1.0f : a; }
static inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
/* __expf, __logf, __exp10f: glibc declares functions of these names (the precise ones), which kernels then call */
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }

/* CUDA's min/max overloads for mixed integer types */
template <class A, class B> static inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C) b < (C) a ? (C) b : (C) a;
}
template <class A, class B> static inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C) a < (C) b ? (C) b : (C) a;
}

#endif
