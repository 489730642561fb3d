"""The shared setup of a training run: device, batches, the switches' model preparation, LLRD groups, AdamW,
the schedule, Accelerate's wrapping, the loss and the switches' hooks. ``fit`` and the tools that train (LR sweep,
range test, ``twohead speed``) all build their run here, so the tools measure exactly what training would run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config.errors import TrainingError
from ..data.batching import LengthGroupedBatchSampler, SortedBatchSampler, batch_shapes, make_collate, resolve_padding
from . import switches
from .device import make_accelerator
from .losses import TwoTaskLoss, loss_for_run
from .memory import MemoryWatch
from .optim import llrd_groups, make_optimizer, make_scheduler
from .run_config import FitData, RunConfig
from .step import StepContext, forward_and_loss


@dataclass
class Setup:
    accelerator: Any
    model: torch.nn.Module            # as Accelerate wrapped it (DDP in a multi-process run)
    raw_model: torch.nn.Module        # the unwrapped model
    sampler: LengthGroupedBatchSampler
    train_loader: Any
    val_loader: Any | None
    optimizer: torch.optim.Optimizer
    scheduler: Any | None
    loss_fn: TwoTaskLoss
    step: StepContext                 # what one optimisation step needs
    group_summary: list[dict]         # the LLRD groups, for the log
    initial_lrs: list[float]          # each group's base learning rate (before the schedule touches them)
    steps_per_epoch: int
    windowed: int                     # DeBERTa layers with the windowed attention bias
    padding: str = "longest"          # train.padding resolved for this device
    cfg_padding: str = "longest"      # train.padding as configured (auto, buckets, longest)
    val_shapes: int = 0               # distinct (rows, length) shapes of one validation pass
    memory: MemoryWatch | None = None  # device memory high-water marks and cache clearing


def prepare_training(model, data: FitData, cfg: RunConfig, *, base_lr: float | None = None, schedule: bool = True,
                     validate: bool = True, schedule_steps: int | None = None, objective=None) -> Setup:
    """Everything a run needs, prepared by Accelerate. ``base_lr`` replaces ``train.lr`` (the range test uses 1,
    so each group's lr is its LLRD ratio); ``schedule=False`` builds no scheduler and ``validate=False`` no val
    loader (the range test has neither; it also never accumulates gradients); ``schedule_steps`` compresses the
    schedule (warmup share, then decay to 0) into that many optimiser steps instead of the run's (the LR
    sweep). ``objective``: the masked-LM phase's forward + loss
    (:class:`~twohead.train.masked_lm.MaskedLMObjective`); None = the two heads'."""
    t = cfg.train
    accelerator = make_accelerator(t.device, t.precision, t.grad_accum if schedule else 1)
    padding = resolve_padding(t.padding, accelerator.device.type)
    collate = make_collate(data.pad_id, padding, data.max_length)
    sampler = LengthGroupedBatchSampler(data.train.lengths, t.batch_size, t.seed, t.group_by_length)
    train_loader = DataLoader(data.train, batch_sampler=sampler, collate_fn=collate, num_workers=t.num_workers)
    val_shapes = 0
    val_loader = None
    if validate:
        val_sampler = SortedBatchSampler(data.val.lengths, t.eval_batch_size)
        val_shapes = len(batch_shapes(data.val.lengths, list(val_sampler), padding, data.max_length))
        val_loader = DataLoader(data.val, batch_sampler=val_sampler, collate_fn=collate, num_workers=t.num_workers)
    windowed = switches.prepare_model(model, cfg)
    lr = t.lr if base_lr is None else base_lr
    groups, group_summary = llrd_groups(model, lr, t.llrd, t.head_lr_mult, t.weight_decay)
    initial_lrs = [g["lr"] for g in groups]
    optimizer = make_optimizer(groups, lr, accelerator.device.type)
    # the schedule counts the un-sharded batches: under N processes Accelerate steps the scheduler N times a step
    total = schedule_steps if schedule_steps is not None else math.ceil(len(train_loader) / t.grad_accum) * t.epochs
    scheduler = make_scheduler(optimizer, t.scheduler, total, t.warmup_ratio) if schedule else None
    parts = [model, optimizer, train_loader, *([val_loader] if validate else []), *([scheduler] if schedule else [])]
    prepared = list(accelerator.prepare(*parts))
    model, optimizer, train_loader = prepared[:3]
    val_loader = prepared[3] if validate else None
    scheduler = prepared[-1] if schedule else None
    steps_per_epoch = math.ceil(len(train_loader) / t.grad_accum)  # this process's (after sharding), as counted
    raw_model = accelerator.unwrap_model(model)
    w1, w2 = (torch.tensor(w, dtype=torch.float32, device=accelerator.device)  # float32: MPS has no float64
              for w in (data.weights_task1, data.weights_task2))
    loss_fn = loss_for_run(cfg, w1, w2, log_vars=raw_model.loss_log_vars)
    hook, awp = (objective.hook(loss_fn, padding), None) if objective is not None else \
        switches.build(raw_model, loss_fn, cfg)
    step = StepContext(accelerator, model, optimizer, scheduler, loss_fn, t.max_grad_norm, hook, awp)
    return Setup(accelerator, model, raw_model, sampler, train_loader, val_loader, optimizer, scheduler, loss_fn,
                 step, group_summary, initial_lrs, steps_per_epoch, windowed, padding, t.padding, val_shapes,
                 MemoryWatch(accelerator.device, t.empty_cache_steps))


def smoke_check(s: Setup, batch: dict) -> None:
    """One forward + backward on the chosen device before the real run, with a clear message if the
    device cannot run the model (e.g. DeBERTa's relative-position ops on an old MPS build)."""
    accelerator = s.accelerator
    try:
        terms = forward_and_loss(s.step, batch)[2]
        accelerator.backward(terms["total"])
        if not torch.isfinite(terms["total"]).item():
            raise TrainingError(f"the first batch's loss is {terms['total'].item()} on {accelerator.device}")
    except TrainingError:
        raise
    except Exception as exc:
        hint = ""
        from .device import mps_kernel_hint

        missing = mps_kernel_hint(exc)
        if missing:
            raise TrainingError(f"one forward+backward step failed on {accelerator.device}: {missing}") from exc
        if accelerator.device.type == "mps":
            hint = (" DeBERTa's relative-position code has used int64 ops that some torch/macOS MPS builds reject;"
                    " update torch/macOS, or run with train.device=cpu."
                    " PYTORCH_ENABLE_MPS_FALLBACK=1 does not fix dtype errors.")
        raise TrainingError(f"one forward+backward step failed on {accelerator.device}: {exc}.{hint}") from exc
    finally:
        s.optimizer.zero_grad(set_to_none=True)
