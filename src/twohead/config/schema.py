"""Names defined once: the metric vocabulary, loss terms, per-epoch metric keys, history columns.

**Metrics** (:data:`METRICS`): each has one name in code (``task2_acc``), a label for tables and plots, a
direction, and where it is published — its key in ``metrics/test.json`` (``task2.acc``) and its column in the
history / ``metrics/train.json`` (``val_acc_task2``). Those published spellings predate the vocabulary and are
kept so that DVC's metric diffs across old commits still line up; they are derived from here, never typed
elsewhere. :mod:`twohead.evaluate.metrics` returns the code names, the evaluation tables re-key them with
:func:`report_tree`, the history with :data:`VAL_METRICS`, and ``twohead compare`` / ``twohead ablation`` show
every ``compared`` metric in this order (a compared metric without a bootstrap formula fails a test).

The history CSV (``plots/train_history.csv``), ``metrics/train.json``, the per-epoch log line and the
DVC plot definitions all use these names; nothing else spells them out as string lists.
Timings are kept apart (:data:`SPEED_KEYS`): they differ run to run, so they go to
``metrics/train_speed.json`` and never into a file that should be byte-identical for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The stages a training recipe builds (:mod:`twohead.train.recipe`), as ``--stage`` of the tools names them.
STAGES = ("stage1", "stage2")


@dataclass(frozen=True)
class Metric:
    name: str                      # the one spelling in code and in compare / ablation output
    label: str                     # for tables and plots
    higher_is_better: bool | None = True   # None: descriptive, no direction
    report: str | None = None      # key in metrics/test.json under the split: "<group>.<key>"
    history: str | None = None     # column in the history and train.json: "val_<history>"
    compared: bool = False         # in twohead compare / ablation (paired bootstrap over test rows)
    band: str | None = None        # band recall metrics: the band's name


METRICS: tuple[Metric, ...] = (
    Metric("task2_acc", "Task2 accuracy", report="task2.acc", history="acc_task2", compared=True),
    Metric("task2_macro_f1", "Task2 macro-F1", report="task2.macro_f1", history="macro_f1_task2", compared=True),
    Metric("task2_weighted_f1", "Task2 weighted-F1", report="task2.weighted_f1", history="weighted_f1_task2"),
    Metric("task2_top2_acc", "Task2 top-2 accuracy", report="task2.top2_acc"),
    Metric("task2_top3_acc", "Task2 top-3 accuracy", report="task2.top3_acc"),
    Metric("task2_top5_acc", "Task2 top-5 accuracy", report="task2.top5_acc"),
    Metric("task2_runner_up_share", "Task2 errors whose gold is the runner-up", None,
           report="task2.runner_up_share"),
    Metric("task2_ece", "Task2 ECE (15 bins)", False, report="task2.ece", compared=True),
    Metric("task1_acc", "Task1 accuracy", report="task1.acc", history="acc_task1", compared=True),
    Metric("pick_precision", "Pick precision", report="task1.precision_pick", history="precision_pick"),
    Metric("pick_recall", "Pick recall", report="task1.recall_pick", history="recall_pick"),
    Metric("pick_f1", "Pick F1", report="task1.f1_pick", history="f1_pick", compared=True),
    Metric("decline_precision", "Decline precision", report="task1.precision_decline", compared=True),
    Metric("decline_recall", "Decline recall", report="task1.recall_decline", compared=True),
    Metric("task1_ece", "Task1 ECE (15 bins)", False, report="task1.ece"),
    Metric("combined_acc", "combined (N+Decline) accuracy", report="combined.acc", compared=True),
    Metric("combined_macro_f1", "combined (N+Decline) macro-F1", report="combined.macro_f1", compared=True),
    Metric("gold_pick_low_conf", "gold-Pick rows with low Task2 confidence", False,
           report="consistency.gold_pick_low_conf", history="gold_pick_low_conf"),
    Metric("gold_decline_high_conf", "gold-Decline rows with high Task2 confidence", False,
           report="consistency.gold_decline_high_conf", history="gold_decline_high_conf"),
    Metric("pred_pick_low_conf", "predicted-Pick rows with low Task2 confidence", False,
           report="consistency.pred_pick_low_conf"),
    Metric("pred_decline_high_conf", "predicted-Decline rows with high Task2 confidence", False,
           report="consistency.pred_decline_high_conf"),
    Metric("mean_maxprob_pred_pick", "mean Task2 max-prob, predicted Pick", None,
           report="consistency.mean_maxprob_pred_pick"),
    Metric("mean_maxprob_pred_decline", "mean Task2 max-prob, predicted Decline", None,
           report="consistency.mean_maxprob_pred_decline"),
)
BY_NAME = {m.name: m for m in METRICS}

#: Band recall metrics sit after this metric in compared order (the Task2 figures first).
_BANDS_AFTER = "task2_macro_f1"


def band_metric(band: str) -> Metric:
    return Metric(f"band_{band}_recall", f"{band} band mean recall", compared=True, band=band)


def compared_metrics(bands: list[str] = ()) -> list[Metric]:
    """The metrics ``twohead compare`` and ``twohead ablation`` report, in order; ``bands`` most frequent first."""
    out = []
    for m in METRICS:
        if m.compared:
            out.append(m)
        if m.name == _BANDS_AFTER:
            out += [band_metric(b) for b in bands]
    return out


def higher_is_better(name: str) -> bool:
    """A metric's direction for verdicts (band metrics: higher; an unknown name: higher)."""
    m = BY_NAME.get(name)
    return True if m is None or m.higher_is_better is None else m.higher_is_better


def label(name: str) -> str:
    """A metric's label (band metrics included); an unknown name is shown as it is."""
    if name in BY_NAME:
        return BY_NAME[name].label
    if name.startswith("band_") and name.endswith("_recall"):
        return band_metric(name[len("band_"):-len("_recall")]).label
    return name


def report_tree(values: dict[str, float], groups: tuple[str, ...]) -> dict[str, dict]:
    """``{group: {key: value}}`` of the metrics in ``values`` whose report key is in ``groups``, in vocabulary
    order (the layout of ``metrics/test.json``)."""
    tree: dict[str, dict] = {g: {} for g in groups}
    for m in METRICS:
        if m.report and m.name in values:
            group, key = m.report.split(".")
            if group in tree:
                tree[group][key] = values[m.name]
    return tree

#: Loss terms reported per epoch, for the train pass and the val pass (``train_loss_task1`` …).
LOSS_TERMS = ("total", "task1", "task2", "hier")

#: Loss terms of the training pass only (R-Drop compares two dropout passes; 0 when off).
TRAIN_ONLY_TERMS = ("rdrop",)

#: Metrics of the val pass, in the order they appear in the history: code name -> column suffix
#: (``val_acc_task1`` …). The published order predates the vocabulary and is kept.
VAL_METRICS: dict[str, str] = {n: BY_NAME[n].history for n in (
    "task1_acc", "task2_acc", "task2_macro_f1", "task2_weighted_f1", "pick_precision", "pick_recall", "pick_f1")}
#: (The per-epoch hierarchy-consistency rates depend on eval.low_confidence / high_confidence: the plot stage computes
#: them from ``metrics/val_epochs.parquet`` into ``plots/consistency.csv``, so changing those never re-trains.)

#: Running accuracies of the training forward passes (dropout on).
TRAIN_METRICS = ("acc_task1", "acc_task2")

#: Optimisation figures per epoch (σ_t = exp(s_t/2) of uncertainty weighting; 1 with fixed weighting).
OPTIM_KEYS = ("lambda_task1", "lambda_task2", "sigma_task1", "sigma_task2", "lr", "grad_norm_mean", "grad_norm_max")

#: Wall-clock figures per epoch: only in the speed file.
SPEED_KEYS = ("epoch_seconds", "train_samples_per_second", "train_shapes")


def loss_columns(prefix: str) -> list[str]:
    return [f"{prefix}_loss_{term}" for term in LOSS_TERMS]


HISTORY_COLUMNS = ["epoch", *loss_columns("train"), *(f"train_loss_{t}" for t in TRAIN_ONLY_TERMS),
                   *loss_columns("val"),
                   *(f"train_{m}" for m in TRAIN_METRICS), *(f"val_{m}" for m in VAL_METRICS.values()), *OPTIM_KEYS]

#: History columns that carry information only when a switch is on (constant otherwise): the hierarchy terms,
#: R-Drop's term, uncertainty weighting's σ and λ. ``plots/train_history.csv`` holds them only when their switch is.
SWITCH_COLUMNS: dict[str, tuple[str, ...]] = {
    "hierarchy": ("train_loss_hier", "val_loss_hier"),
    "rdrop": ("train_loss_rdrop",),
    "uncertainty": ("lambda_task1", "lambda_task2", "sigma_task1", "sigma_task2"),
}


def history_columns(switches) -> list[str]:
    """The columns of ``plots/train_history.csv`` for a run with these switches (a ``SwitchParams``)."""
    on = {"hierarchy": switches.pick_consistency_weight > 0 or switches.decline_uniform_weight > 0,
          "rdrop": switches.rdrop_alpha > 0, "uncertainty": switches.task_weighting == "uncertainty"}
    off = {c for name, cols in SWITCH_COLUMNS.items() if not on[name] for c in cols}
    return [c for c in HISTORY_COLUMNS if c not in off]


#: Stage 1 trains Task1 alone: its history renames the Task1 columns and drops what does not apply.
STAGE1_RENAME = {"train_loss_task1": "train_loss", "val_loss_task1": "val_loss", "train_acc_task1": "train_acc",
                 "val_acc_task1": "val_acc"}
STAGE1_COLUMNS = ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "val_precision_pick", "val_recall_pick",
                  "val_f1_pick", "lr", "grad_norm_mean", "grad_norm_max"]

#: The masked-LM phase trains Task1's loss over masked tokens: its history keeps the loss and masked-token accuracy.
MLM_RENAME = {"train_loss_task1": "train_loss", "val_loss_task1": "val_loss", "train_acc_task1": "train_acc",
              "val_acc_task1": "val_acc"}
MLM_COLUMNS = ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr", "grad_norm_mean", "grad_norm_max"]

#: Per-epoch band recall rows (``plots/band_recall.csv``).
BAND_COLUMNS = ["epoch", "band", "recall", "n_classes"]

#: What `dvc exp show` / `dvc metrics diff` compare runs on (``metrics/headline.json``, the only file declared
#: under dvc.yaml ``metrics:``): paths into ``metrics/test.json``. The detail (every metric, val and test,
#: bands, consistency, training figures) stays in the other metrics files, as plain outputs:
#: ``dvc metrics diff --targets metrics/test.json`` or ``twohead compare`` for them.
HEADLINE: tuple[tuple[str, ...], ...] = (
    ("test", "task2", "acc"), ("test", "task2", "macro_f1"), ("test", "task2", "top2_acc"), ("test", "task1", "acc"),
    ("test", "combined", "acc"), ("test", "combined", "macro_f1"),
    ("decided", "test", "task2", "acc"), ("decided", "test", "task1", "acc"), ("decided", "test", "combined", "acc"),
    ("decided", "test", "task2", "ece"), ("val", "task2", "acc"))


def headline(results: dict) -> dict:
    """The :data:`HEADLINE` figures of an evaluate result, nested as in ``metrics/test.json`` (same column names
    in `dvc exp show`); a path the result lacks is left out."""
    out: dict = {}
    for path in HEADLINE:
        node = results
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            continue
        dest = out
        for key in path[:-1]:
            dest = dest.setdefault(key, {})
        dest[path[-1]] = node
    return out
