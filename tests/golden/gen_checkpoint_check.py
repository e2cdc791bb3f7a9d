#!/usr/bin/env python3
"""Checks by hand that .safetensors files written by rk (io/safetensors_write.c) load with the reference
`safetensors` package and are byte-identical to what that package writes for the same tensors and metadata (up to the order of metadata
keys, which the reference leaves random when there are two or more; rk sorts them).

Usage (the C tests leave their files in /tmp/rk_test_*):
    make build/tests/test_checkpoint && RK_ROOT=$PWD build/tests/test_checkpoint
    python3 tests/golden/gen_checkpoint_check.py $(find /tmp/rk_test_* -name '*.safetensors')

Needs `safetensors` and `torch` (torch for bf16; numpy cannot hold it). Exits non-zero on any mismatch.
Files the reference cannot load (e.g. written to test error paths) are reported as failures too.
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save


def check(path):
    with open(path, "rb") as f:
        ours = f.read()
    tensors = load_file(path)  # full validation by the reference reader
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    theirs = save(tensors, metadata=meta)
    if ours != theirs and len(meta or {}) > 1:
        # the reference keeps metadata in a Rust HashMap, so with two or more keys its order is random per process
        # (rk sorts the keys); compare everything else byte for byte
        def split(b):
            n = int.from_bytes(b[:8], "little")
            return n, json.loads(b[8:8 + n], object_pairs_hook=list), b[8 + n:]
        (n1, h1, d1), (n2, h2, d2) = split(ours), split(theirs)
        m1 = dict(next(v for k, v in h1 if k == "__metadata__"))
        m2 = dict(next(v for k, v in h2 if k == "__metadata__"))
        if n1 == n2 and d1 == d2 and m1 == m2 and [kv for kv in h1 if kv[0] != "__metadata__"] == \
                [kv for kv in h2 if kv[0] != "__metadata__"]:
            return None
    if ours != theirs:
        n = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        return f"differs from the reference writer at byte {n} (ours {len(ours)} bytes, theirs {len(theirs)})"
    return None


def main(paths):
    bad = 0
    for p in paths:
        try:
            err = check(p)
        except Exception as e:  # report and continue with the next file
            err = f"{type(e).__name__}: {e}"
        print(f"{'FAIL' if err else 'ok  '} {p}" + (f": {err}" if err else ""))
        bad += err is not None
    print(f"{len(paths) - bad}/{len(paths)} files load and match the reference writer (torch {torch.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
