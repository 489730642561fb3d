"""``twohead lr-find --method range``: the learning-rate range test (Smith, 2017; fastai's ``lr_find``, Lightning's
``Tuner.lr_find``) on the data, model, loss, LLRD groups, batch size, precision and device the chosen stage would
use (:mod:`twohead.train.recipe`). The model is built fresh and discarded: no checkpoint, state, metric or DVC
output of the pipeline is touched; only the JSON and PNG named in dvc.yaml (``paths.lr_find``,
``paths.lr_find_plot``) are written. The Stage-2 switches that change the loss (uncertainty weighting, R-Drop,
multi-sample dropout, hierarchy terms) apply; AWP does not (it starts at a later epoch by design).

The learning rate grows exponentially from ``min_lr`` to ``max_lr`` over ``steps`` optimiser steps, one
batch each, on a freshly built model. Every AdamW group keeps its ratio to the base LR (the layer-wise
decay of the real run), so the LR reported is the one to put in ``train.lr`` (or ``stage1.lr``). The loss
is smoothed by a bias-corrected exponential moving average (β = 0.98, as fastai and Lightning); the test
stops once the smoothed loss exceeds ``stop_factor`` × its minimum (4, as both) or is not finite.

Suggestions, from the smoothed total loss against log10(LR):

* ``steepest`` (Lightning's rule; **the one suggested**): the LR where the smoothed loss falls fastest (most
  negative slope against log10 LR; the first and last 10% of the curve skipped, where the EMA is still
  settling and where the blow-up starts).
* ``valley`` (fastai's default): the longest stretch over which the loss keeps decreasing (longest
  decreasing subsequence) and the LR two thirds of the way down it.
* ``min_div10``: the LR of the minimum smoothed loss ÷ 10 (Smith's rule of thumb), for reference.

Why steepest: on the demo (random-init encoder, whose 5-epoch runs train at 1e-3), three seeds of the 200-step
default gave steepest 4.6e-4–8.0e-4, min/10 7.8e-4–1.1e-3 and valley 9.8e-5–2.6e-4. The demo's loss falls
slowly over three decades before its valley, and "two thirds down the longest decrease" lands early on such a
curve (a factor 4–10 low); min/10 sits close to the edge of divergence on a short test. All three are written
out and marked on the plot; the suggested LR is ``steepest`` clipped to [:data:`SANE_MIN`, :data:`SANE_MAX`].

Warmup is deliberately absent here: the test's ramp *is* a warmup, and AdamW's first steps at the LR found
are what the real run's warmup protects. Use the suggestion as ``train.lr`` and keep ``train.warmup_ratio``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from ..config.errors import MissingInputError, ParamsError
from ..config.params import Params
from ..data.io import METRIC_DIGITS, write_json
from .common import ToolPaths

if TYPE_CHECKING:
    import torch

SANE_MIN, SANE_MAX = 1e-6, 1e-2
BETA = 0.98


@dataclass
class RangeTestConfig:
    """The range test's settings; the documented fields are ``twohead lr-find --method range``'s flags."""

    steps: int = field(default=200, metadata={"help": "range: steps of the ramp"})
    min_lr: float = field(default=1e-7, metadata={"help": "range: the ramp's first LR"})
    max_lr: float = field(default=1.0, metadata={"help": "range: the ramp's last LR"})
    stop_factor: float = field(default=4.0, metadata={"help": "range: stop once the smoothed loss exceeds this x"
                                                               " its minimum"})
    rows: int = field(default=0, metadata={"help": "range: a seeded subsample of the training rows (0 = all)"})
    beta: float = BETA
    max_grad_norm: float = 1.0      # the run's train.max_grad_norm (set by run())

    def validate(self) -> None:
        if self.steps < 10:
            raise ParamsError(f"lr-find: --steps must be at least 10 (got {self.steps})")
        if not (0 < self.min_lr < self.max_lr):
            raise ParamsError(f"lr-find: need 0 < --min-lr < --max-lr (got {self.min_lr:g}, {self.max_lr:g})")
        if self.stop_factor <= 1:
            raise ParamsError(f"lr-find: the stop factor must be > 1 (got {self.stop_factor:g})")
        if self.rows < 0:
            raise ParamsError(f"lr-find: --rows must be >= 0 (got {self.rows})")


@dataclass
class RangeTestResult:
    lrs: list[float] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)     # raw per step: total, task1, task2
    smoothed: dict[str, list[float]] = field(default_factory=dict)   # bias-corrected EMA of each
    stopped_early: bool = False
    stop_reason: str = ""
    seconds: float = 0.0


def lr_at(step: int, cfg: RangeTestConfig) -> float:
    """The exponential ramp: min_lr at step 0, max_lr at step ``steps - 1``."""
    return cfg.min_lr * (cfg.max_lr / cfg.min_lr) ** (step / max(cfg.steps - 1, 1))


def range_test(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ratios: list[float],
               batches: Iterator[dict], loss_terms: Callable[[dict], dict[str, torch.Tensor]],
               cfg: RangeTestConfig, backward: Callable[[torch.Tensor], None] | None = None,
               clip: Callable[[float], None] | None = None, progress: bool = True) -> RangeTestResult:
    """Run the test. ``ratios[g]`` = group g's LR ÷ the base LR; ``loss_terms(batch)`` returns at least
    ``{"total": …}`` (a scalar to minimise; other terms are recorded too). ``backward`` / ``clip`` default to
    plain autograd and ``clip_grad_norm_`` (an Accelerator's own are passed by the caller)."""
    import torch
    from tqdm.auto import tqdm

    cfg.validate()
    if len(ratios) != len(optimizer.param_groups):
        raise ValueError("one LR ratio per optimizer group")
    backward = backward or (lambda loss: loss.backward())
    clip = clip or (lambda norm: torch.nn.utils.clip_grad_norm_(model.parameters(), norm))
    res = RangeTestResult()
    avg: dict[str, float] = {}
    best = math.inf
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="lr-find", unit="step", leave=False, disable=None if progress else True)
    for step in bar:
        lr = lr_at(step, cfg)
        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        terms = loss_terms(next(batches))
        backward(terms["total"])
        if cfg.max_grad_norm and cfg.max_grad_norm > 0:
            clip(cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        values = {k: float(v.detach()) for k, v in terms.items()}  # one host sync per step: the stop test needs it
        res.lrs.append(lr)
        for k, v in values.items():
            avg[k] = cfg.beta * avg.get(k, 0.0) + (1 - cfg.beta) * v
            res.losses.setdefault(k, []).append(v)
            res.smoothed.setdefault(k, []).append(avg[k] / (1 - cfg.beta ** (step + 1)))
        smooth = res.smoothed["total"][-1]
        if not math.isfinite(smooth):
            res.stopped_early, res.stop_reason = True, f"non-finite loss at lr {lr:.3g}"
            break
        best = min(best, smooth)
        bar.set_postfix(lr=f"{lr:.2e}", loss=f"{smooth:.4f}", refresh=False)
        if step > 0 and smooth > cfg.stop_factor * best:
            res.stopped_early = True
            res.stop_reason = (f"smoothed loss {smooth:.4g} > {cfg.stop_factor:g} x its minimum {best:.4g}"
                               f" at lr {lr:.3g}")
            break
    bar.close()
    res.seconds = time.perf_counter() - t0
    return res


def _finite_curve(lrs: list[float], losses: list[float]) -> tuple[np.ndarray, np.ndarray]:
    lr, loss = np.asarray(lrs, float), np.asarray(losses, float)
    keep = np.isfinite(loss)
    return lr[keep], loss[keep]


def steepest(lrs: list[float], losses: list[float], skip_frac: float = 0.1) -> int | None:
    """Index of the most negative slope d loss / d log10(lr), the first and last ``skip_frac`` skipped."""
    lr, loss = _finite_curve(lrs, losses)
    n = len(loss)
    if n < 5:
        return None
    lo, hi = int(n * skip_frac), n - max(int(n * skip_frac), 1)
    if hi - lo < 3:
        lo, hi = 0, n
    grad = np.gradient(loss[lo:hi], np.log10(lr[lo:hi]))
    k = int(np.argmin(grad))
    return None if grad[k] >= 0 else lo + k  # a loss that never falls has no steepest descent


def valley(losses: list[float]) -> int | None:
    """fastai's valley rule: the longest decreasing subsequence of the loss, and the point 2/3 of the way
    down it (index into ``losses``)."""
    loss = np.asarray(losses, float)
    n = len(loss)
    if n < 5 or not np.isfinite(loss).all() or not (np.diff(loss) < 0).any():
        return None
    lds = np.ones(n, dtype=int)
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if loss[i] < loss[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return int(min(max(max_start + int(sections) + int(sections / 2), 0), n - 1))


def suggestions(res: RangeTestResult) -> dict:
    """The three rules' LRs (None where the curve is too short) and the suggested one (steepest, clipped;
    the next rule where it has none)."""
    lrs, smooth = res.lrs, res.smoothed.get("total", [])
    lr_f, loss_f = _finite_curve(lrs, smooth)
    out: dict = {"valley": None, "steepest": None, "min_div10": None}
    i = valley(list(loss_f))
    if i is not None:
        out["valley"] = float(lr_f[i])
    j = steepest(list(lr_f), list(loss_f))
    if j is not None:
        out["steepest"] = float(lr_f[j])
    if len(loss_f) >= 5 and int(np.argmin(loss_f)) > 0:
        out["min_div10"] = float(lr_f[int(np.argmin(loss_f))] / 10)
    rule = next((r for r in ("steepest", "valley", "min_div10") if out[r] is not None), None)
    pick = None if rule is None else out[rule]
    out["rule"] = rule
    out["suggested_lr"] = None if pick is None else float(min(max(pick, SANE_MIN), SANE_MAX))
    out["clipped"] = pick is not None and out["suggested_lr"] != pick
    return out


def plot(res: RangeTestResult, sugg: dict, path, title: str, caption: str) -> None:
    """Smoothed total loss against the LR on a log axis with the suggestions marked; below it each task's
    smoothed loss (which task blows up first)."""
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    tasks = [k for k in ("task1", "task2") if k in res.smoothed]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.0, 6.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(res.lrs, res.losses["total"], color="0.8", lw=0.8, label="total (raw)")
    ax.plot(res.lrs, res.smoothed["total"], color="C0", lw=2, label="total (smoothed)")
    marks = {"valley": ("C1", "o"), "steepest": ("C4", "v"), "min_div10": ("C5", "s")}
    for rule, (color, marker) in marks.items():
        lr = sugg.get(rule)
        if lr is None:
            continue
        y = float(np.interp(np.log10(lr), np.log10(res.lrs), res.smoothed["total"]))
        star = " (suggested)" if rule == sugg.get("rule") else ""
        ax.plot([lr], [y], marker=marker, color=color, ms=9, ls="none", label=f"{rule} {lr:.2g}{star}")
    _limits(ax, [res.smoothed["total"]])
    ax.set_xscale("log")
    ax.set(title=title, ylabel="training loss (total)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    for k, color in zip(tasks, ("C2", "C3")):
        ax2.plot(res.lrs, res.smoothed[k], color=color, lw=1.5, label=f"{k} (smoothed)")
    if tasks:
        _limits(ax2, [res.smoothed[k] for k in tasks])  # each task's own range: neither drops off the panel
    ax2.set(xlabel="learning rate (base group; LLRD ratios kept)", ylabel="loss per task")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    save_figure(fig, path, caption)


def y_range(series: list[list[float]]) -> tuple[float, float] | None:
    """Y range covering every series from its minimum to a little above its start (the blow-up must not squash
    the valley); None when nothing is finite."""
    lows, highs = [], []
    for values in series:
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            lows.append(min(finite))
            highs.append(min(max(finite), max(finite[: max(len(finite) // 10, 1)]) * 1.25 + 1e-9))
    if not lows:
        return None
    lo, hi = min(lows), max(highs)
    pad = 0.05 * (hi - lo) + 1e-9
    return lo - pad, hi + pad


def _limits(ax, series: list[list[float]]) -> None:
    rng = y_range(series)
    if rng is not None:
        ax.set_ylim(*rng)


# --- the run ----------------------------------------------------------------------------------------------------

def run(p: Params, paths: ToolPaths, cfg: RangeTestConfig, stage: str = "stage2", progress: bool = True) -> dict:
    from accelerate.utils import set_seed

    from ..train.recipe import recipe
    from ..train.setup import prepare_training
    from ..train.step import cycle_batches, forward_and_loss

    cfg.validate()
    r = recipe(p, stage, paths.inputs(p), rows=cfg.rows, with_val=False)
    t, ds = r.cfg.train, r.data.train
    set_seed(t.seed)  # before the heads are initialised
    model = r.build()
    if len(ds) == 0:
        raise MissingInputError(f"{paths.tokenized if stage == 'stage2' else paths.prepared}: no training rows")
    cfg = RangeTestConfig(**{**cfg.__dict__, "max_grad_norm": t.max_grad_norm})
    # the run as training would build it (switches, LLRD groups, loss), at base lr 1: each group's lr
    # is then its LLRD ratio, which the range test scales
    s = prepare_training(model, r.data, r.cfg, base_lr=1.0, schedule=False, validate=False)

    def loss_terms(batch: dict) -> dict:
        out = forward_and_loss(s.step, batch)[2]  # R-Drop / multi-sample dropout as the stage would run
        terms = {"total": out["total"], "task1": out["task1"]}
        if stage == "stage2":
            terms["task2"] = out["task2"]
        return terms

    accelerator = s.accelerator
    res = range_test(s.model, s.optimizer, s.initial_lrs, cycle_batches(s.train_loader, s.sampler), loss_terms, cfg,
                     backward=accelerator.backward,
                     clip=lambda norm: accelerator.clip_grad_norm_(s.model.parameters(), norm), progress=progress)
    sugg = suggestions(res)
    command = None if sugg["suggested_lr"] is None else f"dvc exp run -S {r.lr_key}={sugg['suggested_lr']:.2g}"
    result = {
        "stage": stage, "lr_key": r.lr_key, "current_lr": r.current_lr,
        **{k: sugg[k] for k in ("suggested_lr", "rule", "clipped", "valley", "steepest", "min_div10")},
        "command": command, "steps_run": len(res.lrs), "steps": cfg.steps, "min_lr": cfg.min_lr,
        "max_lr": cfg.max_lr, "stopped_early": res.stopped_early, "stop_reason": res.stop_reason,
        "rows": len(ds), "batch_size": t.batch_size, "device": str(accelerator.device), "precision": t.precision,
        "seed": t.seed, "seconds": round(res.seconds, 2),
        "curve": [{"step": i, "lr": lr, **{f"loss_{k}": v[i] for k, v in res.losses.items()},
                   **{f"smoothed_{k}": v[i] for k, v in res.smoothed.items()}} for i, lr in enumerate(res.lrs)],
    }
    caption = (f"checkpoint {r.checkpoint} | {stage} | {len(ds)} rows, batch {t.batch_size}, LLRD {t.llrd:g},"
               f" {t.precision}, {accelerator.device} | {len(res.lrs)} of {cfg.steps} steps, seed {t.seed}")
    plot(res, sugg, paths.plot, f"LR range test ({r.lr_key} now {r.current_lr:g})", caption)
    write_json(paths.json, result, digits=METRIC_DIGITS)
    return result


# --- what it prints ---------------------------------------------------------------------------------------------

def main(p: Params, paths: ToolPaths, cfg: RangeTestConfig, stage: str, log=print) -> int:
    """Run the test and print its reading; status 1 when it has no suggestion."""
    r = run(p, paths, cfg, stage=stage)
    stop = f"stopped early ({r['stop_reason']})" if r["stopped_early"] else "ran every step"
    log(f"twohead lr-find: {r['steps_run']} of {r['steps']} steps on {r['rows']} rows, {r['device']},"
        f" {r['seconds']:.1f}s; {stop}")
    fmt = {k: "-" if r[k] is None else f"{r[k]:.3g}" for k in ("valley", "steepest", "min_div10")}
    log(f"  valley {fmt['valley']} | steepest {fmt['steepest']} | min/10 {fmt['min_div10']}"
        f" ({r['lr_key']} now {r['current_lr']:g})")
    if r["suggested_lr"] is None:
        log("  no suggestion: the loss curve is too short or never fell; widen --min-lr/--max-lr or add --steps")
        return 1
    clipped = " (clipped to the sane range)" if r["clipped"] else ""
    log(f"  suggested {r['lr_key']} = {r['suggested_lr']:.2g} ({r['rule']} rule){clipped}")
    log(f"  try it:  {r['command']}")
    log(f"  curve: {paths.plot}, figures: {paths.json}")
    return 0
