#!/usr/bin/env python3
"""gen_nf4.py: bitsandbytes NF4 / FP4 reference data for tests/test_quant.c.

Everything here is produced by the bitsandbytes package itself on the CPU (tested with bitsandbytes 0.50.2 and
torch 2.x, no GPU): bitsandbytes.functional.quantize_4bit / dequantize_4bit / quantize_blockwise and
bitsandbytes.nn.Linear4bit. Nothing is re-implemented here.

Writes (run from the repository root:  pip install bitsandbytes safetensors; python3 tests/golden/gen_nf4.py):

  tests/golden/nf4.rkgd        golden tensors (format: tests/golden/rkgold.py), per case <c>:
      <c>.x            the f32 input, shape (rows, cols)
      <c>.meta         [kind (0 nf4, 1 fp4), blocksize, rows, cols]
      <c>.packed       packed bytes (as i32), (n+1)/2 of them; first element in the high nibble
      <c>.absmax       fp32 absmax per block (compress_statistics=False)
      <c>.deq          dequantize_4bit to fp32
      <c>.deq_bf16     dequantize_4bit to bf16, widened to f32
      <c>.dq_codes     compress_statistics=True: 8-bit codes of (absmax - offset), as i32
      <c>.dq_scale     fp32 absmax of each 256-block of (absmax - offset)
      <c>.dq_offset    [offset]
      <c>.dq_absmax    the dequantized absmax (code8[q] * scale + offset)
      <c>.dq_deq       dequantize_4bit of the double-quantized state, fp32
    and once: code_nf4, code_fp4 (16 each), code_dyn8 (create_dynamic_map(signed=True), 256), and
    q8.x / q8.codes / q8.absmax: quantize_blockwise with the dynamic map, blocksize 256, on crafted values.

  tests/golden/nf4_linear4bit.safetensors   a state dict written by bnb.nn.Linear4bit (what transformers saves
      per layer): "nf4.weight" (packed uint8), "nf4.weight.absmax" (uint8 codes), "nf4.weight.quant_map",
      "nf4.weight.nested_absmax", "nf4.weight.nested_quant_map", "nf4.weight.quant_state.bitsandbytes__nf4"
      (JSON in a uint8 tensor), "nf4.bias"; and "fp4.*" the same for an fp4 layer without double quantization.
      The original f32 weights and the bnb dequantized weights are in nf4_linear4bit.rkgd (lin_nf4.w,
      lin_nf4.deq, lin_fp4.w, lin_fp4.deq), and the layer's forward on a small input: lin_<k>.x (3, in) f32,
      lin_<k>.y_f32 = bnb.matmul_4bit(x, W, bias) and lin_<k>.y_bf16 = the same with x and bias in bf16 (widened).
      On the CPU bitsandbytes 0.50.2 computes matmul_4bit (no grad, no CPU repacking) as dequantize_4bit to x's dtype
      (the fp32 product code * absmax, rounded once to bf16 for bf16 x) followed by torch.nn.functional.linear in
      that dtype: the script asserts exactly that. (Linear4bit.forward itself repacks the weight on CPUs with
      AVX512-BF16 and computes in bf16 there, so it is machine dependent: not used.)
"""
import os
import sys

import numpy as np
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rkgold  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))


def tie_case(kind):
    """Blocks whose values sit exactly on the float32 midpoints between levels (absmax exactly 1.0)."""
    code = F.get_4bit_type(kind, device="cpu")
    s = torch.sort(code).values
    mid = ((s[:-1] + s[1:]) / 2).float()
    row = torch.zeros(64)
    row[0] = 1.0
    row[1:16] = mid
    row[16:31] = -mid
    row[31:] = torch.linspace(-0.999, 0.999, 33)
    return row.reshape(1, 64)


def cases():
    g = torch.Generator().manual_seed(1234)
    out = []
    for kind in ("nf4", "fp4"):
        out.append((kind + "_4x64_b64", kind, 64, torch.randn(4, 64, generator=g) * 0.05))
        out.append((kind + "_3x70_b64", kind, 64, torch.randn(3, 70, generator=g)))          # partial last block
        out.append((kind + "_5x33_b128", kind, 128, torch.randn(5, 33, generator=g) * 3))    # odd n: padded nibble
        z = torch.randn(6, 100, generator=g) * 0.02
        z[0, :] = 0.0            # first full block all zero
        z[5, 100 - 88:] = 0.0    # partial last block (600 % 256 = 88) all zero
        out.append((kind + "_6x100_b256_zero", kind, 256, z))
        out.append((kind + "_ties_b64", kind, 64, tie_case(kind)))
    # > 256 blocks: two nested blocks, the second one partial
    out.append(("nf4_40x512_b64", "nf4", 64, torch.randn(40, 512, generator=g) * 0.02))
    out.append(("fp4_9x300_b128", "fp4", 128, torch.randn(9, 300, generator=g)))
    return out


def main():
    tensors = [
        ("code_nf4", F.get_4bit_type("nf4", device="cpu")),
        ("code_fp4", F.get_4bit_type("fp4", device="cpu")),
        ("code_dyn8", F.create_dynamic_map(signed=True)),
    ]
    names = []
    for name, kind, bs, x in cases():
        x = x.float().contiguous()
        names.append(name)
        q, st = F.quantize_4bit(x, blocksize=bs, quant_type=kind, compress_statistics=False)
        deq = F.dequantize_4bit(q, st)
        st.dtype = torch.bfloat16
        deq_bf16 = F.dequantize_4bit(q, st).float()
        q2, st2 = F.quantize_4bit(x, blocksize=bs, quant_type=kind, compress_statistics=True)
        assert torch.equal(q, q2)
        dq_absmax = F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset
        dq_deq = F.dequantize_4bit(q2, st2)
        tensors += [
            (name + ".x", x.numpy()),
            (name + ".meta", np.array([0 if kind == "nf4" else 1, bs, x.shape[0], x.shape[1]], dtype=np.int32)),
            (name + ".packed", q.reshape(-1).numpy().astype(np.int32)),
            (name + ".absmax", st.absmax.numpy()),
            (name + ".deq", deq.numpy()),
            (name + ".deq_bf16", deq_bf16.numpy()),
            (name + ".dq_codes", st2.absmax.numpy().astype(np.int32)),
            (name + ".dq_scale", st2.state2.absmax.numpy()),
            (name + ".dq_offset", np.array([st2.offset.item()], dtype=np.float32)),
            (name + ".dq_absmax", dq_absmax.numpy()),
            (name + ".dq_deq", dq_deq.numpy()),
        ]
    # 8-bit blockwise quantization with the signed dynamic map (what double quantization runs), crafted values:
    # fine spacing near 0, exact code values, a zero block, a partial block.
    g = torch.Generator().manual_seed(99)
    dyn = F.create_dynamic_map(signed=True)
    a = torch.randn(256, generator=g)
    a[0] = 1.0
    a[1:9] = torch.tensor([2e-6, 1e-7, -2e-6, 0.5, 1.4e-5, 0.0, -0.0, -1.0])
    a[9:40] = dyn[100:131] * 1.0
    b = torch.zeros(256)
    c = torch.randn(77, generator=g) * 1e-3
    q8x = torch.cat([a, b, c]).float()
    q8, s8 = F.quantize_blockwise(q8x, code=dyn, blocksize=256)
    tensors += [("q8.x", q8x.numpy()), ("q8.codes", q8.numpy().astype(np.int32)), ("q8.absmax", s8.absmax.numpy())]
    rkgold.write(os.path.join(OUT, "nf4.rkgd"), tensors)

    # A Linear4bit state dict, as bitsandbytes / transformers save it.
    torch.manual_seed(7)
    gx = torch.Generator().manual_seed(77)  # inputs of the forward, off the global stream the layers use
    sd = {}
    lin_gold = []
    for kind, nested, (o, i) in (("nf4", True, (24, 40)), ("fp4", False, (5, 70))):
        w = torch.randn(o, i) * 0.1
        lin = bnb.nn.Linear4bit(i, o, bias=True, compress_statistics=nested, quant_type=kind)
        lin.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type=kind, compress_statistics=nested)
        lin = lin.to("cpu")
        for k, v in lin.state_dict().items():
            sd[kind + "." + k] = v.contiguous()
        deq = F.dequantize_4bit(lin.weight.data, lin.weight.quant_state).float()
        lin_gold += [("lin_%s.w" % kind, w.numpy()), ("lin_%s.deq" % kind, deq.numpy())]
        with torch.no_grad():
            x = torch.randn(3, i, generator=gx)
            qs, bias = lin.weight.quant_state, lin.bias.data
            y32 = bnb.matmul_4bit(x, lin.weight.t(), quant_state=qs, bias=bias)
            ybf = bnb.matmul_4bit(x.bfloat16(), lin.weight.t(), quant_state=qs, bias=bias.bfloat16())
            assert torch.equal(y32, torch.nn.functional.linear(x, deq, bias))
            deq_bf = F.dequantize_4bit(lin.weight.data, qs).to(torch.float32).bfloat16()
            assert torch.equal(ybf, torch.nn.functional.linear(x.bfloat16(), deq_bf, bias.bfloat16()))
        lin_gold += [("lin_%s.x" % kind, x.numpy()), ("lin_%s.y_f32" % kind, y32.numpy()),
                     ("lin_%s.y_bf16" % kind, ybf.float().numpy())]
    save_file(sd, os.path.join(OUT, "nf4_linear4bit.safetensors"))
    rkgold.write(os.path.join(OUT, "nf4_linear4bit.rkgd"), lin_gold)
    print("bitsandbytes", bnb.__version__, "torch", torch.__version__, "wrote", len(tensors), "tensors")


if __name__ == "__main__":
    main()
