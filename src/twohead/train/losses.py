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

from ..data.labels import IGNORE
from .run_config import RunConfig


def masked_ce_sums(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, smoothing: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator Σ m·w·ℓ and denominator Σ m·w of the task loss (both 0-dim float32 tensors)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    valid = labels != IGNORE
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    per_row = nll if smoothing == 0 else (1.0 - smoothing) * nll + smoothing * (-logp.mean(dim=-1))
    w = weight[safe] * valid.to(logp.dtype)
    return (w * per_row).sum(), w.sum()


def hier_sums(logits1: torch.Tensor, logits2: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, kind: str,
               detach: str = "none") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums and row counts of the two hierarchy terms (see :class:`TwoTaskLoss`); ``detach="task1"`` stops
    the consistency term's gradient through P(Pick), so only Task2 is pulled."""
    logp1 = F.log_softmax(logits1.float(), dim=-1)
    logp2 = F.log_softmax(logits2.float(), dim=-1)
    both = ((y1 == 1) & (y2 != IGNORE)).to(logp2.dtype)
    safe = torch.where(y2 != IGNORE, y2, torch.zeros_like(y2))
    log_pick = logp1[:, 1].detach() if detach == "task1" else logp1[:, 1]
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

        L_hier = pick_consistency_weight · mean_{rows with Pick and a category} h_i
               + decline_uniform_weight · mean_{Decline rows} KL(uniform ‖ softmax(z2_i))

    where h_i = (log P(Pick) − log P2(gold))² for ``l2`` or KL(Bern(P(Pick)) ‖ Bern(P2(gold))) for
    ``kl`` (``pick_consistency_type``); both heads receive its gradient. With both weights 0 the terms are not
    computed at all, so the loss is bit-identical to the plain recipe.
    """

    weight_task1: torch.Tensor
    weight_task2: torch.Tensor
    lambda_task1: float
    lambda_task2: float
    label_smoothing_task1: float = 0.0
    label_smoothing: float = 0.1             # Task2's
    pick_consistency_weight: float = 0.0
    pick_consistency_type: str = "l2"
    decline_uniform_weight: float = 0.0
    pick_consistency_detach: str = "none"
    task_weighting: str = "fixed"            # fixed | uncertainty
    log_vars: torch.Tensor | None = None     # uncertainty: the model's learned s_t = log σ_t² (2 values)
    rdrop_alpha: float = 0.0                 # the R-Drop term's weight (its sums come from :func:`rdrop_sums`)

    @property
    def hier_on(self) -> bool:
        return self.pick_consistency_weight > 0 or self.decline_uniform_weight > 0

    @property
    def uncertainty(self) -> bool:
        return self.task_weighting == "uncertainty"

    def _weighted(self, l1, l2, s):
        """λ1·L1 + λ2·L2, or with uncertainty weighting Σ_{t: λ_t > 0} exp(−s_t)·L_t + ½·s_t."""
        if not self.uncertainty:
            return self.lambda_task1 * l1 + self.lambda_task2 * l2
        exp = torch.exp if torch.is_tensor(s) else math.exp
        total = 0.0
        for t, (lam, lt) in enumerate(((self.lambda_task1, l1), (self.lambda_task2, l2))):
            if lam > 0:
                total = total + exp(-s[t]) * lt + 0.5 * s[t]
        return total

    def sigmas(self) -> tuple[float, float]:
        """σ_t = exp(s_t / 2) of each task (1 with fixed weighting: s ≡ 0)."""
        if not self.uncertainty or self.log_vars is None:
            return 1.0, 1.0
        s = self.log_vars.detach().float().cpu().tolist()
        return math.exp(s[0] / 2), math.exp(s[1] / 2)

    def terms(self, logits1, logits2, y1, y2) -> dict[str, torch.Tensor]:
        """The batch's loss terms (``total``, ``task1``, ``task2``, ``hier``, ``rdrop``) and the numerator / denominator
        of each (:data:`SUM_KEYS`), so that epoch losses are exact sums over batches."""
        n1, d1 = masked_ce_sums(logits1, y1, self.weight_task1, self.label_smoothing_task1)
        n2, d2 = masked_ce_sums(logits2, y2, self.weight_task2, self.label_smoothing)
        tiny = torch.finfo(n1.dtype).tiny
        l1, l2 = n1 / d1.clamp_min(tiny), n2 / d2.clamp_min(tiny)
        total = self._weighted(l1, l2, self.log_vars.float() if self.uncertainty else None)
        out = {"task1": l1, "task2": l2, "task1_num": n1, "task1_den": d1, "task2_num": n2, "task2_den": d2}
        if self.hier_on:
            pn, pd, dn, dd = hier_sums(logits1, logits2, y1, y2, self.pick_consistency_type,
                                       self.pick_consistency_detach)
            hier = (self.pick_consistency_weight * pn / pd.clamp_min(1.0)
                    + self.decline_uniform_weight * dn / dd.clamp_min(1.0))
            total = total + hier
        else:
            pn = pd = dn = dd = hier = torch.zeros((), device=n1.device)
        zero = torch.zeros((), device=n1.device)
        out.update({"total": total, "hier": hier, "pick_consistency_num": pn, "pick_consistency_den": pd,
                    "decline_uniform_num": dn, "decline_uniform_den": dd, "rdrop": zero,
                    **dict.fromkeys(SUM_KEYS[-4:], zero)})
        return out

    def add_rdrop(self, out: dict[str, torch.Tensor], rd: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """``out`` with the R-Drop term α·(λ1·KL1 + λ2·KL2) added to the total (sums from :func:`rdrop_sums`)."""
        n1, d1, n2, d2 = rd
        tiny = torch.finfo(n1.dtype).tiny
        term = self.rdrop_alpha * (self.lambda_task1 * n1 / d1.clamp_min(tiny)
                                   + self.lambda_task2 * n2 / d2.clamp_min(tiny))
        return {**out, "total": out["total"] + term, "rdrop": term, "rdrop_task1_num": n1, "rdrop_task1_den": d1,
                "rdrop_task2_num": n2, "rdrop_task2_den": d2}

    def combine(self, sums: list[float]) -> dict[str, float]:
        """Epoch-level losses from summed terms (numerators over denominators, in :data:`SUM_KEYS` order)."""
        s = dict(zip(SUM_KEYS, sums))

        def ratio(term: str) -> float:
            return s[f"{term}_num"] / s[f"{term}_den"] if s[f"{term}_den"] > 0 else 0.0

        l1, l2 = ratio("task1"), ratio("task2")
        hier = 0.0
        if self.hier_on:
            hier = (self.pick_consistency_weight * ratio("pick_consistency")
                    + self.decline_uniform_weight * ratio("decline_uniform"))
        rdrop = 0.0
        if self.rdrop_alpha > 0:
            rdrop = self.rdrop_alpha * (self.lambda_task1 * ratio("rdrop_task1")
                                        + self.lambda_task2 * ratio("rdrop_task2"))
        s = self.log_vars.detach().float().cpu().tolist() if self.uncertainty else None
        return {"task1": l1, "task2": l2, "hier": hier, "rdrop": rdrop,
                "total": self._weighted(l1, l2, s) + hier + rdrop}


def rdrop_sums(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor, y1: torch.Tensor,
                y2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """R-Drop (Liang et al., 2021): per task, Σ over rows labelled for that task of the symmetric KL
    ½·(KL(p_a ‖ p_b) + KL(p_b ‖ p_a)) between two dropout passes' softmaxes, and the row count."""
    out = []
    for a, b, y in ((a1, b1, y1), (a2, b2, y2)):
        la, lb = F.log_softmax(a.float(), dim=-1), F.log_softmax(b.float(), dim=-1)
        sym = 0.5 * ((la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1))
        m = (y != IGNORE).to(sym.dtype)
        out += [(sym * m).sum(), m.sum()]
    return tuple(out)


#: Summed per batch and per epoch: numerator and denominator of each term, so epoch losses are exact.
SUM_KEYS = ("task1_num", "task1_den", "task2_num", "task2_den", "pick_consistency_num", "pick_consistency_den",
            "decline_uniform_num", "decline_uniform_den", "rdrop_task1_num", "rdrop_task1_den", "rdrop_task2_num",
            "rdrop_task2_den")


class LossAccumulator:
    """Epoch-level losses: Σ numerators / Σ denominators per term, kept on the device until read."""

    def __init__(self, device):
        self.sums = torch.zeros(len(SUM_KEYS), dtype=torch.float32, device=device)

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        self.sums += torch.stack([terms[k].float() for k in SUM_KEYS]).detach()


def loss_for_run(cfg: RunConfig, weight_task1: torch.Tensor, weight_task2: torch.Tensor,
                 log_vars: torch.Tensor | None = None) -> TwoTaskLoss:
    """The run's loss, every setting passed by its params name (``loss.*``, then the switches, off by default).
    Weights must already be float32 on the training device (MPS has no float64)."""
    loss, sw = cfg.loss, cfg.switches
    uncertainty = sw.task_weighting == "uncertainty"
    if uncertainty and log_vars is None:
        raise ValueError("uncertainty weighting needs the model's loss_log_vars (TwoHeadModel.add_loss_log_vars)")
    return TwoTaskLoss(
        weight_task1, weight_task2,
        lambda_task1=loss.lambda_task1,
        lambda_task2=loss.lambda_task2,
        label_smoothing=loss.label_smoothing,                    # Task2's
        label_smoothing_task1=loss.label_smoothing_task1,
        # the switches (off = the plain recipe)
        task_weighting=sw.task_weighting,
        log_vars=log_vars if uncertainty else None,
        pick_consistency_weight=sw.pick_consistency_weight,
        pick_consistency_type=sw.pick_consistency_type,
        pick_consistency_detach=sw.pick_consistency_detach,
        decline_uniform_weight=sw.decline_uniform_weight,
        rdrop_alpha=sw.rdrop_alpha,
    )
