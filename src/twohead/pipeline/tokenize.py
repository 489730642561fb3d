"""The tokenize stage: the tokenizer of ``model.stage1_checkpoint`` on every prepared split — and, first, whether
that tokenizer can read these texts at all (:mod:`twohead.data.coverage`: unknown-token share and what its
normaliser drops, on a sample of the training texts; warned past 1%, written to ``metrics/tokenizer.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.params import Params
from ..data.coverage import coverage, warnings
from ..data.io import METRIC_DIGITS, write_json
from ..data.prepared import read_prepared
from ..data.tokenization import tokenize_splits, write_tokenized
from ..model.checkpoint import validate_checkpoint


@dataclass(frozen=True)
class TokenizePaths:
    """Input: the prepared splits. Output: one Parquet file of token ids per split, plus stats.json; the
    tokenizer's coverage of the texts."""

    prepared: Path
    tokenized: Path
    tokenizer_metrics: Path


def run(p: Params, paths: TokenizePaths) -> dict:
    tok, _ = validate_checkpoint(p.model.stage1_checkpoint, max_length=p.tokenize.max_length)
    splits = read_prepared(paths.prepared)
    cov = coverage(tok, splits["train"]["text"].tolist())
    for line in warnings(cov, f"model.stage1_checkpoint {p.model.stage1_checkpoint}"):
        print(f"[tokenize] warning: {line}", flush=True)
    tables, stats = tokenize_splits(tok, splits, p.tokenize.max_length, p.tokenize.batch_size,
                                    p.tokenize.truncation, p.tokenize.head_share)
    stats["tokenizer"] = f"{type(tok).__name__} ({'fast' if tok.is_fast else 'slow'})"
    stats["checkpoint"] = str(p.model.stage1_checkpoint)
    for name, table in tables.items():
        write_tokenized(paths.tokenized / f"{name}.parquet", table)
    write_json(paths.tokenized / "stats.json", {k: v for k, v in stats.items() if k != "rows_per_second"})
    write_json(paths.tokenizer_metrics, cov, digits=METRIC_DIGITS)
    return {**stats, "coverage": cov}
