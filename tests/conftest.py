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


def tiny_params(tmp: Path, encoder_dir: Path, rows: int = 400, **train) -> Params:
    """Params for a tiny end-to-end run inside ``tmp`` (demo rows, small encoder, 2 epochs)."""
    demo = pd.read_csv(DEMO_CSV, dtype=str, keep_default_na=False)
    strat = demo["category"].where(demo["category"] != "", demo["pick"])
    small = demo.groupby(strat, group_keys=False).head(6)
    small = pd.concat([small, demo.drop(small.index).head(max(0, rows - len(small)))])
    raw = tmp / "raw.csv"
    small.to_csv(raw, index=False)
    return make_params(
        data={"raw_path": str(raw)},
        split={"val_ratio": 0.2, "test_ratio": 0.2},
        model={"stage1_checkpoint": str(encoder_dir)},
        tokenize={"max_length": 64},
        train={"lr": 3e-3, "epochs": 2, "batch_size": 16, "eval_batch_size": 64, "device": "cpu", **train},
    )


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, demo_encoder_dir):
    """Prepared + tokenized tiny data set (built once), and its params."""
    from twohead.prepare import run_prepare
    from twohead.tokenization import run_tokenize

    tmp = tmp_path_factory.mktemp("tiny")
    p = tiny_params(tmp, demo_encoder_dir)
    run_prepare(p, tmp / "prepared", tmp / "metrics" / "data.json")
    run_tokenize(p, tmp / "prepared", tmp / "tokenized")
    return tmp, p


def train_in(tmp: Path, data_dir: Path, p: Params) -> dict:
    """run_train with every output under ``tmp`` (data from ``data_dir``)."""
    from twohead.train import run_train

    return run_train(p, prepared_dir=data_dir / "prepared", tokenized_dir=data_dir / "tokenized",
                     model_dir=tmp / "models" / "stage2", history_path=tmp / "plots" / "train_history.csv",
                     bands_path=tmp / "plots" / "band_recall.csv", steps_path=tmp / "logs" / "steps.jsonl",
                     metrics_path=tmp / "metrics" / "train.json", speed_path=tmp / "metrics" / "train_speed.json",
                     cartography_dir=tmp / "metrics")
