"""Device memory: what a run holds on its device (for the progress line, ``train_speed.json`` and ``twohead speed``)
and the allocator-cache clearing of ``train.empty_cache_steps``.

* CUDA: ``allocated`` = live tensors, ``reserved`` = what the caching allocator holds, ``peak`` = the most
  allocated since the last reset.
* Apple MPS: ``allocated`` = live tensors, ``reserved`` = what the Metal driver holds for the process (tensors,
  the allocator's cache and the graphs it built — the figure that grows with new input shapes).
* CPU: no device memory; the process's peak resident memory (``peak_rss``) stands in.
"""

from __future__ import annotations

import resource
import sys

import torch

MB = 1024 * 1024


def peak_rss_mb() -> float:
    """The process's peak resident memory (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MB if sys.platform == "darwin" else rss / 1024


def device_memory(device) -> dict[str, float]:
    """Memory figures of ``device`` in MB (see the module docstring for what each means)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return {"allocated_mb": torch.cuda.memory_allocated(device) / MB,
                "reserved_mb": torch.cuda.memory_reserved(device) / MB,
                "peak_mb": torch.cuda.max_memory_allocated(device) / MB}
    if kind == "mps":
        return {"allocated_mb": torch.mps.current_allocated_memory() / MB,
                "reserved_mb": torch.mps.driver_allocated_memory() / MB}
    return {"peak_rss_mb": peak_rss_mb()}


def format_memory(m: dict[str, float]) -> str:
    """``mem 812/1034 MB`` (allocated/reserved) on a GPU, ``RSS peak 612 MB`` on the CPU."""
    if "allocated_mb" in m:
        return f"mem {m['allocated_mb']:.0f}/{m['reserved_mb']:.0f} MB"
    return f"RSS peak {m['peak_rss_mb']:.0f} MB"


def empty_cache(device) -> bool:
    """Free the allocator's cached blocks (and, on MPS, its cached graphs' buffers); False on the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.empty_cache()
        return True
    if kind == "mps":
        torch.mps.empty_cache()
        return True
    return False


class MemoryWatch:
    """Clears the cache every ``every`` optimiser steps (0 = never) and keeps the largest figures seen."""

    def __init__(self, device, every: int = 0):
        self.device, self.every = device, every
        self.cleared = 0
        self.high: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        m = device_memory(self.device)
        for k, v in m.items():
            self.high[k] = max(self.high.get(k, 0.0), v)
        return m

    def after_step(self, step: int) -> None:
        if self.every and step % self.every == 0 and empty_cache(self.device):
            self.cleared += 1

    def summary(self) -> dict:
        """The high-water marks so far (MB, rounded) and how often the cache was cleared."""
        self.sample()
        return {**{f"max_{k}": round(v, 1) for k, v in self.high.items()}, "cache_clears": self.cleared}
