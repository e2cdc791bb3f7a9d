"""Peer for bench/bench_attn_bwd.c: torch scaled_dot_product_attention forward + backward, per back-end, same shapes.

    python3 bench/peers/attn_bwd_sdpa.py [--reps 30]          (torch with cuda; .ci/device_check.sh runs it)

Same method as bench_attn_bwd (and attn_sdpa.py, whose setup and timing loop this reuses): bf16 (B, NH, T, HS)
inputs uniform in [-1, 1], CUDA events around the timed call only, 5 warm-ups, the median of --reps runs, the L2
flushed by writing a 256 MB buffer before each run. Two timings per shape and back-end:
    fwdbwd  o = sdpa(q, k, v); dq, dk, dv = autograd.grad(o, (q, k, v), dout)
    bwd     the autograd.grad call alone, on a kept graph (retain_graph=True)
autograd.grad returns the gradients without accumulating them into .grad, as our backward overwrites dq, dk, dv.
Prints  attn_bwd <shape> peer=<backend> fwd_ms=... bwd_ms=... fwdbwd_ms=... tflops=...
and for the flash back-end `RESULT attn_fwdbwd_<shape>_B.._T.._H.._D.. <ms> ms` and `RESULT attn_bwd_<shape>_... <ms> ms`,
the keys bench_attn_bwd prints (.ci/device_check.sh joins them).
"""
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from attn_sdpa import BACKENDS, SHAPES, setup, time_ms

BWD_SHAPES = ("bert_base", "bert_large", "llama7b_causal")  # bench_shapes in bench_attn_bwd.c


def main():
    args, dev, flush = setup()
    gen = torch.Generator(device=dev).manual_seed(2)
    for name, B, NH, T, HS, causal in SHAPES:
        if name not in BWD_SHAPES:
            continue
        q, k, v, dout = (torch.rand(B, NH, T, HS, device=dev, generator=gen).mul_(2).sub_(1).to(torch.bfloat16)
                         for _ in range(4))
        for t in (q, k, v):
            t.requires_grad_(True)
        # forward flops 4 * B * NH * T^2 * HS, halved under a causal mask; backward 2.5x, forward + backward 3.5x
        f_fwd = 4.0 * B * NH * T * T * HS * (0.5 if causal else 1.0)
        for bname, be in BACKENDS:
            try:
                with sdpa_kernel([be]):
                    def fwd():
                        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

                    def fwdbwd():
                        torch.autograd.grad(fwd(), (q, k, v), dout)

                    o = fwd()

                    def bwd():
                        torch.autograd.grad(o, (q, k, v), dout, retain_graph=True)

                    ms_f = time_ms(fwd, args.reps, flush)
                    ms_t = time_ms(fwdbwd, args.reps, flush)
                    ms_b = time_ms(bwd, args.reps, flush)
                    del o
                print(f"attn_bwd {name} peer={bname} fwd_ms={ms_f:.4f} bwd_ms={ms_b:.4f} fwdbwd_ms={ms_t:.4f} "
                      f"tflops={3.5 * f_fwd / (ms_t * 1e-3) / 1e12:.1f} bwd_tflops={2.5 * f_fwd / (ms_b * 1e-3) / 1e12:.1f}",
                      flush=True)
                if bname == "flash":  # the keys bench_attn_bwd prints for its default variant
                    key = f"{name}_B{B}_T{T}_H{NH}_D{HS}"
                    print(f"RESULT attn_fwdbwd_{key} {ms_t:.4f} ms", flush=True)
                    print(f"RESULT attn_bwd_{key} {ms_b:.4f} ms", flush=True)
            except RuntimeError as ex:
                print(f"attn_bwd {name} peer={bname} unavailable ({str(ex).splitlines()[0][:80]})", flush=True)


if __name__ == "__main__":
    main()
