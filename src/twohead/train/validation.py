"""The per-epoch val figures of a run: the training objective over the whole split and the sklearn metrics,
under the history's column names (:mod:`twohead.config.schema`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config.schema import LOSS_TERMS, VAL_METRICS
from ..evaluate.metrics import task1_metrics, task2_metrics
from .losses import SUM_KEYS, TwoTaskLoss


def val_metrics(logits1: np.ndarray, logits2: np.ndarray, y1: np.ndarray, y2: np.ndarray, loss_fn: TwoTaskLoss,
                prefix: str = "val") -> dict[str, float]:
    """Loss (the training objective, over the whole split) and metrics of one split's logits, keyed
    ``<prefix>_<history column>``."""
    cpu_loss = dataclasses.replace(loss_fn, weight_task1=loss_fn.weight_task1.cpu(),
                                   weight_task2=loss_fn.weight_task2.cpu(),
                                   log_vars=None if loss_fn.log_vars is None else loss_fn.log_vars.detach().cpu())
    with torch.no_grad():
        terms = cpu_loss.terms(*(torch.from_numpy(a) for a in (logits1, logits2, y1, y2)))
    loss = cpu_loss.combine([float(terms[k]) for k in SUM_KEYS])
    found = {**task1_metrics(y1, logits1.argmax(1)), **task2_metrics(y2, logits2.argmax(1))}
    return {**{f"{prefix}_loss_{t}": loss[t] for t in LOSS_TERMS},
            **{f"{prefix}_{column}": found[name] for name, column in VAL_METRICS.items()}}
