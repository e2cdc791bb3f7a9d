#!/usr/bin/env python3
"""
gen_classify.py: golden data for tests/test_classify.c (one-vs-rest forest / logistic regression, metrics).

Writes, next to this script:
  classify_models.txt   a small multi-label data set (make_multilabel_classification, random_state=0) split
                        300 train / 200 test, plus a label with no positive in train (6th) and a label that is
                        always 1 in train (7th); sklearn LogisticRegression coefficients (the default fit, and
                        the exact optimum of its objective: tol=1e-12 then Newton steps) and default test
                        predictions; RandomForestClassifier test F1 over 5 seeds and a majority baseline.
  classify_metrics.txt  fixed (Y, Yhat) pairs, edge cases included, with f1_score / precision_recall_fscore_support
                        / accuracy_score / hamming_loss values (zero_division=0).

Format (both files): blocks of "matrix <name> <rows> <cols>" followed by rows of values written with repr(), so
float32 and float64 values read back exactly. Lines starting with '#' are comments.

Run: python3 tests/golden/gen_classify.py   (numpy + scikit-learn; deterministic)
"""
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.datasets import make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

HERE = os.path.dirname(os.path.abspath(__file__))


def fmt(v):
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    return repr(float(v))


def write_matrix(f, name, a):
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        a = a.reshape(1, -1)
    f.write(f"matrix {name} {a.shape[0]} {a.shape[1]}\n")
    for row in a:
        f.write(" ".join(fmt(v) for v in row) + "\n")


def header(f, what):
    f.write(f"# {what}\n# written by tests/golden/gen_classify.py with scikit-learn {sklearn.__version__}, "
            f"numpy {np.__version__}\n")


def newton_polish(X, y, w, b, C):
    """
    Newton steps on sklearn's LogisticRegression objective (sum log-loss + 0.5/C ||w||^2, b unpenalised) from
    sklearn's own solution. lbfgs with tol=1e-12 still stops on scipy's ftol at max|grad| ~ 1e-5 (of the
    objective / n), so the exact optimum, the target for a tightly converged solver, needs these few steps.
    """
    X = X.astype(np.float64)
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    v = np.concatenate([w, [b]])
    reg = np.full(d + 1, 1.0 / C)
    reg[d] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(A @ v)))
        g = A.T @ (p - y) + reg * v
        if np.abs(g).max() / n < 1e-13:
            break
        H = A.T @ (A * (p * (1 - p))[:, None]) + np.diag(reg)
        v = v - np.linalg.solve(H, g)
    assert np.abs(g).max() / n < 1e-12, "Newton polish did not converge"
    return v[:d], v[d]


def models():
    X, Y = make_multilabel_classification(n_samples=500, n_features=20, n_classes=5, n_labels=2,
                                          random_state=0)
    X = X.astype(np.float32)
    n_tr = 300
    n = X.shape[0]
    extra = np.zeros((n, 2), dtype=np.int64)
    extra[n_tr:, 0] = (np.arange(n - n_tr) % 17 == 0)   # never positive in train, a few positives in test
    extra[:n_tr, 1] = 1                                # always positive in train
    extra[n_tr:, 1] = (np.arange(n - n_tr) % 5 != 0)
    Y = np.concatenate([Y, extra], axis=1).astype(np.uint8)
    L = Y.shape[1]
    Xtr, Ytr, Xte, Yte = X[:n_tr], Y[:n_tr], X[n_tr:], Y[n_tr:]

    coef_def = np.zeros((L, X.shape[1]))
    icpt_def = np.zeros(L)
    coef_tight = np.zeros((L, X.shape[1]))
    icpt_tight = np.zeros(L)
    yhat_def = np.zeros_like(Yte)
    dec_def = np.zeros(Yte.shape)
    niter_def = np.zeros(L, dtype=np.int64)
    for l in range(L):
        y = Ytr[:, l]
        if y.min() == y.max():   # sklearn refuses a single class; ours predicts the constant
            yhat_def[:, l] = y[0]
            dec_def[:, l] = np.inf if y[0] else -np.inf
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = LogisticRegression().fit(Xtr, y)
        coef_def[l], icpt_def[l], niter_def[l] = m.coef_[0], m.intercept_[0], m.n_iter_[0]
        yhat_def[:, l] = m.predict(Xte)
        dec_def[:, l] = m.decision_function(Xte)
        t = LogisticRegression(tol=1e-12, max_iter=100000).fit(Xtr, y)
        coef_tight[l], icpt_tight[l] = newton_polish(Xtr, y, t.coef_[0], t.intercept_[0], C=1.0)

    # random forest: one forest per label, test micro/macro F1 over seeds (constant labels predict the constant)
    seeds = [0, 1, 2, 3, 4]
    f1s = []
    for s in seeds:
        yhat = np.zeros_like(Yte)
        for l in range(L):
            y = Ytr[:, l]
            if y.min() == y.max():
                yhat[:, l] = y[0]
                continue
            yhat[:, l] = RandomForestClassifier(random_state=s).fit(Xtr, y).predict(Xte)
        f1s.append([f1_score(Yte, yhat, average="micro", zero_division=0),
                    f1_score(Yte, yhat, average="macro", zero_division=0)])
    f1s = np.array(f1s)
    # trivial baseline: each label's majority class in train
    maj = np.tile((Ytr.mean(axis=0) > 0.5).astype(np.uint8), (Yte.shape[0], 1))
    base = [f1_score(Yte, maj, average="micro", zero_division=0), f1_score(Yte, maj, average="macro", zero_division=0)]

    with open(os.path.join(HERE, "classify_models.txt"), "w") as f:
        header(f, "one-vs-rest models on make_multilabel_classification(500, 20, 5, n_labels=2, random_state=0) "
                  "+ 2 constant-in-train labels")
        write_matrix(f, "X_train", Xtr)
        write_matrix(f, "Y_train", Ytr)
        write_matrix(f, "X_test", Xte)
        write_matrix(f, "Y_test", Yte)
        f.write("# LogisticRegression() defaults (tol 1e-4, max_iter 100) and the exact optimum "
                "(tol=1e-12 + Newton steps)\n")
        write_matrix(f, "logreg_coef_default", coef_def)
        write_matrix(f, "logreg_intercept_default", icpt_def)
        write_matrix(f, "logreg_n_iter_default", niter_def)
        write_matrix(f, "logreg_coef_tight", coef_tight)
        write_matrix(f, "logreg_intercept_tight", icpt_tight)
        write_matrix(f, "logreg_yhat_test_default", yhat_def)
        write_matrix(f, "logreg_decision_test_default", np.where(np.isfinite(dec_def), dec_def, 0.0))
        f.write("# RandomForestClassifier(random_state=s) per label, test [micro F1, macro F1] for s = 0..4\n")
        write_matrix(f, "forest_f1_test", f1s)
        write_matrix(f, "forest_f1_test_mean", f1s.mean(axis=0))
        write_matrix(f, "majority_f1_test", base)
    print("forest F1 per seed:\n", f1s, "\nbaseline", base, "\nlogreg n_iter default", niter_def)


def metric_cases():
    rng = np.random.RandomState(1234)
    n, L = 40, 6
    cases = []
    Y = (rng.rand(n, L) < 0.3).astype(np.uint8)
    P = (rng.rand(n, L) < 0.3).astype(np.uint8)
    cases.append(("random", Y, P))
    cases.append(("all_zero_pred", Y, np.zeros_like(Y)))
    Y2, P2 = Y.copy(), P.copy()
    Y2[:, 2] = 0
    P2[:, 2] = 0                                     # label 2 never true and never predicted
    Y2[:, 4] = 0                                     # label 4 never true but predicted
    cases.append(("label_absent", Y2, P2))
    cases.append(("perfect", Y, Y.copy()))
    cases.append(("all_wrong", Y, 1 - Y))
    cases.append(("all_zero_both", np.zeros_like(Y), np.zeros_like(Y)))
    Y3 = (rng.rand(7, 3) < 0.5).astype(np.uint8)
    P3 = Y3.copy()
    P3[0] = 1 - P3[0]
    cases.append(("small_one_row_wrong", Y3, P3))

    with open(os.path.join(HERE, "classify_metrics.txt"), "w") as f:
        header(f, "sklearn.metrics on fixed (Y, Yhat) pairs, zero_division=0; per case: Y, Yhat, "
                  "scalars [micro_f1, macro_f1, micro_p, micro_r, macro_p, macro_r, subset_acc, hamming], "
                  "per_label rows [p, r, f1, support]")
        write_matrix(f, "n_cases", np.array([len(cases)]))
        for k, (name, Y, P) in enumerate(cases):
            f.write(f"# case {k}: {name}\n")
            s = [f1_score(Y, P, average="micro", zero_division=0),
                 f1_score(Y, P, average="macro", zero_division=0)]
            mp, mr, _, _ = precision_recall_fscore_support(Y, P, average="micro", zero_division=0)
            Mp, Mr, _, _ = precision_recall_fscore_support(Y, P, average="macro", zero_division=0)
            s += [mp, mr, Mp, Mr, accuracy_score(Y, P), hamming_loss(Y, P)]
            p, r, f1, sup = precision_recall_fscore_support(Y, P, average=None, zero_division=0)
            write_matrix(f, f"case{k}_Y", Y)
            write_matrix(f, f"case{k}_Yhat", P)
            write_matrix(f, f"case{k}_scalars", np.array(s, dtype=np.float64))
            write_matrix(f, f"case{k}_per_label", np.stack([p, r, f1, sup.astype(np.float64)], axis=1))


if __name__ == "__main__":
    models()
    metric_cases()
    sys.exit(0)
