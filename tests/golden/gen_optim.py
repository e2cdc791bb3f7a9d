#!/usr/bin/env python3
"""gen_optim.py: AdamW / LR schedule / gradient clipping reference data for tests/test_optim.c.

Everything is computed by torch (CPU) and transformers themselves: torch.optim.AdamW (foreach=False, fused=False),
torch.nn.utils.clip_grad_norm_, transformers get_linear_schedule_with_warmup / get_scheduler,
Trainer.get_decay_parameter_names and TrainingArguments.get_warmup_steps. Nothing is re-implemented here.
Tested with torch 2.15 and transformers 5.24.

Writes (run from the repository root:  python3 tests/golden/gen_optim.py):

  tests/golden/optim_adamw.rkgd   (format: tests/golden/rkgold.py)
      names                  i32 (P): per tensor, 1 when HF puts it in the weight-decay group, in p0.* order
      p0.<name>              initial f32 parameters
      g<k>.<name>            the raw gradient given at step k (k = 0..4)
      gc<k>.<name>           the gradient after clip_grad_norm_(max_norm=1.0)
      p<k+1>.<name>          the parameters after optimizer step k
      norm                   f32 (5): the total norms returned by clip_grad_norm_
      lr_bits                i32 (5, 2): the lr used at step k as the raw IEEE double (lo word, hi word)
    AdamW(lr=1e-3, weight_decay=0.01 on the decay group, 0 on biases / LayerNorm), linear warmup 2, total 5.

  tests/golden/optim_sched.rkgd
      sched.<kind>_bits      i32 (21, 2): lambda(k) for k = 0..20 as doubles, total 20, warmup = ceil(0.1 * 20)
      sched_lr.<kind>_bits   i32 (21, 2): the LambdaLR lr for base lr 1e-3 at k = 0..20 (as stepped by torch)
      warmup                 i32 (R, 3): [warmup*1e6 rounded, total, HF warmup steps] for a few cases
      warmup_ratio_bits      i32 (R, 2): the exact warmup value (double) of each row
      decay:<param name>     i32 (1): Trainer.get_decay_parameter_names membership of a list of typical names
"""
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from transformers import Trainer, TrainingArguments, get_linear_schedule_with_warmup, get_scheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rkgold  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))


def dbits(values):
    """Doubles as (n, 2) int32: the raw little-endian words, lo then hi."""
    return np.asarray(values, dtype="<f8").view("<i4").reshape(-1, 2)


def module_tree(names_shapes):
    """An nn.Module whose named_parameters() are exactly the given dotted names (plain modules, no LayerNorm type)."""
    root = nn.Module()
    for name, shape in names_shapes:
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


def decay_names(model):
    return set(Trainer.get_decay_parameter_names(None, model))


def adamw_case():
    torch.manual_seed(1234)
    shapes = [
        ("embeddings.word_embeddings.weight", (30, 16)),
        ("embeddings.LayerNorm.weight", (16,)),
        ("embeddings.LayerNorm.bias", (16,)),
        ("encoder.layer.0.attention.self.query.weight", (16, 16)),
        ("encoder.layer.0.attention.self.query.bias", (16,)),
        ("classifier.weight", (3, 16)),
        ("classifier.bias", (3,)),
    ]
    model = module_tree(shapes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.5 * torch.randn_like(p))
    named = list(model.named_parameters())
    decay = decay_names(model)
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": 0.01},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3, foreach=False, fused=False)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=5)
    out = [("names", np.array([1 if n in decay else 0 for n, _ in named]))]
    out += [("p0." + n, p.detach().numpy().copy()) for n, p in named]
    # gradient scales: steps 0, 2, 3 are clipped (total norm > 1), steps 1 and 4 are not
    scales = [3.0, 0.02, 1.0, 10.0, 0.05]
    norms, lrs = [], []
    for k in range(5):
        for n, p in named:
            p.grad = scales[k] * torch.randn_like(p) / math.sqrt(p.numel())
            out.append(("g%d.%s" % (k, n), p.grad.numpy().copy()))
        norms.append(float(torch.nn.utils.clip_grad_norm_([p for _, p in named], max_norm=1.0)))
        for n, p in named:
            out.append(("gc%d.%s" % (k, n), p.grad.numpy().copy()))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        out += [("p%d.%s" % (k + 1, n), p.detach().numpy().copy()) for n, p in named]
    out.append(("norm", np.array(norms, dtype=np.float32)))
    out.append(("lr_bits", dbits(lrs)))
    print("norms", norms, "lrs", lrs)
    return out


DECAY_NAMES = [
    "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.LayerNorm.weight",
    "bert.embeddings.LayerNorm.bias",
    "bert.encoder.layer.0.attention.self.query.bias",
    "bert.encoder.layer.0.output.dense.weight",
    "classifier.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.post_attention_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.q_norm.weight",
    "model.norm.weight",
    "encoder.final_layer_norm.weight",
    "transformer.h.0.rmsnorm.weight",
    "transformer.ln_f.weight",
    "encoder.normalizer.weight",
    "encoder.norms.weight",
    "mlp.layer_norm_x.weight",
    "lm_head.weight",
    "base_model.model.q_proj.lora_A.default.weight",
    "bias",
    "norm",
]


def sched_case():
    out = []
    total, base = 20, 1e-3
    args = TrainingArguments(output_dir="/tmp/rk_gen_optim", warmup_steps=0.1, report_to=[])
    warmup = args.get_warmup_steps(total)
    assert warmup == math.ceil(0.1 * total) == 2
    for kind in ["constant", "constant_with_warmup", "linear", "cosine"]:
        p = nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=base)
        s = get_scheduler(kind, opt, num_warmup_steps=warmup, num_training_steps=total)
        lam = [float(s.lr_lambdas[0](k)) for k in range(total + 1)]
        lrs = []
        for _ in range(total + 1):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        out.append(("sched.%s_bits" % kind, dbits(lam)))
        out.append(("sched_lr.%s_bits" % kind, dbits(lrs)))
    rows, ratios = [], []
    for w, n in [(0.1, 20), (0.03, 100), (0.06, 50), (0.1, 7), (0.0, 10), (3.0, 10), (0.07, 1000), (0.3, 1)]:
        a = TrainingArguments(output_dir="/tmp/rk_gen_optim", warmup_steps=w, report_to=[])
        rows.append([round(w * 1e6), n, a.get_warmup_steps(n)])
        ratios.append(w)
    out.append(("warmup", np.array(rows)))
    out.append(("warmup_ratio_bits", dbits(ratios)))
    model = module_tree([(n, (1,)) for n in DECAY_NAMES])
    decay = decay_names(model)
    for n in DECAY_NAMES:
        out.append(("decay:" + n, np.array([1 if n in decay else 0])))
    print("decay", {n: n in decay for n in DECAY_NAMES})
    return out


if __name__ == "__main__":
    rkgold.write(os.path.join(OUT, "optim_adamw.rkgd"), adamw_case())
    rkgold.write(os.path.join(OUT, "optim_sched.rkgd"), sched_case())
