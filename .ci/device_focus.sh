#!/usr/bin/env bash
# .ci/device_focus.sh: the short first command for a lent GPU when new kernels wait for their first run (not yet
# run in this form; it stops at its budget and skips what is left; the full check is .ci/device_check.sh). Today:
# the Hopper wgmma attention (kernels/attn.cu variants 6-12, docs/ATTN.md; 11 and 12 warp-specialized with TMA), the fused
# GEMM + GELU (kernels/matmul_gelu.cu variants 2-6) and what they rest on (kernels/wgmma.cuh, kernels/tma.cuh).
#
#   bash .ci/device_focus.sh                 with binaries in build/ (RK_PREBUILT=1 is implied; build first, or
#                                            unpack the bundle: bash .ci/device_unbundle.sh, RK_DEVLIBS=...)
#   RK_FOCUS_BUDGET=360                      seconds for the whole run (default 360; later steps are skipped)
#
# Steps, each under `timeout`: 1. the wgmma, TMA and mbarrier primitives alone (build/tests/test_wgmma: which layout
# or protocol, if any, the hardware reads differently);
# 2. every attention forward parity case, all variants (build/tests/test_ops, cuda_ops/attn_fwd*), and the MATMUL
# cases (the fused GEMM + GELU variants among them); 3. our benches with the default choices (attention with every
# variant, BERT, the GEMMs with every matmul + GELU variant), then the peers (attention SDPA, HF BERT, PyTorch GEMMs
# and ops), then the BERT forward with each candidate variant (residual, wgmma attention, fused GEMM + GELU, GELU and
# LayerNorm passes), and the per-op profile of the BERT forward (RK_PROFILE=1); 4. compute-sanitizer memcheck and
# racecheck on the wgmma attention and fused GEMM cases; 5. when .devembed was carried, rk-embed --device cuda
# against the CPU's F1 (.ci/device_embed_check.sh).
# Logs under $OUT (or /tmp/rk_device_focus); the last lines are the table of .ci/result_table.awk.
set -u
cd "$(dirname "$0")/.."
LOGDIR=${OUT:-/tmp/rk_device_focus}
mkdir -p "$LOGDIR"
L_TEST=$LOGDIR/focus_tests.log L_BENCH=$LOGDIR/focus_bench.log L_PEER=$LOGDIR/focus_peers.log
: >"$L_TEST"; : >"$L_BENCH"; : >"$L_PEER"
DEVLIBS=${RK_DEVLIBS:-.devlibs}
[ -d "$DEVLIBS" ] && export LD_LIBRARY_PATH=$(cd "$DEVLIBS" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RK_ROOT=$PWD PYTHONUNBUFFERED=1
T0=$(date +%s)
FAIL=0
say() { echo "[$(($(date +%s) - T0))s] $*"; }
nvidia-smi -L 2>&1 | head -n 1

BUDGET=${RK_FOCUS_BUDGET:-360} # seconds for the whole script: a step that hangs cannot eat the lease

# run LOG SECONDS CMD...: appends the output to LOG, prints failures and a one-line status; the step's timeout is
# SECONDS or what is left of the budget, and a step with under 10 s left is skipped (and counts as a failure)
run() {
    local log=$1 secs=$2 rc left
    shift 2
    left=$((BUDGET - ($(date +%s) - T0) - 5))
    if ((left < 10)); then
        say "-- skipped (out of time): $*"
        FAIL=1
        return 0
    fi
    ((secs > left)) && secs=$left
    say "== $*"
    echo "===== $*" >>"$log"
    timeout "$secs" "$@" >>"$log" 2>&1
    rc=$?
    [ "$rc" != 0 ] && { say "   exit $rc$([ $rc = 124 ] && echo ' (timeout)')"; FAIL=1; }
    return 0
}

run "$L_TEST" 60 build/tests/test_wgmma --verbose
run "$L_TEST" 120 build/tests/test_ops --verbose --jobs 8 --filter 'cuda_ops/attn_fwd*'
run "$L_TEST" 60 build/tests/test_ops --verbose --filter 'cuda_ops/matmul'
grep -a -E '^\s+FAIL |\[FAIL\]|CRASH|passed, ' "$L_TEST" | head -n 30

# our benches with the default choices, then the peers (so that a short budget still gives every ratio), then the
# variants that may become the defaults
run "$L_BENCH" 60 build/bench/bench_attn
for v in 6 7 8 9 10 11 12; do run "$L_BENCH" 60 build/bench/bench_attn --variant $v; done
run "$L_BENCH" 60 build/bench/bench_bert
# GEMMs; the fused FFN-up GEMM + GELU (kernels/matmul_gelu.cu: wgmma 2-4, mma.sync 5, warp-specialized 6) alone: keys "@v1".."@v6"
run "$L_BENCH" 60 build/bench/bench_matmul
run "$L_PEER" 90 python3 bench/peers/attn_sdpa.py
run "$L_PEER" 120 python3 bench/peers/bert_hf.py
run "$L_PEER" 60 python3 bench/peers/gemm_torch.py
run "$L_PEER" 60 python3 bench/peers/ops_torch.py
# the residual added by the LayerNorm instead of the GEMM epilogue (the default until the residual moved; key @res-v2)
run "$L_BENCH" 60 env RK_BERT_RESIDUAL_VARIANT=2 build/bench/bench_bert --config base
for v in 6 9 10 11 12; do run "$L_BENCH" 60 env RK_ATTN_FWD_VARIANT=$v build/bench/bench_bert --config base; done
for v in 2 3 4 5 6; do run "$L_BENCH" 60 env RK_MATMUL_GELU_VARIANT=$v build/bench/bench_bert --config base; done
# the GELU and LayerNorm variants (the other part of the BERT forward that is not at copy speed), and all together
run "$L_BENCH" 60 build/bench/bench_ops gelu --variant all
run "$L_BENCH" 60 build/bench/bench_ops layernorm --variant all
run "$L_BENCH" 60 env RK_ATTN_FWD_VARIANT=6 RK_GELU_VARIANT=3 RK_LAYERNORM_VARIANT=2 RK_MATMUL_GELU_VARIANT=2 \
    build/bench/bench_bert --config base
# where the BERT forward's time goes (RK_PROFILE=1: events around every op; its own log, so the table keeps the
# unprofiled figures), with the defaults and with the candidates together
run "$LOGDIR/focus_profile.log" 60 env RK_PROFILE=1 build/bench/bench_bert --config base --dtype f16 --reps 5
run "$LOGDIR/focus_profile.log" 60 env RK_PROFILE=1 RK_ATTN_FWD_VARIANT=6 RK_GELU_VARIANT=3 RK_LAYERNORM_VARIANT=2 \
    RK_MATMUL_GELU_VARIANT=2 build/bench/bench_bert --config base --dtype f16 --reps 5
grep -a -E '^rk cuda profile|^  [A-Z_+]+ +[0-9]+ calls' "$LOGDIR/focus_profile.log" | head -n 40

# compute-sanitizer on the new kernels: the wgmma attention cases, and one small case per fused GEMM variant
SAN=$(command -v compute-sanitizer 2>/dev/null || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$SAN" ]; then
    for tool in memcheck racecheck; do
        run "$LOGDIR/focus_sanitizer.log" 90 env RK_TEST_FILTER='variant=wgmma' "$SAN" --tool "$tool" \
            --error-exitcode 86 --target-processes all build/tests/test_ops --filter 'cuda_ops/attn_fwd'
        grep -a -E '(ERROR|RACECHECK) SUMMARY' "$LOGDIR/focus_sanitizer.log" | tail -n 2
        run "$LOGDIR/focus_sanitizer.log" 60 env RK_TEST_FILTER='M=200,N=512,K=128,bias=1,gelu=1,x_pad=16,dst_pad=48)[variant=mm-v' \
            "$SAN" --tool "$tool" --error-exitcode 86 --target-processes all build/tests/test_ops --filter 'cuda_ops/matmul'
        grep -a -E '(ERROR|RACECHECK) SUMMARY' "$LOGDIR/focus_sanitizer.log" | tail -n 2
    done
fi
grep -a -E 'FAILED|unsupported' "$L_BENCH" | head -n 10
# rk-embed on the GPU against the CPU's F1 (issue 3), when .devembed was carried (.ci/device_embed_prep.sh)
if [ -d .devembed ]; then
    run "$L_TEST" 180 env RK_EMBED_CHECK_TIMEOUT=150 bash .ci/device_embed_check.sh
    grep -a -E 'EMBED_CHECK|docs/s' "$L_TEST" | tail -n 3
fi

echo "================ device focus: $(nvidia-smi -L 2>/dev/null | head -n 1 | cut -c1-50), $(cat build/COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo "${RK_COMMIT:-?}"), $(($(date +%s) - T0))s"
awk -f .ci/result_table.awk "$L_BENCH" "$L_PEER" | tee "$LOGDIR/focus_summary.txt"
echo "================ $([ $FAIL = 0 ] && echo PASS || echo FAIL)"
exit $FAIL
