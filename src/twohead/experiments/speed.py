"""``twohead speed``: which precision, batch size, ``train.fast_attention`` and ``train.compile`` train fastest on
*this* machine, measured in about two minutes, and what each changes besides speed.

The search (one axis at a time from the configured run, then the winners together — a full grid would not fit
the budget):

1. the configured settings (the baseline);
2. each other precision the device supports (fp32 / bf16 / fp16: fp16 only on a GPU; bf16 on MPS only where the
   OS's Metal supports it — probed, and said when not);
3. ``fast_attention`` toggled (DeBERTa-v2/v3 encoders only: it changes nothing elsewhere);
4. ``compile`` toggled (tried by default on CUDA only; on CPU/MPS with ``--compile``: it is slow to compile
   there and rarely faster), its compile time reported separately and paid once per run;
5. batch sizes ×2, ×4, … of the configured one until one does not fit (the out-of-memory error is caught and
   the device cache cleared: reported, never a crash), plus ÷2;
6. the fastest value of each axis together.

Each setting: a fresh model with the run's loss, LLRD groups and AdamW on real length-grouped batches of the
tokenized training rows; warm-up steps (not timed; with compile, the compile) then timed optimiser steps
(forward + backward + clip + step) until the setting's share of ``--seconds`` is spent. Samples/s, real
(non-pad) tokens/s, and peak memory (CUDA ``max_memory_allocated``; MPS ``driver_allocated_memory``; CPU: the
process's RSS, sampled after each step). Eval rows/s at ``train.eval_batch_size`` (and ×2) under the fastest
precision. The projection of the configured run: epochs × (train rows ÷ samples/s + val rows ÷ eval rows/s)
(+ compile time).

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

import math
from dataclasses import dataclass, field, replace

import numpy as np

NEUTRAL_KEYS = ("fast_attention", "compile")   # same results up to float rounding


@dataclass(frozen=True)
class Setting:
    precision: str
    batch_size: int
    fast_attention: bool
    compile: bool

    def name(self) -> str:
        return (f"{self.precision}, batch {self.batch_size}, fast_attention {'on' if self.fast_attention else 'off'},"
                f" compile {'on' if self.compile else 'off'}")

    def diff(self, base: Setting) -> dict:
        """``train.*`` keys whose value differs from ``base`` (what ``dvc exp run -S`` must set)."""
        return {k: getattr(self, k) for k in ("precision", "batch_size", "fast_attention", "compile")
                if getattr(self, k) != getattr(base, k)}


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
    for axis in ("precision", "fast_attention", "compile", "batch_size"):
        m = fastest(rows, lambda m, a=axis: m.axis in (a, "baseline", "baseline again"))
        best[axis] = getattr(m.setting if m else base, axis)
    return replace(base, **best)


def command(s: Setting, base: Setting) -> str | None:
    d = s.diff(base)
    if not d:
        return None
    fmt = {True: "true", False: "false"}
    return "dvc exp run " + " ".join(f"-S train.{k}={fmt.get(v, v)}" for k, v in d.items())


def recommend(base: Setting, rows: list[Measured], min_gain: float = 0.05) -> dict:
    """``safe``: the fastest setting whose results match the configured run's (its precision and batch size,
    only the neutral switches changed); ``fastest``: the fastest of all, with what it changes. A gain within
    the noise (``min_gain`` or the baseline's own drift over the search, whichever is larger) is no reason to
    change: the configured setting is kept."""
    base_ms = [m for m in rows if m.axis in ("baseline", "baseline again") and m.status == "ok"]
    ref = float(np.mean([m.samples_per_s for m in base_ms])) if base_ms else math.nan
    noise = max(min_gain, abs(drift(rows))) if drift(rows) == drift(rows) else min_gain
    same = fastest(rows, lambda m: m.setting.precision == base.precision and m.setting.batch_size == base.batch_size)
    top = fastest(rows)
    out = {"noise": noise, "configured_samples_per_s": ref}
    for key, m in (("safe", same), ("fastest", top)):
        if m is None:
            out[key] = None
            continue
        gain = m.samples_per_s / ref if ref == ref and ref > 0 else math.nan
        keep = not (gain > 1 + noise)
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
    lines = ["| axis | setting | samples/s | × configured | tokens/s | peak memory MB | warm-up s | status / flags |",
             "|---|---|---|---|---|---|---|---|"]
    for m in rows:
        sps = m.samples_per_s
        rel = f"{sps / base_sps:.2f}" if sps == sps and base_sps == base_sps and base_sps > 0 else "-"
        mem = "-" if m.peak_memory_mb is None else f"{m.peak_memory_mb:,.0f}"
        note = m.status if m.status != "ok" else ""
        if m.reason:
            note = f"{note}: {m.reason}" if note else m.reason
        note = "; ".join(x for x in [note, *short_flags(m.setting, m_base(rows))] if x)
        lines.append(f"| {m.axis} | {m.setting.name()} | {'-' if sps != sps else f'{sps:.1f}'} | {rel} |"
                     f" {'-' if m.tokens_per_s != m.tokens_per_s else f'{m.tokens_per_s:,.0f}'} | {mem} |"
                     f" {m.warmup_seconds:.1f} | {note} |")
    return "\n".join(lines)


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
