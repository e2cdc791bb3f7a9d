"""Peer of bench/bench_matmul.c: torch.nn.functional.linear (cuBLAS / cuBLASLt through PyTorch) on the same bf16
shapes, timed the same way: CUDA events, 3 warm-ups, median of 30, the L2 flushed before each repetition by writing
a buffer twice its size. GELU is the erf form (F.gelu default), as ours. Prints one line per shape and
`RESULT <key> <TFLOP/s> TFLOP/s` with bench_matmul's keys, which .ci/device_check.sh joins.

    python3 bench/peers/gemm_torch.py
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from rk_timing import l2_flush_buffer, times_ms  # noqa: E402

# (name, M tokens, N out, K in, bias, gelu): keep in step with `shapes` in bench/bench_matmul.c
SHAPES = [
    ("llama7b_up_4ktok", 4096, 11008, 4096, False, False),
    ("bert_large_proj_16ktok", 16384, 1024, 1024, False, False),
    ("bert_base_qkv_B64_T256", 16384, 2304, 768, True, False),
    ("bert_base_attn_out_B64_T256", 16384, 768, 768, True, False),
    ("bert_base_ffn_up_gelu_B64_T256", 16384, 3072, 768, True, True),
    ("bert_base_ffn_down_B64_T256", 16384, 768, 3072, True, False),
    ("bert_large_ffn_up_gelu_B32_T512", 16384, 4096, 1024, True, True),
]
REPS = 30

dev = "cuda"
torch.manual_seed(0)
props = torch.cuda.get_device_properties(0)
flush = l2_flush_buffer(dev)
print(f"device {props.name} sm_{props.major}{props.minor} torch={torch.__version__} cuda={torch.version.cuda}")
for name, M, N, K, bias, gelu in SHAPES:
    x = torch.empty(M, K, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
    w = torch.empty(N, K, device=dev, dtype=torch.bfloat16).uniform_(-1, 1) * (1.7 / math.sqrt(K))
    b = torch.empty(N, device=dev, dtype=torch.bfloat16).uniform_(-1, 1) if bias else None
    if gelu:
        fn = lambda: F.gelu(F.linear(x, w, b))  # noqa: E731
    else:
        fn = lambda: F.linear(x, w, b)  # noqa: E731
    with torch.inference_mode():
        ts = times_ms(fn, flush, REPS)
    ms = ts[len(ts) // 2]
    tflops = 2.0 * M * N * K / (ms * 1e-3) / 1e12  # epilogue not counted, as in bench_matmul.c
    key = f"gemm_bf16_M{M}_N{N}_K{K}" + ("_bias" if bias else "") + ("_gelu" if gelu else "")
    print(f"matmul {name:32s} {key:40s} median_ms={ms:.4f} (min {ts[0]:.4f}) {tflops:.1f} TFLOP/s")
    print(f"RESULT {key} {tflops:.1f} TFLOP/s", flush=True)
    del x, w, b
