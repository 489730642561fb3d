"""Classification metrics from scikit-learn, on the rows each task has a label for.

* Task2 accuracy / macro-F1 / weighted-F1 are computed over rows with a category; macro-F1 averages
  over the classes present in that split's gold labels (``labels=`` fixed by the gold set, so the
  average does not change with what the model happens to predict).
* Task1 Pick precision / recall / F1 treat Pick (1) as the positive class.
* Band recall: per frequency band, the mean per-class recall over the band's classes that have gold
  rows in the split (``n_classes`` says how many that is).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

IGNORE = -100


def task1_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    m = y != IGNORE
    if not m.any():
        return {"acc_task1": float("nan"), "precision_pick": float("nan"), "recall_pick": float("nan"), "f1_pick": float("nan")}
    p, r, f, _ = precision_recall_fscore_support(y[m], pred[m], labels=[1], average=None, zero_division=0)
    return {"acc_task1": float(accuracy_score(y[m], pred[m])), "precision_pick": float(p[0]),
            "recall_pick": float(r[0]), "f1_pick": float(f[0])}


def task2_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    m = y != IGNORE
    if not m.any():
        return {"acc_task2": float("nan"), "macro_f1_task2": float("nan"), "weighted_f1_task2": float("nan")}
    labels = np.unique(y[m])
    return {
        "acc_task2": float(accuracy_score(y[m], pred[m])),
        "macro_f1_task2": float(f1_score(y[m], pred[m], labels=labels, average="macro", zero_division=0)),
        "weighted_f1_task2": float(f1_score(y[m], pred[m], labels=labels, average="weighted", zero_division=0)),
    }


def per_class_recall(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall per class id (NaN for classes with no gold row)."""
    m = y != IGNORE
    out = np.full(n_classes, np.nan)
    present = np.unique(y[m])
    if len(present):
        out[present] = recall_score(y[m], pred[m], labels=present, average=None, zero_division=0)
    return out


def band_recall(y: np.ndarray, pred: np.ndarray, class_band: dict[str, str], names: list[str],
                band_order: list[str]) -> list[dict]:
    """Rows ``{band, recall, n_classes}`` in ``band_order``; ``names`` maps class id → name."""
    rec = per_class_recall(y, pred, len(names))
    rows = []
    for band in band_order:
        ids = [i for i, n in enumerate(names) if class_band.get(n) == band and not np.isnan(rec[i])]
        rows.append({"band": band, "recall": float(np.mean(rec[ids])) if ids else float("nan"), "n_classes": len(ids)})
    return rows
