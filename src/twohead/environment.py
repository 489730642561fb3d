"""What produced a stage's numbers: the versions of the libraries that set them, Python, the platform and the
device, written by every stage that computes something (``metrics/env/<stage>.json``, a plain DVC output kept in
git). Two machines that give different figures are then explained by a diff of these files. Reading versions
imports nothing (``importlib.metadata``); the machine's devices are named only when torch is already loaded (a
stage that trains, tokenizes or scores), so a torch-free stage stays torch-free. No param is read: the record
describes the machine, not the run's settings.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

#: this project and the packages whose version can move a figure (tokenization, numerics, the loop, the tables)
PACKAGES = ("twohead", "torch", "transformers", "tokenizers", "sentencepiece", "numpy", "accelerate", "safetensors",
            "scikit-learn", "scipy", "pandas", "pyarrow", "dvc")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(stage: str) -> dict:
    """The stage's name, Python, OS / machine, the package versions and — when torch is loaded — the device
    ``auto`` picks here (mps → cuda → cpu), the GPU's name and torch's CPU thread count."""
    env = {"stage": stage, "python": platform.python_version(), "os": sys.platform, "machine": platform.machine(),
           "packages": versions()}
    if "torch" in sys.modules:
        import torch

        from .train.device import resolve_device

        env["auto_device"] = resolve_device("auto")
        env["torch_threads"] = torch.get_num_threads()
        if env["auto_device"] == "cuda":
            env["gpu"] = torch.cuda.get_device_name()
    return env
