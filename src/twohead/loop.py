"""One training epoch and one prediction pass, on Accelerate (so `accelerate launch` gives DDP).

Host syncs are kept out of the step: losses, accuracy counts and gradient norms accumulate in device
tensors and are read once per epoch (the progress bar's loss is refreshed every ``refresh`` steps).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .losses import IGNORE, LossAccumulator, TwoTaskLoss


def _counts(logits1, logits2, y1, y2) -> torch.Tensor:
    v1, v2 = (y1 != IGNORE), (y2 != IGNORE)
    c1 = ((logits1.argmax(-1) == y1) & v1).sum()
    c2 = ((logits2.argmax(-1) == y2) & v2).sum()
    return torch.stack([c1, v1.sum(), c2, v2.sum()]).float()


def train_one_epoch(accelerator, model, loader, loss_fn: TwoTaskLoss, optimizer, scheduler, max_grad_norm: float,
                    epoch: int, first_step: int, refresh: int = 20, recorder=None) -> tuple[dict, list[dict]]:
    """Train for one pass over ``loader``. Returns epoch figures and the per-step log rows.
    ``recorder`` (a :class:`~twohead.cartography.CartographyRecorder`) gets each batch's gold-label
    probabilities from this forward pass."""
    model.train()
    device = accelerator.device
    losses = LossAccumulator(device)
    counts = torch.zeros(4, device=device)
    step_rows: list[torch.Tensor] = []  # [step, loss1, loss2, total, grad_norm(or nan), lr]
    grad_norms: list[torch.Tensor] = []
    n_rows = 0
    step = first_step
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not accelerator.is_local_main_process)
    for i, batch in enumerate(bar):
        with accelerator.accumulate(model):
            logits1, logits2 = model(batch["input_ids"], batch["attention_mask"])
            parts = loss_fn.parts(logits1, logits2, batch["labels_binary"], batch["labels_category"])
            accelerator.backward(parts["total"])
            gn = torch.tensor(float("nan"), device=device)
            if accelerator.sync_gradients:
                gn = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm).detach().float()
                grad_norms.append(gn)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if accelerator.sync_gradients:
            step += 1
        losses.add(parts)
        if recorder is not None:
            recorder.record(epoch - 1, batch["index"], logits1.detach(), logits2.detach(),
                            batch["labels_binary"], batch["labels_category"])
        counts += _counts(logits1.detach(), logits2.detach(), batch["labels_binary"], batch["labels_category"])
        n_rows += batch["input_ids"].shape[0]
        lr = scheduler.get_last_lr()[0]
        step_rows.append(torch.stack([torch.tensor(float(step), device=device), parts["task1"].detach(),
                                      parts["task2"].detach(), parts["total"].detach(), gn,
                                      torch.tensor(lr, device=device)]))
        if refresh and i % refresh == 0:
            bar.set_postfix(loss=f"{parts['total'].item():.4f}")
    bar.close()
    seconds = time.perf_counter() - t0
    if accelerator.num_processes > 1:  # epoch figures over every process's rows
        counts = accelerator.reduce(counts, "sum")
        losses.sums = accelerator.reduce(losses.sums, "sum")
    c1, n1, c2, n2 = counts.tolist()
    loss = losses.result(loss_fn)
    gns = torch.stack(grad_norms).tolist() if grad_norms else [float("nan")]
    figures = {
        "train_loss_total": loss["total"], "train_loss_task1": loss["task1"], "train_loss_task2": loss["task2"],
        "train_loss_hier": loss["hier"],
        "train_acc_task1": c1 / n1 if n1 else float("nan"), "train_acc_task2": c2 / n2 if n2 else float("nan"),
        "lr": float(scheduler.get_last_lr()[0]),
        "grad_norm_mean": float(np.mean(gns)), "grad_norm_max": float(np.max(gns)),
        "epoch_seconds": seconds, "train_samples_per_second": n_rows * accelerator.num_processes / seconds,
        "steps": step,
    }
    rows = torch.stack(step_rows).tolist() if step_rows else []
    log = [{"epoch": epoch, "step": int(r[0]), "loss_task1": r[1], "loss_task2": r[2], "loss_total": r[3],
            "grad_norm": None if math.isnan(r[4]) else r[4], "lr": r[5]} for r in rows]
    return figures, log


@torch.inference_mode()
def predict(accelerator, model, loader, n_rows: int, desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
    """Logits of both heads for every row of the loader's dataset, in dataset order (float32, CPU)."""
    model.eval()
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not accelerator.is_local_main_process)
    chunks1, chunks2, idx = [], [], []
    for batch in bar:
        logits1, logits2 = model(batch["input_ids"], batch["attention_mask"])
        if accelerator.num_processes > 1:  # batches differ in size across processes: pad, gather, drop pads
            logits1, logits2 = (accelerator.pad_across_processes(x.float().contiguous(), dim=0) for x in (logits1, logits2))
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
