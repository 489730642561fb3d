"""Raw table → normalised labels → train/val/test splits.

Label encoding (shared by every later stage):

* ``labels_task1``: 1 = Pick, 0 = Decline, -100 = no Pick/Decline label on the row.
* ``labels_task2``: 0..N-1, the category id; -100 = no category (missing, or a Decline row).
* Category ids follow the category names sorted by Unicode code point (``sorted(names)``): the
  mapping depends only on the set of names, never on row order or frequencies.

Split rule (no ``data.split_column``): rows are grouped into strata — the category name; ``Decline``
for Decline rows; ``Pick (no category)`` for Pick rows without a category. Within a stratum rows are
ordered by id and shuffled with a generator seeded by (``split.seed``, the stratum's name), so the
split of one stratum does not move when another stratum changes. A stratum of n rows gives
``round(n·test_ratio)`` rows to test and ``round(n·val_ratio)`` to val, each at least 1 when its ratio
is > 0; a stratum too small to put one row in every split and still keep one for train
(n < 1 + #evaluation splits) goes wholly to **train** and is listed in ``metrics/data.json`` under
``rare_train_only``: the model still learns the class, it just cannot be scored on it.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config.params import DataParams, SplitParams
from .io import DataError, read_table, row_ref

IGNORE = -100
SPLITS = ("train", "val", "test")
DECLINE_STRATUM = "Decline"
PICK_ONLY_STRATUM = "Pick (no category)"
_SPLIT_SPELLINGS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


@dataclass
class Prepared:
    """The outcome of :func:`prepare`: split tables plus what was dropped and why."""

    splits: dict[str, pd.DataFrame]
    categories: list[str]
    dropped: dict[str, int] = field(default_factory=dict)
    decline_category_dropped: int = 0
    names_respelled: int = 0      # category spellings merged by :func:`visible` (reported in data.json when > 0)
    rare_train_only: list[str] = field(default_factory=list)
    cross_split_duplicates: dict[str, int] = field(default_factory=dict)  # val/test texts also in train
    warnings: list[str] = field(default_factory=list)
    corrections: dict | None = None   # what data.corrections changed (None: no corrections file)


def _missing(value) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _clean(value) -> str | None:
    """A cell as a stripped string (None when missing). Numbers keep one spelling whatever the reader made of
    them: ``1.0`` (a 1/0 column with blanks becomes floats) is ``"1"``, ``True`` is ``"true"``."""
    if _missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")


def label_key(value: str) -> str:
    """How a Pick/Decline spelling is matched: case-insensitively, and ``1.0`` / ``01`` as ``1``."""
    v = value.strip().lower()
    return str(int(float(v))) if _INTEGRAL.fullmatch(v) else v


def visible(text: str) -> str:
    """``text`` in Unicode NFC with the invisible format characters (zero-width space, joiners, BOM, soft hyphen:
    category Cf) removed and outer whitespace stripped — the one spelling of a name, and what decides whether a
    text is empty."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def _junk(value) -> str | None:
    """'a list' / 'an object' when a cell holds a structure (JSON Lines, Parquet), else None."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not _missing(value)


def normalise(df: pd.DataFrame, cfg: DataParams, path: str) -> tuple[pd.DataFrame, dict[str, int], int, int]:
    """Validate the raw table and map it to ``id, text, pick, category`` with clean values.

    Returns the normalised table (``pick``: 1/0/-100; ``category``: name or None), the counts of rows
    dropped per reason, how many Decline rows had their category removed, and how many category spellings were
    merged by :func:`visible`.
    """
    _check_columns(df, cfg, path)
    fmt = cfg.format
    ids = (_cells(df, cfg.id_column, "data.id_column", path, fmt) if cfg.id_column
           else pd.Series([str(i) for i in range(len(df))], dtype=object))
    texts = _cells(df, cfg.text_column, "data.text_column", path, fmt)
    picks = _cells(df, cfg.pick_column, "data.pick_column", path, fmt)
    cats, n_respelled = _category_spellings(_cells(df, cfg.category_column, "data.category_column", path, fmt))
    _check_category_names(cats, ids, cfg, path, fmt)
    _check_ids_and_texts(ids, texts, df, cfg, path, fmt)
    pick_arr = _pick_codes(picks, ids, cfg, path, fmt)
    cats, n_decline_cat = _decline_categories(pick_arr, cats, ids, cfg, path, fmt)

    out = pd.DataFrame({"id": ids.astype(str).to_numpy(), "text": texts.to_numpy(),
                        "pick": pick_arr, "category": cats.to_numpy(dtype=object)})
    if cfg.split_column:
        out["split"] = [_split_name(v, path, fmt, i, cfg.split_column) for i, v in enumerate(df[cfg.split_column])]
    out, dropped = _drop_unlabelled(out, cfg, path)
    return out, dropped, (n_decline_cat if cfg.decline_with_category == "drop_category" else 0), n_respelled


def _category_spellings(cats: pd.Series) -> tuple[pd.Series, int]:
    """Category names in one spelling (:func:`visible`): ``POLITICS`` and ``POLITICS\\u200b``, or ``CAFÉ`` in NFC and
    NFD, are one class. Returns the names and how many distinct raw spellings were changed."""
    changed = {c for c in set(cats.dropna()) if visible(c) != c}
    if not changed:
        return cats, 0
    return pd.Series([None if c is None else (visible(c) or None) for c in cats], dtype=object), len(changed)


def _check_columns(df: pd.DataFrame, cfg: DataParams, path: str) -> None:
    """Every configured column is in the table (a one-column table that looks ;/tab/| separated is named)."""
    needed = {"data.text_column": cfg.text_column, "data.pick_column": cfg.pick_column,
              "data.category_column": cfg.category_column}
    if cfg.id_column:
        needed["data.id_column"] = cfg.id_column
    if cfg.split_column:
        needed["data.split_column"] = cfg.split_column
    for key, col in needed.items():
        if col not in df.columns:
            hint = ""
            if len(df.columns) == 1 and any(c in str(df.columns[0]) for c in ";\t|"):
                hint = (f". Only one column was found, {str(df.columns[0])[:60]!r}: the file looks separated by"
                        " something other than commas; save it as a comma-separated .csv (or tab-separated .tsv)")
            raise DataError(f"{path}: column {col!r} ({key}) not found; columns are {list(df.columns)}{hint}")


def _cells(df: pd.DataFrame, name: str, key: str, path: str, fmt: str) -> pd.Series:
    """A column's cleaned cells as Python objects (str, or None when missing); a list/object cell, or a number in
    the text column, is an error naming its row."""
    values = df[name].tolist()
    for i, v in enumerate(values):
        kind = _junk(v)
        if kind:
            raise DataError(f"{path}: {row_ref(path, fmt, i)}: column {name!r} ({key}) holds {kind}"
                            f" ({str(v)[:60]}), not a single value")
    if key == "data.text_column":
        numbers = [i for i, v in enumerate(values) if _is_number(v)]
        if numbers:
            i = numbers[0]
            raise DataError(f"{path}: {row_ref(path, fmt, i)}: column {name!r} ({key}) holds the number"
                            f" {values[i]!r}, not text; {len(numbers)} such row(s). An article's text must be a"
                            " string (quote it in JSON Lines if it really is a number)")
    return pd.Series([_clean(v) for v in values], dtype=object)


def _check_category_names(cats: pd.Series, ids: pd.Series, cfg: DataParams, path: str, fmt: str) -> None:
    for i, c in enumerate(cats):
        if c is not None and any(unicodedata.category(ch) == "Cc" for ch in c):
            raise DataError(f"{path}: {row_ref(path, fmt, i)} (id {ids.iloc[i]!r}): category {c!r} in column"
                            f" {cfg.category_column!r} contains a line break, tab or other control character;"
                            " a category name is one line of text (fix the cell or its quoting)")


def _check_ids_and_texts(ids: pd.Series, texts: pd.Series, df: pd.DataFrame, cfg: DataParams, path: str,
                         fmt: str) -> None:
    """Ids present and unique, texts present: the first offending row named, with the count."""
    bad_id = ids.isna().to_numpy().nonzero()[0]
    if len(bad_id):
        i = int(bad_id[0])
        raise DataError(f"{path}: {row_ref(path, fmt, i)}: empty id in column {cfg.id_column!r}")
    dup = ids.duplicated(keep="first").to_numpy().nonzero()[0]
    if len(dup):
        i = int(dup[0])
        first = int((ids == ids.iloc[i]).to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: {row_ref(path, fmt, i)}: duplicate id {ids.iloc[i]!r} in column {cfg.id_column!r}"
            f" (first seen at {row_ref(path, fmt, first)}); {int(ids.duplicated().sum())} duplicate id(s) in all"
        )
    bad_text = np.array([t is None or not visible(t) for t in texts]).nonzero()[0]  # zero-width-only is empty
    if len(bad_text):
        i = int(bad_text[0])
        raise DataError(
            f"{path}: {row_ref(path, fmt, i)} (id {ids.iloc[i]!r}): empty text in column {cfg.text_column!r}"
            f" (value {df[cfg.text_column].iloc[i]!r}); {len(bad_text)} such row(s)"
        )


def _pick_codes(picks: pd.Series, ids: pd.Series, cfg: DataParams, path: str, fmt: str) -> np.ndarray:
    """1 (Pick) / 0 (Decline) / IGNORE (empty) per row, by the configured spellings (matched by
    :func:`label_key`)."""
    pick_map = {label_key(v): 1 for v in cfg.pick_values}
    for v in cfg.decline_values:
        if label_key(v) in pick_map:
            raise DataError(f"data.pick_values and data.decline_values share the spelling {v!r}")
        pick_map[label_key(v)] = 0
    codes = []
    for i, v in enumerate(picks):
        if v is None:
            codes.append(IGNORE)
            continue
        code = pick_map.get(label_key(v))
        if code is None:
            raise DataError(
                f"{path}: {row_ref(path, fmt, i)} (id {ids.iloc[i]!r}): unknown value {v!r} in column"
                f" {cfg.pick_column!r}; expected one of {cfg.pick_values + cfg.decline_values} or empty"
                " (set data.pick_values / data.decline_values for other spellings, e.g. [\"1\"] / [\"0\"]"
                " for a 1/0 column)"
            )
        codes.append(code)
    return np.asarray(codes, dtype=np.int64)


def _decline_categories(pick_arr: np.ndarray, cats: pd.Series, ids: pd.Series, cfg: DataParams, path: str,
                        fmt: str) -> tuple[pd.Series, int]:
    """A Decline row has no category: an error, or (``drop_category``) the category removed; returns the
    categories and how many Decline rows had one."""
    decline_with_cat = (pick_arr == 0) & cats.notna().to_numpy()
    n = int(decline_with_cat.sum())
    if n and cfg.decline_with_category == "error":
        i = int(decline_with_cat.nonzero()[0][0])
        raise DataError(
            f"{path}: {row_ref(path, fmt, i)} (id {ids.iloc[i]!r}): Decline row with category"
            f" {cats.iloc[i]!r} in column {cfg.category_column!r}; {n} such row(s)."
            " A Decline row has no category; set data.decline_with_category: drop_category to drop them"
        )
    return pd.Series([None if d else c for c, d in zip(cats, decline_with_cat)], dtype=object), n


def _drop_unlabelled(out: pd.DataFrame, cfg: DataParams, path: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows with neither label dropped (counted); both Pick and Decline rows must remain."""
    no_label = (out["pick"] == IGNORE) & out["category"].isna()
    dropped = {}
    if no_label.any():
        dropped["no_label"] = int(no_label.sum())
        out = out[~no_label].reset_index(drop=True)
    if len(out) == 0:
        raise DataError(f"{path}: no row carries a Pick/Decline label or a category")
    for code, name in ((1, "Pick"), (0, "Decline")):
        if not (out["pick"] == code).any():
            spellings = cfg.pick_values if code == 1 else cfg.decline_values
            raise DataError(f"{path}: no row is {name} in column {cfg.pick_column!r} (data.pick_column; spellings"
                            f" {spellings}, data.{'pick' if code == 1 else 'decline'}_values): Task1 needs both"
                            " Pick and Decline rows")
    return out, dropped


def _split_name(value, path: str, fmt: str, i: int, column: str) -> str:
    v = _clean(value)
    name = _SPLIT_SPELLINGS.get(v.lower()) if v is not None else None
    if name is None:
        raise DataError(
            f"{path}: {row_ref(path, fmt, i)}: split value {value!r} in column {column!r} is not one of"
            " train / val (valid, validation, dev) / test"
        )
    return name


def strata(df: pd.DataFrame) -> pd.Series:
    """The stratum of each normalised row (see the module docstring)."""
    s = df["category"].copy()
    s[df["category"].isna() & (df["pick"] == 0)] = DECLINE_STRATUM
    s[df["category"].isna() & (df["pick"] == 1)] = PICK_ONLY_STRATUM
    return s.astype(str)


def stratified_split(df: pd.DataFrame, cfg: SplitParams) -> tuple[pd.Series, list[str]]:
    """Assign each row to train/val/test by the rule in the module docstring.

    Returns the split name per row (index aligned with ``df``) and the strata that went wholly to train.
    """
    eval_ratios = {"val": cfg.val_ratio, "test": cfg.test_ratio}
    n_eval = sum(1 for r in eval_ratios.values() if r > 0)
    assign = pd.Series("train", index=df.index, dtype=object)
    rare = []
    st = strata(df)
    for name in sorted(st.unique()):
        members = df.index[st == name]
        members = members[np.argsort(df.loc[members, "id"].to_numpy(), kind="stable")]
        n = len(members)
        if n_eval and n < 1 + n_eval:
            rare.append(name)
            continue
        rng = np.random.default_rng([cfg.seed, zlib.crc32(name.encode("utf-8"))])
        order = members[rng.permutation(n)]
        start = 0
        for split, ratio in (("test", cfg.test_ratio), ("val", cfg.val_ratio)):
            if ratio <= 0:
                continue
            k = max(1, int(round(n * ratio)))
            assign[order[start:start + k]] = split
            start += k
        if start >= n:  # the rounding left train empty: give one row back from val
            assign[order[start - 1]] = "train"
    return assign, rare


def prepare(data_cfg: DataParams, split_cfg: SplitParams) -> Prepared:
    """Read ``data.raw_path``, validate it, split it, and encode labels (see the module docstring)."""
    path = data_cfg.raw_path
    raw = read_table(path, data_cfg.format, encoding=data_cfg.encoding)
    df, dropped, n_decline_cat, respelled = normalise(raw, data_cfg, path)
    respell_note = ([f"{path}: {respelled} category spelling(s) had invisible characters or another Unicode form"
                     " (zero-width spaces, NFD accents): merged into one spelling each"] if respelled else [])

    rare: list[str] = []
    if data_cfg.split_column:
        split = df.pop("split")
        train_cats = set(df.loc[split == "train", "category"].dropna())
        unseen = df["category"].notna() & ~df["category"].isin(train_cats)
        if unseen.any():
            i = int(unseen.to_numpy().nonzero()[0][0])
            names = sorted(set(df.loc[unseen, "category"]))
            raise DataError(
                f"{path}: category {df['category'].iloc[i]!r} (id {df['id'].iloc[i]!r}, split"
                f" {split.iloc[i]!r}) never occurs in the train split; the model cannot learn it."
                f" Categories seen only in val/test: {names}"
            )
    else:
        split, rare = stratified_split(df, split_cfg)
    corrected = None
    if data_cfg.corrections:  # after the split: a relabelled row stays in its split, runs stay paired
        from .corrections import apply, read_corrections

        df, split, corrected = apply(df.reset_index(drop=True), split.reset_index(drop=True),
                                     read_corrections(data_cfg.corrections, data_cfg.encoding), data_cfg.corrections,
                                     data_cfg.pick_values, data_cfg.decline_values, path)

    categories = sorted(set(df["category"].dropna()))
    removed_note = ([f"{data_cfg.corrections}: the corrections leave no row of category {c!r} (relabelled or"
                     f" dropped): it is no longer a class ({len(categories) + len(corrected.categories_removed)}"
                     f" → {len(categories)} categories)" for c in corrected.categories_removed]
                    if corrected is not None else [])
    col = data_cfg.category_column
    if not categories:
        raise DataError(f"{path}: no row has a category in column {col!r} (data.category_column)")
    if len(categories) == 1:
        raise DataError(f"{path}: only one category ({categories[0]!r}) in column {col!r}: Task2 needs at least two")
    folded: dict[str, list[str]] = {}
    for c in categories:
        folded.setdefault(" ".join(c.casefold().split()), []).append(c)
    clash = [v for v in folded.values() if len(v) > 1]
    if clash:
        raise DataError(f"{path}: categories {clash[0]} in column {col!r} differ only in case or spacing"
                        f" ({len(clash)} such group(s)); spell each category one way in the data")
    commas = [c for c in categories if "," in c]
    comma_warning = ([f"{path}: {len(commas)} category name(s) contain a comma ({', '.join(map(repr, commas[:3]))}):"
                      " kept as one name each (CSV outputs quote them; a tool that splits on every comma will not)"]
                     if commas else [])
    cat_id = {c: i for i, c in enumerate(categories)}
    df["labels_task1"] = df["pick"].astype(np.int64)
    df["labels_task2"] = df["category"].map(cat_id).fillna(IGNORE).astype(np.int64)
    df = df.drop(columns=["pick"])
    splits = {s: df[split.to_numpy() == s].reset_index(drop=True) for s in SPLITS}
    for name, ratio in (("train", None), ("val", split_cfg.val_ratio), ("test", split_cfg.test_ratio)):
        if len(splits[name]) == 0:
            why = (f"no row of column {data_cfg.split_column!r} says {name!r}" if data_cfg.split_column
                   else f"split.{name}_ratio is {ratio}" if ratio is not None else "every row went elsewhere")
            raise DataError(f"{path}: the {name} split is empty ({why}); training needs val rows to select and report"
                            " epochs, and evaluate needs test rows")
    _train_covers_every_label(splits, df, categories, data_cfg, corrected, path)
    dup_counts, warnings = _cross_split_duplicates(splits, data_cfg, path)
    return Prepared(splits=splits, categories=categories, dropped=dropped, decline_category_dropped=n_decline_cat,
                    rare_train_only=rare, cross_split_duplicates=dup_counts,
                    warnings=respell_note + comma_warning + removed_note + warnings, names_respelled=respelled,
                    corrections=corrected.as_dict() if corrected is not None else None)



def _train_covers_every_label(splits: dict, df: pd.DataFrame, categories: list[str], data_cfg: DataParams,
                              corrected, path) -> None:
    """The train split holds Pick and Decline rows, and every category val/test have; when the corrections took
    them away, the error names the corrections file and its rows."""
    train_pick = splits["train"]["labels_task1"]
    for code, label in ((0, "Decline"), (1, "Pick")):
        if not (train_pick == code).any():
            n = int((df["labels_task1"] == code).sum())
            if corrected is not None and corrected.blame(pick=code):
                raise DataError(f"{data_cfg.corrections}: after the corrections the train split has no {label} row"
                                f"{corrected.blame(pick=code)}; Task1 cannot learn {label}: keep some train"
                                f" {label} rows")
            raise DataError(f"{path}: the train split has no {label} row ({n} in all, every one in val/test"
                            + (f" by column {data_cfg.split_column!r}" if data_cfg.split_column else "")
                            + f"); Task1 cannot learn {label} from train: move some {label} rows to train")
    if corrected is not None:   # a class the corrections took out of train but left in val/test
        in_train = set(splits["train"]["category"].dropna())
        lost = [c for c in categories if c not in in_train and corrected.blame(category=c)]
        if lost:
            raise DataError(f"{data_cfg.corrections}: after the corrections no train row has category {lost[0]!r}"
                            f" (val/test still do){corrected.blame(category=lost[0])}; the model cannot learn it:"
                            " keep some train rows of it, or relabel its val/test rows too")


def _cross_split_duplicates(splits: dict[str, pd.DataFrame], cfg: DataParams, path) -> tuple[dict, list[str]]:
    """Count (and with data.drop_cross_split_duplicates, drop) val/test rows whose exact text is in train:
    they inflate val/test scores. Modifies ``splits`` in place when dropping."""
    train_texts = set(splits["train"]["text"].str.strip())
    counts, warnings, examples = {}, [], []
    for name in ("val", "test"):
        dup = splits[name]["text"].str.strip().isin(train_texts)
        counts[name] = int(dup.sum())
        examples += [f"{name} {i}" for i in splits[name].loc[dup.to_numpy(), "id"].astype(str).head(3)]
        if counts[name] and cfg.drop_cross_split_duplicates:
            splits[name] = splits[name][~dup.to_numpy()].reset_index(drop=True)
            if len(splits[name]) == 0:
                raise DataError(f"{path}: every {name} row's text is also in train; nothing left to {name}")
    if any(counts.values()):
        what = "dropped" if cfg.drop_cross_split_duplicates else "kept (set data.drop_cross_split_duplicates: true"\
            " to drop them)"
        more = ", …" if sum(counts.values()) > len(examples) else ""
        warnings.append(f"{path}: {counts['val']} val and {counts['test']} test row(s) have the exact text of a train"
                        f" row (ids: {', '.join(examples)}{more}); {what}")
    return counts, warnings


def coverage(df: pd.DataFrame) -> dict[str, int]:
    """Label coverage of a prepared table: both labels / Pick only / category only / Decline."""
    has_cat = df["labels_task2"] != IGNORE
    b = df["labels_task1"]
    return {
        "rows": int(len(df)),
        "both": int(((b == 1) & has_cat).sum()),
        "pick_only": int(((b == 1) & ~has_cat).sum()),
        "category_only": int(((b == IGNORE) & has_cat).sum()),
        "decline": int((b == 0).sum()),
    }
