"""Reading what ``prepare_labels`` wrote (``data/prepared``): split tables, label maps, weights, bands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.errors import MissingInputError
from .io import read_json
from .labels import SPLITS


@dataclass
class LabelInfo:
    label_maps: dict
    class_weights: dict
    bands: dict

    @property
    def names(self) -> list[str]:
        return self.label_maps["task2"]["names"]


def read_label_info(prepared_dir: str | Path) -> LabelInfo:
    d = Path(prepared_dir)
    return LabelInfo(read_json(d / "label_maps.json"), read_json(d / "class_weights.json"), read_json(d / "bands.json"))


def read_split(prepared_dir: str | Path, split: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(prepared_dir) / f"{split}.parquet"
    if not path.is_file():
        raise MissingInputError(f"{path}: not found; run the prepare_labels stage first (dvc repro prepare_labels)")
    return pd.read_parquet(path, columns=columns)


def read_prepared(prepared_dir: str | Path) -> dict[str, pd.DataFrame]:
    return {name: read_split(prepared_dir, name) for name in SPLITS}


def texts_by_id(prepared_dir: str | Path, split: str) -> pd.Series:
    """The split's texts indexed by row id."""
    return read_split(prepared_dir, split, ["id", "text"]).set_index("id")["text"]
