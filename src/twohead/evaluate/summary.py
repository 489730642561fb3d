"""One page a user can open after a run: key metrics, the curves, and what the rules read in them."""

from __future__ import annotations

import math

import pandas as pd

from .diagnose import Finding


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def summary_markdown(test: dict, history: pd.DataFrame, findings: list[Finding], caption: str,
                     figures: list[str]) -> str:
    """``test``: the evaluate stage's metrics (``{"test": …, "val": …}``); ``figures``: PNG file names next to
    the summary (embedded with relative links)."""
    t = test["test"]
    last = history.iloc[-1]
    n, acc = t["task2"]["rows"], t["task2"]["acc"] or 0.0
    half = 100 * 1.96 * math.sqrt(acc * (1 - acc) / n) if n else float("nan")
    lines = [
        "# Run summary", "", f"_{caption}_", "",
        "## Test metrics", "",
        "| Task2 acc | Task2 macro-F1 | Task1 acc | Pick F1 | combined (N+Decline) acc |", "|---|---|---|---|---|",
        f"| {_f(t['task2']['acc'])} | {_f(t['task2']['macro_f1'])} | {_f(t['task1']['acc'])} |"
        f" {_f(t['task1']['f1_pick'])} | {_f(t['combined']['acc'])} |", "",
        f"Last epoch ({int(last['epoch'])}): train Task2 accuracy {_f(last['train_acc_task2'])} (running, dropout on),"
        f" val {_f(last['val_acc_task2'])}; val Task1 accuracy {_f(last['val_acc_task1'])}."
        f" With {n} test rows with a category, this accuracy alone is uncertain by about ±{half:.1f} points"
        " (95%, normal approximation): compare runs with `twohead compare`, not by eye.", "",
        "## What the curves say", "",
    ]
    if findings:
        lines += [f"- **{f.rule}**: {f.message}" for f in findings]
    else:
        lines.append("No rule fired: no sign of under- or overfitting, LR trouble, a flat task or a dead band.")
    lines += ["", "Rules and thresholds: `src/twohead/diagnose.py`.", "", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"
