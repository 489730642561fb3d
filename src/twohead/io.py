"""File IO for every stage: atomic writes (temp file + rename), JSON/CSV/Parquet helpers, raw tables.

A stage never leaves a half-written file: each writer goes to a temp path in the same directory and
is renamed into place only once complete; on an exception the temp path is removed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .errors import DataError, MissingInputError


@contextlib.contextmanager
def atomic_path(path: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    umask = os.umask(0)
    os.umask(umask)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask)
        if is_dir:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null so every reader (DVC included) can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))), indent=2, ensure_ascii=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: not found (has the stage that writes it run?)")
    return json.loads(path.read_text(encoding="utf-8"))


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.8g")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def detect_format(path: str | Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the file name; set data.format to csv, parquet or jsonl")


def read_table(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a raw table (CSV, Parquet or JSON Lines) with every column as given: CSV cells stay
    strings (an empty cell is ''), so ids like ``007`` and labels like ``NA`` are not mangled."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: raw data file not found (data.raw_path)")
    fmt = detect_format(path, fmt)
    try:
        if fmt == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except ValueError as exc:
        raise DataError(f"{path}: cannot be read as {fmt}: {exc}") from exc
    if len(df) == 0:
        raise DataError(f"{path}: the file has no data rows")
    return df


def row_ref(path: str | Path, fmt: str, index: int) -> str:
    """How to find data row ``index`` (0-based) in the raw file, in the user's terms."""
    fmt = detect_format(path, fmt)
    if fmt == "csv":
        return f"row {index} (line {index + 2} of the CSV)"
    if fmt == "jsonl":
        return f"row {index} (line {index + 1})"
    return f"row {index}"
