"""Golden data for tests/test_lora.c: a PEFT LoRA adapter on a tiny torch model, and what PEFT computes with it.

Writes (all small, committed):
  tests/golden/lora_adapter/adapter_model.safetensors, adapter_config.json   (PEFT save_pretrained)
  tests/golden/lora.rkgd   per adapted module i (order below): m<i>.W, m<i>.b (frozen base), m<i>.A, m<i>.B,
                           m<i>.x (M,K), m<i>.y (M,N), m<i>.dy, m<i>.dx, m<i>.dA, m<i>.dB (torch autograd of
                           sum(y * dy)), m<i>.Wmerged (PEFT merge()); plus "scale".

The model mimics BERT module paths so the target matcher is exercised: target_modules = ["query", "value",
"output.dense"] adapts attention.self.query/value and output.dense but not attention.self.key nor
intermediate.dense. B is set to non-zero random values so the adapter path matters.

  python3 tests/golden/gen_lora.py              regenerate
  python3 tests/golden/gen_lora.py --check DIR  load an adapter folder written by rk (RK_LORA_EXPORT=DIR
                                                build/tests/test_lora) into PEFT and check that its forward
                                                matches the golden y (rk re-saves the golden adapter there)
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # PEFT looks up the base model's config on the Hub when saving

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rkgold  # noqa: E402

from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "lora_adapter")
OUT_RKGD = os.path.join(HERE, "lora.rkgd")

C, I = 16, 32  # hidden, intermediate
MODULES = [  # (path, K, N), the adapted ones, in the order of lora.rkgd
    ("encoder.layer.0.attention.self.query", C, C),
    ("encoder.layer.0.attention.self.value", C, C),
    ("encoder.layer.0.output.dense", I, C),
]


class SelfAttn(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = SelfAttn()


class Dense(nn.Module):
    def __init__(self, k, n):
        super().__init__()
        self.dense = nn.Linear(k, n)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.intermediate = Dense(C, I)
        self.output = Dense(I, C)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([Layer()])


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()


def config():
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value", "output.dense"])


def base_model():
    torch.manual_seed(0)
    return Tiny()


def inputs(k, n, i):
    g = torch.Generator().manual_seed(100 + i)
    x = torch.rand(2, 3, k, generator=g) * 2 - 1  # (B, T, K): flattened to (6, K) in the golden file
    dy = torch.rand(2, 3, n, generator=g) * 2 - 1
    return x, dy


def check(dir_):
    gold = {}
    import struct
    with open(OUT_RKGD, "rb") as f:
        assert f.read(4) == b"RKGD"
        _, cnt = struct.unpack("<II", f.read(8))
        for _ in range(cnt):
            (ln,) = struct.unpack("<I", f.read(4))
            name = f.read(ln).decode()
            _, nd = struct.unpack("<II", f.read(8))
            dims = struct.unpack("<%dq" % nd, f.read(8 * nd))
            gold[name] = np.frombuffer(f.read(4 * int(np.prod(dims))), "<f4").reshape(dims)
    model = PeftModel.from_pretrained(base_model(), dir_)
    worst = 0.0
    for i, (path, k, n) in enumerate(MODULES):
        mod = model.base_model.model.get_submodule(path)
        for kind in "AB":  # the weights really came from the file (a missing key would leave PEFT's init)
            w = getattr(mod, "lora_" + kind)["default"].weight.detach().numpy()
            assert np.array_equal(w, gold["m%d.%s" % (i, kind)]), "%s: lora_%s differs" % (path, kind)
        x, _ = inputs(k, n, i)
        y = mod(x).detach().numpy().reshape(-1, n)
        err = float(np.max(np.abs(y - gold["m%d.y" % i]) / (1e-6 + np.abs(gold["m%d.y" % i]))))
        worst = max(worst, err)
        print("%s: max rel diff %.3g" % (path, err))
    ok = worst < 1e-5
    print("rk adapter re-loaded by PEFT:", "OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    torch.manual_seed(0)
    model = get_peft_model(base_model(), config())
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for path, _, _ in MODULES:
            mod = model.base_model.model.get_submodule(path)
            mod.lora_B["default"].weight.copy_(torch.rand(mod.lora_B["default"].weight.shape, generator=g) - 0.5)
    model.peft_config["default"].base_model_name_or_path = "rk-tiny-test"
    model.save_pretrained(OUT_DIR)
    if os.path.exists(os.path.join(OUT_DIR, "README.md")):
        os.remove(os.path.join(OUT_DIR, "README.md"))  # PEFT's model card: not needed
    # PEFT keeps target_modules as a set, so its order in the file changes from run to run: sort it, so that
    # regenerating gives identical files
    cfg_path = os.path.join(OUT_DIR, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)

    scale = model.base_model.model.get_submodule(MODULES[0][0]).scaling["default"]
    out = [("scale", np.array([scale], np.float32))]
    for i, (path, k, n) in enumerate(MODULES):
        mod = model.base_model.model.get_submodule(path)
        base = mod.get_base_layer()
        A, B = mod.lora_A["default"].weight, mod.lora_B["default"].weight
        x, dy = inputs(k, n, i)
        x.requires_grad_(True)
        y = mod(x)
        (y * dy).sum().backward()
        W, b = base.weight.detach().clone(), base.bias.detach().clone()
        mod.merge()
        Wm = base.weight.detach().clone()
        mod.unmerge()
        out += [
            ("m%d.W" % i, W.numpy()), ("m%d.b" % i, b.numpy()),
            ("m%d.A" % i, A.detach().numpy()), ("m%d.B" % i, B.detach().numpy()),
            ("m%d.x" % i, x.detach().numpy().reshape(-1, k)), ("m%d.y" % i, y.detach().numpy().reshape(-1, n)),
            ("m%d.dy" % i, dy.numpy().reshape(-1, n)), ("m%d.dx" % i, x.grad.numpy().reshape(-1, k)),
            ("m%d.dA" % i, A.grad.numpy()), ("m%d.dB" % i, B.grad.numpy()), ("m%d.Wmerged" % i, Wm.numpy()),
        ]
        assert base.weight.grad is None  # frozen
    rkgold.write(OUT_RKGD, out)
    print("wrote", OUT_RKGD, "and", OUT_DIR)


if __name__ == "__main__":
    main()
