"""``fit``: the training loop shared by Stage 1 and Stage 2, with per-epoch extras as callbacks.

``fit(model, data, run, callbacks)`` trains ``model`` for ``run.train.epochs`` epochs on ``data.train``
and evaluates it on ``data.val`` after each epoch. It reads no file and writes none: the stage code in
:mod:`twohead.pipeline` decides what goes where. Extras plug in as :class:`Callback` objects:

* ``on_fit_start(accelerator)`` — once, after Accelerate has prepared everything;
* ``on_train_batch(epoch, batch, logits1, logits2)`` — each training batch (detached logits);
* ``on_epoch_end(epoch, val_logits, figures)`` — the one per-epoch signature: the epoch number, the val
  logits ``(task1, task2)`` as float32 NumPy arrays in dataset order, and the epoch's figures
  (the history row, keys in :mod:`twohead.schema`).

Band recall, val worst-K, the partial history CSV and dataset cartography are such callbacks
(:mod:`twohead.callbacks`); Stage 1 passes none.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .batching import LengthGroupedBatchSampler, SortedBatchSampler, TokenizedDataset, make_collate, pad_share
from .device import make_accelerator
from .errors import TrainingError
from .loop import TrainParts, predict, train_one_epoch
from .losses import SUM_KEYS, TwoTaskLoss
from .metrics import consistency, softmax, task1_metrics, task2_metrics
from .model import TwoHeadModel
from .optim import format_groups, llrd_groups, make_optimizer, make_scheduler
from .params import EvalParams, HierParams, LossParams, TrainParams
from .schema import HISTORY_COLUMNS, LOSS_TERMS, SPEED_KEYS, VAL_METRICS


@dataclass
class FitData:
    """The data side of a run: datasets, class weights, pad id, label names and frequency bands."""

    train: TokenizedDataset
    val: TokenizedDataset
    weights_task1: list[float]
    weights_task2: list[float]
    pad_id: int
    names: list[str] = field(default_factory=list)   # Task2 class names (id order)
    bands: dict | None = None                          # data/prepared/bands.json


@dataclass
class RunConfig:
    """The settings of a run: train / loss / hierarchy params, the column that picks the best epoch, a tag
    for log lines, and the eval thresholds used by the val consistency rates."""

    train: TrainParams
    loss: LossParams
    hier: HierParams = field(default_factory=HierParams)
    select: str = "val_acc_task2"
    tag: str = "train_stage2"
    eval: EvalParams = field(default_factory=EvalParams)


class Callback:
    """Per-epoch extras for :func:`fit`; override what you need (every hook defaults to nothing)."""

    def on_fit_start(self, accelerator) -> None:
        pass

    def on_train_batch(self, epoch: int, batch: dict, logits1: torch.Tensor, logits2: torch.Tensor) -> None:
        pass

    def on_epoch_end(self, epoch: int, val_logits: tuple[np.ndarray, np.ndarray], figures: dict) -> None:
        pass


@dataclass
class FitResult:
    history: list[dict]          # one row per epoch, columns = schema.HISTORY_COLUMNS
    speed: list[dict]            # one row per epoch: epoch + schema.SPEED_KEYS
    step_log: list[dict]
    best_epoch: int
    best_score: float
    kept_epoch: int
    model: TwoHeadModel
    accelerator: Any


def make_loss(data: FitData, run: RunConfig, device) -> TwoTaskLoss:
    """The objective on ``device`` (class weights as float32: MPS has no float64)."""
    loss, hier = run.loss, run.hier
    return TwoTaskLoss(
        weight_task1=torch.tensor(data.weights_task1, dtype=torch.float32, device=device),
        weight_task2=torch.tensor(data.weights_task2, dtype=torch.float32, device=device),
        lambda_task1=loss.lambda_task1, lambda_task2=loss.lambda_task2,
        smoothing_task1=loss.label_smoothing_task1, smoothing_task2=loss.label_smoothing,
        hier_pick_weight=hier.pick_consistency_weight, hier_pick_type=hier.pick_consistency_type,
        hier_decline_weight=hier.decline_uniform_weight,
    )


def eval_figures(logits1: np.ndarray, logits2: np.ndarray, y1: np.ndarray, y2: np.ndarray, loss_fn: TwoTaskLoss,
                 confidence: tuple[float, float] = (0.5, 0.9), prefix: str = "val") -> dict[str, float]:
    """Loss (the training objective, over the whole split) and sklearn metrics of one split's logits, plus the
    two gold-label consistency rates (``confidence`` = low and high Task2 max-prob thresholds)."""
    cpu_loss = dataclasses.replace(loss_fn, weight_task1=loss_fn.weight_task1.cpu(),
                                   weight_task2=loss_fn.weight_task2.cpu())
    with torch.no_grad():
        parts = cpu_loss.parts(*(torch.from_numpy(a) for a in (logits1, logits2, y1, y2)))
    loss = cpu_loss.combine([float(parts[k]) for k in SUM_KEYS])
    probs1, probs2 = softmax(logits1), softmax(logits2)
    found = {**task1_metrics(y1, logits1.argmax(1)), **task2_metrics(y2, logits2.argmax(1)),
             **consistency(y1, probs1[:, 1], probs2.max(1), 0.5, confidence[0], confidence[1])}
    return {**{f"{prefix}_loss_{t}": loss[t] for t in LOSS_TERMS}, **{f"{prefix}_{m}": found[m] for m in VAL_METRICS}}


def smoke_check(accelerator, model, batch, loss_fn: TwoTaskLoss, optimizer) -> None:
    """One forward + backward on the chosen device before the real run, with a clear message if the
    device cannot run the model (e.g. DeBERTa's relative-position ops on an old MPS build)."""
    try:
        logits1, logits2 = model(batch["input_ids"], batch["attention_mask"])
        parts = loss_fn.parts(logits1, logits2, batch["labels_binary"], batch["labels_category"])
        accelerator.backward(parts["total"])
        if not torch.isfinite(parts["total"]).item():
            raise TrainingError(f"the first batch's loss is {parts['total'].item()} on {accelerator.device}")
    except TrainingError:
        raise
    except Exception as exc:
        hint = ""
        if accelerator.device.type == "mps":
            hint = (" DeBERTa's relative-position code has used int64 ops that some torch/macOS MPS builds reject;"
                    " update torch/macOS, or run with train.device=cpu."
                    " PYTORCH_ENABLE_MPS_FALLBACK=1 does not fix dtype errors.")
        raise TrainingError(f"one forward+backward step failed on {accelerator.device}: {exc}.{hint}") from exc
    finally:
        optimizer.zero_grad(set_to_none=True)


def epoch_line(tag: str, epoch: int, epochs: int, f: dict, speed: dict) -> str:
    return (f"[{tag}] epoch {epoch}/{epochs} | train loss {f['train_loss_total']:.4f} (t1 {f['train_loss_task1']:.4f},"
            f" t2 {f['train_loss_task2']:.4f}) | val loss t1 {f['val_loss_task1']:.4f} t2 {f['val_loss_task2']:.4f} |"
            f" val acc t1 {f['val_acc_task1']:.4f} t2 {f['val_acc_task2']:.4f} | t2 macro-F1"
            f" {f['val_macro_f1_task2']:.4f} | {speed['train_samples_per_second']:.1f} samples/s,"
            f" {speed['epoch_seconds']:.1f}s")


def fit(model: TwoHeadModel, data: FitData, run: RunConfig, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train with the plain recipe; evaluate on ``data.val`` after each epoch; keep the last or best epoch."""
    t = run.train
    accelerator = make_accelerator(t.device, t.precision, t.grad_accum)
    collate = make_collate(data.pad_id)
    sampler = LengthGroupedBatchSampler(data.train.lengths, t.batch_size, t.seed, t.group_by_length)
    train_loader = DataLoader(data.train, batch_sampler=sampler, collate_fn=collate, num_workers=t.num_workers)
    val_loader = DataLoader(data.val, batch_sampler=SortedBatchSampler(data.val.lengths, t.eval_batch_size),
                            collate_fn=collate, num_workers=t.num_workers)
    groups, group_summary = llrd_groups(model, t.lr, t.llrd, t.head_lr_mult, t.weight_decay)
    optimizer = make_optimizer(groups, t.lr, accelerator.device.type)
    steps_per_epoch = math.ceil(len(train_loader) / t.grad_accum)
    scheduler = make_scheduler(optimizer, t.scheduler, steps_per_epoch * t.epochs, t.warmup_ratio)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler)
    loss_fn = make_loss(data, run, accelerator.device)
    parts = TrainParts(accelerator, model, optimizer, scheduler, loss_fn, t.max_grad_norm)
    log = functools.partial(accelerator.print, flush=True)  # epoch lines appear as they happen in `dvc repro > log`
    log(f"[{run.tag}] device {accelerator.device} ({accelerator.num_processes} process(es)), precision {t.precision},"
        f" {sum(x.numel() for x in model.parameters()):,} parameters; {len(data.train)} train / {len(data.val)} val"
        f" rows; {steps_per_epoch} steps/epoch")
    log(f"[{run.tag}] optimizer groups (LLRD):\n" + format_groups(group_summary))
    log(f"[{run.tag}] training-batch padding share (first epoch's batches): "
        f"{pad_share(data.train.lengths, sampler.batches(0)):.1%}")
    smoke = collate([data.train[i] for i in range(min(4, len(data.train)))])
    smoke_check(accelerator, model, {k: v.to(accelerator.device) for k, v in smoke.items()}, loss_fn, optimizer)
    for cb in callbacks:
        cb.on_fit_start(accelerator)

    history, speed, step_log = [], [], []
    best_epoch, best_score, best_state = 0, -math.inf, None
    step = 0
    confidence = (run.eval.low_confidence, run.eval.high_confidence)
    for epoch in range(1, t.epochs + 1):
        out = train_one_epoch(parts, train_loader, epoch, step, callbacks)
        step = out.last_step
        step_log.extend(out.steps)
        logits1, logits2 = predict(accelerator, model, val_loader, len(data.val), desc=f"val {epoch}")
        figures = {**out.figures, **eval_figures(logits1, logits2, data.val.labels_binary, data.val.labels_category,
                                                 loss_fn, confidence),
                   "epoch": epoch, "lambda_task1": run.loss.lambda_task1, "lambda_task2": run.loss.lambda_task2}
        row = {k: figures[k] for k in HISTORY_COLUMNS}
        history.append(row)
        speed.append({"epoch": epoch, **{k: figures[k] for k in SPEED_KEYS}})
        for cb in callbacks:
            cb.on_epoch_end(epoch, (logits1, logits2), row)
        log(epoch_line(run.tag, epoch, t.epochs, row, speed[-1]))
        if row[run.select] > best_score:  # NaN never wins
            best_epoch, best_score = epoch, row[run.select]
            if t.keep == "best":
                best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in accelerator.unwrap_model(model).state_dict().items()}

    accelerator.wait_for_everyone()
    final = accelerator.unwrap_model(model)
    kept_epoch = t.epochs
    if t.keep == "best" and best_state is not None:
        final.load_state_dict(best_state)
        kept_epoch = best_epoch
    return FitResult(history, speed, step_log, best_epoch, best_score, kept_epoch, final, accelerator)


def speed_summary(res: FitResult, precision: str) -> dict:
    """``metrics/train_speed.json``: means over epochs and the per-epoch figures (they vary run to run)."""
    return {"train_samples_per_second_mean": float(np.mean([s["train_samples_per_second"] for s in res.speed])),
            "epoch_seconds_mean": float(np.mean([s["epoch_seconds"] for s in res.speed])),
            "device": str(res.accelerator.device), "precision": precision, "processes": res.accelerator.num_processes,
            "epochs": res.speed}
