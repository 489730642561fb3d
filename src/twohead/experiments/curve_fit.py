"""The learning curve's fit and figure: Task2 accuracy against train rows, log-linear vs a saturating power law
(chosen by AIC), projected to 2× and 4× the rows with a band from the seeds (:mod:`twohead.experiments.curve`)."""

from __future__ import annotations

import math
import warnings

import numpy as np

TIMES = (2, 4)


def loglin(x, a, b):
    return a + b * np.log(x)


def power(x, c, a, alpha):
    return c - a * np.power(x, -alpha)


def _fit(kind: str, x: np.ndarray, y: np.ndarray) -> dict | None:
    """Least squares of one model; None when it cannot be fitted (too few distinct x, or no convergence)."""
    if len(np.unique(x)) < (2 if kind == "loglin" else 3):
        return None
    if kind == "loglin":
        b, a = np.polyfit(np.log(x), y, 1)
        params = (float(a), float(b))
    else:
        from scipy.optimize import curve_fit

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(power, x, y, p0=(min(1.0, y.max() + 0.05), 1.0, 0.5),
                                 bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 3.0]), maxfev=20000)
        except (RuntimeError, ValueError):
            return None
        params = tuple(float(v) for v in p)
    f = loglin if kind == "loglin" else power
    rss = float(((y - f(x, *params)) ** 2).sum())
    k, n = len(params), len(y)
    aic = n * math.log(max(rss, 1e-12) / n) + 2 * k
    return {"params": list(params), "rss": rss, "aic": aic}


def predict(kind: str, fit: dict, rows) -> np.ndarray:
    f = loglin if kind == "loglin" else power
    return f(np.asarray(rows, dtype=np.float64), *fit["params"])


def fit_curve(rows: np.ndarray, acc: np.ndarray, seeds: np.ndarray, n_all: int) -> dict:
    """Both fits on every point, the chosen one (lower AIC), and its projection at :data:`TIMES` × ``n_all`` rows:
    the pooled fit's accuracy, its gain over the measured mean at ``n_all``, and the band of the same model fitted
    to each seed alone (each seed's gain over its own accuracy at ``n_all``)."""
    rows, acc = np.asarray(rows, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    fits = {kind: _fit(kind, rows, acc) for kind in ("loglin", "power")}
    chosen = min((k for k in fits if fits[k]), key=lambda k: fits[k]["aic"])
    at_all = float(acc[rows == n_all].mean())
    projection = []
    for times in TIMES:
        target = n_all * times
        value = float(predict(chosen, fits[chosen], [target])[0])
        per_seed = []
        for s in np.unique(seeds):
            m = seeds == s
            kind = chosen if _fit(chosen, rows[m], acc[m]) else "loglin"   # 3 points fit a power law exactly
            own = _fit(kind, rows[m], acc[m])
            if own is not None and (rows[m] == n_all).any():
                per_seed.append(float(predict(kind, own, [target])[0]) - float(acc[m][rows[m] == n_all].mean()))
        other = "power" if chosen == "loglin" else "loglin"
        alt = float(predict(other, fits[other], [target])[0]) - at_all if fits.get(other) else float("nan")
        projection.append({"times": times, "rows": int(target), "acc": value, "gain": value - at_all,
                           "gain_other_fit": alt,
                           "gain_low": min(per_seed) if per_seed else float("nan"),
                           "gain_high": max(per_seed) if per_seed else float("nan"), "seeds": len(per_seed)})
    return {"loglin": fits["loglin"], "power": fits["power"], "chosen": chosen, "acc_at_all_rows": at_all,
            "projection": projection}


def curve_plot(points: list[dict], fit: dict, n_all: int, path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for seed in sorted({p["seed"] for p in points}):
        mine = [p for p in points if p["seed"] == seed]
        ax.plot([p["rows"] for p in mine], [p["task2_acc"] for p in mine], "o", ms=7, alpha=0.8,
                label=f"seed {seed}")
    grid = np.geomspace(min(p["rows"] for p in points) * 0.8, n_all * max(TIMES) * 1.1, 200)
    for kind, style in (("loglin", "--"), ("power", "-")):
        if fit.get(kind):
            chosen = " (chosen, lower AIC)" if kind == fit["chosen"] else ""
            ax.plot(grid, predict(kind, fit[kind], grid), style, lw=1.6,
                    label=f"{'log-linear' if kind == 'loglin' else 'power law'} AIC {fit[kind]['aic']:.1f}{chosen}")
    for p in fit["projection"]:
        lo, hi = fit["acc_at_all_rows"] + p["gain_low"], fit["acc_at_all_rows"] + p["gain_high"]
        ax.errorbar([p["rows"]], [p["acc"]], yerr=[[max(p["acc"] - lo, 0)], [max(hi - p["acc"], 0)]], fmt="s",
                    color="C3", capsize=4, label=f"{p['times']}× rows: {p['acc']:.3f}" if not math.isnan(lo) else None)
    ax.axvline(n_all, color="0.5", ls=":", lw=1, label=f"today: {n_all:,} rows")
    ax.set_xscale("log")
    ax.set(xlabel="train rows (log scale)", ylabel="test Task2 accuracy",
           title="Learning curve: would more labelled rows help?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, caption)
