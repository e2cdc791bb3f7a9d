#!/usr/bin/env bash
# run_suites.sh EMU_DIR: the CUDA parity suites and the CUDA golden training test on the emulated device
# (tests/emu/README.md). Every suite runs even when one fails; the exit status reports any failure.
# About 4 minutes on 2 cores for the sm_90 build. RK_ROOT must point at the repository (the Makefile sets it).
set -u
dir=${1:?usage: run_suites.sh EMU_DIR}
jobs=${EMU_JOBS:-2}
fail=0
run() { # name, then the command
    local name=$1
    shift
    echo "== $name"
    local t0=$SECONDS
    if "$@"; then
        echo "== $name: passed ($((SECONDS - t0)) s)"
    else
        echo "== $name: FAILED ($((SECONDS - t0)) s)"
        fail=1
    fi
}
# the emulator's own check of wgmma (and of kernels/wgmma.cuh) against a host matrix product
run test_wgmma "$dir/tests/emu/test_wgmma"
# the device self-test of the same primitives as the attention kernel uses them (kernels/wgmma_check.cu), the one a
# real H100/H200 runs first: every combo in its own process, plus the deliberate defects it must catch
run "tests/test_wgmma (device self-test)" "$dir/tests/test_wgmma" --jobs "$jobs"
run test_ops_bwd "$dir/tests/test_ops_bwd" --jobs "$jobs"
run test_ops_train "$dir/tests/test_ops_train" --jobs "$jobs"
run test_ops "$dir/tests/test_ops" --jobs "$jobs"
# the cublasGemmEx fallback of the forward matmul (the emulated cuBLASLt heuristic offers no algorithm)
run "test_ops matmul, no cuBLASLt algorithm" env EMU_LT_HEURISTIC=0 "$dir/tests/test_ops" --jobs "$jobs" \
    --filter 'cuda_ops/matmul'
# the fused wgmma GEMM + GELU (kernels/matmul_gelu.cu) with cp.async data landing at issue: a stage reloaded while a
# wgmma may still read it gives wrong products or an async-proxy error here (checked: one stage too many ahead fails);
# 3 multiprocessors, so that the persistent variant walks several tiles per block and prefetches across them
run "test_ops matmul, fused GEMM + GELU, early cp.async" env EMU_CP_ASYNC=early EMU_SM_COUNT=3 RK_TEST_FILTER='variant=mm-' \
    "$dir/tests/test_ops" --jobs "$jobs" --filter 'cuda_ops/matmul'
run test_attn_bwd "$dir/tests/test_attn_bwd" --jobs "$jobs"
# NF4 dequant/GEMV (mma, ld.shared) and the LoRA adapter kernels (mma), with their CPU suites
run test_quant "$dir/tests/test_quant" --jobs "$jobs"
run test_lora "$dir/tests/test_lora" --jobs "$jobs"
# the whole BERT classifier on the CUDA backend: every parameter's gradient against the CPU's, then three training
# steps (every forward, backward and optimizer kernel) against PyTorch
run "test_train_model (CUDA gradients)" "$dir/tests/test_train_model" --jobs "$jobs" --filter 'bert_cls/cuda_*'
run "test_train (CUDA)" "$dir/tests/test_train" --jobs "$jobs" --filter 'train/three_adamw_steps_cuda*'
# the model-level checks with the automatic kernel choices: the tiny golden BERT against PyTorch and all-MiniLM-L6-v2
# against sentence-transformers, hidden states on the CUDA backend (the model as `make models` fetches it, like the
# CPU suites). One exception: the FFN-up GEMM + GELU goes through (emulated) cuBLASLt + the GELU pass, not the fused
# wgmma kernel, whose emulation thread by thread of every MiniLM FFN-up product outlasts the test's 120 s (the fused
# kernel runs on a whole model in the bench_bert checks below, and in the matmul parity cases).
run "test_models (CUDA, default kernels; GEMM + GELU two-pass)" env RK_MATMUL_GELU_VARIANT=1 "$dir/tests/test_models" \
    --jobs "$jobs" --filter 'bert/*cuda*'
# the rk-embed driver end to end with --device cuda (the emulated build's binary) against --device cpu
run "test_cli (rk-embed --device cuda)" env RK_TEST_BIN_DIR="$dir" "$dir/tests/test_cli" --jobs "$jobs" --filter 'cli/cuda*'
# the BERT forward (2-layer BERT-base shape, padded batch) on the CUDA backend against the CPU's, as bench_bert
# checks it before timing, with the defaults and with each other kernel variant forced: the wgmma attention variants
# (HS = 64), the GELU and LayerNorm variants, the fused FFN-up GEMM + GELU variants
if [ -x "$dir/bench/bench_bert" ]; then
    dt=bf16
    case "$dir" in *-sm75*) dt=f16 ;; esac # sm_75 has no bf16 tensor cores: its activations are f16
    # (RK_EMU_DEFAULTS=1: nothing forced, the choices bench_bert times by default; RK_BERT_RESIDUAL_VARIANT=2: the
    # residual in the LayerNorm)
    for env in RK_EMU_DEFAULTS=1 RK_BERT_RESIDUAL_VARIANT=2 RK_ATTN_FWD_VARIANT=6 RK_ATTN_FWD_VARIANT=8 RK_ATTN_FWD_VARIANT=10 RK_ATTN_FWD_VARIANT=11 RK_ATTN_FWD_VARIANT=12 \
        "RK_ATTN_FWD_VARIANT=9 RK_GELU_VARIANT=3 RK_LAYERNORM_VARIANT=2" "RK_ATTN_FWD_VARIANT=7 RK_GELU_VARIANT=4 RK_LAYERNORM_VARIANT=4" \
        RK_MATMUL_GELU_VARIANT=2 RK_MATMUL_GELU_VARIANT=3 RK_MATMUL_GELU_VARIANT=4 RK_MATMUL_GELU_VARIANT=5 \
        RK_MATMUL_GELU_VARIANT=6 "EMU_SM_COUNT=4 RK_MATMUL_GELU_VARIANT=6"; do
        run "bench_bert model check ($env)" env $env "$dir/bench/bench_bert" --config base --dtype "$dt" --B 1 --T 16 \
            --reps 0
    done
fi
# bench_attn's own check (awkward shapes, every option) of the wgmma variants, which the device check times
if [ -x "$dir/bench/bench_attn" ]; then
    for v in 6 7 8 9 10 11 12; do run "bench_attn --check --variant $v" "$dir/bench/bench_attn" --check --variant $v; done
fi
if [ $fail -ne 0 ]; then
    echo "emu: some suites FAILED"
    exit 1
fi
echo "emu: all suites passed"
