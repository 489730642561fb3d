"""What a run prints and the speed file it leaves: the start-up lines, one line per epoch, the speed summary."""

from __future__ import annotations

import sys
import time

import numpy as np

from ..data.batching import batch_shapes, pad_share
from .memory import format_memory
from .optim import format_groups


def start_lines(tag: str, s, data, precision: str) -> list[str]:
    """The lines printed before the first step: device, sizes, LLRD groups, attention, padding share."""
    lines = [f"[{tag}] device {s.accelerator.device} ({s.accelerator.num_processes} process(es)), precision"
             f" {precision}, {sum(x.numel() for x in s.model.parameters()):,} parameters; {len(data.train)} train /"
             f" {len(data.val)} val rows; {s.steps_per_epoch} steps/epoch",
             f"[{tag}] optimizer groups (LLRD):\n" + format_groups(s.group_summary)]
    if s.windowed:
        lines.append(f"[{tag}] fast_attention: windowed relative-attention bias in {s.windowed} DeBERTa layer(s)")
    first = s.sampler.batches(0)
    lines.append(f"[{tag}] padding {s.padding} (train.padding = {s.cfg_padding}): training-batch padding share"
                 f" {pad_share(data.train.lengths, first, s.padding, data.max_length):.1%}, "
                 f"{len(batch_shapes(data.train.lengths, first, s.padding, data.max_length))} distinct batch shapes"
                 f" (first epoch), {s.val_shapes} in validation")
    return lines + [f"[{tag}] warning: {w}" for w in machine_warnings(s.accelerator.device.type, precision,
                                                                       getattr(s.train_loader, "num_workers", 0))]


def machine_warnings(device_type: str, precision: str, num_workers: int, platform: str = sys.platform) -> list[str]:
    """What is known to go wrong with these settings on this machine (said before the first step)."""
    from .device import MPS_FP16_NOTE

    out = []
    if num_workers > 0 and platform == "darwin":
        out.append(f"train.num_workers = {num_workers} on macOS: DataLoader worker processes there have failed"
                   " (`_share_filename_` errors, deadlocks on Python 3.12) and were slower in reports (an epoch of"
                   " 1–2 min with 2 workers, 15 s with 0); 0, the default, loads batches in the training process")
    if device_type == "mps" and precision == "fp16":
        out.append(MPS_FP16_NOTE)
    return out


def epoch_line(tag: str, epoch: int, epochs: int, f: dict, speed: dict, task2: bool = True, t1: str = "t1") -> str:
    """One line per epoch; ``task2=False`` (Stage 1 trains no Task2) leaves out the Task2 figures; ``t1`` names the
    first task's figures (``mlm`` in the masked-LM phase: its loss and masked-token accuracy)."""
    t2_loss = f", t2 {f['train_loss_task2']:.4f}" if task2 else ""
    val_loss = f"val loss {t1} {f['val_loss_task1']:.4f}" + (f" t2 {f['val_loss_task2']:.4f}" if task2 else "")
    val_acc = f"val acc {t1} {f['val_acc_task1']:.4f}" + (f" t2 {f['val_acc_task2']:.4f}" if task2 else "")
    f1 = f" | t2 macro-F1 {f['val_macro_f1_task2']:.4f}" if task2 else ""
    return (f"[{tag}] epoch {epoch}/{epochs} | train loss {f['train_loss_total']:.4f} ({t1}"
            f" {f['train_loss_task1']:.4f}{t2_loss}) | {val_loss} | {val_acc}{f1} |"
            f" {speed['train_samples_per_second']:.1f} samples/s, {speed['epoch_seconds']:.1f}s")


def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def step_text(epoch: int, step: int, steps_per_epoch: int) -> str:
    """Where a run stands, counted as the progress line counts: ``epoch 2 step 130/251 (run step 381)``."""
    in_epoch = step - (epoch - 1) * steps_per_epoch
    return f"epoch {epoch} step {in_epoch}/{steps_per_epoch} (run step {step})"


class ProgressLine:
    """Where a run stands, one line every ``every`` seconds — only when stdout is not a terminal (``dvc repro >
    log``, the experiment queue), where tqdm's bar is off and an epoch can otherwise pass in silence:
    ``[tag] epoch 2/5 step 130/251 | 415 samples/s | epoch ETA 0:18 | run ETA 1:53``. The run's ETA counts the
    training steps left at the rate so far (validation not included)."""

    def __init__(self, tag: str, epochs: int, steps_per_epoch: int, every: float = 30.0, log=print,
                 enabled: bool | None = None, clock=time.perf_counter, memory=None):
        self.tag, self.epochs, self.steps_per_epoch, self.every, self.log = tag, epochs, steps_per_epoch, every, log
        self.memory = memory  # () -> memory figures (train.memory.device_memory), appended to the line
        self.enabled = (not sys.stdout.isatty()) if enabled is None else enabled
        self.clock = clock
        self.last = clock()

    def __call__(self, epoch: int, step: int, rows: int, seconds: float) -> None:
        """After an optimiser step: ``step`` counted from the start of the run, ``rows`` / ``seconds`` of this
        epoch so far."""
        now = self.clock()
        if not self.enabled or now - self.last < self.every or seconds <= 0 or rows <= 0:
            return
        self.last = now
        in_epoch = step - (epoch - 1) * self.steps_per_epoch
        per_step = seconds / max(in_epoch, 1)
        left_epoch = max(self.steps_per_epoch - in_epoch, 0) * per_step
        left_run = left_epoch + (self.epochs - epoch) * self.steps_per_epoch * per_step
        mem = f" | {format_memory(self.memory())}" if self.memory is not None else ""
        self.log(f"[{self.tag}] epoch {epoch}/{self.epochs} step {in_epoch}/{self.steps_per_epoch} |"
                 f" {rows / seconds:.0f} samples/s | epoch ETA {_clock(left_epoch)} | run ETA {_clock(left_run)}{mem}")


def speed_summary(res, precision: str) -> dict:
    """``metrics/train_speed.json``: means over epochs and the per-epoch figures (they vary run to run)."""
    return {"train_samples_per_second_mean": float(np.mean([s["train_samples_per_second"] for s in res.speed])),
            "epoch_seconds_mean": float(np.mean([s["epoch_seconds"] for s in res.speed])),
            "device": str(res.accelerator.device), "precision": precision, "processes": res.accelerator.num_processes,
            **res.machine, "epochs": res.speed, **({"state": res.state} if res.state else {})}
