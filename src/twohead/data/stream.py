"""Tables of articles read and written in chunks, so that scoring a file takes the same memory for 20 thousand rows
as for 2 million: :func:`iter_texts` yields (texts, ids) chunks of a CSV / TSV / Parquet / JSON Lines file with the
checks :func:`~twohead.data.io.read_table` makes (shape, encoding, columns), and :func:`table_writer` appends chunks
to a temporary file renamed into place only when complete (nothing half-written)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pandas as pd

from ..config.errors import DataError, OutputError
from .atomic import atomic_path
from .io import METRIC_DIGITS, _check_csv_shape, _csv_sep, detect_format, jsonl_objects, reading, spreadsheet_safe

CHUNK_ROWS = 10_000   # rows scored at a time: ~50 MB of working memory, whatever the file's size


def _columns_ok(path, columns: list, text_column: str, id_column: str | None) -> str | None:
    for what, col in (("text", text_column), ("id", id_column)):
        if col and col not in columns:
            raise DataError(f"{path}: no {what} column {col!r}; the columns are {list(columns)}")
    return id_column or ("id" if "id" in columns else None)


def _raw_chunks(path: Path, fmt: str, encoding: str, chunk_rows: int, columns: list[str] | None
                ) -> Iterator[pd.DataFrame]:
    if fmt == "csv":
        sep = _csv_sep(path)
        _check_csv_shape(path, sep, encoding)  # a streaming pre-pass: one line at a time
        yield from pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding=encoding, index_col=False,
                               chunksize=chunk_rows)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    else:
        rows = []
        for obj in jsonl_objects(path, encoding):
            rows.append(obj)
            if len(rows) >= chunk_rows:
                yield pd.DataFrame(rows)
                rows = []
        if rows:
            yield pd.DataFrame(rows)


def iter_texts(path: str | Path, text_column: str, id_column: str | None = None, encoding: str = "utf-8",
               encoding_hint: str = "pass --encoding", chunk_rows: int = CHUNK_ROWS, allow_empty: bool = False
               ) -> Iterator[tuple[list, list]]:
    """(texts, ids) per chunk of at most ``chunk_rows`` rows. ``id_column`` None or "": 'id' if the table has it,
    else the row number (counted across chunks). Errors as :func:`~twohead.data.io.read_table`'s: one line naming
    the file (and the line); a file without data rows is one too, unless ``allow_empty`` (a header-only file means
    "none")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    fmt = detect_format(path)
    columns = None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with reading(path, fmt, encoding, encoding_hint):
            names = pq.ParquetFile(path).schema_arrow.names
        id_col = _columns_ok(path, names, text_column, id_column)
        columns = [text_column] + ([id_col] if id_col and id_col != text_column else [])
    seen, id_col = 0, None
    chunks = _raw_chunks(path, fmt, encoding, chunk_rows, columns)
    while True:
        with reading(path, fmt, encoding, encoding_hint):  # read_table's one-line errors, chunk by chunk
            df = next(chunks, None)
        if df is None:
            break
        if seen == 0:
            id_col = _columns_ok(path, list(df.columns), text_column, id_column)
        ids = df[id_col].tolist() if id_col else list(range(seen, seen + len(df)))
        seen += len(df)
        yield df[text_column].tolist(), ids
    if seen == 0 and not allow_empty:
        raise DataError(f"{path}: the file has no data rows")


class _Appender:
    """Appends DataFrame chunks to an open target: a file path (CSV / Parquet / JSON Lines) or None (CSV on
    standard output, written as it comes)."""

    def __init__(self, path: Path | None, fmt: str):
        self.path, self.fmt, self.rows, self._parquet = path, fmt, 0, None

    def write(self, df: pd.DataFrame) -> None:
        first = self.rows == 0
        self.rows += len(df)
        if self.path is None:
            import sys

            spreadsheet_safe(df).to_csv(sys.stdout, index=False, header=first, float_format="%.8g")
        elif self.fmt == "csv":
            spreadsheet_safe(df).to_csv(self.path, index=False, header=first, mode="w" if first else "a",
                      float_format=f"%.{METRIC_DIGITS}g")
        elif self.fmt == "jsonl":
            text = df.to_json(orient="records", lines=True, force_ascii=False) or ""
            with open(self.path, "w" if first else "a", encoding="utf-8") as f:
                f.write(text if not text or text.endswith("\n") else text + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(df, preserve_index=False)
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            else:
                table = pa.Table.from_pandas(df, schema=self._parquet.schema, preserve_index=False)
            self._parquet.write_table(table)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


@contextlib.contextmanager
def table_writer(out: str | Path, fmt: str) -> Iterator[_Appender]:
    """An appender of DataFrame chunks to ``out`` (``-``: standard output). The file appears under its name only
    when the block completes (:func:`~twohead.data.atomic.atomic_path`: a failure leaves nothing half-written)."""
    if str(out) == "-":
        yield _Appender(None, fmt)
        return
    if Path(out).is_dir():
        raise OutputError(f"{out}: is a folder; give a file name for the output")
    with atomic_path(out) as tmp:
        w = _Appender(tmp, fmt)
        try:
            yield w
        finally:
            w.close()
