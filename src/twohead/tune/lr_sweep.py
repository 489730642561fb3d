"""``twohead lr-find`` (the default method): the LR sweep — the learning rate chosen by *training*, for a pretrained
or a random-init encoder alike — on the stage's data, checkpoint, loss, LLRD groups, batch size, precision and
device (:mod:`twohead.train.recipe`). Every candidate is a fresh model, trained and discarded: no checkpoint,
state, metric or DVC output of the pipeline is touched; only the JSON and PNG named in dvc.yaml
(``paths.lr_find``, ``paths.lr_find_plot``) are written. AWP does not apply (it starts at a later epoch by
design); the other Stage-2 switches do.

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

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..config.errors import MissingInputError, ParamsError
from ..config.params import Params
from ..config.schema import VAL_METRICS, label
from ..data.io import METRIC_DIGITS, write_json
from .common import ToolPaths


@dataclass
class SweepConfig:
    """The sweep's settings; the documented fields are ``twohead lr-find``'s flags."""

    lrs: tuple[float, ...] = field(default=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
                                   metadata={"help": "sweep: the candidate LRs", "metavar": "LR"})
    budget: float = field(default=0.1, metadata={"help": "sweep: training steps in all, as a share of one run's"})
    eta: int = field(default=0, metadata={"help": "sweep: successive halving, keep the best 1/eta of each rung"
                                                  " (0: off, every candidate trains as long)"})
    val_rows: int = field(default=256, metadata={"help": "sweep: val rows every candidate is scored on (0 = all)"})
    min_steps: int = field(default=10, metadata={"help": "sweep: steps per candidate, never fewer (a small data set"
                                                         " then costs more than --budget)"})
    head_rows: int | None = field(default=None, metadata={
        "help": "sweep: rows the heads are first fitted on, encoder frozen (0 = none: fresh heads)",
        "default_text": "2 x the last rung's rows"})
    head_steps: int = field(default=300, metadata={"help": "sweep: full-batch AdamW steps of that heads-only fit"})
    head_lr: float = field(default=1e-2, metadata={"help": "sweep: the LR of that heads-only fit"})

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


#: the best candidate must lower the val objective of the shared start by at least this share, or the sweep cannot
#: tell the LRs apart at its budget: a weak encoder barely moves in a few dozen steps, and then the candidate that
#: stays nearest the start (the smallest LR) wins by standing still — measured: 1e-5 at 2.330 vs the start's 2.326
#: while 1e-3 trains best. Pretrained MiniLM: −18%; the demo encoder after 2 Stage-1 epochs: −6.5%.
MIN_GAIN = 0.01


def score_se(score: float, rows: int) -> float:
    """One standard error of an accuracy ``score`` measured on ``rows`` rows (0 when unknown)."""
    return math.sqrt(max(score * (1 - score), 0.0) / rows) if rows > 0 else 0.0


def choose(final: list[Trial], candidates: tuple[float, ...], start_loss: float | None = None,
           min_gain: float = MIN_GAIN, start_score: float | None = None, score_rows: int = 0) -> dict:
    """The last rung's best trial (lowest val objective) is the suggestion; ``edge`` says when it is the
    smallest or largest of the ``candidates`` (the optimum may lie beyond them). With the shared start's val
    objective ``start_loss`` (and score ``start_score``), a best trial that does not lower the objective by
    ``min_gain`` — or lowers it while its score does not rise above the start's by one standard error (over
    ``score_rows`` val rows): the objective fell because the freshly fitted heads relaxed, not because the body
    learned (a random-init 4L/256H encoder: 1e-4 at −12% objective with 0.391 vs the start's 0.420, and at 3× the
    budget 3e-5 at −2.7% with 0.407 vs 0.387, ±0.030; full training wants 1e-3) — is no suggestion: ``undecided``
    says why."""
    ranked = sorted(final, key=_key)
    best = ranked[0] if ranked else None
    if best is None or best.diverged or not math.isfinite(best.loss):
        return {"suggested_lr": None, "best_loss": None, "best_score": None, "edge": None, "undecided": None}
    edge = "smallest" if best.lr == min(candidates) else "largest" if best.lr == max(candidates) else None
    out = {"suggested_lr": best.lr, "best_loss": best.loss, "best_score": best.score, "edge": edge, "undecided": None}
    if start_loss is not None and math.isfinite(start_loss) and start_loss > 0:
        gain = 1 - best.loss / start_loss
        out["gain_over_start"] = gain
        top_acc = max((t for t in final if math.isfinite(t.score)), key=lambda t: t.score, default=best)
        top = f"highest val score: lr {top_acc.lr:.2g}, {top_acc.score:.3f}"
        if gain < min_gain:
            out.update(suggested_lr=None, best_lr=best.lr, undecided=(
                f"no candidate lowered the val objective of the shared start by {min_gain:.0%} (best: lr"
                f" {best.lr:.2g}, {best.loss:.3f} vs the start's {start_loss:.3f}, {-gain:+.1%}): at this budget"
                " the encoder barely moves, and the LR that stays nearest the start would win by standing still"
                f" ({top})"))
        elif start_score is not None and math.isfinite(start_score) and math.isfinite(best.score) \
                and best.score - start_score < score_se(start_score, score_rows):
            out.update(suggested_lr=None, best_lr=best.lr, undecided=(
                f"the lowest val objective (lr {best.lr:.2g}, {best.loss:.3f}, {-gain:+.1%} vs the start) came with a"
                f" val score {best.score:.3f} against the start's {start_score:.3f} (± "
                f"{score_se(start_score, score_rows):.3f}, one standard error): the freshly fitted heads relaxed,"
                f" the encoder did not measurably learn at this budget ({top})"))
    return out


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


def score_name(select: str) -> str:
    """The vocabulary name (:data:`~twohead.config.schema.VAL_METRICS`) of a history column ``val_<column>``."""
    return next((name for name, col in VAL_METRICS.items() if f"val_{col}" == select), select)


# --- the run ----------------------------------------------------------------------------------------------------

#: with no terminal (logs to a file, CI), a line per candidate in progress at most this often
HEARTBEAT_S = 30.0


def _train_steps(s, steps: int, desc: str, progress: bool, log=None, clock=time.perf_counter) -> tuple[int, bool]:
    """``steps`` optimiser steps of a prepared run on its (endlessly repeated, reshuffled) batches; (rows seen,
    whether the loss went non-finite — the loop stops there). A terminal gets a progress bar; without one
    (``log`` given), a line every :data:`HEARTBEAT_S` seconds says how far the candidate is."""
    import sys

    from tqdm.auto import tqdm

    from ..train.step import cycle_batches, train_step

    done, rows = 0, 0
    if steps <= 0:
        return rows, False
    s.model.train()
    bar = tqdm(total=steps, desc=desc, unit="step", leave=False, disable=None if progress else True)
    beat = log if (log is not None and bar.disable and not sys.stdout.isatty()) else None
    t0 = last = clock()
    for batch in cycle_batches(s.train_loader, s.sampler):
        st = train_step(s.step, batch)
        rows += batch["input_ids"].shape[0]
        if st.bad:
            bar.close()
            return rows, True
        if st.sync:
            done += 1
            bar.update(1)
            if done >= steps:
                break
            if beat is not None and clock() - last >= HEARTBEAT_S:
                last = clock()
                beat(f"    {desc}: {done}/{steps} steps, {last - t0:.0f}s")
    bar.close()
    return rows, False


def _cpu_state(model) -> dict:
    """The unwrapped model's weights on the CPU (``torch.compile``'s ``_orig_mod.`` prefix dropped)."""
    return {k.replace("_orig_mod.", ""): v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def head_start(build, data, cfg,  rows: int, steps: int, lr: float) -> tuple[dict, dict]:
    """The shared start of every candidate: the fresh model with its new heads fitted to the *frozen* encoder
    (linear probing first, as in LP-FT, Kumar et al. 2022). The pooled vectors of ``rows`` seeded training rows
    are computed once (eval mode, no gradient), then both heads are trained on them alone — ``steps`` full-batch
    AdamW steps at ``lr`` with the run's loss (class weights, smoothing, λs): milliseconds, not training steps.
    Without it, the candidates race a randomly initialised head, which a high LR wins in a short run whatever
    it does to a pretrained body. Returns the weights (CPU) and what it did."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from ..data.batching import SortedBatchSampler, make_collate, resolve_padding
    from ..train.device import free_memory, resolve_device
    from ..train.losses import loss_for_run

    t0 = time.perf_counter()
    t = cfg.train
    set_seed(t.seed)
    device = torch.device(resolve_device(t.device))
    model = build().to(device).eval()
    sub = data.train.subsample(rows, t.seed)
    loader = DataLoader(sub, batch_sampler=SortedBatchSampler(sub.lengths, t.eval_batch_size),
                        collate_fn=make_collate(data.pad_id, resolve_padding(t.padding, device.type), data.max_length))
    feats, y1, y2 = [], [], []
    with torch.no_grad():
        for batch in loader:
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            feats.append(model.pool(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask).float())
            y1.append(batch["labels_task1"].to(device))
            y2.append(batch["labels_task2"].to(device))
    x, y1, y2 = torch.cat(feats), torch.cat(y1), torch.cat(y2)
    features_s = time.perf_counter() - t0
    weights = [torch.tensor(w, dtype=torch.float32, device=device) for w in (data.weights_task1, data.weights_task2)]
    # the run's loss on the heads alone; learned task weights (uncertainty weighting) are the run's to learn: fixed λs
    fixed = dataclasses.replace(cfg, switches=dataclasses.replace(cfg.switches, task_weighting="fixed"))
    loss_fn = loss_for_run(fixed, *weights)
    heads = [model.head_task1, model.head_task2]
    opt = torch.optim.AdamW([q for h in heads for q in h.parameters()], lr=lr, weight_decay=t.weight_decay)
    first = last = math.nan
    for i in range(steps):
        total = loss_fn.terms(model.head_task1(x), model.head_task2(x), y1, y2)["total"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        first = float(total.detach()) if i == 0 else first
    with torch.no_grad():
        last = float(loss_fn.terms(model.head_task1(x), model.head_task2(x), y1, y2)["total"])
    state = _cpu_state(model)
    del model, x, feats
    free_memory(device.type)
    return state, {"rows": len(sub), "steps": steps, "lr": lr, "features_seconds": round(features_s, 2),
                   "seconds": round(time.perf_counter() - t0, 2), "train_loss_first": first,
                   "train_loss_last": last}


def train_trial(build, data, cfg, lr: float, steps: int, horizon: int, rung: int,
                progress: bool = True, start: dict | None = None, log=None) -> tuple[Trial, dict]:
    """One candidate: a fresh model (seeded, or ``start``'s weights: the same start for every LR), ``steps``
    optimiser steps of the schedule compressed to ``horizon`` steps, then the val subsample. Returns the trial
    and its timings."""
    from accelerate.utils import set_seed

    from ..train.device import free_memory
    from ..train.loop import predict_logits
    from ..train.setup import prepare_training
    from ..train.validation import val_metrics

    t0 = time.perf_counter()
    set_seed(cfg.train.seed)
    model = build()
    if start is not None:
        model.load_state_dict(start)
    s = prepare_training(model, data, cfg, base_lr=lr, schedule_steps=horizon)
    acc = s.accelerator
    setup_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    rows, diverged = _train_steps(s, steps, f"lr {lr:.0e}", progress, log)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    if diverged:
        metrics = {}
        score = loss = math.nan
    else:
        l1, l2 = predict_logits(acc, s.model, s.val_loader, len(data.val), desc="sweep eval")
        metrics = val_metrics(l1, l2, data.val.labels_task1, data.val.labels_task2, s.loss_fn)
        score, loss = metrics[cfg.select], metrics["val_loss_total"]
    eval_s = time.perf_counter() - t2
    device_type = acc.device.type
    del s, model, acc
    free_memory(device_type)
    trial = Trial(lr=lr, rung=rung, steps=steps, score=float(score), loss=float(loss), diverged=diverged,
                  metrics={k: float(v) for k, v in metrics.items()})
    return trial, {"setup_s": setup_s, "train_s": train_s, "train_rows": rows, "eval_s": eval_s,
                   "eval_rows": 0 if diverged else len(data.val)}


def _run_rungs(build, data, run_cfg, lrs, rungs: list[Rung], start: dict | None, progress: bool,
               log) -> tuple[list[Trial], dict]:
    """Every rung's candidates from the shared start (the survivors of each rung go on); the trials and the
    summed timings."""
    trials: list[Trial] = []
    timing = {"setup_s": 0.0, "train_s": 0.0, "train_rows": 0, "eval_s": 0.0, "eval_rows": 0}
    alive, horizon = sorted(lrs), rungs[-1].steps
    for i, rung in enumerate(rungs):
        this = []
        for lr in alive:
            trial, tm = train_trial(build, data, run_cfg, lr, rung.steps, horizon, i, progress, start, log)
            this.append(trial)
            for k in timing:
                timing[k] += tm[k]
            state = "diverged" if trial.diverged else f"{trial.score:.3f} (val loss {trial.loss:.3f})"
            log(f"  rung {i + 1}, {rung.steps:>4} steps: lr {lr:.1e} → {state}")
        trials += this
        if i + 1 < len(rungs):
            alive = sorted(survivors(this, rungs[i + 1].candidates))
    return trials, timing


def run(p: Params, paths: ToolPaths, cfg: SweepConfig, stage: str = "stage2", progress: bool = True,
        log=print) -> dict:
    from ..evaluate.plots import short_path
    from ..train.device import resolve_device
    from ..train.recipe import recipe

    cfg.validate()
    t_start = time.perf_counter()
    r = recipe(p, stage, paths.inputs(p))
    run_cfg, train_ds, val_ds, t = r.cfg, r.data.train, r.data.val, r.cfg.train
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise MissingInputError(f"{paths.tokenized if stage == 'stage2' else paths.prepared}: the sweep needs"
                                f" training and val rows (train {len(train_ds)}, val {len(val_ds)})")
    val_sub = val_ds.subsample(cfg.val_rows, t.seed)
    data = dataclasses.replace(r.data, val=val_sub)
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / t.batch_size) / t.grad_accum)
    run_steps = steps_per_epoch * t.epochs
    rungs = plan(len(cfg.lrs), run_steps, cfg)
    horizon = rungs[-1].steps
    log(f"twohead lr-find (sweep): {len(cfg.lrs)} LRs, rungs "
        + " → ".join(f"{g.candidates} × {g.steps} steps" for g in rungs)
        + f" = {plan_steps(rungs)} steps ({plan_steps(rungs) / run_steps:.0%} of the run's {run_steps});"
          f" scored on {len(val_sub)} val rows")
    if rungs[0].steps == cfg.min_steps and plan_steps(rungs) > cfg.budget * run_steps:
        log(f"  note: this run is short — every candidate trains at least {cfg.min_steps} steps (--min-steps), so"
            f" the sweep costs {plan_steps(rungs) / run_steps:.0%} of the run's steps, not --budget"
            f" {cfg.budget:.0%}; fewer --lrs cost less")
    start, head = None, {"rows": 0}
    head_rows = 2 * horizon * t.batch_size if cfg.head_rows is None else cfg.head_rows
    if head_rows:
        start, head = head_start(r.build, data, run_cfg, head_rows, cfg.head_steps, cfg.head_lr)
        ref, _ = train_trial(r.build, data, run_cfg, min(cfg.lrs), 0, horizon, -1, progress, start)
        head.update(score=ref.score, val_loss=ref.loss)
        log(f"  shared start: heads fitted to the frozen encoder on {head['rows']} rows ({head['seconds']:.0f}s;"
            f" train loss {head['train_loss_first']:.3f} → {head['train_loss_last']:.3f}); val {ref.score:.3f}"
            f" (val loss {ref.loss:.3f})")
    trials, timing = _run_rungs(r.build, data, run_cfg, cfg.lrs, rungs, start, progress, log)
    final = [tr for tr in trials if tr.rung == len(rungs) - 1]
    choice = choose(final, tuple(cfg.lrs), head.get("val_loss") if head_rows else None,
                    start_score=head.get("score") if head_rows else None, score_rows=len(val_sub))
    seconds = time.perf_counter() - t_start
    train_sps = timing["train_rows"] / max(timing["train_s"], 1e-9)
    eval_rps = timing["eval_rows"] / max(timing["eval_s"], 1e-9) if timing["eval_rows"] else math.nan
    run_estimate = t.epochs * (len(train_ds) / train_sps + (len(val_ds) / eval_rps if eval_rps == eval_rps else 0))
    suggested = choice["suggested_lr"]
    rule = "lowest val objective after the sweep's steps, from the heads-fitted start" if head_rows else \
        "lowest val objective after the sweep's steps"
    result = {
        "stage": stage, "method": "sweep", "lr_key": r.lr_key, "current_lr": r.current_lr,
        "suggested_lr": suggested, "rule": rule if suggested is not None else None,
        "edge": choice["edge"], "best_val_loss": choice["best_loss"], "best_score": choice["best_score"],
        "undecided": choice["undecided"], "gain_over_start": choice.get("gain_over_start"),
        "score": run_cfg.select,
        "command": None if suggested is None else f"dvc exp run -S {r.lr_key}={suggested:.2g}",
        "candidates": list(cfg.lrs), "eta": cfg.eta, "budget": cfg.budget, "head_start": head,
        "rungs": [{"candidates": g.candidates, "steps": g.steps} for g in rungs],
        "steps_trained": plan_steps(rungs), "run_steps": run_steps, "val_rows": len(val_sub),
        "rows": len(train_ds), "batch_size": t.batch_size, "device": resolve_device(t.device),
        "precision": t.precision, "seed": t.seed, "seconds": round(seconds, 2),
        "timing": {k: round(v, 2) if isinstance(v, float) else v for k, v in timing.items()},
        "run_seconds_estimate": round(run_estimate, 1),
        "cost_share_of_run": round(seconds / run_estimate, 4) if run_estimate > 0 else None,
        "trials": [{"lr": tr.lr, "rung": tr.rung + 1, "steps": tr.steps, "score": tr.score, "val_loss": tr.loss,
                    "diverged": tr.diverged, "metrics": tr.metrics} for tr in trials],
    }
    caption = (f"checkpoint {short_path(r.checkpoint)} | {stage} | {len(train_ds)} train rows, batch {t.batch_size},"
               f" LLRD {t.llrd:g}, {t.precision}, {result['device']} | {len(val_sub)} val rows, seed {t.seed} |"
               f" {seconds:.0f}s ≈ {result['cost_share_of_run'] or math.nan:.0%} of one run")
    plot(trials, choice, label(score_name(run_cfg.select)), paths.plot, head.get("score"), head.get("val_loss"),
         f"LR sweep ({r.lr_key} now {r.current_lr:g})", caption)
    write_json(paths.json, result, digits=METRIC_DIGITS)
    return result


# --- what it prints ---------------------------------------------------------------------------------------------

def main(p: Params, paths: ToolPaths, cfg: SweepConfig, stage: str, log=print) -> int:
    """Run the sweep (it logs each candidate as it finishes) and print its reading; status 1 with no suggestion."""
    r = run(p, paths, cfg, stage=stage, log=log)
    log(f"  {r['seconds']:.0f}s in all ≈ {r['cost_share_of_run']:.0%} of one {r['run_seconds_estimate']:.0f}s run"
        f" at the throughput measured here ({r['device']})")
    if r["undecided"]:
        more = round(min(1.0, 3 * r["budget"]), 3)
        log(f"  cannot decide at this budget: {r['undecided']}. Re-run with --budget {more:g} (≈"
            f" {3 * r['steps_trained'] // max(len(r['candidates']), 1)} steps per candidate), or train the"
            f" candidates in full (`dvc exp run -S {r['lr_key']}=…` per LR, then `twohead compare`); a random-init"
            " or barely pretrained encoder usually wants ~1e-3, a pretrained one 1e-5 … 1e-4")
        return 1
    if r["suggested_lr"] is None:
        log("  no suggestion: every candidate of the last rung diverged; try smaller --lrs")
        return 1
    log(f"  suggested {r['lr_key']} = {r['suggested_lr']:.2g}: {r['rule']} (val objective {r['best_val_loss']:.3f},"
        f" {r['score']} {r['best_score']:.3f}; {r['lr_key']} now {r['current_lr']:g})")
    if r["edge"]:
        log(f"  note: the {r['edge']} candidate won — the best LR may lie beyond it; widen --lrs and run again")
    log(f"  try it:  {r['command']}")
    log(f"  curve: {paths.plot}, figures: {paths.json}")
    return 0
