"""Each diagnosis rule fires on a synthetic history built to show it, and stays silent on a healthy one."""

import numpy as np
import pandas as pd
import pytest

from twohead.config.schema import HISTORY_COLUMNS
from twohead.evaluate.diagnose import diagnose


def history(**cols) -> pd.DataFrame:
    """A healthy 5-epoch run, with some columns replaced."""
    n = 5
    base = {c: np.full(n, 0.5) for c in HISTORY_COLUMNS}
    base.update({
        "epoch": np.arange(1, n + 1),
        "train_loss_total": np.array([2.0, 1.5, 1.2, 1.0, 0.9]),
        "train_loss_task1": np.array([0.6, 0.4, 0.3, 0.25, 0.2]),
        "train_loss_task2": np.array([1.8, 1.3, 1.1, 0.9, 0.8]),
        "val_loss_task1": np.array([0.5, 0.45, 0.44, 0.43, 0.43]),
        "val_loss_task2": np.array([1.9, 1.6, 1.5, 1.45, 1.44]),
        "train_acc_task2": np.array([0.5, 0.7, 0.8, 0.88, 0.92]),
        "val_acc_task2": np.array([0.55, 0.68, 0.74, 0.76, 0.762]),
        "grad_norm_mean": np.array([3.0, 2.5, 2.0, 1.8, 1.7]),
        "grad_norm_max": np.array([9.0, 6.0, 5.0, 4.0, 4.0]),
    })
    base.update({k: np.asarray(v, dtype=float) for k, v in cols.items()})
    return pd.DataFrame(base)[HISTORY_COLUMNS]


def bands(recalls: dict) -> pd.DataFrame:
    return pd.DataFrame([{"epoch": e + 1, "band": b, "recall": r, "n_classes": 3}
                         for b, rs in recalls.items() for e, r in enumerate(rs)])


def rules(found) -> set[str]:
    return {f.rule for f in found}


def test_healthy_run_is_silent():
    assert diagnose(history(), bands({"High": [0.5, 0.6, 0.7, 0.7, 0.7], "Low": [0, 0, 0.1, 0.2, 0.2]})) == []


def test_underfitting_the_observed_case():
    # seen on a real pretrained encoder with the recipe: train 0.736 vs val 0.712 at epoch 5, val still rising
    f = diagnose(history(train_acc_task2=[0.4, 0.6, 0.68, 0.72, 0.736], val_acc_task2=[0.5, 0.62, 0.67, 0.70, 0.712]))
    assert rules(f) == {"underfitting"}
    assert "0.736 vs val 0.712" in f[0].message and "+1.2 pts in the last epoch" in f[0].message


def test_underfitting_needs_val_still_rising_or_low_train():
    plateau = history(train_acc_task2=[0.6, 0.7, 0.75, 0.76, 0.765], val_acc_task2=[0.6, 0.7, 0.75, 0.76, 0.76])
    assert "underfitting" not in rules(diagnose(plateau))
    low = history(train_acc_task2=[0.3, 0.4, 0.45, 0.5, 0.5], val_acc_task2=[0.3, 0.4, 0.45, 0.5, 0.5])
    assert "underfitting" in rules(diagnose(low))


def test_overfitting_two_epochs_of_rising_val_loss():
    f = diagnose(history(val_loss_task2=[1.9, 1.6, 1.7, 1.8, 1.9]))
    assert rules(f) == {"overfitting"} and "val_loss_task2 rose for 3 consecutive epochs" in f[0].message
    assert "overfitting" not in rules(diagnose(history(val_loss_task2=[1.9, 1.6, 1.7, 1.6, 1.5])))


def test_overfitting_of_task1_that_zig_zags_up():
    """The demo's Task1: val loss 0.67 → 1.45 with no two rising epochs in a row was missed."""
    f = diagnose(history(val_loss_task1=[0.669, 1.134, 1.008, 1.459, 1.452],
                         train_loss_task1=[0.27, 0.15, 0.069, 0.023, 0.017]))
    assert rules(f) == {"overfitting"} and "val_loss_task1 ended 117% above its minimum (epoch 1)" in f[0].message
    # a val loss that ends near its minimum is not flagged
    assert "overfitting" not in rules(diagnose(history(val_loss_task1=[0.669, 0.75, 0.70, 0.72, 0.70],
                                                       train_loss_task1=[0.27, 0.15, 0.069, 0.023, 0.017])))


@pytest.mark.parametrize("cols, rule", [
    ({"grad_norm_max": [9.0, 6.0, 80.0, 4.0, 4.0]}, "lr_spikes"),
    ({"train_loss_total": [2.0, 1.99, 1.99, 1.98, 1.98]}, "lr_no_movement"),
    ({"train_loss_total": [2.0, 2.1, 2.3, 2.2, 2.4]}, "loss_rising"),
    ({"train_loss_task1": [0.6, 0.6, 0.6, 0.6, 0.595]}, "one_task_flat"),
])
def test_lr_and_task_rules(cols, rule):
    assert rule in rules(diagnose(history(**cols)))


def test_band_with_zero_recall_every_epoch():
    f = diagnose(history(), bands({"High": [0.5] * 5, "Low": [0.0] * 5}))
    assert rules(f) == {"band_zero"} and "band Low" in f[0].message and "task2_weight_max" in f[0].message
