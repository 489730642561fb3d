"""Weight averaging during Stage 2, chosen on val: an exponential moving average (EMA) of the weights next to the
raw ones, each scored on val after every epoch (one more val pass per average, no extra training pass), and
``train.keep`` choosing among raw and averaged weights by val Task2 accuracy.

Averaging the weights of the last stretch of fine-tuning is reported to improve generalisation of fine-tuned
pretrained encoders at no training cost (Lu et al., Findings of EMNLP 2022; SWA / EMA). The averages are
``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(decay)`` (buffers averaged too), updated after
every optimiser step; they are run state (saved and resumed with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


def name_of(decay: float) -> str:
    return f"ema{decay:g}"


@dataclass
class Candidate:
    name: str
    model: torch.nn.Module             # the AveragedModel (its .module is a TwoHeadModel)
    val: list[dict] = field(default_factory=list)   # per epoch: epoch, val_acc_task2, val_macro_f1_task2, val_loss
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict | None = None


class WeightAverages:
    """The EMAs of ``decays`` of ``raw_model``'s weights."""

    def __init__(self, raw_model: torch.nn.Module, decays: list[float]):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.candidates = [Candidate(name_of(d), AveragedModel(raw_model, multi_avg_fn=get_ema_multi_avg_fn(d),
                                                               use_buffers=True)) for d in decays]
        self.raw = raw_model

    def __bool__(self) -> bool:
        return bool(self.candidates)

    @torch.no_grad()
    def update(self) -> None:
        for c in self.candidates:
            c.model.update_parameters(self.raw)

    def record(self, c: Candidate, epoch: int, row: dict, keep: str) -> None:
        c.val.append({"epoch": epoch, **{k: row[k] for k in ("val_acc_task2", "val_macro_f1_task2",
                                                             "val_loss_total")}})
        score = row["val_acc_task2"]
        if score > c.best_score:   # NaN never wins
            c.best_score, c.best_epoch = score, epoch
            if keep == "best":
                c.best_state = {k: v.detach().to("cpu", copy=True) for k, v in c.model.module.state_dict().items()}

    def choose(self, keep: str, raw_score: float, raw_epoch: int) -> tuple[str, int, dict | None]:
        """(name, epoch, weights or None for the raw ones) of the kept candidate: the highest val Task2 accuracy
        among the raw weights and each average — at the last epoch (keep: last) or at each one's best epoch
        (keep: best); ties keep the raw weights."""
        best = ("raw", raw_epoch, None, raw_score)
        for c in self.candidates:
            if not c.val:
                continue
            if keep == "best":
                cand = (c.name, c.best_epoch, c.best_state, c.best_score)
            else:
                cand = (c.name, c.val[-1]["epoch"],
                        {k: v.detach().to("cpu", copy=True) for k, v in c.model.module.state_dict().items()},
                        c.val[-1]["val_acc_task2"])
            if cand[3] > best[3] + 1e-12:
                best = cand
        return best[:3]

    def state_dict(self) -> list[dict]:
        return [{"name": c.name, "weights": {k: v.cpu() for k, v in c.model.state_dict().items()}, "val": c.val,
                 "best_score": c.best_score, "best_epoch": c.best_epoch, "best_state": c.best_state}
                for c in self.candidates]

    def load_state_dict(self, saved: list[dict]) -> None:
        if [s["name"] for s in saved] != [c.name for c in self.candidates]:
            raise ValueError("the saved weight averages are not this run's (switches.ema changed)")
        for c, s in zip(self.candidates, saved):
            c.model.load_state_dict(s["weights"])
            c.val, c.best_score, c.best_epoch, c.best_state = s["val"], s["best_score"], s["best_epoch"], \
                s["best_state"]

    def summary(self, kept: str, kept_epoch: int) -> dict:
        return {"kept": kept, "kept_epoch": kept_epoch,
                "candidates": {c.name: {"val": c.val, "best_epoch": c.best_epoch, "best_val_acc_task2": c.best_score}
                               for c in self.candidates}}
