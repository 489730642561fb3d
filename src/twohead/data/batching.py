"""Tokenized rows → padded batches.

* :class:`TokenizedDataset` reads one ``data/tokenized/<split>.parquet`` file (memory-mapped Arrow) and
  hands out rows as int32 NumPy slices of one flat buffer: no per-row Python lists are kept.
* :class:`LengthGroupedBatchSampler` (training): shuffles rows, cuts the shuffled order into
  mega-batches of ``batch_size × mega_factor`` rows, sorts each by length and cuts it into batches,
  then shuffles the batches: batches are near-uniform in length (little padding) yet random.
  Every pass draws from a generator seeded by (seed, pass number), so a run is reproducible.
* :class:`SortedBatchSampler` (evaluation): batches in length order, for the least padding.
* :func:`make_collate`: pads each batch to its longest row (``longest``) or up to the next length of a short
  ladder (``buckets``: 16, 24, …, 64 in steps of 8, then 80, …, 128 in 16s, 160, …, 256 in 32s, …: a quarter of
  the octave: at most 25% extra above 32 tokens, and 15 lengths up to 256). A device that builds a kernel graph per input
  shape (Apple MPS caches one per shape; ``torch.compile`` recompiles) then sees a few shapes per epoch instead
  of one per distinct row length; the pad positions are masked either way.
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
        self.y1_all = table.column("labels_task1").to_numpy().astype(np.int64)
        self.y2_all = table.column("labels_task2").to_numpy().astype(np.int64)
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
    def labels_task1(self) -> np.ndarray:
        return self.y1_all[self.rows]

    @property
    def labels_task2(self) -> np.ndarray:
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


#: ``train.padding`` values once ``auto`` is resolved
PADDINGS = ("buckets", "longest")

#: ``auto`` per device kind: buckets wherever a new input shape costs a graph build (MPS caches one per shape,
#: CUDA recompiles under ``compile`` and re-tunes kernels); longest on the CPU, which has no per-shape cost and where
#: the buckets' extra pads measured 5% slower (benchmarks/bench_padding.py, docs/speed.md)
AUTO_PADDING = {"mps": "buckets", "cuda": "buckets", "cpu": "longest"}


def resolve_padding(padding: str, device_kind: str) -> str:
    """``train.padding`` for this device (``auto`` → :data:`AUTO_PADDING`)."""
    if padding == "auto":
        return AUTO_PADDING.get(device_kind, "buckets")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be auto, buckets or longest, not {padding!r}")
    return padding


def bucket_width(n: int, cap: int | None = None) -> int:
    """The padded length of a batch whose longest row has ``n`` tokens under ``buckets``: ``n`` rounded up to the
    ladder (at least 16; in the octave (b, 2b] steps of max(8, b/4)), never beyond ``cap`` (≥ n) when given."""
    if n <= 16:
        w = 16
    else:
        base = 1 << ((n - 1).bit_length() - 1)
        step = max(8, base // 4)
        w = -(-n // step) * step
    return min(w, cap) if cap is not None and cap >= n else w


def batch_width(n: int, padding: str, cap: int | None = None) -> int:
    """The padded length of a batch whose longest row has ``n`` tokens."""
    return n if padding == "longest" else bucket_width(n, cap)


def make_collate(pad_id: int, padding: str = "longest", cap: int | None = None):
    """Batches of ``TokenizedDataset`` items, padded as ``padding`` says (a resolved value of :data:`PADDINGS`);
    ``cap``: the longest row the data can hold (``tokenize.max_length``), which no bucket passes."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r} (resolve 'auto' first)")

    def collate(items: list[tuple[np.ndarray, int, int, int]]) -> dict[str, torch.Tensor]:
        n = len(items)
        width = batch_width(max(len(x[0]) for x in items), padding, cap)
        ids = np.full((n, width), pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for j, (x, _, _, _) in enumerate(items):
            ids[j, :len(x)] = x
            mask[j, :len(x)] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels_task1": torch.tensor([x[1] for x in items], dtype=torch.long),
            "labels_task2": torch.tensor([x[2] for x in items], dtype=torch.long),
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
    """Rows longest first, ``batch_size`` a batch. With ``max_tokens`` a batch also holds at most that many padded
    tokens (rows × its longest row): the memory of scoring is then bounded by the budget, not by how long the
    longest texts are (attention grows with rows × length²); short rows still go ``batch_size`` at a time."""

    def __init__(self, lengths: np.ndarray, batch_size: int, max_tokens: int | None = None):
        lengths = np.asarray(lengths)
        order = np.argsort(-lengths, kind="stable")
        if max_tokens is None:
            self._batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
            return
        self._batches, i = [], 0
        while i < len(order):   # longest first: a batch's first row is its longest
            rows = max(1, min(batch_size, max_tokens // max(int(lengths[order[i]]), 1)))
            self._batches.append(order[i:i + rows].tolist())
            i += rows

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self):
        yield from self._batches


def pad_share(lengths: np.ndarray, batches: list[list[int]], padding: str = "longest",
              cap: int | None = None) -> float:
    """Share of padding tokens in the given batches (0 = no padding at all)."""
    real = padded = 0
    for b in batches:
        lb = lengths[b]
        real += int(lb.sum())
        padded += batch_width(int(lb.max()), padding, cap) * len(b)
    return 1.0 - real / padded if padded else 0.0


def batch_shapes(lengths: np.ndarray, batches: list[list[int]], padding: str = "longest",
                 cap: int | None = None) -> list[tuple[int, int]]:
    """The distinct (rows, padded length) input shapes these batches make, sorted."""
    return sorted({(len(b), batch_width(int(lengths[b].max()), padding, cap)) for b in batches if len(b)})
