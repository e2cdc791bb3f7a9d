"""Peer for bench_embed_cpu: sentence-transformers embedding throughput on the CPU, same documents (the first N of
the data file rendered as "Title: {TITLE}\\nBody: {BODY}"), threads, max length and batch size.

  python3 bench/peers/embed_st.py [--model DIR] [--data CSV] [--n N] [--max-length 256] [--batch 32] [--threads T]
"""
import argparse
import csv
import gzip
import io
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="models/all-MiniLM-L6-v2")
ap.add_argument("--data", default="../shared/datasets/reuters21578/train.csv.gz")
ap.add_argument("--n", type=int, default=512)
ap.add_argument("--max-length", type=int, default=256)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()

import torch  # noqa: E402

torch.set_num_threads(a.threads)
from sentence_transformers import SentenceTransformer  # noqa: E402

opener = gzip.open if a.data.endswith(".gz") else open
with opener(a.data, "rt", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))[: a.n]
texts = [f"Title: {r['TITLE']}\nBody: {r['BODY']}" for r in rows]
m = SentenceTransformer(a.model, device="cpu")
m.max_seq_length = a.max_length
m.encode(texts, batch_size=a.batch, normalize_embeddings=True)  # warm-up
ts = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    m.encode(texts, batch_size=a.batch, normalize_embeddings=True)
    ts.append(time.perf_counter() - t0)
med = statistics.median(ts)
print(f"embed_cpu_peer sentence-transformers torch={torch.__version__} n={len(texts)} threads={a.threads} "
      f"peer_s={med:.3f} peer_docs_per_s={len(texts) / med:.1f}")
