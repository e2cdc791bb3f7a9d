#!/usr/bin/env python3
"""gen_lora_nf4.py: golden data for the LoRA-over-NF4 tests in tests/test_lora.c (QLoRA's adapted layer).

Everything comes from PEFT's own `lora.bnb.Linear4bit` wrapped around a bitsandbytes `Linear4bit`, on the CPU
(bitsandbytes 0.50.2 quantizes, dequantizes and runs matmul_4bit on the CPU; PEFT picks its 4-bit LoRA layer
when the model says `is_loaded_in_4bit`). Nothing is re-implemented here.

Notes on the CPU path of bitsandbytes 0.50.2:
  - the layer is only ever used in training mode: `eval()` switches bnb to an AVX512-BF16 packed weight
    (packing_format_for_cpu) whose forward rounds through bf16 and breaks autograd afterwards;
  - in training mode matmul_4bit dequantizes to fp32 and runs F.linear, so y is x @ dequant(W4)^T + b exactly;
  - its C dequantizer (cdequantize_blockwise_cpu_nf4_fp32) walks the weight as (rows, cols) and picks the wrong
    absmax when cols is not a multiple of the blocksize (bnb's CUDA kernels and its generic fallback index the
    flat weight, as rk does), so K here is a multiple of 64.

Merge exactness: PEFT's merge is dequantize -> + (B @ A) * scaling -> re-quantize (Params4bit on the CPU). A and
B are small integers times powers of two and the scaling is 2, so B @ A and the product with the scaling are exact
in fp32 whatever the summation order; dequant(W4) + delta is then one fp32 rounding on both sides, and the
re-quantized bytes must agree bit for bit with rk_cpu_lora_merge_nf4 (and the unmerge likewise).

Writes tests/golden/lora_nf4.rkgd (format: tests/golden/rkgold.py):
  scale                 [s]
  A (r,K), B (N,r)      the adapter
  W (N,K), b (N)        the original fp32 base weight, quantized by Linear4bit (NF4, blocksize 64)
  w4.packed, w4.absmax  the quantized base as bnb stores it (packed bytes as i32; fp32 absmax, no double quant)
  w4.deq                dequantize_4bit(W4), fp32
  x (M,K), dy (M,N)     inputs; y = PEFT forward (train mode, lora_dropout 0); dx, dA, dB = autograd of sum(y*dy)
  merged.packed, merged.absmax, merged.deq      after merge_and_unload()
  unmerged.packed, unmerged.absmax              after merge_adapter() then unmerge_adapter()
  dq.packed, dq.deq                             the same merge on a double-quantized (compress_statistics) base,
  dq.absmax_q, dq.scale, dq.offset              whose nested state is also recorded (bnb takes the offset as torch's
  dq.merged.packed, dq.merged.deq               float32 mean of absmax, which can be 1 ulp from a double mean)

    python3 tests/golden/gen_lora_nf4.py
"""
import os
import sys
import warnings

import numpy as np
import torch
from torch import nn

import bitsandbytes as bnb
import bitsandbytes.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rkgold  # noqa: E402

from peft import LoraConfig, get_peft_model  # noqa: E402

warnings.filterwarnings("ignore")  # PEFT warns that merging into 4 bits rounds; that is the point
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora_nf4.rkgd")
M_B, M_T, K, N, R, ALPHA = 2, 3, 192, 40, 8, 16  # scaling = alpha / r = 2


class Net(nn.Module):
    """One adapted projection, built around a Linear4bit the way transformers loads a 4-bit model."""

    def __init__(self, w, b, nested):
        super().__init__()
        lin = bnb.nn.Linear4bit(K, N, bias=True, compute_dtype=torch.float32, compress_statistics=nested,
                                quant_type="nf4")
        lin.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, compress_statistics=nested, quant_type="nf4")
        lin.bias = nn.Parameter(b.clone(), requires_grad=False)
        self.proj = lin.to("cpu")
        self.is_loaded_in_4bit = True  # what makes PEFT dispatch its lora.bnb.Linear4bit


def peft_net(w, b, A, B, nested):
    cfg = LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=["proj"])
    model = get_peft_model(Net(w, b, nested), cfg)
    mod = model.base_model.model.proj
    assert type(mod).__module__.endswith("lora.bnb"), type(mod)
    with torch.no_grad():
        mod.lora_A["default"].weight.copy_(A)
        mod.lora_B["default"].weight.copy_(B)
    return model, mod


def packed(weight):
    return weight.data.reshape(-1).numpy().astype(np.int32)


def deq(weight):
    return F.dequantize_4bit(weight.data, weight.quant_state).float().numpy()


def main():
    g = torch.Generator().manual_seed(2024)
    w = torch.randn(N, K, generator=g) * 0.05
    b = torch.rand(N, generator=g) - 0.5
    # exact in fp32 under any summation order (see the module docstring)
    A = torch.randint(-16, 17, (R, K), generator=g).float() / 256.0
    B = torch.randint(-16, 17, (N, R), generator=g).float() / 64.0
    x = torch.rand(M_B, M_T, K, generator=g) * 2 - 1
    dy = torch.rand(M_B, M_T, N, generator=g) * 2 - 1

    model, mod = peft_net(w, b, A, B, nested=False)
    base = mod.get_base_layer()
    scale = mod.scaling["default"]
    assert scale == 2.0
    w4_packed, w4_absmax, w4_deq = packed(base.weight), base.weight.quant_state.absmax.numpy().copy(), deq(base.weight)
    xx = x.clone().requires_grad_(True)
    y = mod(xx)
    (y * dy).sum().backward()
    out = [
        ("scale", np.array([scale], np.float32)), ("A", A.numpy()), ("B", B.numpy()),
        ("W", w.numpy()), ("b", b.numpy()),
        ("w4.packed", w4_packed), ("w4.absmax", w4_absmax), ("w4.deq", w4_deq),
        ("x", x.numpy().reshape(-1, K)), ("dy", dy.numpy().reshape(-1, N)), ("y", y.detach().numpy().reshape(-1, N)),
        ("dx", xx.grad.numpy().reshape(-1, K)),
        ("dA", mod.lora_A["default"].weight.grad.numpy()), ("dB", mod.lora_B["default"].weight.grad.numpy()),
    ]
    merged = model.merge_and_unload().proj
    assert isinstance(merged, bnb.nn.Linear4bit)
    out += [("merged.packed", packed(merged.weight)), ("merged.absmax", merged.weight.quant_state.absmax.numpy()),
            ("merged.deq", deq(merged.weight))]

    model, mod = peft_net(w, b, A, B, nested=False)
    model.merge_adapter()
    model.unmerge_adapter()
    wt = mod.get_base_layer().weight
    out += [("unmerged.packed", packed(wt)), ("unmerged.absmax", wt.quant_state.absmax.numpy())]

    model, mod = peft_net(w, b, A, B, nested=True)
    wt = mod.get_base_layer().weight
    assert wt.quant_state.nested
    qs = wt.quant_state
    out += [("dq.packed", packed(wt)), ("dq.deq", deq(wt)), ("dq.absmax_q", qs.absmax.numpy().astype(np.int32)),
            ("dq.scale", qs.state2.absmax.numpy()), ("dq.offset", np.array([qs.offset.item()], np.float32))]
    merged = model.merge_and_unload().proj
    assert merged.weight.quant_state.nested
    out += [("dq.merged.packed", packed(merged.weight)), ("dq.merged.deq", deq(merged.weight))]

    rkgold.write(OUT, out)
    print("bitsandbytes", bnb.__version__, "torch", torch.__version__, "wrote", OUT)


if __name__ == "__main__":
    main()
