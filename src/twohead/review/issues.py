"""Label issues from out-of-sample probabilities, by cleanlab (confident learning, Northcutt et al. 2021).

The val and test rows' probabilities come from the kept model, which never trained on them: out-of-sample, as
confident learning needs. cleanlab estimates the joint distribution of given and true labels from them and flags
the rows whose given label most likely is not the true one (``find_label_issues``, ``prune_by_noise_rate``),
ranked by label quality (the probability of the given label: ``self_confidence``), and the share of wrong labels
per split and per class (``num_label_issues``, ``rank_classes_by_label_quality``). Nothing here is re-implemented.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Issues:
    """One task on one split: the flagged rows (positions into the given arrays, worst first), each row's label
    quality (probability of its given label), the suggestion (argmax), and cleanlab's estimates."""

    flagged: np.ndarray           # positions, worst first
    quality: np.ndarray           # per row, in [0, 1]: low = the given label looks wrong
    suggested: np.ndarray         # per row: the most probable label
    estimated_issues: int         # cleanlab's estimate of wrong labels in the split (off-diagonal of the joint)
    per_class: pd.DataFrame       # class, rows, flagged, estimated_noise (share of the class's labels wrong)
    skipped: str = ""             # why nothing was estimated (e.g. one class only), else ""

    @property
    def rows(self) -> int:
        return len(self.quality)

    def summary(self) -> dict:
        n = max(self.rows, 1)
        return {"rows": self.rows, "flagged": int(len(self.flagged)), "flagged_share": len(self.flagged) / n,
                "estimated_wrong": self.estimated_issues, "estimated_wrong_share": self.estimated_issues / n,
                **({"skipped": self.skipped} if self.skipped else {})}


def find_issues(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> Issues:
    """Label issues of ``labels`` (class ids, every row labelled) given ``probs`` [rows, classes]."""
    from cleanlab.count import num_label_issues
    from cleanlab.dataset import rank_classes_by_label_quality
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(1, keepdims=True)
    if len(labels) == 0:
        empty = pd.DataFrame(columns=["class", "rows", "flagged", "estimated_noise"])
        return Issues(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), 0, empty)
    counts = np.bincount(labels, minlength=probs.shape[1])
    if (counts > 0).sum() < 2:   # confident learning compares classes: with one there is nothing to estimate
        per_class = pd.DataFrame({"class": names, "rows": counts, "flagged": 0, "estimated_noise": np.nan})
        only = names[int(labels[0])]
        return Issues(np.zeros(0, np.int64), probs[np.arange(len(labels)), labels], probs.argmax(1), 0, per_class,
                      skipped=f"every one of its {len(labels)} labelled rows is {only!r}: label issues need at least"
                              " two classes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "too few examples in class k": a small split, said in the report instead
        flagged = np.asarray(find_label_issues(labels, probs, filter_by="prune_by_noise_rate",
                                               return_indices_ranked_by="self_confidence"), dtype=np.int64)
        quality = get_label_quality_scores(labels, probs, method="self_confidence")
        estimated = int(num_label_issues(labels, probs))
        ranked = rank_classes_by_label_quality(labels, probs)
    noise = dict(zip(ranked["Class Index"].astype(int), ranked["Label Noise"].astype(float)))
    k = probs.shape[1]
    flagged_counts = np.bincount(labels[flagged], minlength=k)
    per_class = pd.DataFrame({"class": names, "rows": counts, "flagged": flagged_counts,
                              "estimated_noise": [noise.get(i, 0.0) if counts[i] else np.nan for i in range(k)]})
    return Issues(flagged, quality, probs.argmax(1), estimated, per_class)


def accuracy_without(correct: np.ndarray, flagged: np.ndarray) -> float:
    """Accuracy on the rows not flagged: an upper-bound view (as if every flag were a wrong label), never the
    result."""
    keep = np.ones(len(correct), dtype=bool)
    keep[flagged] = False
    return float(correct[keep].mean()) if keep.any() else float("nan")
