"""Peer for BERT inference on the GPU: Hugging Face transformers BertModel (random weights), B=64, T=256, no
attention mask (as ../shared/ANCHORS.md's figure), default attention implementation (SDPA), torch.inference_mode.
Two configs: bert-base (BertConfig() defaults) and the all-MiniLM-L6-v2 shape (hidden 384, 6 layers, 12 heads,
FFN 1536, vocab 30522); each in fp16 (the anchor's dtype) and bf16 (what our CUDA backend runs on sm_80+).
Timed with CUDA events, 3 warm-ups, median of 10. Prints `RESULT <key> <seq/s> seq/s`, for example
`RESULT bert_base_fp16_B64_T256 8732 seq/s`; a bench of ours that prints the same key is joined by
.ci/device_check.sh.

    python3 bench/peers/bert_hf.py
"""
import torch
from transformers import BertConfig, BertModel

B, T, REPS = 64, 256, 10
dev = "cuda"
torch.manual_seed(0)
CONFIGS = [
    ("bert_base", BertConfig()),
    ("minilm_l6", BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                             vocab_size=30522, max_position_embeddings=512)),
]
props = torch.cuda.get_device_properties(0)
import transformers  # noqa: E402

print(f"device {props.name} torch={torch.__version__} transformers={transformers.__version__}")
for tag, cfg in CONFIGS:
    for dt_name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        m = BertModel(cfg).to(dev, dt).eval()
        ids = torch.randint(1000, cfg.vocab_size, (B, T), device=dev)
        with torch.inference_mode():
            for _ in range(3):
                m(input_ids=ids)
            torch.cuda.synchronize()
            ts = []
            for _ in range(REPS):
                s = torch.cuda.Event(enable_timing=True)
                e = torch.cuda.Event(enable_timing=True)
                s.record()
                m(input_ids=ids)
                e.record()
                torch.cuda.synchronize()
                ts.append(s.elapsed_time(e))
        ts.sort()
        ms = ts[len(ts) // 2]
        key = f"{tag}_{dt_name}_B{B}_T{T}"
        print(f"bert {key:28s} median_ms={ms:.3f} {B / ms * 1e3:.0f} seq/s attn={getattr(m.config, '_attn_implementation', 'default')}")
        print(f"RESULT {key} {B / ms * 1e3:.0f} seq/s", flush=True)
        del m
        torch.cuda.empty_cache()
