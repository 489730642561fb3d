"""Shared fixtures: a small demo encoder built once per session, helpers for hand-made tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from twohead.params import Params, params_from_dict

ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = ROOT / "data" / "demo" / "news_demo.csv"


def make_params(**sections) -> Params:
    """Recipe defaults with some sections overridden: make_params(data={"raw_path": "x.csv"})."""
    return params_from_dict(sections, source="<test>", partial=True)


def replace(params: Params, section: str, **changes) -> Params:
    return dataclasses.replace(params, **{section: dataclasses.replace(getattr(params, section), **changes)})


def write_table(path: Path, rows: list[dict]) -> Path:
    df = pd.DataFrame(rows)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


@pytest.fixture(scope="session")
def demo_encoder_dir(tmp_path_factory) -> Path:
    """A tiny DeBERTa-v3-layout encoder (spm-only tokenizer) built by the project's own builder."""
    from twohead.demo import build_demo_encoder
    from twohead.params import DemoEncoderParams

    out = tmp_path_factory.mktemp("enc") / "demo_encoder"
    cfg = DemoEncoderParams(texts_path=str(DEMO_CSV), output_dir=str(out), vocab_size=1000,
                            hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=0)
    return build_demo_encoder(cfg)
