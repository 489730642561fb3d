"""Device choice in one place: ``auto`` = mps → cuda → cpu, and the Accelerator built on it."""

from __future__ import annotations

import torch

from ..config.errors import DeviceError

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return False


def resolve_device(name: str) -> str:
    """The device kind to train on: the requested one if available, else a clear error."""
    if name == "auto":
        return next(k for k in ("mps", "cuda", "cpu") if available(k))
    if not available(name):
        raise DeviceError(f"train.device = {name!r} but no {name} device is available here; use auto or cpu")
    return name


def macos_major() -> int | None:
    """The macOS major version (14 for Sonoma), or None elsewhere."""
    import platform

    release = platform.mac_ver()[0]
    return int(release.split(".")[0]) if release else None


def precision_problem(kind: str, precision: str) -> str | None:
    """Why ``precision`` cannot run on device ``kind`` here (None: it can)."""
    if precision == "fp16" and kind == "cpu":
        return "train.precision = fp16 needs a GPU; use fp32 or bf16 on the CPU"
    if precision == "bf16" and kind == "mps":
        major = macos_major()
        if major is not None and major < 14:
            return (f"train.precision = bf16 on Apple MPS needs macOS 14 or later (this is macOS {major}); use fp32"
                    " (on M1/M2 bf16 is emulated anyway: no speed-up)")
    return None


#: said at the start of a run in fp16 on MPS (no loss scaler there)
MPS_FP16_NOTE = ("fp16 on Apple MPS runs without a loss scaler: an overflow shows as a non-finite loss or gradient"
                 " norm, which train.on_nonfinite stops at (or skips); tiny gradients can underflow to 0 unnoticed —"
                 " prefer fp32, or bf16 on macOS 14+")


def mps_kernel_hint(exc: BaseException) -> str | None:
    """One line for an op that has no MPS kernel (naming it, and the fallback switch), else None."""
    import re

    text = str(exc)
    if "MPS" not in text or ("not currently implemented" not in text and "not implemented" not in text):
        return None
    m = re.search(r"'(aten::[\w.]+)'", text)
    op = m.group(1) if m else "an operator"
    return (f"{op} has no Apple MPS kernel in this torch: start Python with PYTORCH_ENABLE_MPS_FALLBACK=1 (set before"
            " torch loads; that op then runs on the CPU) or use train.device=cpu")


def make_accelerator(device: str, precision: str, grad_accum: int):
    """An Accelerator on ``resolve_device(device)``. Under ``accelerate launch`` the launcher's
    process layout applies; ``cpu`` forces the CPU even where a GPU exists."""
    from accelerate import Accelerator

    kind = resolve_device(device)
    problem = precision_problem(kind, precision)
    if problem:
        raise DeviceError(problem)
    acc = Accelerator(cpu=(kind == "cpu"), mixed_precision=PRECISION[precision], gradient_accumulation_steps=grad_accum)
    if acc.device.type != kind and acc.num_processes == 1:
        raise DeviceError(f"asked for {kind} but Accelerate chose {acc.device}; set train.device explicitly")
    return acc


def reset_accelerator_state() -> None:
    """Forget Accelerate's process-wide state (a Borg singleton that fixes the mixed precision of the first
    Accelerator), so that the next Accelerator may use another precision. For single-process tools that try
    several precisions in one process (``twohead speed``); never under ``accelerate launch``."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def free_memory(device_type: str) -> None:
    """Collect garbage and return the device's cached blocks (CUDA, MPS): between models built one after another
    in one process (the LR sweep's candidates, ``twohead speed``'s settings, after an out-of-memory error)."""
    import gc

    gc.collect()
    if device_type == "cuda":
        torch.cuda.empty_cache()
    elif device_type == "mps":
        torch.mps.empty_cache()
