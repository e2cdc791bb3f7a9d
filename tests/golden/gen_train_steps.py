"""Golden data for the training loop (tests/test_train.c): three AdamW steps of the tiny
BertForSequenceClassification of tests/golden/tiny_bert_cls (dropout 0), in float32 on the CPU, as HF Trainer would
take them: AdamW (lr 1e-3, weight decay 0.01 with HF's no-decay groups), linear schedule with 1 warmup step over 3
steps, gradient clipping to norm 1.0, one batch per step. Written to tests/golden/train_steps.rkgd:

  ids.<k>, mask.<k>, types.<k>, labels.<k> for steps k = 0, 1, 2; loss (3); lr (3); gnorm (3);
  and "param.<name>" for every parameter after the third step.

Run from the repository root (after gen_bert_cls.py):  python3 tests/golden/gen_train_steps.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import rkgold  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    from transformers import BertForSequenceClassification, get_linear_schedule_with_warmup

    m = BertForSequenceClassification.from_pretrained(os.path.join(HERE, "tiny_bert_cls")).float().train()
    no_decay = lambda n: n.endswith(".bias") or "LayerNorm" in n  # noqa: E731  (HF's rule for these names)
    groups = [
        {"params": [p for n, p in m.named_parameters() if not no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in m.named_parameters() if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=3)
    g = torch.Generator().manual_seed(99)
    B, T, L = 4, 11, m.config.num_labels
    out, losses, lrs, norms = [], [], [], []
    for k in range(3):
        ids = torch.randint(1, m.config.vocab_size, (B, T), generator=g)
        ids[:, 0] = 2
        mask = torch.ones(B, T, dtype=torch.long)
        mask[k % B, 5 + k:] = 0
        ids[mask == 0] = 0
        types = torch.zeros(B, T, dtype=torch.long)
        labels = torch.randint(0, 2, (B, L), generator=g).float()
        out += [(f"ids.{k}", ids.numpy()), (f"mask.{k}", mask.numpy()), (f"types.{k}", types.numpy()),
                (f"labels.{k}", labels.numpy())]
        lrs.append(opt.param_groups[0]["lr"])
        loss = m(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)))
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    out += [("loss", torch.tensor(losses).numpy()), ("lr", torch.tensor(lrs).numpy()),
            ("gnorm", torch.tensor(norms).numpy())]
    for n, p in m.named_parameters():
        out.append(("param." + n, p.detach().numpy()))
    rkgold.write(os.path.join(HERE, "train_steps.rkgd"), out)
    print("losses", losses, "lrs", lrs, "norms", norms)


if __name__ == "__main__":
    main()
