"""One training epoch and one prediction pass, on Accelerate (so `accelerate launch` gives DDP).

Host syncs are kept out of the step: losses, accuracy counts and gradient norms accumulate in device
tensors and are read once per epoch (the progress bar's loss is refreshed every ``refresh`` steps).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config.schema import LOSS_TERMS, TRAIN_ONLY_TERMS
from .losses import IGNORE, LossAccumulator, TwoTaskLoss
from .techniques import AWP, Objective


def _counts(logits1, logits2, y1, y2) -> torch.Tensor:
    v1, v2 = (y1 != IGNORE), (y2 != IGNORE)
    c1 = ((logits1.argmax(-1) == y1) & v1).sum()
    c2 = ((logits2.argmax(-1) == y2) & v2).sum()
    return torch.stack([c1, v1.sum(), c2, v2.sum()]).float()


@dataclass
class StepContext:
    """What one optimisation step needs, prepared by Accelerate."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: TwoTaskLoss
    max_grad_norm: float
    objective: Objective | None = None   # forward + loss of a batch (default: plain, from loss_fn)
    awp: AWP | None = None               # adversarial weight perturbation (reg.awp_*), None = off

    def __post_init__(self):
        if self.objective is None:
            self.objective = Objective(self.loss_fn)


@dataclass
class EpochOutput:
    metrics: dict[str, float]   # train losses/accuracies, lr, grad norms, timings (keys in twohead.config.schema)
    steps: list[dict]           # one row per batch for logs/steps.jsonl
    last_step: int              # optimiser steps done so far (across epochs)
    skipped: int = 0            # optimiser steps dropped for a non-finite loss / grad norm (on_nonfinite: skip)


class NonFinite(Exception):
    """A non-finite loss or gradient norm; ``info`` has the epoch, step, batch row indices and learning rates."""

    def __init__(self, info: dict):
        super().__init__(info)
        self.info = info


class EpochAccum:
    """What an epoch accumulates, on the device; saved with a mid-epoch state so a resumed epoch ends with
    exactly the metrics of an uninterrupted one."""

    def __init__(self, device):
        self.losses = LossAccumulator(device)
        self.counts = torch.zeros(4, device=device)
        self.step_rows: list[torch.Tensor] = []  # [step, loss1, loss2, total, grad_norm(or nan), lr]
        self.grad_norms: list[torch.Tensor] = []
        self.n_rows = 0
        self.batches = 0       # batches of this epoch done (the sampler skips them on resume)
        self.seconds = 0.0
        self.skipped = 0

    def state_dict(self) -> dict:
        return {"sums": self.losses.sums.cpu(), "counts": self.counts.cpu(),
                "step_rows": [r.cpu() for r in self.step_rows], "grad_norms": [g.cpu() for g in self.grad_norms],
                "n_rows": self.n_rows, "batches": self.batches, "seconds": self.seconds, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        device = self.counts.device
        self.losses.sums = state["sums"].to(device)
        self.counts = state["counts"].to(device)
        self.step_rows = [r.to(device) for r in state["step_rows"]]
        self.grad_norms = [g.to(device) for g in state["grad_norms"]]
        self.n_rows, self.batches = state["n_rows"], state["batches"]
        self.seconds, self.skipped = state["seconds"], state["skipped"]


def train_one_epoch(ctx: StepContext, loader, epoch: int, first_step: int, callbacks: Sequence = (),
                    refresh: int = 20, accum: EpochAccum | None = None, on_nonfinite: str = "stop",
                    on_step: Callable[[int, EpochAccum], None] | None = None,
                    on_first_batch: Callable[[], None] | None = None) -> EpochOutput:
    """Train for one pass over ``loader`` (or the rest of it, continuing ``accum`` after a resume).

    Each callback's ``on_train_batch(epoch, batch, logits1, logits2)`` gets the batch and its detached
    logits from this (training, dropout-on) forward pass; ``on_step(step, accum)`` runs after every
    optimiser step (checkpoints, interrupts). A non-finite loss or gradient norm raises :class:`NonFinite`
    (``on_nonfinite="stop"``) or drops that optimiser step and counts it (``"skip"``); checking it costs
    one device→host sync per batch. ``on_first_batch()`` runs once the loader's iterator exists, before the
    first forward pass (a resumed epoch restores its RNG snapshot there: creating the iterator draws from it).
    """
    accelerator, model, loss_fn, objective, awp = ctx.accelerator, ctx.model, ctx.loss_fn, ctx.objective, ctx.awp
    awp = awp if awp is not None and awp.active(epoch) else None
    optimizer, scheduler = ctx.optimizer, ctx.scheduler
    model.train()
    device = accelerator.device
    acc = accum or EpochAccum(device)
    step = first_step
    poisoned = False  # a non-finite micro-batch inside the current accumulation window (skip mode)
    t0 = time.perf_counter()
    # disable=None: no bar when stdout is not a terminal (dvc repro > log, CI); the epoch line still prints
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, initial=acc.batches,
               total=acc.batches + len(loader) if hasattr(loader, "__len__") else None,
               disable=None if accelerator.is_local_main_process else True)
    for i, batch in enumerate(bar, start=acc.batches):
        if on_first_batch is not None:
            on_first_batch()
            on_first_batch = None
        with accelerator.accumulate(model):
            logits1, logits2, out = objective(model, batch)
            accelerator.backward(out["total"])
            if awp is not None:  # a second pass at adversarially perturbed weights, gradients added
                awp.perturb()
                accelerator.backward(objective(model, batch)[2]["total"])
                awp.restore()
            gn = torch.tensor(float("nan"), device=device)
            if accelerator.sync_gradients:
                gn = accelerator.clip_grad_norm_(model.parameters(), ctx.max_grad_norm).detach().float()
            finite = torch.isfinite(out["total"].detach()) & (torch.isfinite(gn) | ~torch.tensor(
                accelerator.sync_gradients, device=device))
            bad = not bool(finite.item())
            if bad and on_nonfinite == "stop":
                raise NonFinite({"epoch": epoch, "step": step + 1, "batch": i, "rows": batch["index"].tolist(),
                                 "loss_total": float(out["total"].detach()), "grad_norm": float(gn),
                                 "lr": [float(x) for x in scheduler.get_last_lr()],
                                 "steps": _log_rows(epoch, acc.step_rows)})
            poisoned = poisoned or bad
            if accelerator.sync_gradients and poisoned:
                optimizer.zero_grad(set_to_none=True)  # drop this optimiser step
                acc.skipped += 1
            else:
                if accelerator.sync_gradients:
                    acc.grad_norms.append(gn)
                optimizer.step()     # Accelerate's wrappers only step on the window's last micro-batch
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        acc.batches += 1
        if bad:
            if accelerator.sync_gradients:
                poisoned = False
            continue
        if accelerator.sync_gradients:
            if not poisoned:
                step += 1
            poisoned = False
        acc.losses.add(out)
        logits1, logits2 = logits1.detach(), logits2.detach()
        for cb in callbacks:
            cb.on_train_batch(epoch, batch, logits1, logits2)
        acc.counts += _counts(logits1, logits2, batch["labels_binary"], batch["labels_category"])
        acc.n_rows += batch["input_ids"].shape[0]
        lr = scheduler.get_last_lr()[0]
        acc.step_rows.append(torch.stack([torch.tensor(float(step), device=device), out["task1"].detach(),
                                          out["task2"].detach(), out["total"].detach(), gn,
                                          torch.tensor(lr, device=device)]))
        if refresh and i % refresh == 0 and not bar.disable:
            bar.set_postfix(loss=f"{out['total'].item():.4f}")
        if accelerator.sync_gradients and on_step is not None:
            acc.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            on_step(step, acc)
    bar.close()
    acc.seconds += time.perf_counter() - t0
    counts, sums = acc.counts, acc.losses.sums
    if accelerator.num_processes > 1:  # epoch metrics over every process's rows
        counts = accelerator.reduce(counts, "sum")
        sums = accelerator.reduce(sums, "sum")
    c1, n1, c2, n2 = counts.tolist()
    loss = loss_fn.combine(sums.tolist())
    gns = torch.stack(acc.grad_norms).tolist() if acc.grad_norms else [float("nan")]
    metrics = {
        **{f"train_loss_{term}": loss[term] for term in LOSS_TERMS + TRAIN_ONLY_TERMS},
        "train_acc_task1": c1 / n1 if n1 else float("nan"), "train_acc_task2": c2 / n2 if n2 else float("nan"),
        "lr": float(scheduler.get_last_lr()[0]),
        "grad_norm_mean": float(np.mean(gns)), "grad_norm_max": float(np.max(gns)),
        "epoch_seconds": acc.seconds,
        "train_samples_per_second": acc.n_rows * accelerator.num_processes / max(acc.seconds, 1e-9),
    }
    return EpochOutput(metrics, _log_rows(epoch, acc.step_rows), step, acc.skipped)


def _log_rows(epoch: int, step_rows: list[torch.Tensor]) -> list[dict]:
    rows = torch.stack(step_rows).tolist() if step_rows else []
    return [{"epoch": epoch, "step": int(r[0]), "loss_task1": r[1], "loss_task2": r[2], "loss_total": r[3],
             "grad_norm": None if math.isnan(r[4]) else r[4], "lr": r[5]} for r in rows]


@torch.inference_mode()
def predict(accelerator, model, loader, n_rows: int, desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Logits of both heads for every row of the loader's dataset, in dataset order (float32, CPU)."""
    model.eval()
    bar = tqdm(loader, desc=desc, unit="batch", leave=False,
               disable=None if accelerator.is_local_main_process else True)
    chunks1, chunks2, idx = [], [], []
    for batch in bar:
        logits1, logits2 = model(batch["input_ids"], batch["attention_mask"])
        if accelerator.num_processes > 1:  # batches differ in size across processes: pad, gather, drop pads
            logits1, logits2 = (accelerator.pad_across_processes(x.float().contiguous(), dim=0)
                                for x in (logits1, logits2))
            ix = accelerator.pad_across_processes(batch["index"], dim=0, pad_index=-1)
            logits1, logits2, ix = accelerator.gather((logits1, logits2, ix))
        else:
            ix = batch["index"]
        chunks1.append(logits1.float())
        chunks2.append(logits2.float())
        idx.append(ix)
    index = torch.cat(idx).cpu().numpy()
    keep = index >= 0  # rows repeated to even out the last batches write the same values again
    index = index[keep]
    a1, a2 = torch.cat(chunks1).cpu().numpy()[keep], torch.cat(chunks2).cpu().numpy()[keep]
    out1 = np.zeros((n_rows, a1.shape[1]), np.float32)
    out2 = np.zeros((n_rows, a2.shape[1]), np.float32)
    out1[index], out2[index] = a1, a2
    return out1, out2
