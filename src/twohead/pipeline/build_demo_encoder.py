"""The build_demo_encoder stage: a small DeBERTa-v3-layout encoder + SentencePiece tokenizer, from scratch. The
tokenizer learns from the **train split's** texts: the demo's, or yours when you bring data without a checkpoint
(never val/test texts, and never a file other than your data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.params import Params
from ..data.prepared import read_split
from ..demo import build_demo_encoder


@dataclass(frozen=True)
class DemoEncoderPaths:
    """Input: the prepared splits (the train texts train the tokenizer). Output: the encoder directory."""

    prepared: Path
    demo_encoder: Path


def run(p: Params, paths: DemoEncoderPaths) -> Path:
    texts = read_split(paths.prepared, "train", ["text"])["text"].astype(str).tolist()
    return build_demo_encoder(p.demo_encoder, texts, paths.demo_encoder)
