"""``twohead speed``: which precision, batch size, ``train.fast_attention`` and ``train.compile`` train fastest on
*this* machine, measured in about two minutes, and what each changes besides speed.

The search (one axis at a time from the configured run, then the winners together — a full grid would not fit
the budget):

1. the configured settings (the baseline);
2. each other precision the device supports (fp32 / bf16 / fp16: fp16 only on a GPU; bf16 on MPS only where the
   OS's Metal supports it — probed, and said when not);
3. ``fast_attention`` toggled (DeBERTa-v2/v3 encoders only: it changes nothing elsewhere); ``padding`` toggled
   (buckets ↔ longest: few batch shapes vs the least padding); on MPS / CUDA ``empty_cache_steps`` (0 ↔ 50);
4. ``compile`` toggled (tried by default on CUDA only; on CPU/MPS with ``--compile``: it is slow to compile
   there and rarely faster), its compile time reported separately and paid once per run;
5. batch sizes ×2, ×4, … of the configured one until one does not fit (the out-of-memory error is caught and
   the device cache cleared: reported, never a crash), plus ÷2;
6. the fastest value of each axis together.

Each setting: a fresh model with the run's loss, LLRD groups and AdamW on real length-grouped batches of the
tokenized training rows; warm-up steps (not timed; with compile, the compile) then timed optimiser steps
(forward + backward + clip + step) until the setting's share of ``--seconds`` is spent. Samples/s, real
(non-pad) tokens/s, and memory: on a GPU the most allocated / reserved (MPS: driver-allocated) seen after a
step, on the CPU the process's RSS, sampled after each step. Eval rows/s at ``train.eval_batch_size`` (and ×2)
under the fastest precision. The projection of the configured run: epochs × (train rows ÷ samples/s + val rows ÷
eval rows/s) (+ compile time).

What changes results, not only speed (flagged in the table and the recommendation):

* bf16 / fp16: another numeric format (bf16: 8-bit mantissa) — compare val within noise (``twohead compare``)
  before adopting;
* a batch size other than the configured one: ``train.lr`` was chosen at the configured batch size (the recipe's
  at 32) — re-run ``twohead lr-find`` at the new one; nothing is rescaled silently;
* ``tokenize.max_length``: the share of training rows it cuts, from the tokenized lengths (a shorter length is
  faster and cuts more);
* ``fast_attention`` and ``compile`` give the same values up to float rounding.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..config.errors import ParamsError
from ..config.params import Params
from ..data.io import METRIC_DIGITS, write_json
from .common import ToolPaths

WARMUP_STEPS = 3
MIN_TIMED_STEPS = 3


@dataclass
class SpeedConfig:
    """The search's settings; the documented fields are ``twohead speed``'s flags."""

    seconds: float = field(default=120.0, metadata={"help": "measurement budget in seconds"})
    batch_sizes: tuple[int, ...] = field(default=(), metadata={
        "help": "batch sizes to try", "default_text": "configured ÷2, ×2, ×4, ×8", "metavar": "N"})
    compile: bool = field(default=False, metadata={"help": "also try train.compile (tried by default on CUDA only)"})

    def validate(self) -> None:
        if not self.seconds > 0:
            raise ParamsError(f"speed: --seconds must be > 0 (got {self.seconds:g})")
        if any(b < 1 for b in self.batch_sizes):
            raise ParamsError(f"speed: --batch-sizes must be >= 1 (got {list(self.batch_sizes)})")


#: the ``train.*`` keys a setting sets
SETTING_KEYS = ("precision", "batch_size", "fast_attention", "compile", "padding", "empty_cache_steps")

#: the cache cadence tried on MPS / CUDA when the run clears no cache
CACHE_STEPS_TRIED = 50


@dataclass(frozen=True)
class Setting:
    precision: str
    batch_size: int
    fast_attention: bool
    compile: bool
    padding: str = "buckets"          # resolved (buckets | longest)
    empty_cache_steps: int = 0

    def name(self) -> str:
        cache = f", empty_cache every {self.empty_cache_steps}" if self.empty_cache_steps else ""
        return (f"{self.precision}, batch {self.batch_size}, fast_attention {'on' if self.fast_attention else 'off'},"
                f" compile {'on' if self.compile else 'off'}, padding {self.padding}{cache}")

    def diff(self, base: Setting) -> dict:
        """``train.*`` keys whose value differs from ``base`` (what ``dvc exp run -S`` must set)."""
        return {k: getattr(self, k) for k in SETTING_KEYS if getattr(self, k) != getattr(base, k)}


@dataclass
class Measured:
    setting: Setting
    axis: str                       # baseline | precision | fast_attention | compile | batch_size | combined
    status: str = "ok"              # ok | oom | skipped | failed
    reason: str = ""
    steps: int = 0
    seconds: float = 0.0            # timed steps only
    rows: int = 0
    tokens: int = 0
    warmup_seconds: float = 0.0     # the untimed first steps (with compile: the compile)
    peak_memory_mb: float | None = None
    memory: dict = field(default_factory=dict)  # GPU: the most allocated / reserved MB seen after a step
    flags: list[str] = field(default_factory=list)
    projected: float = math.nan     # the configured run's wall-clock at this setting's throughput, seconds

    @property
    def samples_per_s(self) -> float:
        return self.rows / self.seconds if self.status == "ok" and self.seconds > 0 else math.nan

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.status == "ok" and self.seconds > 0 else math.nan


def is_oom(exc: BaseException) -> bool:
    """A device out-of-memory error (CUDA's ``OutOfMemoryError``, MPS's "MPS backend out of memory", a CPU
    allocation failure)."""
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def precisions(device: str, bf16_ok: bool) -> list[str]:
    """The precisions worth timing on ``device`` (``bf16_ok``: the device's bf16 probe passed)."""
    out = ["fp32"]
    if bf16_ok:
        out.append("bf16")
    if device in ("cuda", "mps"):
        out.append("fp16")
    return out


def batch_ladder(configured: int, explicit: list[int] | None, limit: int = 8) -> list[int]:
    """Candidate batch sizes: ``explicit`` if given, else configured ÷2 and ×2, ×4, … (``limit`` × at most)."""
    if explicit:
        return sorted(set(explicit))
    up = [configured * 2 ** k for k in range(1, int(math.log2(limit)) + 1)]
    return sorted({max(configured // 2, 1), *up} - {configured})


def short_flags(s: Setting, base: Setting) -> list[str]:
    """The table's one-word version of :func:`flags`."""
    out = []
    if s.precision != "fp32":
        out.append("numerics")
    if s.batch_size != base.batch_size:
        out.append("LR tuned at another batch")
    return out


def flags(s: Setting, base: Setting, recipe_batch: int = 32) -> list[str]:
    out = []
    if s.precision != "fp32":
        out.append(f"{s.precision}: other numerics — compare val within noise before adopting")
    if s.batch_size != base.batch_size:
        out.append(f"batch {s.batch_size}: train.lr was chosen at batch {base.batch_size} (the recipe's at"
                   f" {recipe_batch}) — re-run `twohead lr-find` at the new batch size")
    return out


def projection(train_rows: int, val_rows: int, epochs: int, samples_per_s: float, eval_rows_per_s: float,
               compile_s: float = 0.0) -> float:
    """Projected wall-clock (seconds) of the configured run at these throughputs."""
    if not (samples_per_s > 0):
        return math.nan
    evals = val_rows / eval_rows_per_s if eval_rows_per_s > 0 else 0.0
    return epochs * (train_rows / samples_per_s + evals) + compile_s


def truncation(lengths: np.ndarray, max_length: int) -> dict:
    """Share of rows cut at ``max_length`` (rows tokenized to exactly that length were cut), and what shorter
    lengths would cut."""
    lengths = np.asarray(lengths)
    if not len(lengths):
        return {"max_length": max_length, "cut_share": 0.0, "at": {}}
    at = {int(L): float((lengths >= L).mean()) for L in (64, 128, 256, 512) if L < max_length}
    return {"max_length": max_length, "cut_share": float((lengths >= max_length).mean()), "at": at}


def fastest(rows: list[Measured], where=lambda m: True) -> Measured | None:
    ok = [m for m in rows if m.status == "ok" and where(m)]
    return max(ok, key=lambda m: m.samples_per_s) if ok else None


def combine(base: Setting, rows: list[Measured]) -> Setting:
    """The fastest value of each axis, together (an axis not measured keeps the baseline's value)."""
    best = {}
    for axis in ("precision", "fast_attention", "compile", "batch_size", "padding", "empty_cache_steps"):
        m = fastest(rows, lambda m, a=axis: m.axis in (a, "baseline", "baseline again"))
        best[axis] = getattr(m.setting if m else base, axis)
    return replace(base, **best)


def command(s: Setting, base: Setting) -> str | None:
    d = s.diff(base)
    if not d:
        return None
    fmt = {True: "true", False: "false"}
    return "dvc exp run " + " ".join(f"-S train.{k}={fmt.get(v, v)}" for k, v in d.items())


#: the baseline may move this much between its first and its last measurement before the search is called unreliable
MAX_DRIFT = 0.10


def reliability(rows: list[Measured]) -> tuple[bool, str]:
    """Whether the machine held still while the settings were timed: the baseline is measured first and again at
    the end; a drift beyond :data:`MAX_DRIFT`, or a baseline not re-measured, makes every comparison unreliable."""
    d = drift(rows)
    if d != d:
        return False, "the configured settings were not re-measured at the end, so the machine's drift is unknown"
    if abs(d) > MAX_DRIFT:
        first = next(m for m in rows if m.axis == "baseline").samples_per_s
        again = next(m for m in rows if m.axis == "baseline again").samples_per_s
        return False, (f"the machine drifted {d:+.0%} during the search (the configured settings: {first:.1f} then"
                       f" {again:.1f} samples/s; more than ±{MAX_DRIFT:.0%}): something else was running")
    return True, ""


def recommend(base: Setting, rows: list[Measured], min_gain: float = 0.05) -> dict:
    """``safe``: the fastest setting whose results match the configured run's (its precision and batch size,
    only the neutral switches changed); ``fastest``: the fastest of all, with what it changes. A gain within
    the noise — the baseline's own drift over the search as measured, at least ``min_gain`` — is no reason to
    change: the configured setting is kept. When the machine did not hold still (:func:`reliability`) nothing is
    recommended: ``reliable`` is False and ``unreliable_because`` says why."""
    base_ms = [m for m in rows if m.axis in ("baseline", "baseline again") and m.status == "ok"]
    ref = float(np.mean([m.samples_per_s for m in base_ms])) if base_ms else math.nan
    measured = drift(rows)
    noise = max(min_gain, abs(measured)) if measured == measured else math.nan
    reliable, why = reliability(rows)
    same = fastest(rows, lambda m: m.setting.precision == base.precision and m.setting.batch_size == base.batch_size)
    top = fastest(rows)
    out = {"noise": noise, "measured_drift": measured, "noise_floor": min_gain, "reliable": reliable,
           "unreliable_because": why, "configured_samples_per_s": ref}
    for key, m in (("safe", same), ("fastest", top)):
        if m is None:
            out[key] = None
            continue
        gain = m.samples_per_s / ref if ref == ref and ref > 0 else math.nan
        keep = not reliable or not (gain > 1 + noise)
        s = base if keep else m.setting
        out[key] = {"setting": s.name(), "samples_per_s": ref if keep else m.samples_per_s,
                    "speedup": 1.0 if keep else gain, "command": command(s, base), "flags": flags(s, base),
                    "kept_configured": keep,
                    "best_measured": {"setting": m.setting.name(), "speedup": gain}}
    return out


def m_base(rows: list[Measured]) -> Setting:
    return next(m.setting for m in rows if m.axis == "baseline")


def drift(rows: list[Measured]) -> float:
    """The last baseline measurement ÷ the first − 1 (the machine's drift over the search; NaN if either
    failed): differences smaller than this are within noise."""
    first = next((m for m in rows if m.axis == "baseline"), None)
    again = next((m for m in rows if m.axis == "baseline again"), None)
    if first is None or again is None:
        return math.nan
    return again.samples_per_s / first.samples_per_s - 1


def table(rows: list[Measured], base_sps: float) -> str:
    gpu = any(m.memory for m in rows)
    head = "memory MB (allocated / reserved)" if gpu else "peak RSS MB"
    lines = [f"| axis | setting | samples/s | × configured | tokens/s | {head} | warm-up s | status / flags |",
             "|---|---|---|---|---|---|---|---|"]
    for m in rows:
        sps = m.samples_per_s
        rel = f"{sps / base_sps:.2f}" if sps == sps and base_sps == base_sps and base_sps > 0 else "-"
        mem = "-" if m.peak_memory_mb is None else f"{m.peak_memory_mb:,.0f}"
        if m.memory:
            mem = f"{m.memory['allocated_mb']:,.0f} / {m.memory['reserved_mb']:,.0f}"
        note = m.status if m.status != "ok" else ""
        if m.reason:
            note = f"{note}: {m.reason}" if note else m.reason
        note = "; ".join(x for x in [note, *short_flags(m.setting, m_base(rows))] if x)
        lines.append(f"| {m.axis} | {m.setting.name()} | {'-' if sps != sps else f'{sps:.1f}'} | {rel} |"
                     f" {'-' if m.tokens_per_s != m.tokens_per_s else f'{m.tokens_per_s:,.0f}'} | {mem} |"
                     f" {m.warmup_seconds:.1f} | {note} |")
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------------------------

class Stepper:
    """One setting's training steps; ``step()`` returns (rows, real tokens) and waits for the device."""

    def step(self) -> tuple[int, int]:
        raise NotImplementedError

    def memory_mb(self) -> float | None:
        return None

    def memory(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class TrainStepper(Stepper):
    """Real training steps of the stage's model at one setting: :func:`~twohead.train.step.train_step` on the
    run's length-grouped batches, as training runs them."""

    def __init__(self, build, data, run_cfg, setting: Setting):
        import torch
        from accelerate.utils import set_seed

        from ..train.device import reset_accelerator_state
        from ..train.setup import prepare_training
        from ..train.step import cycle_batches

        reset_accelerator_state()  # each setting may use another precision
        t = replace(run_cfg.train, **{k: getattr(setting, k) for k in SETTING_KEYS})
        set_seed(t.seed)
        self.s = prepare_training(build(), data, replace(run_cfg, train=t), validate=False)
        self.device = self.s.accelerator.device.type
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._peak = 0.0
        self._steps = 0
        self._batches = cycle_batches(self.s.train_loader, self.s.sampler)

    def step(self) -> tuple[int, int]:
        from ..train.step import train_step

        batch = next(self._batches)
        train_step(self.s.step, batch)   # its finiteness check is a host sync: the step is done when it returns
        tokens = int(batch["attention_mask"].sum())
        self._steps += 1
        self.s.memory.after_step(self._steps)    # train.empty_cache_steps, as training does
        self._peak = max(self._peak, self._sample_memory())
        if self.device in ("cuda", "mps"):
            self.s.memory.sample()
        return int(batch["input_ids"].shape[0]), tokens

    def _sample_memory(self) -> float:
        import torch

        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2 ** 20
        if self.device == "mps":
            return torch.mps.driver_allocated_memory() / 2 ** 20
        import psutil

        return psutil.Process().memory_info().rss / 2 ** 20

    def memory_mb(self) -> float | None:
        return self._peak or None

    def memory(self) -> dict:
        high = self.s.memory.high
        return {"allocated_mb": high["allocated_mb"], "reserved_mb": high["reserved_mb"]} \
            if "allocated_mb" in high else {}

    def close(self) -> None:
        from ..train.device import free_memory, reset_accelerator_state

        device = self.device
        del self.s, self._batches
        free_memory(device)
        reset_accelerator_state()  # whatever runs next in this process builds its own


def measure(make: Callable[[Setting], Stepper], setting: Setting, axis: str, slice_s: float, deadline: float,
            clock: Callable[[], float] = time.perf_counter, warmup: int = WARMUP_STEPS) -> Measured:
    """Time one setting: ``warmup`` untimed steps, then timed steps until ``slice_s`` seconds are spent (at least
    MIN_TIMED_STEPS). Past ``deadline`` (the command's budget) the setting is skipped; an out-of-memory error is
    caught and reported, the device cache cleared."""
    import torch

    from ..train.device import free_memory

    m = Measured(setting, axis)
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
        m.memory = stepper.memory()
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the table, the search goes on
        if is_oom(exc):
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
    import torch

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


def search(make: Callable[[Setting], Stepper], base: Setting, device_type: str, seconds: float,
           batch_sizes: list[int], deberta: bool, try_compile: bool, bf16: tuple[bool, str],
           clock: Callable[[], float] = time.perf_counter, log=print) -> list[Measured]:
    """The one-axis-at-a-time search and the combination of the winners, within ``seconds``."""
    start = clock()
    deadline = start + seconds
    plan: list[tuple[str, Setting]] = [("baseline", base)]
    plan += [("precision", replace(base, precision=x)) for x in precisions(device_type, bf16[0])
             if x != base.precision]
    if deberta:
        plan.append(("fast_attention", replace(base, fast_attention=not base.fast_attention)))
    if try_compile or base.compile:
        plan.append(("compile", replace(base, compile=not base.compile)))
    plan.append(("padding", replace(base, padding="longest" if base.padding == "buckets" else "buckets")))
    if device_type in ("cuda", "mps"):
        plan.append(("empty_cache_steps", replace(base, empty_cache_steps=0 if base.empty_cache_steps
                                                  else CACHE_STEPS_TRIED)))
    ladder = [("batch_size", replace(base, batch_size=b)) for b in batch_sizes]
    rows: list[Measured] = []
    notes = []
    if not bf16[0]:
        notes.append(Measured(replace(base, precision="bf16"), "precision", "skipped", bf16[1]))
    if not try_compile and not base.compile:
        notes.append(Measured(replace(base, compile=True), "compile", "skipped",
                                 f"not tried on {device_type} (slow to compile there; add --compile)"))
    total = len(plan) + len(ladder) + 2

    def run(axis: str, s: Setting, slice_s: float | None = None) -> Measured:
        left = max(deadline - clock(), 0.0)
        remaining = total - len(rows)
        # the configured setting is always measured, first and last (everything is compared with it, and the two
        # measurements are the drift), whatever the budget
        m = measure(make, s, axis, slice_s=slice_s or max(0.5, 0.6 * left / max(remaining, 1)),
                    deadline=math.inf if axis in ("baseline", "baseline again") else deadline, clock=clock)
        m.flags = flags(s, base)
        rows.append(m)
        log(f"  {axis:<14} {s.name():<58} " + (f"{m.samples_per_s:8.1f} samples/s" if m.status == "ok"
                                              else f"{m.status}: {m.reason}"))
        return m

    for axis, s in plan:
        run(axis, s)
    up_blocked = False
    for axis, s in ladder:
        if s.batch_size > base.batch_size and up_blocked:
            rows.append(Measured(s, axis, "skipped", "a smaller batch did not fit", flags=flags(s, base)))
            continue
        m = run(axis, s)
        up_blocked = up_blocked or (m.status == "oom" and s.batch_size > base.batch_size)
    best = combine(base, rows)
    if best not in [m.setting for m in rows if m.status == "ok"]:
        run("combined", best)
    # the same setting at the end, whatever the budget and as long as the first time: how much the machine drifted
    # meanwhile — the noise the recommendation quotes is this, measured
    run("baseline again", base, slice_s=rows[0].seconds or None)
    return rows + notes


def eval_speed(build, data, run_cfg, precision: str, batch_sizes: list[int],
               seconds: float, clock=time.perf_counter) -> dict[int, float]:
    """Eval rows/s (no grad, sorted batches) at each batch size, about ``seconds`` each (at least one batch)."""
    import torch
    from torch.utils.data import DataLoader

    from ..data.batching import SortedBatchSampler, make_collate, resolve_padding
    from ..train.device import free_memory, make_accelerator, reset_accelerator_state

    reset_accelerator_state()
    acc = make_accelerator(run_cfg.train.device, precision, 1)
    model = acc.prepare(build())
    model.eval()
    out = {}
    collate = make_collate(data.pad_id, resolve_padding(run_cfg.train.padding, acc.device.type), data.max_length)
    for bs in batch_sizes:
        loader = DataLoader(data.val, batch_sampler=SortedBatchSampler(data.val.lengths, bs), collate_fn=collate)
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
            if not is_oom(exc):
                raise
            out[bs] = math.nan
            free_memory(acc.device.type)
    del model
    free_memory(acc.device.type)
    reset_accelerator_state()
    return out


def run(p: Params, paths: ToolPaths, cfg: SpeedConfig, stage: str = "stage2", log=print) -> dict:
    from ..data.batching import resolve_padding
    from ..evaluate.plots import short_path
    from ..train.device import resolve_device
    from ..train.recipe import recipe

    cfg.validate()
    seconds = cfg.seconds
    t_start = time.perf_counter()
    r = recipe(p, stage, paths.inputs(p))
    run_cfg, data, train_ds, val_ds, build, t = r.cfg, r.data, r.data.train, r.data.val, r.build, r.cfg.train
    device_type = resolve_device(t.device)
    base = Setting(t.precision, t.batch_size, t.fast_attention, t.compile, resolve_padding(t.padding, device_type),
                   t.empty_cache_steps)
    ckpt = r.checkpoint
    deberta = _is_deberta(ckpt)
    try_compile = cfg.compile or device_type == "cuda"
    bf16 = bf16_probe(device_type)
    log(f"twohead speed: {stage} on {device_type}, checkpoint {ckpt}, {len(train_ds)} train rows;"
        f" ~{seconds:.0f}s of measurement")

    def make(s: Setting) -> Stepper:
        return TrainStepper(build, data, run_cfg, s)

    rows = search(make, base, device_type, 0.85 * seconds, batch_ladder(t.batch_size, list(cfg.batch_sizes)),
                  deberta, try_compile, bf16, log=log)
    top_precision = (fastest(rows) or Measured(base, "baseline")).setting.precision
    eval_sizes = sorted({t.eval_batch_size, 2 * t.eval_batch_size})
    evals = eval_speed(build, data, run_cfg, top_precision, eval_sizes, max(0.05 * seconds, 1.0)) if len(val_ds) \
        else {}
    eval_rps = evals.get(t.eval_batch_size, math.nan)
    base_m = fastest(rows, lambda m: m.axis == "baseline")
    base_sps = base_m.samples_per_s if base_m else math.nan
    for m in rows:
        compile_s = max(m.warmup_seconds - (base_m.warmup_seconds if base_m else 0.0), 0.0) if m.setting.compile \
            else 0.0
        m.projected = projection(len(train_ds), len(val_ds), t.epochs, m.samples_per_s, eval_rps, compile_s)
    trunc = truncation(train_ds.lengths, p.tokenize.max_length) if stage == "stage2" else None
    rec = recommend(base, rows)
    result = {
        "stage": stage, "device": device_type, "checkpoint": str(ckpt), "train_rows": len(train_ds),
        "val_rows": len(val_ds), "epochs": t.epochs, "seconds": round(time.perf_counter() - t_start, 1),
        "budget_seconds": seconds, "configured": base.name(), "configured_samples_per_s": base_sps,
        "settings": [{"axis": m.axis, "setting": m.setting.name(), **{k: getattr(m.setting, k) for k in SETTING_KEYS},
                      "status": m.status, "reason": m.reason, "samples_per_s": m.samples_per_s,
                      "tokens_per_s": m.tokens_per_s, "timed_steps": m.steps, "warmup_seconds": m.warmup_seconds,
                      "peak_memory_mb": m.peak_memory_mb, "memory_mb": m.memory,
                      "projected_run_seconds": m.projected, "flags": m.flags}
                     for m in rows],
        "eval_rows_per_s": {str(k): v for k, v in evals.items()}, "eval_precision": top_precision,
        "truncation": trunc, "recommendation": rec, "drift": drift(rows),
        "table": table(rows, base_sps),
    }
    caption = (f"{stage} | checkpoint {short_path(ckpt)} | {device_type} | {len(train_ds)} train rows,"
               f" {t.epochs} epochs | {result['seconds']:.0f}s of measurement")
    plot(rows, paths.plot, f"Training speed on this machine ({device_type})", caption)
    write_json(paths.json, result, digits=METRIC_DIGITS)
    return result


def _is_deberta(ckpt) -> bool:
    try:
        cfg = json.loads((Path(ckpt) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(cfg.get("model_type", "")).startswith("deberta")


def plot(rows: list[Measured], path, title: str, caption: str) -> None:
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    ok = [m for m in rows if m.status == "ok"]
    fig, ax = plt.subplots(figsize=(8.0, 0.45 * max(len(rows), 3) + 1.4))
    names = [f"{m.axis}: {m.setting.name()}" for m in rows]
    values = [m.samples_per_s if m.status == "ok" else 0.0 for m in rows]
    colors = ["C0" if m.axis == "baseline" else ("C2" if m.status == "ok" else "0.7") for m in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, values, color=colors)
    for yi, m, v in zip(y, rows, values):
        ax.text(v, yi, f" {v:.1f}" if m.status == "ok" else f" {m.status}", va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=7)
    ax.set(xlabel="training samples/s (forward + backward + optimiser step)", title=title)
    if ok:
        ax.set_xlim(0, max(values) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path, caption)


# --- what it prints ---------------------------------------------------------------------------------------------

def main(p: Params, paths: ToolPaths, cfg: SpeedConfig, stage: str, log=print) -> int:
    """Run the search (it logs each setting as it is measured) and print the table and the recommendation."""
    r = run(p, paths, cfg, stage=stage, log=log)
    log("")
    log(r["table"])
    evals = ", ".join(f"batch {k}: {v:.0f} rows/s" for k, v in r["eval_rows_per_s"].items())
    log(f"\n  eval ({r['eval_precision']}): {evals}")
    tr = r["truncation"]
    if tr:
        shorter = ", ".join(f"{k}: {v:.1%}" for k, v in tr["at"].items())
        log(f"  tokenize.max_length={tr['max_length']} cuts {tr['cut_share']:.1%} of the training rows"
            + (f" (a shorter one would cut — {shorter})" if shorter else ""))
    base = next((s for s in r["settings"] if s["axis"] == "baseline" and s["status"] == "ok"), None)
    if base:
        log(f"  the configured run ({r['configured']}): ≈ {base['projected_run_seconds'] / 60:.1f} min for"
            f" {r['epochs']} epochs of {r['train_rows']} rows")
    rec_all = r["recommendation"]
    if not rec_all["reliable"]:
        log(f"  no recommendation — unreliable: {rec_all['unreliable_because']}. Re-run on an idle machine (nothing"
            " else training), or with a larger --seconds; the table above is what was measured")
        log(f"  table: {paths.json}, chart: {paths.plot} ({r['seconds']:.0f}s)")
        return 0
    for key, what in (("safe", "fastest with the same results"), ("fastest", "fastest of all")):
        rec = rec_all.get(key)
        if not rec:
            continue
        cmd = rec["command"] or "keep the configured settings"
        kept = (f" (best measured: {rec['best_measured']['setting']}, ×{rec['best_measured']['speedup']:.2f} —"
                f" within the noise: the configured settings moved {rec_all['measured_drift']:+.1%} between the"
                f" first and the last measurement, ±{rec_all['noise']:.0%} allowed)") if rec["kept_configured"] \
            else ""
        log(f"  {what}: {rec['setting']} — {rec['samples_per_s']:.1f} samples/s, ×{rec['speedup']:.2f}{kept}")
        log(f"    {cmd}")
        for flag in rec["flags"]:
            log(f"    note: {flag}")
    log(f"  table: {paths.json}, chart: {paths.plot} ({r['seconds']:.0f}s)")
    return 0
