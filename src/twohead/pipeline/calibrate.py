"""The calibrate stage: the decisions that turn the kept model's probabilities into answers, chosen on val.

Reads the val split only (and the train split's class counts for the prior): temperatures, the Task2
class-prior correction and the Decline rule (:mod:`twohead.evaluate.decision`). Writes the decision file next
to the model (what ``twohead predict`` and the evaluate stage apply), its headline figures as a DVC metric,
the reliability bins and the threshold curve as DVC plot data, and the reliability figure (the evaluate stage draws
the Decline rule's figure, val beside test). Changing a ``decide.*`` param
re-runs this stage, evaluate and predict — never training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.params import Params, to_dict
from ..data.io import METRIC_DIGITS, write_csv, write_json
from ..data.prepared import read_label_info
from ..evaluate.calibration import calibrated, reliability
from ..evaluate.decision import choose, guard_summary
from ..evaluate.metrics import band_recall, softmax
from ..evaluate.plots import reliability_plot
from ..train.scoring import Scorer


@dataclass(frozen=True)
class CalibratePaths:
    """Inputs: prepared labels, tokenized val, the Stage-2 model. Outputs: the decision and its report."""

    prepared: Path
    tokenized: Path
    stage2_model: Path
    decision: Path
    calibration_metrics: Path
    reliability: Path
    decision_curve: Path
    figures: Path


def run(p: Params, paths: CalibratePaths) -> dict:
    scorer = Scorer(paths.stage2_model, p.train.device, p.train.eval_batch_size, p.train.padding)
    info = read_label_info(paths.prepared)
    scorer.check_classes(info.names, paths.prepared)
    names = scorer.names
    ds, logits1, logits2 = scorer.split(paths.tokenized, "val")
    y1, y2 = ds.labels_task1, ds.labels_task2
    dec, report = choose(logits1, logits2, y1, y2, info.class_weights["task2"]["support"], p.decide)

    bands = info.bands
    raw_pred, dec_pred = logits2.argmax(1), dec.task2_scores(logits2).argmax(1)
    band_rows = {"plain": band_recall(y2, raw_pred, bands["class_band"], names, bands["names"]),
                 "decided": band_recall(y2, dec_pred, bands["class_band"], names, bands["names"])}
    rule = report["decline_rule"]
    temp = report["temperature"]
    headline = {
        "val_rows": len(ds), "temperature_task1": dec.temperature_task1, "temperature_task2": dec.temperature_task2,
        "val_ece_task1": {"raw": temp["task1"]["ece_before"], "calibrated": temp["task1"]["ece_after"]},
        "val_ece_task2": {"raw": temp["task2"]["ece_before"], "calibrated": temp["task2"]["ece_after"]},
        "tau": dec.tau, "rule": dec.rule, "pick_threshold": dec.pick_threshold,
        "maxprob_threshold": dec.maxprob_threshold, "objective": rule["objective"],
        "val_objective": {"decided": rule["val_value"], "plain_threshold": rule["val_value_at_plain_threshold"]},
        "val_band_recall": {kind: {r["band"]: r["recall"] for r in rows} for kind, rows in band_rows.items()},
    }
    decision = {"decision": dec.to_dict(), "classes": list(names), "n_classes": len(names), "chosen_on": "val",
                "val_rows": len(ds), "settings": to_dict(p.decide),
                "report": {k: v for k, v in report.items() if k not in ("decline_pr_curve",)} | {
                    "decline_rule": {k: v for k, v in rule.items() if k != "grid"},
                    "val_band_recall": headline["val_band_recall"]}}
    # the noise guard: which decisions were adopted, and each one's val gain with its interval (null: none to guard)
    headline["noise_guard"] = guard_summary(decision)

    rel = []
    for head, logits, y, t in (("task1", logits1, y1, dec.temperature_task1),
                               ("task2", logits2, y2, dec.temperature_task2)):
        for kind, probs in (("raw", softmax(logits)), ("calibrated", calibrated(logits, t))):
            rel += [{"head": head, "probabilities": kind, **r} for r in reliability(probs, y)]
    rel_df = pd.DataFrame(rel)
    curve = pd.DataFrame(rule["grid"])
    text = (f"{paths.stage2_model} | val {len(ds)} rows | T1 {dec.temperature_task1:.3g}, T2"
            f" {dec.temperature_task2:.3g}, τ {dec.tau:g} | {dec.rule}: t {dec.pick_threshold:g}"
            + (f", t2 {dec.maxprob_threshold:g}" if dec.rule == "pick_or_maxprob" else "")
            + f" | objective {rule['objective']}")
    if scorer.accelerator.is_main_process:
        reliability_plot(rel_df, paths.figures / "reliability.png", text)
        write_csv(paths.reliability, rel_df)
        write_csv(paths.decision_curve, curve)
        write_json(paths.decision, decision)
        # last: a failed run leaves no metrics file
        write_json(paths.calibration_metrics, headline, digits=METRIC_DIGITS)
    return headline
