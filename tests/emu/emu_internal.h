/*
 * emu_internal.h: what the parts of the CUDA host emulation share (tests/emu/README.md): emu_runtime.cpp (device
 * memory, streams, events, properties, errors), emu_fiber.cpp (launches, fibers, barriers, warp collectives, shared
 * memory), emu_ptx.cpp (inline PTX) and emu_blas.cpp (cuBLAS / cuBLASLt).
 */
#ifndef RK_EMU_INTERNAL_H
#define RK_EMU_INTERNAL_H

#include "inc/emu_device.h"

#include <cstdarg>

#ifndef RK_EMU_CC
#define RK_EMU_CC 90 /* the emulated device's compute capability; the kernels were compiled for it (__CUDA_ARCH__) */
#endif

namespace emu {

/* Settings read once from the environment (README.md lists them). */
struct settings {
    int    cc;          /* RK_EMU_CC */
    int    smem_optin;  /* opt-in shared memory per block, bytes */
    int    n_sm;        /* EMU_SM_COUNT: multiprocessors the device reports (default 132 on sm_90, 40 on sm_75) */
    bool   protect;     /* EMU_PROTECT (default 1): device memory inaccessible to host code between device calls */
    int    sched;       /* EMU_SCHED: 0 forward (default), 1 reverse, 2 shuffled thread order per pass */
    bool   cp_early;    /* EMU_CP_ASYNC=early: cp.async copies land at issue instead of at the wait */
    bool   strict;      /* EMU_STRICT (default 1): a barrier reached from two sites is an error */
    int    lt_algos;    /* EMU_LT_HEURISTIC: 1 cuBLASLt offers an algorithm (default), 0 never (GemmEx fallbacks) */
    bool   verbose;     /* EMU_VERBOSE=1: one line per launch */
};
const settings & cfg();

/* "emu: <message>" with the running kernel, block and thread when inside one, then abort(). */
[[noreturn]] void vfault(const char * fmt, va_list ap);
/* The same message without aborting (for errors returned to the caller, which rk then reports). */
void warn(const char * fmt, ...) __attribute__((format(printf, 1, 2)));

/* Device memory: one reserved arena; true when [p, p + n) lies in one live cudaMalloc allocation. */
bool is_device(const void * p, size_t n);
bool in_arena(const void * p);
/* Host code may not touch device memory (EMU_PROTECT): device calls open it for their duration. Nests. */
void device_access(bool open);
struct device_scope {
    device_scope() { device_access(true); }
    ~device_scope() { device_access(false); }
    device_scope(const device_scope &)             = delete;
    device_scope & operator=(const device_scope &) = delete;
};

void set_last_error(cudaError_t e);
bool stream_valid(cudaStream_t s); /* 0 (the legacy default stream) or a live stream */
int  func_max_dynamic_smem(const void * key);
void init();                       /* idempotent: arena, signal handlers, settings */

/* The kernel running now (for messages); NULL between launches. */
const char * current_kernel();
/* Shared memory of the running block: its base and the bytes in use (dynamic + static); for PTX operands. */
unsigned char * smem_arena();
size_t          smem_in_use();
/* The arena as the async proxy (wgmma) sees it: a copy taken at each fence.proxy.async (of any thread). A byte
 * where it differs from smem_arena() was written through the generic proxy after the last fence. */
const unsigned char * smem_async_view();
void                  fence_proxy_async();
/* The running thread's linear index in its block; a number that differs for every block run (1, 2, ...). */
int      thread_linear();
uint64_t block_serial();
/* Warpgroup collective (the 128 threads t with t / 128 equal): every thread at the same site; returns the 128 x 8
 * table of what the threads published (row = thread index in the warpgroup), valid until the warpgroup's
 * next-but-one collective. */
const uint64_t * warpgroup_gather(const uint64_t * words, int n, const char * kind, const char * file, int line);
/* The wgmma asynchrony model (emu_ptx.cpp): a cp.async or TMA load issued into shared bytes that an in-flight mma_async reads is
 * an error; so is a thread that returns with mma_async ops never retired. */
void wg_check_shared_write(uint32_t dst, int bytes, const char * what); /* what: "cp.async", "TMA load" */
void wg_thread_exit();
/* Per-thread cp.async queue (emu_fiber.cpp). */
void cp_async(uint32_t dst, const void * src, int bytes, int src_bytes);
void cp_commit();
void cp_wait(int n_pending_allowed);
/* NULL, or what describes a cp.async of any thread of the block, issued and not landed yet (not waited for), whose
 * target overlaps shared bytes [a, a + n): a read of those bytes races with the copy (PTX reads check it). */
const char * cp_pending_at(uint32_t a, int n);
/* The emulated CUtensorMap (inc/cuda.h's 16 opaque words), as the emulated cuTensorMapEncodeTiled writes it
 * (emu_runtime.cpp) and the emulated cp.async.bulk.tensor reads it (emu_fiber.cpp). Tile mode, no interleave,
 * element strides 1. */
struct tmap {
    uint64_t addr;      /* global address of element 0 */
    uint64_t stride[4]; /* bytes between consecutive indices of dimensions 1 .. rank - 1 */
    uint32_t dim_m1[5]; /* elements per dimension, minus 1 */
    uint16_t box[5];    /* box elements per dimension */
    uint8_t  rank, esize, swizzle, oob_nan; /* swizzle: 0 none, 1 32B, 2 64B, 3 128B (CUtensorMapSwizzle) */
    uint32_t magic;
};
constexpr uint32_t TMAP_MAGIC = 0x544d4150u; /* "TMAP" */
static_assert(sizeof(tmap) <= 128, "a CUtensorMap has 128 bytes");
/* mbarrier objects (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier"), per block, keyed
 * by their shared address; TMA tile loads (cp.async.bulk.tensor) completing on them; named barriers (bar.sync /
 * bar.arrive with an id and a thread count). emu_fiber.cpp. */
void mbar_init(uint32_t a, int count);
void mbar_arrive(uint32_t a, long long expect_tx); /* expect_tx 0: a plain arrive */
/* Blocks until the phase with the given parity has completed (the current phase's parity differs); lands the TMA
 * loads pending on the barrier first (they complete at the latest when somebody waits). */
void mbar_wait_parity(uint32_t a, unsigned parity, const char * file, int line);
/* A tile-mode TMA load of the box at coords (n of them, the map's rank) into shared dst, completing `bytes` of
 * transactions on the mbarrier at mbar. */
void tma_load(uint32_t dst, const void * map, const int32_t * coords, int n, uint32_t mbar);
void named_barrier(int id, int count, bool wait, const char * file, int line);
/* Warp collective with up to 8 words per lane: returns the 32 x 8 table of what the lanes published (row = lane),
 * valid until this warp's next-but-one collective. Every lane of mask must call it at the same site. */
const uint64_t * warp_gather(unsigned mask, const uint64_t * words, int n, const char * kind, const char * file,
                             int line);

} // namespace emu

#endif
