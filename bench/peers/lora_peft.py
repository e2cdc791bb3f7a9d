"""Peer of bench/bench_lora.c: PEFT's LoRA adapter path on the same bf16 shapes, timed the same way (CUDA events,
3 warm-ups, median of 30, the L2 flushed before each repetition by writing a buffer twice its size).

The layer is PEFT's own lora.Linear (get_peft_model around an nn.Linear, r 16, lora_alpha 32, lora_dropout p, train
mode). What is timed is the adapter half of its forward, the line of peft/tuners/lora/layer.py Linear.forward

    result = result + lora_B(lora_A(dropout(x))) * scaling

with PEFT's lora_A, lora_B, dropout and scaling modules and `result` the (precomputed) base output, and, separately,
the autograd backward of that expression for a given dy (gradients of x, lora_A and lora_B; they accumulate, as
ours do). bench_lora times RK_OP_LORA_FWD / RK_OP_LORA_BWD, which compute exactly this. Keys match bench_lora's
fused lines, so .ci/device_check.sh prints ours beside PEFT's:

    RESULT lora_{fwd,bwd}_bf16_M<M>_K<K>_N<N>_r<r>_p<p> <ms> ms

    python3 bench/peers/lora_peft.py          (exits 0 with a message when torch has no CUDA device)
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from rk_timing import times_ms  # noqa: E402  (bench/peers/lib/rk_timing.py)


def median_ms(fn, flush, reps, before=None):
    ts = times_ms(fn, flush, reps, before)
    return ts[len(ts) // 2], ts[0]

# (name, M tokens, K in, N out, r, dropout p): keep in step with `shapes` in bench/bench_lora.c
SHAPES = [
    ("llama7b_qkvo_2ktok", 2048, 4096, 4096, 16, 0.0), ("llama7b_qkvo_2ktok", 2048, 4096, 4096, 16, 0.1),
    ("llama7b_qkvo_4ktok", 4096, 4096, 4096, 16, 0.0), ("llama7b_qkvo_4ktok", 4096, 4096, 4096, 16, 0.1),
    ("llama7b_up14k_2ktok", 2048, 4096, 14336, 16, 0.0), ("llama7b_up14k_2ktok", 2048, 4096, 14336, 16, 0.1),
    ("llama7b_up14k_4ktok", 4096, 4096, 14336, 16, 0.0), ("llama7b_up14k_4ktok", 4096, 4096, 14336, 16, 0.1),
]
REPS = 30


class One(torch.nn.Module):
    def __init__(self, k, n):
        super().__init__()
        self.proj = torch.nn.Linear(k, n, bias=False)


def main():
    if not torch.cuda.is_available():
        print("lora_peft: torch sees no CUDA device; nothing to time")
        return 0
    import peft
    from peft import LoraConfig, get_peft_model

    dev = "cuda"
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 64 << 20) or (64 << 20)
    flush = torch.empty(2 * l2, dtype=torch.uint8, device=dev)
    print(f"device {props.name} sm_{props.major}{props.minor} torch={torch.__version__} cuda={torch.version.cuda} "
          f"peft={peft.__version__}")
    for name, M, K, N, r, p in SHAPES:
        cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=p, target_modules=["proj"])
        model = get_peft_model(One(K, N), cfg).to(device=dev, dtype=torch.bfloat16)
        model.train()
        mod = model.base_model.model.proj
        lora_A, lora_B = mod.lora_A["default"], mod.lora_B["default"]
        dropout, scaling = mod.lora_dropout["default"], mod.scaling["default"]
        with torch.no_grad():
            lora_A.weight.uniform_(-1 / math.sqrt(K), 1 / math.sqrt(K))
            lora_B.weight.uniform_(-1 / math.sqrt(r), 1 / math.sqrt(r))
        x = torch.empty(M, K, device=dev, dtype=torch.bfloat16).uniform_(-1, 1).requires_grad_(True)
        result = torch.empty(M, N, device=dev, dtype=torch.bfloat16).uniform_(-1, 1)
        dy = torch.empty(M, N, device=dev, dtype=torch.bfloat16).uniform_(-1, 1) / math.sqrt(N)

        def adapter():  # PEFT lora.Linear.forward, vanilla LoRA branch
            return result + lora_B(lora_A(dropout(x))) * scaling

        state = {}

        def fwd():  # also builds the graph the backward runs through
            state["out"] = adapter()

        def bwd():
            state["out"].backward(dy)

        key = f"_bf16_M{M}_K{K}_N{N}_r{r}_p{p:g}"
        ms, mn = median_ms(fwd, flush, REPS)  # with autograd on, as in training
        print(f"lora {name:20s} peft     lora_fwd{key:38s} median_ms={ms:.4f} (min {mn:.4f})")
        print(f"RESULT lora_fwd{key} {ms:.4f} ms", flush=True)
        ms, mn = median_ms(bwd, flush, REPS, before=fwd)
        print(f"lora {name:20s} peft     lora_bwd{key:38s} median_ms={ms:.4f} (min {mn:.4f})")
        print(f"RESULT lora_bwd{key} {ms:.4f} ms", flush=True)
        del model, x, result, dy, state
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
