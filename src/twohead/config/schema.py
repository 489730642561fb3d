"""Names defined once: loss terms, per-epoch metric keys, history columns.

The history CSV (``plots/train_history.csv``), ``metrics/train.json``, the per-epoch log line and the
DVC plot definitions all use these names; nothing else spells them out as string lists.
Timings are kept apart (:data:`SPEED_KEYS`): they differ run to run, so they go to
``metrics/train_speed.json`` and never into a file that should be byte-identical for a seed.
"""

from __future__ import annotations

#: Loss terms reported per epoch, for the train pass and the val pass (``train_loss_task1`` …).
LOSS_TERMS = ("total", "task1", "task2", "hier")

#: Loss terms of the training pass only (R-Drop compares two dropout passes; 0 when off).
TRAIN_ONLY_TERMS = ("rdrop",)

#: Metrics of the val pass, in the order they appear in the history (``val_acc_task1`` …).
#: The keys are those returned by :func:`twohead.evaluate.metrics.task1_metrics`, ``task2_metrics`` and
#: ``consistency``.
VAL_METRICS = ("acc_task1", "acc_task2", "macro_f1_task2", "weighted_f1_task2", "precision_pick", "recall_pick",
               "f1_pick", "gold_pick_low_conf", "gold_decline_high_conf")

#: Running accuracies of the training forward passes (dropout on).
TRAIN_METRICS = ("acc_task1", "acc_task2")

#: Optimisation figures per epoch (σ_t = exp(s_t/2) of uncertainty weighting; 1 with fixed weighting).
OPTIM_KEYS = ("lambda_task1", "lambda_task2", "sigma_task1", "sigma_task2", "lr", "grad_norm_mean", "grad_norm_max")

#: Wall-clock figures per epoch: only in the speed file.
SPEED_KEYS = ("epoch_seconds", "train_samples_per_second")


def loss_columns(prefix: str) -> list[str]:
    return [f"{prefix}_loss_{term}" for term in LOSS_TERMS]


HISTORY_COLUMNS = ["epoch", *loss_columns("train"), *(f"train_loss_{t}" for t in TRAIN_ONLY_TERMS),
                   *loss_columns("val"),
                   *(f"train_{m}" for m in TRAIN_METRICS), *(f"val_{m}" for m in VAL_METRICS), *OPTIM_KEYS]

#: Stage 1 trains Task1 alone: its history renames the Task1 columns and drops what does not apply.
STAGE1_RENAME = {"train_loss_task1": "train_loss", "val_loss_task1": "val_loss", "train_acc_task1": "train_acc",
                 "val_acc_task1": "val_acc"}
STAGE1_COLUMNS = ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "val_precision_pick", "val_recall_pick",
                  "val_f1_pick", "lr", "grad_norm_mean", "grad_norm_max"]

#: Per-epoch band recall rows (``plots/band_recall.csv``).
BAND_COLUMNS = ["epoch", "band", "recall", "n_classes"]
