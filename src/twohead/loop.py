"""One training epoch and one prediction pass, on Accelerate (so `accelerate launch` gives DDP).

Host syncs are kept out of the step: losses, accuracy counts and gradient norms accumulate in device
tensors and are read once per epoch (the progress bar's loss is refreshed every ``refresh`` steps).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import IGNORE, LossAccumulator, TwoTaskLoss
from .schema import LOSS_TERMS


def _counts(logits1, logits2, y1, y2) -> torch.Tensor:
    v1, v2 = (y1 != IGNORE), (y2 != IGNORE)
    c1 = ((logits1.argmax(-1) == y1) & v1).sum()
    c2 = ((logits2.argmax(-1) == y2) & v2).sum()
    return torch.stack([c1, v1.sum(), c2, v2.sum()]).float()


@dataclass
class TrainParts:
    """What one optimisation step needs, prepared by Accelerate."""

    accelerator: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: TwoTaskLoss
    max_grad_norm: float


@dataclass
class EpochOutput:
    figures: dict[str, float]   # train losses/accuracies, lr, grad norms, timings (keys in twohead.schema)
    steps: list[dict]           # one row per batch for logs/steps.jsonl
    last_step: int              # optimiser steps done so far (across epochs)


def train_one_epoch(parts: TrainParts, loader, epoch: int, first_step: int, callbacks: Sequence = (),
                    refresh: int = 20) -> EpochOutput:
    """Train for one pass over ``loader``. Each callback's ``on_train_batch(epoch, batch, logits1, logits2)``
    gets the batch and its detached logits from this (training, dropout-on) forward pass."""
    accelerator, model, loss_fn = parts.accelerator, parts.model, parts.loss_fn
    optimizer, scheduler = parts.optimizer, parts.scheduler
    model.train()
    device = accelerator.device
    losses = LossAccumulator(device)
    counts = torch.zeros(4, device=device)
    step_rows: list[torch.Tensor] = []  # [step, loss1, loss2, total, grad_norm(or nan), lr]
    grad_norms: list[torch.Tensor] = []
    n_rows = 0
    step = first_step
    t0 = time.perf_counter()
    # disable=None: no bar when stdout is not a terminal (dvc repro > log, CI); the epoch line still prints
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False,
               disable=None if accelerator.is_local_main_process else True)
    for i, batch in enumerate(bar):
        with accelerator.accumulate(model):
            logits1, logits2 = model(batch["input_ids"], batch["attention_mask"])
            out = loss_fn.parts(logits1, logits2, batch["labels_binary"], batch["labels_category"])
            accelerator.backward(out["total"])
            gn = torch.tensor(float("nan"), device=device)
            if accelerator.sync_gradients:
                gn = accelerator.clip_grad_norm_(model.parameters(), parts.max_grad_norm).detach().float()
                grad_norms.append(gn)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            step += 1
        losses.add(out)
        logits1, logits2 = logits1.detach(), logits2.detach()
        for cb in callbacks:
            cb.on_train_batch(epoch, batch, logits1, logits2)
        counts += _counts(logits1, logits2, batch["labels_binary"], batch["labels_category"])
        n_rows += batch["input_ids"].shape[0]
        lr = scheduler.get_last_lr()[0]
        step_rows.append(torch.stack([torch.tensor(float(step), device=device), out["task1"].detach(),
                                      out["task2"].detach(), out["total"].detach(), gn,
                                      torch.tensor(lr, device=device)]))
        if refresh and i % refresh == 0 and not bar.disable:
            bar.set_postfix(loss=f"{out['total'].item():.4f}")
    bar.close()
    seconds = time.perf_counter() - t0
    if accelerator.num_processes > 1:  # epoch figures over every process's rows
        counts = accelerator.reduce(counts, "sum")
        losses.sums = accelerator.reduce(losses.sums, "sum")
    c1, n1, c2, n2 = counts.tolist()
    loss = losses.result(loss_fn)
    gns = torch.stack(grad_norms).tolist() if grad_norms else [float("nan")]
    figures = {
        **{f"train_loss_{term}": loss[term] for term in LOSS_TERMS},
        "train_acc_task1": c1 / n1 if n1 else float("nan"), "train_acc_task2": c2 / n2 if n2 else float("nan"),
        "lr": float(scheduler.get_last_lr()[0]),
        "grad_norm_mean": float(np.mean(gns)), "grad_norm_max": float(np.max(gns)),
        "epoch_seconds": seconds, "train_samples_per_second": n_rows * accelerator.num_processes / seconds,
    }
    rows = torch.stack(step_rows).tolist() if step_rows else []
    log = [{"epoch": epoch, "step": int(r[0]), "loss_task1": r[1], "loss_task2": r[2], "loss_total": r[3],
            "grad_norm": None if math.isnan(r[4]) else r[4], "lr": r[5]} for r in rows]
    return EpochOutput(figures, log, step)


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
