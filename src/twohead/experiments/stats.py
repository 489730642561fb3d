"""Is B really better than A? Paired statistics over the same test rows, and intervals over seeds.

* **Paired bootstrap** (Efron & Tibshirani; Koehn 2004 for NLP): resample the test rows with
  replacement ``resamples`` times (seeded), compute each metric for BASE and OTHER on the *same*
  resampled rows, and take the 2.5 / 97.5 percentiles of the difference. The pairing removes the
  row-to-row variance both runs share, so it is far tighter than comparing two separate intervals.
* **McNemar's exact test** on per-row correctness (accuracies only): of the rows exactly one of the
  two runs gets right, how surprising is the split under "equally good"? A two-sided binomial test
  with p = ½ on the discordant counts (``scipy.stats.binomtest``).
* **Verdict**: ``better`` / ``worse`` when the bootstrap interval excludes 0, else ``within noise``.
* **Seeds**: mean, standard deviation and the 95% Student-t interval over runs; between two settings,
  the mean of the per-seed differences with its t-interval (paired by seed).

Every metric is computed from the label arrays with vectorised counts (no sklearn call per resample)
and agrees with :mod:`twohead.evaluate.metrics` on the full set (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

MISSING = -1  # "no label" in the integer-coded arrays below


@dataclass
class Coded:
    """One run's test predictions as integer codes (shared vocabulary between the runs compared)."""

    y1: np.ndarray       # Task1 gold: 1 Pick, 0 Decline, -1 none
    p1: np.ndarray       # Task1 predicted (0/1)
    y2: np.ndarray       # Task2 gold class id, -1 none
    p2: np.ndarray       # Task2 predicted class id
    yc: np.ndarray       # combined gold (class id, Decline = n_classes), -1 not scorable
    pc: np.ndarray       # combined predicted
    n_classes: int       # Task2 classes (the combined view has n_classes + 1)


def _rows_counts(idx: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int):
    """Per resample (rows of ``idx``): true positives, gold counts and predicted counts per class,
    over the rows whose gold is not MISSING. Arrays of shape [R, k]."""
    g, p = gold[idx], pred[idx]
    valid = g != MISSING
    r = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
    base = r * k
    tp = np.bincount((base + g)[valid & (g == p)], minlength=idx.shape[0] * k).reshape(-1, k)
    gold_n = np.bincount((base + g)[valid], minlength=idx.shape[0] * k).reshape(-1, k)
    pred_n = np.bincount((base + p)[valid], minlength=idx.shape[0] * k).reshape(-1, k)
    return tp, gold_n, pred_n


def accuracy(idx: np.ndarray, gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    g, p = gold[idx], pred[idx]
    valid = g != MISSING
    n = valid.sum(1)
    return np.where(n > 0, ((g == p) & valid).sum(1) / np.maximum(n, 1), np.nan)


def macro_f1(idx: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 over the classes present in each resample's gold labels (as twohead.evaluate.metrics does)."""
    tp, gold_n, pred_n = _rows_counts(idx, gold, pred, k)
    present = gold_n > 0
    f1 = np.where(present, 2 * tp / np.maximum(gold_n + pred_n, 1), 0.0)
    n = present.sum(1)
    return np.where(n > 0, f1.sum(1) / np.maximum(n, 1), np.nan)


def binary_f1(idx: np.ndarray, gold: np.ndarray, pred: np.ndarray, positive: int = 1) -> np.ndarray:
    g, p = gold[idx], pred[idx]
    valid = g != MISSING
    tp = ((g == positive) & (p == positive) & valid).sum(1)
    fp = ((g != positive) & (p == positive) & valid).sum(1)
    fn = ((g == positive) & (p != positive) & valid).sum(1)
    return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def band_recall(idx: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int, members: np.ndarray) -> np.ndarray:
    """Mean per-class recall over ``members`` (class ids) that have gold rows in the resample."""
    tp, gold_n, _ = _rows_counts(idx, gold, pred, k)
    tp, gold_n = tp[:, members], gold_n[:, members]
    present = gold_n > 0
    rec = np.where(present, tp / np.maximum(gold_n, 1), 0.0)
    n = present.sum(1)
    return np.where(n > 0, rec.sum(1) / np.maximum(n, 1), np.nan)


def metric_fns(n_classes: int, bands: dict[str, list[int]] | None = None) -> dict:
    """name -> (function(idx, Coded) -> values per resample, is_accuracy with a per-row correctness)."""
    fns = {
        "task2_acc": (lambda i, c: accuracy(i, c.y2, c.p2), ("y2", "p2")),
        "task2_macro_f1": (lambda i, c: macro_f1(i, c.y2, c.p2, c.n_classes), None),
        "task1_acc": (lambda i, c: accuracy(i, c.y1, c.p1), ("y1", "p1")),
        "pick_f1": (lambda i, c: binary_f1(i, c.y1, c.p1), None),
        "combined_acc": (lambda i, c: accuracy(i, c.yc, c.pc), ("yc", "pc")),
    }
    for band, members in (bands or {}).items():
        m = np.asarray(members, dtype=np.int64)
        fns[f"band_{band}_recall"] = (lambda i, c, m=m: band_recall(i, c.y2, c.p2, c.n_classes, m), None)
    return fns


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar p-value (two-sided) on paired per-row correctness; 1.0 when no row differs."""
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    if b + c == 0:
        return 1.0
    return float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def verdict(low: float, high: float) -> str:
    if np.isnan(low) or np.isnan(high):
        return "undefined"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "within noise"


def paired_compare(base: Coded, other: Coded, bands: dict[str, list[int]] | None = None, resamples: int = 2000,
                   seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """For each metric: base, other, delta, paired-bootstrap interval of the delta, McNemar p (accuracies),
    verdict. Both runs must hold the same rows in the same order."""
    n = len(base.y1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    full = np.arange(n)[None, :]
    alpha = (1 - level) / 2
    out = {}
    for name, (fn, acc_cols) in metric_fns(base.n_classes, bands).items():
        b_full, o_full = float(fn(full, base)[0]), float(fn(full, other)[0])
        deltas = fn(idx, other) - fn(idx, base)
        deltas = deltas[~np.isnan(deltas)]
        low, high = (np.quantile(deltas, [alpha, 1 - alpha]) if len(deltas) else (np.nan, np.nan))
        p = None
        if acc_cols is not None:
            gold_b, pred_b = getattr(base, acc_cols[0]), getattr(base, acc_cols[1])
            pred_o = getattr(other, acc_cols[1])
            valid = gold_b != MISSING
            p = mcnemar_p((pred_b == gold_b)[valid], (pred_o == gold_b)[valid])
        out[name] = {"base": b_full, "other": o_full, "delta": o_full - b_full, "ci_low": float(low),
                     "ci_high": float(high), "p_value": p, "verdict": verdict(float(low), float(high))}
    return out


def detectable_difference(base: Coded, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> float:
    """The smallest Task2-accuracy difference this test set can call real, roughly: the half-width of the
    bootstrap interval of a run's accuracy (two runs that differ by less land within noise)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base.y2), size=(resamples, len(base.y2)))
    acc = accuracy(idx, base.y2, base.p2)
    acc = acc[~np.isnan(acc)]
    alpha = (1 - level) / 2
    low, high = np.quantile(acc, [alpha, 1 - alpha])
    return float((high - low) / 2)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std (ddof 1), low, high) of a Student-t interval of the mean; NaN bounds for one value."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    sd = float(v.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * sd / np.sqrt(len(v)))
    return mean, sd, mean - half, mean + half
