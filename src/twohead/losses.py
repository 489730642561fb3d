"""Masked, class-weighted cross-entropy per task, and the total L = λ1·L1 + λ2·L2.

For one task with logits z, labels y (-100 = no label), class weights w and smoothing ε over K classes,
row i with a label contributes

    ℓ_i = (1 − ε) · (−log p_{i,y_i}) + ε · mean_c(−log p_{i,c})          (label-smoothed CE)

and the task loss over a batch is the class-weighted mean over the *labelled* rows:

    L = Σ_i m_i · w_{y_i} · ℓ_i / max(Σ_i m_i · w_{y_i}, tiny)             (m_i = 1 if row i has a label)

* The smoothing term is weighted by the **target's** weight only. PyTorch's
  ``cross_entropy(weight=…, label_smoothing=…)`` instead weights each class's share of the smoothing
  mass by that class's own weight, which pushes the smoothed mass toward rare (high-weight) classes;
  we do not want that with clipped inverse-frequency weights over many classes. With ε = 0 the two
  agree exactly (tested).
* Normalisation is PyTorch's weighted mean over the labelled rows of the batch (or of the whole
  split, for epoch-level figures: :class:`LossAccumulator` keeps numerator and denominator).
  A batch with no label for a task gives exactly 0 for it (not NaN) and finite gradients.
* Masks are applied by multiplication, never by boolean indexing, so there is no device→host sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100


def masked_ce_parts(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, smoothing: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator Σ m·w·ℓ and denominator Σ m·w of the task loss (both 0-dim float32 tensors)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    valid = labels != IGNORE
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    per_row = nll if smoothing == 0 else (1.0 - smoothing) * nll + smoothing * (-logp.mean(dim=-1))
    w = weight[safe] * valid.to(logp.dtype)
    return (w * per_row).sum(), w.sum()


def masked_ce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, smoothing: float) -> torch.Tensor:
    num, den = masked_ce_parts(logits, labels, weight, smoothing)
    return num / den.clamp_min(torch.finfo(num.dtype).tiny)


@dataclass
class TwoTaskLoss:
    """The Stage-2 objective. Weights must already be float32 tensors on the training device."""

    weight_task1: torch.Tensor
    weight_task2: torch.Tensor
    lambda_task1: float
    lambda_task2: float
    smoothing_task1: float = 0.0
    smoothing_task2: float = 0.1

    def parts(self, logits1, logits2, y1, y2) -> dict[str, torch.Tensor]:
        n1, d1 = masked_ce_parts(logits1, y1, self.weight_task1, self.smoothing_task1)
        n2, d2 = masked_ce_parts(logits2, y2, self.weight_task2, self.smoothing_task2)
        tiny = torch.finfo(n1.dtype).tiny
        l1, l2 = n1 / d1.clamp_min(tiny), n2 / d2.clamp_min(tiny)
        total = self.lambda_task1 * l1 + self.lambda_task2 * l2
        return {"total": total, "task1": l1, "task2": l2, "num1": n1, "den1": d1, "num2": n2, "den2": d2}


class LossAccumulator:
    """Epoch-level task losses: Σ numerators / Σ denominators, kept on the device until read."""

    def __init__(self, device):
        self.sums = torch.zeros(4, dtype=torch.float32, device=device)

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        self.sums += torch.stack([parts["num1"], parts["den1"], parts["num2"], parts["den2"]]).detach().float()

    def result(self, lambda_task1: float, lambda_task2: float) -> dict[str, float]:
        n1, d1, n2, d2 = self.sums.tolist()
        l1 = n1 / d1 if d1 > 0 else 0.0
        l2 = n2 / d2 if d2 > 0 else 0.0
        return {"task1": l1, "task2": l2, "total": lambda_task1 * l1 + lambda_task2 * l2}
