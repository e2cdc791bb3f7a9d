#!/usr/bin/env bash
# .ci/device_embed_check.sh: runs ON THE GPU MACHINE. Issue 3's check of BERT inference on the GPU: `rk-embed --device
# cuda` must give the same micro and macro F1 as the CPU run on the same split (within 0.002) and print documents/s.
#
#   bash .ci/device_unbundle.sh && RK_DEVLIBS=.devbundle/devlibs bash .ci/device_embed_check.sh
#                                              (carry [".devbundle", ".devembed"]; ~10-20 s once the machine is up)
#   RK_EMBED_CHECK_DEVICE=cpu bash .ci/device_embed_check.sh     the same run on the CPU (a test of this script, and
#                                              the effect of the bf16 weights alone on the CPU's F1)
#
# Inputs: .devembed/ from .ci/device_embed_prep.sh (run on the CPU machine): the bf16 copy of all-MiniLM-L6-v2 (on an
# sm_80+ card the same weights, bit for bit, as the f32 original gives the CUDA backend: see that script), the
# Reuters data, the split file, the options (args) and the CPU reference (cpu_results.json, from the f32 model);
# build/rk-embed (from the bundle, or built). Runs rk-embed with the same options and split on the device, prints
# documents/s, and compares micro and macro F1 with the reference.
# Output: $RK_EMBED_CHECK_OUT (else $OUT, else /tmp/rk_embed_check): embed_check.log (rk-embed's table and progress,
# the verdict) and embed_<device>.json (its --out). The last line printed is the verdict:
#   EMBED_CHECK PASS: ...   both F1 within the tolerance (RK_EMBED_CHECK_TOL, default 0.002)       exit 0
#   EMBED_CHECK FAIL: ...   an F1 outside it, or other document counts (both values printed)        exit 1
#   EMBED_CHECK ERROR: ...  no CUDA device, .devembed missing or not matching its MANIFEST, no build/rk-embed,
#                           rk-embed failed or timed out (RK_EMBED_CHECK_TIMEOUT, default 240 s)      exit 2
set -u
cd "$(dirname "$0")/.."
D=.devembed
DEVICE=${RK_EMBED_CHECK_DEVICE:-cuda}
TOL=${RK_EMBED_CHECK_TOL:-0.002}
TMO=${RK_EMBED_CHECK_TIMEOUT:-240}
LOGDIR=${RK_EMBED_CHECK_OUT:-${OUT:-/tmp/rk_embed_check}}
mkdir -p "$LOGDIR"
LOG=$LOGDIR/embed_check.log
JSON=$LOGDIR/embed_$DEVICE.json
: >"$LOG"
rm -f "$JSON"
DEVLIBS=${RK_DEVLIBS:-.devlibs}
[ -d "$DEVLIBS" ] && export LD_LIBRARY_PATH=$(cd "$DEVLIBS" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

verdict() { # STATUS MESSAGE: the one-line verdict, then the exit status
    echo "EMBED_CHECK $1: $2" | tee -a "$LOG"
    case $1 in PASS) exit 0 ;; FAIL) exit 1 ;; *) exit 2 ;; esac
}
# jnum FILE KEY / jstr FILE KEY: the first "KEY": value of a JSON file as cJSON prints it (one key per line)
jnum() { sed -n "s/^[[:space:]]*\"$2\":[[:space:]]*\([-+0-9.eE]*\),\{0,1\}[[:space:]]*$/\1/p" "$1" | head -n 1; }
jstr() { sed -n "s/^[[:space:]]*\"$2\":[[:space:]]*\"\(.*\)\",\{0,1\}[[:space:]]*$/\1/p" "$1" | head -n 1; }

case $DEVICE in cuda | cpu) ;; *) verdict ERROR "RK_EMBED_CHECK_DEVICE=$DEVICE: expected cuda or cpu" ;; esac
[ -f $D/MANIFEST ] || verdict ERROR "$D/MANIFEST missing: run bash .ci/device_embed_prep.sh on the CPU machine and carry $D"
if command -v sha256sum >/dev/null 2>&1; then
    (cd $D && sha256sum --quiet -c MANIFEST) >>"$LOG" 2>&1 ||
        verdict ERROR "$D does not match its MANIFEST (incomplete carry? see $LOG); rerun .ci/device_embed_prep.sh"
fi
[ -x build/rk-embed ] || verdict ERROR "build/rk-embed missing: bash .ci/device_unbundle.sh (bundle from .ci/device_bundle.sh) or make build/rk-embed"
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L >>"$LOG" 2>&1 ||
        verdict ERROR "no CUDA device (nvidia-smi -L failed); this is a GPU check (RK_EMBED_CHECK_DEVICE=cpu runs it on the CPU)"
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1)
    case $cc in 7.*) echo "note: compute capability $cc: the CUDA backend uses f16 weights here, rounded from the bf16 copy (not the f16 of the f32 original)" | tee -a "$LOG" ;; esac
fi

mapfile -t ARGS <$D/args
cmd=(build/rk-embed --model $D/model --data $D/train.csv.gz --split $D/split.csv "${ARGS[@]}" --device "$DEVICE"
     --out "$JSON")
echo "device_embed_check: ${cmd[*]}" | tee -a "$LOG"
tout=$(mktemp) terr=$(mktemp)
timeout "$TMO" "${cmd[@]}" >"$tout" 2>"$terr"
rc=$?
{ echo "===== stdout"; cat "$tout"; echo "===== stderr"; cat "$terr"; } >>"$LOG"
sed -n 2p "$tout" | grep .
if [ "$rc" != 0 ]; then
    msg=$(grep -a -v '^embed: ' "$terr" | tail -n 1 | cut -c1-200)
    rm -f "$tout" "$terr"
    [ "$rc" = 124 ] && verdict ERROR "rk-embed timed out after $TMO s (see $LOG)"
    [ "$DEVICE" = cuda ] && echo "$msg" | grep -qiE 'no CUDA (device|backend)|CUDA device [0-9]+ (unusable|.* needs sm_)' &&
        verdict ERROR "no usable CUDA device ($msg); this is a GPU check (RK_EMBED_CHECK_DEVICE=cpu runs it on the CPU)"
    verdict ERROR "rk-embed --device $DEVICE exited $rc: ${msg:-no message} (see $LOG)"
fi
rm -f "$tout" "$terr"
[ -f "$JSON" ] || verdict ERROR "rk-embed wrote no $JSON"

REF=$D/cpu_results.json
dev=$(jstr "$JSON" device)
case $DEVICE:$dev in cuda:cuda* | cpu:cpu*) ;; *) verdict ERROR "asked for $DEVICE, rk-embed ran on '$dev'" ;; esac
g_mi=$(jnum "$JSON" micro_f1) g_ma=$(jnum "$JSON" macro_f1) c_mi=$(jnum "$REF" micro_f1) c_ma=$(jnum "$REF" macro_f1)
[ -n "$g_mi" ] && [ -n "$g_ma" ] && [ -n "$c_mi" ] && [ -n "$c_ma" ] ||
    verdict ERROR "cannot read micro_f1/macro_f1 from $JSON or $REF"
dps=$(jnum "$JSON" docs_per_second) secs=$(jnum "$JSON" embed_seconds)
g_tr=$(jnum "$JSON" n_train) g_ev=$(jnum "$JSON" n_eval)
g_n="$g_tr/$g_ev" c_n="$(jnum "$REF" n_train)/$(jnum "$REF" n_eval)"
printf 'device_embed_check: %s: embedded %d documents (%d train + %d eval) in %.2f s: %.0f documents/s\n' "$dev" \
    $((g_tr + g_ev)) "$g_tr" "$g_ev" "$secs" "$dps" | tee -a "$LOG"
[ "$g_n" = "$c_n" ] || verdict FAIL "documents train/eval $g_n on $DEVICE, $c_n in the CPU reference (not the same split)"
res=$(awk -v gi="$g_mi" -v ga="$g_ma" -v ci="$c_mi" -v ca="$c_ma" -v t="$TOL" 'function abs(x) { return x < 0 ? -x : x }
    BEGIN { di = abs(gi - ci); da = abs(ga - ca); ok = di <= t + 1e-12 && da <= t + 1e-12
            printf "%s micro F1 %.4f (CPU f32 %.4f, |d| %.4f), macro F1 %.4f (CPU f32 %.4f, |d| %.4f), tolerance %s",
                   ok ? "PASS" : "FAIL", gi, ci, di, ga, ca, da, t }')
printf -v tail_ '; %.0f documents/s on %s' "$dps" "$dev"
verdict "${res%% *}" "${res#* }$tail_"
