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
* The optional hierarchy regulariser is documented on :class:`TwoTaskLoss` (off by default).
* Masks are applied by multiplication, never by boolean indexing, so there is no device→host sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import IGNORE


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


def hier_parts(logits1: torch.Tensor, logits2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, kind: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums and row counts of the two hierarchy terms (see :class:`TwoTaskLoss`)."""
    logp1 = F.log_softmax(logits1.float(), dim=-1)
    logp2 = F.log_softmax(logits2.float(), dim=-1)
    both = ((y1 == 1) & (y2 != IGNORE)).to(logp2.dtype)
    safe = torch.where(y2 != IGNORE, y2, torch.zeros_like(y2))
    log_pick = logp1[:, 1]
    log_gold = logp2.gather(1, safe.unsqueeze(1)).squeeze(1)
    if kind == "l2":
        term = (log_pick - log_gold) ** 2
    else:  # KL(Bernoulli(P(Pick)) || Bernoulli(P(gold category)))
        p, q = log_pick.exp(), log_gold.exp()
        log1m_p = torch.log1p(-p.clamp(max=1 - 1e-7))
        log1m_q = torch.log1p(-q.clamp(max=1 - 1e-7))
        term = p * (log_pick - log_gold) + (1 - p) * (log1m_p - log1m_q)
    decline = (y1 == 0).to(logp2.dtype)
    k = logits2.shape[-1]
    kl_uniform = -math.log(k) - logp2.mean(dim=-1)  # KL(uniform || softmax) = Σ_c (1/K)(log(1/K) − log p_c)
    return (term * both).sum(), both.sum(), (kl_uniform * decline).sum(), decline.sum()


@dataclass
class TwoTaskLoss:
    """The Stage-2 objective. Weights must already be float32 tensors on the training device.

    ``L = λ1·L1 + λ2·L2 + L_hier`` with the optional hierarchy regulariser (off by default)::

        L_hier = hier_pick_weight · mean_{rows with Pick and a category} h_i
               + hier_decline_weight · mean_{Decline rows} KL(uniform ‖ softmax(z2_i))

    where h_i = (log P(Pick) − log P2(gold))² for ``l2`` or KL(Bern(P(Pick)) ‖ Bern(P2(gold))) for
    ``kl``; both heads receive its gradient. With both weights 0 the terms are not computed at all,
    so the loss is bit-identical to the plain recipe.
    """

    weight_task1: torch.Tensor
    weight_task2: torch.Tensor
    lambda_task1: float
    lambda_task2: float
    smoothing_task1: float = 0.0
    smoothing_task2: float = 0.1
    hier_pick_weight: float = 0.0
    hier_pick_type: str = "l2"
    hier_decline_weight: float = 0.0

    @property
    def hier_on(self) -> bool:
        return self.hier_pick_weight > 0 or self.hier_decline_weight > 0

    def parts(self, logits1, logits2, y1, y2) -> dict[str, torch.Tensor]:
        n1, d1 = masked_ce_parts(logits1, y1, self.weight_task1, self.smoothing_task1)
        n2, d2 = masked_ce_parts(logits2, y2, self.weight_task2, self.smoothing_task2)
        tiny = torch.finfo(n1.dtype).tiny
        l1, l2 = n1 / d1.clamp_min(tiny), n2 / d2.clamp_min(tiny)
        total = self.lambda_task1 * l1 + self.lambda_task2 * l2
        out = {"task1": l1, "task2": l2, "num1": n1, "den1": d1, "num2": n2, "den2": d2}
        if self.hier_on:
            hpn, hpd, hdn, hdd = hier_parts(logits1, logits2, y1, y2, self.hier_pick_type)
            hier = (self.hier_pick_weight * hpn / hpd.clamp_min(1.0)
                    + self.hier_decline_weight * hdn / hdd.clamp_min(1.0))
            total = total + hier
        else:
            hpn = hpd = hdn = hdd = hier = torch.zeros((), device=n1.device)
        out.update({"total": total, "hier": hier, "hpn": hpn, "hpd": hpd, "hdn": hdn, "hdd": hdd})
        return out

    def combine(self, sums: list[float]) -> dict[str, float]:
        """Epoch-level losses from summed parts (numerators over denominators, per term)."""
        n1, d1, n2, d2, hpn, hpd, hdn, hdd = sums
        l1 = n1 / d1 if d1 > 0 else 0.0
        l2 = n2 / d2 if d2 > 0 else 0.0
        hier = 0.0
        if self.hier_on:
            hier = (self.hier_pick_weight * (hpn / hpd if hpd > 0 else 0.0)
                    + self.hier_decline_weight * (hdn / hdd if hdd > 0 else 0.0))
        return {"task1": l1, "task2": l2, "hier": hier, "total": self.lambda_task1 * l1 + self.lambda_task2 * l2 + hier}


#: Summed per batch and per epoch: numerator and denominator of each term, so epoch losses are exact.
SUM_KEYS = ("num1", "den1", "num2", "den2", "hpn", "hpd", "hdn", "hdd")


class LossAccumulator:
    """Epoch-level losses: Σ numerators / Σ denominators per term, kept on the device until read."""

    def __init__(self, device):
        self.sums = torch.zeros(len(SUM_KEYS), dtype=torch.float32, device=device)

    def add(self, parts: dict[str, torch.Tensor]) -> None:
        self.sums += torch.stack([parts[k].float() for k in SUM_KEYS]).detach()

    def result(self, loss_fn: TwoTaskLoss) -> dict[str, float]:
        return loss_fn.combine(self.sums.tolist())
