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

How it scales: every compared metric is a function of *counts* (correct rows, labelled rows, per-class gold /
predicted / true-positive counts). Each row contributes a fixed 0/1 feature vector (:func:`features`), so a
resample's counts are its row multiplicities times that matrix: one matrix product ``W @ F`` per block of
resamples (W: resamples × rows, F: rows × features), with W built block by block from the same seeded
index draws as before. 16,000 rows × 96 classes × 2,000 resamples is a few seconds and well under 500 MB
(``benchmarks/bench_compare.py``). The metrics agree with :mod:`twohead.evaluate.metrics` on the full set and
with the former index-based implementation resample for resample (tested).

Adding a compared metric: its name and label in :data:`twohead.config.schema.METRICS` (``compared=True``),
its formula from the counts in :data:`FORMULAS` below; a test fails if either is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as sps

from ..config.schema import compared_metrics, higher_is_better
from ..evaluate.calibration import ECE_BINS, bin_of

MISSING = -1  # "no label" in the integer-coded arrays below
BLOCK_BYTES = 16 * 2 ** 20  # the resample weights are built in blocks of about this size


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
    conf2: np.ndarray | None = None   # probability of the predicted Task2 class (for the ECE; None: undefined)

    @classmethod
    def from_arrays(cls, y1, decline, y2, pred2, conf2, k: int) -> Coded:
        """One rule's answers from label arrays (-100 or -1 = no label), its Decline mask and Task2 predictions."""
        y1c = np.where(np.asarray(y1) < 0, MISSING, y1).astype(np.int64)
        y2c = np.where(np.asarray(y2) < 0, MISSING, y2).astype(np.int64)
        yc = np.where(y1c == 0, k, np.where((y1c == 1) & (y2c != MISSING), y2c, MISSING))
        decline = np.asarray(decline, dtype=bool)
        return cls(y1c, (~decline).astype(np.int64), y2c, np.asarray(pred2, dtype=np.int64), yc,
                   np.where(decline, k, pred2).astype(np.int64), k, conf2)


def _onehot(ids: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(ids), k), dtype=np.float32)
    rows = np.nonzero(valid & (ids >= 0) & (ids < k))[0]
    out[rows, ids[rows]] = 1.0
    return out


def features(c: Coded) -> tuple[np.ndarray, dict[str, slice]]:
    """Per-row 0/1 indicators whose column sums give every compared metric, and each block's columns."""
    v1, v2, vc = c.y1 != MISSING, c.y2 != MISSING, c.yc != MISSING
    ok2 = v2 & (c.y2 == c.p2)
    blocks = {
        "t2_valid": v2[:, None], "t2_correct": ok2[:, None],
        "t2_gold": _onehot(c.y2, v2, c.n_classes), "t2_pred": _onehot(c.p2, v2, c.n_classes),
        "t2_tp": _onehot(c.y2, ok2, c.n_classes),
        "t1_valid": v1[:, None], "t1_correct": (v1 & (c.y1 == c.p1))[:, None],
        "pick_tp": (v1 & (c.y1 == 1) & (c.p1 == 1))[:, None], "pick_fp": (v1 & (c.y1 != 1) & (c.p1 == 1))[:, None],
        "pick_fn": (v1 & (c.y1 == 1) & (c.p1 != 1))[:, None],
        "c_valid": vc[:, None], "c_correct": (vc & (c.yc == c.pc))[:, None],
        "decline_tp": (v1 & (c.y1 == 0) & (c.p1 == 0))[:, None], "decline_pred": (v1 & (c.p1 == 0))[:, None],
        "decline_gold": (v1 & (c.y1 == 0))[:, None],
        "c_gold": _onehot(c.yc, vc, c.n_classes + 1), "c_pred": _onehot(c.pc, vc, c.n_classes + 1),
        "c_tp": _onehot(c.yc, vc & (c.yc == c.pc), c.n_classes + 1),
    }
    if c.conf2 is not None:  # ECE from sums: per bin Σ(correct − confidence) over the rows with a category
        conf = np.nan_to_num(np.asarray(c.conf2, dtype=np.float64))
        gap = _onehot(bin_of(conf), v2, ECE_BINS) * (ok2 - conf)[:, None]
        blocks["ece_gap"] = gap
    cols, start = {}, 0
    for name, b in blocks.items():
        cols[name] = slice(start, start + b.shape[1])
        start += b.shape[1]
    # float32: the counts are exact below 2^24; the ECE gaps are sums of floats (rounding far below the noise)
    return np.hstack([b.astype(np.float32) for b in blocks.values()]), cols


def resample_blocks(n: int, resamples: int, seed: int):
    """Row multiplicities of each bootstrap resample, in blocks [r, n] (float32; exact for counts < 2^24).
    The index draws are the same, in the same order, as one ``rng.integers(0, n, (resamples, n))``."""
    rng = np.random.default_rng(seed)
    per_block = max(1, min(resamples, BLOCK_BYTES // max(1, 12 * n)))
    done = 0
    while done < resamples:
        r = min(per_block, resamples - done)
        idx = rng.integers(0, n, size=(r, n))
        flat = (np.arange(r)[:, None] * n + idx).ravel()
        yield np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float32)
        done += r


# --- metrics from counts: S[name] is an array [resamples, width of that block] ----------------------------

def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1), empty)


def accuracy(correct: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return _ratio(correct[:, 0], valid[:, 0])


def macro_f1(gold: np.ndarray, pred: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes present in each resample's gold labels (as twohead.evaluate.metrics does)."""
    present = gold > 0
    f1 = np.where(present, 2 * tp / np.maximum(gold + pred, 1), 0.0)
    return _ratio(f1.sum(1), present.sum(1))


def binary_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp[:, 0] + fp[:, 0] + fn[:, 0]
    return _ratio(2 * tp[:, 0], den, empty=0.0)


def band_recall(gold: np.ndarray, tp: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean per-class recall over ``members`` (class ids) that have gold rows in the resample."""
    g, t = gold[:, members], tp[:, members]
    present = g > 0
    rec = np.where(present, t / np.maximum(g, 1), 0.0)
    return _ratio(rec.sum(1), present.sum(1))


Formula = Callable[[dict[str, np.ndarray]], np.ndarray]

#: Compared metric name -> its value per resample from the count blocks.
FORMULAS: dict[str, Formula] = {
    "task2_acc": lambda s: accuracy(s["t2_correct"], s["t2_valid"]),
    "task2_macro_f1": lambda s: macro_f1(s["t2_gold"], s["t2_pred"], s["t2_tp"]),
    "task1_acc": lambda s: accuracy(s["t1_correct"], s["t1_valid"]),
    "pick_f1": lambda s: binary_f1(s["pick_tp"], s["pick_fp"], s["pick_fn"]),
    "combined_acc": lambda s: accuracy(s["c_correct"], s["c_valid"]),
    "combined_macro_f1": lambda s: macro_f1(s["c_gold"], s["c_pred"], s["c_tp"]),
    "decline_precision": lambda s: _ratio(s["decline_tp"][:, 0], s["decline_pred"][:, 0], empty=0.0),
    "decline_recall": lambda s: _ratio(s["decline_tp"][:, 0], s["decline_gold"][:, 0], empty=0.0),
    "task2_ece": lambda s: (_ratio(np.abs(s["ece_gap"]).sum(1), s["t2_valid"][:, 0]) if "ece_gap" in s
                            else np.full(len(s["t2_valid"]), np.nan)),
}

#: Accuracies get McNemar's test on per-row correctness: (gold, predicted) attributes of :class:`Coded`.
MCNEMAR = {"task2_acc": ("y2", "p2"), "task1_acc": ("y1", "p1"), "combined_acc": ("yc", "pc")}


def formulas(bands: dict[str, list[int]] | None = None) -> dict[str, Formula]:
    """Every compared metric in the vocabulary's order (band recalls after the Task2 figures), by name."""
    out = {}
    for m in compared_metrics(list(bands or {})):
        if m.band is not None:
            members = np.asarray(bands[m.band], dtype=np.int64)
            out[m.name] = lambda s, members=members: band_recall(s["t2_gold"], s["t2_tp"], members)
        else:
            out[m.name] = FORMULAS[m.name]
    return out


def _split(sums: np.ndarray, cols: dict[str, slice]) -> dict[str, np.ndarray]:
    return {k: sums[:, sl].astype(np.float64) for k, sl in cols.items()}


def point_values(c: Coded, bands: dict[str, list[int]] | None = None) -> dict[str, float]:
    """Each compared metric on the full set."""
    f, cols = features(c)
    s = _split(f.sum(0, keepdims=True, dtype=np.float64), cols)
    return {name: float(fn(s)[0]) for name, fn in formulas(bands).items()}


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar p-value (two-sided) on paired per-row correctness; 1.0 when no row differs."""
    b = int((correct_a & ~correct_b).sum())
    c = int((~correct_a & correct_b).sum())
    if b + c == 0:
        return 1.0
    return float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def verdict(low: float, high: float, higher_is_better: bool = True) -> str:
    """``better`` / ``worse`` when the interval of the difference (other − base) excludes 0, in the metric's
    direction (a lower ECE is better); else ``within noise``."""
    if np.isnan(low) or np.isnan(high):
        return "undefined"
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "within noise"


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_compare(base: Coded, other: Coded, bands: dict[str, list[int]] | None = None, resamples: int = 2000,
                   seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """For each metric: base, other, delta, paired-bootstrap interval of the delta, McNemar p (accuracies),
    verdict. Both runs must hold the same rows in the same order."""
    fb, cols = features(base)
    fo, _ = features(other)
    both = np.hstack([fb, fo])
    fns = formulas(bands)
    width = fb.shape[1]
    deltas: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    for w in resample_blocks(len(base.y1), resamples, seed):
        sums = w @ both
        sb, so = _split(sums[:, :width], cols), _split(sums[:, width:], cols)
        for name, fn in fns.items():
            deltas[name].append(fn(so) - fn(sb))
    b_full, o_full = point_values(base, bands), point_values(other, bands)
    out = {}
    for name in fns:
        low, high = _interval(np.concatenate(deltas[name]), level)
        p = None
        if name in MCNEMAR:
            gold_attr, pred_attr = MCNEMAR[name]
            gold_b = getattr(base, gold_attr)
            valid = gold_b != MISSING
            p = mcnemar_p((getattr(base, pred_attr) == gold_b)[valid], (getattr(other, pred_attr) == gold_b)[valid])
        out[name] = {"base": b_full[name], "other": o_full[name], "delta": o_full[name] - b_full[name],
                     "ci_low": low, "ci_high": high, "p_value": p,
                     "verdict": verdict(low, high, higher_is_better(name))}
    return out


def detectable_difference(base: Coded, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> float:
    """Half the width of the bootstrap interval of one run's Task2 accuracy on these rows: two unrelated runs
    whose accuracies differ by less than this cannot be told apart on this test set."""
    f, cols = features(base)
    acc = [FORMULAS["task2_acc"](_split(w @ f, cols)) for w in resample_blocks(len(base.y2), resamples, seed)]
    low, high = _interval(np.concatenate(acc), level)
    return (high - low) / 2


def t_interval(values, level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std (ddof 1), low, high) of a Student-t interval of the mean; NaN bounds for one value."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    sd = float(v.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * sd / np.sqrt(len(v)))
    return mean, sd, mean - half, mean + half
