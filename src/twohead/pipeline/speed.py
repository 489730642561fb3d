"""``twohead speed``: the search of :mod:`twohead.experiments.speed` on the configured checkpoint, tokenized data
and device. Every setting trains a fresh model for a few seconds and is discarded: no checkpoint, state, metric
or DVC output of the pipeline is touched; only ``paths.speed`` (JSON) and ``paths.speed_plot`` (PNG) are
written."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from ..config.params import Params
from ..data.io import METRIC_DIGITS, write_json
from ..evaluate.plots import short_path
from ..experiments import speed as sp
from ..train.device import free_memory
from ..train.run import FitData, RunConfig
from .lr_find import LrFindPaths, stage_setup

WARMUP_STEPS = 3
MIN_TIMED_STEPS = 3


@dataclass(frozen=True)
class SpeedPaths:
    prepared: Path
    tokenized: Path
    demo_encoder: Path
    stage1_model: Path
    speed: Path
    speed_plot: Path

    def lr_find_paths(self) -> LrFindPaths:
        return LrFindPaths(self.prepared, self.tokenized, self.demo_encoder, self.stage1_model, self.speed,
                           self.speed_plot)


class Stepper:
    """One setting's training steps; ``step()`` returns (rows, real tokens) and waits for the device."""

    def step(self) -> tuple[int, int]:
        raise NotImplementedError

    def memory_mb(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class TrainStepper(Stepper):
    def __init__(self, build, data: FitData, run_cfg: RunConfig, setting: sp.Setting):
        from accelerate.utils import set_seed

        from ..train.device import reset_accelerator_state
        from ..train.setup import prepare_training

        reset_accelerator_state()  # each setting may use another precision
        t = replace(run_cfg.train, precision=setting.precision, batch_size=setting.batch_size,
                    fast_attention=setting.fast_attention, compile=setting.compile)
        set_seed(t.seed)
        self.s = prepare_training(build(), data, replace(run_cfg, train=t), validate=False)
        self.device = self.s.accelerator.device.type
        self.max_grad_norm = t.max_grad_norm
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._peak = 0.0
        self._batches = self._forever()

    def _forever(self):
        for n in itertools.count():
            self.s.sampler.passes = n
            yield from self.s.train_loader

    def step(self) -> tuple[int, int]:
        s, acc = self.s, self.s.accelerator
        batch = next(self._batches)
        with acc.accumulate(s.model):
            out = s.step.objective(s.model, batch)[2]
            acc.backward(out["total"])
            if acc.sync_gradients:
                acc.clip_grad_norm_(s.model.parameters(), self.max_grad_norm)
            s.optimizer.step()
            s.scheduler.step()
            s.optimizer.zero_grad(set_to_none=True)
        tokens = int(batch["attention_mask"].sum())   # a host sync: the step is done when this returns
        float(out["total"].detach())
        self._peak = max(self._peak, self._sample_memory())
        return int(batch["input_ids"].shape[0]), tokens

    def _sample_memory(self) -> float:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2 ** 20
        if self.device == "mps":
            return torch.mps.driver_allocated_memory() / 2 ** 20
        import psutil

        return psutil.Process().memory_info().rss / 2 ** 20

    def memory_mb(self) -> float | None:
        return self._peak or None

    def close(self) -> None:
        from ..train.device import reset_accelerator_state

        device = self.device
        del self.s, self._batches
        free_memory(device)
        reset_accelerator_state()  # whatever runs next in this process builds its own


def measure(make: Callable[[sp.Setting], Stepper], setting: sp.Setting, axis: str, slice_s: float, deadline: float,
            clock: Callable[[], float] = time.perf_counter, warmup: int = WARMUP_STEPS) -> sp.Measured:
    """Time one setting: ``warmup`` untimed steps, then timed steps until ``slice_s`` seconds are spent (at least
    MIN_TIMED_STEPS). Past ``deadline`` (the command's budget) the setting is skipped; an out-of-memory error is
    caught and reported, the device cache cleared."""
    m = sp.Measured(setting, axis)
    stepper = None
    try:
        if clock() >= deadline:
            m.status, m.reason = "skipped", "the time budget was spent"
            return m
        t0 = clock()
        stepper = make(setting)
        for _ in range(warmup):
            stepper.step()
            if clock() >= deadline:
                m.status, m.reason = "skipped", f"warm-up took {clock() - t0:.0f}s, past the time budget"
                m.warmup_seconds = clock() - t0
                return m
        m.warmup_seconds = clock() - t0
        t1 = clock()
        while True:
            rows, tokens = stepper.step()
            m.steps, m.rows, m.tokens = m.steps + 1, m.rows + rows, m.tokens + tokens
            now = clock()
            if m.steps >= MIN_TIMED_STEPS and now - t1 >= slice_s:
                break
            if now >= deadline:
                if m.steps < MIN_TIMED_STEPS:
                    m.status, m.reason = "skipped", f"{m.steps} timed step(s) before the time budget ran out"
                break
        m.seconds = clock() - t1
        m.peak_memory_mb = stepper.memory_mb()
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the table, the search goes on
        if sp.is_oom(exc):
            m.status, m.reason = "oom", "out of memory"
        else:
            m.status, m.reason = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        if stepper is not None:
            stepper.close()
        elif m.status in ("oom", "failed"):
            free_memory("cuda" if torch.cuda.is_available() else "cpu")
    return m


def bf16_probe(device_type: str) -> tuple[bool, str]:
    if device_type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, "" if ok else "this GPU has no bf16"
    if device_type == "mps":
        try:
            x = torch.ones(4, 4, device="mps", dtype=torch.bfloat16)
            float((x @ x).sum())
            return True, ""
        except Exception:  # noqa: BLE001
            return False, "bf16 is not supported by this macOS / Metal (needs macOS 14 or later)"
    return True, ""


def search(make: Callable[[sp.Setting], Stepper], base: sp.Setting, device_type: str, seconds: float,
           batch_sizes: list[int], deberta: bool, try_compile: bool, bf16: tuple[bool, str],
           clock: Callable[[], float] = time.perf_counter, log=print) -> list[sp.Measured]:
    """The one-axis-at-a-time search and the combination of the winners, within ``seconds``."""
    start = clock()
    deadline = start + seconds
    plan: list[tuple[str, sp.Setting]] = [("baseline", base)]
    plan += [("precision", replace(base, precision=x)) for x in sp.precisions(device_type, bf16[0])
             if x != base.precision]
    if deberta:
        plan.append(("fast_attention", replace(base, fast_attention=not base.fast_attention)))
    if try_compile or base.compile:
        plan.append(("compile", replace(base, compile=not base.compile)))
    ladder = [("batch_size", replace(base, batch_size=b)) for b in batch_sizes]
    rows: list[sp.Measured] = []
    notes = []
    if not bf16[0]:
        notes.append(sp.Measured(replace(base, precision="bf16"), "precision", "skipped", bf16[1]))
    if not try_compile and not base.compile:
        notes.append(sp.Measured(replace(base, compile=True), "compile", "skipped",
                                 f"not tried on {device_type} (slow to compile there; add --compile)"))
    total = len(plan) + len(ladder) + 2

    def run(axis: str, s: sp.Setting) -> sp.Measured:
        left = max(deadline - clock(), 0.0)
        remaining = total - len(rows)
        # the configured setting is always measured (everything is compared with it), whatever the budget
        m = measure(make, s, axis, slice_s=max(0.5, 0.6 * left / max(remaining, 1)),
                    deadline=math.inf if axis == "baseline" else deadline, clock=clock)
        m.flags = sp.flags(s, base)
        rows.append(m)
        log(f"  {axis:<14} {s.name():<58} " + (f"{m.samples_per_s:8.1f} samples/s" if m.status == "ok"
                                              else f"{m.status}: {m.reason}"))
        return m

    for axis, s in plan:
        run(axis, s)
    up_blocked = False
    for axis, s in ladder:
        if s.batch_size > base.batch_size and up_blocked:
            rows.append(sp.Measured(s, axis, "skipped", "a smaller batch did not fit", flags=sp.flags(s, base)))
            continue
        m = run(axis, s)
        up_blocked = up_blocked or (m.status == "oom" and s.batch_size > base.batch_size)
    best = sp.combine(base, rows)
    if best not in [m.setting for m in rows if m.status == "ok"]:
        run("combined", best)
    run("baseline again", base)  # the same setting at the end: how much the machine drifted meanwhile
    return rows + notes


def eval_speed(build, data: FitData, run_cfg: RunConfig, precision: str, batch_sizes: list[int],
               seconds: float, clock=time.perf_counter) -> dict[int, float]:
    """Eval rows/s (no grad, sorted batches) at each batch size, about ``seconds`` each (at least one batch)."""
    from torch.utils.data import DataLoader

    from ..data.batching import SortedBatchSampler, make_collate
    from ..train.device import make_accelerator, reset_accelerator_state

    reset_accelerator_state()
    acc = make_accelerator(run_cfg.train.device, precision, 1)
    model = acc.prepare(build())
    model.eval()
    out = {}
    for bs in batch_sizes:
        loader = DataLoader(data.val, batch_sampler=SortedBatchSampler(data.val.lengths, bs),
                            collate_fn=make_collate(data.pad_id))
        rows, t0 = 0, clock()
        try:
            with torch.inference_mode(), acc.autocast():
                for batch in loader:
                    logits1, _ = model(batch["input_ids"].to(acc.device), batch["attention_mask"].to(acc.device))
                    float(logits1.float().sum())
                    rows += batch["input_ids"].shape[0]
                    if clock() - t0 >= seconds:
                        break
            out[bs] = rows / max(clock() - t0, 1e-9)
        except Exception as exc:  # noqa: BLE001
            if not sp.is_oom(exc):
                raise
            out[bs] = math.nan
            free_memory(acc.device.type)
    del model
    free_memory(acc.device.type)
    reset_accelerator_state()
    return out


def run(p: Params, paths: SpeedPaths, stage: str = "stage2", seconds: float = 120.0,
        batch_sizes: list[int] | None = None, try_compile: bool | None = None, log=print) -> dict:
    from ..config.errors import ParamsError
    from ..train.device import resolve_device

    if seconds <= 0:
        raise ParamsError(f"speed: --seconds must be > 0 (got {seconds:g})")
    t_start = time.perf_counter()
    run_cfg, train_ds, val_ds, build, tokenizer, w1, w2, key = stage_setup(p, paths.lr_find_paths(), stage, None,
                                                                           with_val=True)
    t = run_cfg.train
    device_type = resolve_device(t.device)
    data = FitData(train_ds, val_ds, w1, w2, tokenizer.pad_token_id)
    base = sp.Setting(t.precision, t.batch_size, t.fast_attention, t.compile)
    ckpt = p.stage1.base_model if stage == "stage1" else p.model.stage1_checkpoint
    deberta = _is_deberta(ckpt)
    try_compile = device_type == "cuda" if try_compile is None else try_compile
    bf16 = bf16_probe(device_type)
    log(f"twohead speed: {stage} on {device_type}, checkpoint {ckpt}, {len(train_ds)} train rows;"
        f" ~{seconds:.0f}s of measurement")

    def make(s: sp.Setting) -> Stepper:
        return TrainStepper(build, data, run_cfg, s)

    rows = search(make, base, device_type, 0.85 * seconds, sp.batch_ladder(t.batch_size, batch_sizes), deberta,
                  try_compile, bf16, log=log)
    ok = [m for m in rows if m.status == "ok"]
    top_precision = (sp.fastest(rows) or sp.Measured(base, "baseline")).setting.precision
    eval_sizes = sorted({t.eval_batch_size, 2 * t.eval_batch_size})
    evals = eval_speed(build, data, run_cfg, top_precision, eval_sizes, max(0.05 * seconds, 1.0)) if len(val_ds) \
        else {}
    eval_rps = evals.get(t.eval_batch_size, math.nan)
    base_m = sp.fastest(rows, lambda m: m.axis == "baseline")
    base_sps = base_m.samples_per_s if base_m else math.nan
    for m in rows:
        compile_s = max(m.warmup_seconds - (base_m.warmup_seconds if base_m else 0.0), 0.0) if m.setting.compile \
            else 0.0
        m.projected = sp.projection(len(train_ds), len(val_ds), t.epochs, m.samples_per_s, eval_rps, compile_s)
    trunc = sp.truncation(train_ds.lengths, p.tokenize.max_length) if stage == "stage2" else None
    rec = sp.recommend(base, rows)
    result = {
        "stage": stage, "device": device_type, "checkpoint": str(ckpt), "train_rows": len(train_ds),
        "val_rows": len(val_ds), "epochs": t.epochs, "seconds": round(time.perf_counter() - t_start, 1),
        "budget_seconds": seconds, "configured": base.name(), "configured_samples_per_s": base_sps,
        "settings": [{"axis": m.axis, "setting": m.setting.name(), **{k: getattr(m.setting, k) for k in
                                                                      ("precision", "batch_size", "fast_attention",
                                                                       "compile")},
                      "status": m.status, "reason": m.reason, "samples_per_s": m.samples_per_s,
                      "tokens_per_s": m.tokens_per_s, "timed_steps": m.steps, "warmup_seconds": m.warmup_seconds,
                      "peak_memory_mb": m.peak_memory_mb, "projected_run_seconds": m.projected, "flags": m.flags}
                     for m in rows],
        "eval_rows_per_s": {str(k): v for k, v in evals.items()}, "eval_precision": top_precision,
        "truncation": trunc, "recommendation": rec, "drift": sp.drift(rows),
        "table": sp.table(rows, base_sps),
    }
    caption = (f"{stage} | checkpoint {short_path(ckpt)} | {device_type} | {len(train_ds)} train rows,"
               f" {t.epochs} epochs | {result['seconds']:.0f}s of measurement")
    sp.plot(rows, paths.speed_plot, f"Training speed on this machine ({device_type})", caption)
    write_json(paths.speed, result, digits=METRIC_DIGITS)
    del ok
    return result


def _is_deberta(ckpt) -> bool:
    import json

    try:
        cfg = json.loads((Path(ckpt) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(cfg.get("model_type", "")).startswith("deberta")

