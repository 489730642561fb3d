"""``fit``: the training loop shared by Stage 1 and Stage 2, with per-epoch extras as callbacks.

``fit(model, data, run, callbacks)`` trains ``model`` for ``run.train.epochs`` epochs on ``data.train``
and evaluates it on ``data.val`` after each epoch. It reads no file and writes none: the stage code in
:mod:`twohead.pipeline` decides what goes where. Extras plug in as :class:`Callback` objects:

* ``on_fit_start(accelerator)`` — once, after Accelerate has prepared everything;
* ``on_train_batch(epoch, batch, logits1, logits2)`` — each training batch (detached logits);
* ``on_epoch_end(epoch, val_logits, figures)`` — the one per-epoch signature: the epoch number, the val
  logits ``(task1, task2)`` as float32 NumPy arrays in dataset order, and the epoch's figures
  (the history row, keys in :mod:`twohead.config.schema`).

Band recall, val worst-K, the partial history CSV and dataset cartography are such callbacks
(:mod:`twohead.train.callbacks`); Stage 1 passes none.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config.errors import TrainingError
from ..config.params import EvalParams, HierParams, LossParams, RegParams, TrainParams
from ..config.schema import HISTORY_COLUMNS, LOSS_TERMS, SPEED_KEYS, VAL_METRICS
from ..data.batching import LengthGroupedBatchSampler, SortedBatchSampler, TokenizedDataset, make_collate, pad_share
from ..evaluate.metrics import consistency, softmax, task1_metrics, task2_metrics
from ..model import fast_attention
from ..model.two_head import TwoHeadModel
from .device import make_accelerator
from .loop import EpochAccum, NonFinite, TrainParts, predict, train_one_epoch
from .losses import SUM_KEYS, TwoTaskLoss
from .optim import format_groups, llrd_groups, make_optimizer, make_scheduler
from .resume import StateStore, rng_restore, rng_snapshot
from .techniques import AWP, Objective


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
    reg: RegParams = field(default_factory=RegParams)
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

    def state_dict(self) -> dict:
        """What must survive an interruption (saved with the training state)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
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
    skipped_steps: int = 0           # optimiser steps dropped (train.on_nonfinite: skip)
    state: dict | None = None        # state saves: count, seconds, size (when a StateStore was used)


def make_loss(data: FitData, run: RunConfig, device, log_vars: torch.Tensor | None = None) -> TwoTaskLoss:
    """The loss on ``device`` (class weights as float32: MPS has no float64); ``log_vars`` = the model's
    learned log-variances when ``loss.weighting`` is uncertainty."""
    loss, hier = run.loss, run.hier
    if loss.weighting == "uncertainty" and log_vars is None:
        raise ValueError("uncertainty weighting needs the model's loss_log_vars (TwoHeadModel.add_loss_log_vars)")
    return TwoTaskLoss(
        weight_task1=torch.tensor(data.weights_task1, dtype=torch.float32, device=device),
        weight_task2=torch.tensor(data.weights_task2, dtype=torch.float32, device=device),
        lambda_task1=loss.lambda_task1, lambda_task2=loss.lambda_task2,
        smoothing_task1=loss.label_smoothing_task1, smoothing_task2=loss.label_smoothing,
        hier_pick_weight=hier.pick_consistency_weight, hier_pick_type=hier.pick_consistency_type,
        hier_decline_weight=hier.decline_uniform_weight, hier_detach=hier.pick_consistency_detach,
        weighting=loss.weighting, log_vars=log_vars if loss.weighting == "uncertainty" else None,
        rdrop_alpha=run.reg.rdrop_alpha,
    )


def prepare_model(model: TwoHeadModel, run: RunConfig) -> TwoHeadModel:
    """Add what the switches need to the model before its optimizer groups are built (uncertainty weighting's
    learned log-variances)."""
    if run.loss.weighting == "uncertainty":
        model.add_loss_log_vars()
    return model


def compile_encoder(model: TwoHeadModel) -> TwoHeadModel:
    """``torch.compile`` the encoder in place (``nn.Module.compile``: parameter names, state dicts, saving and
    resuming are unchanged), with dynamic shapes since batch lengths vary. The heads and the loss stay eager."""
    model.encoder.compile(dynamic=True)
    return model


def make_objective(model: TwoHeadModel, loss_fn: TwoTaskLoss, run: RunConfig) -> Objective:
    return Objective(loss_fn, run.reg.rdrop_alpha, model.msd_samples)


def make_awp(model: TwoHeadModel, run: RunConfig) -> AWP | None:
    r = run.reg
    return AWP(model, r.awp_lr, r.awp_eps, r.awp_start_epoch) if r.awp_start_epoch > 0 else None


def eval_figures(logits1: np.ndarray, logits2: np.ndarray, y1: np.ndarray, y2: np.ndarray, loss_fn: TwoTaskLoss,
                 confidence: tuple[float, float] = (0.5, 0.9), prefix: str = "val") -> dict[str, float]:
    """Loss (the training objective, over the whole split) and sklearn metrics of one split's logits, plus the
    two gold-label consistency rates (``confidence`` = low and high Task2 max-prob thresholds)."""
    cpu_loss = dataclasses.replace(loss_fn, weight_task1=loss_fn.weight_task1.cpu(),
                                   weight_task2=loss_fn.weight_task2.cpu(),
                                   log_vars=None if loss_fn.log_vars is None else loss_fn.log_vars.detach().cpu())
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


class Diverged(TrainingError):
    """A non-finite loss or gradient norm stopped training; ``step_log`` holds the steps so far plus the bad one."""

    def __init__(self, message: str, step_log: list[dict]):
        super().__init__(message)
        self.step_log = step_log


#: on_nonfinite: skip still stops once more than this share of the optimiser steps so far were dropped
#: (and more than MIN_SKIPPED_TO_STOP of them: a short run may drop one or two).
MAX_SKIPPED_SHARE = 0.01
MIN_SKIPPED_TO_STOP = 3

#: Test hook: SIGKILL this process right after its N-th state save (to test resuming; never set otherwise).
KILL_AFTER_SAVE_ENV = "TWOHEAD_TEST_KILL_AFTER_SAVE"


class _Interrupt:
    """SIGINT / SIGTERM set a flag; the loop finishes the current step, saves the state and stops."""

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def fit(model: TwoHeadModel, data: FitData, run: RunConfig, callbacks: Sequence[Callback] = (),
        store: StateStore | None = None) -> FitResult:
    """Train with the plain recipe; evaluate on ``data.val`` after each epoch; keep the last or best epoch.
    With a ``store``, the state is saved after every epoch (and every ``store.every_steps`` steps) and a
    matching saved state is resumed; the result is then identical to an uninterrupted run."""
    t = run.train
    accelerator = make_accelerator(t.device, t.precision, t.grad_accum)
    collate = make_collate(data.pad_id)
    sampler = LengthGroupedBatchSampler(data.train.lengths, t.batch_size, t.seed, t.group_by_length)
    train_loader = DataLoader(data.train, batch_sampler=sampler, collate_fn=collate, num_workers=t.num_workers)
    val_loader = DataLoader(data.val, batch_sampler=SortedBatchSampler(data.val.lengths, t.eval_batch_size),
                            collate_fn=collate, num_workers=t.num_workers)
    prepare_model(model, run)
    windowed = fast_attention.install(model) if t.fast_attention else 0
    if t.compile:
        compile_encoder(model)
    groups, group_summary = llrd_groups(model, t.lr, t.llrd, t.head_lr_mult, t.weight_decay)
    initial_lrs = [g["lr"] for g in groups]  # before the scheduler starts changing the groups
    optimizer = make_optimizer(groups, t.lr, accelerator.device.type)
    steps_per_epoch = math.ceil(len(train_loader) / t.grad_accum)
    scheduler = make_scheduler(optimizer, t.scheduler, steps_per_epoch * t.epochs, t.warmup_ratio)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler)
    raw_model = accelerator.unwrap_model(model)
    loss_fn = make_loss(data, run, accelerator.device, raw_model.loss_log_vars)
    parts = TrainParts(accelerator, model, optimizer, scheduler, loss_fn, t.max_grad_norm,
                       make_objective(raw_model, loss_fn, run), make_awp(raw_model, run))
    log = functools.partial(accelerator.print, flush=True)  # epoch lines appear as they happen in `dvc repro > log`
    log(f"[{run.tag}] device {accelerator.device} ({accelerator.num_processes} process(es)), precision {t.precision},"
        f" {sum(x.numel() for x in model.parameters()):,} parameters; {len(data.train)} train / {len(data.val)} val"
        f" rows; {steps_per_epoch} steps/epoch")
    log(f"[{run.tag}] optimizer groups (LLRD):\n" + format_groups(group_summary))
    if windowed:
        log(f"[{run.tag}] fast_attention: windowed relative-attention bias in {windowed} DeBERTa layer(s)")
    log(f"[{run.tag}] training-batch padding share (first epoch's batches): "
        f"{pad_share(data.train.lengths, sampler.batches(0)):.1%}")
    smoke = collate([data.train[i] for i in range(min(4, len(data.train)))])
    smoke_check(accelerator, model, {k: v.to(accelerator.device) for k, v in smoke.items()}, loss_fn, optimizer)
    for cb in callbacks:
        cb.on_fit_start(accelerator)
    if store is not None and accelerator.num_processes > 1:
        log(f"[{run.tag}] resumable state is single-process only: this {accelerator.num_processes}-process run"
            " saves none")
        store = None

    history, speed, step_log = [], [], []
    best_epoch, best_score, best_state = 0, -math.inf, None
    step, skipped, start_epoch, accum, rng = 0, 0, 1, None, None
    saved = store.load(accelerator) if store is not None else None
    if saved is not None:
        history, speed, step_log = saved["history"], saved["speed"], saved["step_log"]
        best_epoch, best_score, best_state = saved["best_epoch"], saved["best_score"], saved["best_state"]
        step, skipped = saved["step"], saved["skipped"]
        for cb, state in zip(callbacks, saved["callbacks"]):
            cb.load_state_dict(state)
        if saved["accum"] is None:
            start_epoch = saved["epoch"] + 1
        else:
            start_epoch, accum, rng = saved["epoch"], EpochAccum(accelerator.device), saved["rng"]
            accum.load_state_dict(saved["accum"])
        _apply_new_lrs(scheduler, initial_lrs, log, run.tag)
        log(f"[{run.tag}] resuming from epoch {start_epoch}, step {step}"
            + (f" ({accum.batches} batches of the epoch done)" if accum else "") + f" ({store.folder})")

    def progress(epoch: int, acc: EpochAccum | None) -> dict:
        return {"epoch": epoch, "step": step, "accum": None if acc is None else acc.state_dict(),
                "rng": None if acc is None else rng_snapshot(), "history": history, "speed": speed,
                "step_log": step_log, "best_epoch": best_epoch, "best_score": best_score, "best_state": best_state,
                "skipped": skipped, "callbacks": [cb.state_dict() for cb in callbacks]}

    def saved_state(epoch: int, acc: EpochAccum | None) -> None:
        store.save(accelerator, progress(epoch, acc))
        kill_after = os.environ.get(KILL_AFTER_SAVE_ENV)
        if kill_after and store.saves >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    confidence = (run.eval.low_confidence, run.eval.high_confidence)
    with _Interrupt() as interrupt:
        for epoch in range(start_epoch, t.epochs + 1):
            sampler.passes = epoch - 1
            sampler.skip = accum.batches * accelerator.num_processes if accum else 0

            def on_step(s: int, acc: EpochAccum, epoch=epoch) -> None:
                nonlocal step
                step = s
                every = store is not None and store.every_steps and s % store.every_steps == 0
                if store is not None and (every or interrupt.signal):
                    saved_state(epoch, acc)
                if interrupt.signal:
                    raise TrainingError(f"{interrupt.signal}: interrupted at epoch {epoch} step {s};"
                                        + (" re-run to resume" if store is not None else " no state saved"))

            try:
                out = train_one_epoch(parts, train_loader, epoch, step, callbacks, accum=accum,
                                      on_nonfinite=t.on_nonfinite, on_step=on_step,
                                      on_first_batch=(lambda r=rng: rng_restore(r)) if rng is not None else None)
            except NonFinite as exc:
                raise _diverged(exc.info, data, run.tag, step_log, store) from None
            accum, rng, step = None, None, out.last_step
            skipped += out.skipped
            step_log.extend(out.steps)
            if skipped > max(MIN_SKIPPED_TO_STOP, MAX_SKIPPED_SHARE * (step + skipped)):
                raise TrainingError(f"{skipped} of {step + skipped} optimiser steps had a non-finite loss or gradient"
                                    f" norm (more than {MAX_SKIPPED_SHARE:.0%}): lower train.lr, or check the data")
            logits1, logits2 = predict(accelerator, model, val_loader, len(data.val), desc=f"val {epoch}")
            figures = {**out.figures, **eval_figures(logits1, logits2, data.val.labels_binary,
                                                     data.val.labels_category, loss_fn, confidence),
                       "epoch": epoch, "lambda_task1": run.loss.lambda_task1, "lambda_task2": run.loss.lambda_task2,
                       **dict(zip(("sigma_task1", "sigma_task2"), loss_fn.sigmas()))}
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
            if store is not None:
                saved_state(epoch, None)
            if interrupt.signal:
                raise TrainingError(f"{interrupt.signal}: interrupted after epoch {epoch} (step {step});"
                                    + (" re-run to resume" if store is not None else " no state saved"))

    accelerator.wait_for_everyone()
    final = accelerator.unwrap_model(model)
    kept_epoch = t.epochs
    if t.keep == "best" and best_state is not None:
        final.load_state_dict(best_state)
        kept_epoch = best_epoch
    state = None if store is None else {"saves": store.saves, "save_seconds": store.seconds,
                                        "state_mb": store.size_mb()}
    return FitResult(history, speed, step_log, best_epoch, best_score, kept_epoch, final, accelerator, skipped, state)


def _apply_new_lrs(scheduler, new: list[float], log, tag: str) -> None:
    """A resumed state carries the old learning rates; if train.lr changed since, continue with the new ones
    (same schedule position). That is how a diverged run is resumed with a lower LR."""
    inner = getattr(scheduler, "scheduler", scheduler)
    if [round(x, 12) for x in inner.base_lrs] == [round(x, 12) for x in new]:
        return
    log(f"[{tag}] learning rates changed since the state was saved: top group {inner.base_lrs[-1]:g} ->"
        f" {new[-1]:g}; continuing the schedule with the new ones")
    inner.base_lrs = list(new)
    for g, base, fn in zip(inner.optimizer.param_groups, new, inner.lr_lambdas):
        g["initial_lr"] = base
        g["lr"] = base * fn(inner.last_epoch)
    inner._last_lr = [g["lr"] for g in inner.optimizer.param_groups]


def _diverged(info: dict, data: FitData, tag: str, step_log: list[dict], store) -> Diverged:
    ids = [str(data.train.ids[i]) for i in info["rows"]]
    shown = ", ".join(ids[:10]) + (f" … ({len(ids)} rows)" if len(ids) > 10 else "")
    lrs = ", ".join(f"{x:.3g}" for x in info["lr"])
    kept = ""
    if store is not None and (store.folder / "progress.pt").exists():
        kept = f"; the last good state is kept in {store.folder}: lower train.lr and re-run to resume from it"
    record = {"epoch": info["epoch"], "step": info["step"], "nonfinite": True, "loss_total": info["loss_total"],
              "grad_norm": info["grad_norm"], "lr": info["lr"], "ids": ids}
    msg = (f"[{tag}] non-finite {'loss' if not math.isfinite(info['loss_total']) else 'gradient norm'} at epoch"
           f" {info['epoch']}, step {info['step']} (loss {info['loss_total']}, grad norm {info['grad_norm']});"
           f" batch rows: {shown}; learning rates: {lrs}{kept}. train.on_nonfinite: skip drops such steps instead")
    return Diverged(msg, step_log + info["steps"] + [record])


def speed_summary(res: FitResult, precision: str) -> dict:
    """``metrics/train_speed.json``: means over epochs and the per-epoch figures (they vary run to run)."""
    return {"train_samples_per_second_mean": float(np.mean([s["train_samples_per_second"] for s in res.speed])),
            "epoch_seconds_mean": float(np.mean([s["epoch_seconds"] for s in res.speed])),
            "device": str(res.accelerator.device), "precision": precision, "processes": res.accelerator.num_processes,
            "epochs": res.speed, **({"state": res.state} if res.state else {})}
