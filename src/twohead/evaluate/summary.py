"""One page a user can open after a run: key metrics, the curves, and what the rules read in them."""

from __future__ import annotations

import math

import pandas as pd

from ..config.schema import higher_is_better, label
from .diagnose import Finding
from .route import route_section


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _pts(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def headline_lines(test: dict) -> str:
    """Two lines of test figures, plain rule and (when a decision applies) the decided one: what ``dvc repro``
    prints last (the plot stage)."""
    rows = [("plain", test["test"])]
    if "decided" in test:
        rows.append(("decided", test["decided"]["test"]))
    return "\n".join(f"[test, {name}] Task2 acc {r['task2']['acc']:.4f}, macro-F1 {r['task2']['macro_f1']:.4f} |"
                     f" Task1 acc {r['task1']['acc']:.4f} | combined acc {r['combined']['acc']:.4f}"
                     for name, r in rows)


def figures_table(test: dict) -> list[str]:
    """The test figures under the plain rule and under the decided one — what `twohead predict` delivers — and how
    close the misses are (top-k; the runner-up share)."""
    rows = [("plain (raw softmax, P(Pick) < 0.5, argmax)", test["test"])]
    if "decided" in test:
        rows.append(("**decided** (what `twohead predict` delivers)", test["decided"]["test"]))
    lines = ["| rule | Task2 acc | top-2 | Task2 macro-F1 | Task1 acc | Pick F1 | Decline precision | combined acc |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {_f(r['task2']['acc'])} | {_f(r['task2'].get('top2_acc'))} |"
                     f" {_f(r['task2']['macro_f1'])} | {_f(r['task1']['acc'])} | {_f(r['task1']['f1_pick'])} |"
                     f" {_f(r['task1'].get('precision_decline'))} | {_f(r['combined']['acc'])} |")
    t2 = test["test"]["task2"]
    tops = ", ".join(f"top-{k} {_f(t2[f'top{k}_acc'])}" for k in (2, 3, 5) if f"top{k}_acc" in t2)
    share = t2.get("runner_up_share")
    if tops and share is not None and not math.isnan(share):
        close = (" — the model is often close: a merge of confusable pairs or more rows of those classes is where"
                 " to look" if share >= 0.4 else "")
        lines += ["", f"Task2 top-k on test (plain): {tops}. Of the rows Task2 gets wrong, {100 * share:.0f}% have the"
                      f" right category as the runner-up{close}."]
    return lines + [""]


def decision_table(test: dict) -> list[str]:
    """Plain rule vs the decided rule on test, each difference with its paired-bootstrap interval."""
    effect = test.get("decided_vs_plain")
    if not effect:
        return []
    d = test["decided"]["decision"]
    rule = f"Decline if calibrated P(Pick) < {d['pick_threshold']:g}"
    if d["rule"] == "pick_or_maxprob":
        rule += f" or Task2 max-prob < {d['maxprob_threshold']:g}"
    lines = ["## Plain rule vs the decisions chosen on val", "",
             f"Decided: T1 {d['temperature_task1']:.3g}, T2 {d['temperature_task2']:.3g}, prior correction τ"
             f" {d['tau']:g}, {rule}. Plain: raw softmax, Decline if P(Pick) < 0.5, the argmax. Test,"
             f" {effect['rows']} rows; Δ in points with its paired-bootstrap 95% interval ({effect['resamples']}"
             " resamples). Confidence figures (ECE, consistency rates) use the calibrated probabilities.", "",
             "| test metric | plain | decided | Δ [95% CI] | verdict |", "|---|---|---|---|---|"]
    for name, m in effect["metrics"].items():
        lines.append(f"| {label(name)} | {_f(m['base'])} | {_f(m['other'])} | {_pts(m['delta'])}"
                     f" [{_pts(m['ci_low'])}, {_pts(m['ci_high'])}] | {m['verdict']} |")
    return lines + [""] + guard_lines(test["decided"].get("guard"))


GUARDED = {"temperature_task1": ("temperature T1", "val NLL (−)"),
           "temperature_task2": ("temperature T2", "val NLL (−)"),
           "prior_correction": ("prior correction τ", "val Task2 objective"),
           "decline_rule": ("Decline rule thresholds", "val decide.objective")}


def guard_lines(guard: dict | None) -> list[str]:
    """What calibrate's noise guard did: each decision adopted only when its val gain beat val's noise."""
    if not guard:
        return []
    lines = ["Noise guard (calibrate): a decision is adopted only when its gain over the plain choice on val has a"
             " paired-bootstrap 95% interval above 0 (and, for right/wrong objectives, an exact McNemar p < 0.05).",
             ""]
    for key, (name, what) in GUARDED.items():
        g = guard.get(key)
        if not g:
            continue
        said = "adopted" if g["adopted"] else "**not adopted: within val's noise, the plain choice is kept**"
        if "gain" in g:
            said += (f" ({what} gain {_pts(g['gain'])} points [{_pts(g.get('ci_low'))}, {_pts(g.get('ci_high'))}])"
                     if "NLL" not in what else f" (NLL gain {g['gain']:+.4f} [{g.get('ci_low', 0):+.4f},"
                                               f" {g.get('ci_high', 0):+.4f}])")
        if "mcnemar_p" in g:
            said += (f"; {g.get('rows_won', 0):.0f} val rows won, {g.get('rows_lost', 0):.0f} lost, exact McNemar"
                     f" p {g['mcnemar_p']:.3g}")
        lines.append(f"- {name}: {said}")
    return lines + [""]


def moved_section(test: dict, train: dict | None, mlm: dict | None = None) -> list[str]:
    """"What moved Task2 accuracy": each switch or decision of this run, chosen on val, with its test effect where the
    pipeline measures one (the decisions: decided − plain, paired bootstrap) and its val effect otherwise; the
    masked-LM phase with this run's figures (its effect needs runs without it: measured over seeds in docs/mlm.md)."""
    lines = ["## What moved Task2 accuracy", "",
             "Each is chosen on val; Δ in points on test with its paired-bootstrap 95% interval (these two"
             " models, one seed — over seeds: docs/what-moved-task2.md).", "",
             "| switch or decision | chosen on val | Task2 acc Δ | macro-F1 Δ | the cost |", "|---|---|---|---|---|"]
    effect = test.get("decided_vs_plain")
    if effect:
        d, m = test["decided"]["decision"], effect["metrics"]
        cost = decision_cost(m)
        lines.append(f"| decisions (calibrate) | τ {d['tau']:g}, T2 {d['temperature_task2']:.3g}, Decline rule"
                     f" {d['rule']} | {_pts(m['task2_acc']['delta'])} [{_pts(m['task2_acc']['ci_low'])},"
                     f" {_pts(m['task2_acc']['ci_high'])}] | {_pts(m['task2_macro_f1']['delta'])}"
                     f" [{_pts(m['task2_macro_f1']['ci_low'])}, {_pts(m['task2_macro_f1']['ci_high'])}] | {cost} |")
    wa = (train or {}).get("weight_averaging")
    avg = test.get("averaged_vs_raw")
    if avg:   # an average was kept: its test effect over the raw weights (plain rule)
        m = avg["metrics"]
        lines.append(f"| weight averaging (switches.ema) | {page_safe_cell(avg['kept'])} |"
                     f" {_pts(m['task2_acc']['delta'])}"
                     f" [{_pts(m['task2_acc']['ci_low'])}, {_pts(m['task2_acc']['ci_high'])}] |"
                     f" {_pts(m['task2_macro_f1']['delta'])} [{_pts(m['task2_macro_f1']['ci_low'])},"
                     f" {_pts(m['task2_macro_f1']['ci_high'])}] | one val pass per average per epoch |")
    elif wa:
        kept, raw = wa["kept"], wa["raw"]["val_acc_task2"]
        best = wa["candidates"].get(kept, {}).get("val", [{}])
        val = best[-1].get("val_acc_task2", raw) if kept != "raw" else raw
        said = "no average beat the raw weights on val: the raw ones were kept" if kept == "raw" else \
            f"val: {_pts(val - raw)} (test: re-run evaluate)"
        lines.append(f"| weight averaging (switches.ema) | {page_safe_cell(kept)} (epoch {wa['kept_epoch']}) |"
                     f" {said} | |"
                     " one val pass"
                     " per average per epoch |")
    else:
        lines.append("| weight averaging (switches.ema) | off | | | |")
    lines.append(mlm_row(mlm))
    return lines + [""]


def mlm_row(m: dict | None) -> str:
    """The masked-LM phase's row: on (epochs, texts, val figures) or off, and where its effect is measured."""
    where = "over seeds: docs/mlm.md"
    if not m or not m.get("trained"):
        why = page_safe_cell((m or {}).get("reason", "not run"))
        return f"| masked-LM phase (mlm.epochs) | off ({why}) | {where} | | |"
    texts = m.get("trained_texts", 0)   # every source: train split, pool, val/test if transductive
    return (f"| masked-LM phase (mlm.epochs) | {m['epoch']} epochs on {texts:,} texts; val masked-token acc"
            f" {_f(m['val_acc'])}, loss {_f(m['val_loss'])} | {where} | | before Stage 1 (metrics/mlm_speed.json) |")


def decision_cost(metrics: dict) -> str:
    """Every test metric the decisions moved the wrong way (bold when beyond noise), or "none on test"."""
    worse = []
    for name, m in metrics.items():
        d = m.get("delta")
        if d is None or (isinstance(d, float) and math.isnan(d)) or d == 0:
            continue
        if (d < 0) == higher_is_better(name):
            text = f"{label(name)} {_pts(d)}"
            worse.append(f"**{text} (worse)**" if m.get("verdict") == "worse" else text)
    return ", ".join(worse) or "none on test"


def review_section(review: dict, pairs_figure: str) -> list[str]:
    """"Where the labels lose": the review stage's estimates (``metrics/review.json``)."""
    s = review["splits"]
    lines = ["## Where the labels lose", "",
             "cleanlab (confident learning) on the kept model's calibrated val/test probabilities, which it never"
             " trained on. Estimates, not verdicts: read the queue.", "",
             "| split | rows | Task2 labels flagged | estimated wrong (Task2) | Pick/Decline flagged |"
             " Task2 acc | … without the flagged rows (upper bound) |", "|---|---|---|---|---|---|---|"]
    for name in ("val", "test"):
        t2, t1 = s[name]["task2"], s[name]["task1"]
        lines.append(f"| {name} | {t2['rows']} | {t2['flagged']} ({100 * t2['flagged_share']:.1f}%) |"
                     f" {t2['estimated_wrong']} ({100 * t2['estimated_wrong_share']:.1f}%) | {t1['flagged']} |"
                     f" {_f(s[name]['task2_acc'])} | {_f(s[name]['task2_acc_without_flagged'])} |")
    lines += ["", "Most confused category pairs on test, and what merging each would buy (Task2 accuracy, paired"
              " bootstrap 95% interval):", "", "| pair | A→B | B→A | merge gain (points) |", "|---|---|---|---|"]
    for r in review["top_pairs"]:
        lines.append(f"| {page_safe_cell(r['a'])} ↔ {page_safe_cell(r['b'])} | {r['a_as_b']} | {r['b_as_a']} |"
                     f" {_pts(r['merge_gain'])} [{_pts(r['merge_gain_low'])}, {_pts(r['merge_gain_high'])}] |")
    d = review["duplicates"]
    lines += ["", f"Conflicting duplicates (same text after normalisation, different labels): {d['groups']} group(s),"
              f" {d['rows']} rows ({d['across_splits']} group(s) across splits).", "",
              f"The queue: `{review['queue']['path']}` ({review['queue']['rows']} rows, worst first). Train side:"
              f" `{review['train_queue']['path']}` — {review['train_queue']['what']} ({review['train_queue']['rows']}"
              f" rows). Fixes go in `data.corrections` (id,category,pick,drop): `dvc exp run`, then `twohead"
              " compare`.", "", f"![{pairs_figure}]({pairs_figure})", ""]
    return lines


def page_safe_cell(name: str) -> str:
    """A category name inside a Markdown table cell: no pipe, no markup."""
    from ..data.io import page_safe

    return str(page_safe([name])[0]).replace("|", "\\|")


def coverage_lines(c: dict | None) -> list[str]:
    """The tokenizer's line when it misses part of the texts (characters inside unknown tokens past the warning
    level of :mod:`twohead.data.coverage`); nothing otherwise."""
    from ..data.coverage import UNKNOWN_WARN

    if not c or c.get("unknown_char_share", c.get("unknown_share", 0.0)) <= UNKNOWN_WARN:
        return []
    head = ("**Not ready: the tokenizer cannot read these texts.**" if not c.get("ready", True) else
            "**The tokenizer misses part of these texts.**")
    examples = ", ".join(f"`{page_safe_cell(x)}`" for x in c.get("unknown_examples", []))
    return [f"{head} {c.get('unknown_char_share', c['unknown_share']):.1%} of the characters of {c['texts']} sampled"
            f" train texts sit inside unknown tokens ({c['unknown_share']:.1%} of the tokens; e.g. {examples}): the"
            " model never sees them, and no finding below means much until it does. Use a checkpoint whose"
            " vocabulary covers the texts' script, or none (the from-scratch encoder's tokenizer learns your train"
            " texts); `twohead check` measures it before a run.", ""]


def summary_markdown(test: dict, history: pd.DataFrame, findings: list[Finding], caption: str,
                     figures: list[str], review: dict | None = None, pairs_figure: str = "",
                     train: dict | None = None, target: float = 0.85, curve: dict | None = None,
                     coverage: dict | None = None, mlm: dict | None = None) -> str:
    """``test``: the evaluate stage's metrics (``{"test": …, "val": …}``); ``figures``: PNG file names next to
    the summary (embedded with relative links); ``target``: report.target_task2_acc; ``curve``: `twohead curve`'s
    result (None or unmeasured: the route table says how to measure it); ``coverage``: the tokenize stage's
    figures (``metrics/tokenizer.json``): a tokenizer that misses the texts comes first, before any diagnosis;
    ``mlm``: the masked-LM phase's (``metrics/mlm.json``)."""
    t = test["test"]
    last = history.iloc[-1]
    n, acc = t["task2"]["rows"], t["task2"]["acc"] or 0.0
    half = 100 * 1.96 * math.sqrt(acc * (1 - acc) / n) if n else float("nan")
    lines = [
        "# Run summary", "", f"_{caption}_", "", *coverage_lines(coverage), *route_section(test, target, review, curve),
        "## Test metrics", "", *figures_table(test),
        f"Last epoch ({int(last['epoch'])}): train Task2 accuracy {_f(last['train_acc_task2'])} (running, dropout on),"
        f" val {_f(last['val_acc_task2'])}; val Task1 accuracy {_f(last['val_acc_task1'])}."
        f" With {n} test rows with a category, this accuracy alone is uncertain by about ±{half:.1f} points"
        " (95%, normal approximation): compare runs with `twohead compare`, not by eye.", "",
    ]
    lines += decision_table(test) + moved_section(test, train, mlm) + ["## What the curves say", ""]
    if findings:
        lines += [f"- **{f.rule}**: {f.message}" for f in findings]
    else:
        lines.append("No rule fired: no sign of under- or overfitting, LR trouble, a flat task or a dead band.")
    lines += ["", "Rules and thresholds: `src/twohead/evaluate/diagnose.py`.", ""]
    if review is not None:
        lines += review_section(review, pairs_figure)
    lines += ["## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"
