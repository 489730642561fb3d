"""Classification metrics from scikit-learn, on the rows each task has a label for. Keys are the metric names
of :data:`twohead.config.schema.METRICS`.

* Task2 accuracy / macro-F1 / weighted-F1 are computed over rows with a category; macro-F1 averages
  over the classes present in that split's gold labels (``labels=`` fixed by the gold set, so the
  average does not change with what the model happens to predict).
* Task1 Pick precision / recall / F1 treat Pick (1) as the positive class.
* Band recall: per frequency band, the mean per-class recall over the band's classes that have gold
  rows in the split (``n_classes`` says how many that is).
"""

from __future__ import annotations

import numpy as np

from ..data.labels import IGNORE  # noqa: F401  (re-used by evaluation)


def task1_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Task1 accuracy and precision / recall / F1 of Pick (1) and precision / recall of Decline (0)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support  # lazy: predict loads no sklearn

    m = y != IGNORE
    if not m.any():
        return dict.fromkeys(("task1_acc", "pick_precision", "pick_recall", "pick_f1", "decline_precision",
                              "decline_recall"), float("nan"))
    p, r, f, _ = precision_recall_fscore_support(y[m], pred[m], labels=[1, 0], average=None, zero_division=0)
    return {"task1_acc": float(accuracy_score(y[m], pred[m])), "pick_precision": float(p[0]),
            "pick_recall": float(r[0]), "pick_f1": float(f[0]), "decline_precision": float(p[1]),
            "decline_recall": float(r[1])}


def task2_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score  # lazy: predict loads no sklearn

    m = y != IGNORE
    if not m.any():
        return dict.fromkeys(("task2_acc", "task2_macro_f1", "task2_weighted_f1"), float("nan"))
    labels = np.unique(y[m])
    return {
        "task2_acc": float(accuracy_score(y[m], pred[m])),
        "task2_macro_f1": float(f1_score(y[m], pred[m], labels=labels, average="macro", zero_division=0)),
        "task2_weighted_f1": float(f1_score(y[m], pred[m], labels=labels, average="weighted", zero_division=0)),
    }


#: the k of Task2's top-k accuracies (a k at or above the number of categories is 1 by definition: left out)
TOP_K = (2, 3, 5)


def topk_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Task2 top-k accuracy (the gold category among the k highest scores; a tie counts against the gold) and the
    share of top-1 errors whose gold category is the runner-up: when it is high, the model is close, not lost."""
    m = y != IGNORE
    if not m.any():
        return {}
    s = np.asarray(scores, dtype=np.float64)[m]
    gold = s[np.arange(len(s)), y[m]]
    rank = (s >= gold[:, None]).sum(1) - 1   # 0 = the top score (others tied with the gold count above it)
    out = {f"task2_top{k}_acc": float((rank < k).mean()) for k in TOP_K if k < s.shape[1]}
    errors = rank > 0
    out["task2_runner_up_share"] = float((rank[errors] == 1).mean()) if errors.any() else float("nan")
    return out


def per_class_recall(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall per class id (NaN for classes with no gold row)."""
    from sklearn.metrics import recall_score  # lazy: predict loads no sklearn

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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def combined_view(y1: np.ndarray, y2: np.ndarray, decline: np.ndarray, pred2: np.ndarray,
                  n_classes: int) -> dict[str, float]:
    """The "N categories + Decline" view as one (N+1)-class problem.

    Prediction: Decline (id N) where ``decline`` (the Decline rule: plain, P(Pick) < 0.5), else the Task2
    prediction. Scored on the rows
    whose combined gold label is known: gold Decline rows, and gold Pick rows with a category.
    Macro-F1 averages over the gold classes present (Decline included).
    """
    from sklearn.metrics import accuracy_score, f1_score  # lazy: predict loads no sklearn

    gold = np.where(y1 == 0, n_classes, np.where((y1 == 1) & (y2 != IGNORE), y2, IGNORE))
    pred = np.where(decline, n_classes, pred2)
    m = gold != IGNORE
    if not m.any():
        return {"combined_acc": float("nan"), "combined_macro_f1": float("nan"), "combined_rows": 0}
    labels = np.unique(gold[m])
    return {"combined_acc": float(accuracy_score(gold[m], pred[m])),
            "combined_macro_f1": float(f1_score(gold[m], pred[m], labels=labels, average="macro", zero_division=0)),
            "combined_rows": int(m.sum())}


def _rate(mask: np.ndarray, within: np.ndarray) -> float:
    n = int(within.sum())
    return float((mask & within).sum() / n) if n else float("nan")


def consistency(y1: np.ndarray, decline: np.ndarray, maxprob2: np.ndarray, low_confidence: float,
                high_confidence: float) -> dict[str, float]:
    """How well the two heads agree (each rate's denominator is the group it names):

    * ``gold_pick_low_conf``: gold-Pick rows whose Task2 max-prob < ``low_confidence``;
    * ``gold_decline_high_conf``: gold-Decline rows whose Task2 max-prob > ``high_confidence``;
    * ``pred_pick_low_conf``: rows the Decline rule calls Pick (``~decline``) with Task2 max-prob < low;
    * ``pred_decline_high_conf``: rows it calls Decline with Task2 max-prob > high;
    * mean Task2 max-prob over predicted-Pick and over predicted-Decline rows.
    """
    low, high = maxprob2 < low_confidence, maxprob2 > high_confidence
    pred_pick = ~np.asarray(decline, dtype=bool)
    return {
        "gold_pick_low_conf": _rate(low, y1 == 1),
        "gold_decline_high_conf": _rate(high, y1 == 0),
        "pred_pick_low_conf": _rate(low, pred_pick),
        "pred_decline_high_conf": _rate(high, ~pred_pick),
        "mean_maxprob_pred_pick": float(maxprob2[pred_pick].mean()) if pred_pick.any() else float("nan"),
        "mean_maxprob_pred_decline": float(maxprob2[~pred_pick].mean()) if (~pred_pick).any() else float("nan"),
    }
