"""Tokenizer from a checkpoint directory, and rows → unpadded token ids in Parquet.

Stored format (one Parquet file per split under ``data/tokenized/``): ``id`` (string), ``input_ids``
(``list<int32>``, special tokens included, no padding), ``length`` (int32), ``labels_binary`` and
``labels_category`` (int64, -100 = missing). Padding happens per batch at training time.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .checkpoint import CheckpointError
from .io import atomic_path


def _missing_packages() -> list[str]:
    missing = []
    for name in ("sentencepiece", "google.protobuf"):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # parent package ("google") absent
            found = False
        if not found:
            missing.append(name)
    return missing


def load_tokenizer(checkpoint: str | Path):
    """``AutoTokenizer`` for a local checkpoint directory (fast when it can be built), with clear errors.

    A DeBERTa-v3 directory that ships only ``spm.model`` needs ``sentencepiece`` *and* ``protobuf``
    to build its fast tokenizer; without them transformers fails with a misleading message, so we
    check first and name the package.
    """
    from transformers import AutoTokenizer

    path = Path(checkpoint)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    has_spm = any(path.glob("*.model"))
    has_json = (path / "tokenizer.json").is_file()
    if has_spm and not has_json:
        missing = _missing_packages()
        if missing:
            names = ", ".join("protobuf" if m == "google.protobuf" else m for m in missing)
            raise CheckpointError(
                f"{path}: the tokenizer is a SentencePiece model ({', '.join(p.name for p in path.glob('*.model'))})"
                f" without tokenizer.json; loading it needs the package(s) {names}: pip install {names}"
            )
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # transformers raises many types here; all mean "cannot load"
        files = sorted(p.name for p in path.iterdir())
        raise CheckpointError(f"{path}: cannot load a tokenizer from this directory ({exc}); files: {files}") from exc
    if tok.pad_token_id is None:
        raise CheckpointError(f"{path}: the tokenizer has no padding token; set pad_token in tokenizer_config.json")
    return tok


def encode(tokenizer, texts: list[str], max_length: int, batch_size: int, desc: str = "tokenize") -> tuple[list[list[int]], int]:
    """Token ids per text, truncated to ``max_length`` (special tokens included), without padding.

    Returns the ids and the number of texts that were truncated. Texts are encoded with room for one
    more token; only those that fill it (the truncated ones) are encoded again at ``max_length``.
    """
    ids: list[list[int]] = []
    n_trunc = 0
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        chunk = texts[start:start + batch_size]
        out = tokenizer(chunk, truncation=True, max_length=max_length + 1, add_special_tokens=True)["input_ids"]
        long = [i for i, x in enumerate(out) if len(x) > max_length]
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


def tokenize_splits(tokenizer, splits: dict[str, pd.DataFrame], max_length: int, batch_size: int) -> tuple[dict[str, pa.Table], dict]:
    """Tokenize every split; return the Arrow tables and length statistics (plus rows/s)."""
    tables, stats = {}, {"max_length": max_length, "splits": {}}
    t0 = time.perf_counter()
    all_lengths = []
    for name, df in splits.items():
        ids, n_trunc = encode(tokenizer, df["text"].astype(str).tolist(), max_length, batch_size, desc=f"tokenize {name}")
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


def read_prepared(prepared_dir: str | Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("train", "val", "test"):
        path = Path(prepared_dir) / f"{name}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; run the prepare_labels stage first")
        out[name] = pd.read_parquet(path)
    return out


def run_tokenize(p, prepared_dir: str | Path, out_dir: str | Path) -> dict:
    """The tokenize stage: tokenizer from ``model.stage1_checkpoint``, every split, stats file last."""
    from .io import write_json

    from .checkpoint import validate_checkpoint

    tok, _ = validate_checkpoint(p.model.stage1_checkpoint)
    splits = read_prepared(prepared_dir)
    tables, stats = tokenize_splits(tok, splits, p.tokenize.max_length, p.tokenize.batch_size)
    stats["tokenizer"] = f"{type(tok).__name__} ({'fast' if tok.is_fast else 'slow'})"
    stats["checkpoint"] = str(p.model.stage1_checkpoint)
    for name, table in tables.items():
        write_tokenized(Path(out_dir) / f"{name}.parquet", table)
    write_json(Path(out_dir) / "stats.json", {k: v for k, v in stats.items() if k != "rows_per_second"})
    return stats
