"""One optimisation step — the plain recipe's forward, loss, backward, clip and optimiser step, in this file — and
the endless batch stream: what the epoch loop, the LR sweep and ``twohead speed`` all train with.

Read :func:`forward_and_loss` then :func:`train_step`: with every switch off (the plain recipe) a step is the model's
forward, :meth:`TwoTaskLoss.terms <twohead.train.losses.TwoTaskLoss.terms>` (L = λ1·L1 + λ2·L2), backward, clipping
and AdamW + the LR schedule. A switch changes it through one optional hook (``StepContext.hook``, in
:mod:`twohead.train.switches`) and AWP's second pass; both are None when off. The masked-LM phase trains with this
same step, its forward + loss the hook of :mod:`twohead.train.masked_lm`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from .losses import TwoTaskLoss
from .switches import AWP, SwitchedForward


@dataclass
class StepContext:
    """What one optimisation step needs, prepared by Accelerate."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: TwoTaskLoss
    max_grad_norm: float
    hook: SwitchedForward | None = None  # a switch's forward + loss (R-Drop, multi-sample dropout), or the masked-LM
                                         # phase's; None = plain
    awp: AWP | None = None               # adversarial weight perturbation (switches.awp_*), None = off


def forward_and_loss(ctx: StepContext, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Both heads' logits and the loss terms of one batch (``terms["total"]`` is what backward sees)."""
    if ctx.hook is not None:   # a switch is on (train/switches.py), or the masked-LM phase; the plain recipe never is
        return ctx.hook(ctx.model, batch)
    logits1, logits2 = ctx.model(batch["input_ids"], batch["attention_mask"])
    terms = ctx.loss_fn.terms(logits1, logits2, batch["labels_task1"], batch["labels_task2"])
    return logits1, logits2, terms


@dataclass
class Step:
    """What one micro-batch did. ``grad_norm`` is NaN off an accumulation window's last micro-batch; ``bad``: its
    loss (or, on the last micro-batch, the clipped gradient norm) was not finite; ``applied``: the optimiser and
    scheduler stepped."""

    logits1: torch.Tensor
    logits2: torch.Tensor
    out: dict[str, torch.Tensor]
    grad_norm: torch.Tensor
    bad: bool
    sync: bool
    applied: bool


def train_step(ctx: StepContext, batch: dict, awp: AWP | None = None, window_bad: bool = False,
               stop_if_bad: bool = False) -> Step:
    """Forward and loss (:func:`forward_and_loss`), backward (plus AWP's second pass at perturbed weights), and on the
    accumulation window's last micro-batch: clip, then the optimiser and scheduler step.

    The non-finite guard: one device→host sync per micro-batch reads whether the loss (and the gradient norm) is
    finite. A bad micro-batch — or an earlier bad one in the same window (``window_bad``) — drops the window's
    optimiser step (gradients zeroed, nothing applied); with ``stop_if_bad`` a bad micro-batch returns before
    anything is applied or zeroed (the caller stops the run)."""
    acc, model = ctx.accelerator, ctx.model
    with acc.accumulate(model):
        logits1, logits2, out = forward_and_loss(ctx, batch)
        acc.backward(out["total"])
        if awp is not None:  # a switch: a second pass at adversarially perturbed weights, gradients added
            awp.perturb()
            acc.backward(forward_and_loss(ctx, batch)[2]["total"])
            awp.restore()
        sync = acc.sync_gradients
        gn = torch.tensor(float("nan"), device=acc.device)
        if sync:
            gn = acc.clip_grad_norm_(model.parameters(), ctx.max_grad_norm).detach().float()
        finite = torch.isfinite(out["total"].detach()) & (torch.isfinite(gn) | ~torch.tensor(sync, device=acc.device))
        bad = not bool(finite.item())
        applied = False
        if not (bad and stop_if_bad):
            if sync and (window_bad or bad):
                ctx.optimizer.zero_grad(set_to_none=True)  # drop this optimiser step
            else:
                ctx.optimizer.step()     # Accelerate's wrappers only step on the window's last micro-batch
                if ctx.scheduler is not None:
                    ctx.scheduler.step()
                ctx.optimizer.zero_grad(set_to_none=True)
                applied = sync
    return Step(logits1, logits2, out, gn, bad, sync, applied)


def cycle_batches(loader, sampler) -> Iterator[dict]:
    """The loader's batches, pass after pass without end, reshuffled each pass as an epoch would be (the
    sampler's ``passes`` seeds its order): for the tools that train a number of steps, not epochs."""
    for n in itertools.count():
        sampler.passes = n
        yield from loader
