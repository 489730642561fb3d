"""Typed parameters: ``params.yaml`` is loaded and validated once, here, for every stage.

Each top-level section of ``params.yaml`` maps to one dataclass below. An unknown or misspelt key,
a missing section key, or a value of the wrong type is a :class:`ParamsError` naming the dotted key
(``train.lr``) and the file. The dataclass defaults are the *recipe* values for a pretrained DeBERTa;
the project's ``params.yaml`` holds every key (DVC's ``exp run -S`` can only set keys that exist there)
and documents where the embedded demo departs from the recipe.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ParamsError


@dataclass(frozen=True)
class DataParams:
    raw_path: str = "data/demo/news_demo.csv"
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    text_column: str = "text"
    pick_column: str = "pick"
    category_column: str = "category"
    id_column: str = "id"  # "" = none: ids are the 0-based row numbers of the raw table
    split_column: str = ""  # "" = stratified split by `split.*`
    pick_values: list[str] = field(default_factory=lambda: ["Pick"])
    decline_values: list[str] = field(default_factory=lambda: ["Decline"])
    decline_with_category: Literal["error", "drop_category"] = "error"
    encoding: str = "utf-8"  # text encoding of a CSV / JSON Lines file
    drop_cross_split_duplicates: bool = False  # drop val/test rows whose exact text is also in train


@dataclass(frozen=True)
class SplitParams:
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 42


@dataclass(frozen=True)
class BandsParams:
    method: Literal["quantile", "threshold"] = "quantile"
    names: list[str] = field(default_factory=lambda: ["High", "Mid", "Low"])
    thresholds: list[int] = field(default_factory=lambda: [500, 50])


@dataclass(frozen=True)
class LossParams:
    task2_weight_min: float = 0.5
    task2_weight_max: float = 5.0
    label_smoothing: float = 0.1  # Task2 only
    label_smoothing_task1: float = 0.0
    lambda_task1: float = 0.4
    lambda_task2: float = 1.0
    weighting: Literal["fixed", "uncertainty"] = "fixed"  # uncertainty: Kendall et al. (2018) learned weights
    task2_weighting: Literal["balanced", "sqrt", "effective_number"] = "balanced"
    task2_weight_beta: float = 0.999  # effective_number (Cui et al., 2019)
    task2_weight_norm: Literal["mean", "median"] = "mean"


@dataclass(frozen=True)
class RegParams:
    """Sealed techniques, each off by default (formulas in ``twohead.train.techniques``)."""

    rdrop_alpha: float = 0.0       # R-Drop (Liang et al., 2021): 0 = off
    awp_lr: float = 1.0            # AWP (Wu et al., 2020): perturbation size relative to each weight's norm
    awp_eps: float = 0.01          # AWP: |δ| <= eps · |w| elementwise
    awp_start_epoch: int = 0       # AWP from this epoch on (1-based); 0 = off


@dataclass(frozen=True)
class HierParams:
    """Optional hierarchy regulariser (off by default); formulas in ``twohead.train.losses.TwoTaskLoss``."""

    pick_consistency_weight: float = 0.0
    pick_consistency_type: Literal["l2", "kl"] = "l2"
    decline_uniform_weight: float = 0.0
    pick_consistency_detach: Literal["none", "task1"] = "none"  # task1: stop-gradient through P(Pick)


@dataclass(frozen=True)
class TokenizeParams:
    max_length: int = 256
    batch_size: int = 1000


@dataclass(frozen=True)
class ModelParams:
    stage1_checkpoint: str = "models/stage1"
    pooling: Literal["mean", "cls"] = "mean"
    head_dropout: float = 0.1
    msd_samples: int = 1  # multi-sample dropout (Inoue, 2019): K dropout masks on the pooled vector; 1 = off


@dataclass(frozen=True)
class DemoEncoderParams:
    """The from-scratch demo encoder (its input table and output folder are in dvc.yaml)."""

    text_column: str = "text"
    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    seed: int = 0


@dataclass(frozen=True)
class TrainParams:
    lr: float = 2e-5
    llrd: float = 0.8
    head_lr_mult: float = 1.0
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    scheduler: Literal["linear", "cosine"] = "linear"
    epochs: int = 5
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 42
    device: Literal["auto", "mps", "cuda", "cpu"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    keep: Literal["last", "best"] = "last"
    group_by_length: bool = True
    num_workers: int = 0
    max_train_rows: int = 0  # 0 = all; >0 = a seeded subsample, for smoke runs
    checkpoint_every_steps: int = 0  # resumable state every N optimiser steps too (0 = after each epoch only)
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a NaN/inf loss or grad norm: stop, or drop that step
    compile: bool = False  # torch.compile the encoder in place (dynamic shapes)
    fast_attention: bool = True  # windowed DeBERTa relative-attention bias (same values, less work on short rows)


@dataclass(frozen=True)
class Stage1Params:
    """The Stage-1 (Pick/Decline) pretraining recipe; device, precision, batching and clipping follow ``train``."""

    base_model: str = "models/demo_encoder"
    epochs: int = 2
    lr: float = 2e-5
    batch_size: int = 32
    llrd: float = 0.8
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 42
    max_train_rows: int = 0


@dataclass(frozen=True)
class EvalParams:
    pick_threshold: float = 0.5
    low_confidence: float = 0.5
    high_confidence: float = 0.9
    worst_k: int = 50
    top_confusions: int = 20


@dataclass(frozen=True)
class PredictParams:
    """The predict stage: score a table of new articles with the trained model."""

    input: str = "data/demo/news_demo.csv"   # CSV, Parquet or JSON Lines
    text_column: str = "text"
    id_column: str = ""                      # "" = 'id' if the table has it, else the row number
    top_k: int = 3
    batch_size: int = 64


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    bands: BandsParams = field(default_factory=BandsParams)
    loss: LossParams = field(default_factory=LossParams)
    hier: HierParams = field(default_factory=HierParams)
    reg: RegParams = field(default_factory=RegParams)
    tokenize: TokenizeParams = field(default_factory=TokenizeParams)
    model: ModelParams = field(default_factory=ModelParams)
    demo_encoder: DemoEncoderParams = field(default_factory=DemoEncoderParams)
    stage1: Stage1Params = field(default_factory=Stage1Params)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    predict: PredictParams = field(default_factory=PredictParams)


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where that is lossless."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ParamsError(f"{source}: {key} = {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1]
        if not isinstance(value, list):
            raise ParamsError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation for {key}: {tp}")  # pragma: no cover
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ParamsError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ParamsError(f"{source}: {key} must be a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads `2e-5` (no dot) as a string; accept it as the number it obviously is.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ParamsError(f"{source}: {key} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise ParamsError(f"{source}: {key} must be a finite number, got {value!r}")
        return number
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ParamsError(f"{source}: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation for {key}: {tp}")  # pragma: no cover


def _build(cls: type, raw: Any, prefix: str, source: str, partial: bool) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: section {prefix or '<root>'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ParamsError(
            f"{source}: unknown key(s) {', '.join(where + str(k) for k in unknown)}"
            f" (known keys{' in ' + prefix if prefix else ''}: {', '.join(names)})"
        )
    if not partial:
        missing = [n for n in names if n not in raw]
        if missing:
            where = f"{prefix}." if prefix else ""
            raise ParamsError(f"{source}: missing key(s) {', '.join(where + m for m in missing)}")
    kwargs = {}
    for name in names:
        if name not in raw:
            continue
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw[name], key, source, partial)
        else:
            kwargs[name] = _coerce(raw[name], tp, key, source)
    return cls(**kwargs)


def _validate(p: Params, source: str) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ParamsError(f"{source}: {msg}")

    need(0 <= p.split.val_ratio < 1, "split.val_ratio must be in [0, 1)")
    need(0 <= p.split.test_ratio < 1, "split.test_ratio must be in [0, 1)")
    need(p.split.val_ratio + p.split.test_ratio < 1, "split.val_ratio + split.test_ratio must be < 1")
    for key, seed in (("split.seed", p.split.seed), ("train.seed", p.train.seed), ("stage1.seed", p.stage1.seed),
                      ("demo_encoder.seed", p.demo_encoder.seed)):
        need(0 <= seed < 2 ** 32, f"{key} must be in [0, 2**32), got {seed}")
    need(bool(p.data.encoding.strip()), "data.encoding must name a text encoding, e.g. utf-8")
    need(len(p.bands.names) >= 1, "bands.names needs at least one name")
    need(len(set(p.bands.names)) == len(p.bands.names), "bands.names must be distinct")
    if p.bands.method == "threshold":
        need(
            len(p.bands.thresholds) == len(p.bands.names) - 1,
            "bands.thresholds needs exactly len(bands.names) - 1 values (descending)",
        )
        need(
            all(a > b for a, b in zip(p.bands.thresholds, p.bands.thresholds[1:])),
            "bands.thresholds must be strictly descending",
        )
    need(0 < p.loss.task2_weight_min <= p.loss.task2_weight_max,
         "need 0 < loss.task2_weight_min <= loss.task2_weight_max")
    need(0 <= p.loss.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)")
    need(0 <= p.loss.label_smoothing_task1 < 1, "loss.label_smoothing_task1 must be in [0, 1)")
    need(p.loss.lambda_task1 >= 0 and p.loss.lambda_task2 >= 0, "loss.lambda_* must be >= 0")
    need(p.loss.lambda_task1 > 0 or p.loss.lambda_task2 > 0, "at least one of loss.lambda_task1, loss.lambda_task2"
         " must be > 0 (both 0 trains nothing)")
    need(p.hier.pick_consistency_weight >= 0 and p.hier.decline_uniform_weight >= 0, "hier.*_weight must be >= 0")
    need(0 < p.loss.task2_weight_beta < 1, "loss.task2_weight_beta must be in (0, 1), e.g. 0.999")
    need(p.reg.rdrop_alpha >= 0, "reg.rdrop_alpha must be >= 0 (0 = off)")
    need(p.reg.awp_start_epoch >= 0, "reg.awp_start_epoch must be >= 0 (0 = off)")
    need(p.reg.awp_start_epoch == 0 or (p.reg.awp_lr > 0 and p.reg.awp_eps > 0),
         "reg.awp_lr and reg.awp_eps must be > 0 when reg.awp_start_epoch > 0")
    need(1 <= p.model.msd_samples <= 64, "model.msd_samples must be in [1, 64] (1 = off)")
    need(p.tokenize.max_length >= 8, "tokenize.max_length must be >= 8")
    need(p.tokenize.batch_size >= 1, "tokenize.batch_size must be >= 1")
    need(0 <= p.model.head_dropout < 1, "model.head_dropout must be in [0, 1)")
    need(bool(p.model.stage1_checkpoint), "model.stage1_checkpoint must name a model directory")
    need(p.train.lr > 0, "train.lr must be > 0")
    need(0 < p.train.llrd <= 1, "train.llrd must be in (0, 1]")
    need(p.train.head_lr_mult > 0, "train.head_lr_mult must be > 0")
    need(0 <= p.train.warmup_ratio < 1, "train.warmup_ratio must be in [0, 1)")
    need(p.train.epochs >= 1, "train.epochs must be >= 1")
    need(p.train.batch_size >= 1 and p.train.eval_batch_size >= 1, "train.*batch_size must be >= 1")
    need(p.train.grad_accum >= 1, "train.grad_accum must be >= 1")
    need(p.train.max_grad_norm > 0, "train.max_grad_norm must be > 0")
    need(p.train.max_train_rows >= 0, "train.max_train_rows must be >= 0")
    need(p.train.checkpoint_every_steps >= 0, "train.checkpoint_every_steps must be >= 0 (0 = after each epoch only)")
    need(p.stage1.weight_decay >= 0 and p.train.weight_decay >= 0, "train.weight_decay and stage1.weight_decay"
         " must be >= 0")
    need(p.train.num_workers >= 0, "train.num_workers must be >= 0")
    need(p.stage1.epochs >= 1 and p.stage1.lr > 0 and p.stage1.batch_size >= 1,
         "stage1.epochs, stage1.lr, stage1.batch_size must be positive")
    need(0 < p.stage1.llrd <= 1 and 0 <= p.stage1.warmup_ratio < 1,
         "stage1.llrd in (0, 1], stage1.warmup_ratio in [0, 1)")
    need(0 <= p.stage1.label_smoothing < 1 and p.stage1.max_train_rows >= 0,
         "stage1.label_smoothing in [0, 1), stage1.max_train_rows >= 0")
    need(0 < p.eval.pick_threshold < 1, "eval.pick_threshold must be in (0, 1)")
    need(0 < p.eval.low_confidence <= 1 and 0 <= p.eval.high_confidence < 1,
         "eval confidence thresholds must be in [0, 1]")
    need(p.eval.worst_k >= 0 and p.eval.top_confusions >= 1, "eval.worst_k >= 0 and eval.top_confusions >= 1")
    need(p.predict.top_k >= 1 and p.predict.batch_size >= 1, "predict.top_k and predict.batch_size must be >= 1")


def params_from_dict(raw: Any, source: str = "<params>", partial: bool = False) -> Params:
    """Build validated :class:`Params` from a mapping. ``partial=True`` lets missing keys take the
    recipe defaults (used by tests and library callers); stage runs use the strict form."""
    params = _build(Params, raw, "", source, partial)
    _validate(params, source)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load ``params.yaml`` strictly: every key present, no unknown key, every value well-typed."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the project root)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raise ParamsError(f"{path}: params file is empty")
    return params_from_dict(raw, source=str(path), partial=False)


def to_dict(params: Any) -> dict:
    """Plain nested dict of a params dataclass (for logging and for saving next to a model)."""
    return dataclasses.asdict(params)
