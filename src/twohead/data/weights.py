"""Class weights for both tasks and frequency bands for Task2, computed on the train split only.

* Task1: scikit-learn's ``balanced`` weights ``n / (2 · n_c)`` over train rows with a Pick/Decline label.
* Task2 (``loss.task2_weighting``): ``balanced`` weights ``n / (N · n_c)`` over train rows with a category
  (the recipe), ``sqrt`` = ``1 / sqrt(n_c)``, or ``effective_number`` = ``(1 − β) / (1 − β^n_c)`` (Cui et al.,
  2019; β = ``loss.task2_weight_beta``); divided by their mean (or median: ``loss.task2_weight_norm``, so the
  typical class has weight 1 and the clip floor does not swallow the common classes), then clipped to
  ``[loss.task2_weight_min, loss.task2_weight_max]``.
  Clipping comes last, so after clipping the mean is no longer exactly 1; both the unclipped and the
  clipped values are written so the effect is visible.
* Bands: ``quantile`` sorts classes by train support (descending, ties by name) and cuts the list into
  ``len(bands.names)`` near-equal groups (first name = most frequent); ``threshold`` puts a class in
  the first band whose threshold its support reaches (``support >= thresholds[i]``), else the last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from .labels import IGNORE
from .io import DataError
from ..config.params import BandsParams, LossParams


def task1_weights(train: pd.DataFrame) -> dict:
    y = train["labels_task1"].to_numpy()
    y = y[y != IGNORE]
    counts = [int((y == 0).sum()), int((y == 1).sum())]
    if min(counts) == 0:
        raise DataError(
            "train split: Task1 needs both Pick and Decline rows to weight its classes;"
            f" found Decline={counts[0]}, Pick={counts[1]}"
        )
    w = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    return {"classes": ["Decline", "Pick"], "support": counts, "weights": [float(v) for v in w]}


def task2_weights(train: pd.DataFrame, categories: list[str], cfg: LossParams) -> dict:
    y = train["labels_task2"].to_numpy()
    y = y[y != IGNORE]
    classes = np.arange(len(categories))
    support = np.bincount(y, minlength=len(categories))
    missing = [categories[i] for i in classes if support[i] == 0]
    if missing:
        raise DataError(f"train split: categories with no train row cannot be weighted: {missing}")
    raw = raw_task2_weights(y, support, cfg.task2_weighting, cfg.task2_weight_beta)
    normalised = raw / (raw.mean() if cfg.task2_weight_norm == "mean" else np.median(raw))
    clipped = np.clip(normalised, cfg.task2_weight_min, cfg.task2_weight_max)
    return {
        "classes": list(categories),
        "scheme": cfg.task2_weighting, "norm": cfg.task2_weight_norm,
        **({"beta": cfg.task2_weight_beta} if cfg.task2_weighting == "effective_number" else {}),
        "support": [int(s) for s in support],
        "weights_unclipped": [float(v) for v in normalised],
        "weights": [float(v) for v in clipped],
        "clip": [cfg.task2_weight_min, cfg.task2_weight_max],
        "n_clipped_low": int((normalised < cfg.task2_weight_min).sum()),
        "n_clipped_high": int((normalised > cfg.task2_weight_max).sum()),
    }


def raw_task2_weights(y: np.ndarray, support: np.ndarray, scheme: str, beta: float) -> np.ndarray:
    """Unnormalised Task2 weights per class from the train support n_c (every n_c > 0)."""
    if scheme == "balanced":  # n / (N · n_c), scikit-learn's
        return compute_class_weight("balanced", classes=np.arange(len(support)), y=y)
    n = support.astype(np.float64)
    if scheme == "sqrt":
        return 1.0 / np.sqrt(n)
    if scheme == "effective_number":  # Cui et al. (2019): 1 / E_n, E_n = (1 − β^n) / (1 − β)
        return (1.0 - beta) / (1.0 - np.power(beta, n))
    raise ValueError(f"unknown loss.task2_weighting {scheme!r}")


def frequency_bands(categories: list[str], support: list[int], cfg: BandsParams) -> dict:
    """Assign each category to a band by its train support; see the module docstring."""
    order = sorted(range(len(categories)), key=lambda i: (-support[i], categories[i]))
    band_of: dict[str, str] = {}
    if cfg.method == "quantile":
        for name, chunk in zip(cfg.names, np.array_split(np.asarray(order, dtype=int), len(cfg.names))):
            for i in chunk:
                band_of[categories[int(i)]] = name
    else:
        for i in order:
            band = cfg.names[-1]
            for name, t in zip(cfg.names, cfg.thresholds):
                if support[i] >= t:
                    band = name
                    break
            band_of[categories[i]] = band
    bands = []
    for name in cfg.names:
        members = [categories[i] for i in order if band_of[categories[i]] == name]
        sup = [support[categories.index(c)] for c in members]
        bands.append({
            "name": name,
            "classes": members,
            "n_classes": len(members),
            "min_support": int(min(sup)) if sup else 0,
            "max_support": int(max(sup)) if sup else 0,
        })
    return {"method": cfg.method, "names": list(cfg.names), "bands": bands, "class_band": band_of}
