"""Peer of bench/bench_nf4.c: bitsandbytes' NF4 (matmul_4bit, dequantize_4bit) and torch's bf16 matmul on the same
Llama-7B / Mistral-7B shapes, timed the same way: CUDA events, 3 warm-ups, median of 20, the L2 flushed before each
repetition by writing a buffer twice its size. Prints `RESULT <key> <value> <unit>` with bench_nf4's keys, which
.ci/device_check.sh joins with ours:

    nf4_copy_d2d                          torch copy_ of 512 MiB, bytes read + written per second
    nf4_dequant_bf16_N*_K* (+ _pct_copy)  bnb.functional.dequantize_4bit to bf16, bytes = packed + fp32 absmax + output
    nf4_matmul_bf16_M*_N*_K*              bnb.matmul_4bit(x, W4) as bnb.nn.Linear4bit calls it, bf16 x
    nf4_ref_gemm_bf16_M*_N*_K*            torch.nn.functional.linear on the bf16 dequantized weight (cuBLAS)
    nf4_speedup_vs_bf16_M*_N*_K*          the second over the first
    nf4_gemv_weight_bw_M*_N*_K* (+ _pct_copy)  for M <= 8: weight bytes (packed + fp32 absmax) per second

The weight is quantized with compress_statistics=False (fp32 absmax), the layout our op reads (rk_nf4_weight_upload
expands a double-quantized absmax to fp32 once). Skips with one line and exit 0 without torch, CUDA or bitsandbytes
(which the lent GPU machines do not have unless a wheel is carried).

    python3 bench/peers/nf4_bnb.py
"""
import math
import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("nf4_bnb: torch is not installed; skipped")
    sys.exit(0)
if not torch.cuda.is_available():
    print("nf4_bnb: no CUDA device; skipped")
    sys.exit(0)
try:
    import bitsandbytes as bnb
    import bitsandbytes.functional as BF
except Exception as e:  # noqa: BLE001 (a broken install is a skip too)
    print(f"nf4_bnb: bitsandbytes unavailable ({type(e).__name__}: {e}); skipped")
    sys.exit(0)

# keep in step with `shapes` and `Ms` in bench/bench_nf4.c
SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]
MS = [1, 8, 2048, 4096]
GEMV_MAX_B = 8
REPS = 20

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from rk_timing import l2_flush_buffer, times_ms  # noqa: E402

dev = "cuda"
torch.manual_seed(0)
props = torch.cuda.get_device_properties(0)
flush = l2_flush_buffer(dev)
print(f"device {props.name} sm_{props.major}{props.minor} torch={torch.__version__} cuda={torch.version.cuda} "
      f"bitsandbytes={bnb.__version__}")


def time_ms(fn):
    """Median milliseconds of REPS calls of fn (rk_timing: L2 flushed before each, 3 warm-ups)."""
    ts = times_ms(fn, flush, REPS)
    return ts[len(ts) // 2]


with torch.inference_mode():
    nbytes = 512 << 20
    a = torch.ones(nbytes, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    copy_gbs = 2.0 * nbytes / (time_ms(lambda: b.copy_(a)) * 1e-3) / 1e9
    print(f"copy d2d {nbytes >> 20} MiB: {copy_gbs:.1f} GB/s (read + write)")
    print(f"RESULT nf4_copy_d2d {copy_gbs:.1f} GB/s", flush=True)
    del a, b

    for N, K in SHAPES:
        w = (torch.rand(N, K, device=dev) * 2 - 1).mul_(1.7 / math.sqrt(K)).to(torch.bfloat16)
        q, state = BF.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
        del w
        wbytes = N * K / 2 + N * K / 64 * 4
        dq_ms = time_ms(lambda: BF.dequantize_4bit(q, state))
        dq_gbs = (wbytes + N * K * 2) / (dq_ms * 1e-3) / 1e9
        print(f"dequant N={N} K={K} -> bf16: {dq_ms:.4f} ms, {dq_gbs:.1f} GB/s = {100 * dq_gbs / copy_gbs:.1f}% of copy")
        print(f"RESULT nf4_dequant_bf16_N{N}_K{K} {dq_gbs:.1f} GB/s")
        print(f"RESULT nf4_dequant_bf16_pct_copy_N{N}_K{K} {100 * dq_gbs / copy_gbs:.1f} %", flush=True)
        wd = BF.dequantize_4bit(q, state)  # the bf16 weight torch multiplies
        qt = q.t()  # what Linear4bit passes
        for M in MS:
            x = (torch.rand(M, K, device=dev) * 2 - 1).to(torch.bfloat16)
            ours = time_ms(lambda: bnb.matmul_4bit(x, qt, quant_state=state))
            ref = time_ms(lambda: F.linear(x, wd))
            print(f"M={M:<5d} N={N:<5d} K={K:<5d} bnb matmul_4bit {ours:.4f} ms  torch bf16 {ref:.4f} ms  "
                  f"speedup {ref / ours:.2f}x")
            key = f"M{M}_N{N}_K{K}"
            print(f"RESULT nf4_matmul_bf16_{key} {ours:.4f} ms")
            print(f"RESULT nf4_ref_gemm_bf16_{key} {ref:.4f} ms")
            print(f"RESULT nf4_speedup_vs_bf16_{key} {ref / ours:.2f} x")
            if M <= GEMV_MAX_B:
                gbs = wbytes / (ours * 1e-3) / 1e9
                print(f"RESULT nf4_gemv_weight_bw_{key} {gbs:.1f} GB/s")
                print(f"RESULT nf4_gemv_pct_copy_{key} {100 * gbs / copy_gbs:.1f} %")
            sys.stdout.flush()
            del x
        del q, state, wd, qt
        torch.cuda.empty_cache()
