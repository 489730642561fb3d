"""Explicit rules that read a run's learning curves the way a practitioner would, each naming its evidence.

Input: the per-epoch history (columns of :data:`twohead.config.schema.HISTORY_COLUMNS`) and the per-epoch val
band recall rows (``epoch, band, recall, n_classes``). Output: :class:`Finding` objects; the plot stage
writes them into ``plots/summary.md``. The thresholds are module constants, stated in each message.

Rules (Task2 unless said otherwise):

* ``underfitting`` — the last epoch's train accuracy (running, dropout on) is within
  :data:`UNDERFIT_GAP` of val accuracy **and** val accuracy still rose in the last epoch by more than
  :data:`STILL_RISING`, or train accuracy itself is below :data:`LOW_TRAIN_ACC`: more epochs, a higher
  LR or a larger model may help.
* ``overfitting`` — val loss rose for at least :data:`OVERFIT_EPOCHS` consecutive epochs while train
  loss fell: fewer epochs (or ``train.keep: best``), more regularisation.
* ``lr_spikes`` — some epoch's largest gradient norm is over :data:`SPIKE_RATIO` × the median epoch-mean
  gradient norm: an LR too high for this model, or bad rows.
* ``lr_no_movement`` — the total train loss moved by less than :data:`FLAT_CHANGE` (relative) from the
  first epoch to the last: an LR too low (the demo encoder at lr 2e-5 does exactly this).
* ``loss_rising`` — the total train loss at the end is above the first epoch's: an LR too high.
* ``one_task_flat`` — one task's train loss moved by less than :data:`FLAT_CHANGE` while the other's fell
  by more than :data:`FALLS`: λ1/λ2, or that task's labels/weights, deserve a look.
* ``band_zero`` — a frequency band's val mean recall is 0 at every epoch: its classes are never
  predicted; try ``loss.task2_weight_max`` or the class-weighting knobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

UNDERFIT_GAP = 0.03
STILL_RISING = 0.005
LOW_TRAIN_ACC = 0.6
OVERFIT_EPOCHS = 2
RISE_FROM_MIN = 0.25
SPIKE_RATIO = 10.0
FLAT_CHANGE = 0.02
FALLS = 0.2


@dataclass
class Finding:
    rule: str
    message: str


def _rel_change(first: float, last: float) -> float:
    return (last - first) / abs(first) if first else 0.0


def underfitting(h: pd.DataFrame) -> list[Finding]:
    last = h.iloc[-1]
    tr, va = float(last["train_acc_task2"]), float(last["val_acc_task2"])
    if np.isnan(tr) or np.isnan(va):
        return []
    rise = float(va - h["val_acc_task2"].iloc[-2]) if len(h) >= 2 else 0.0
    close, rising, low = tr - va <= UNDERFIT_GAP, rise > STILL_RISING, tr < LOW_TRAIN_ACC
    if (close and rising) or low:
        why = [f"last-epoch train accuracy {tr:.3f} vs val {va:.3f} (gap {100 * (tr - va):+.1f} pts)"]
        if rising:
            why.append(f"val accuracy still rising ({100 * rise:+.1f} pts in the last epoch)")
        if low:
            why.append(f"train accuracy below {LOW_TRAIN_ACC:g}")
        return [Finding("underfitting", "Task2 looks underfit: " + "; ".join(why)
                        + ". More epochs, a higher learning rate or a larger encoder may help.")]
    return []


def overfitting(h: pd.DataFrame) -> list[Finding]:
    """Per task: the val loss rose for OVERFIT_EPOCHS consecutive epochs while the train loss fell, or it ended
    RISE_FROM_MIN above its minimum (reached at an earlier epoch) while the train loss fell since then — a
    zig-zag rise (0.67, 1.13, 1.01, 1.46, 1.45) has no two rising epochs in a row."""
    out = []
    for col, train_col in (("val_loss_task2", "train_loss_task2"), ("val_loss_task1", "train_loss_task1")):
        val, train = h[col].to_numpy(dtype=float), h[train_col].to_numpy(dtype=float)
        if len(val) < 2 or np.isnan(val).all():
            continue
        up, down = np.diff(val) > 0, np.diff(train) < 0
        run, best = 0, 0
        for u, d in zip(up, down):
            run = run + 1 if (u and d) else 0
            best = max(best, run)
        k = int(np.nanargmin(val))
        rise = val[-1] / val[k] - 1 if val[k] > 0 else 0.0
        from_min = k < len(val) - 1 and rise >= RISE_FROM_MIN and train[-1] < train[k]
        if best >= OVERFIT_EPOCHS or from_min:
            vals = ", ".join(f"{v:.3f}" for v in val)
            how = (f"rose for {best} consecutive epochs while {train_col} fell" if best >= OVERFIT_EPOCHS else
                   f"ended {100 * rise:.0f}% above its minimum (epoch {int(h['epoch'].iloc[k])}) while {train_col}"
                   " fell")
            out.append(Finding("overfitting", f"{col} {how} ({col} per epoch: {vals}). Fewer epochs,"
                                              " train.keep: best, or more regularisation."))
    return out


def lr_findings(h: pd.DataFrame) -> list[Finding]:
    out = []
    med = float(np.nanmedian(h["grad_norm_mean"]))
    peak = float(np.nanmax(h["grad_norm_max"]))
    if med > 0 and peak > SPIKE_RATIO * med:
        ep = int(h.loc[h["grad_norm_max"].idxmax(), "epoch"])
        out.append(Finding("lr_spikes", f"gradient-norm spike: max {peak:.3g} in epoch {ep} vs median epoch-mean"
                                        f" {med:.3g} (> {SPIKE_RATIO:g}x). The learning rate may be too high"
                                        " (see logs/steps.jsonl for the step)."))
    first, last = float(h["train_loss_total"].iloc[0]), float(h["train_loss_total"].iloc[-1])
    if len(h) >= 2 and abs(_rel_change(first, last)) < FLAT_CHANGE:
        out.append(Finding("lr_no_movement", f"train loss barely moved: {first:.4f} -> {last:.4f}"
                                             f" ({100 * _rel_change(first, last):+.1f}%). The learning rate may be"
                                             " too low for this encoder."))
    elif len(h) >= 2 and last > first:
        out.append(Finding("loss_rising", f"train loss rose from {first:.4f} to {last:.4f}: the learning rate may"
                                          " be too high."))
    return out


def one_task_flat(h: pd.DataFrame) -> list[Finding]:
    if len(h) < 2:
        return []
    c1 = _rel_change(float(h["train_loss_task1"].iloc[0]), float(h["train_loss_task1"].iloc[-1]))
    c2 = _rel_change(float(h["train_loss_task2"].iloc[0]), float(h["train_loss_task2"].iloc[-1]))
    for flat, other, cf, co in (("Task1", "Task2", c1, c2), ("Task2", "Task1", c2, c1)):
        if abs(cf) < FLAT_CHANGE and co < -FALLS:
            return [Finding("one_task_flat", f"{flat} train loss is flat ({100 * cf:+.1f}%) while {other}'s fell"
                                             f" ({100 * co:+.1f}%): only one loss goes down. Check λ"
                                             " (loss.lambda_task1 / lambda_task2) and that task's labels and weights.")]
    return []


def band_zero(bands: pd.DataFrame) -> list[Finding]:
    out = []
    for band, g in bands.groupby("band", sort=False):
        r = g["recall"].to_numpy(dtype=float)
        if len(r) and np.all(np.nan_to_num(r, nan=0.0) == 0) and not np.all(np.isnan(r)):
            n = int(g["n_classes"].iloc[-1])
            out.append(Finding("band_zero", f"band {band} ({n} classes with val rows): val mean recall is 0 at every"
                                            " epoch, i.e. its classes are never predicted. Try a higher"
                                            " loss.task2_weight_max (rare-class weight cap), more epochs, or"
                                            " more data for those classes."))
    return out


def diagnose(history: pd.DataFrame, bands: pd.DataFrame | None = None) -> list[Finding]:
    h = history.sort_values("epoch").reset_index(drop=True)
    found = underfitting(h) + overfitting(h) + lr_findings(h) + one_task_flat(h)
    if bands is not None and len(bands):
        found += band_zero(bands)
    return found
