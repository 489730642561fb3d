"""The build_demo_encoder stage: a small DeBERTa-v3-layout encoder + SentencePiece tokenizer, from scratch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.params import Params
from ..demo import build_demo_encoder


@dataclass(frozen=True)
class DemoEncoderPaths:
    """Input: the demo table (its texts train the tokenizer). Output: the encoder directory."""

    demo_texts: Path
    demo_encoder: Path


def run(p: Params, paths: DemoEncoderPaths) -> Path:
    return build_demo_encoder(p.demo_encoder, paths.demo_texts, paths.demo_encoder)
