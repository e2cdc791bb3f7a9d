"""Golden data for the BERT encoder (tests/test_models.c).

1. A tiny random BertModel (seeded), saved as a Hugging Face directory tests/golden/tiny_bert/ (config.json +
   model.safetensors), with padded inputs and its last hidden states in tests/golden/tiny_bert.rkgd.
2. all-MiniLM-L6-v2 (fetched by `make models`): sentence embeddings from sentence-transformers for varied
   sentences, with the HF token ids, in tests/golden/minilm.rkgd. The sentences are in minilm_sentences.txt.

Run from the repository root:  python3 tests/golden/gen_bert.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import rkgold  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def tiny():
    from transformers import BertConfig, BertModel

    torch.manual_seed(1234)
    cfg = BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=80, max_position_embeddings=40, type_vocab_size=2,
                     hidden_act="gelu", layer_norm_eps=1e-12)
    m = BertModel(cfg, add_pooling_layer=False).eval()
    # random weights are small (std 0.02): scale LayerNorm and biases up so the test sees non-trivial values
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "LayerNorm" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    out = os.path.join(HERE, "tiny_bert")
    m.save_pretrained(out, safe_serialization=True)
    # a vocabulary of exactly vocab_size entries, so the tiny model also runs end to end through the drivers
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + list("0123456789") + list(".,:;!?-()'\"")
    vocab += ["the", "of", "and", "to", "in", "title", "body", "abstract", "market", "oil", "grain", "model",
              "data", "theory", "physics", "stock", "rate", "bank"]
    vocab = vocab[: cfg.vocab_size] + ["[unused%d]" % i for i in range(cfg.vocab_size - len(vocab))]
    assert len(vocab) == cfg.vocab_size
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    B, T = 3, 13
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[0, 6:] = 1
    with torch.no_grad():
        h = m(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    rkgold.write(os.path.join(HERE, "tiny_bert.rkgd"),
                 [("ids", ids.numpy()), ("mask", mask.numpy()), ("types", types.numpy()), ("hidden", h.numpy())])


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Wheat futures rose sharply on the Chicago Board of Trade after the USDA report.",
    "Crude oil prices fell 2% as OPEC members failed to agree on production quotas.",
    "The Bundesbank left its discount rate unchanged at 3.0 pct, a spokesman said.",
    "Café au lait, naïve résumé, and jalapeño — accents everywhere!",
    "東京証券取引所の株価は上昇した。",
    "Deep learning models such as transformers achieve state-of-the-art results in NLP.",
    "We prove that every bounded sequence in R^n has a convergent subsequence.",
    "Gene expression profiles of 1,024 tumour samples were clustered hierarchically.",
    "",
    "   ",
    "a",
    "IBM reported first-quarter earnings of $1.23 per share, up from $0.98 a year earlier.",
    "Supercalifragilisticexpialidocious" * 4,
    "Emoji test 😀🚀 and symbols ©®™ plus math ∑∫√.",
    "The central bank intervened to support the yen against the U.S. dollar in Tokyo trading.",
    "Stochastic gradient descent with momentum converges faster on ill-conditioned problems.",
    "Short.",
    ("A long document about grain exports. " * 40).strip(),
    "Mixed CASE Words And ALLCAPS ACRONYMS like NASA, OPEC, and GATT.",
]


def minilm():
    from sentence_transformers import SentenceTransformer

    mdir = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
    st = SentenceTransformer(mdir, device="cpu")
    emb = st.encode(SENTENCES, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
    tok = st.tokenizer
    enc = tok(SENTENCES, padding="max_length", truncation=True, max_length=st.max_seq_length, return_tensors="np")
    with open(os.path.join(HERE, "minilm_sentences.txt"), "w", encoding="utf-8") as f:
        for s in SENTENCES:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    # hidden states of the first 4 sentences, for a tighter per-token check of the encoder
    from transformers import AutoModel
    hf = AutoModel.from_pretrained(mdir).eval()
    with torch.no_grad():
        sub = tok(SENTENCES[:4], padding=True, return_tensors="pt")
        hid = hf(**sub).last_hidden_state.numpy()
    rkgold.write(os.path.join(HERE, "minilm.rkgd"),
                 [("ids", enc["input_ids"]), ("mask", enc["attention_mask"]), ("embeddings", emb),
                  ("ids4", sub["input_ids"].numpy()), ("mask4", sub["attention_mask"].numpy()), ("hidden4", hid)])
    print("max_seq_length", st.max_seq_length, "emb", emb.shape)


if __name__ == "__main__":
    tiny()
    minilm()
