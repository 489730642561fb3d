"""The top of plots/summary.md: the test figure, the user's target (``report.target_task2_acc``), the gap, and one
table of the routes toward it — each with the gain it is expected to bring, how that was measured, and its cost.

A route that was not measured says so and names the command that measures it. Two honest limits are built in: a
merge gain is positive by construction (a coarser task scores higher whatever the model), and cleanlab's label-error
estimate on a weak model is mostly the model's own errors — below :data:`FLAG_SHARE_LIMIT` it is shown, above it
withheld with the numbers that say why.
"""

from __future__ import annotations

import math

from ..data.io import page_safe

#: When cleanlab flags at least this share of the model's own Task2 errors as label issues, the flags track the
#: model's errors rather than the labels (confident learning needs the model's probabilities to estimate p(label | x)
#: better than the labels are wrong): the demo at accuracy 0.61 has 85% of its errors flagged, a Japanese run at 0.42
#: about 90%. Above it the "correct the labels" gain is withheld and the page says why in numbers.
FLAG_SHARE_LIMIT = 0.75


def _pts(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _ci(g: float, lo: float, hi: float) -> str:
    return f"{_pts(g)} [{_pts(lo)}, {_pts(hi)}]"


def merge_row(review: dict | None) -> str:
    merges = (review or {}).get("cumulative_merges") or []
    if not merges:
        return "| merge the most confused category pairs | not measured — `dvc repro review` | | |"
    first, last = merges[0], merges[-1]
    gains = f"{_ci(first['gain'], first['gain_low'], first['gain_high'])} (1 pair)"
    if len(merges) > 1:
        gains += f"; {_ci(last['gain'], last['gain_low'], last['gain_high'])} ({last['pairs']} pairs together)"
    names = "; ".join(str(page_safe([str(m["merged"])])[0]).replace("|", "/") for m in merges)
    return (f"| merge the most confused category pairs ({names}) | {gains} | review stage: the test rows re-scored as"
            " if each pair were one category, paired bootstrap — **positive by construction**: a coarser task, not a"
            " better model | a taxonomy decision: fewer, broader categories |")


def labels_row(review: dict | None) -> str:
    s = ((review or {}).get("splits") or {}).get("test")
    if not s:
        return "| correct the labels a human confirms | not measured — `dvc repro review` | | |"
    t2, acc = s["task2"], s["task2_acc"]
    errors = round((1 - acc) * t2["rows"])
    share = t2["flagged"] / errors if errors else 0.0
    bound = s["task2_acc_without_flagged"] - acc
    how = (f"cleanlab on val/test: {t2['flagged']} of {t2['rows']} test rows flagged; the model gets {errors} wrong,"
           f" so the flags cover {100 * share:.0f}% of its errors")
    if share >= FLAG_SHARE_LIMIT:
        return (f"| correct the labels a human confirms | **withheld**: on this model (accuracy {acc:.2f}) the flags"
                f" are mostly its own errors (≥ {100 * FLAG_SHARE_LIMIT:.0f}% of them flagged); the 'without flagged'"
                f" figure ({s['task2_acc_without_flagged']:.2f}) is no forecast | {how} | reading"
                f" `{(review.get('queue') or {}).get('path', 'metrics/label_issues.csv')}`, worst first |")
    return (f"| correct the labels a human confirms | at most {_pts(bound)} (every flag confirmed: an upper bound) |"
            f" {how} | reading `{(review.get('queue') or {}).get('path', 'metrics/label_issues.csv')}`, worst first |")


def rows_row(curve: dict | None) -> str:
    if not curve or not curve.get("measured"):
        return ("| more labelled rows | not measured — `twohead curve` (real DVC experiments at fractions of the train"
                " rows, then a fit) | | labelling |")
    proj = {p["times"]: p for p in curve["projection"]}
    other = {"loglin": "power law", "power": "log-linear"}[curve["fit"]["chosen"]]
    parts = []
    for times in (2, 4):
        p = proj.get(times)
        if p:
            alt = p.get("gain_other_fit", float("nan"))
            parts.append(f"{_pts(p['gain'])} at {times}× ({p['rows']:,} rows; seeds {_pts(p['gain_low'])} to"
                         f" {_pts(p['gain_high'])}" + ("" if math.isnan(alt) else f"; {other}: {_pts(alt)}") + ")")
    fit = {"loglin": "log-linear (grows without bound: trust 2× more than 4×)",
           "power": "saturating power-law"}[curve["fit"]["chosen"]]
    return (f"| more labelled rows | {'; '.join(parts)} | `twohead curve`: {curve['runs']} runs at"
            f" {', '.join(f'{f:g}' for f in curve['fractions'])} of {curve['train_rows']:,} train rows × seeds"
            f" {', '.join(map(str, curve['seeds']))}; {fit} fit (lower AIC); gains over the curve's own runs at"
            f" all rows | labelling {curve['train_rows']:,} / {3 * curve['train_rows']:,} more rows |")


def decisions_row(test: dict) -> str:
    effect = test.get("decided_vs_plain")
    if not effect:
        return "| decisions (calibrate) | not measured — `dvc repro calibrate evaluate` | | |"
    m = effect["metrics"]["task2_acc"]
    return (f"| decisions (calibrate: temperatures, prior correction, Decline rule) |"
            f" {_ci(m['delta'], m['ci_low'], m['ci_high'])} ({m['verdict']}) | decided − plain on these test rows,"
            " paired bootstrap; each adopted only beyond val's noise | none (chosen on val) |")


def route_section(test: dict, target: float, review: dict | None = None, curve: dict | None = None) -> list[str]:
    t = test["test"]["task2"]["acc"]
    decided = (test.get("decided") or {}).get("test", {}).get("task2", {}).get("acc", t)
    gap = target - decided
    lines = ["## Route to the target", "",
             f"Test Task2 accuracy **{decided:.4f}** (what `twohead predict` delivers; plain {t:.4f}); target"
             f" **{target:.4f}** (`report.target_task2_acc`): "
             + (f"a gap of **{100 * gap:.1f} points**." if gap > 0 else f"reached ({100 * -gap:.1f} points above)."),
             "", "Each route as measured on this run (Task2 accuracy, points, with its 95% interval):", "",
             "| route | expected Task2 gain | how it was measured | cost |", "|---|---|---|---|",
             merge_row(review), labels_row(review), rows_row(curve), decisions_row(test),
             "| switches (R-Drop, multi-sample dropout, AWP, task weighting, hierarchy terms, EMA) | within noise on"
             " the demo and MiniLM + demo (3 seeds each) | docs/what-moved-task2.md; yours: `twohead ablation` |"
             " training time |",
             "| teach the encoder your texts (the masked-LM phase before Stage 1, `mlm.epochs`) | demo: +1.9"
             " [+1.4, +2.5] at 10 epochs (3 seeds); a pretrained encoder: docs/mlm.md | docs/mlm.md; yours:"
             " `dvc exp run --queue -S mlm.epochs=0,10 -S train.seed=1,2,3`, then `twohead compare --group-by"
             " mlm.epochs` | 22 s per epoch per 8,000 demo texts on 2 CPU cores; more for a larger encoder |",
             "| another encoder (a larger or in-domain checkpoint) | not measured here — `dvc exp run -S"
             " model.stage1_checkpoint=/path/to/checkpoint`, then `twohead compare main <exp>` | on the demo the"
             " encoder was the one route that moved Task2 beyond noise (docs/what-moved-task2.md) | a bigger model,"
             " a GPU (docs/remote.md) |", ""]
    return lines
