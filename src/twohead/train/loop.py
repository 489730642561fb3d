"""One training epoch and one prediction pass, on Accelerate (so `accelerate launch` gives DDP).

Host syncs are kept out of the step: losses, accuracy counts and gradient norms accumulate in device
tensors and are read once per epoch (the progress bar's loss is refreshed every ``refresh`` steps).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config.schema import LOSS_TERMS, TRAIN_ONLY_TERMS
from .losses import IGNORE, LossAccumulator, TwoTaskLoss
from .step import StepContext, train_step


def _counts(logits1, logits2, y1, y2) -> torch.Tensor:
    v1, v2 = (y1 != IGNORE), (y2 != IGNORE)
    c1 = ((logits1.argmax(-1) == y1) & v1).sum()
    c2 = ((logits2.argmax(-1) == y2) & v2).sum()
    return torch.stack([c1, v1.sum(), c2, v2.sum()]).float()


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
        self.shapes: set[tuple[int, int]] = set()  # distinct (rows, length) input shapes seen this epoch

    def state_dict(self) -> dict:
        return {"sums": self.losses.sums.cpu(), "counts": self.counts.cpu(),
                "step_rows": [r.cpu() for r in self.step_rows], "grad_norms": [g.cpu() for g in self.grad_norms],
                "n_rows": self.n_rows, "batches": self.batches, "seconds": self.seconds, "skipped": self.skipped,
                "shapes": [list(s) for s in sorted(self.shapes)]}

    def record(self, st, batch: dict, step: int, lr: float) -> None:
        """A finite micro-batch's losses, accuracy counts and step-log row (device tensors: no host sync)."""
        device = self.counts.device
        out = st.out
        self.losses.add(out)
        self.counts += _counts(st.logits1.detach(), st.logits2.detach(), batch["labels_task1"],
                               batch["labels_task2"])
        self.n_rows += batch["input_ids"].shape[0]
        self.step_rows.append(torch.stack([torch.tensor(float(step), device=device), out["task1"].detach(),
                                           out["task2"].detach(), out["total"].detach(), st.grad_norm,
                                           torch.tensor(lr, device=device)]))

    def metrics(self, accelerator, loss_fn: TwoTaskLoss, lr: float) -> dict[str, float]:
        """The epoch's training figures (over every process's rows; the one host read of the epoch)."""
        counts, sums = self.counts, self.losses.sums
        if accelerator.num_processes > 1:
            counts = accelerator.reduce(counts, "sum")
            sums = accelerator.reduce(sums, "sum")
        c1, n1, c2, n2 = counts.tolist()
        loss = loss_fn.combine(sums.tolist())
        gns = torch.stack(self.grad_norms).tolist() if self.grad_norms else [float("nan")]
        return {
            **{f"train_loss_{term}": loss[term] for term in LOSS_TERMS + TRAIN_ONLY_TERMS},
            "train_acc_task1": c1 / n1 if n1 else float("nan"), "train_acc_task2": c2 / n2 if n2 else float("nan"),
            "lr": float(lr), "grad_norm_mean": float(np.mean(gns)), "grad_norm_max": float(np.max(gns)),
            "epoch_seconds": self.seconds,
            "train_samples_per_second": self.n_rows * accelerator.num_processes / max(self.seconds, 1e-9),
            "train_shapes": len(self.shapes),
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.counts.device
        self.losses.sums = state["sums"].to(device)
        self.counts = state["counts"].to(device)
        self.step_rows = [r.to(device) for r in state["step_rows"]]
        self.grad_norms = [g.to(device) for g in state["grad_norms"]]
        self.n_rows, self.batches = state["n_rows"], state["batches"]
        self.seconds, self.skipped = state["seconds"], state["skipped"]
        self.shapes = {(int(a), int(b)) for a, b in state["shapes"]}


def train_one_epoch(ctx: StepContext, loader, epoch: int, first_step: int, callbacks: Sequence = (),
                    refresh: int = 20, accum: EpochAccum | None = None, on_nonfinite: str = "stop",
                    on_step: Callable[[int, EpochAccum], None] | None = None,
                    on_first_batch: Callable[[], None] | None = None) -> EpochOutput:
    """Train for one pass over ``loader`` (or the rest of it, continuing ``accum`` after a resume).

    Each callback's ``on_train_batch(epoch, batch, logits1, logits2)`` gets the batch and its detached
    logits from this (training, dropout-on) forward pass; ``on_step(step, accum)`` runs after every
    optimiser step (checkpoints, interrupts). A non-finite loss or gradient norm raises :class:`NonFinite`
    (``on_nonfinite="stop"``) or drops that optimiser step and counts it (``"skip"``): :func:`train_step`'s guard.
    ``on_first_batch()`` runs once the loader's iterator exists, before the first forward pass (a resumed epoch
    restores its RNG snapshot there: creating the iterator draws from it).
    """
    accelerator = ctx.accelerator
    awp = ctx.awp if ctx.awp is not None and ctx.awp.active(epoch) else None
    ctx.model.train()
    acc = accum or EpochAccum(accelerator.device)
    step, window_bad = first_step, False  # window_bad: a non-finite micro-batch earlier in this accumulation window
    t0 = time.perf_counter()
    # disable=None: no bar when stdout is not a terminal (dvc repro > log, CI); the epoch line still prints
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, initial=acc.batches,
               total=acc.batches + len(loader) if hasattr(loader, "__len__") else None,
               disable=None if accelerator.is_local_main_process else True)
    for i, batch in enumerate(bar, start=acc.batches):
        if on_first_batch is not None:
            on_first_batch()
            on_first_batch = None
        acc.shapes.add(tuple(batch["input_ids"].shape))
        st = train_step(ctx, batch, awp, window_bad, stop_if_bad=on_nonfinite == "stop")
        if st.bad and on_nonfinite == "stop":
            raise NonFinite({"epoch": epoch, "step": step + 1, "batch": i, "rows": batch["index"].tolist(),
                             "loss_total": float(st.out["total"].detach()), "grad_norm": float(st.grad_norm),
                             "lr": [float(x) for x in ctx.scheduler.get_last_lr()],
                             "steps": _log_rows(epoch, acc.step_rows)})
        acc.batches += 1
        acc.skipped += int(st.sync and not st.applied)
        window_bad = (window_bad or st.bad) and not st.sync
        if st.applied:
            acc.grad_norms.append(st.grad_norm)
            step += 1
        if st.bad:
            continue
        acc.record(st, batch, step, ctx.scheduler.get_last_lr()[0])
        for cb in callbacks:
            cb.on_train_batch(epoch, batch, st.logits1.detach(), st.logits2.detach())
        if refresh and i % refresh == 0 and not bar.disable:
            bar.set_postfix(loss=f"{st.out['total'].item():.4f}")
        if st.sync and on_step is not None:
            acc.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            on_step(step, acc)
    bar.close()
    acc.seconds += time.perf_counter() - t0
    return EpochOutput(acc.metrics(accelerator, ctx.loss_fn, ctx.scheduler.get_last_lr()[0]),
                       _log_rows(epoch, acc.step_rows), step, acc.skipped)


def _log_rows(epoch: int, step_rows: list[torch.Tensor]) -> list[dict]:
    rows = torch.stack(step_rows).tolist() if step_rows else []
    return [{"epoch": epoch, "step": int(r[0]), "loss_task1": r[1], "loss_task2": r[2], "loss_total": r[3],
             "grad_norm": None if math.isnan(r[4]) else r[4], "lr": r[5]} for r in rows]


@torch.inference_mode()
def predict_logits(accelerator, model, loader, n_rows: int, desc: str = "eval") -> tuple[np.ndarray, np.ndarray]:
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
