/*
 * cuda_runtime_api.h (host emulation, tests/emu): the subset of the CUDA runtime API that rk calls, declared for C and
 * C++, implemented on host memory by tests/emu/emu_runtime.cpp. See tests/emu/README.md for what is emulated.
 * Names, types and success/error codes follow the CUDA runtime API documentation; numeric values of the error codes
 * are the documented ones where rk could print them.
 */
#ifndef RK_EMU_CUDA_RUNTIME_API_H
#define RK_EMU_CUDA_RUNTIME_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_EMU_CUDA 1 /* this is the emulated runtime (code may print it; nothing in rk branches on it) */

typedef enum cudaError {
    cudaSuccess                = 0,
    cudaErrorInvalidValue      = 1,
    cudaErrorMemoryAllocation  = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice          = 100,
    cudaErrorInvalidDevice     = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure     = 719,
} cudaError_t;

typedef struct CUstream_st * cudaStream_t;
typedef struct CUevent_st *  cudaEvent_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost     = 0,
    cudaMemcpyHostToDevice   = 1,
    cudaMemcpyDeviceToHost   = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault        = 4,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock          = 1,
    cudaDevAttrMaxSharedMemoryPerBlock     = 8,
    cudaDevAttrWarpSize                    = 10,
    cudaDevAttrMultiProcessorCount         = 16,
    cudaDevAttrComputeCapabilityMajor      = 75,
    cudaDevAttrComputeCapabilityMinor      = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

struct cudaDeviceProp {
    char   name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int    regsPerBlock;
    int    warpSize;
    int    maxThreadsPerBlock;
    int    maxThreadsDim[3];
    int    maxGridSize[3];
    int    major;
    int    minor;
    int    multiProcessorCount;
    int    l2CacheSize;
    int    maxThreadsPerMultiProcessor;
    size_t sharedMemPerMultiprocessor;
    size_t sharedMemPerBlockOptin;
    int    memoryBusWidth;
    int    clockRate;
    int    memoryClockRate;
};

cudaError_t  cudaGetDeviceCount(int * count);
cudaError_t  cudaSetDevice(int device);
cudaError_t  cudaGetDevice(int * device);
cudaError_t  cudaGetDeviceProperties(struct cudaDeviceProp * prop, int device);
cudaError_t  cudaDeviceGetAttribute(int * value, enum cudaDeviceAttr attr, int device);
cudaError_t  cudaDeviceSynchronize(void);
cudaError_t  cudaDeviceReset(void);

cudaError_t  cudaGetLastError(void);
cudaError_t  cudaPeekAtLastError(void);
const char * cudaGetErrorString(cudaError_t error);
const char * cudaGetErrorName(cudaError_t error);

cudaError_t  cudaMalloc(void ** ptr, size_t size);
cudaError_t  cudaFree(void * ptr);
cudaError_t  cudaMemcpy(void * dst, const void * src, size_t count, enum cudaMemcpyKind kind);
cudaError_t  cudaMemcpyAsync(void * dst, const void * src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t  cudaMemset(void * ptr, int value, size_t count);
cudaError_t  cudaMemsetAsync(void * ptr, int value, size_t count, cudaStream_t stream);
cudaError_t  cudaMemGetInfo(size_t * free_bytes, size_t * total_bytes);

cudaError_t  cudaStreamCreate(cudaStream_t * stream);
cudaError_t  cudaStreamCreateWithFlags(cudaStream_t * stream, unsigned int flags);
cudaError_t  cudaStreamDestroy(cudaStream_t stream);
cudaError_t  cudaStreamSynchronize(cudaStream_t stream);

cudaError_t  cudaEventCreate(cudaEvent_t * event);
cudaError_t  cudaEventDestroy(cudaEvent_t event);
cudaError_t  cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t  cudaEventSynchronize(cudaEvent_t event);
cudaError_t  cudaEventElapsedTime(float * ms, cudaEvent_t start, cudaEvent_t end);

/* C form; C++ also gets a template taking the kernel itself (emu_device.h) */
cudaError_t  cudaFuncSetAttribute(const void * func, enum cudaFuncAttribute attr, int value);

/* Driver entry points: the emulation knows one symbol, "cuTensorMapEncodeTiled" (inc/cuda.h; its own encoder for the
   emulated TMA, emu_runtime.cpp). Any other symbol: *funcPtr = NULL, status cudaDriverEntryPointSymbolNotFound. */
enum cudaGetDriverEntryPointFlags { cudaEnableDefault = 0x0 };
enum cudaDriverEntryPointQueryResult {
    cudaDriverEntryPointSuccess             = 0,
    cudaDriverEntryPointSymbolNotFound      = 1,
    cudaDriverEntryPointVersionNotSufficent = 2
};
cudaError_t cudaGetDriverEntryPointByVersion(const char * symbol, void ** funcPtr, unsigned int cudaVersion,
                                             unsigned long long flags, enum cudaDriverEntryPointQueryResult * status);

#ifdef __cplusplus
}
#endif
#endif
