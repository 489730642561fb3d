"""Conflicting duplicates: the same text after normalisation (Unicode NFKC, case, whitespace, punctuation) with
different labels, within a split and across splits."""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFKC, case-folded, punctuation and symbols dropped, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", str(text)).casefold()
    t = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in t)
    return _SPACE.sub(" ", t).strip()


def conflicting_duplicates(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """``rows``: id, split, text, pick (Pick / Decline / ""), category ("" = none). Returns the rows of every group
    whose normalised text repeats with more than one (pick, category), and the counts (groups, rows, within one
    split, across splits)."""
    df = rows.copy()
    df["key"] = df["text"].map(normalise_text)
    df = df[df["key"] != ""]
    df["label"] = df["pick"].astype(str) + " / " + df["category"].astype(str)
    g = df.groupby("key")
    conflict = g["label"].transform("nunique") > 1
    out = df[conflict].copy()
    if out.empty:
        cols = ["group", "id", "split", "text", "pick", "category", "splits_in_group"]
        return pd.DataFrame(columns=cols), {"groups": 0, "rows": 0, "within_split": 0, "across_splits": 0}
    out["group"] = out.groupby("key", sort=True).ngroup() + 1
    out["splits_in_group"] = out.groupby("key")["split"].transform(lambda s: "+".join(sorted(set(s))))
    across = out.groupby("group")["split"].nunique() > 1
    counts = {"groups": int(out["group"].nunique()), "rows": int(len(out)),
              "within_split": int((~across).sum()), "across_splits": int(across.sum())}
    out = out.sort_values(["group", "split", "id"])
    return out[["group", "id", "split", "text", "pick", "category", "splits_in_group"]].reset_index(drop=True), counts
