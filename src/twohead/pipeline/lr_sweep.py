"""``twohead lr-find`` (the default method): the LR sweep of :mod:`twohead.experiments.lr_sweep` on the stage's
data, checkpoint, loss, LLRD groups, batch size, precision and device. Every candidate is a fresh model, trained
and discarded: no checkpoint, state, metric or DVC output of the pipeline is touched; only the JSON and PNG named
in dvc.yaml (``paths.lr_find``, ``paths.lr_find_plot``) are written. AWP does not apply (it starts at a later
epoch by design); the other Stage-2 switches do.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import torch

from ..config.params import Params
from ..config.schema import label
from ..data.io import METRIC_DIGITS, write_json
from ..evaluate.plots import short_path
from ..experiments.lr_sweep import SweepConfig, Trial, choose, plan, plan_steps, plot, survivors
from ..train.device import free_memory
from ..train.loop import predict
from ..train.run import FitData, RunConfig
from ..train.setup import prepare_training
from ..train.validation import val_metrics
from .lr_find import LrFindPaths, stage_setup

#: the history column each stage keeps its best epoch by, and its vocabulary name (for labels)
SCORES = {"val_acc_task2": "task2_acc", "val_acc_task1": "task1_acc"}


def _train_steps(s, max_grad_norm: float, steps: int, desc: str, progress: bool) -> tuple[int, bool]:
    """``steps`` optimiser steps of a prepared run on its (endlessly repeated, reshuffled) batches; (rows seen,
    whether the loss went non-finite — the loop stops there)."""
    from tqdm.auto import tqdm

    def batches():
        for n in itertools.count():  # as many passes as the steps need, reshuffled each pass (as in the run)
            s.sampler.passes = n
            yield from s.train_loader

    acc, model = s.accelerator, s.model
    done, rows, diverged = 0, 0, False
    if steps <= 0:
        return rows, diverged
    model.train()
    bar = tqdm(total=steps, desc=desc, unit="step", leave=False, disable=None if progress else True)
    for batch in batches():
        with acc.accumulate(model):
            out = s.step.objective(model, batch)[2]
            acc.backward(out["total"])
            if acc.sync_gradients:
                acc.clip_grad_norm_(model.parameters(), max_grad_norm)
            s.optimizer.step()
            s.scheduler.step()
            s.optimizer.zero_grad(set_to_none=True)
        rows += batch["input_ids"].shape[0]
        if not math.isfinite(float(out["total"].detach())):  # one host sync per step, as the range test
            diverged = True
            break
        if acc.sync_gradients:
            done += 1
            bar.update(1)
            if done >= steps:
                break
    bar.close()
    return rows, diverged


def _cpu_state(model) -> dict:
    """The unwrapped model's weights on the CPU (``torch.compile``'s ``_orig_mod.`` prefix dropped)."""
    return {k.replace("_orig_mod.", ""): v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def head_start(build, data: FitData, run_cfg: RunConfig, rows: int, steps: int, lr: float) -> tuple[dict, dict]:
    """The shared start of every candidate: the fresh model with its new heads fitted to the *frozen* encoder
    (linear probing first, as in LP-FT, Kumar et al. 2022). The pooled vectors of ``rows`` seeded training rows
    are computed once (eval mode, no gradient), then both heads are trained on them alone — ``steps`` full-batch
    AdamW steps at ``lr`` with the run's loss (class weights, smoothing, λs): milliseconds, not training steps.
    Without it, the candidates race a randomly initialised head, which a high LR wins in a short run whatever
    it does to a pretrained body. Returns the weights (CPU) and what it did."""
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from ..data.batching import SortedBatchSampler, make_collate
    from ..train.device import resolve_device
    from ..train.losses import TwoTaskLoss

    t0 = time.perf_counter()
    t = run_cfg.train
    set_seed(t.seed)
    device = torch.device(resolve_device(t.device))
    model = build().to(device).eval()
    sub = data.train.subsample(rows, t.seed)
    loader = DataLoader(sub, batch_sampler=SortedBatchSampler(sub.lengths, t.eval_batch_size),
                        collate_fn=make_collate(data.pad_id))
    feats, y1, y2 = [], [], []
    with torch.no_grad():
        for batch in loader:
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            feats.append(model.pool(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask).float())
            y1.append(batch["labels_binary"].to(device))
            y2.append(batch["labels_category"].to(device))
    x, y1, y2 = torch.cat(feats), torch.cat(y1), torch.cat(y2)
    features_s = time.perf_counter() - t0
    weights = [torch.tensor(w, dtype=torch.float32, device=device) for w in (data.weights_task1, data.weights_task2)]
    # the run's loss on the heads alone; learned task weights (uncertainty weighting) are the run's to learn: fixed λs
    loss_fn = TwoTaskLoss.from_params(*weights, dataclasses.replace(run_cfg.loss, weighting="fixed"), run_cfg.hier,
                                      run_cfg.reg)
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


def train_trial(build, data: FitData, run_cfg: RunConfig, lr: float, steps: int, horizon: int, rung: int,
                progress: bool = True, start: dict | None = None) -> tuple[Trial, dict]:
    """One candidate: a fresh model (seeded, or ``start``'s weights: the same start for every LR), ``steps``
    optimiser steps of the schedule compressed to ``horizon`` steps, then the val subsample. Returns the trial
    and its timings."""
    from accelerate.utils import set_seed

    t = run_cfg.train
    t0 = time.perf_counter()
    set_seed(t.seed)
    model = build()
    if start is not None:
        model.load_state_dict(start)
    s = prepare_training(model, data, run_cfg, base_lr=lr, schedule_steps=horizon)
    acc, model = s.accelerator, s.model
    setup_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    rows, diverged = _train_steps(s, t.max_grad_norm, steps, f"lr {lr:.0e}", progress)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    if diverged:
        metrics = {}
        score = loss = math.nan
    else:
        l1, l2 = predict(acc, model, s.val_loader, len(data.val), desc="sweep eval")
        metrics = val_metrics(l1, l2, data.val.labels_binary, data.val.labels_category, s.loss_fn)
        score, loss = metrics[run_cfg.select], metrics["val_loss_total"]
    eval_s = time.perf_counter() - t2
    device_type = acc.device.type
    del s, model, acc
    free_memory(device_type)
    trial = Trial(lr=lr, rung=rung, steps=steps, score=float(score), loss=float(loss), diverged=diverged,
                  metrics={k: float(v) for k, v in metrics.items()})
    return trial, {"setup_s": setup_s, "train_s": train_s, "train_rows": rows, "eval_s": eval_s,
                   "eval_rows": 0 if diverged else len(data.val)}


def run(p: Params, paths: LrFindPaths, cfg: SweepConfig, stage: str = "stage2", progress: bool = True,
        log=print) -> dict:
    cfg.validate()
    t_start = time.perf_counter()
    run_cfg, train_ds, val_ds, build, tokenizer, w1, w2, key = stage_setup(p, paths, stage, None, with_val=True)
    t = run_cfg.train
    if len(train_ds) == 0 or len(val_ds) == 0:
        from ..config.errors import MissingInputError
        raise MissingInputError(f"{paths.tokenized if stage == 'stage2' else paths.prepared}: the sweep needs"
                                f" training and val rows (train {len(train_ds)}, val {len(val_ds)})")
    val_sub = val_ds.subsample(cfg.val_rows, t.seed)
    data = FitData(train_ds, val_sub, w1, w2, tokenizer.pad_token_id)
    steps_per_epoch = math.ceil(math.ceil(len(train_ds) / t.batch_size) / t.grad_accum)
    run_steps = steps_per_epoch * t.epochs
    rungs = plan(len(cfg.lrs), run_steps, cfg)
    horizon = rungs[-1].steps
    log(f"twohead lr-find (sweep): {len(cfg.lrs)} LRs, rungs "
        + " → ".join(f"{r.candidates} × {r.steps} steps" for r in rungs)
        + f" = {plan_steps(rungs)} steps ({plan_steps(rungs) / run_steps:.0%} of the run's {run_steps});"
          f" scored on {len(val_sub)} val rows")
    start, head = None, {"rows": 0}
    head_rows = 2 * horizon * t.batch_size if cfg.head_rows is None else cfg.head_rows
    if head_rows:
        start, head = head_start(build, data, run_cfg, head_rows, cfg.head_steps, cfg.head_lr)
        ref, _ = train_trial(build, data, run_cfg, min(cfg.lrs), 0, horizon, -1, progress, start)
        head.update(score=ref.score, val_loss=ref.loss)
        log(f"  shared start: heads fitted to the frozen encoder on {head['rows']} rows ({head['seconds']:.0f}s;"
            f" train loss {head['train_loss_first']:.3f} → {head['train_loss_last']:.3f}); val {ref.score:.3f}"
            f" (val loss {ref.loss:.3f})")
    trials: list[Trial] = []
    timing = {"setup_s": 0.0, "train_s": 0.0, "train_rows": 0, "eval_s": 0.0, "eval_rows": 0}
    alive = sorted(cfg.lrs)
    for r, rung in enumerate(rungs):
        this = []
        for lr in alive:
            trial, tm = train_trial(build, data, run_cfg, lr, rung.steps, horizon, r, progress, start)
            this.append(trial)
            for k in timing:
                timing[k] += tm[k]
            state = "diverged" if trial.diverged else f"{trial.score:.3f} (val loss {trial.loss:.3f})"
            log(f"  rung {r + 1}, {rung.steps:>4} steps: lr {lr:.1e} → {state}")
        trials += this
        if r + 1 < len(rungs):
            alive = sorted(survivors(this, rungs[r + 1].candidates))
    final = [tr for tr in trials if tr.rung == len(rungs) - 1]
    choice = choose(final, tuple(cfg.lrs))
    seconds = time.perf_counter() - t_start
    train_sps = timing["train_rows"] / max(timing["train_s"], 1e-9)
    eval_rps = timing["eval_rows"] / max(timing["eval_s"], 1e-9) if timing["eval_rows"] else math.nan
    run_estimate = t.epochs * (len(train_ds) / train_sps + (len(val_ds) / eval_rps if eval_rps == eval_rps else 0))
    suggested = choice["suggested_lr"]
    score_name = SCORES.get(run_cfg.select, run_cfg.select)
    rule = "lowest val objective after the sweep's steps, from the heads-fitted start" if head_rows else \
        "lowest val objective after the sweep's steps"
    result = {
        "stage": stage, "method": "sweep", "lr_key": key, "current_lr": p.stage1.lr if stage == "stage1" else t.lr,
        "suggested_lr": suggested, "rule": rule if suggested is not None else None,
        "edge": choice["edge"], "best_val_loss": choice["best_loss"], "best_score": choice["best_score"],
        "score": run_cfg.select,
        "command": None if suggested is None else f"dvc exp run -S {key}={suggested:.2g}",
        "candidates": list(cfg.lrs), "eta": cfg.eta, "budget": cfg.budget, "head_start": head,
        "rungs": [{"candidates": r.candidates, "steps": r.steps} for r in rungs],
        "steps_trained": plan_steps(rungs), "run_steps": run_steps, "val_rows": len(val_sub),
        "rows": len(train_ds), "batch_size": t.batch_size, "device": str(_device(t.device)),
        "precision": t.precision, "seed": t.seed, "seconds": round(seconds, 2),
        "timing": {k: round(v, 2) if isinstance(v, float) else v for k, v in timing.items()},
        "run_seconds_estimate": round(run_estimate, 1),
        "cost_share_of_run": round(seconds / run_estimate, 4) if run_estimate > 0 else None,
        "trials": [{"lr": tr.lr, "rung": tr.rung + 1, "steps": tr.steps, "score": tr.score, "val_loss": tr.loss,
                    "diverged": tr.diverged, "metrics": tr.metrics} for tr in trials],
    }
    ckpt = p.stage1.base_model if stage == "stage1" else p.model.stage1_checkpoint
    caption = (f"checkpoint {short_path(ckpt)} | {stage} | {len(train_ds)} train rows, batch {t.batch_size},"
               f" LLRD {t.llrd:g}, {t.precision}, {result['device']} | {len(val_sub)} val rows, seed {t.seed} |"
               f" {seconds:.0f}s ≈ {result['cost_share_of_run'] or math.nan:.0%} of one run")
    plot(trials, choice, label(score_name), paths.lr_find_plot, head.get("score"), head.get("val_loss"),
         f"LR sweep ({key} now {result['current_lr']:g})", caption)
    write_json(paths.lr_find, result, digits=METRIC_DIGITS)
    return result


def _device(name: str):
    from ..train.device import resolve_device

    return resolve_device(name)

