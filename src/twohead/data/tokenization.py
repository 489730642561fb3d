"""Text → token ids: rows → unpadded token ids in Arrow/Parquet (the tokenizer itself is loaded by
:func:`twohead.model.checkpoint.load_tokenizer`).

Stored format (one Parquet file per split under ``data/tokenized/``): ``id`` (string), ``input_ids``
(``list<int32>``, special tokens included, no padding), ``length`` (int32), ``labels_task1`` and
``labels_task2`` (int64, -100 = missing). Padding happens per batch at training time.
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


#: ``tokenize.truncation`` values: the first tokens, or the first ``head_share`` of the room and the last tokens
TRUNCATIONS = ("head", "head_tail")


def head_tail(tokenizer, texts: list[str], max_length: int, head_share: float) -> list[list[int]]:
    """Long texts cut to their first ``head_share`` of the room and their last tokens (Sun et al. 2019: head 128 +
    tail 382 of 512 beat the head alone on long reviews), special tokens added as the tokenizer does. A text whose
    tokens fit the room (long only in characters, e.g. a run of spaces) is kept whole: head and tail never overlap,
    so no token is read twice."""
    prefix, suffix = special_frame(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    head = int(round(room * head_share))
    tail = room - head
    body = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    return [prefix + (x if len(x) <= room else x[:head] + (x[len(x) - tail:] if tail else [])) + suffix for x in body]


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text ([CLS] … [SEP]), found by encoding one
    sample with and without them (transformers 5 tokenizers have no ``build_inputs_with_special_tokens``)."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    raise ValueError(f"{type(tokenizer).__name__}: cannot tell its special tokens apart from the text's")


def encode(tokenizer, texts: list[str], max_length: int, batch_size: int, desc: str = "tokenize",
           truncation: str = "head", head_share: float = 0.25) -> tuple[list[list[int]], int]:
    """Token ids per text, truncated to ``max_length`` (special tokens included), without padding.

    Returns the ids and the number of texts that were truncated. Texts are encoded with room for one
    more token; only those that fill it (the truncated ones) are encoded again at ``max_length`` — their first
    tokens (``truncation: head``), or their head and tail (``head_tail``, :func:`head_tail`).
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, not {truncation!r}")
    ids: list[list[int]] = []
    n_trunc = 0
    limit = max_length * CHARS_PER_TOKEN
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False, disable=None):
        # a multi-MB text is cut to what max_length tokens can cover before the tokenizer sees it (it would tokenize
        # the whole text, then truncate)
        raw = texts[start:start + batch_size]
        if truncation == "head_tail":   # the cut keeps both ends: the tail is read too
            chunk = [t if len(t) <= limit else t[:limit // 2] + " " + t[len(t) - limit // 2:] for t in raw]
        else:
            chunk = [t if len(t) <= limit else t[:limit] for t in raw]
        out = tokenizer(chunk, truncation=True, max_length=max_length + 1, add_special_tokens=True)["input_ids"]
        long = [i for i, x in enumerate(out) if len(x) > max_length or len(raw[i]) > limit]  # cut = truncated
        if long:
            n_trunc += len(long)
            if truncation == "head_tail":
                again = head_tail(tokenizer, [chunk[i] for i in long], max_length, head_share)
            else:
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
        "labels_task1": pa.array(df["labels_task1"].to_numpy(np.int64)),
        "labels_task2": pa.array(df["labels_task2"].to_numpy(np.int64)),
    })


def write_tokenized(path: str | Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=16384)


def tokenize_splits(tokenizer, splits: dict[str, pd.DataFrame], max_length: int, batch_size: int,
                    truncation: str = "head", head_share: float = 0.25) -> tuple[dict[str, pa.Table], dict]:
    """Tokenize every split; return the Arrow tables and length statistics (plus rows/s)."""
    tables, stats = {}, {"max_length": max_length, "splits": {}}
    t0 = time.perf_counter()
    all_lengths = []
    for name, df in splits.items():
        texts = df["text"].astype(str).tolist()
        ids, n_trunc = encode(tokenizer, texts, max_length, batch_size, desc=f"tokenize {name}",
                              truncation=truncation, head_share=head_share)
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
