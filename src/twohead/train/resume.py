"""Training state that survives an interruption (DVC 3 has no checkpoint outputs: the framework's own state).

After every epoch (and every ``train.checkpoint_every_steps`` optimiser steps) :class:`StateStore` writes
Accelerate's ``save_state`` (model, optimizer, scheduler, the RNG states of Python, NumPy, torch and the
device, per process) plus ``progress.pt`` (epoch, step, batches done in the epoch, the epoch's accumulators,
history and logs so far, callback states; ``progress_<rank>.pt`` for each further process under torchrun /
accelerate launch) and ``fingerprint.json`` into a temporary folder that replaces the previous state only when
complete: a half-written state is never loaded.

The fingerprint hashes the params the stage reads and its input files. On the next run a state with the
same fingerprint is resumed; a different one is discarded with a message. Learning rates are left out of
the fingerprint on purpose: after a divergence the user resumes the last good state with a lower LR.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..data.io import atomic_path

DONE = "DONE.json"


def progress_file(process_index: int) -> str:
    """Where a process keeps its progress in the state folder (``progress.pt`` for the main process)."""
    return "progress.pt" if process_index == 0 else f"progress_{process_index}.pt"


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

    def _fingerprint(self, accelerator) -> dict:
        """The params/inputs fingerprint, plus the number of processes when several (each keeps its own progress
        and RNG states, so a state resumes only under as many processes as saved it)."""
        n = accelerator.num_processes
        return self.fingerprint if n == 1 else {**self.fingerprint, "processes": n}

    def load(self, accelerator) -> dict | None:
        """The saved progress after restoring the model/optimizer/scheduler/RNG states, or None (fresh start).
        Under several processes every process calls it and gets its own progress."""
        fp = self.folder / "fingerprint.json"
        mine = self.folder / progress_file(accelerator.process_index)
        if not mine.is_file() or not fp.is_file():
            return None
        saved = json.loads(fp.read_text(encoding="utf-8"))
        want = self._fingerprint(accelerator)
        if saved != want:
            what = [k for k in ("params", "inputs", "processes") if saved.get(k) != want.get(k)]
            self.log(f"state in {self.folder} was saved with other {' and '.join(what)}: starting fresh")
            return None
        accelerator.load_state(str(self.folder / "accelerate"))
        return torch.load(mine, map_location="cpu", weights_only=False)

    def save(self, accelerator, progress: dict[str, Any]) -> None:
        """Replace the saved state with this one, never leaving a half-written state in its place. Under several
        processes (torchrun, accelerate launch) every process calls it: Accelerate's ``save_state`` writes the
        model / optimizer / scheduler once and each process's RNG states, each process its own progress."""
        import time

        t0 = time.perf_counter()
        if accelerator.num_processes == 1:
            with atomic_path(self.folder, is_dir=True) as tmp:
                self._write(accelerator, tmp, progress)
        else:
            self._save_together(accelerator, progress)
        self.saves += 1
        self.seconds += time.perf_counter() - t0

    def _write(self, accelerator, folder: Path, progress: dict[str, Any]) -> None:
        accelerator.save_state(str(folder / "accelerate"), safe_serialization=True)
        torch.save(progress, folder / progress_file(accelerator.process_index))
        if accelerator.is_main_process:
            (folder / "fingerprint.json").write_text(json.dumps(self._fingerprint(accelerator), indent=2) + "\n",
                                                     encoding="utf-8")

    def _save_together(self, accelerator, progress: dict[str, Any]) -> None:
        """All processes write into one staging folder (ignored by git: ``*.tmp``); once every one is done the
        main process swaps it in for the previous state."""
        staging = self.folder.parent / f".{self.folder.name}.saving.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        self._write(accelerator, staging, progress)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            old = self.folder.parent / f".{self.folder.name}.old.tmp"
            shutil.rmtree(old, ignore_errors=True)
            if self.folder.exists():
                os.replace(self.folder, old)
            os.replace(staging, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

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
