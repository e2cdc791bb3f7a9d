"""Golden data for the trainable BERT classifier (tests/test_train_model.c, host/models/bert_cls.c).

A tiny random BertForSequenceClassification (the sizes of tests/golden/tiny_bert; num_labels 5,
problem_type multi_label_classification, every dropout probability 0), seeded, with LayerNorm parameters and
biases perturbed so they are non-trivial. Saved as a Hugging Face directory tests/golden/tiny_bert_cls/
(config.json + model.safetensors + vocab.txt copied from tiny_bert). The reference numbers are computed in float64
from exactly the saved float32 weights, in training mode (dropout 0), and written to tests/golden/bert_cls.rkgd:

  ids, mask, types (B,T) i32; labels (B,L); logits (B,L); loss (1); and "grad.<name>" for every parameter of
  model.named_parameters() after loss.backward(), named as in the state dict.

Run from the repository root:  python3 tests/golden/gen_bert_cls.py
"""
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import rkgold  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(4242)
    cfg = BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=80, max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     num_labels=5, problem_type="multi_label_classification")
    m = BertForSequenceClassification(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "LayerNorm" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
            # larger head weights, so the classifier gradients do not vanish against the tolerance
            if n.startswith("classifier") or n.startswith("bert.pooler"):
                p.mul_(10.0)
    out = os.path.join(HERE, "tiny_bert_cls")
    m.save_pretrained(out, safe_serialization=True)
    shutil.copyfile(os.path.join(HERE, "tiny_bert", "vocab.txt"), os.path.join(out, "vocab.txt"))

    B, T, L = 3, 13, cfg.num_labels
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=g)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[0, 6:] = 1
    types[1, 5:9] = 1
    labels = torch.randint(0, 2, (B, L), generator=g).float()

    md = m.double().train()  # training mode: dropout is active but every probability is 0
    md.zero_grad()
    r = md(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels.double())
    r.loss.backward()
    tensors = [("ids", ids.numpy()), ("mask", mask.numpy()), ("types", types.numpy()), ("labels", labels.numpy()),
               ("logits", r.logits.detach().numpy()), ("loss", r.loss.detach().reshape(1).numpy())]
    names = []
    for n, p in md.named_parameters():
        assert p.grad is not None, n
        tensors.append(("grad." + n, p.grad.numpy()))
        names.append(n)
    rkgold.write(os.path.join(HERE, "bert_cls.rkgd"), tensors)
    with open(os.path.join(HERE, "bert_cls_names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    print("loss", r.loss.item(), "params", len(names))


if __name__ == "__main__":
    main()
