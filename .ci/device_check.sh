#!/usr/bin/env bash
# .ci/device_check.sh: the one command for a lent GPU (`make device-check` runs it).
#
#   bash .ci/device_check.sh                 build for the card (CUDA_ARCH=90), then check and measure
#   RK_PREBUILT=1 bash .ci/device_check.sh   use the binaries already in build/ (built elsewhere and carried)
#
# Steps, each under `timeout` and inside one overall budget (RK_CHECK_BUDGET seconds, default 340, so the whole run
# stays under 6 minutes):
#   1. nvidia-smi -L;  2. build (unless RK_PREBUILT=1; a failed build falls back to existing binaries);
#   3. the CUDA test suites: build/tests/test_ops, then test_ops_bwd, test_ops_train, test_attn_bwd, test_quant,
#      test_lora, test_train and test_models (those present);
#   4. compute-sanitizer memcheck and racecheck over a few small cases of each hand-written kernel family
#      (attention forward and backward, layernorm forward and backward, embedding backward, LoRA; SAN_TARGETS);
#      a sanitizer that cannot start on the machine is reported and skipped;
#   5. every bench program build/bench/bench_*, then the peer scripts bench/peers/*.py (and ../shared/peers/*.py if
#      that folder exists: it does not travel to the device machine); then a few variants beside the defaults (keys
#      "<key>@v12", "<key>@attn-v11", "<key>@mmgelu-v1", joined with the peer line of "<key>"); between the benches and the peers, when .devembed exists
#      (carried; made by .ci/device_embed_prep.sh), rk-embed on the GPU against the CPU reference F1
#      (.ci/device_embed_check.sh: issue 3's check, ~10-20 s; embed_check.log and embed_cuda.json in the logs).
# Full logs go to $OUT (or /tmp/rk_device_check): build.log tests.log sanitizer.log bench.log peers.log summary.txt
# (and embed_check.log, embed_cuda.json: 8 files, what a lent machine sends back at most).
# At the end one compact table: suites (tests and cases passed / failed / skipped) and every `RESULT <key> <value>
# <unit>` line of our benches beside the peer's line with the same key, with the ratio (>1: ours is better).
# Exit status: non-zero when a test failed or crashed, the sanitizer found errors, the rk-embed check did not pass
# (when it ran), or nothing could be built.
# If a folder .devlibs exists (shared libraries carried for a machine without the -dev packages), it is put on
# LD_LIBRARY_PATH.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
BUDGET=${RK_CHECK_BUDGET:-340}
LOGDIR=${OUT:-/tmp/rk_device_check}
mkdir -p "$LOGDIR"
L_BUILD=$LOGDIR/build.log L_TEST=$LOGDIR/tests.log L_SAN=$LOGDIR/sanitizer.log
L_BENCH=$LOGDIR/bench.log L_PEER=$LOGDIR/peers.log L_SUM=$LOGDIR/summary.txt
: >"$L_BUILD"; : >"$L_TEST"; : >"$L_SAN"; : >"$L_BENCH"; : >"$L_PEER"; : >"$L_SUM"
DEVLIBS=${RK_DEVLIBS:-.devlibs}
[ -d "$DEVLIBS" ] && export LD_LIBRARY_PATH=$(cd "$DEVLIBS" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RK_ROOT=$ROOT PYTHONUNBUFFERED=1
# the commit of the binaries: build/COMMIT when they came in the bundle (.ci/device_bundle.sh), else the checkout's
if [ "${RK_PREBUILT:-0}" = 1 ] && [ -f build/COMMIT ]; then
    export RK_COMMIT=${RK_COMMIT:-$(cat build/COMMIT)}
else
    export RK_COMMIT=${RK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
fi
FAIL=0
NOTES=()

elapsed() { echo $(($(date +%s) - T0)); }
# tmo WANT: WANT seconds, or less when the budget is running out (always at least 5)
tmo() {
    local want=$1 left=$((BUDGET - $(elapsed) - 5))
    ((left < want)) && want=$left
    ((want < 5)) && want=5
    echo "$want"
}
out_of_time() { (($(elapsed) > BUDGET - 15)); }
say() { echo "[$(elapsed)s] $*"; }

say "== device"
nvidia-smi -L 2>&1 || NOTES+=("nvidia-smi failed")
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
echo "commit $RK_COMMIT"

# ---- 2. build ---------------------------------------------------------------------------------------------------
TEST_BINS=$(ls tests/test_*.c 2>/dev/null | sed 's|^tests/\(.*\)\.c$|build/tests/\1|')
if [ "${RK_PREBUILT:-0}" = 1 ]; then
    say "== build: RK_PREBUILT=1, using build/ as it is"
    echo "RK_PREBUILT=1: no build" >"$L_BUILD"
else
    say "== build: make -j16 CUDA_ARCH=90 all <tests> bench"
    # shellcheck disable=SC2086
    if ! timeout "$(tmo 200)" make -j16 CUDA_ARCH=90 all $TEST_BINS bench >"$L_BUILD" 2>&1; then
        tail -n 15 "$L_BUILD"
        if [ -x build/tests/test_ops ]; then
            NOTES+=("build FAILED (see build.log); ran the binaries already in build/")
            say "build failed: falling back to the existing binaries in build/"
        else
            NOTES+=("build FAILED and no binaries to fall back to")
            say "build failed and build/tests/test_ops is missing: stopping"
            FAIL=1
        fi
    fi
fi

# ---- 3. test suites ---------------------------------------------------------------------------------------------
SUITE_ROWS=()
run_suite() { # name binary [criterion args...]
    local name=$1 bin=$2 tmp rc syn
    shift 2
    if [ ! -x "$bin" ]; then
        SUITE_ROWS+=("$(printf '%-12s %s' "$name" "not built")")
        return
    fi
    if out_of_time; then
        SUITE_ROWS+=("$(printf '%-12s %s' "$name" "not run: out of time")")
        FAIL=1
        return
    fi
    say "== tests: $bin"
    tmp=$(mktemp)
    timeout "$(tmo 150)" "$bin" --verbose --jobs 8 "$@" >"$tmp" 2>&1
    rc=$?
    { echo "===== $bin (exit $rc)"; cat "$tmp"; } >>"$L_TEST"
    syn=$(grep -a 'Synthesis:' "$tmp" | tail -n 1 | sed 's/.*Synthesis: //')
    local skipped cok cfail cskip
    skipped=$(grep -ac '\[SKIP\]' "$tmp")
    cok=$(grep -ac '^  ok ' "$tmp")
    cfail=$(grep -ac '^  FAIL ' "$tmp")
    cskip=$(grep -ac '^  skip ' "$tmp")
    [ -z "$syn" ] && syn="no synthesis (exit $rc$([ $rc = 124 ] && echo ': TIMEOUT'))"
    SUITE_ROWS+=("$(printf '%-12s %s | skipped tests: %s | cases ok %s, FAIL %s, skip %s' "$name" "$syn" "$skipped" "$cok" "$cfail" "$cskip")")
    grep -a -E '^\s+FAIL |\[FAIL\]|CRASH' "$tmp" | head -n 20
    [ "$rc" != 0 ] && FAIL=1
    rm -f "$tmp"
}
# the wgmma primitives first: when the wgmma attention fails, this says which layout is wrong
[ -e build/tests/test_wgmma ] && run_suite test_wgmma build/tests/test_wgmma
run_suite test_ops build/tests/test_ops
# the other suites with CUDA cases: backward ops, training ops and the optimizer, attention backward, NF4, LoRA,
# the golden training steps on the GPU
for s in test_ops_bwd test_ops_train test_attn_bwd test_quant test_lora test_train; do
    [ -e build/tests/$s ] && run_suite $s build/tests/$s
done
# the real-model tests need models/ (fetched by `make models`, too large to carry to a lent machine): without it
# only the tiny golden model runs, and the table says so
if [ -e build/tests/test_models ]; then
    if [ -f models/all-MiniLM-L6-v2/model.safetensors ]; then
        run_suite test_models build/tests/test_models
    elif [ -f .devembed/model/model.safetensors ] && [ ! -e models/all-MiniLM-L6-v2 ]; then
        # the MiniLM that travels for the rk-embed check (.ci/device_embed_prep.sh), a bf16 copy: what the CUDA
        # backend computes with anyway, not what the CPU tests compare at 0.9999. So the CUDA model tests only: the
        # tiny golden model and all-MiniLM-L6-v2 on the GPU against PyTorch / sentence-transformers (issue 3's
        # model-level check)
        mkdir -p models && ln -s ../.devembed/model models/all-MiniLM-L6-v2
        NOTES+=("test_models: models/ absent, ran bert/*cuda* with the bf16 MiniLM of .devembed")
        run_suite test_models build/tests/test_models --filter 'bert/*cuda*'
    else
        NOTES+=("test_models: models/ absent, ran bert/tiny* only")
        run_suite test_models build/tests/test_models --filter 'bert/tiny*'
    fi
fi

# ---- 4. compute-sanitizer ---------------------------------------------------------------------------------------
SAN_ROWS=()
# name | suite binary | Criterion filter | RK_TEST_FILTER (a few small cases of each hand-written kernel family)
SAN_TARGETS=(
    "attn_fwd|build/tests/test_ops|cuda_ops/attn_fwd*|ATTN_FWD(dtype=bf16,B=2,T=77,Tk=77,NH=12,NKV=12,HS=64,causal=1|ATTN_FWD(dtype=f16,B=3,T=128,Tk=128,NH=12,NKV=12,HS=64,causal=0,window=0,q_offset=0,mask=right_padded,fused_qkv=1|ATTN_FWD(dtype=bf16,B=3,T=1,"
    "layernorm|build/tests/test_ops|cuda_ops/layernorm*|LAYERNORM(dtype=bf16,N=77,C=768,residual=1|LAYERNORM(dtype=bf16,N=5,C=4103|LAYERNORM(dtype=bf16,N=33,C=768"
    "attn_bwd|build/tests/test_attn_bwd|cuda_ops/attn_bwd|ATTN_BWD(dtype=bf16,B=2,T=77,|ATTN_BWD(dtype=bf16,B=1,T=1,|ATTN_BWD(dtype=bf16,B=3,T=130,Tk=130,NH=4,NKV=4,HS=64"
    "ln_bwd|build/tests/test_ops_bwd|cuda_ops_bwd/layernorm_bwd|LAYERNORM_BWD(dtype=bf16,N=77,C=768|LAYERNORM_BWD(dtype=bf16,N=5,C=4103"
    "embed_bwd|build/tests/test_ops_train|cuda_train_ops/embed_bwd|B=2,T=77,C=768|B=1,T=1,C=5"
    "lora|build/tests/test_lora|lora_cuda/parity|LORA_FWD(dtype=bf16,M=64|LORA_BWD(dtype=bf16,M=64"
    "mm_gelu|build/tests/test_ops|cuda_ops/matmul|M=200,N=512,K=128,bias=1,gelu=1,x_pad=16,dst_pad=48)[variant=mm-|M=300,N=384,K=448,bias=1,gelu=1,x_pad=0,dst_pad=0)[variant=mm-"
)
SAN=$(command -v compute-sanitizer 2>/dev/null)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -z "$SAN" ] && [ -x "$c" ] && SAN=$c
done
if [ -z "$SAN" ]; then
    SAN_ROWS+=("compute-sanitizer: not installed on this machine (skipped)")
else
    for tool in memcheck racecheck; do
        for entry in "${SAN_TARGETS[@]}"; do
            IFS='|' read -r t bin crit filt <<<"$entry"
            if [ ! -x "$bin" ]; then
                SAN_ROWS+=("$(printf '%-9s %-10s not built' "$tool" "$t")")
                continue
            fi
            if out_of_time; then
                SAN_ROWS+=("$(printf '%-9s %-10s not run: out of time' "$tool" "$t")")
                continue
            fi
            say "== compute-sanitizer --tool $tool: $crit"
            tmp=$(mktemp)
            RK_TEST_FILTER=$filt timeout "$(tmo 30)" "$SAN" --tool "$tool" --error-exitcode 86 \
                --target-processes all "$bin" --filter "$crit" >"$tmp" 2>&1
            rc=$?
            { echo "===== $tool $crit (exit $rc)"; cat "$tmp"; } >>"$L_SAN"
            # memcheck ends with "ERROR SUMMARY: N errors", racecheck with "RACECHECK SUMMARY: H hazards displayed
            # (E errors, W warnings)"; only processes that used CUDA print one (Criterion's parent does not)
            nsum=$(grep -acE '(ERROR|RACECHECK) SUMMARY' "$tmp")
            nerr=$(grep -aE '(ERROR|RACECHECK) SUMMARY' "$tmp" | sed -E 's/.*ERROR SUMMARY: ([0-9]+).*/\1/; s/.*\(([0-9]+) errors.*/\1/' | awk '{s += $1} END {print s + 0}')
            ncase=$(grep -ac '^  ok ' "$tmp")
            if [ "$rc" = 86 ] || [ "${nerr:-0}" -gt 0 ]; then
                SAN_ROWS+=("$(printf '%-9s %-10s ERRORS: %s (see sanitizer.log)' "$tool" "$t" "$nerr")")
                grep -a -m 8 -E '^=+ (Invalid|Race|ERROR|Error)' "$tmp"
                FAIL=1
            elif [ "$nsum" = 0 ]; then
                SAN_ROWS+=("$(printf '%-9s %-10s could not run here (exit %s): %s' "$tool" "$t" "$rc" \
                    "$(grep -a -m 1 -iE 'error|not supported|fail' "$tmp" | cut -c1-100)")")
            elif [ "$ncase" = 0 ]; then
                # no case ran under the tool: nothing was checked
                SAN_ROWS+=("$(printf '%-9s %-10s INCONCLUSIVE: %s process(es) tracked, %s cases ok (exit %s)' "$tool" "$t" "$nsum" "$ncase" "$rc")")
            else
                SAN_ROWS+=("$(printf '%-9s %-10s clean: 0 errors in %s process(es), %s cases ok (exit %s)' "$tool" "$t" "$nsum" "$ncase" "$rc")")
            fi
            rm -f "$tmp"
        done
    done
fi

# ---- 5. benches and peers -----------------------------------------------------------------------------------------
# GPU benches first, CPU ones (*_cpu*) last: when the budget runs out, the CPU ones are the ones left out
# (CPU benchmarks are measured on the CPU machine: bench/run_cpu.sh; they are not run here)
BENCHES="$(ls build/bench/bench_* 2>/dev/null | grep -v _cpu)"
for b in $BENCHES; do
    [ -x "$b" ] || continue
    if out_of_time; then
        NOTES+=("$(basename "$b"): not run (out of time)")
        continue
    fi
    say "== bench: $b"
    echo "===== $b" >>"$L_BENCH"
    timeout "$(tmo 50)" "$b" >>"$L_BENCH" 2>&1
    rc=$?
    [ "$rc" != 0 ] && NOTES+=("$(basename "$b") exited $rc$([ $rc = 124 ] && echo ' (timeout)')")
done
# rk-embed on the GPU against the CPU run's F1 on the same split (issue 3), when .devembed was carried: before the
# peers, which take longer and are comparisons rather than checks
EMBED_ROW="not run: no .devembed (bash .ci/device_embed_prep.sh on the CPU machine, then carry .devembed)"
if [ -e .devembed ]; then
    if out_of_time; then
        EMBED_ROW="not run: out of time"
    else
        say "== rk-embed --device cuda against the CPU reference (.ci/device_embed_check.sh)"
        tmp=$(mktemp)
        RK_EMBED_CHECK_OUT=$LOGDIR RK_EMBED_CHECK_TIMEOUT=$(tmo 120) bash .ci/device_embed_check.sh >"$tmp" 2>&1
        rc=$?
        cat "$tmp"
        EMBED_ROW=$(grep -a '^EMBED_CHECK ' "$tmp" | tail -n 1 | sed 's/^EMBED_CHECK //')
        [ -z "$EMBED_ROW" ] && EMBED_ROW="no verdict (exit $rc; see embed_check.log)"
        [ "$rc" != 0 ] && FAIL=1
        rm -f "$tmp"
    fi
fi
# peers that use the GPU first (their file mentions cuda), then the CPU ones, then ../shared/peers when present
PEERS="$(grep -l cuda bench/peers/*.py 2>/dev/null)"
[ -d ../shared/peers ] && PEERS="$PEERS $(ls ../shared/peers/*.py 2>/dev/null)"
for p in $PEERS; do
    if out_of_time; then
        NOTES+=("$(basename "$p"): not run (out of time)")
        continue
    fi
    say "== peer: python3 $p"
    echo "===== $p" >>"$L_PEER"
    timeout "$(tmo 90)" python3 "$p" >>"$L_PEER" 2>&1
    rc=$?
    [ "$rc" != 0 ] && NOTES+=("peer $(basename "$p") exited $rc$([ $rc = 124 ] && echo ' (timeout)')")
done

# the kernel variants beside the defaults, after the peers so that a short budget still gets the default
# comparisons: on sm_90 the other warp-specialized attention (v12) alone and the wgmma attention the default does not
# take for each head size inside the BERT forward (RK_ATTN_FWD_VARIANT), and the BERT forward with the two-pass GEMM +
# GELU (variant 1, the default before the fused kernel); the GELU and LayerNorm variants (kernels/elementwise.cu,
# layernorm.cu)
EXTRA=()
if [ -x build/bench/bench_attn ] && nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -q '^9\.0'; then
    EXTRA+=("build/bench/bench_attn --variant 12" "env RK_ATTN_FWD_VARIANT=11 build/bench/bench_bert --config base"
        "env RK_MATMUL_GELU_VARIANT=1 build/bench/bench_bert --config base")
fi
[ -x build/bench/bench_ops ] && EXTRA+=("build/bench/bench_ops gelu --variant all" "build/bench/bench_ops layernorm --variant all")
# the BERT forward with the residual added by the LayerNorm (the path before it moved into the GEMM epilogue)
[ -x build/bench/bench_bert ] && EXTRA+=("env RK_BERT_RESIDUAL_VARIANT=2 build/bench/bench_bert --config base")
for cmd in "${EXTRA[@]}"; do
    if out_of_time; then
        NOTES+=("$cmd: not run (out of time)")
        continue
    fi
    say "== bench: $cmd"
    echo "===== $cmd" >>"$L_BENCH"
    timeout "$(tmo 50)" $cmd >>"$L_BENCH" 2>&1
    rc=$?
    [ "$rc" != 0 ] && NOTES+=("$cmd exited $rc$([ $rc = 124 ] && echo ' (timeout)')")
done

# where a BERT-base fine-tune step's GPU time goes (RK_PROFILE=1: events around every op, summed per op; the step is
# 0.63x HF's, docs/PERF.md): its RESULT lines are dropped, the events slow the step; the summary shows the table
if [ -x build/bench/bench_finetune ]; then
    if out_of_time; then
        NOTES+=("RK_PROFILE=1 bench_finetune: not run (out of time)")
    else
        say "== profile: RK_PROFILE=1 build/bench/bench_finetune --config base --reps 3"
        { echo "===== RK_PROFILE=1 build/bench/bench_finetune --config base --reps 3 (RESULT lines dropped)"
          RK_PROFILE=1 timeout "$(tmo 60)" build/bench/bench_finetune --config base --reps 3 2>&1 | grep -av '^RESULT'
        } >>"$L_BENCH"
    fi
fi

# ---- summary ----------------------------------------------------------------------------------------------------
{
    echo
    echo "================================ rk device check: $(nvidia-smi -L 2>/dev/null | head -n 1 | cut -c1-60), commit $RK_COMMIT, $(elapsed)s"
    echo "-- test suites"
    for r in "${SUITE_ROWS[@]}"; do echo "  $r"; done
    echo "-- compute-sanitizer (a few small cases per kernel family)"
    for r in "${SAN_ROWS[@]}"; do echo "  $r"; done
    echo "-- rk-embed --device cuda vs the CPU run on the f32 model (same split; F1 within 0.002)"
    echo "  $EMBED_ROW"
    echo "-- benches: ours vs peer (ratio > 1: ours better; throughput ours/peer, times peer/ours)"
    awk -f .ci/result_table.awk "$L_BENCH" "$L_PEER"
    prof=$(sed -n '/^===== RK_PROFILE=1 build\/bench\/bench_finetune/,$p' "$L_BENCH" |
        grep -a -E '^ours_finetune|^rk cuda profile|^  [A-Z_+]+ +[0-9]+ calls' | head -n 40)
    if [ -n "$prof" ]; then
        echo "-- a BERT-base fine-tune step, GPU time per op (RK_PROFILE=1, 3 steps + warm-ups and the golden check)"
        echo "$prof" | cut -c1-150 | sed 's/^/  /'
    fi
    other=$(grep -a -hE 'ours_|peer_' "$L_BENCH" "$L_PEER" | grep -v '^RESULT' | head -n 24)
    if [ -n "$other" ]; then
        echo "-- other bench lines (no RESULT key)"
        echo "$other" | cut -c1-150 | sed 's/^/  /'
    fi
    if [ "${#NOTES[@]}" -gt 0 ]; then
        echo "-- notes"
        for r in "${NOTES[@]}"; do echo "  $r"; done
    fi
    echo "-- logs: $LOGDIR/{build,tests,sanitizer,bench,peers,embed_check}.log"
    echo "================================ $([ $FAIL = 0 ] && echo PASS || echo FAIL)"
} | tee "$L_SUM"
exit $FAIL
