"""Per-epoch extras for :func:`twohead.train.fit.fit`, as callbacks with one set of hooks (:class:`Callback`).

* ``on_fit_start(accelerator)`` — once, after Accelerate has prepared everything;
* ``on_train_batch(epoch, batch, logits1, logits2)`` — each training batch (detached logits);
* ``on_epoch_end(epoch, val_logits, row)`` — the epoch number, the val logits ``(task1, task2)`` as float32
  NumPy arrays in dataset order, and the epoch's history row (columns in :mod:`twohead.config.schema`);
* ``state_dict()`` / ``load_state_dict(state)`` — what must survive an interruption.

Each callback keeps what it computed; the stage code reads it after ``fit`` and writes it out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config.schema import BAND_COLUMNS, HISTORY_COLUMNS
from ..data.io import write_csv
from ..evaluate.metrics import band_recall, softmax
from .cartography import CartographyRecorder


class Callback:
    """Per-epoch extras for ``fit``; override what you need (every hook defaults to nothing)."""

    def on_fit_start(self, accelerator) -> None:
        pass

    def on_train_batch(self, epoch: int, batch: dict, logits1: torch.Tensor, logits2: torch.Tensor) -> None:
        pass

    def on_epoch_end(self, epoch: int, val_logits: tuple[np.ndarray, np.ndarray], row: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """What must survive an interruption (saved with the training state)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class BandRecall(Callback):
    """Task2 val recall per frequency band, each epoch (``plots/band_recall.csv`` rows)."""

    def __init__(self, y_val: np.ndarray, names: list[str], bands: dict):
        self.y, self.names, self.bands = y_val, names, bands
        self.rows: list[dict] = []

    def on_epoch_end(self, epoch, val_logits, row) -> None:
        pred = val_logits[1].argmax(1)
        for row in band_recall(self.y, pred, self.bands["class_band"], self.names, self.bands["names"]):
            self.rows.append({"epoch": epoch, **row})

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=BAND_COLUMNS)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


class ValEpochs(Callback):
    """Per epoch and val row: P(Pick), Task2's predicted class, its probability and the gold class's probability
    (``metrics/val_epochs.parquet``). The plot stage turns them into the hierarchy-consistency curve and the val
    worst-k under the ``eval.*`` settings, so changing how a run is reported never re-trains it."""

    COLUMNS = ["epoch", "id", "p_pick", "pred_task2", "p_pred_task2", "p_gold_task2"]

    def __init__(self, y2: np.ndarray):
        self.y2 = np.asarray(y2)
        self.epochs: list[dict] = []

    def on_epoch_end(self, epoch, val_logits, row) -> None:
        p1, p2 = softmax(val_logits[0]), softmax(val_logits[1])
        rows = np.arange(len(self.y2))
        pred = p2.argmax(1)
        gold = np.where(self.y2 >= 0, p2[rows, np.where(self.y2 >= 0, self.y2, 0)], np.nan)
        self.epochs.append({"epoch": epoch, "p_pick": p1[:, 1], "pred_task2": pred, "p_pred_task2": p2[rows, pred],
                            "p_gold_task2": gold})

    def state_dict(self) -> dict:
        return {"epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state["epochs"])

    def table(self, ids: np.ndarray) -> pd.DataFrame:
        frames = [pd.DataFrame({"epoch": e["epoch"], "id": ids, "p_pick": e["p_pick"],
                                "pred_task2": e["pred_task2"], "p_pred_task2": e["p_pred_task2"],
                                "p_gold_task2": e["p_gold_task2"]}) for e in self.epochs]
        return pd.concat(frames, ignore_index=True)[self.COLUMNS] if frames else pd.DataFrame(columns=self.COLUMNS)


class PartialHistory(Callback):
    """The history so far, rewritten (atomically) after every epoch, for watching a long run."""

    def __init__(self, path: str | Path, columns: list[str] = HISTORY_COLUMNS):
        self.path = Path(path)
        self.columns = list(columns)
        self.rows: list[dict] = []
        self.main = True

    def on_fit_start(self, accelerator) -> None:
        self.main = accelerator.is_main_process

    def on_epoch_end(self, epoch, val_logits, row) -> None:
        self.rows.append(row)
        if self.main:
            write_csv(self.path, pd.DataFrame(self.rows, columns=self.columns))

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class Cartography(Callback):
    """Dataset cartography: each training row's gold-label probability from the training forward pass."""

    def __init__(self, n_rows: int, epochs: int):
        self.n_rows, self.epochs = n_rows, epochs
        self.recorder: CartographyRecorder | None = None
        self.accelerator = None

    def on_fit_start(self, accelerator) -> None:
        self.accelerator = accelerator
        self.recorder = CartographyRecorder(self.n_rows, self.epochs, accelerator.device)

    def on_train_batch(self, epoch: int, batch: dict, logits1: torch.Tensor, logits2: torch.Tensor) -> None:
        self.recorder.record(epoch - 1, batch["index"], logits1, logits2, batch["labels_task1"],
                             batch["labels_task2"])

    def state_dict(self) -> dict:
        return {"prob": [x.cpu() for x in self.recorder.prob], "right": [x.cpu() for x in self.recorder.right]}

    def load_state_dict(self, state: dict) -> None:
        device = self.recorder.prob[0].device
        self.recorder.prob = [x.to(device) for x in state["prob"]]
        self.recorder.right = [x.to(device) for x in state["right"]]

    def arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities [rows, epochs], correct [rows, epochs]) per task, merged across processes."""
        return self.recorder.arrays(self.accelerator)
