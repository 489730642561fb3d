"""What a run prints and the speed file it leaves: the start-up lines, one line per epoch, the speed summary."""

from __future__ import annotations

import numpy as np

from ..data.batching import pad_share
from .optim import format_groups


def start_lines(tag: str, s, data, precision: str) -> list[str]:
    """The lines printed before the first step: device, sizes, LLRD groups, attention, padding share."""
    lines = [f"[{tag}] device {s.accelerator.device} ({s.accelerator.num_processes} process(es)), precision"
             f" {precision}, {sum(x.numel() for x in s.model.parameters()):,} parameters; {len(data.train)} train /"
             f" {len(data.val)} val rows; {s.steps_per_epoch} steps/epoch",
             f"[{tag}] optimizer groups (LLRD):\n" + format_groups(s.group_summary)]
    if s.windowed:
        lines.append(f"[{tag}] fast_attention: windowed relative-attention bias in {s.windowed} DeBERTa layer(s)")
    lines.append(f"[{tag}] training-batch padding share (first epoch's batches): "
                 f"{pad_share(data.train.lengths, s.sampler.batches(0)):.1%}")
    return lines


def epoch_line(tag: str, epoch: int, epochs: int, f: dict, speed: dict) -> str:
    return (f"[{tag}] epoch {epoch}/{epochs} | train loss {f['train_loss_total']:.4f} (t1 {f['train_loss_task1']:.4f},"
            f" t2 {f['train_loss_task2']:.4f}) | val loss t1 {f['val_loss_task1']:.4f} t2 {f['val_loss_task2']:.4f} |"
            f" val acc t1 {f['val_acc_task1']:.4f} t2 {f['val_acc_task2']:.4f} | t2 macro-F1"
            f" {f['val_macro_f1_task2']:.4f} | {speed['train_samples_per_second']:.1f} samples/s,"
            f" {speed['epoch_seconds']:.1f}s")


def speed_summary(res, precision: str) -> dict:
    """``metrics/train_speed.json``: means over epochs and the per-epoch figures (they vary run to run)."""
    return {"train_samples_per_second_mean": float(np.mean([s["train_samples_per_second"] for s in res.speed])),
            "epoch_seconds_mean": float(np.mean([s["epoch_seconds"] for s in res.speed])),
            "device": str(res.accelerator.device), "precision": precision, "processes": res.accelerator.num_processes,
            "epochs": res.speed, **({"state": res.state} if res.state else {})}
