"""``fit``: the training loop shared by Stage 1 and Stage 2, with per-epoch extras as callbacks.

``fit(model, data, cfg, callbacks, store)`` trains ``model`` for ``cfg.train.epochs`` epochs on ``data.train``
and evaluates it on ``data.val`` after each epoch. It reads no file and writes none: the stage code in
:mod:`twohead.pipeline` decides what goes where. The run is built by :func:`~twohead.train.setup.prepare_training`
(shared with the LR range test); where it stands lives in one :class:`RunState`, which is what a
:class:`~twohead.train.resume.StateStore` saves; extras plug in as :class:`~twohead.train.callbacks.Callback`.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..config.errors import Interrupted, TrainingError
from ..config.schema import HISTORY_COLUMNS, SPEED_KEYS
from ..data.batching import make_collate
from ..model.two_head import TwoHeadModel
from .averaging import WeightAverages
from .callbacks import Callback
from .loop import EpochAccum, NonFinite, predict_logits, train_one_epoch
from .report import ProgressLine, epoch_line, start_lines, step_text
from .resume import StateStore, rng_restore, rng_snapshot
from .run_config import FitData, RunConfig
from .setup import Setup, prepare_training, smoke_check
from .validation import val_metrics

#: on_nonfinite: skip still stops once more than this share of the optimiser steps so far were dropped
#: (and more than MIN_SKIPPED_TO_STOP of them: a short run may drop one or two).
MAX_SKIPPED_SHARE = 0.01
MIN_SKIPPED_TO_STOP = 3

#: Test hook: SIGKILL this process right after its N-th state save (to test resuming; never set otherwise).
KILL_AFTER_SAVE_ENV = "TWOHEAD_TEST_KILL_AFTER_SAVE"


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
    machine: dict = field(default_factory=dict)  # padding, batch shapes, device memory (train_speed.json)
    averaging: dict | None = None    # switches.ema: each average's val figures and which weights were kept
    averages: WeightAverages | None = None   # the averages themselves (their final weights; for tools)
    raw_state: dict | None = None    # the raw weights when an average was kept instead (evaluate scores both on test)


@dataclass
class RunState:
    """Where a run stands — everything a saved state restores. ``accum`` / ``rng`` are set only when resuming in
    the middle of an epoch (its accumulators so far, and the RNG snapshot taken when it was saved)."""

    start_epoch: int = 1
    step: int = 0
    skipped: int = 0
    history: list[dict] = field(default_factory=list)
    speed: list[dict] = field(default_factory=list)
    step_log: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -math.inf
    best_state: dict | None = None
    accum: EpochAccum | None = None
    rng: dict | None = None
    averages: list | None = None     # WeightAverages.state_dict() (switches.ema), restored into the run's averages

    def progress(self, epoch: int, acc: EpochAccum | None, callbacks: Sequence[Callback]) -> dict:
        return {"epoch": epoch, "step": self.step, "accum": None if acc is None else acc.state_dict(),
                "rng": None if acc is None else rng_snapshot(), "history": self.history, "speed": self.speed,
                "step_log": self.step_log, "best_epoch": self.best_epoch, "best_score": self.best_score,
                "best_state": self.best_state, "skipped": self.skipped,
                "callbacks": [cb.state_dict() for cb in callbacks], "averages": self.averages}

    @classmethod
    def restore(cls, saved: dict, device, callbacks: Sequence[Callback]) -> RunState:
        for cb, cb_state in zip(callbacks, saved["callbacks"]):
            cb.load_state_dict(cb_state)
        state = cls(saved["epoch"] + 1, saved["step"], saved["skipped"], saved["history"], saved["speed"],
                    saved["step_log"], saved["best_epoch"], saved["best_score"], saved["best_state"])
        state.averages = saved.get("averages")
        if saved["accum"] is not None:
            state.start_epoch, state.accum, state.rng = saved["epoch"], EpochAccum(device), saved["rng"]
            state.accum.load_state_dict(saved["accum"])
        return state

    def keep_if_best(self, epoch: int, score: float, model, keep: str) -> None:
        if score > self.best_score:  # NaN never wins
            self.best_epoch, self.best_score = epoch, score
            if keep == "best":
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Saves:
    """When the state is saved: after each epoch, every ``store.every_steps`` optimiser steps, and at the step a
    SIGINT / SIGTERM arrived (which then stops the run)."""

    def __init__(self, store: StateStore | None, accelerator, state: RunState, callbacks: Sequence[Callback],
                 steps_per_epoch: int = 0):
        self.store, self.accelerator, self.state, self.callbacks = store, accelerator, state, callbacks
        self.steps_per_epoch = steps_per_epoch
        self.signal: str | None = None
        self.signum = 0
        self._previous: dict = {}

    def __enter__(self) -> Saves:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        self.signal, self.signum = signal.Signals(signum).name, signum

    def save(self, epoch: int, acc: EpochAccum | None) -> None:
        if self.store is None:
            return
        self.store.save(self.accelerator, self.state.progress(epoch, acc, self.callbacks))
        kill_after = os.environ.get(KILL_AFTER_SAVE_ENV)
        if kill_after and self.store.saves >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    def after_step(self, epoch: int, step: int, acc: EpochAccum) -> None:
        self.state.step = step
        every = self.store is not None and self.store.every_steps and step % self.store.every_steps == 0
        if every or self.signal:
            self.save(epoch, acc)
        self.stop_if_signalled(f"at {step_text(epoch, step, self.steps_per_epoch)}")

    def stop_if_signalled(self, where: str) -> None:
        if self.signal:
            raise Interrupted(f"{self.signal}: interrupted {where};"
                              + (" re-run to resume" if self.store is not None else " no state saved"), self.signum)


def fit(model: TwoHeadModel, data: FitData, cfg: RunConfig, callbacks: Sequence[Callback] = (),
        store: StateStore | None = None, objective=None) -> FitResult:
    """Train with the plain recipe; evaluate on ``data.val`` after each epoch; keep the last or best epoch.
    With a ``store``, the state is saved after every epoch (and every ``store.every_steps`` steps) and a
    matching saved state is resumed; the result is then identical to an uninterrupted run. ``objective``: the
    masked-LM phase's (:class:`~twohead.train.masked_lm.MaskedLMObjective`: its batches, loss and val figures)."""
    t = cfg.train
    s = prepare_training(model, data, cfg, objective=objective)
    log = functools.partial(s.accelerator.print, flush=True)  # lines appear as they happen in `dvc repro > log`
    for line in start_lines(cfg.tag, s, data, t.precision):
        log(line)
    first_rows = [data.train[i] for i in range(min(4, len(data.train)))]
    smoke = make_collate(data.pad_id, s.padding, data.max_length)(first_rows)
    smoke_check(s, {k: v.to(s.accelerator.device) for k, v in smoke.items()})
    for cb in callbacks:
        cb.on_fit_start(s.accelerator)
    averages = WeightAverages(s.raw_model, list(cfg.switches.ema))
    state = _resume(store, s, callbacks, log, cfg.tag)
    if averages and state.averages:
        averages.load_state_dict(state.averages)
    progress = ProgressLine(cfg.tag, t.epochs, s.steps_per_epoch, log=log,
                            enabled=None if s.accelerator.is_main_process else False, memory=s.memory.sample)
    with Saves(store, s.accelerator, state, callbacks, s.steps_per_epoch) as saves:
        for epoch in range(state.start_epoch, t.epochs + 1):
            train_metrics = _train_epoch(s, state, saves, epoch, callbacks, data, cfg, progress, averages)
            logits, vals = _validate(s, data, epoch, objective)
            row = {**train_metrics, **vals,
                   "epoch": epoch, "lambda_task1": cfg.loss.lambda_task1, "lambda_task2": cfg.loss.lambda_task2,
                   **dict(zip(("sigma_task1", "sigma_task2"), s.loss_fn.sigmas()))}
            state.history.append({k: row[k] for k in HISTORY_COLUMNS})
            state.speed.append({"epoch": epoch, **{k: row[k] for k in SPEED_KEYS},
                                "memory_mb": {k: round(v, 1) for k, v in s.memory.sample().items()}})
            for cb in callbacks:
                cb.on_epoch_end(epoch, logits, state.history[-1])
            log(epoch_line(cfg.tag, epoch, t.epochs, state.history[-1], state.speed[-1],
                           task2=cfg.loss.lambda_task2 > 0 or cfg.switches.task_weighting == "uncertainty",
                           t1="t1" if objective is None else "mlm"))
            state.keep_if_best(epoch, state.history[-1][cfg.select], s.raw_model, t.keep)
            for c in averages.candidates:   # each average scored on val beside the raw weights
                a1, a2 = predict_logits(s.accelerator, c.model.module, s.val_loader, len(data.val),
                                        desc=f"val {epoch} {c.name}")
                averages.record(c, epoch, val_metrics(a1, a2, data.val.labels_task1, data.val.labels_task2,
                                                      s.loss_fn), t.keep)
                log(f"[{cfg.tag}] epoch {epoch}/{t.epochs} | {c.name}: val acc t2 {c.val[-1]['val_acc_task2']:.4f}"
                    f" | t2 macro-F1 {c.val[-1]['val_macro_f1_task2']:.4f}")
            if averages:
                state.averages = averages.state_dict()
            saves.save(epoch, None)
            saves.stop_if_signalled(f"after epoch {epoch} ({step_text(epoch, state.step, s.steps_per_epoch)})")
    return _result(s, state, store, t.keep, t.epochs, averages)


def _validate(s: Setup, data: FitData, epoch: int, objective) -> tuple[tuple | None, dict]:
    """The epoch's val logits (None for the masked-LM phase) and figures under the history's column names."""
    if objective is not None:
        return None, objective.validate(s.accelerator, s.model, s.val_loader, s.loss_fn)
    logits1, logits2 = predict_logits(s.accelerator, s.model, s.val_loader, len(data.val), desc=f"val {epoch}")
    return (logits1, logits2), val_metrics(logits1, logits2, data.val.labels_task1, data.val.labels_task2, s.loss_fn)


def _after_step(saves: Saves, progress: ProgressLine | None, epoch: int, processes: int, memory, averages,
                step: int, acc: EpochAccum) -> None:
    if averages:
        averages.update()
        every = saves.store is not None and saves.store.every_steps and step % saves.store.every_steps == 0
        if every or saves.signal:   # a state is saved at this step: the averages go with it
            saves.state.averages = averages.state_dict()
    if memory is not None:
        memory.after_step(step)
    if progress is not None:
        progress(epoch, step, acc.n_rows * processes, acc.seconds)
    saves.after_step(epoch, step, acc)


def _train_epoch(s: Setup, state: RunState, saves: Saves, epoch: int, callbacks, data: FitData,
                 cfg: RunConfig, progress: ProgressLine | None = None, averages: WeightAverages | None = None) -> dict:
    """One training epoch (or the rest of a resumed one); returns its training metrics and timings."""
    s.sampler.passes = epoch - 1
    s.sampler.skip = state.accum.batches * s.accelerator.num_processes if state.accum else 0
    rng = state.rng
    try:
        out = train_one_epoch(s.step, s.train_loader, epoch, state.step, callbacks, accum=state.accum,
                              on_nonfinite=cfg.train.on_nonfinite,
                              on_step=functools.partial(_after_step, saves, progress, epoch,
                                                        s.accelerator.num_processes, s.memory, averages),
                              on_first_batch=(lambda: rng_restore(rng)) if rng is not None else None)
    except NonFinite as exc:
        raise _diverged(exc.info, data, cfg.tag, state.step_log, saves.store) from None
    state.accum, state.rng, state.step = None, None, out.last_step
    state.skipped += out.skipped
    state.step_log.extend(out.steps)
    if state.skipped > max(MIN_SKIPPED_TO_STOP, MAX_SKIPPED_SHARE * (state.step + state.skipped)):
        raise TrainingError(f"{state.skipped} of {state.step + state.skipped} optimiser steps had a non-finite loss"
                            f" or gradient norm (more than {MAX_SKIPPED_SHARE:.0%}): lower train.lr, or check the data")
    return out.metrics


def _resume(store: StateStore | None, s: Setup, callbacks, log, tag: str) -> RunState:
    saved = store.load(s.accelerator) if store is not None else None
    if saved is None:
        return RunState()
    state = RunState.restore(saved, s.accelerator.device, callbacks)
    _apply_new_lrs(s.scheduler, s.initial_lrs, log, tag)
    log(f"[{tag}] resuming at {step_text(state.start_epoch, state.step, s.steps_per_epoch)}"
        + (f" ({state.accum.batches} batches of the epoch done)" if state.accum else "") + f" ({store.folder})")
    return state


def _result(s: Setup, state: RunState, store: StateStore | None, keep: str, epochs: int,
            averages: WeightAverages | None = None) -> FitResult:
    s.accelerator.wait_for_everyone()
    kept_epoch = epochs
    averaging = raw_state = None
    if averages:   # raw vs each average, by val Task2 accuracy (last epoch, or each one's best)
        raw_epoch = state.best_epoch if keep == "best" else epochs
        raw_score = state.best_score if keep == "best" else state.history[-1]["val_acc_task2"]
        kept, kept_epoch, weights = averages.choose(keep, raw_score, raw_epoch)
        if weights is not None:
            raw_state = state.best_state if keep == "best" and state.best_state is not None else \
                {k: v.detach().to("cpu", copy=True) for k, v in s.raw_model.state_dict().items()}
            s.raw_model.load_state_dict(weights)
        elif keep == "best" and state.best_state is not None:
            s.raw_model.load_state_dict(state.best_state)
        averaging = {**averages.summary(kept, kept_epoch), "raw": {"val_acc_task2": raw_score, "epoch": raw_epoch}}
    elif keep == "best" and state.best_state is not None:
        s.raw_model.load_state_dict(state.best_state)
        kept_epoch = state.best_epoch
    saves = None if store is None else {"saves": store.saves, "save_seconds": store.seconds,
                                        "state_mb": store.size_mb()}
    machine = {"padding": s.padding, "max_train_shapes_per_epoch": max((r.get("train_shapes", 0) for r in state.speed),
                                                                       default=0),
               "val_shapes": s.val_shapes, "memory": s.memory.summary() if s.memory else {}}
    return FitResult(state.history, state.speed, state.step_log, state.best_epoch, state.best_score, kept_epoch,
                     s.raw_model, s.accelerator, state.skipped, saves, machine, averaging,
                     averages, raw_state)


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


class Diverged(TrainingError):
    """A non-finite loss or gradient norm stopped training; ``step_log`` holds the steps so far plus the bad one."""

    def __init__(self, message: str, step_log: list[dict]):
        super().__init__(message)
        self.step_log = step_log


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

