/* cuda_runtime.h (host emulation, tests/emu): the runtime API; in kernel translation units (C++, __CUDACC__) the
 * emulated device side comes with it, as with nvcc. */
#ifndef RK_EMU_CUDA_RUNTIME_H
#define RK_EMU_CUDA_RUNTIME_H
#include "cuda_runtime_api.h"
#if defined(__cplusplus) && defined(__CUDACC__)
#include "emu_device.h"
#endif
#endif
