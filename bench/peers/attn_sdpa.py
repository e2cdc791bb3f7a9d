"""Peer for bench/bench_attn.c: torch scaled_dot_product_attention forward, per back-end, on the same shapes.

    python3 bench/peers/attn_sdpa.py [--reps 30]

Same method as bench_attn: bf16 (B, NH, T, HS) inputs uniform in [-1, 1], CUDA events around the call only,
5 warm-ups, the median of --reps runs, the L2 flushed by writing a 256 MB buffer before each run.
Prints one line per shape and back-end:  attn <shape> peer=<backend> ms=... tflops=...
and for the flash back-end `RESULT attn_<shape>_B.._T.._H.._D.. <ms> ms`, the key bench_attn prints.
"""
import argparse
import subprocess

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [  # name, B, NH, T, HS, causal (as bench_cases in bench_attn.c)
    ("bert_base", 64, 12, 256, 64, False),
    ("bert_large", 32, 16, 512, 64, False),
    ("llama7b_causal", 4, 32, 2048, 128, True),
    ("minilm", 64, 12, 256, 32, False),
]
BACKENDS = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION)]


def time_ms(fn, reps, flush):
    for _ in range(5):
        fn()
    ts = []
    for r in range(reps):
        flush.fill_(r & 0xff)  # evict q, k, v, o from L2
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    ts.sort()
    return ts[len(ts) // 2]


def setup():
    """Parses --reps, prints the device line; returns (args, device, the L2 flush buffer). Shared with attn_bwd_sdpa.py."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    dev = torch.device("cuda")
    p = torch.cuda.get_device_properties(0)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    print(f"device {p.name} sm_{p.major}{p.minor} SMs={p.multi_processor_count} commit={commit or 'unknown'} "
          f"torch={torch.__version__}")
    return args, dev, torch.empty(256 << 20, dtype=torch.uint8, device=dev)


def main():
    args, dev, flush = setup()
    gen = torch.Generator(device=dev).manual_seed(1)
    for name, B, NH, T, HS, causal in SHAPES:
        q, k, v = (torch.rand(B, NH, T, HS, device=dev, generator=gen).mul_(2).sub_(1).to(torch.bfloat16)
                   for _ in range(3))
        # flops = 4 * B * NH * Tq * Tk * HS (two matmuls, 2 flops per multiply-add), halved under a causal mask
        flops = 4.0 * B * NH * T * T * HS * (0.5 if causal else 1.0)
        for bname, be in BACKENDS:
            try:
                with sdpa_kernel([be]):
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    ms = time_ms(fn, args.reps, flush)
                print(f"attn {name} peer={bname} ms={ms:.4f} tflops={flops / (ms * 1e-3) / 1e12:.1f}", flush=True)
                if bname == "flash":  # the key bench_attn prints for its default variant (.ci/device_check.sh joins them)
                    print(f"RESULT attn_{name}_B{B}_T{T}_H{NH}_D{HS} {ms:.4f} ms", flush=True)
                elif bname == "cudnn":  # the stretch target: a row of its own in the device check's table
                    print(f"RESULT attn_{name}_B{B}_T{T}_H{NH}_D{HS}@cudnn {ms:.4f} ms", flush=True)
            except RuntimeError as ex:
                print(f"attn {name} peer={bname} unavailable ({str(ex).splitlines()[0][:80]})", flush=True)


if __name__ == "__main__":
    main()
