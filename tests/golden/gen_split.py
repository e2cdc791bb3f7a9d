#!/usr/bin/env python3
"""gen_split.py: reference label-distribution scores of scikit-multilearn's iterative stratification on
Reuters-21578 (ModApte train), for tests/test_data.c.

Splits the 7,770 documents 85/15 with skmultilearn.model_selection.iterative_train_test_split (order 2,
the library's default for that helper) for a few numpy seeds, and writes the mean of

  LD   label distribution (order 1; Sechidis et al. 2011),
  LPD  label-pair distribution (order 2, pairs with replacement, so single labels count too;
       Szymanski & Kajdanowicz 2017),

both as skmultilearn.model_selection.measures.label_combination_distribution defines them (lower is better),
to tests/golden/split_reuters_skml.txt. The C test splits the same data 85/15 with rk_split_iterative and
checks that its scores are not worse than these by more than a small margin.

Run from the repository root:  python3 tests/golden/gen_split.py [path/to/train.csv.gz]
"""
import csv
import gzip
import itertools
import sys
import time

import numpy as np
from skmultilearn.model_selection import iterative_train_test_split
from skmultilearn.model_selection.measures import label_combination_distribution

SEEDS = [1, 2, 3]
TEST_SIZE = 0.15


def load(path):
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    y = np.array([[int(v) for v in r[3:]] for r in rows], dtype=np.int64)
    return header[3:], y


def combination_distribution(y, folds, order):
    """Same definition as skmultilearn's label_combination_distribution, vectorised (used to cross-check
    it, and mirrored by the C test)."""
    n = y.shape[0]
    rows = [tuple(np.nonzero(r)[0]) for r in y]
    combos = {}
    for i, labels in enumerate(rows):
        for c in itertools.combinations_with_replacement(labels, order):
            combos.setdefault(c, set()).add(i)
    total = 0.0
    for c, members in combos.items():
        d = len(members) / (n - len(members))
        inner = 0.0
        for fold in folds:
            s = sum(1 for i in fold if i in members)
            inner += abs(s / (len(fold) - s) - d)
        total += inner / len(folds)
    return total / len(combos)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/reuters21578/train.csv.gz"
    names, y = load(path)
    x = np.arange(y.shape[0]).reshape(-1, 1)
    ld, lpd = [], []
    for seed in SEEDS:
        np.random.seed(seed)
        t0 = time.time()
        x_train, _, x_test, _ = iterative_train_test_split(x, y, test_size=TEST_SIZE)
        folds = [list(x_train[:, 0]), list(x_test[:, 0])]
        a = combination_distribution(y, folds, 1)
        b = combination_distribution(y, folds, 2)
        ref = label_combination_distribution(y, folds, 1)
        assert abs(a - ref) < 1e-12, (a, ref)
        ld.append(a)
        lpd.append(b)
        print(f"seed {seed}: test {len(folds[1])} docs, LD {a:.6f}, LPD {b:.6f} ({time.time() - t0:.1f}s)")
    out = "tests/golden/split_reuters_skml.txt"
    with open(out, "w") as f:
        f.write("# written by tests/golden/gen_split.py: skmultilearn iterative_train_test_split, Reuters train,\n")
        f.write(f"# test_size {TEST_SIZE}, seeds {SEEDS}; mean label distribution (LD) and label-pair distribution (LPD)\n")
        f.write(f"ld {np.mean(ld):.9f}\n")
        f.write(f"lpd {np.mean(lpd):.9f}\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
