"""The evaluate stage: the Stage-2 model on the test split (and val, for reference).

Writes the test/val summary metrics (Task1, Task2, combined "N + Decline" view, consistency), the
per-class table, the per-band figures, the test rows with the highest Task2 loss, the confusion pairs
and the per-row predictions — all under the **plain** rule (raw softmax, Decline when P(Pick) < 0.5, the
Task2 argmax), so they compare across runs and commits. Then the same metrics under the **decided** rule of
the calibrate stage (temperatures, prior correction, Decline rule, chosen on val), and on test the paired
bootstrap interval of each difference decided − plain: what the decisions bought; and the Decline rule's figure,
its objective on val (where it was chosen) beside test (its outcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.params import Params
from ..config.schema import headline
from ..data.io import METRIC_DIGITS, page_safe, write_csv, write_json
from ..data.prepared import read_label_info, texts_by_id
from ..evaluate.decision import decide, decision_objective, guard_summary, read_decision, rule_curve
from ..evaluate.metrics import IGNORE, softmax
from ..evaluate.plots import decision_plot
from ..evaluate.tables import band_table, per_class_table, predictions_table, split_metrics, worst_k_table
from ..experiments.stats import Coded, paired_compare
from ..model.two_head import load_raw_weights, read_stage2_meta
from ..train.scoring import Scorer


@dataclass(frozen=True)
class EvaluatePaths:
    """Inputs: prepared labels, tokenized splits, the Stage-2 model. Outputs: test metrics and tables."""

    prepared: Path
    tokenized: Path
    stage2_model: Path
    test_metrics: Path
    band_metrics: Path
    per_class: Path
    worst_k: Path
    confusion: Path
    predictions: Path
    decision: Path
    headline_metrics: Path
    figures: Path


def run(p: Params, paths: EvaluatePaths) -> dict:
    e = p.eval
    scorer = Scorer(paths.stage2_model, p.train.device, p.train.eval_batch_size, p.train.padding)
    names = scorer.names
    info = read_label_info(paths.prepared)
    bands, train_support = info.bands, info.class_weights["task2"]["support"]
    scorer.check_classes(info.names, paths.prepared)
    dec, chosen_on_val = read_decision(paths.decision, names)
    objective, target = decision_objective(chosen_on_val, str(paths.decision))

    results, decided, test, curves = {}, {}, None, {}
    for split in ("val", "test"):
        ds, logits1, logits2 = scorer.split(paths.tokenized, split)
        probs1, probs2 = softmax(logits1), softmax(logits2)
        y1, y2 = ds.labels_task1, ds.labels_task2
        results[split] = split_metrics(y1, y2, probs1, probs2, len(names), e)
        d = decide(dec, logits1, logits2)
        decided[split] = split_metrics(y1, y2, d.p1, d.p2, len(names), e, decline=d.decline, pred2=d.pred2,
                                       scores2=d.scores)
        curves[split] = pd.DataFrame(rule_curve(dec, logits1, logits2, y1, y2, objective, target))
        if split == "test":
            test = (ds, probs1, probs2, d.p2, d.pred2, d.decline)
    results = {k: results[k] for k in ("test", "val")}
    # val figures under the decided rule are optimistic (the rule was chosen on val); test is the result
    results["decided"] = {**decided, "decision": {k: v for k, v in dec.to_dict().items() if k != "log_prior"},
                          "guard": guard_summary(chosen_on_val)}

    ds, probs1, probs2, d2, dpred2, ddecline = test
    y1, y2, ids = ds.labels_task1, ds.labels_task2, ds.ids
    pred2 = probs2.argmax(1)
    members = {b: [i for i, n in enumerate(names) if bands["class_band"][n] == b] for b in bands["names"]}
    plain = Coded.from_arrays(y1, probs1[:, 1] < 0.5, y2, pred2, probs2.max(1), len(names))
    chosen = Coded.from_arrays(y1, ddecline, y2, dpred2, d2[np.arange(len(dpred2)), dpred2], len(names))
    results["decided_vs_plain"] = {"rows": int(len(y1)), "resamples": 2000, "seed": 0,
                                   "metrics": paired_compare(plain, chosen, members, resamples=2000, seed=0)}
    raw = _raw_weights_on_test(scorer, paths, len(names))
    if raw is not None:   # switches.ema kept an average: what it bought over the raw weights, on test (plain rule)
        results["averaged_vs_raw"] = {"rows": int(len(y1)), "resamples": 2000, "seed": 0,
                                      "kept": read_stage2_meta(Path(paths.stage2_model))[0].get("kept_weights"),
                                      "metrics": paired_compare(raw, plain, members, resamples=2000, seed=0)}
    per_class = per_class_table(y2, pred2, names, bands["class_band"], train_support)
    texts = texts_by_id(paths.prepared, "test").loc[ids].to_numpy()
    m = y2 != IGNORE
    name_arr = np.asarray(names, dtype=object)
    if scorer.accelerator.is_main_process:
        write_csv(paths.per_class, per_class)
        write_json(paths.band_metrics, band_table(y2, pred2, names, bands, per_class), digits=METRIC_DIGITS)
        write_csv(paths.worst_k, worst_k_table(ids, texts, y2, probs2, names, e.worst_k))
        # a DVC plot, rendered into an HTML page: names made page-safe
        write_csv(paths.confusion, pd.DataFrame({"actual": page_safe(name_arr[y2[m]]),
                                                 "predicted": page_safe(name_arr[pred2[m]])}))
        write_csv(paths.predictions, predictions_table(ids, y1, y2, probs1, probs2, names))
        decision_plot(curves, dec, objective, Path(paths.figures) / "decision.png",
                      f"{paths.stage2_model} | {paths.decision} | objective {objective}")
        write_json(paths.test_metrics, results, digits=METRIC_DIGITS)
        # last: a failed run leaves no metrics file
        write_json(paths.headline_metrics, headline(results), digits=METRIC_DIGITS)
    return results


def _raw_weights_on_test(scorer: Scorer, paths: EvaluatePaths, k: int) -> Coded | None:
    """The raw weights' plain-rule answers on test, when the kept model is an average (``switches.ema``); else None.
    The scorer's model gets its kept weights back afterwards."""
    model = scorer.accelerator.unwrap_model(scorer.model)
    kept = {n: v.detach().clone() for n, v in model.state_dict().items()}
    if not load_raw_weights(model, paths.stage2_model):
        return None
    try:
        ds, logits1, logits2 = scorer.split(paths.tokenized, "test")
    finally:
        model.load_state_dict(kept)
    p1, p2 = softmax(logits1), softmax(logits2)
    return Coded.from_arrays(ds.labels_task1, p1[:, 1] < 0.5, ds.labels_task2, p2.argmax(1), p2.max(1), k)
