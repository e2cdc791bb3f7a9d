/* cublas_v2.h (host emulation, tests/emu): the v2 API is the one cublas_api.h declares. */
#include "cublas_api.h"
