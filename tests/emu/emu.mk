# tests/emu/emu.mk, included by the top-level Makefile: the CUDA backend built against the host emulation of
# tests/emu (README.md there) in its own folder, and the CUDA parity suites run on it. Nothing here touches
# $(BUILD_DIR): `make` and `make test` are unchanged.
#
#   make emu-test                 build-emu/: sm_90 emulated; runs tests/emu/run_suites.sh
#   make emu-test EMU_ARCH=75     build-emu-sm75/: the kernels compiled for sm_75 (__CUDA_ARCH__ 750)
#   make emu-clean                removes build-emu*/ (flags are not tracked: clean after changing EMU_SAN)
#   make emu-build                only build (then run one suite by hand, e.g. build-emu/tests/test_ops_bwd, or a
#                                 driver with --device cuda, e.g. build-emu/rk-finetune)

EMU_ARCH     ?= 90
EMU_DIR      ?= build-emu$(if $(filter-out 90,$(EMU_ARCH)),-sm$(EMU_ARCH))
EMU_CXX      ?= g++
EMU_INC      := -Itests/emu/inc
EMU_CFLAGS   := $(EMU_INC) $(HOST_CFLAGS) -DRK_HAVE_CUDA
# kernels and runtime: no FMA contraction (the CPU references are not contracted either; nvcc's --fmad is not
# reproduced), no strict aliasing (kernels reinterpret bytes as vectors, as CUDA allows)
EMU_CXXFLAGS := -std=c++17 -O2 -g -fno-strict-aliasing -ffp-contract=off -Wall -Wextra -Wno-unknown-pragmas \
                -Wno-unused-parameter -Wno-unused-function -DRK_EMU_CC=$(EMU_ARCH) -I. -Ihost $(EMU_INC) $(PKG_CFLAGS)
# the kernels also run under UBSan: a misaligned vector access (a fault on the GPU, silent on x86), an index outside a
# fixed-size array (shared or local), signed overflow, bad shifts abort with the source line
EMU_SAN      ?= -fsanitize=alignment,bounds,shift,signed-integer-overflow,integer-divide-by-zero,null,return,vla-bound \
                -fno-sanitize-recover=all
# sm_90 is emulated as sm_90a: nvcc defines __CUDA_ARCH_FEAT_SM90_ALL there (wgmma, kernels/wgmma.cuh)
EMU_ARCH_FEAT := $(if $(filter 90,$(EMU_ARCH)),-D__CUDA_ARCH_FEAT_SM90_ALL)
EMU_CPPFLAGS := -std=c++17 -D__CUDACC__ -D__CUDA_ARCH__=$(EMU_ARCH)0 $(EMU_ARCH_FEAT) -DRK_HAVE_CUDA \
                -include tests/emu/inc/emu_device.h -I. -Ihost $(EMU_INC) $(PKG_CFLAGS)

EMU_CU_SRC   := $(wildcard kernels/*.cu quant/*.cu lora/*.cu)
EMU_CU_OBJ   := $(patsubst %.cu,$(EMU_DIR)/%.cu.o,$(EMU_CU_SRC))
EMU_RT_OBJ   := $(patsubst %.cpp,$(EMU_DIR)/%.o,$(wildcard tests/emu/emu_*.cpp))
EMU_C_OBJ    := $(patsubst %.c,$(EMU_DIR)/%.o,$(LIB_SRC))
EMU_LIB      := $(EMU_DIR)/librk.a
EMU_TESTS    := $(patsubst %,$(EMU_DIR)/tests/%,test_ops_bwd test_ops_train test_ops test_train test_attn_bwd \
                                                   test_quant test_lora test_train_model test_wgmma test_models \
                                                   test_cli)

EMU_DRIVERS  := $(patsubst host/drivers/%.c,$(EMU_DIR)/rk-%,$(DRV_SRC))
# the emulator's own tests: CUDA sources under tests/emu, kernels and host code in one .cu
EMU_SELF     := $(EMU_DIR)/tests/emu/test_wgmma
EMU_BENCHES  := $(EMU_DIR)/bench/bench_bert $(EMU_DIR)/bench/bench_attn

emu-build: $(EMU_LIB) $(EMU_TESTS) $(EMU_DRIVERS) $(EMU_SELF) $(EMU_BENCHES)

emu-test: emu-build
	RK_ROOT=$(CURDIR) bash tests/emu/run_suites.sh $(EMU_DIR)

emu-clean:
	rm -rf build-emu build-emu-sm*

$(EMU_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -MMD -MP -c $< -o $@

# .cu -> preprocessed (emu_device.h forced in) -> cu2cpp.py -> host C++
$(EMU_DIR)/%.cu.ii: %.cu
	@mkdir -p $(dir $@)
	$(EMU_CXX) -E -x c++ $(EMU_CPPFLAGS) -MMD -MP -MT $@ -MF $@.d $< -o $@

$(EMU_DIR)/%.cu.cpp: $(EMU_DIR)/%.cu.ii tests/emu/cu2cpp.py
	python3 tests/emu/cu2cpp.py $< $@ $(CURDIR)

$(EMU_DIR)/%.cu.o: $(EMU_DIR)/%.cu.cpp
	$(EMU_CXX) $(EMU_CXXFLAGS) $(EMU_SAN) -x c++ -c $< -o $@

$(EMU_DIR)/tests/emu/%.o: tests/emu/%.cpp
	@mkdir -p $(dir $@)
	$(EMU_CXX) $(EMU_CXXFLAGS) -MMD -MP -c $< -o $@

$(EMU_LIB): $(EMU_C_OBJ) $(EMU_CU_OBJ) $(EMU_RT_OBJ)
	rm -f $@ && ar rcs $@ $^

# the drivers, for end-to-end runs with --device cuda (e.g. build-emu/rk-finetune)
$(EMU_DIR)/rk-%: host/drivers/%.c $(EMU_LIB)
	$(CC) $(EMU_CFLAGS) $< $(EMU_LIB) $(HOST_LDLIBS) $(EMU_SAN) -lstdc++ -o $@

# bench programs, for their correctness checks on the emulated device (e.g. bench_bert's model check)
$(EMU_DIR)/bench/%: bench/%.c bench/bench_common.h $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -Ibench $< $(EMU_LIB) $(HOST_LDLIBS) $(EMU_SAN) -lstdc++ -o $@

$(EMU_DIR)/tests/emu/test_%: $(EMU_DIR)/tests/emu/test_%.cu.o $(EMU_LIB)
	$(EMU_CXX) $^ $(HOST_LDLIBS) $(EMU_SAN) -o $@

$(EMU_DIR)/tests/%: tests/%.c $(wildcard tests/*.h) $(EMU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EMU_CFLAGS) -Itests $< $(EMU_LIB) $(HOST_LDLIBS) $(EMU_SAN) -lcriterion -lstdc++ -o $@

.PRECIOUS: $(EMU_DIR)/%.cu.ii $(EMU_DIR)/%.cu.cpp

-include $(EMU_C_OBJ:.o=.d) $(EMU_RT_OBJ:.o=.d) $(patsubst %.cu.o,%.cu.ii.d,$(EMU_CU_OBJ)) $(EMU_SELF:=.cu.ii.d)
