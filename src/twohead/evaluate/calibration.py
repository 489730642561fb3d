"""Probability calibration: temperature scaling fitted by NLL, expected calibration error, reliability bins.

* **Temperature** (Guo et al., 2017): one scalar T per head, p = softmax(z / T), T chosen to minimise the
  mean negative log-likelihood of the gold labels on the rows that have one (val only). A 1-D bounded search
  over log T (``scipy.optimize.minimize_scalar``, T in [0.05, 20]); T < 1 sharpens (the model was
  under-confident, e.g. after label smoothing), T > 1 softens. The argmax never changes.
* **ECE** (Naeini et al., 2015; Guo et al.): confidence = the probability of the predicted class (the max
  probability, unless a prior correction predicts another class), ``bins`` equal-width bins on [0, 1];
  ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b|, over the rows with a gold label.
"""

from __future__ import annotations

import numpy as np

from ..data.labels import IGNORE
from .metrics import softmax

T_MIN, T_MAX = 0.05, 20.0
ECE_BINS = 15


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean −log p(gold) at ``temperature`` over the rows with a label (NaN when none has one)."""
    m = y != IGNORE
    if not m.any():
        return float("nan")
    lp = log_softmax(logits[m].astype(np.float64) / temperature)
    return float(-lp[np.arange(int(m.sum())), y[m]].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising the NLL of the labelled rows; 1.0 when no row has a label."""
    from scipy.optimize import minimize_scalar  # lazy: predict loads no scipy

    if not (y != IGNORE).any():
        return 1.0
    res = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))),
                          bounds=(np.log(T_MIN), np.log(T_MAX)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def bin_of(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each confidence: equal-width bins on [0, 1], the last one closed."""
    return np.minimum((np.asarray(confidence) * bins).astype(np.int64), bins - 1)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS, pred: np.ndarray | None = None) -> list[dict]:
    """Per bin: rows, mean confidence, accuracy (rows with a gold label only; empty bins included, NaN). The
    confidence is the probability of the predicted class: the argmax, or ``pred`` when a decision chose
    another (a prior correction)."""
    m = y != IGNORE
    pred = probs.argmax(1) if pred is None else np.asarray(pred)
    conf, correct = probs[m][np.arange(int(m.sum())), pred[m]], pred[m] == y[m]
    b = bin_of(conf, bins)
    rows = []
    for i in range(bins):
        sel = b == i
        n = int(sel.sum())
        rows.append({"bin": i, "lower": i / bins, "upper": (i + 1) / bins, "rows": n,
                     "confidence": float(conf[sel].mean()) if n else float("nan"),
                     "accuracy": float(correct[sel].mean()) if n else float("nan")})
    return rows


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS, pred: np.ndarray | None = None) -> float:
    """Expected calibration error of the predicted class's probability (NaN when no row has a label)."""
    rows = reliability(probs, y, bins, pred)
    n = sum(r["rows"] for r in rows)
    if not n:
        return float("nan")
    return float(sum(r["rows"] * abs(r["accuracy"] - r["confidence"]) for r in rows if r["rows"]) / n)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(logits.astype(np.float64) / temperature)
