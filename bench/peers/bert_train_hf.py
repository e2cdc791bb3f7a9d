"""Peer for bench_finetune: one full fine-tuning step of transformers' BertForSequenceClassification (multi-label
BCE, 6 labels) with bf16 autocast, torch.optim.AdamW (fp32 weights) and gradient clipping at 1.0, random weights,
random token ids (B x T, all valid) and random 0/1 labels; BERT-base and BERT-large at B32 T512 by default (the
shapes of ../shared/peers/torch_anchors_bert_train.py). Train mode: dropout 0.1 (hidden, attention, classifier).
Median of 10 steps after 3 warm-ups, each ending with torch.cuda.synchronize(). Prints
`RESULT bert_base_fullft_bf16_B32_T512 <ms> ms`, the key bench/bench_finetune.c prints. Skips without CUDA.

  python3 bench/peers/bert_train_hf.py [--B 32] [--T 512] [--labels 6] [--reps 10] [--config all|base|large]
"""
import argparse
import time

ap = argparse.ArgumentParser()
ap.add_argument("--B", type=int, default=32)
ap.add_argument("--T", type=int, default=512)
ap.add_argument("--labels", type=int, default=6)
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--config", default="all")
a = ap.parse_args()

try:
    import torch
    from transformers import BertConfig, BertForSequenceClassification
except ImportError as e:
    print(f"peer_bert_train: skipped ({e})")
    raise SystemExit(0)
if not torch.cuda.is_available():
    print("peer_bert_train: skipped (no CUDA device)")
    raise SystemExit(0)

dev = "cuda"
torch.manual_seed(0)
shapes = {"base": dict(), "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096)}
for tag, kw in shapes.items():
    if a.config not in ("all", tag):
        continue
    cfg = BertConfig(num_labels=a.labels, **kw)
    cfg.problem_type = "multi_label_classification"
    m = BertForSequenceClassification(cfg).to(dev).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-5, weight_decay=0.01)
    ids = torch.randint(1000, 30000, (a.B, a.T), device=dev)
    lab = torch.randint(0, 2, (a.B, a.labels), device=dev).float()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(input_ids=ids, labels=lab)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    med = ts[len(ts) // 2]
    print(f"peer_bert_train {tag} bf16 B={a.B} T={a.T}: {med:.1f} ms/step, {a.B / med * 1e3:.1f} seq/s "
          f"(attn impl {m.config._attn_implementation})", flush=True)
    print(f"RESULT bert_{tag}_fullft_bf16_B{a.B}_T{a.T} {med:.1f} ms", flush=True)
    del m, opt
    torch.cuda.empty_cache()
