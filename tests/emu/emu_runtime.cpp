/*
 * emu_runtime.cpp: the CUDA runtime API of the host emulation (tests/emu/README.md): one emulated device whose
 * global memory is an arena of host memory, synchronous streams and events, device properties, error codes.
 *
 * Device memory is one reserved range of address space. Allocations are 256-byte aligned (as cudaMalloc's), end at
 * a guard page (an access past the end faults, used or not) and are filled with 0xFF bytes (a NaN in every float
 * dtype), so a kernel that reads memory nobody wrote sees NaN. With EMU_PROTECT=1 (the default) allocations are
 * inaccessible (PROT_NONE) while host code runs and opened only for the duration of a kernel, a copy, a memset or a
 * cuBLAS call: host code that dereferences a device pointer crashes with a message naming the allocation, as it
 * would fault (or read garbage) with a real GPU.
 */
#include "emu_internal.h"
#include "inc/cuda.h"

#include <csignal>
#include <ctime>
#include <execinfo.h>
#include <iterator>
#include <map>
#include <set>
#include <sys/mman.h>
#include <unistd.h>

namespace emu {

static settings g_cfg;
static bool     g_inited;

static int env_int(const char * name, int dflt) {
    const char * v = getenv(name);
    return (v && *v) ? atoi(v) : dflt;
}

const settings & cfg() {
    if (!g_inited) init();
    return g_cfg;
}

/* ---- device memory arena ---------------------------------------------------------------------------------------
 * Every allocation gets its own whole pages, followed by a guard page that is never accessible: the allocation ends
 * where the guard begins (its start is 256-byte aligned, as cudaMalloc's), so a kernel access past the end faults
 * even when the value read is never used. Pages of freed allocations are released and reused. */

struct alloc_rec {
    size_t size;   /* bytes handed out (the request rounded up to 256) */
    size_t region; /* offset of its first page */
    size_t pages;  /* its pages, not counting the guard page after them */
};

static unsigned char *              g_base;     /* reserved range */
static size_t                       g_reserved;
static size_t                       g_page;
static size_t                       g_top = 1;  /* next unused page (page 0 stays a guard) */
static std::map<size_t, alloc_rec>  g_live;     /* allocation offset -> record */
static std::map<size_t, size_t>     g_free;     /* page -> free pages from there (guards included) */
static int                          g_open;     /* device_access nesting */

bool in_arena(const void * p) {
    return g_base && (const unsigned char *) p >= g_base && (const unsigned char *) p < g_base + g_reserved;
}

/* The live allocation holding p: its offset and size; false when none. */
static bool find_alloc(const void * p, size_t * off, size_t * size) {
    if (!in_arena(p)) return false;
    const size_t o  = (size_t) ((const unsigned char *) p - g_base);
    auto         it = g_live.upper_bound(o);
    if (it == g_live.begin()) return false;
    --it;
    if (o >= it->first + it->second.size) return false;
    *off  = it->first;
    *size = it->second.size;
    return true;
}

bool is_device(const void * p, size_t n) {
    size_t off, size;
    if (!find_alloc(p, &off, &size)) return false;
    return (size_t) ((const unsigned char *) p - g_base) + n <= off + size;
}

static void set_prot(const alloc_rec & a, bool open) {
    if (mprotect(g_base + a.region * g_page, a.pages * g_page, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
        perror("emu: mprotect");
        abort();
    }
}

void device_access(bool open) {
    if (!g_cfg.protect) return; /* allocations stay open; guard pages stay closed */
    if (open ? g_open++ == 0 : --g_open == 0) {
        for (const auto & kv : g_live) set_prot(kv.second, open);
    }
}

static void * arena_alloc(size_t n) {
    n = (n + 255) & ~(size_t) 255;
    if (n == 0) n = 256;
    const size_t pages = (n + g_page - 1) / g_page, need = pages + 1; /* + the guard page */
    size_t       region = SIZE_MAX;
    for (auto it = g_free.begin(); it != g_free.end(); ++it) { /* first fit */
        if (it->second >= need) {
            region = it->first;
            if (it->second > need) g_free[region + need] = it->second - need;
            g_free.erase(it);
            break;
        }
    }
    if (region == SIZE_MAX) {
        if ((g_top + need) * g_page > g_reserved) return nullptr;
        region = g_top;
        g_top += need;
    }
    const alloc_rec a   = { n, region, pages };
    const size_t    off = (region + pages) * g_page - n;
    g_live[off]         = a;
    set_prot(a, true);
    memset(g_base + off, 0xff, n);
    if (g_cfg.protect && g_open == 0) set_prot(a, false);
    return g_base + off;
}

static bool arena_free(void * p) {
    size_t off, size;
    if (!find_alloc(p, &off, &size) || g_base + off != p) return false;
    const alloc_rec a = g_live[off];
    g_live.erase(off);
    set_prot(a, false);
    madvise(g_base + a.region * g_page, a.pages * g_page, MADV_DONTNEED); /* give the memory back */
    size_t page = a.region, count = a.pages + 1;
    auto   nx   = g_free.find(page + count);
    if (nx != g_free.end()) { /* merge with the next hole */
        count += nx->second;
        g_free.erase(nx);
    }
    auto pv = g_free.lower_bound(page);
    if (pv != g_free.begin()) {
        --pv;
        if (pv->first + pv->second == page) {
            pv->second += count;
            return true;
        }
    }
    g_free[page] = count;
    return true;
}

/* ---- faults ---------------------------------------------------------------------------------------------------- */

static void segv_handler(int sig, siginfo_t * si, void *) {
    const unsigned char * a = (const unsigned char *) si->si_addr;
    char                  msg[512];
    int                   n = 0;
    if (in_arena(a)) {
        size_t       off, size;
        const size_t o  = (size_t) (a - g_base);
        auto         it = g_live.upper_bound(o);
        if (g_open == 0 && g_cfg.protect && find_alloc(a, &off, &size)) {
            n = snprintf(msg, sizeof(msg), "emu: host code touched device memory at %p (byte %zu of a %zu-byte "
                         "cudaMalloc allocation): a host dereference of a device pointer\n", (const void *) a,
                         o - off, size);
        } else if (it != g_live.begin() && o >= std::prev(it)->first + std::prev(it)->second.size &&
                   o < std::prev(it)->first + std::prev(it)->second.size + g_page) {
            const auto & pv = *std::prev(it);
            n = snprintf(msg, sizeof(msg), "emu: access %zu bytes past the end of a %zu-byte cudaMalloc allocation "
                         "(address %p)%s\n", o - (pv.first + pv.second.size), pv.second.size, (const void *) a,
                         g_open ? "" : " from host code");
        } else {
            n = snprintf(msg, sizeof(msg), "emu: access to device address %p outside every live allocation%s\n",
                         (const void *) a, g_open ? " (inside a device call)" : "");
        }
    } else {
        n = snprintf(msg, sizeof(msg), "emu: %s at %p (not device memory%s)\n", sig == SIGSEGV ? "SIGSEGV" : "SIGBUS",
                     (const void *) a, current_kernel() ? "; a fiber stack overflow shows up here too" : "");
    }
    if (current_kernel()) {
        n += snprintf(msg + n, sizeof(msg) - (size_t) n, "emu: while running kernel %s\n", current_kernel());
    }
    if (write(2, msg, (size_t) n) < 0) {
    }
    void * bt[64];
    const int depth = backtrace(bt, 64);
    backtrace_symbols_fd(bt, depth, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

void init() {
    if (g_inited) return;
    g_inited          = true;
    g_cfg.cc          = RK_EMU_CC;
    g_cfg.smem_optin  = g_cfg.cc >= 90 ? 232448 : g_cfg.cc >= 80 ? 166912 : 65536;
    g_cfg.n_sm        = env_int("EMU_SM_COUNT", g_cfg.cc >= 90 ? 132 : 40);
    if (g_cfg.n_sm < 1) g_cfg.n_sm = 1;
    g_cfg.protect     = env_int("EMU_PROTECT", 1) != 0;
    const char * s    = getenv("EMU_SCHED");
    g_cfg.sched       = !s ? 0 : strcmp(s, "reverse") == 0 ? 1 : strcmp(s, "shuffle") == 0 ? 2 : 0;
    const char * cp   = getenv("EMU_CP_ASYNC");
    g_cfg.cp_early    = cp && strcmp(cp, "early") == 0;
    g_cfg.strict      = env_int("EMU_STRICT", 1) != 0;
    g_cfg.lt_algos    = env_int("EMU_LT_HEURISTIC", 1);
    g_cfg.verbose     = env_int("EMU_VERBOSE", 0) != 0;
    g_page            = (size_t) sysconf(_SC_PAGESIZE);
    for (g_reserved = (size_t) 32 << 30; g_reserved >= ((size_t) 1 << 30); g_reserved /= 2) {
        void * p = mmap(nullptr, g_reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            g_base = (unsigned char *) p;
            break;
        }
    }
    if (!g_base) {
        fprintf(stderr, "emu: cannot reserve address space for device memory\n");
        abort();
    }
    /* an alternate signal stack, so that a fiber stack overflow is reported too */
    static char altstack[1 << 16];
    stack_t     ss;
    ss.ss_sp    = altstack;
    ss.ss_size  = sizeof(altstack);
    ss.ss_flags = 0;
    sigaltstack(&ss, nullptr);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = segv_handler;
    sa.sa_flags     = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
}

void warn(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- errors ---------------------------------------------------------------------------------------------------- */

static cudaError_t g_last = cudaSuccess;

void set_last_error(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
}

/* ---- streams, kernels' attributes ------------------------------------------------------------------------------ */

struct stream_rec {
    bool live;
};
static std::set<const void *>     g_streams;  /* every stream ever created (destroyed ones stay, marked) */
static std::map<const void *, int> g_dyn_smem; /* cudaFuncAttributeMaxDynamicSharedMemorySize per kernel */

bool stream_valid(cudaStream_t s) {
    if (!s) return true;
    return g_streams.count(s) && ((stream_rec *) s)->live;
}

int func_max_dynamic_smem(const void * key) {
    auto it = g_dyn_smem.find(key);
    return it == g_dyn_smem.end() ? 48 * 1024 : it->second;
}

} // namespace emu

using namespace emu;

struct CUevent_st {
    double t_ms;
    bool   recorded;
};

static double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec * 1e-6;
}

/* Returns e after recording it as the last error, with a message for the misuse (rk aborts on most of them). */
static cudaError_t fail(cudaError_t e, const char * fmt, ...) __attribute__((format(printf, 2, 3)));
static cudaError_t fail(cudaError_t e, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " -> %s\n", cudaGetErrorName(e));
    va_end(ap);
    set_last_error(e);
    return e;
}

extern "C" {

cudaError_t cudaGetDeviceCount(int * count) {
    init();
    *count = getenv("EMU_NO_DEVICE") && atoi(getenv("EMU_NO_DEVICE")) ? 0 : 1;
    return *count ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t cudaSetDevice(int device) {
    init();
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice, "cudaSetDevice(%d): one device", device);
}

cudaError_t cudaGetDevice(int * device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp * p, int device) {
    init();
    if (device != 0) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d)", device);
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "emulated sm_%d (tests/emu, host CPU)", cfg().cc);
    p->totalGlobalMem              = g_reserved;
    p->sharedMemPerBlock           = 48 * 1024;
    p->regsPerBlock                = 65536;
    p->warpSize                    = 32;
    p->maxThreadsPerBlock          = 1024;
    p->maxThreadsDim[0]            = 1024;
    p->maxThreadsDim[1]            = 1024;
    p->maxThreadsDim[2]            = 64;
    p->maxGridSize[0]              = 0x7fffffff;
    p->maxGridSize[1]              = 65535;
    p->maxGridSize[2]              = 65535;
    p->major                       = cfg().cc / 10;
    p->minor                       = cfg().cc % 10;
    p->multiProcessorCount         = cfg().n_sm;
    p->l2CacheSize                 = cfg().cc >= 90 ? 50 << 20 : 4 << 20;
    p->maxThreadsPerMultiProcessor = cfg().cc >= 80 ? 2048 : 1024;
    p->sharedMemPerMultiprocessor  = (size_t) cfg().smem_optin + 1024;
    p->sharedMemPerBlockOptin      = (size_t) cfg().smem_optin;
    p->memoryBusWidth              = cfg().cc >= 90 ? 5120 : 256;
    p->clockRate                   = 1000000;
    p->memoryClockRate             = 1000000;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int * value, enum cudaDeviceAttr attr, int device) {
    init();
    if (device != 0) return fail(cudaErrorInvalidDevice, "cudaDeviceGetAttribute(device %d)", device);
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
        case cudaDevAttrWarpSize: *value = 32; break;
        case cudaDevAttrMultiProcessorCount: *value = cfg().n_sm; break;
        case cudaDevAttrComputeCapabilityMajor: *value = cfg().cc / 10; break;
        case cudaDevAttrComputeCapabilityMinor: *value = cfg().cc % 10; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = cfg().smem_optin; break;
        default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute %d not emulated", (int) attr);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
    const cudaError_t e = g_last;
    g_last              = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return g_last; }

const char * cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}

const char * cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unknown error";
}

cudaError_t cudaMalloc(void ** ptr, size_t size) {
    init();
    *ptr = arena_alloc(size);
    if (!*ptr) return fail(cudaErrorMemoryAllocation, "cudaMalloc(%zu): arena of %zu bytes exhausted", size, g_reserved);
    return cudaSuccess;
}

cudaError_t cudaFree(void * ptr) {
    if (!ptr) return cudaSuccess;
    if (!arena_free(ptr)) return fail(cudaErrorInvalidDevicePointer, "cudaFree(%p): not a live allocation", ptr);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t * free_bytes, size_t * total_bytes) {
    init();
    *total_bytes = g_reserved;
    *free_bytes  = g_reserved - g_top * g_page;
    return cudaSuccess;
}

/* Checks one side of a copy: device ranges must lie in one live allocation, host ranges outside the arena. */
static bool side_ok(const void * p, size_t n, bool device, const char * what, const char * api) {
    if (device && !is_device(p, n)) {
        fail(cudaErrorInvalidValue, "%s: %s %p + %zu bytes is not inside one live device allocation", api, what, p, n);
        return false;
    }
    if (!device && in_arena(p)) {
        fail(cudaErrorInvalidValue, "%s: %s %p is device memory where the copy kind says host", api, what, p);
        return false;
    }
    return true;
}

cudaError_t cudaMemcpyAsync(void * dst, const void * src, size_t n, enum cudaMemcpyKind kind, cudaStream_t stream) {
    init();
    if (!stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: stream %p", (void *) stream);
    if (n == 0) return cudaSuccess;
    bool dd, sd;
    switch (kind) {
        case cudaMemcpyHostToHost: dd = false; sd = false; break;
        case cudaMemcpyHostToDevice: dd = true; sd = false; break;
        case cudaMemcpyDeviceToHost: dd = false; sd = true; break;
        case cudaMemcpyDeviceToDevice: dd = true; sd = true; break;
        case cudaMemcpyDefault: dd = in_arena(dst); sd = in_arena(src); break;
        default: return fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpy: kind %d", (int) kind);
    }
    if (!side_ok(dst, n, dd, "destination", "cudaMemcpy") || !side_ok(src, n, sd, "source", "cudaMemcpy")) {
        return cudaErrorInvalidValue;
    }
    device_scope ds;
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void * dst, const void * src, size_t n, enum cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, n, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void * ptr, int value, size_t n, cudaStream_t stream) {
    init();
    if (!stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: stream %p", (void *) stream);
    if (n == 0) return cudaSuccess;
    if (!side_ok(ptr, n, true, "destination", "cudaMemset")) return cudaErrorInvalidValue;
    device_scope ds;
    memset(ptr, value, n);
    return cudaSuccess;
}

cudaError_t cudaMemset(void * ptr, int value, size_t n) { return cudaMemsetAsync(ptr, value, n, nullptr); }

cudaError_t cudaStreamCreate(cudaStream_t * stream) {
    init();
    stream_rec * s = new stream_rec{ true };
    g_streams.insert(s);
    *stream = (cudaStream_t) s;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t * stream, unsigned int flags) {
    (void) flags;
    return cudaStreamCreate(stream);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (!stream || !stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(%p)", (void *) stream);
    ((stream_rec *) stream)->live = false; /* kept, so a later use is reported */
    return cudaSuccess;
}

/* Every operation ran when it was issued: synchronizing only checks the handle. */
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    if (!stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize(%p)", (void *) stream);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t * event) {
    *event = new CUevent_st{ 0.0, false };
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    if (!stream_valid(stream)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: stream %p", (void *) stream);
    event->t_ms     = now_ms();
    event->recorded = true;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    (void) event;
    return cudaSuccess;
}

/* Host time between the two records: emulation speed, never GPU speed. */
cudaError_t cudaEventElapsedTime(float * ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start->recorded || !end->recorded) return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: not recorded");
    *ms = (float) (end->t_ms - start->t_ms);
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void * func, enum cudaFuncAttribute attr, int value) {
    init();
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute %d not emulated", (int) attr);
    }
    if (value < 0 || value > cfg().smem_optin) {
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: %d bytes of dynamic shared memory, sm_%d allows %d",
                    value, cfg().cc, cfg().smem_optin);
    }
    g_dyn_smem[func] = value;
    return cudaSuccess;
}

/* The emulated cuTensorMapEncodeTiled (driver API; rk gets it through cudaGetDriverEntryPointByVersion): checks the
   arguments as the driver documents them and writes an emu::tmap into the map. Tile mode only: interleave NONE,
   element strides 1 (anything else is reported as not emulated). */
static CUresult emu_tensor_map_encode_tiled(CUtensorMap * map, CUtensorMapDataType dtype, cuuint32_t rank, void * addr,
                                            const cuuint64_t * dims, const cuuint64_t * strides,
                                            const cuuint32_t * box, const cuuint32_t * estr,
                                            CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                            CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
    init();
    (void) l2;
    auto bad = [](const char * fmt, auto... a) {
        warn(fmt, a...);
        return (CUresult) CUDA_ERROR_INVALID_VALUE;
    };
    const int esize = dtype == CU_TENSOR_MAP_DATA_TYPE_UINT8 ? 1
                    : dtype == CU_TENSOR_MAP_DATA_TYPE_UINT16 || dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT16 ||
                              dtype == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 ? 2
                    : dtype == CU_TENSOR_MAP_DATA_TYPE_UINT32 || dtype == CU_TENSOR_MAP_DATA_TYPE_INT32 ||
                              dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 ? 4
                    : dtype == CU_TENSOR_MAP_DATA_TYPE_UINT64 || dtype == CU_TENSOR_MAP_DATA_TYPE_INT64 ||
                              dtype == CU_TENSOR_MAP_DATA_TYPE_FLOAT64 ? 8 : 0;
    if (!map || (uintptr_t) map % 64) return bad("cuTensorMapEncodeTiled: map %p not 64-byte aligned", (void *) map);
    if (!esize) return bad("cuTensorMapEncodeTiled: data type %d not emulated", (int) dtype);
    if (rank < 1 || rank > 5) return bad("cuTensorMapEncodeTiled: rank %u (1 .. 5)", rank);
    if (!addr || (uintptr_t) addr % 16 || !is_device(addr, 1)) {
        return bad("cuTensorMapEncodeTiled: global address %p not 16-byte aligned device memory", addr);
    }
    if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return bad("cuTensorMapEncodeTiled: interleave not emulated");
    if ((int) swizzle < 0 || (int) swizzle > 3) return bad("cuTensorMapEncodeTiled: swizzle %d not emulated", (int) swizzle);
    emu::tmap m;
    memset(&m, 0, sizeof(m));
    m.addr    = (uint64_t) (uintptr_t) addr;
    m.rank    = (uint8_t) rank;
    m.esize   = (uint8_t) esize;
    m.swizzle = (uint8_t) swizzle;
    m.oob_nan = oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
    m.magic   = emu::TMAP_MAGIC;
    for (cuuint32_t i = 0; i < rank; i++) {
        if (dims[i] == 0 || dims[i] > (1ull << 32)) return bad("cuTensorMapEncodeTiled: globalDim[%u] = %llu", i, (unsigned long long) dims[i]);
        if (box[i] == 0 || box[i] > 256) return bad("cuTensorMapEncodeTiled: boxDim[%u] = %u (1 .. 256)", i, box[i]);
        if (estr && estr[i] != 1) return bad("cuTensorMapEncodeTiled: elementStrides[%u] = %u: only 1 is emulated", i, estr[i]);
        m.dim_m1[i] = (uint32_t) (dims[i] - 1);
        m.box[i]    = (uint16_t) box[i];
        if (i > 0) {
            if (strides[i - 1] % 16 || strides[i - 1] >= (1ull << 40)) {
                return bad("cuTensorMapEncodeTiled: globalStrides[%u] = %llu (a multiple of 16 below 2^40)", i - 1, (unsigned long long) strides[i - 1]);
            }
            m.stride[i - 1] = strides[i - 1];
        }
    }
    if ((box[0] * (cuuint32_t) esize) % 16) return bad("cuTensorMapEncodeTiled: boxDim[0] * element size = %u bytes (a multiple of 16)", box[0] * (cuuint32_t) esize);
    if (swizzle && box[0] * (cuuint32_t) esize > (16u << swizzle)) {
        return bad("cuTensorMapEncodeTiled: boxDim[0] * element size = %u bytes exceeds the swizzle span %u", box[0] * (cuuint32_t) esize, 16u << swizzle);
    }
    memset(map, 0, sizeof(*map));
    memcpy(map, &m, sizeof(m));
    return CUDA_SUCCESS;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char * symbol, void ** funcPtr, unsigned int cudaVersion,
                                             unsigned long long flags, enum cudaDriverEntryPointQueryResult * status) {
    init();
    (void) cudaVersion;
    (void) flags;
    if (!symbol || !funcPtr) return fail(cudaErrorInvalidValue, "cudaGetDriverEntryPointByVersion: NULL argument");
    const bool known = !strcmp(symbol, "cuTensorMapEncodeTiled");
    *funcPtr         = known ? (void *) &emu_tensor_map_encode_tiled : nullptr;
    if (status) *status = known ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}

} // extern "C"
