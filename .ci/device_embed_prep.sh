#!/usr/bin/env bash
# .ci/device_embed_prep.sh: runs HERE (the CPU machine that has models/ and ../shared): prepares .devembed/ (ignored by
# git) so that a lent GPU machine can check issue 3's "rk-embed --device cuda gives the same F1 as the CPU run on the
# same split (within 0.002) and prints documents/s" in about a minute (.ci/device_embed_check.sh runs there).
#
#   bash .ci/device_embed_prep.sh          (~2.5 minutes on 2 cores: the CPU reference run is most of it)
#   then carry [".devbundle", ".devembed"] (.devbundle from .ci/device_bundle.sh, which packs build/rk-embed)
#
# The f32 model (90 MB) does not fit in what travels to the GPU machine (64 MiB together with the ~6 MB bundle), so
# .devembed/model holds a bf16 copy (45 MB) made by build/st_convert: every F32 tensor rounded to bf16 with
# rk_dtype_traits' from_f32 (round to nearest even), the very function rk_tensor_set_f32 uses when the model loader
# (host/models/bert.c, place) puts f32 weights into the CUDA backend's bf16 tensors (act_dtype, sm_80+). A bf16
# weight comes back unchanged through that path, so on an sm_80+ card the GPU run on the bf16 copy computes with the
# same weights, bit for bit, as a GPU run on the original f32 file. (An sm_75 card uses f16 weights: rounded from
# the bf16 copy they are not the f16 of the f32 file; the check then says so.) The CPU reference runs on the
# ORIGINAL f32 model; the GPU is held to it.
#
# .devembed/ afterwards:
#   model/             the model folder (config, vocab, tokenizer and sentence-transformers files) with model.safetensors
#                      in bf16
#   train.csv.gz       the data (Reuters-21578 training file, all 7,770 documents)
#   split.csv          the split file both runs use (--split): seeded 80/5/15 iterative stratification, seed 42, the
#                      same as rk-embed's default splits/reuters21578-train.seed42.csv
#   args               the rk-embed options both runs use, one per line
#   cpu_results.json   rk-embed --out of the CPU run on the f32 model; cpu_run.txt (its stdout), cpu_run.log (stderr)
#   cpu_command.txt    the exact command, commit, machine, date and wall time of the CPU run
#   MANIFEST           sha256 of every file above (written last; device_embed_check.sh verifies it)
# Environment: RK_EMBED_MODEL (default models/all-MiniLM-L6-v2), RK_EMBED_DATA (default
# ../shared/datasets/reuters21578/train.csv.gz).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${RK_EMBED_MODEL:-models/all-MiniLM-L6-v2}
DATA=${RK_EMBED_DATA:-../shared/datasets/reuters21578/train.csv.gz}
D=.devembed
# the options of both runs: the model's own pooling (mean + L2, from its sentence-transformers files) spelled out,
# logistic regression (fit < 1 s; the forest turns bf16-sized differences of the embeddings into different trees:
# docs/RESULTS.md), the default split seed, batch 64 (the GPU's throughput figure is taken at it)
ARGS=(--pooling mean --normalize 1 --classifier logreg --seed 42 --batch 64)
LIMIT_MIB=58

say() { echo "device_embed_prep: $*"; }
fail() { echo "device_embed_prep: $*" >&2; exit 1; }

[ -f "$MODEL/model.safetensors" ] || fail "$MODEL/model.safetensors missing (HINT: make models)"
[ -f "$MODEL/config.json" ] || fail "$MODEL/config.json missing (HINT: make models)"
[ -f "$DATA" ] || fail "$DATA missing (HINT: the Reuters file lives in ../shared/datasets/reuters21578/; or RK_EMBED_DATA=path)"

say "building build/rk-embed build/st_convert"
make -s -j2 build/rk-embed build/st_convert >/dev/null

rm -rf "$D"
mkdir -p "$D/model"
# the model folder without its weights (a few hundred KB: config, vocab, tokenizer, pooling files)
for f in "$MODEL"/* "$MODEL"/.[!.]*; do
    [ -e "$f" ] || continue
    case $(basename "$f") in model.safetensors | model.safetensors.index.json | *.bin | *.h5 | *.onnx | onnx | .git) continue ;; esac
    cp -r "$f" "$D/model/"
done
build/st_convert --from f32 --to bf16 "$MODEL/model.safetensors" "$D/model/model.safetensors"
# an independent check of the rounding (numpy, when present): every F32 tensor's bf16 is round-to-nearest-even
if python3 -c 'import numpy' 2>/dev/null; then
    python3 - "$MODEL/model.safetensors" "$D/model/model.safetensors" <<'EOF'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    return json.loads(b[8:8 + n]), b, 8 + n
def raw(f, k):
    h, b, base = f
    s, e = h[k]['data_offsets']
    return b[base + s:base + e]
src, dst = load(sys.argv[1]), load(sys.argv[2])
assert src[0].get('__metadata__') == dst[0].get('__metadata__'), 'metadata differs'
keys = [k for k in src[0] if k != '__metadata__']
assert sorted(keys) == sorted(k for k in dst[0] if k != '__metadata__'), 'tensor names differ'
conv = 0
for k in keys:
    a, b = src[0][k], dst[0][k]
    assert a['shape'] == b['shape'], k
    if a['dtype'] == 'F32':
        assert b['dtype'] == 'BF16', k
        u = np.frombuffer(raw(src, k), dtype='<u4').astype(np.uint64)
        assert not np.any((u & 0x7fffffff) > 0x7f800000), 'NaN in ' + k
        want = ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        assert np.array_equal(want, np.frombuffer(raw(dst, k), dtype='<u2')), k
        conv += 1
    else:
        assert a['dtype'] == b['dtype'] and raw(src, k) == raw(dst, k), k
print('device_embed_prep: numpy cross-check: %d tensors are the round-to-nearest-even bf16 of the originals, '
      '%d others identical' % (conv, len(keys) - conv))
EOF
else
    say "numpy not found: skipped the independent rounding cross-check (st_convert's own check ran)"
fi
cp "$DATA" "$D/train.csv.gz"
printf '%s\n' "${ARGS[@]}" >"$D/args"

# the CPU reference, on the ORIGINAL f32 model; it creates $D/split.csv
cmd=(build/rk-embed --model "$MODEL" --data "$D/train.csv.gz" --split "$D/split.csv" "${ARGS[@]}" --device cpu
     --out "$D/cpu_results.json")
say "CPU reference: ${cmd[*]}"
t0=$(date +%s)
if ! "${cmd[@]}" >"$D/cpu_run.txt" 2>"$D/cpu_run.log"; then
    tail -n 5 "$D/cpu_run.log" >&2
    fail "the CPU reference run failed (log: $D/cpu_run.log)"
fi
secs=$(($(date +%s) - t0))
{
    echo "${cmd[*]}"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "machine $(uname -m), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "wall ${secs} s"
    echo "model sha256 $(sha256sum "$MODEL/model.safetensors" | cut -c1-64) (f32, the original)"
    echo "data $DATA"
} >"$D/cpu_command.txt"
sed -n 2p "$D/cpu_run.txt" | sed 's/^/  /'
grep -E '^(micro|macro) F1' "$D/cpu_run.txt" | sed 's/^/  /'
# the same split as every other technique uses by default, when that file is here to compare with
def=splits/reuters21578-train.seed42.csv
if [ "$DATA" = ../shared/datasets/reuters21578/train.csv.gz ] && [ -f "$def" ]; then
    if cmp -s "$def" "$D/split.csv"; then say "split.csv is identical to $def"
    else fail "split.csv differs from $def (same data, seed and fractions: it must not)"; fi
else
    say "split.csv not compared with $def (not here, or other data)"
fi

(cd "$D" && find . -type f ! -name MANIFEST | sort | xargs sha256sum >MANIFEST)
kib=$(du -sk "$D" | cut -f1)
say "$D: $((kib / 1024)) MiB ($kib KiB), CPU reference ${secs} s"
((kib < LIMIT_MIB * 1024)) || fail "$D is $kib KiB, over the ${LIMIT_MIB} MiB that leave room for .devbundle in a 64 MiB carry"
# what travels: the tracked tree, .devbundle and .devembed, 64 MiB at most (untracked files that git does not ignore
# travel too: keep the checkout clean)
if [ -f .devbundle/bundle.tar.xz ]; then
    tree=$(git ls-files -z 2>/dev/null | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
    tot=$(((${tree:-0} + $(du -sb .devbundle | cut -f1) + $(du -sb "$D" | cut -f1)) / 1048576))
    say "tracked tree + .devbundle + $D: $tot MiB of the 64 MiB a lent machine takes"
    ((tot < 63)) || say "WARNING: that leaves no room; the carry may be refused"
fi
say "done; on the GPU machine (carry [\".devbundle\", \".devembed\"]):"
say "  bash .ci/device_unbundle.sh && RK_DEVLIBS=.devbundle/devlibs bash .ci/device_embed_check.sh"
