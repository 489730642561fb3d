"""Typed parameters: ``params.yaml`` is loaded and validated once, here, for every stage.

Each top-level section of ``params.yaml`` maps to one dataclass below; each field's meaning and valid range
sit beside it and its checks in the class's ``__post_init__`` (litgpt's pattern). An unknown or misspelt key,
a missing section key, a value of the wrong type or out of range is a :class:`ParamsError` naming the dotted
key (``train.lr``) and the file. The dataclass defaults are the *recipe* values for a pretrained DeBERTa;
the project's ``params.yaml`` holds every key (DVC's ``exp run -S`` can only set keys that exist there)
and documents where the embedded demo departs from the recipe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ParamsError

_reads: set[str] | None = None  # the dotted keys read while a `recording()` block is active


class Section:
    """Base of every params section. While :func:`recording` is active, reading a field of a section that was
    loaded from params (not one built later by ``dataclasses.replace``) records ``<section>.<field>``: the test
    of dvc.yaml's ``params:`` lists runs each stage under it."""

    SECTION: typing.ClassVar[str] = ""

    def __getattribute__(self, name: str):
        if _reads is not None and not name.startswith("_"):
            cls = type(self)
            if name in cls.__dataclass_fields__ and object.__getattribute__(self, "__dict__").get("_tracked"):
                _reads.add(f"{cls.SECTION}.{name}")
        return object.__getattribute__(self, name)


@contextlib.contextmanager
def recording():
    """``with recording() as reads:`` — ``reads`` collects the dotted params keys read inside the block."""
    global _reads
    previous, _reads = _reads, set()
    try:
        yield _reads
    finally:
        _reads = previous


#: The one way params.yaml says "choose this value on val" (the calibrate stage searches it).
CHOOSE_ON_VAL = "val"


def need(cond: bool, msg: str) -> None:
    """A check of a params section: ``msg`` names the dotted key(s) and the valid range."""
    if not cond:
        raise ParamsError(msg)


def seed_ok(key: str, seed: int) -> None:
    need(0 <= seed < 2 ** 32, f"{key} must be in [0, 2**32), got {seed}")


@dataclass(frozen=True)
class DataParams(Section):
    """The raw table: where it is, which columns hold what, which values mean Pick / Decline."""

    SECTION: typing.ClassVar[str] = "data"

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
    encoding: str = "utf-8"  # text encoding of a CSV / JSON Lines file; must name one
    drop_cross_split_duplicates: bool = False  # drop val/test rows whose exact text is also in train
    # label fixes applied by prepare_labels; "" = none (the pipeline keeps a file, header only = none: dvc.yaml
    # names it as a dependency)
    corrections: str = ""
    # texts without labels for the masked-LM phase (mlm.*): a CSV / Parquet / JSON Lines file with text_column,
    # streamed; "" = none (the pipeline keeps a header-only file, as for corrections)
    unlabeled_path: str = ""

    def __post_init__(self):
        need(bool(self.encoding.strip()), "data.encoding must name a text encoding, e.g. utf-8")


@dataclass(frozen=True)
class SplitParams(Section):
    SECTION: typing.ClassVar[str] = "split"

    val_ratio: float = 0.1   # [0, 1)
    test_ratio: float = 0.1  # [0, 1), and val_ratio + test_ratio < 1
    seed: int = 42           # [0, 2**32)

    def __post_init__(self):
        need(0 <= self.val_ratio < 1, "split.val_ratio must be in [0, 1)")
        need(0 <= self.test_ratio < 1, "split.test_ratio must be in [0, 1)")
        need(self.val_ratio + self.test_ratio < 1, "split.val_ratio + split.test_ratio must be < 1")
        seed_ok("split.seed", self.seed)


@dataclass(frozen=True)
class BandsParams(Section):
    SECTION: typing.ClassVar[str] = "bands"

    method: Literal["quantile", "threshold"] = "quantile"
    names: list[str] = field(default_factory=lambda: ["High", "Mid", "Low"])  # distinct, most frequent first
    thresholds: list[int] = field(default_factory=lambda: [500, 50])  # threshold: len(names) - 1, descending

    def __post_init__(self):
        need(len(self.names) >= 1, "bands.names needs at least one name")
        need(len(set(self.names)) == len(self.names), "bands.names must be distinct")
        if self.method == "threshold":
            need(len(self.thresholds) == len(self.names) - 1,
                 "bands.thresholds needs exactly len(bands.names) - 1 values (descending)")
            need(all(a > b for a, b in zip(self.thresholds, self.thresholds[1:])),
                 "bands.thresholds must be strictly descending")


@dataclass(frozen=True)
class LossParams(Section):
    SECTION: typing.ClassVar[str] = "loss"

    task2_weight_min: float = 0.5  # 0 < min <= max: Task2 class weights are clipped to [min, max]
    task2_weight_max: float = 5.0
    label_smoothing: float = 0.1  # Task2 only; [0, 1)
    label_smoothing_task1: float = 0.0  # [0, 1)
    lambda_task1: float = 0.4  # >= 0, not both 0
    lambda_task2: float = 1.0
    task2_weighting: Literal["balanced", "sqrt", "effective_number"] = "balanced"
    task2_weight_beta: float = 0.999  # effective_number (Cui et al., 2019); (0, 1)
    task2_weight_norm: Literal["mean", "median"] = "mean"

    def __post_init__(self):
        need(0 < self.task2_weight_min <= self.task2_weight_max,
             "need 0 < loss.task2_weight_min <= loss.task2_weight_max")
        need(0 <= self.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)")
        need(0 <= self.label_smoothing_task1 < 1, "loss.label_smoothing_task1 must be in [0, 1)")
        need(self.lambda_task1 >= 0 and self.lambda_task2 >= 0, "loss.lambda_* must be >= 0")
        need(self.lambda_task1 > 0 or self.lambda_task2 > 0, "at least one of loss.lambda_task1, loss.lambda_task2"
             " must be > 0 (both 0 trains nothing)")
        need(0 < self.task2_weight_beta < 1, "loss.task2_weight_beta must be in (0, 1), e.g. 0.999")


@dataclass(frozen=True)
class SwitchParams(Section):
    """The switches: training features off by default (off = the plain recipe, bit for bit). What each does is in
    ``twohead.train.switches`` (R-Drop, multi-sample dropout, AWP), ``twohead.train.losses`` (task weighting,
    hierarchy terms) and ``twohead.train.averaging`` (EMA)."""

    SECTION: typing.ClassVar[str] = "switches"

    task_weighting: Literal["fixed", "uncertainty"] = "fixed"  # uncertainty: Kendall et al. (2018) learned weights
    rdrop_alpha: float = 0.0       # R-Drop (Liang et al., 2021): >= 0, 0 = off
    msd_samples: int = 1           # multi-sample dropout (Inoue, 2019): K masks on the pooled vector; 1 = off, <= 64
    awp_start_epoch: int = 0       # AWP (Wu et al., 2020) from this epoch on (1-based); 0 = off
    awp_lr: float = 1.0            # AWP: perturbation size relative to each weight's norm; > 0
    awp_eps: float = 0.01          # AWP: |δ| <= eps · |w| elementwise; > 0
    pick_consistency_weight: float = 0.0  # hierarchy term (rows with Pick and a category); >= 0
    pick_consistency_type: Literal["l2", "kl"] = "l2"
    pick_consistency_detach: Literal["none", "task1"] = "none"  # task1: stop-gradient through P(Pick)
    decline_uniform_weight: float = 0.0  # hierarchy term (Decline rows: Task2 flat); >= 0
    # EMA decays of the weights, each scored on val every epoch beside the raw weights; train.keep chooses among
    # them by val Task2 accuracy ([] = off)
    ema: list[float] = field(default_factory=list)

    def __post_init__(self):
        need(self.rdrop_alpha >= 0, "switches.rdrop_alpha must be >= 0 (0 = off)")
        need(1 <= self.msd_samples <= 64, "switches.msd_samples must be in [1, 64] (1 = off)")
        need(self.awp_start_epoch >= 0, "switches.awp_start_epoch must be >= 0 (0 = off)")
        need(self.awp_start_epoch == 0 or (self.awp_lr > 0 and self.awp_eps > 0),
             "switches.awp_lr and switches.awp_eps must be > 0 when switches.awp_start_epoch > 0")
        need(self.pick_consistency_weight >= 0 and self.decline_uniform_weight >= 0,
             "switches.pick_consistency_weight and switches.decline_uniform_weight must be >= 0")
        need(all(isinstance(d, (int, float)) and 0 < d < 1 for d in self.ema) and len(set(self.ema)) == len(self.ema)
             and len(self.ema) <= 4, "switches.ema must be a list of up to 4 distinct decays in (0, 1), e.g. [0.999]")


#: The longest token sequence a run may ask for: DeBERTa's attention holds heads × L² scores per layer and row
#: (4096² × 12 heads × 4 bytes ≈ 0.8 GB per layer per row already).
MAX_LENGTH = 4096


@dataclass(frozen=True)
class TokenizeParams(Section):
    SECTION: typing.ClassVar[str] = "tokenize"

    max_length: int = 256  # >= 8, <= MAX_LENGTH and the checkpoint's positions
    batch_size: int = 1000  # rows per tokenizer call; >= 1
    truncation: Literal["head", "head_tail"] = "head"  # a long text: its first tokens, or its head and its tail
    head_share: float = 0.25  # head_tail: the head's share of max_length (Sun et al. 2019: 128 of 512); [0, 1]

    def __post_init__(self):
        need(8 <= self.max_length <= MAX_LENGTH, f"tokenize.max_length must be in [8, {MAX_LENGTH}]: attention"
             " memory grows with its square (a relative-position encoder has no position table to stop it)")
        need(self.batch_size >= 1, "tokenize.batch_size must be >= 1")
        need(0 <= self.head_share <= 1, "tokenize.head_share must be in [0, 1]")


@dataclass(frozen=True)
class ModelParams(Section):
    SECTION: typing.ClassVar[str] = "model"

    stage1_checkpoint: str = "models/stage1"
    pooling: Literal["mean", "cls"] = "mean"
    head_dropout: float = 0.1  # [0, 1)

    def __post_init__(self):
        need(0 <= self.head_dropout < 1, "model.head_dropout must be in [0, 1)")
        need(bool(self.stage1_checkpoint), "model.stage1_checkpoint must name a model directory")


@dataclass(frozen=True)
class DemoEncoderParams(Section):
    """The from-scratch encoder (the demo's, and yours without a checkpoint): its tokenizer learns from the train
    split's texts (``data/prepared``), its weights start random."""

    SECTION: typing.ClassVar[str] = "demo_encoder"

    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 512
    seed: int = 0

    def __post_init__(self):
        seed_ok("demo_encoder.seed", self.seed)


@dataclass(frozen=True)
class OptimParams(Section):
    """The training fields each stage sets for itself (``train.*`` for Stage 2, ``stage1.*`` for Stage 1); the
    rest of ``train`` (device, precision, batching, clipping, …) is shared. Checked once, here, for both."""

    SECTION: typing.ClassVar[str] = "train"

    lr: float = 2e-5             # > 0; the top encoder layer's (LLRD)
    llrd: float = 0.8            # (0, 1]: layer i gets lr · llrd^(L-1-i)
    warmup_ratio: float = 0.06   # [0, 1): linear warmup over this share of the steps
    weight_decay: float = 0.01   # >= 0, matrices only
    epochs: int = 5              # >= 1
    batch_size: int = 32         # >= 1
    seed: int = 42               # [0, 2**32)
    max_train_rows: int = 0      # 0 = all; >0 = a seeded subsample, for smoke runs

    MIN_EPOCHS: typing.ClassVar[int] = 1

    def __post_init__(self):
        s = self.SECTION
        need(self.lr > 0, f"{s}.lr must be > 0")
        need(0 < self.llrd <= 1, f"{s}.llrd must be in (0, 1]")
        need(0 <= self.warmup_ratio < 1, f"{s}.warmup_ratio must be in [0, 1)")
        need(self.weight_decay >= 0, f"{s}.weight_decay must be >= 0")
        need(self.epochs >= self.MIN_EPOCHS, f"{s}.epochs must be >= {self.MIN_EPOCHS}")
        need(self.batch_size >= 1, f"{s}.batch_size must be >= 1")
        need(self.max_train_rows >= 0, f"{s}.max_train_rows must be >= 0")
        seed_ok(f"{s}.seed", self.seed)


@dataclass(frozen=True)
class StepParams(OptimParams):
    """How each optimiser step is taken: the rest of a stage's own recipe (``train.*`` for Stage 2, ``stage1.*`` for
    Stage 1), so a Stage-2 key never invalidates Stage 1."""

    head_lr_mult: float = 1.0  # > 0: the heads' lr = lr · head_lr_mult
    scheduler: Literal["linear", "cosine"] = "linear"
    grad_accum: int = 1  # >= 1
    max_grad_norm: float = 1.0  # > 0
    group_by_length: bool = True
    checkpoint_every_steps: int = 0  # resumable state every N optimiser steps too (0 = after each epoch only)
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a NaN/inf loss or grad norm: stop, or drop that step

    def __post_init__(self):
        super().__post_init__()
        s = self.SECTION
        need(self.head_lr_mult > 0, f"{s}.head_lr_mult must be > 0")
        need(self.grad_accum >= 1, f"{s}.grad_accum must be >= 1")
        need(self.max_grad_norm > 0, f"{s}.max_grad_norm must be > 0")
        need(self.checkpoint_every_steps >= 0,
             f"{s}.checkpoint_every_steps must be >= 0 (0 = after each epoch only)")


#: ``train.launch``: the program dvc.yaml's train_stage2 command starts with (a shell word list: nothing that could
#: chain another command)
LAUNCH = re.compile(r"(python|torchrun|accelerate launch)( [A-Za-z0-9_=.:/-]+)*")

#: The ``train.*`` fields Stage 1 reads too: the machine's settings (where and how fast to run), not the recipe.
#: Every other ``train.*`` key is Stage 2's alone (Stage 1 has its own ``stage1.*`` copy of the recipe keys).
MACHINE_FIELDS = ("device", "precision", "eval_batch_size", "num_workers", "compile", "fast_attention", "padding",
                  "empty_cache_steps")


@dataclass(frozen=True)
class TrainParams(StepParams):
    eval_batch_size: int = 64  # >= 1
    device: Literal["auto", "mps", "cuda", "cpu"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    keep: Literal["last", "best"] = "last"
    num_workers: int = 0  # >= 0
    compile: bool = False  # torch.compile the encoder in place (dynamic shapes)
    fast_attention: bool = True  # windowed DeBERTa relative-attention bias (same values, less work on short rows)
    # batches padded to a short ladder of lengths (buckets) or to their longest row; auto: per device
    padding: Literal["auto", "buckets", "longest"] = "auto"
    empty_cache_steps: int = 0  # >= 0: free the MPS / CUDA allocator's cache every N optimiser steps (0 = never)
    # how dvc.yaml starts train_stage2 (Stage 2 only): python, or a data-parallel launcher (docs/remote.md)
    launch: str = "python"

    def __post_init__(self):
        super().__post_init__()
        need(LAUNCH.fullmatch(self.launch) is not None,
             f"train.launch {self.launch!r}: use python, 'accelerate launch --multi_gpu --num_processes N' or"
             " 'torchrun --nproc_per_node N' (options of letters, digits and = . : / - _ only; docs/remote.md)")
        need(self.eval_batch_size >= 1, "train.eval_batch_size must be >= 1")
        need(self.num_workers >= 0, "train.num_workers must be >= 0")
        need(self.empty_cache_steps >= 0, "train.empty_cache_steps must be >= 0 (0 = never)")


@dataclass(frozen=True)
class Stage1Params(StepParams):
    """The Stage-1 (Pick/Decline) pretraining recipe: its own values of the :class:`StepParams` fields, a base
    model and Task1 label smoothing; only the machine's settings (:data:`MACHINE_FIELDS`) follow ``train``
    (see ``twohead.train.recipe``)."""

    SECTION: typing.ClassVar[str] = "stage1"

    base_model: str = "models/demo_encoder"
    epochs: int = 2
    label_smoothing_task1: float = 0.0  # [0, 1)

    def __post_init__(self):
        super().__post_init__()
        need(0 <= self.label_smoothing_task1 < 1, "stage1.label_smoothing_task1 must be in [0, 1)")


@dataclass(frozen=True)
class MlmParams(StepParams):
    """The masked-LM phase before Stage 1 (``pretrain_mlm``): ``epochs`` 0 = off; its own values of the
    :class:`StepParams` fields, like ``stage1``; what it trains on (``transductive``) and how much it masks."""

    SECTION: typing.ClassVar[str] = "mlm"
    MIN_EPOCHS: typing.ClassVar[int] = 0

    epochs: int = 0
    mask_prob: float = 0.15      # (0, 1): the share of tokens masked (BERT / Devlin 2019; Gururangan 2020)
    transductive: bool = False   # true: val and test texts join the train texts (never their labels)

    def __post_init__(self):
        super().__post_init__()
        need(0 < self.mask_prob < 1, "mlm.mask_prob must be in (0, 1)")


@dataclass(frozen=True)
class EvalParams(Section):
    SECTION: typing.ClassVar[str] = "eval"

    low_confidence: float = 0.5  # (0, 1]: Task2 max-prob below this is "low confidence"
    high_confidence: float = 0.9  # [0, 1): above this is "high confidence"
    worst_k: int = 50  # >= 0
    top_confusions: int = 20  # >= 1

    def __post_init__(self):
        need(0 < self.low_confidence <= 1 and 0 <= self.high_confidence < 1,
             "eval confidence thresholds must be in [0, 1]")
        need(self.worst_k >= 0 and self.top_confusions >= 1, "eval.worst_k >= 0 and eval.top_confusions >= 1")


@dataclass(frozen=True)
class ReportParams(Section):
    """plots/summary.md (the plot stage): the user's target, the gap to it and the routes measured toward it."""

    SECTION: typing.ClassVar[str] = "report"

    target_task2_acc: float = 0.85   # (0, 1]: the Task2 test accuracy the user aims at

    def __post_init__(self):
        need(0 < self.target_task2_acc <= 1, "report.target_task2_acc must be in (0, 1]")


@dataclass(frozen=True)
class DecideParams(Section):
    """The calibrate stage: how probabilities become the answer, chosen on val (``twohead.evaluate.decision``).
    Changing any of these re-runs calibrate → evaluate → predict, never training."""

    SECTION: typing.ClassVar[str] = "decide"

    temperature: bool = True          # fit T1, T2 by NLL on val (false: T = 1)
    prior_correction: bool = True     # search τ of the Task2 class-prior correction on val (false: τ = 0)
    prior_objective: Literal["acc", "macro_f1"] = "acc"   # what τ maximises on val (Task2): the user's aim is accuracy
    tau_max: float = 2.0              # τ grid: tau_min, …, 0, …, tau_max in steps of 0.1; (0, 5]
    tau_min: float = 0.0              # [-5, 0]: τ < 0 undoes Task2's training class weights (toward frequent classes)
    # Decline if P(Pick) < t, or also if the Task2 max-prob < t2 (t2 = 0 keeps the first): never worse on the demo
    # and MiniLM + demo over 3 seeds each, +0.16 Decline recall on a 150-class intent set
    rule: Literal["pick_threshold", "pick_or_maxprob"] = "pick_or_maxprob"
    objective: Literal["combined_acc", "combined_macro_f1", "task1_balanced_acc", "decline_recall_at_precision",
                       "decline_precision_at_recall"] = "combined_acc"
    target: float = 0.9               # the floor of the *_at_* objectives' constraint; (0, 1]
    pick_threshold: float | Literal["val"] = "val"     # val = chosen on val; a number in (0, 1) = pinned
    maxprob_threshold: float | Literal["val"] = "val"  # pick_or_maxprob: val = chosen on val; in [0, 1) = pinned
    # adopt each decision only when its val gain over the plain choice beats val's noise (paired bootstrap, 95%)
    noise_guard: bool = True

    def __post_init__(self):
        need(0 < self.tau_max <= 5, "decide.tau_max must be in (0, 5]")
        need(-5 <= self.tau_min <= 0, "decide.tau_min must be in [-5, 0]")
        need(0 < self.target <= 1, "decide.target must be in (0, 1]")
        need(self.pick_threshold == CHOOSE_ON_VAL or 0 < self.pick_threshold < 1,
             f"decide.pick_threshold must be {CHOOSE_ON_VAL} (chosen on val) or a number in (0, 1) (pinned)"
             + ("; 0 used to mean 'chosen on val': write val" if self.pick_threshold == 0 else ""))
        need(self.maxprob_threshold == CHOOSE_ON_VAL or 0 <= self.maxprob_threshold < 1,
             f"decide.maxprob_threshold must be {CHOOSE_ON_VAL} (chosen on val) or a number in [0, 1) (pinned)"
             + ("; -1 used to mean 'chosen on val': write val" if self.maxprob_threshold == -1 else ""))


@dataclass(frozen=True)
class PredictParams(Section):
    """The predict stage: score a table of new articles with the trained model."""

    SECTION: typing.ClassVar[str] = "predict"

    input: str = "data/demo/news_demo.csv"   # CSV, Parquet or JSON Lines
    text_column: str = "text"
    id_column: str = ""                      # "" = 'id' if the table has it, else the row number
    top_k: int = 3                           # >= 1
    batch_size: int = 64                     # >= 1
    max_batch_tokens: int = 4096             # >= 1: rows × longest row per batch (memory on long texts)
    encoding: str = "utf-8"                  # text encoding of a CSV / JSON Lines input

    def __post_init__(self):
        need(self.top_k >= 1 and self.batch_size >= 1 and self.max_batch_tokens >= 1,
             "predict.top_k, predict.batch_size and predict.max_batch_tokens must be >= 1")
        need(bool(self.encoding.strip()), "predict.encoding must name a text encoding, e.g. utf-8")


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    split: SplitParams = field(default_factory=SplitParams)
    bands: BandsParams = field(default_factory=BandsParams)
    loss: LossParams = field(default_factory=LossParams)
    tokenize: TokenizeParams = field(default_factory=TokenizeParams)
    model: ModelParams = field(default_factory=ModelParams)
    demo_encoder: DemoEncoderParams = field(default_factory=DemoEncoderParams)
    mlm: MlmParams = field(default_factory=MlmParams)
    stage1: Stage1Params = field(default_factory=Stage1Params)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)
    report: ReportParams = field(default_factory=ReportParams)
    decide: DecideParams = field(default_factory=DecideParams)
    predict: PredictParams = field(default_factory=PredictParams)
    switches: SwitchParams = field(default_factory=SwitchParams)


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
    if origin in (typing.Union, types.UnionType):   # e.g. a number or "val": the first member that takes it
        members = typing.get_args(tp)
        for member in members:
            with contextlib.suppress(ParamsError):
                return _coerce(value, member, key, source)
        said = " or ".join(repr(a) if typing.get_origin(m) is Literal else m.__name__
                           for m in members for a in (typing.get_args(m) or [None]))
        raise ParamsError(f"{source}: {key} must be {said}, got {value!r}")
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
            quote = f' (quote it: "{value}")' if isinstance(value, (int, float)) else ""
            raise ParamsError(f"{source}: {key} must be a string, got {value!r}{quote}")
        return value
    raise TypeError(f"unsupported annotation for {key}: {tp}")  # pragma: no cover


#: Keys that were renamed (old dotted key -> new): an old params.yaml or experiment gets one line naming the new key.
#: The one table of old names: ``twohead.config.switches`` reads older experiments' switches through it too.
RENAMED = {
    "eval.pick_threshold": "decide.pick_threshold",
    "stage1.label_smoothing": "stage1.label_smoothing_task1",
    "loss.weighting": "switches.task_weighting",
    "model.msd_samples": "switches.msd_samples",
    "train.ema": "switches.ema",
    **{f"reg.{k}": f"switches.{k}" for k in ("rdrop_alpha", "awp_lr", "awp_eps", "awp_start_epoch")},
    **{f"hier.{k}": f"switches.{k}" for k in ("pick_consistency_weight", "pick_consistency_type",
                                              "pick_consistency_detach", "decline_uniform_weight")},
}


def _renamed(old: str) -> str | None:
    """The new name of an old key, or of an old whole section (``reg`` -> ``switches``); None if never renamed."""
    if old in RENAMED:
        return RENAMED[old]
    moved = sorted({new.split(".")[0] for key, new in RENAMED.items() if key.split(".")[0] == old})
    return f"{moved[0]} (the same keys)" if len(moved) == 1 and old not in Params.__dataclass_fields__ else None


def _build(cls: type, raw: Any, prefix: str, source: str, partial: bool) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: section {prefix or '<root>'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    for k in unknown:
        old = f"{prefix}.{k}" if prefix else str(k)
        new = _renamed(old)
        if new:
            raise ParamsError(f"{source}: {old} is now {new}: rename the key (same meaning)")
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
    try:
        built = cls(**kwargs)
    except ParamsError as exc:  # a section's own check (its __post_init__): name the file
        raise ParamsError(f"{source}: {exc}") from None
    if isinstance(built, Section):
        object.__setattr__(built, "_tracked", True)  # read from params: its reads count (see Section)
    return built


def params_from_dict(raw: Any, source: str = "<params>", partial: bool = False) -> Params:
    """Build validated :class:`Params` from a mapping. ``partial=True`` lets missing keys take the
    recipe defaults (used by tests and library callers); stage runs use the strict form."""
    return _build(Params, raw, "", source, partial)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, as DVC does ("found duplicate key"): PyYAML
    would silently keep the last one, so a run could use another value than the one a user reads first."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ParamsError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice in one section (first"
                              f" on line {seen[key] + 1}); DVC refuses such a file too: keep one")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load ``params.yaml`` strictly: every key present, no unknown key, every value well-typed."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the project root)")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsError(f"{path}: not valid YAML{where}: {what}") from exc
    if raw is None:
        raise ParamsError(f"{path}: params file is empty")
    p = params_from_dict(raw, source=str(path), partial=False)
    if not p.data.corrections.strip():   # dvc.yaml depends on ${data.corrections}: DVC cannot depend on ''
        raise ParamsError(f"{path}: data.corrections is empty, and dvc.yaml depends on that path; for no corrections"
                          " point it at a header-only CSV (data/corrections.csv: id,category,pick,drop)")
    if not p.data.unlabeled_path.strip():   # the same for pretrain_mlm's ${data.unlabeled_path}
        raise ParamsError(f"{path}: data.unlabeled_path is empty, and dvc.yaml depends on that path; for no"
                          f" unlabelled texts point it at a header-only CSV (data/unlabeled.csv: {p.data.text_column})")
    return p


def to_dict(params: Any) -> dict:
    """Plain nested dict of a params dataclass (for logging and for saving next to a model)."""
    return dataclasses.asdict(params)
