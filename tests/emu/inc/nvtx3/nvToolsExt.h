/* nvToolsExt.h (host emulation, tests/emu): NVTX ranges are profiler annotations; here they do nothing. */
#ifndef RK_EMU_NVTOOLSEXT_H
#define RK_EMU_NVTOOLSEXT_H
static inline int nvtxRangePushA(const char * message) { (void) message; return 0; }
static inline int nvtxRangePop(void) { return 0; }
#endif
