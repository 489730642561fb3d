"""Shared fixtures: a small demo encoder built once per session, helpers for hand-made tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from twohead.config.params import Params, params_from_dict

ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = ROOT / "data" / "demo" / "news_demo.csv"


def committed_text(relpath: str) -> str:
    """A project file as committed at HEAD (``git show``): tests must not depend on the state of the user's
    workspace (after `dvc exp run` params.yaml holds the experiment's values). Outside a git checkout: the file."""
    import subprocess

    proc = subprocess.run(["git", "show", f"HEAD:{relpath}"], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else (ROOT / relpath).read_text()


def dvc_paths() -> dict[str, str]:
    """The pipeline's paths as dvc.yaml names them (``vars: - paths:``), their one home."""
    from twohead.config.layout import dvc_paths as layout

    return layout(ROOT)


def stage_paths(cls, root: Path, **overrides):
    """A stage's paths dataclass with every path re-rooted under ``root`` (the layout of dvc.yaml), except
    ``overrides`` (e.g. inputs shared by several tests)."""
    import dataclasses

    layout = dvc_paths()
    return cls(**{f.name: Path(overrides[f.name]) if f.name in overrides else root / layout[f.name]
                  for f in dataclasses.fields(cls)})


def tool_paths(root: Path, json_key: str, plot_key: str, **overrides):
    """A tool's :class:`~twohead.tune.common.ToolPaths`, every path re-rooted under ``root`` as
    :func:`stage_paths` does (outputs: dvc.yaml's ``json_key`` / ``plot_key``), except ``overrides``."""
    from twohead.tune.common import ToolPaths

    layout = dvc_paths()
    names = {"json": json_key, "plot": plot_key}
    return ToolPaths(**{f: Path(overrides[f]) if f in overrides else root / layout[names.get(f, f)]
                        for f in ToolPaths.__dataclass_fields__})


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


def demo_texts() -> list[str]:
    """The demo table's texts (the tests' tokenizers learn from all of them)."""
    return pd.read_csv(DEMO_CSV, dtype=str, keep_default_na=False)["text"].tolist()


@pytest.fixture(scope="session")
def demo_encoder_dir(tmp_path_factory) -> Path:
    """A tiny DeBERTa-v3-layout encoder (spm-only tokenizer) built by the project's own builder."""
    from twohead.config.params import DemoEncoderParams
    from twohead.demo import build_demo_encoder

    out = tmp_path_factory.mktemp("enc") / "demo_encoder"
    cfg = DemoEncoderParams(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=0)
    return build_demo_encoder(cfg, demo_texts(), out)


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
    from twohead.pipeline import prepare_labels, tokenize

    tmp = tmp_path_factory.mktemp("tiny")
    p = tiny_params(tmp, demo_encoder_dir)
    prepare_labels.run(p, prepare_labels.PreparePaths(tmp / "prepared", tmp / "metrics" / "data.json"))
    tokenize.run(p, tokenize.TokenizePaths(tmp / "prepared", tmp / "tokenized", tmp / "tokenizer.json"))
    return tmp, p


def train_in(tmp: Path, data_dir: Path, p: Params) -> dict:
    """The train_stage2 stage with every output under ``tmp`` (data from ``data_dir``)."""
    from twohead.pipeline import train_stage2

    paths = stage_paths(train_stage2.TrainPaths, tmp, prepared=data_dir / "prepared", tokenized=data_dir / "tokenized")
    return train_stage2.run(p, paths)


def evaluate_in(tmp: Path, data_dir: Path, p: Params) -> dict:
    """The calibrate and evaluate stages on the model trained by :func:`train_in` under ``tmp``."""
    from twohead.pipeline import calibrate, evaluate

    shared = {"prepared": data_dir / "prepared", "tokenized": data_dir / "tokenized"}
    calibrate.run(p, stage_paths(calibrate.CalibratePaths, tmp, **shared))
    return evaluate.run(p, stage_paths(evaluate.EvaluatePaths, tmp, **shared))


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory) -> tuple[Path, str]:
    """The tiny DVC project, reproduced end to end once and committed ("baseline"); and `dvc repro`'s output.
    Tests work in a :func:`dvc_project.clone_project` of it, never in it."""
    from dvc_project import SHARED_OVERRIDES, SHARED_ROWS, make_project, run

    proj = make_project(tmp_path_factory.mktemp("shared") / "proj", rows=SHARED_ROWS, overrides=SHARED_OVERRIDES)
    out = run(["dvc", "repro"], proj).stdout
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "baseline"], proj)
    return proj, out


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path: a command that must touch nothing is checked with it."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def build_bert(d: Path, mask: bool = True) -> Path:
    """A BERT-style encoder directory at ``d`` with a WordPiece tokenizer trained here on the demo texts;
    ``mask=False``: a tokenizer without a mask token (what the masked-LM phase must refuse)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (["[MASK]"] if mask else [])
    wp.train_from_iterator(demo_texts()[:3000], trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok = BertTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]" if mask else None)
    tok.save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(d))
    return d


JA_WORDS = {"政治": ["首相", "国会", "選挙", "法案", "与党", "野党", "内閣", "外交"],
            "経済": ["株価", "円安", "日銀", "企業", "決算", "物価", "賃金", "輸出"],
            "スポーツ": ["野球", "サッカー", "優勝", "選手", "試合", "監督", "五輪", "記録"]}
JA_DECLINE = ["芸能", "俳優", "番組", "映画", "歌手", "話題", "結婚", "写真"]


def japanese_rows(n: int = 40, seed: int = 0) -> list[dict]:
    """Japanese news-like rows (three categories and Decline rows) built from word lists, seeded: the tests'
    stand-in for a Japanese user's data."""
    import random

    rng = random.Random(seed)
    verbs = ["について発表した", "をめぐり議論が続く", "が過去最高となった", "の見通しを示した", "に注目が集まる"]
    rows = []
    for cat, words in [*JA_WORDS.items(), ("", JA_DECLINE)]:
        for i in range(n):
            a, b = rng.sample(words, 2)
            rows.append({"id": f"{cat or 'd'}{i}", "text": f"{a}と{b}{rng.choice(verbs)}。{b}の関係者が語った",
                         "pick": "Pick" if cat else "Decline", "category": cat})
    return rows
