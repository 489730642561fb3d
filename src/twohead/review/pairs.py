"""Confusable category pairs: counts both ways on test, cleanlab's overlap estimate, and what merging each pair
would buy in Task2 accuracy on test with its paired bootstrap interval."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..experiments.stats import resample_blocks


def merge_gains(y: np.ndarray, pred: np.ndarray, pairs: list[tuple[int, int]], resamples: int = 2000,
                seed: int = 0, level: float = 0.95) -> np.ndarray:
    """Task2 accuracy gained if each pair (a, b) were one category (a prediction of either counts for a row of
    either): rows (gain, low, high), the interval by one paired bootstrap over the rows shared by every pair."""
    n = len(y)
    if n == 0 or not pairs:
        return np.full((len(pairs), 3), np.nan)
    wrong = pred != y
    d = np.stack([(wrong & np.isin(y, ab) & np.isin(pred, ab)).astype(np.float32) for ab in pairs], axis=1)
    draws = np.concatenate([w @ d / n for w in resample_blocks(n, resamples, seed)])
    tail = (1 - level) / 2
    return np.column_stack([d.mean(0), np.quantile(draws, tail, axis=0), np.quantile(draws, 1 - tail, axis=0)])


def cumulative_merge_gains(y: np.ndarray, pred: np.ndarray, pairs: list[tuple[int, int]], resamples: int = 2000,
                           seed: int = 0, level: float = 0.95) -> np.ndarray:
    """Task2 accuracy gained by merging the first 1, 2, … of ``pairs`` together (pairs that share a category merge
    into one group): rows (gain, low, high), one paired bootstrap over the rows. Positive by construction: a
    coarser task scores higher, whatever the model."""
    n = len(y)
    if n == 0 or not pairs:
        return np.full((len(pairs), 3), np.nan)
    k = int(max(y.max(), pred.max(), *(max(ab) for ab in pairs))) + 1
    group = np.arange(k)
    cols = []
    for a, b in pairs:   # union of the groups a and b belong to
        group[group == group[b]] = group[a]
        cols.append(((pred != y) & (group[y] == group[pred])).astype(np.float32))
    d = np.stack(cols, axis=1)
    draws = np.concatenate([w @ d / n for w in resample_blocks(n, resamples, seed)])
    tail = (1 - level) / 2
    return np.column_stack([d.mean(0), np.quantile(draws, tail, axis=0), np.quantile(draws, 1 - tail, axis=0)])


def merge_gain(y: np.ndarray, pred: np.ndarray, a: int, b: int, resamples: int = 2000, seed: int = 0,
               level: float = 0.95) -> tuple[float, float, float]:
    """:func:`merge_gains` of one pair."""
    gain, low, high = merge_gains(y, pred, [(a, b)], resamples, seed, level)[0]
    return float(gain), float(low), float(high)


def confusable_pairs(y: np.ndarray, pred: np.ndarray, probs: np.ndarray, names: list[str], top: int,
                     resamples: int = 2000) -> pd.DataFrame:
    """The ``top`` pairs by test confusions (both ways), with cleanlab's joint-probability overlap estimate and
    the merge gain. ``y`` / ``pred`` / ``probs``: the labelled test rows."""
    from cleanlab.dataset import find_overlapping_classes

    k = len(names)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y, pred), 1)
    both = conf + conf.T
    iu = np.triu_indices(k, 1)
    order = np.argsort(-both[iu], kind="stable")[:top]
    joint = {}
    if len(np.unique(y)) >= 2:   # cleanlab's overlap needs two classes among the labels; else 0 (not estimated)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            overlap = find_overlapping_classes(y, probs / probs.sum(1, keepdims=True))
        joint = {(int(r["Class Index A"]), int(r["Class Index B"])): float(r["Joint Probability"])
                 for _, r in overlap.iterrows()}
    chosen = [(int(iu[0][j]), int(iu[1][j])) for j in order if both[iu[0][j], iu[1][j]] > 0]
    gains = merge_gains(y, pred, chosen, resamples)
    rows = []
    for (a, b), (gain, low, high) in zip(chosen, gains):
        rows.append({"a": names[a], "b": names[b], "a_as_b": int(conf[a, b]), "b_as_a": int(conf[b, a]),
                     "confusions": int(both[a, b]), "overlap_joint": joint.get((a, b), joint.get((b, a), 0.0)),
                     "merge_gain": float(gain), "merge_gain_low": float(low), "merge_gain_high": float(high)})
    return pd.DataFrame(rows, columns=["a", "b", "a_as_b", "b_as_a", "confusions", "overlap_joint", "merge_gain",
                                       "merge_gain_low", "merge_gain_high"])


def plot_pairs(pairs: pd.DataFrame, path, caption: str, shown: int = 12) -> None:
    """Bars of confusions both ways per pair, the merge gain with its interval beside them."""
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    top = pairs.head(shown)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 0.42 * max(len(top), 3) + 1.6), sharey=True,
                                   gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(top))[::-1]
    labels = [f"{a} ↔ {b}" for a, b in zip(top["a"], top["b"])]
    ax1.barh(y, top["a_as_b"], color="C0", label="A read as B")
    ax1.barh(y, top["b_as_a"], left=top["a_as_b"], color="C1", label="B read as A")
    ax1.set_yticks(y, labels, fontsize=7)
    ax1.set(xlabel="test rows confused", title="Most confused category pairs (test)")
    ax1.legend(fontsize=7, loc="lower right")
    pts = 100 * top["merge_gain"].to_numpy()
    err = np.vstack([pts - 100 * top["merge_gain_low"].to_numpy(), 100 * top["merge_gain_high"].to_numpy() - pts])
    ax2.errorbar(pts, y, xerr=err, fmt="o", color="C2", capsize=3)
    ax2.set(xlabel="Task2 accuracy if merged (+points, 95% CI)", title="What a merge would buy")
    ax2.axvline(0, color="0.6", lw=0.8)
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path, caption)
