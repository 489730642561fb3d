"""``data.corrections``: label fixes a person made (from the review stage's queue), applied by ``prepare_labels``.

A CSV (or Parquet / JSON Lines) with an ``id`` column and any of:

* ``category``: the row's right category (one the data already has); empty = unchanged;
* ``pick``: Pick or Decline (spelled as ``data.pick_values`` / ``data.decline_values``); empty = unchanged. A row
  corrected to Decline loses its category (Decline rows have none);
* ``drop``: true / 1 / yes drops the row (a text that belongs to no category, a broken record).

Applied after the split is drawn, so a relabelling round keeps every row in its split and the runs stay paired
(``twohead compare``). Every problem is one line naming the file and the row: an unknown id, a category the data
does not have, an id corrected twice, a category given to a row that stays Decline. A header-only file means no
corrections; the file is a DVC dependency of ``prepare_labels``, so editing it re-runs what it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from .io import DataError, detect_format, reading
from .stream import CHUNK_ROWS, _raw_chunks
from .labels import label_key, visible

COLUMNS = ("id", "category", "pick", "drop")
TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n", ""}


@dataclass
class Applied:
    """What the corrections did (``metrics/data.json``'s ``corrections``)."""

    file: str
    rows: int = 0                 # rows of the corrections file
    category: int = 0             # categories changed
    pick: int = 0                 # Pick/Decline changed
    dropped: int = 0
    unchanged: int = 0            # a correction that matched what the data said already
    by_split: dict = field(default_factory=dict)   # rows touched per split
    categories_removed: list = field(default_factory=list)   # categories no row has any more (relabelled / dropped)
    # (corrections row, id, old pick, old category) of every train row a correction changed or dropped
    train_changes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"file": self.file, "rows": self.rows, "category_changed": self.category, "pick_changed": self.pick,
                "dropped": self.dropped, "unchanged": self.unchanged, "by_split": self.by_split,
                "categories_removed": self.categories_removed}

    def blame(self, pick: int | None = None, category: str | None = None) -> str:
        """The corrections rows that took a train row away from ``pick`` (0/1) or ``category``, for an error."""
        rows = [f"row {r} (id {i!r})" for r, i, p, c in self.train_changes
                if (pick is not None and p == pick) or (category is not None and c == category)]
        if not rows:
            return ""
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        return f" — the corrections in {self.file} did it: {', '.join(rows[:5])}{more}"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return visible(str(value)).strip()


#: What to name a corrections file whose format its name does not tell (``data.format`` is the raw table's).
FORMAT_HINT = "name the corrections file *.csv (or .tsv, .parquet, .jsonl)"


def read_corrections(path: str, encoding: str = "utf-8", chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The corrections table chunk by chunk (``id``, ``category``, ``pick``, ``drop`` cleaned, ``row``: the row's
    number in the file), checked as it is read: an ``id`` column, only known columns, every row an id, each id
    once. Streamed: a file of any size costs one chunk of memory, and :func:`apply` stops at the first bad row
    without reading the rest."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; the corrections file (data.corrections) must name a file")
    if not path.is_file():
        raise DataError(f"{path}: corrections file (data.corrections) not found")
    fmt = detect_format(path, "auto", FORMAT_HINT)
    seen: set[str] = set()
    start = 0
    with reading(path, fmt, encoding, "set data.encoding to"):
        for chunk in _raw_chunks(path, fmt, encoding, chunk_rows, None):
            if not len(chunk):
                continue
            unknown = [c for c in chunk.columns if c not in COLUMNS]
            if "id" not in chunk.columns or unknown:
                raise DataError(f"{path}: a corrections file has an 'id' column and any of category, pick, drop"
                                + (f"; unknown column(s): {', '.join(map(repr, unknown))}" if unknown
                                   else "; no 'id' column"))
            ids = chunk["id"].map(_cell)
            for i, value in enumerate(ids):
                if value == "":
                    raise DataError(f"{path}: row {start + i} has no id")
                if value in seen:
                    raise DataError(f"{path}: row {start + i}: id {value!r} is corrected twice; keep one row per id")
                seen.add(value)
            out = pd.DataFrame({"id": ids.to_numpy(), "row": range(start, start + len(chunk))})
            for c in ("category", "pick", "drop"):
                out[c] = chunk[c].map(_cell).to_numpy() if c in chunk.columns else ""
            start += len(chunk)
            yield out


def apply(df: pd.DataFrame, split: pd.Series, corrections: Iterable[pd.DataFrame], path: str, pick_values: list[str],
          decline_values: list[str], raw_path: str) -> tuple[pd.DataFrame, pd.Series, Applied]:
    """``df`` (id, text, pick 1/0/-100, category name or None) and its ``split`` with the corrections applied;
    dropped rows leave both."""
    res = Applied(file=str(path))
    position = {i: k for k, i in enumerate(df["id"].astype(str))}
    categories = set(df["category"].dropna())
    pick_of = {label_key(v): 1 for v in pick_values} | {label_key(v): 0 for v in decline_values}
    df = df.copy()
    keep = pd.Series(True, index=df.index)
    for row in (row for chunk in corrections for row in chunk.itertuples(index=False)):
        r = row.row
        res.rows += 1
        where = f"{path}: row {r} (id {row.id!r})"
        k = position.get(row.id)
        if k is None:
            raise DataError(f"{where}: no row of {raw_path} has this id")
        drop = row.drop.lower()
        if drop not in TRUE | FALSE:
            raise DataError(f"{where}: drop must be true or false, not {row.drop!r}")
        name = split.iloc[k]
        res.by_split[name] = res.by_split.get(name, 0) + 1
        if name == "train":
            res.train_changes.append((r, row.id, int(df.at[k, "pick"]), df.at[k, "category"]))
        if drop in TRUE:
            keep.iloc[k] = False
            res.dropped += 1
            continue
        changed = False
        if row.pick:
            code = pick_of.get(label_key(row.pick))
            if code is None:
                raise DataError(f"{where}: pick {row.pick!r} is neither a Pick value {pick_values} nor a Decline"
                                f" value {decline_values} (data.pick_values / data.decline_values)")
            if int(df.at[k, "pick"]) != code:
                df.at[k, "pick"] = code
                res.pick += 1
                changed = True
            if code == 0 and not row.category:
                df.at[k, "category"] = None
        if row.category:
            if row.category not in categories:
                raise DataError(f"{where}: category {row.category!r} is not one of the data's {len(categories)}"
                                " categories (spell it as the data does)")
            if int(df.at[k, "pick"]) == 0:
                raise DataError(f"{where}: gives category {row.category!r} to a Decline row; set pick to Pick in the"
                                " same row")
            if df.at[k, "category"] != row.category:
                df.at[k, "category"] = row.category
                res.category += 1
                changed = True
        if not changed:
            res.unchanged += 1
    kept = df[keep.to_numpy()].reset_index(drop=True)
    res.categories_removed = sorted(categories - set(kept["category"].dropna()))
    return kept, split[keep.to_numpy()].reset_index(drop=True), res
