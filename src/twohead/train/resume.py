"""Training state that survives an interruption (DVC 3 has no checkpoint outputs: the framework's own state).

After every epoch (and every ``train.checkpoint_every_steps`` optimiser steps) :class:`StateStore` writes
Accelerate's ``save_state`` (model, optimizer, scheduler, the RNG states of Python, NumPy, torch and the
device, per process) plus ``progress.pt`` (epoch, step, batches done in the epoch, the epoch's accumulators,
history and logs so far, callback states; ``progress_<rank>.pt`` for each further process under torchrun /
accelerate launch) and ``fingerprint.json`` into a temporary folder that replaces the previous state only when
complete: a half-written state is never loaded.

The fingerprint hashes the params the stage reads, its input files and **its code** (the stage module and every
project module it imports, :func:`twohead.modules.code_digest`: a state saved by other code would resume into a
mixed model). On the next run a state with the same fingerprint is resumed; a different one is discarded with a
message naming what differs. Learning rates are left out of the fingerprint on purpose: after a divergence the
user resumes the last good state with a lower LR.

**A state folder is untrusted input** (a DVC output: it travels through caches and remotes). Nothing in it may run
code when loaded: ``progress.pt`` holds plain data only — tensors, numbers, strings, lists, dicts; NumPy arrays
and DataFrames are encoded as tensors and lists (:func:`to_plain`) — and is read with ``weights_only=True``
*before* anything else of the state is applied; Accelerate reads its own files with ``weights_only=True`` too. A
progress file that is not plain data is refused with a message and the run starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config.errors import OutputError, TrainingError
from ..data.io import atomic_path


class _TiedWeights(logging.Filter):
    """Accelerate warns on every save of a model with tied weights (the masked-LM head's output layer *is* the
    word-embedding matrix: stored once, tied again on load; tests/test_mlm.py resumes byte-identically). The line
    repeats at each save and asks the reader to check what is already checked: left out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


logging.getLogger("accelerate.utils.other").addFilter(_TiedWeights())

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


def fingerprint(params: dict, inputs: list[Path], code: str | Path | None = None) -> dict:
    """The params' hash, the input files' hash and (``code``: the stage's module file) the code's hash."""
    from ..modules import code_digest

    out = {"params": hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest(),
           "inputs": inputs_digest(inputs)}
    if code is not None:
        out["code"] = code_digest(code)
    return out


# --- progress as plain data -------------------------------------------------------------------------------------

_TAG = "__twohead_plain__"


def to_plain(obj: Any) -> Any:
    """``obj`` with every NumPy array / scalar and DataFrame encoded as tensors, lists and tagged dicts, so that
    ``torch.load(weights_only=True)`` reads it back without running code; :func:`from_plain` inverts it exactly
    (dtypes included)."""
    import pandas as pd

    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass that pickles as a NumPy global
        return {_TAG: "scalar", "value": to_plain(np.asarray(obj))}
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            return {_TAG: "ndarray", "value": torch.from_numpy(np.array(obj, order="C", copy=True))}
        return {_TAG: "objects", "dtype": str(obj.dtype), "value": [to_plain(v) for v in obj.tolist()]}
    if isinstance(obj, pd.DataFrame):
        return {_TAG: "frame", "columns": [str(c) for c in obj.columns],
                "data": [to_plain(obj[c].to_numpy()) for c in obj.columns], "dtypes": [str(d) for d in obj.dtypes],
                "index": to_plain(obj.index.to_numpy())}
    raise TypeError(f"training state: cannot store a {type(obj).__name__} as plain data")


def from_plain(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_plain(v) for v in obj)
    if not isinstance(obj, dict):
        return obj
    kind = obj.get(_TAG)
    if kind is None:
        return {k: from_plain(v) for k, v in obj.items()}
    if kind == "ndarray":
        return obj["value"].numpy()
    if kind == "objects":
        return np.array(from_plain(obj["value"]), dtype=object if obj["dtype"] == "object" else obj["dtype"])
    if kind == "scalar":
        return from_plain(obj["value"])[()]
    if kind == "frame":
        df = pd.DataFrame({c: from_plain(v) for c, v in zip(obj["columns"], obj["data"])},
                          index=from_plain(obj["index"]))
        return df.astype(dict(zip(obj["columns"], obj["dtypes"])))
    raise ValueError(f"unknown plain-data tag {kind!r}")


def read_progress(path: Path) -> dict:
    """``progress.pt`` as plain data (``weights_only=True``: a pickle that would run code is refused)."""
    return from_plain(torch.load(path, map_location="cpu", weights_only=True))


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
        try:
            saved = json.loads(fp.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.log(f"state in {self.folder}: fingerprint.json unreadable ({exc}): starting fresh")
            return None
        want = self._fingerprint(accelerator)
        if saved != want:
            what = [k for k in ("params", "inputs", "code", "processes") if saved.get(k) != want.get(k)]
            self.log(f"state in {self.folder} was saved with other {' and '.join(what)}: starting fresh"
                     + (" (the code a stage imports changed since: resuming would mix two versions)"
                        if "code" in what else ""))
            return None
        try:  # before anything of the state is applied: a refused file leaves the fresh model untouched
            progress = read_progress(mine)
        except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            self.log(f"state in {self.folder}: {mine.name} is not plain training data and was not loaded"
                     f" ({first}): starting fresh")
            return None
        try:
            accelerator.load_state(str(self.folder / "accelerate"))
        except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
            # Accelerate reads with weights_only=True: a pickle that would run code is refused, but the model may
            # already hold the state's weights by then, so a "fresh" start would not be fresh: stop, naming the fix
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise TrainingError(f"state in {self.folder}: a file under accelerate/ (model, optimizer, scheduler or"
                                f" RNG state) is not plain training data and was not loaded ({first}); delete"
                                f" {self.folder} and re-run to start fresh") from None
        return progress

    def save(self, accelerator, progress: dict[str, Any]) -> None:
        """Replace the saved state with this one, never leaving a half-written state in its place. Under several
        processes (torchrun, accelerate launch) every process calls it: Accelerate's ``save_state`` writes the
        model / optimizer / scheduler once and each process's RNG states, each process its own progress."""
        import time

        t0 = time.perf_counter()
        progress = to_plain(progress)
        try:
            if accelerator.num_processes == 1:
                with atomic_path(self.folder, is_dir=True) as tmp:
                    self._write(accelerator, tmp, progress)
            else:
                self._save_together(accelerator, progress)
        except (RuntimeError, OSError) as exc:  # torch.save on a full disk raises RuntimeError, not OSError
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise OutputError(f"{self.folder}: could not save the training state ({first}); is the disk full?"
                              " The previous state is kept") from exc
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
