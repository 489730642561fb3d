"""What the switches do to a training step (each off by default; off = the plain recipe, bit for bit). A reader of
the plain recipe can skip this file: :func:`twohead.train.step.forward_and_loss` calls it only when a switch is on.

* :class:`SwitchedForward` — the hook that replaces the plain forward + loss of one batch. With **R-Drop**
  (``switches.rdrop_alpha`` = α > 0; Liang et al., 2021)
  the batch is run twice in one forward (rows concatenated, so each copy gets its own dropout masks; one
  forward keeps DDP happy), the CE is the mean over both passes, and α·(λ1·KL1 + λ2·KL2) is added, KL_t the
  symmetric KL between the passes' softmaxes averaged over the rows labelled for task t. With
  **multi-sample dropout** (``switches.msd_samples`` = K > 1; Inoue, 2019) the pooled vector gets K dropout
  masks and the *losses* are averaged over the K samples (as Inoue: the gradient of the expected loss
  under dropout; averaging logits first would average the dropout noise away before the loss sees it,
  a weaker regulariser). The logits handed to accuracy counts and callbacks are the mean over samples of
  the first pass.
* :class:`AWP` — adversarial weight perturbation (Wu et al., 2020, in the form used for transformer
  fine-tuning): after the normal backward, each encoder weight matrix W moves by
  ``awp_lr · ‖W‖ · g/‖g‖`` (g its gradient), clipped elementwise to ``W ± awp_eps·|W|``; the batch is run
  again at the perturbed weights and its gradient added; then every weight is restored exactly (copied
  back) before the optimiser step. From epoch ``switches.awp_start_epoch`` (1-based) on; 0 = off.

Uncertainty weighting (``switches.task_weighting``) and the hierarchy terms live in the loss itself
(:mod:`twohead.train.losses`); class-weight schemes in :mod:`twohead.data.weights`; the switches' names and
off values in :mod:`twohead.config.switches`.

**The one seam from params to switches**: :func:`prepare_model` (what the switches add to the model before
its optimiser groups exist, plus the speed settings ``train.fast_attention`` and ``train.compile``) and
:func:`build` (the forward hook and AWP of a run: both None when off). ``fit``, the tools and the benchmarks all
call these two.
"""

from __future__ import annotations

import torch

from ..model import fast_attention
from .losses import TwoTaskLoss, rdrop_sums
from .run_config import RunConfig


def prepare_model(model, cfg: RunConfig) -> int:
    """Set the model up for ``cfg`` before its optimiser groups are built: uncertainty weighting's learned
    log-variances (``switches.task_weighting``), the windowed DeBERTa attention bias (``train.fast_attention``) and an
    in-place ``torch.compile`` of the encoder (``train.compile``: dynamic shapes since batch lengths vary; names,
    state dicts, saving and resuming unchanged; heads and loss stay eager). Returns the windowed layer count."""
    if cfg.switches.task_weighting == "uncertainty":
        model.add_loss_log_vars()
    windowed = fast_attention.install(model) if cfg.train.fast_attention else 0
    if cfg.train.compile:
        compile_encoder(model)
    return windowed


def compile_encoder(model) -> None:
    """``torch.compile`` the encoder in place (``nn.Module.compile``), dynamic shapes."""
    model.encoder.compile(dynamic=True)


def build(model, loss_fn: TwoTaskLoss, cfg: RunConfig) -> tuple[SwitchedForward | None, AWP | None]:
    """The run's forward hook (R-Drop, multi-sample dropout; None = the plain forward) and AWP (None when off), on
    the unwrapped model."""
    sw = cfg.switches
    awp = AWP(model, lr=sw.awp_lr, eps=sw.awp_eps, start_epoch=sw.awp_start_epoch) if sw.awp_start_epoch > 0 else None
    hook = SwitchedForward(loss_fn, rdrop_alpha=sw.rdrop_alpha, msd_samples=model.msd_samples)
    return (None if hook.plain else hook), awp


class SwitchedForward:
    """Forward + loss of one batch with R-Drop and/or multi-sample dropout (see the module docstring)."""

    def __init__(self, loss_fn: TwoTaskLoss, rdrop_alpha: float = 0.0, msd_samples: int = 1):
        self.loss_fn = loss_fn
        self.rdrop = rdrop_alpha > 0
        self.samples = max(int(msd_samples), 1)

    @property
    def plain(self) -> bool:
        return not self.rdrop and self.samples == 1

    @property
    def passes(self) -> int:
        """Forward rows per batch row (the cost of the switches, before AWP)."""
        return 2 if self.rdrop else 1

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        y1, y2 = batch["labels_task1"], batch["labels_task2"]
        if self.plain:
            logits1, logits2 = model(ids, mask)
            return logits1, logits2, self.loss_fn.terms(logits1, logits2, y1, y2)
        n, k, b = self.passes, self.samples, y1.shape[0]
        if n == 2:
            ids, mask = torch.cat([ids, ids]), torch.cat([mask, mask])
        if k > 1:
            l1, l2 = model(ids, mask, samples=k)       # (K, n·B, C)
        else:
            l1, l2 = model(ids, mask)
            l1, l2 = l1.unsqueeze(0), l2.unsqueeze(0)
        # flattened row order is (sample, pass, row): the labels repeat K·n times
        out = self.loss_fn.terms(l1.reshape(-1, l1.shape[-1]), l2.reshape(-1, l2.shape[-1]),
                                 y1.repeat(k * n), y2.repeat(k * n))
        mean1, mean2 = l1.mean(0), l2.mean(0)            # (n·B, C)
        if n == 2:
            out = self.loss_fn.add_rdrop(out, rdrop_sums(mean1[:b], mean1[b:], mean2[:b], mean2[b:], y1, y2))
        return mean1[:b], mean2[:b], out


class AWP:
    """Adversarial weight perturbation of the encoder's weight matrices; see the module docstring."""

    def __init__(self, model: torch.nn.Module, lr: float, eps: float, start_epoch: int):
        self.lr, self.eps, self.start_epoch = lr, eps, start_epoch
        self.params = [p for _, p in model.encoder.named_parameters() if p.requires_grad and p.ndim >= 2]
        self.backup: list[tuple[torch.Tensor, torch.Tensor]] = []

    def active(self, epoch: int) -> bool:
        return self.start_epoch > 0 and epoch >= self.start_epoch

    @torch.no_grad()
    def perturb(self) -> None:
        tiny = 1e-6
        self.backup = []
        for p in self.params:
            if p.grad is None:
                continue
            w = p.detach().clone()
            self.backup.append((p, w))
            g = p.grad.float()
            r = self.lr * g / (g.norm() + tiny) * (w.float().norm() + tiny)
            bound = self.eps * w.abs()
            p.add_(r.to(p.dtype))
            p.copy_(torch.minimum(torch.maximum(p, w - bound), w + bound))

    @torch.no_grad()
    def restore(self) -> None:
        for p, w in self.backup:
            p.copy_(w)
        self.backup = []
