"""The LR sweep: the learning rate chosen by *training*, for a pretrained or a random-init encoder alike.

Why not the range test alone: a 200-step exponential ramp rewards whatever lowers the training loss fastest
*now*. A new, randomly initialised head learns fastest at a high LR, while the damage a high LR does to a
pretrained body (forgetting what it knew) does not show in the ramp's training loss. With the pretrained
MiniLM on the demo, the range test's steepest rule said 7.4e-4 and, on a 150-class intent set, 4.4e-3, where
1e-4 trains best (``benchmarks/results/lr_minilm.md``). The sweep measures what the run will be judged on.

The method (successive halving, Jamieson & Talwalkar 2016 / Li et al. 2018's Hyperband rung):

* **Candidates**: ``lrs`` (default 1e-5 … 3e-3, half a decade apart), covering a pretrained body's usual
  1e-5 … 1e-4 (BERT's fine-tuning grid was 2e-5 … 5e-5) and a random-init encoder's ~1e-3.
* **Same start, heads trained first**: every candidate starts from one shared state — the stage's model with
  only its new heads fitted to the frozen encoder (linear probing, as in LP-FT, Kumar et al. 2022: the pooled
  vectors of ``head_rows`` training rows computed once, then ``head_steps`` full-batch AdamW steps on the heads
  alone at ``head_lr`` with the run's loss — a forward pass over those rows, no training step) — and trains on the same length-grouped batches in the same order, with the run's loss,
  LLRD ratios, batch size, precision, gradient clipping and scheduler *shape* (warmup share then decay to 0),
  compressed to the sweep's horizon of ``H`` optimiser steps. Why the heads first: from a random head, a short
  run is a race to fit the head, which the highest LR wins whatever it does to a pretrained body (measured:
  without it the sweep chose 1e-3 for the pretrained MiniLM); with a fitted head the candidates differ in what
  the run will be judged on — how each LR moves the body.
* **Rungs**: all candidates train ``b`` steps and are scored on a fixed, seeded val subsample (``val_rows``);
  the best ⌈n/η⌉ go on — retrained from the same start to ``η·b`` steps (the same trajectory, longer: nothing is
  held in memory between candidates) — until at most η remain; the last rung ends at ``H``, where the schedule
  reaches 0, so its candidates are compared fully annealed.
* **Score**: the metric the run keeps its best epoch by (``val_acc_task2`` in Stage 2, ``val_acc_task1`` in
  Stage 1); ties broken by the val loss.
* **Rule (one standard error, towards the smaller LR)**: of the last rung, the *smallest* LR whose score is within
  one binomial standard error of the best, √(p(1−p)/n) on the subsample (Breiman et al. 1984's 1-SE rule). A
  short horizon favours larger LRs — the ranking at ``H`` steps leans high compared with five epochs — so when
  the sweep cannot tell two candidates apart, the smaller one is the safer choice for the full run.
* **Cost**: ``budget`` × the run's optimiser steps (epochs × steps per epoch), split over the rungs so that
  Σ (candidates × steps) fits — for 6 candidates and η = 3: 6·b + 2·3b = 12·b. The printed cost compares the
  sweep's wall-clock with one run at the throughput the sweep measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config.errors import ParamsError

DEFAULT_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


@dataclass
class SweepConfig:
    lrs: tuple[float, ...] = DEFAULT_LRS
    budget: float = 0.08       # share of one run's optimiser steps for all the sweep's training together
    eta: int = 3               # keep the best 1/eta of each rung
    val_rows: int = 512        # the fixed val subsample every candidate is scored on (0 = the whole split)
    min_steps: int = 5         # rung-0 steps never fewer than this (a tiny data set then costs more than budget)
    head_rows: int | None = None   # rows the heads are first fitted on (None = 2 × the last rung's rows; 0 = off)
    head_steps: int = 300      # full-batch AdamW steps of that fit, on the frozen encoder's pooled vectors
    head_lr: float = 1e-2      # their LR

    def validate(self) -> None:
        lrs = list(self.lrs)
        if len(lrs) < 2 or any(not (0 < lr < 1) for lr in lrs) or len(set(lrs)) != len(lrs):
            raise ParamsError(f"lr-find sweep: need at least two distinct LRs in (0, 1) (got {lrs})")
        if not (0 < self.budget <= 1):
            raise ParamsError(f"lr-find sweep: --budget is a share of one run, in (0, 1] (got {self.budget:g})")
        if self.eta < 2:
            raise ParamsError(f"lr-find sweep: --eta must be at least 2 (got {self.eta})")
        if (self.head_rows is not None and self.head_rows < 0) or self.head_steps < 1 or not (0 < self.head_lr < 1):
            raise ParamsError("lr-find sweep: the heads-only start needs steps >= 0 and an LR in (0, 1)")
        if self.val_rows < 0 or self.min_steps < 1:
            raise ParamsError("lr-find sweep: --val-rows must be >= 0 and the minimum steps >= 1")


@dataclass
class Rung:
    candidates: int
    steps: int


def plan(n_candidates: int, run_steps: int, cfg: SweepConfig) -> list[Rung]:
    """The rungs: candidate counts n, ⌈n/η⌉, … while more than η remain, and their step counts b, η·b, …;
    ``b`` as large as the budget allows (``budget`` × ``run_steps`` optimiser steps in all), at least
    ``min_steps``."""
    counts = [n_candidates]
    while counts[-1] > cfg.eta:
        counts.append(math.ceil(counts[-1] / cfg.eta))
    units = sum(n * cfg.eta ** r for r, n in enumerate(counts))   # cost in rung-0 step units
    b = max(cfg.min_steps, int(cfg.budget * run_steps / units))
    return [Rung(n, b * cfg.eta ** r) for r, n in enumerate(counts)]


def plan_steps(rungs: list[Rung]) -> int:
    """Optimiser steps the plan trains in all (each survivor retrained from the start)."""
    return sum(r.candidates * r.steps for r in rungs)


@dataclass
class Trial:
    lr: float
    rung: int
    steps: int
    score: float                  # the selection metric on the val subsample (NaN: diverged)
    loss: float                   # the val objective (tie-breaker, reported)
    metrics: dict = field(default_factory=dict)
    diverged: bool = False


def _key(t: Trial) -> tuple[float, float]:
    """Sort key, best first: higher score, then lower loss; a diverged or NaN trial last."""
    score = -math.inf if (t.diverged or not math.isfinite(t.score)) else t.score
    loss = math.inf if not math.isfinite(t.loss) else t.loss
    return (-score, loss)


def survivors(trials: list[Trial], keep: int) -> list[float]:
    """The LRs of the ``keep`` best trials of a rung (never a diverged one, unless nothing else is left)."""
    ranked = sorted(trials, key=_key)
    alive = [t for t in ranked if not t.diverged and math.isfinite(t.score)] or ranked
    return [t.lr for t in alive[:keep]]


def standard_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 and math.isfinite(p) else math.nan


def choose(final: list[Trial], n_val: int) -> dict:
    """The 1-SE rule on the last rung: the best trial, the standard error of its score on ``n_val`` rows, and
    the smallest LR whose score is within it (the suggestion)."""
    ranked = sorted(final, key=_key)
    best = ranked[0]
    if best.diverged or not math.isfinite(best.score):
        return {"best_lr": None, "best_score": None, "se": None, "suggested_lr": None}
    se = standard_error(best.score, n_val)
    close = [t for t in final if not t.diverged and math.isfinite(t.score) and t.score >= best.score - se]
    pick = min(close, key=lambda t: t.lr)
    return {"best_lr": best.lr, "best_score": best.score, "se": se, "suggested_lr": pick.lr}


def plot(trials: list[Trial], choice: dict, score_label: str, path, start_score: float | None,
         start_loss: float | None, title: str, caption: str) -> None:
    """Val score against the LR (log axis), one line per rung, the suggestion and the best ± 1 SE marked; below,
    the val loss."""
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.0, 6.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    rungs = sorted({t.rung for t in trials})
    for r in rungs:
        ts = sorted((t for t in trials if t.rung == r), key=lambda t: t.lr)
        steps = ts[0].steps
        lr = [t.lr for t in ts]
        ax.plot(lr, [t.score for t in ts], marker="o", color=f"C{r}", label=f"rung {r + 1}: {steps} steps")
        ax2.plot(lr, [t.loss for t in ts], marker="o", color=f"C{r}", label=f"rung {r + 1}")
        for t in ts:
            if t.diverged:
                ax.annotate("diverged", (t.lr, 0), fontsize=7, color="C3", ha="center", va="bottom")
    if start_score is not None:
        ax.axhline(start_score, color="0.4", ls=":", lw=1.2, label=f"the shared start (heads only) {start_score:.3f}")
        ax2.axhline(start_loss, color="0.4", ls=":", lw=1.2)
    if choice.get("best_score") is not None:
        ax.axhspan(choice["best_score"] - choice["se"], choice["best_score"], color="0.85", zorder=0,
                   label="best − 1 SE (the suggestion: smallest LR in the band)")
    if choice.get("suggested_lr") is not None:
        ax.axvline(choice["suggested_lr"], color="C4", ls="--", lw=1.5,
                   label=f"suggested {choice['suggested_lr']:.2g}")
        ax2.axvline(choice["suggested_lr"], color="C4", ls="--", lw=1.5)
    ax.set_xscale("log")
    ax.set(title=title, ylabel=f"{score_label} (val subsample)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    finite = [t.loss for t in trials if math.isfinite(t.loss)]
    if finite:
        lo, hi = min(finite), np.quantile(finite, 0.9)
        ax2.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.3 * (hi - lo + 1e-9))
    ax2.set(xlabel="learning rate (train.lr; LLRD ratios kept)", ylabel="val loss (total)")
    ax2.grid(alpha=0.3, which="both")
    save_figure(fig, path, caption)
