"""File IO for every stage: atomic writes (temp file + rename), JSON/CSV/Parquet helpers, raw tables.

A stage never leaves a half-written file: each writer goes to a temp path in the same directory and
is renamed into place only once complete; on an exception the temp path is removed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..config.errors import DataError, MissingInputError
from .atomic import atomic_path, write_text  # noqa: F401 - re-exported: every writer's one home


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


#: significant digits of the figures in metrics files and CSV tables: float noise between machines (the 7th
#: digit and beyond) then leaves committed files unchanged, so `git status` / `dvc metrics diff` show real changes
METRIC_DIGITS = 6


def _rounded(obj: Any, digits: int) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any, digits: int | None = None) -> None:
    """``obj`` as indented JSON, written atomically; NaN/inf as null; floats to ``digits`` significant digits
    (metrics files: :data:`METRIC_DIGITS`; None = exact, for what later code computes with)."""
    plain = _finite(json.loads(json.dumps(obj, default=_json_default)))
    text = json.dumps(plain if digits is None else _rounded(plain, digits), indent=2, ensure_ascii=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: not found (has the stage that writes it run?)")
    return json.loads(path.read_text(encoding="utf-8"))


#: A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...) runs when the CSV is opened).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell that a spreadsheet would run as a formula prefixed by ``'`` (OWASP's CSV
    injection advice); numbers written as text ("-0.5") are left alone. Unchanged (the same object) when no cell
    needs it."""
    out = None
    for col in df.columns:
        s = df[col]
        if s.dtype.kind not in "OSU" and str(s.dtype) not in ("string", "str"):
            continue
        text = s.astype("string")
        risky = text.str.startswith(FORMULA_START).fillna(False) & ~text.str.match(_NUMBER).fillna(False)
        if risky.any():
            out = df.copy() if out is None else out
            out[col] = s.where(~risky.to_numpy(), "'" + text.astype(object))
    return df if out is None else out


def page_safe(names) -> list[str]:
    """Names for a CSV that ``dvc plots show`` / ``plots diff`` embed in an HTML page's inline script: ``<`` and
    ``>`` become the look-alikes ‹ › so no name can close the script block or open a tag (``</script>``,
    ``<img onerror=…>``). Every other character is kept."""
    return [str(n).replace("<", "\u2039").replace(">", "\u203a") for n in names]


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """Write ``df`` atomically as CSV (floats to METRIC_DIGITS digits, formula-looking text cells neutralised)."""
    with atomic_path(path) as tmp:
        spreadsheet_safe(df).to_csv(tmp, index=False, float_format=f"%.{METRIC_DIGITS}g")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


#: How a caller says which format a file is when its name does not tell (the raw table: a param).
FORMAT_HINT = "set data.format to csv, parquet or jsonl"


def detect_format(path: str | Path, fmt: str = "auto", hint: str = FORMAT_HINT) -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes:
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the file name (.csv, .tsv, .parquet, .jsonl); {hint}")


def read_table(path: str | Path, fmt: str = "auto", what: str = "raw data file (data.raw_path)",
               encoding: str = "utf-8", encoding_hint: str = "set data.encoding to",
               format_hint: str = FORMAT_HINT) -> pd.DataFrame:
    """Read a raw table (CSV, Parquet or JSON Lines) with every column as given: CSV cells stay
    strings (an empty cell is ''), so ids like ``007`` and labels like ``NA`` are not mangled.
    ``what`` names the file in the error when it is missing; ``encoding_hint`` says how the caller sets the
    encoding (a param, a command-line option)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; the {what} must name a file")
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    fmt = detect_format(path, fmt, format_hint)
    with reading(path, fmt, encoding, encoding_hint):
        if fmt == "csv":
            sep = _csv_sep(path)
            _check_csv_shape(path, sep, encoding)
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding=encoding, index_col=False)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = _read_jsonl(path, encoding)
    if len(df) == 0:
        raise DataError(f"{path}: the file has no data rows")
    return df


@contextlib.contextmanager
def reading(path: Path, fmt: str, encoding: str, encoding_hint: str):
    """A reader's errors as one line naming the file (and the line): a wrong or unknown encoding, an empty file,
    a file that is not the format its name says. Shared by the whole-file and the chunked readers."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()  # the reader's offset is within a buffer: find the file offset
        try:
            raw.decode(encoding)
            start, reason = exc.start, exc.reason
        except UnicodeDecodeError as whole:
            start, reason = whole.start, whole.reason
        line = raw.count(b"\n", 0, start) + 1
        raise DataError(f"{path}: not valid {encoding} text at byte {start} (line {line}: {reason});"
                        f" {encoding_hint} the file's encoding (e.g. latin-1 or cp1252) or re-save it as UTF-8"
                        ) from exc
    except LookupError as exc:  # an encoding Python does not know
        raise DataError(f"{path}: unknown text encoding {encoding!r}; {encoding_hint} one Python knows, e.g."
                        " utf-8, latin-1, cp1252") from exc
    except DataError:
        raise  # already names the file and the line (a ValueError too: not to be wrapped again below)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except ValueError as exc:
        raise DataError(f"{path}: cannot be read as {fmt}: {exc}") from exc


def _csv_sep(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


_SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}


def _separator_hint(header: str, sep: str) -> str:
    """What the header line looks separated by, when that is not ``sep`` ('' when it looks right)."""
    counts = {c: header.count(c) for c in _SEPARATORS}
    best = max(counts, key=counts.get)
    if best == sep or counts[best] == 0 or counts[best] <= counts[sep]:
        return ""
    return (f"; its header looks {_SEPARATORS[best]}-separated ({counts[best]} {best!r} vs {counts[sep]} {sep!r}):"
            " save it comma-separated as .csv or tab-separated as .tsv")


def _check_csv_shape(path: Path, sep: str, encoding: str) -> None:
    """Every record has as many fields as the header: a row with fields missing (or extra, e.g. a text with an
    unquoted comma) is an error naming its line, never a row silently read with empty labels."""
    import csv
    import sys

    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))  # a long article is one field, not an error
    with open(path, newline="", encoding=encoding) as f:
        header_line = f.readline()
        f.seek(0)
        reader = csv.reader(f, delimiter=sep)
        width, start = None, 1
        try:
            for row in reader:
                if row:
                    if width is None:
                        width = len(row)
                    elif len(row) != width:
                        why = ("fields are missing: give every column a value, or an empty one" if len(row) < width
                               else "a text with an unquoted separator? quote it")
                        raise DataError(f"{path}: line {start} has {len(row)} field(s), the header has {width} ({why})"
                                        + _separator_hint(header_line, sep))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path}: line {start} cannot be read as CSV: {exc}") from exc


def jsonl_objects(path: Path, encoding: str):
    """The objects of a JSON Lines file, one per non-blank line, read as they come; a broken line is named by its
    number."""
    with open(path, encoding=encoding) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {n} is not valid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {n} is not a JSON object (one object per line expected)")
            yield obj


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    return pd.DataFrame(list(jsonl_objects(path, encoding)))


def row_ref(path: str | Path, fmt: str, index: int) -> str:
    """How to find data row ``index`` (0-based) in the raw file, in the user's terms."""
    fmt = detect_format(path, fmt)
    if fmt == "csv":
        return f"row {index} (line {_csv_line(Path(path), index)} of the CSV)"
    if fmt == "jsonl":
        return f"row {index} (line {index + 1})"
    return f"row {index}"


def _csv_line(path: Path, index: int) -> int:
    """The line where data row ``index`` starts: quoted fields may span lines, and blank lines are skipped
    (as pandas does), so it is not simply index + 2. Only called to word an error message."""
    import csv

    sep = _csv_sep(path)
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f, delimiter=sep)
            end_of_previous, record = 0, -1  # record -1 is the header
            for row in reader:
                if row:
                    if record == index:
                        return end_of_previous + 1
                    record += 1
                end_of_previous = reader.line_num
    except (OSError, csv.Error):
        pass
    return index + 2


OUTPUT_FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
                  ".ndjson": "jsonl"}


def output_format(out: str | Path) -> str:
    """csv / parquet / jsonl from an output file's suffix ("-" = standard output, CSV)."""
    if str(out) == "-":
        return "csv"
    fmt = OUTPUT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise DataError(f"{out}: cannot tell the output format from the suffix; use one of {sorted(OUTPUT_FORMATS)}"
                        " or - for standard output (CSV)")
    return fmt
