"""Tokenized rows → padded batches.

* :class:`TokenizedDataset` reads one ``data/tokenized/<split>.parquet`` file (memory-mapped Arrow) and
  hands out rows as int32 NumPy slices of one flat buffer: no per-row Python lists are kept.
* :class:`LengthGroupedBatchSampler` (training): shuffles rows, cuts the shuffled order into
  mega-batches of ``batch_size × mega_factor`` rows, sorts each by length and cuts it into batches,
  then shuffles the batches: batches are near-uniform in length (little padding) yet random.
  Every pass draws from a generator seeded by (seed, pass number), so a run is reproducible.
* :class:`SortedBatchSampler` (evaluation): batches in length order, for the least padding.
* :func:`collate`: dynamic padding to the longest row of the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, Sampler

from ..config.errors import MissingInputError


class TokenizedDataset(Dataset):
    def __init__(self, source: str | Path | pa.Table, pad_id: int, rows: np.ndarray | None = None):
        if isinstance(source, pa.Table):
            table = source
        else:
            path = Path(source)
            if not path.is_file():
                raise MissingInputError(f"{path}: not found; run the tokenize stage first (dvc repro tokenize)")
            table = pq.read_table(path, memory_map=True)
        col = table.column("input_ids").combine_chunks()
        self.offsets = col.offsets.to_numpy().astype(np.int64)
        self.values = col.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        self.lengths_all = table.column("length").to_numpy().astype(np.int64)
        self.ids_all = np.asarray(table.column("id").to_pylist(), dtype=object)
        self.y1_all = table.column("labels_binary").to_numpy().astype(np.int64)
        self.y2_all = table.column("labels_category").to_numpy().astype(np.int64)
        self.rows = np.arange(table.num_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> np.ndarray:
        return self.lengths_all[self.rows]

    @property
    def ids(self) -> np.ndarray:
        return self.ids_all[self.rows]

    @property
    def labels_binary(self) -> np.ndarray:
        return self.y1_all[self.rows]

    @property
    def labels_category(self) -> np.ndarray:
        return self.y2_all[self.rows]

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int, int]:
        r = self.rows[i]
        return self.values[self.offsets[r]:self.offsets[r + 1]], int(self.y1_all[r]), int(self.y2_all[r]), int(i)

    def subsample(self, n: int, seed: int) -> "TokenizedDataset":
        """A seeded subsample of ``n`` rows (for smoke runs); the same object type, sharing buffers."""
        if n <= 0 or n >= len(self):
            return self
        out = object.__new__(TokenizedDataset)
        out.__dict__.update(self.__dict__)
        out.rows = np.sort(np.random.default_rng(seed).choice(self.rows, size=n, replace=False))
        return out


def make_collate(pad_id: int):
    def collate(items: list[tuple[np.ndarray, int, int, int]]) -> dict[str, torch.Tensor]:
        n = len(items)
        width = max(len(x[0]) for x in items)
        ids = np.full((n, width), pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for j, (x, _, _, _) in enumerate(items):
            ids[j, :len(x)] = x
            mask[j, :len(x)] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels_binary": torch.tensor([x[1] for x in items], dtype=torch.long),
            "labels_category": torch.tensor([x[2] for x in items], dtype=torch.long),
            "index": torch.tensor([x[3] for x in items], dtype=torch.long),
        }

    return collate


class LengthGroupedBatchSampler(Sampler[list[int]]):
    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, group_by_length: bool = True,
                 mega_factor: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group_by_length
        self.mega = batch_size * mega_factor
        self.passes = 0   # pass number of the next __iter__ (fit sets it to epoch - 1)
        self.skip = 0     # batches to leave out at the start of the next pass (a resumed epoch)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def batches(self, pass_no: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, pass_no])
        order = rng.permutation(len(self.lengths))
        if self.group:
            chunks = [order[i:i + self.mega] for i in range(0, len(order), self.mega)]
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.group:
            perm = rng.permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self):
        batches = self.batches(self.passes)[self.skip:]
        self.passes += 1
        self.skip = 0
        yield from batches


class SortedBatchSampler(Sampler[list[int]]):
    def __init__(self, lengths: np.ndarray, batch_size: int):
        order = np.argsort(-np.asarray(lengths), kind="stable")
        self._batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self):
        yield from self._batches


def pad_share(lengths: np.ndarray, batches: list[list[int]]) -> float:
    """Share of padding tokens in the given batches (0 = no padding at all)."""
    real = padded = 0
    for b in batches:
        lb = lengths[b]
        real += int(lb.sum())
        padded += int(lb.max()) * len(b)
    return 1.0 - real / padded if padded else 0.0
