"""The plot stage: PNG learning curves, band recall, per-class recall, top confusions and data maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.params import Params
from ..data.io import read_json, write_csv, write_text
from ..data.prepared import read_label_info, read_split
from ..evaluate.diagnose import diagnose
from ..evaluate.plots import band_curves, caption, curves, data_map, per_class_recall, top_confusions
from ..evaluate.summary import summary_markdown
from ..evaluate.tables import val_epoch_reports
from ..experiments.curve import read_curve

#: The figures this stage writes into ``PlotPaths.figures`` (dvc.yaml declares each; a test checks both agree).
FIGURES = ("task1_loss.png", "task1_accuracy.png", "task2_loss.png", "task2_accuracy.png", "consistency.png",
           "band_recall.png", "per_class_recall.png", "top_confusions.png", "cartography_task1.png",
           "cartography_task2.png")

#: The curves of a switch, drawn into ``PlotPaths.switch_figures`` only when that switch is on (off, they are flat
#: and the history has no such columns): figure -> (history column -> label, title, y label).
SWITCH_CURVES = {
    "hierarchy_loss.png": ({"train_loss_hier": "train", "val_loss_hier": "val"},
                           "Hierarchy terms (switches.pick_consistency_weight / decline_uniform_weight)", "loss"),
    "rdrop_loss.png": ({"train_loss_rdrop": "train"}, "R-Drop term (alpha x symmetric KL between two dropout passes)",
                       "loss"),
    "task_weighting.png": ({"sigma_task1": "σ Task1 (Pick/Decline)", "sigma_task2": "σ Task2"},
                           "Uncertainty weighting: learned σ per task", "σ = exp(s/2)"),
}


@dataclass(frozen=True)
class PlotPaths:
    """Inputs: the training history, band recall, per-class and confusion tables, cartography tables, the test
    metrics and the prepared bands. Outputs: the folder the PNG figures go to, and the one-page summary."""

    prepared: Path
    train_history: Path
    band_recall: Path
    per_class: Path
    confusion: Path
    cartography_task1: Path
    cartography_task2: Path
    test_metrics: Path
    train_metrics: Path
    review_metrics: Path
    pairs_plot: Path
    val_epochs: Path
    figures: Path
    switch_figures: Path
    consistency_curve: Path
    val_worst_k: Path
    learning_curve: Path
    tokenizer_metrics: Path      # the tokenize stage's coverage figures: the summary's first line when poor
    mlm_metrics: Path            # the masked-LM phase's figures (a row of "What moved Task2 accuracy")
    summary: Path


def run(p: Params, paths: PlotPaths) -> list[Path]:
    out = Path(paths.figures)
    text = caption(p)
    hist = pd.read_csv(paths.train_history)
    low, high = p.eval.low_confidence, p.eval.high_confidence
    val = read_split(paths.prepared, "val", ["id", "text", "labels_task1", "labels_task2"]).set_index("id")
    curve, worst = val_epoch_reports(pd.read_parquet(paths.val_epochs), val, read_label_info(paths.prepared).names,
                                     low, high, p.eval.worst_k)   # eval.* applied here, never in training
    write_csv(paths.consistency_curve, curve)
    write_csv(paths.val_worst_k, worst)
    made = []

    def go(name, fn, *args, **kw):
        assert name in FIGURES, name
        fn(*args, out / name, text, **kw)
        made.append(out / name)

    go("task1_loss.png", curves, hist, {"train_loss_task1": "train", "val_loss_task1": "val"},
       "Task1 (Pick/Decline) loss", "weighted CE")
    go("task1_accuracy.png", curves, hist, {"train_acc_task1": "train (running, dropout on)", "val_acc_task1": "val"},
       "Task1 (Pick/Decline) accuracy", "accuracy", unit_range=True)
    go("task2_loss.png", curves, hist, {"train_loss_task2": "train", "val_loss_task2": "val"},
       "Task2 (category) loss", "weighted, smoothed CE")
    go("task2_accuracy.png", curves, hist, {"train_acc_task2": "train acc (running, dropout on)",
                                            "val_acc_task2": "val acc", "val_macro_f1_task2": "val macro-F1"},
       "Task2 (category) accuracy and macro-F1", "score", unit_range=True)
    go("consistency.png", curves, curve, {"gold_pick_low_conf": f"gold Pick, Task2 max-prob < {low:g}",
                                          "gold_decline_high_conf": f"gold Decline, Task2 max-prob > {high:g}"},
       "Hierarchy consistency on val (lower is better)", "share of rows", unit_range=True)
    switched = Path(paths.switch_figures)
    switched.mkdir(parents=True, exist_ok=True)
    for stale in switched.glob("*.png"):  # a switch on in an earlier run, off now
        stale.unlink()
    for name, (series, title, ylabel) in SWITCH_CURVES.items():
        if next(iter(series)) in hist:
            curves(hist, series, title, ylabel, switched / name, text)
            made.append(switched / name)
    band_rows = pd.read_csv(paths.band_recall)
    band_info = read_json(Path(paths.prepared) / "bands.json")
    totals = pd.Series(band_info["class_band"]).value_counts().to_dict()
    go("band_recall.png", band_curves, band_rows, totals=totals)
    go("per_class_recall.png", per_class_recall, pd.read_csv(paths.per_class), band_info["names"])
    go("top_confusions.png", top_confusions, pd.read_csv(paths.confusion, keep_default_na=False),
       p.eval.top_confusions)
    go("cartography_task1.png", data_map, pd.read_csv(paths.cartography_task1), "Task1 (Pick/Decline)")
    go("cartography_task2.png", data_map, pd.read_csv(paths.cartography_task2), "Task2 (category)")
    # every figure of the run: this stage's, then the calibrate stage's (reliability, decision) and `twohead
    # lr-find`'s (it is there once the tool has run)
    shown = ["task2_accuracy.png", "task2_loss.png", "task1_accuracy.png", "task1_loss.png", "band_recall.png",
             "per_class_recall.png", "top_confusions.png", "consistency.png", "cartography_task2.png",
             "cartography_task1.png", "reliability.png", "decision.png", "lr_find.png"]
    shown[-3:-3] = [str(f.relative_to(out)) for f in made if f.parent == switched]
    curve = read_curve(paths.learning_curve)
    if curve is not None:   # `twohead curve` drew it beside the others
        shown.append("learning_curve.png")
    write_text(paths.summary, summary_markdown(read_json(paths.test_metrics), hist, diagnose(hist, band_rows), text,
                                               [str(Path(out / n).relative_to(Path(paths.summary).parent))
                                                for n in shown],
                                               read_json(paths.review_metrics) if Path(paths.review_metrics).is_file()
                                               else None,  # the review stage's section (run without it: none)
                                               str(Path(paths.pairs_plot).relative_to(Path(paths.summary).parent)),
                                               read_json(paths.train_metrics), p.report.target_task2_acc, curve,
                                               *(read_json(f) if Path(f).is_file() else None   # run without them: none
                                                 for f in (paths.tokenizer_metrics, paths.mlm_metrics))))
    return made
