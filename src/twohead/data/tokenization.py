"""Text → token ids: rows → unpadded token ids in Arrow/Parquet (the tokenizer itself is loaded by
:func:`twohead.model.checkpoint.load_tokenizer`).

Stored format (one Parquet file per split under ``data/tokenized/``): ``id`` (string), ``input_ids``
(``list<int32>``, special tokens included, no padding), ``length`` (int32), ``labels_binary`` and
``labels_category`` (int64, -100 = missing). Padding happens per batch at training time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .io import atomic_path


#: No token covers more characters than this (WordPiece reads words of up to 100 characters; SentencePiece pieces
#: are at most 16): a text longer than ``max_length`` × this is cut to that many characters before tokenizing.
CHARS_PER_TOKEN = 100


def encode(tokenizer, texts: list[str], max_length: int, batch_size: int, desc: str = "tokenize"
           ) -> tuple[list[list[int]], int]:
    """Token ids per text, truncated to ``max_length`` (special tokens included), without padding.

    Returns the ids and the number of texts that were truncated. Texts are encoded with room for one
    more token; only those that fill it (the truncated ones) are encoded again at ``max_length``.
    """
    ids: list[list[int]] = []
    n_trunc = 0
    limit = max_length * CHARS_PER_TOKEN
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False, disable=None):
        # a multi-MB text is cut to what max_length tokens can cover before the tokenizer sees it (it would tokenize
        # the whole text, then truncate)
        raw = texts[start:start + batch_size]
        chunk = [t if len(t) <= limit else t[:limit] for t in raw]
        out = tokenizer(chunk, truncation=True, max_length=max_length + 1, add_special_tokens=True)["input_ids"]
        long = [i for i, x in enumerate(out) if len(x) > max_length or len(raw[i]) > limit]  # cut = truncated
        if long:
            n_trunc += len(long)
            again = tokenizer([chunk[i] for i in long], truncation=True, max_length=max_length)["input_ids"]
            for i, x in zip(long, again):
                out[i] = x
        ids.extend(out)
    return ids, n_trunc


def to_arrow(df: pd.DataFrame, ids: list[list[int]]) -> pa.Table:
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    input_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    return pa.table({
        "id": pa.array(df["id"].astype(str).tolist(), pa.string()),
        "input_ids": input_ids,
        "length": pa.array(lengths),
        "labels_binary": pa.array(df["labels_binary"].to_numpy(np.int64)),
        "labels_category": pa.array(df["labels_category"].to_numpy(np.int64)),
    })


def write_tokenized(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=16384)


def tokenize_splits(tokenizer, splits: dict[str, pd.DataFrame], max_length: int, batch_size: int
                    ) -> tuple[dict[str, pa.Table], dict]:
    """Tokenize every split; return the Arrow tables and length statistics (plus rows/s)."""
    tables, stats = {}, {"max_length": max_length, "splits": {}}
    t0 = time.perf_counter()
    all_lengths = []
    for name, df in splits.items():
        texts = df["text"].astype(str).tolist()
        ids, n_trunc = encode(tokenizer, texts, max_length, batch_size, desc=f"tokenize {name}")
        tables[name] = to_arrow(df, ids)
        lengths = tables[name]["length"].to_numpy()
        all_lengths.append(lengths)
        stats["splits"][name] = _length_stats(lengths, n_trunc)
    seconds = time.perf_counter() - t0
    lengths = np.concatenate(all_lengths) if all_lengths else np.zeros(0, np.int32)
    n_trunc_all = sum(s["truncated"] for s in stats["splits"].values())
    stats.update(_length_stats(lengths, n_trunc_all))
    stats["rows_per_second"] = float(len(lengths) / seconds) if seconds > 0 else float("inf")
    return tables, stats


def _length_stats(lengths: np.ndarray, n_trunc: int) -> dict:
    n = int(len(lengths))
    return {
        "rows": n,
        "mean_length": float(lengths.mean()) if n else 0.0,
        "p95_length": float(np.percentile(lengths, 95)) if n else 0.0,
        "max_length_seen": int(lengths.max()) if n else 0,
        "truncated": int(n_trunc),
        "truncated_share": float(n_trunc / n) if n else 0.0,
    }
