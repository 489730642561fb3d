"""Training state that survives an interruption (DVC 3 has no checkpoint outputs: the framework's own state).

After every epoch (and every ``train.checkpoint_every_steps`` optimiser steps) :class:`StateStore` writes
Accelerate's ``save_state`` (model, optimizer, scheduler, the RNG states of Python, NumPy, torch and the
device) plus ``progress.pt`` (epoch, step, batches done in the epoch, the epoch's accumulators, history
and logs so far, callback states) and ``fingerprint.json`` into a temporary folder that replaces the
previous state only when complete: a half-written state is never loaded.

The fingerprint hashes the params the stage reads and its input files. On the next run a state with the
same fingerprint is resumed; a different one is discarded with a message. Learning rates are left out of
the fingerprint on purpose: after a divergence the user resumes the last good state with a lower LR.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..data.io import atomic_path

DONE = "DONE.json"


def file_digest(path: Path, h=None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inputs_digest(paths: list[Path]) -> str:
    """One hash over every file under ``paths`` (files or folders), names included."""
    h = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
            file_digest(f, h)
    return h.hexdigest()


def fingerprint(params: dict, inputs: list[Path]) -> dict:
    return {"params": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest(),
            "inputs": inputs_digest(inputs)}


class StateStore:
    """The state folder of one training stage (``persist: true`` in dvc.yaml)."""

    def __init__(self, folder: str | Path, fingerprint: dict, every_steps: int = 0, log=print):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.every_steps = every_steps
        self.log = log
        self.saves = 0
        self.seconds = 0.0

    def load(self, accelerator) -> dict | None:
        """The saved progress after restoring the model/optimizer/scheduler/RNG states, or None (fresh start)."""
        fp = self.folder / "fingerprint.json"
        if not (self.folder / "progress.pt").is_file() or not fp.is_file():
            return None
        saved = json.loads(fp.read_text(encoding="utf-8"))
        if saved != self.fingerprint:
            what = [k for k in ("params", "inputs") if saved.get(k) != self.fingerprint.get(k)]
            self.log(f"state in {self.folder} was saved with other {' and '.join(what)}: starting fresh")
            return None
        accelerator.load_state(str(self.folder / "accelerate"))
        return torch.load(self.folder / "progress.pt", map_location="cpu", weights_only=False)

    def save(self, accelerator, progress: dict[str, Any]) -> None:
        """Replace the saved state (single process: fit switches the store off under several processes)."""
        import time

        t0 = time.perf_counter()
        with atomic_path(self.folder, is_dir=True) as tmp:
            accelerator.save_state(str(tmp / "accelerate"), safe_serialization=True)
            torch.save(progress, tmp / "progress.pt")
            (tmp / "fingerprint.json").write_text(json.dumps(self.fingerprint, indent=2) + "\n", encoding="utf-8")
        self.saves += 1
        self.seconds += time.perf_counter() - t0

    def size_mb(self) -> float:
        if not self.folder.is_dir():
            return 0.0
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file()) / 2 ** 20

    def clear(self) -> None:
        """After a successful run: nothing to resume, so nothing kept (DVC still sees the folder)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        (self.folder / DONE).write_text(json.dumps({"state": "the run finished; nothing to resume"}) + "\n",
                                        encoding="utf-8")


def rng_snapshot() -> dict:
    """Every RNG a training step draws from (dropout: torch; data: NumPy / Python)."""
    import random

    import numpy as np

    snap = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        snap["mps"] = torch.mps.get_rng_state()
    return snap


def rng_restore(snap: dict) -> None:
    import random

    import numpy as np

    random.setstate(snap["python"])
    np.random.set_state(snap["numpy"])
    torch.set_rng_state(snap["torch"])
    if "cuda" in snap and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snap["cuda"])
    if "mps" in snap and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        torch.mps.set_rng_state(snap["mps"])
