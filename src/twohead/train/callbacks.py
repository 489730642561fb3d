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
from ..evaluate.tables import worst_k_table
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


class ValWorstK(Callback):
    """The ``k`` val rows with the highest Task2 loss, each epoch (``metrics/val_worst_k.csv``)."""

    COLUMNS = ["epoch", "rank", "id", "gold", "predicted", "p_gold", "p_predicted", "loss", "text"]

    def __init__(self, ids: np.ndarray, texts: np.ndarray, y2: np.ndarray, names: list[str], k: int):
        self.ids, self.texts, self.y2, self.names, self.k = ids, texts, y2, names, k
        self.tables: list[pd.DataFrame] = []

    def on_epoch_end(self, epoch, val_logits, row) -> None:
        table = worst_k_table(self.ids, self.texts, self.y2, softmax(val_logits[1]), self.names, self.k)
        self.tables.append(table.assign(epoch=epoch, rank=np.arange(1, len(table) + 1)))

    def state_dict(self) -> dict:
        return {"tables": self.tables}

    def load_state_dict(self, state: dict) -> None:
        self.tables = list(state["tables"])

    def table(self) -> pd.DataFrame:
        if not self.tables:
            return pd.DataFrame(columns=self.COLUMNS)
        return pd.concat(self.tables)[self.COLUMNS]


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
