"""PNG figures from the pipeline's tables (no re-computation of any metric); the plot stage
(:mod:`twohead.pipeline.plot`) decides which table feeds which figure and where it goes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Text is text: a category named "COST $\bad$" must not reach matplotlib's math-text parser (it stopped the plot
# stage, and "C$ / US$" rendered garbled). No figure here uses math text.
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..config import switches  # noqa: E402
from ..config.params import Params  # noqa: E402
from ..data.io import atomic_path  # noqa: E402

DPI = 120


def short_path(path) -> str:
    """A path for a figure's footer or a summary header: its last two parts (``models/stage1``)."""
    parts = Path(str(path)).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else str(path)


def caption(p: Params) -> str:
    t, loss = p.train, p.loss
    ckpt = f"checkpoint {short_path(p.model.stage1_checkpoint)}"
    accum = f"×{t.grad_accum}" if t.grad_accum > 1 else ""
    on = switches.active(switches.values(p))
    extra = (" | on: " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in on.items())) if on else ""
    return (f"{ckpt} | lr {t.lr:g}, LLRD {t.llrd:g}, warmup {t.warmup_ratio:g}, {t.epochs} ep, batch {t.batch_size}"
            f"{accum} | λ1 {loss.lambda_task1:g}, λ2 {loss.lambda_task2:g},"
            f" smoothing t2 {loss.label_smoothing:g} | {p.model.pooling} pooling{extra}")


def save_figure(fig, path: Path, text: str) -> None:
    """Footer ``text`` under the figure — wrapped to the figure's width, so a narrow figure does not cut it on both
    sides —, tight layout, written atomically as PNG, figure closed."""
    import textwrap

    width_in, height_in = fig.get_size_inches()
    lines = textwrap.wrap(text, width=max(int(width_in * 17), 40)) or [""]  # 7-pt text: ~17 characters an inch
    fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=7, color="0.35")
    footer = min(0.03 + len(lines) * 0.125 / height_in, 0.4)  # ~0.125 in per 7-pt line
    fig.tight_layout(rect=(0, footer, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def curves(hist: pd.DataFrame, series: dict[str, str], title: str, ylabel: str, path: Path, text: str,
           unit_range: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for col, label in series.items():
        style = "--" if col.startswith("train") else "-"
        ax.plot(hist["epoch"], hist[col], style, marker="o", label=label)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    ax.set_xticks(hist["epoch"])
    if unit_range:
        ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, text)


def band_curves(bands: pd.DataFrame, path: Path, text: str, totals: dict[str, int] | None = None) -> None:
    """Mean per-class val recall per band and epoch; ``totals``: each band's class count (the legend says how
    many of them have val rows). The y-axis starts below 0 so that a band stuck at 0 is seen, not hidden in
    the axis."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for band, g in bands.groupby("band", sort=False):
        n = int(g["n_classes"].iloc[-1])
        total = (totals or {}).get(band, n)
        count = f"{n} classes" if total == n else f"{n} of {total} classes with val rows"
        zero = " — 0 at every epoch" if (g["recall"].fillna(0) == 0).all() else ""
        ax.plot(g["epoch"], g["recall"], marker="o", lw=2 if zero else 1.5, label=f"{band} ({count}){zero}")
    ax.set(title="Task2 val recall by frequency band (mean per-class recall)", xlabel="epoch", ylabel="recall")
    ax.set_xticks(sorted(bands["epoch"].unique()))
    ax.set_ylim(-0.04, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, text)


def per_class_recall(per_class: pd.DataFrame, band_order: list[str], path: Path, text: str) -> None:
    df = per_class[per_class["test_support"] > 0].sort_values("train_support", ascending=False)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.28 * len(df) + 2), 4.8))
    colors = dict(zip(band_order, plt.cm.tab10.colors))
    ax.bar(range(len(df)), df["recall"], color=[colors.get(b, "0.5") for b in df["band"]])
    for x, (r, b) in enumerate(zip(df["recall"], df["band"])):
        if r == 0:  # a zero-recall class still gets a visible (hatched, labelled) stub in its band's colour
            ax.bar(x, 0.02, color="none", edgecolor=colors.get(b, "0.5"), hatch="////", linewidth=0.8)
            ax.text(x, 0.025, "0", ha="center", va="bottom", fontsize=7, color="0.3")
    ax.set_xticks(range(len(df)))
    ax.set_xticklabels([f"{c} ({s})" for c, s in zip(df["class"], df["train_support"])], rotation=75, ha="right",
                       fontsize=7)
    ax.set(title="Task2 test recall per class, by train support (in brackets)", ylabel="recall", ylim=(0, 1.02))
    shown = [b for b in band_order if b in colors]
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[b]) for b in shown], labels=shown, title="band",
              fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path, text)


def top_confusions(confusion: pd.DataFrame, k: int, path: Path, text: str) -> None:
    """The ``k`` most frequent (actual, predicted) pairs as a matrix. Rows and columns list the same classes in the
    same order (those of the pairs, most confused first), so the diagonal is where a reader expects it: shaded grey,
    empty (only confusions are counted)."""
    wrong = confusion[confusion["actual"] != confusion["predicted"]]
    pairs = wrong.value_counts(["actual", "predicted"]).head(k)
    rows = cols = list(dict.fromkeys(c for pair in pairs.index for c in pair))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(cols) + 3), max(4.0, 0.4 * len(rows) + 2.5)))
    if not rows:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        ax.set_axis_off()
    else:
        ri, ci = {c: i for i, c in enumerate(rows)}, {c: i for i, c in enumerate(cols)}
        mat = np.zeros((len(rows), len(cols)), int)
        for (a, b), n in pairs.items():
            mat[ri[a], ci[b]] = n
        im = ax.imshow(mat, cmap="Reds", aspect="auto")
        for i in range(len(rows)):   # the diagonal: the same class, never a confusion
            ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, color="0.85", zorder=2))
        for i in range(len(rows)):
            for j in range(len(cols)):
                if mat[i, j]:
                    ax.text(j, i, str(mat[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if mat[i, j] > mat.max() / 2 else "black")
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(rows, fontsize=7)
        ax.set(xlabel="predicted", ylabel="actual", title=f"Task2: the {len(pairs)} most frequent confusions (test)")
        fig.colorbar(im, ax=ax, shrink=0.7, label="rows")
    save_figure(fig, path, text)


def data_map(carto: pd.DataFrame, task_title: str, path: Path, text: str, max_points: int = 20000) -> None:
    """Cartography data map: variability (x) vs confidence (y), coloured by correctness. At most
    ``max_points`` rows are drawn (a seeded sample) so large data sets stay readable."""
    n = len(carto)
    df = carto.sample(max_points, random_state=0) if n > max_points else carto
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    sc = ax.scatter(df["variability"], df["confidence"], c=df["correctness"], cmap="coolwarm_r", vmin=0, vmax=1,
                    s=6, alpha=0.6, linewidths=0)
    fig.colorbar(sc, ax=ax, label="correctness (share of epochs right)")
    counts = carto["region"].value_counts()
    summary = ", ".join(f"{r} {counts.get(r, 0)}" for r in ("easy-to-learn", "ambiguous", "hard-to-learn"))
    ax.set(title=f"Data map, {task_title} ({n:,} train rows{'' if n <= max_points else f'; {max_points:,} drawn'})",
           xlabel="variability (std of gold-label probability over epochs)",
           ylabel="confidence (mean gold-label probability)", ylim=(-0.02, 1.02))
    ax.text(0.98, 0.02, summary, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.3")
    ax.grid(alpha=0.3)
    save_figure(fig, path, text)


def reliability_plot(rel: pd.DataFrame, path: Path, text: str) -> None:
    """Reliability diagrams (accuracy against mean confidence per bin) of both heads, raw and calibrated, on val."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, head, title in zip(axes, ("task1", "task2"), ("Task1 (Pick/Decline)", "Task2 (category)")):
        ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfectly calibrated")
        for kind, color, marker in (("raw", "C3", "o"), ("calibrated", "C0", "s")):
            d = rel[(rel["head"] == head) & (rel["probabilities"] == kind) & (rel["rows"] > 0)]
            ax.plot(d["confidence"], d["accuracy"], marker=marker, color=color, lw=1.5, label=kind)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="mean confidence (max probability) per bin",
               ylabel="accuracy per bin", title=f"{title}: reliability on val")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path, text)


def decision_plot(curves: dict[str, pd.DataFrame], dec, objective: str, path: Path, text: str) -> None:
    """The Decline rule chosen on val, and what it did on test. Left: the objective against the Pick threshold on val
    (where it was chosen) and on test (the outcome), chosen and plain marked on both. Right: Decline precision
    against recall on val and test as the threshold moves, chosen and plain marked."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    for (split, d), color, ls in zip(curves.items(), ("C0", "C1"), ("-", "--")):
        d = d.sort_values("pick_threshold")
        ok = np.isfinite(d["value"].to_numpy(dtype=float))
        ax.plot(d["pick_threshold"][ok], d["value"][ok], color=color, ls=ls, lw=1.8, label=split)
        ax2.plot(d["decline_recall"], d["decline_precision"], color=color, ls=ls, lw=1.4, marker=".", ms=3,
                 label=split)
        for t, mark, name in ((dec.pick_threshold, "o", "chosen"), (0.5, "s", "plain")):
            row = d.iloc[(d["pick_threshold"] - t).abs().argsort()[:1]]
            value = float(row["value"].iloc[0])
            ax.plot([t], [value], mark, color=color, ms=8, mfc="none" if name == "plain" else color,
                    label=f"{split} {name} t {t:g}: {value:.4f}")
            ax2.plot(row["decline_recall"], row["decline_precision"], mark, color=color, ms=8,
                     mfc="none" if name == "plain" else color)
    ax.axvline(0.5, color="0.5", ls=":", lw=1)
    ax.set(xlabel="Pick threshold t (Decline if calibrated P(Pick) < t)", ylabel=objective,
           title="The Decline rule: chosen on val, its outcome on test")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax2.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="Decline recall", ylabel="Decline precision",
            title="Decline precision–recall as t moves (● chosen, □ plain)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    save_figure(fig, path, text)
