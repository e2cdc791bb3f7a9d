"""Peer of bench/bench_ops.c: the PyTorch equivalents of our memory-bound ops at BERT-base scale (B=64, T=256,
C=768) in bf16, as Hugging Face's BertModel runs them (eager: LayerNorm after a separate residual add; embeddings as
three gathers and adds). Same keys, byte formulas and timing as bench_ops.c: CUDA events, 3 warm-ups, median of 30,
the L2 flushed before each repetition. Prints `RESULT <key> <GB/s> GB/s`.

    python3 bench/peers/ops_torch.py
"""
import torch
import torch.nn.functional as F

from timing import median_ms  # bench/peers/timing.py

B, T, C, NH, V = 64, 256, 768, 12, 30522
REPS = 30
dev, dt, dn, es = "cuda", torch.bfloat16, "bf16", 2
torch.manual_seed(0)
props = torch.cuda.get_device_properties(0)
l2 = getattr(props, "L2_cache_size", 64 << 20) or (64 << 20)
flush = torch.empty(2 * l2, dtype=torch.uint8, device=dev)
print(f"device {props.name} torch={torch.__version__}")


def bench(fn):
    with torch.inference_mode():
        return median_ms(fn, flush, REPS)[0]


def report(op, key, ms, nbytes):
    gbs = nbytes / (ms * 1e-3) / 1e9
    print(f"op {op:10s} {key:40s} median_ms={ms:.4f} {gbs:.0f} GB/s")
    print(f"RESULT {key} {gbs:.0f} GB/s", flush=True)


def rnd(*shape):
    return torch.empty(*shape, device=dev, dtype=dt).uniform_(-1, 1)


N = B * T
a8 = torch.ones(1 << 30, dtype=torch.uint8, device=dev)
b8 = torch.empty_like(a8)
report("copy", "d2d_copy_1GiB", bench(lambda: b8.copy_(a8)), 2.0 * (1 << 30))
del a8, b8

x, r, w, b = rnd(N, C), rnd(N, C), rnd(C), rnd(C)
report("layernorm", f"layernorm_{dn}_N{N}_C{C}_residual",
       bench(lambda: F.layer_norm(r + x, (C,), w, b, 1e-12)), 3.0 * N * C * es)
del x, r

I = 4 * C
a, bb = rnd(N, I), rnd(N, I)
report("gelu", f"gelu_{dn}_N{N}_C{I}", bench(lambda: F.gelu(a)), 2.0 * N * I * es)
report("add", f"add_{dn}_N{N}_C{I}", bench(lambda: a + bb), 3.0 * N * I * es)
del a, bb

R = B * NH * T
s = rnd(R, T)
report("softmax", f"softmax_{dn}_N{R}_C{T}", bench(lambda: torch.softmax(s, dim=-1)), 2.0 * R * T * es)
del s

wte, wpe, wtt = rnd(V, C), rnd(512, C), rnd(2, C)
ids = torch.randint(0, V, (B, T), device=dev)
tids = torch.randint(0, 2, (B, T), device=dev)
pos = torch.arange(T, device=dev).unsqueeze(0)
emb = lambda: wte[ids] + wtt[tids] + wpe[pos]  # noqa: E731  (HF BertEmbeddings order)
report("embed", f"embed_{dn}_B{B}_T{T}_C{C}", bench(emb), 2.0 * N * C * es)
report("embed_ln", f"embed_ln_{dn}_B{B}_T{T}_C{C}", bench(lambda: F.layer_norm(emb(), (C,), w, b, 1e-12)),
       2.0 * N * C * es)

x3 = rnd(B, T, C)
lens = torch.tensor([T // 2 + (i * 7919) % (T // 2 + 1) for i in range(B)], device=dev)
m = (torch.arange(T, device=dev).unsqueeze(0) < lens.unsqueeze(1)).to(dt)
pool = lambda: (x3 * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)  # noqa: E731
report("pool", f"pool_mean_{dn}_B{B}_T{T}_C{C}", bench(pool), (B * T * C + B * C) * es)
p = pool()
report("l2norm", f"l2norm_{dn}_B{B}_C{C}", bench(lambda: F.normalize(p, dim=-1)), 2.0 * B * C * es)
