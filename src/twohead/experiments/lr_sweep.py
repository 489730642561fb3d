"""The LR sweep: the learning rate chosen by *training*, for a pretrained or a random-init encoder alike.

Why not the range test alone: a 200-step exponential ramp rewards whatever lowers the training loss fastest
*now*. A new, randomly initialised head learns fastest at a high LR, while the damage a high LR does to a
pretrained body (forgetting what it knew) does not show in the ramp's training loss. With the pretrained
MiniLM on the demo, the range test's steepest rule said 7.4e-4 and, on a 150-class intent set, 4.4e-3, where
1e-4 trains best. The sweep measures what the run is trained for, on held-out rows.

The method:

* **Candidates**: ``lrs`` (default 1e-5 … 1e-3, half a decade apart): a pretrained body's usual 1e-5 … 1e-4
  (BERT's fine-tuning grid was 2e-5 … 5e-5) and a random-init encoder's ~1e-3. A suggestion at either end of
  the candidates is flagged (the best may lie beyond: widen ``--lrs``).
* **Same start, heads fitted first**: every candidate starts from one shared state — the stage's model with its
  new heads fitted to the *frozen* encoder (linear probing, as in LP-FT, Kumar et al. 2022: the pooled vectors
  of ``head_rows`` training rows computed once, then ``head_steps`` full-batch AdamW steps on the heads alone at
  ``head_lr`` with the run's loss — one forward pass over those rows, no training step). Why: from a random
  head, a short run is a race to fit the head, which the highest LR wins whatever it does to a pretrained body
  (measured: without it the sweep chose 1e-3 for the pretrained MiniLM, where 1e-4–2e-4 train best). With a
  fitted head the candidates differ in what the full run depends on: how each LR moves the body.
* **Same batches, the run's shape**: each candidate trains on the same length-grouped batches in the same
  order with the run's loss, LLRD ratios, batch size, precision, clipping and scheduler *shape* (warmup share,
  then decay to 0) compressed to the sweep's ``H`` optimiser steps, then is scored on a fixed, seeded val
  subsample (``val_rows``).
* **Rule**: the candidate with the lowest val objective (the run's loss: class-weighted, smoothed, λ-weighted —
  smoother than accuracy on a few hundred rows, where 1 point is within noise); accuracy is reported beside it.
* **Budget**: ``budget`` × the run's optimiser steps (epochs × steps per epoch) for all candidates together, at
  least ``min_steps`` each. Successive halving (``eta`` ≥ 2: the best 1/η of each rung go on, retrained from the
  start to η× the steps) is available but off by default: from a fitted head a good LR first dips and then
  recovers (MiniLM at 1e-4: behind 3e-5 after 5 steps, ahead after 15), so an early cut drops it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config.errors import ParamsError

DEFAULT_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


@dataclass
class SweepConfig:
    lrs: tuple[float, ...] = DEFAULT_LRS
    budget: float = 0.1        # share of one run's optimiser steps for all the sweep's training together
    eta: int = 0               # successive halving: keep the best 1/eta of each rung (0 = off: one rung)
    val_rows: int = 256        # the fixed val subsample every candidate is scored on (0 = the whole split)
    min_steps: int = 10        # steps per candidate never fewer (a tiny data set then costs more than budget)
    head_rows: int | None = None   # rows the heads are first fitted on (None = 2 × the last rung's rows; 0 = off)
    head_steps: int = 300      # full-batch AdamW steps of that fit, on the frozen encoder's pooled vectors
    head_lr: float = 1e-2      # their LR

    def validate(self) -> None:
        lrs = list(self.lrs)
        if len(lrs) < 2 or any(not (0 < lr < 1) for lr in lrs) or len(set(lrs)) != len(lrs):
            raise ParamsError(f"lr-find sweep: need at least two distinct LRs in (0, 1) (got {lrs})")
        if not (0 < self.budget <= 1):
            raise ParamsError(f"lr-find sweep: --budget is a share of one run, in (0, 1] (got {self.budget:g})")
        if self.eta == 1 or self.eta < 0:
            raise ParamsError(f"lr-find sweep: --eta is 0 (no halving) or at least 2 (got {self.eta})")
        if (self.head_rows is not None and self.head_rows < 0) or self.head_steps < 1 or not (0 < self.head_lr < 1):
            raise ParamsError("lr-find sweep: the heads-only start needs steps >= 0 and an LR in (0, 1)")
        if self.val_rows < 0 or self.min_steps < 1:
            raise ParamsError("lr-find sweep: --val-rows must be >= 0 and the minimum steps >= 1")


@dataclass
class Rung:
    candidates: int
    steps: int


def plan(n_candidates: int, run_steps: int, cfg: SweepConfig) -> list[Rung]:
    """The rungs: one (every candidate, ``b`` steps) without halving; with ``eta`` ≥ 2, candidate counts n,
    ⌈n/η⌉, … while more than η remain, and their step counts b, η·b, …; ``b`` as large as the budget allows
    (``budget`` × ``run_steps`` optimiser steps in all), at least ``min_steps``."""
    counts = [n_candidates]
    eta = cfg.eta if cfg.eta >= 2 else 1
    while eta > 1 and counts[-1] > eta:
        counts.append(math.ceil(counts[-1] / eta))
    units = sum(n * eta ** r for r, n in enumerate(counts))   # cost in rung-0 step units
    b = max(cfg.min_steps, int(cfg.budget * run_steps / units))
    return [Rung(n, b * eta ** r) for r, n in enumerate(counts)]


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
    """Sort key, best first: lower val objective, then higher score; a diverged or NaN trial last."""
    bad = t.diverged or not math.isfinite(t.loss)
    return (math.inf if bad else t.loss, -(t.score if math.isfinite(t.score) else -math.inf))


def survivors(trials: list[Trial], keep: int) -> list[float]:
    """The LRs of the ``keep`` best trials of a rung (never a diverged one, unless nothing else is left)."""
    ranked = sorted(trials, key=_key)
    alive = [t for t in ranked if not t.diverged and math.isfinite(t.loss)] or ranked
    return [t.lr for t in alive[:keep]]


def choose(final: list[Trial], candidates: tuple[float, ...]) -> dict:
    """The last rung's best trial (lowest val objective) is the suggestion; ``edge`` says when it is the
    smallest or largest of the ``candidates`` (the optimum may lie beyond them)."""
    ranked = sorted(final, key=_key)
    best = ranked[0] if ranked else None
    if best is None or best.diverged or not math.isfinite(best.loss):
        return {"suggested_lr": None, "best_loss": None, "best_score": None, "edge": None}
    edge = "smallest" if best.lr == min(candidates) else "largest" if best.lr == max(candidates) else None
    return {"suggested_lr": best.lr, "best_loss": best.loss, "best_score": best.score, "edge": edge}


def plot(trials: list[Trial], choice: dict, score_label: str, path, start_score: float | None,
         start_loss: float | None, title: str, caption: str) -> None:
    """Val objective (the rule's measure) and val score against the LR (log axis), one line per rung, the
    shared start and the suggestion marked."""
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.0, 6.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for r in sorted({t.rung for t in trials}):
        ts = sorted((t for t in trials if t.rung == r), key=lambda t: t.lr)
        lr = [t.lr for t in ts]
        ax.plot(lr, [t.loss for t in ts], marker="o", color=f"C{r}", label=f"after {ts[0].steps} steps")
        ax2.plot(lr, [t.score for t in ts], marker="o", color=f"C{r}")
        for t in ts:
            if t.diverged:
                ax2.annotate("diverged", (t.lr, 0), fontsize=7, color="C3", ha="center", va="bottom")
    if start_loss is not None:
        ax.axhline(start_loss, color="0.4", ls=":", lw=1.2, label=f"the shared start (heads fitted) {start_loss:.3f}")
        ax2.axhline(start_score, color="0.4", ls=":", lw=1.2)
    if choice.get("suggested_lr") is not None:
        for a in (ax, ax2):
            a.axvline(choice["suggested_lr"], color="C4", ls="--", lw=1.5,
                      label=f"suggested {choice['suggested_lr']:.2g} (lowest val objective)" if a is ax else None)
    finite = [t.loss for t in trials if math.isfinite(t.loss)] + ([start_loss] if start_loss is not None else [])
    if finite:
        lo = min(finite)
        hi = min(max(finite), 2 * float(np.median(finite)))  # a diverging candidate must not squash the rest
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9))
    ax.set_xscale("log")
    ax.set(title=title, ylabel="val objective (the run's loss)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax2.set(xlabel="learning rate (train.lr; LLRD ratios kept)", ylabel=f"{score_label}")
    ax2.grid(alpha=0.3, which="both")
    save_figure(fig, path, caption)
