"""Peer for bench_finetune_cpu: one fine-tuning step of transformers' BertForSequenceClassification (multi-label,
BCE) with torch.optim.AdamW and gradient clipping on the CPU, same documents (the first B of the data file rendered
as "Title: {TITLE}\\nBody: {BODY}", padded to the longest, at most max-length tokens), threads and label count.
Dropout as in the model's config (train mode), as ours.

  python3 bench/peers/finetune_torch.py [--model DIR] [--data CSV] [--batch 16] [--max-length 256] [--threads T]
"""
import argparse
import csv
import gzip
import os
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
ap.add_argument("--data", default="../shared/datasets/reuters21578/train.csv.gz")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--max-length", type=int, default=256)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()

import torch  # noqa: E402

torch.set_num_threads(a.threads)
from transformers import AutoTokenizer, BertForSequenceClassification  # noqa: E402

with gzip.open(a.data, "rt", encoding="utf-8", newline="") as f:
    rd = csv.reader(f)
    header = next(rd)
    rows = [r for _, r in zip(range(a.batch), rd)]
labels = header[3:]
texts = [f"Title: {r[1]}\nBody: {r[2]}" for r in rows]
y = torch.tensor([[float(v) for v in r[3:]] for r in rows])
tok = AutoTokenizer.from_pretrained(a.model)
enc = tok(texts, padding=True, truncation=True, max_length=a.max_length, return_tensors="pt")
m = BertForSequenceClassification.from_pretrained(a.model, num_labels=len(labels),
                                                  problem_type="multi_label_classification").train()
opt = torch.optim.AdamW(m.parameters(), lr=5e-5, weight_decay=0.01)
ts = []
for r in range(a.reps + 1):
    t0 = time.perf_counter()
    loss = m(**enc, labels=y).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    if r > 0:
        ts.append(time.perf_counter() - t0)
med = statistics.median(ts)
ntok = int(enc["attention_mask"].sum())
print(f"finetune_cpu_peer transformers torch={torch.__version__} B={a.batch} T={enc['input_ids'].shape[1]} "
      f"threads={a.threads} peer_ms={med * 1e3:.1f} peer_tokens_per_s={ntok / med:.0f}")
