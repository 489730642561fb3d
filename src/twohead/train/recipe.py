"""What a stage trains, built in one place: Stage 1, Stage 2 and every tool that trains like them (the LR sweep,
the LR range test, ``twohead speed``) get their run config, data, tokenizer, fresh model and LR key from
:func:`recipe`, with every check the stages make (checkpoint present and whole, ``tokenize.max_length`` within its
positions, inputs present, category ids within the label map).

**Stage 1** is Stage 2's model and ``fit`` with Task2 switched off, on every prepared row with a Pick/Decline label
(tokenized here with the base model's tokenizer). Its whole recipe comes from ``stage1.*`` (the
:class:`~twohead.config.params.StepParams` fields); only the machine's settings
(:data:`~twohead.config.params.MACHINE_FIELDS`) follow ``train.*``, so no other ``train.*`` key re-runs Stage 1.

**Stage 2** trains both heads from ``model.stage1_checkpoint`` on ``data/tokenized`` with ``train.*``, ``loss.*``,
``hier.*`` and ``reg.*``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config.errors import CheckpointError, MissingInputError, TrainingError
from ..config.params import MACHINE_FIELDS, LossParams, ModelParams, Params, StepParams, TrainParams
from ..config.schema import STAGES
from ..data.batching import TokenizedDataset
from ..data.labels import IGNORE
from ..data.prepared import LabelInfo, read_label_info, read_split
from ..data.tokenization import encode, to_arrow
from ..model.checkpoint import load_config, load_encoder, validate_checkpoint
from ..model.masked_lm import load_masked_lm, mask_token_error
from ..model.two_head import TwoHeadModel
from .masked_lm import MaskedLMObjective, mlm_datasets
from .run_config import FitData, RunConfig


@dataclass(frozen=True)
class Inputs:
    """The files a recipe reads, and which stage builds a checkpoint (to name it when the checkpoint is missing)."""

    prepared: Path
    tokenized: Path | None = None                  # Stage 2's token ids
    built_by: tuple[tuple[Path, str], ...] = ()    # (checkpoint directory, the stage that writes it)
    start: Path | None = None                      # Stage 1 starts here instead of stage1.base_model (pretrain_mlm's)

    def builder(self, path: Path) -> str | None:
        return next((stage for p, stage in self.built_by if Path(p).resolve() == path.resolve()), None)


@dataclass
class Recipe:
    """What a stage trains: ``build()`` makes the fresh model (call it after seeding: the heads draw from the RNG)."""

    stage: str
    cfg: RunConfig
    data: FitData                 # data.val is None when the recipe was built without val
    tokenizer: Any
    checkpoint: Path              # the encoder training starts from
    lr_key: str                   # the params key of its learning rate
    current_lr: float
    info: LabelInfo
    model: ModelParams
    n_categories: int             # Task2 head size (1 for Stage 1: its Task2 is off)
    msd_samples: int = 1
    objective: Any = None         # the masked-LM phase's (train.masked_lm.MaskedLMObjective); None = two heads
    sources: dict | None = None   # the masked-LM phase: how many texts came from each source

    def build(self):
        if self.stage == "mlm":   # transformers' masked-LM class; .fresh_head: the checkpoint had no MLM head
            model, model.fresh_head = load_masked_lm(self.checkpoint)
            return model
        return TwoHeadModel(load_encoder(self.checkpoint), self.n_categories, self.model.pooling,
                            self.model.head_dropout, self.msd_samples)


def _own_recipe(p: Params, section: StepParams) -> TrainParams:
    own = {f.name: getattr(section, f.name) for f in dataclasses.fields(StepParams)}
    shared = {k: getattr(p.train, k) for k in MACHINE_FIELDS}
    return TrainParams(**own, **shared, keep="last")


def stage1_config(p: Params) -> RunConfig:
    """``stage1.*`` for the whole recipe (every :class:`StepParams` field), ``train.*`` for the machine's settings
    only (:data:`MACHINE_FIELDS`); Task2 off (λ2 = 0, no smoothing), Task1 smoothing from
    ``stage1.label_smoothing_task1``, no switches (they are Stage 2's), the last epoch kept."""
    loss = LossParams(lambda_task1=1.0, lambda_task2=0.0, label_smoothing_task1=p.stage1.label_smoothing_task1,
                      label_smoothing=0.0)  # Task2 off: none of loss.* applies
    return RunConfig(_own_recipe(p, p.stage1), loss, select="val_acc_task1", tag="pretrain_stage1")


def mlm_config(p: Params) -> RunConfig:
    """The masked-LM phase, as Stage 1: ``mlm.*`` for the recipe, ``train.*`` for the machine's settings; its loss
    is Task1's masked cross-entropy over the vocabulary (unit weights, no smoothing)."""
    loss = LossParams(lambda_task1=1.0, lambda_task2=0.0, label_smoothing_task1=0.0, label_smoothing=0.0)
    return RunConfig(_own_recipe(p, p.mlm), loss, select="val_acc_task1", tag="pretrain_mlm")


def mlm_recipe(p: Params, inputs: Inputs) -> Recipe:
    """The masked-LM phase on ``stage1.base_model`` (:mod:`twohead.train.masked_lm`): a checkpoint whose tokenizer
    has no mask token is refused in one line."""
    ckpt = Path(p.stage1.base_model)
    tokenizer = _checkpoint(ckpt, "stage1.base_model", inputs, p.tokenize.max_length)
    problem = mask_token_error(tokenizer, ckpt)
    if problem:
        raise CheckpointError(problem)
    cfg = mlm_config(p)
    train, val, sources = mlm_datasets(p, inputs.prepared, tokenizer)
    train = train.subsample(cfg.train.max_train_rows, cfg.train.seed)
    vocab = int(load_config(ckpt).vocab_size)
    data = FitData(train, val, [1.0] * vocab, [1.0], tokenizer.pad_token_id, p.tokenize.max_length)
    return Recipe("mlm", cfg, data, tokenizer, ckpt, "mlm.lr", p.mlm.lr, read_label_info(inputs.prepared), p.model,
                  1, objective=MaskedLMObjective(tokenizer, p.mlm.mask_prob, p.mlm.seed), sources=sources)


def stage2_config(p: Params) -> RunConfig:
    return RunConfig(p.train, p.loss, p.switches, select="val_acc_task2", tag="train_stage2")


def pick_rows_dataset(df: pd.DataFrame, tokenizer, max_length: int, batch_size: int, truncation: str = "head",
                      head_share: float = 0.25) -> TokenizedDataset:
    """The rows of a prepared split that have a Pick/Decline label, tokenized with the base model's tokenizer,
    categories masked out."""
    rows = df[df["labels_task1"] != IGNORE].copy()
    rows["labels_task2"] = IGNORE
    ids, _ = encode(tokenizer, rows["text"].astype(str).tolist(), max_length, batch_size, desc="tokenize stage1",
                    truncation=truncation, head_share=head_share)
    return TokenizedDataset(to_arrow(rows, ids), tokenizer.pad_token_id)


def _checkpoint(path: Path, what: str, inputs: Inputs, max_length: int):
    if not path.exists():
        built = inputs.builder(path)
        hint = f"run `dvc repro {built}` first" if built else "check the path"
        raise MissingInputError(f"{what} {path}: not found; {hint}")
    return validate_checkpoint(path, max_length=max_length)[0]


def _within_label_map(ds: TokenizedDataset, path: Path, n: int) -> None:
    if int(ds.labels_task2.max(initial=IGNORE)) >= n:
        raise TrainingError(f"{path}: category ids exceed label_maps.json ({n} classes);"
                            " re-run prepare_labels and tokenize")


def recipe(p: Params, stage: str, inputs: Inputs, rows: int | None = None, with_val: bool = True) -> Recipe:
    """The recipe of ``stage`` ("stage1" | "stage2"). ``rows``: a seeded subsample of the training rows (0 = all;
    None = the run's own ``max_train_rows``); ``with_val=False`` reads no val rows (``data.val`` is None)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    info = read_label_info(inputs.prepared)
    max_length = p.tokenize.max_length
    if stage == "stage1":
        cfg, ckpt = stage1_config(p), Path(inputs.start or p.stage1.base_model)
        tokenizer = _checkpoint(ckpt, "stage1.base_model" if inputs.start is None else "the masked-LM phase's output",
                                inputs, max_length)

        def split(name: str) -> TokenizedDataset:
            return pick_rows_dataset(read_split(inputs.prepared, name), tokenizer, max_length, p.tokenize.batch_size,
                                     p.tokenize.truncation, p.tokenize.head_share)

        weights2, lr_key, current, n_cat, msd = [1.0], "stage1.lr", p.stage1.lr, 1, 1
    else:
        cfg, ckpt = stage2_config(p), Path(p.model.stage1_checkpoint)
        tokenizer = _checkpoint(ckpt, "model.stage1_checkpoint", inputs, max_length)
        n_cat = len(info.names)

        def split(name: str) -> TokenizedDataset:
            f = Path(inputs.tokenized) / f"{name}.parquet"
            if not f.is_file():
                raise MissingInputError(f"{f}: not found; run `dvc repro tokenize` first")
            ds = TokenizedDataset(f, tokenizer.pad_token_id)
            _within_label_map(ds, f, n_cat)
            return ds

        weights2, lr_key, current, msd = info.class_weights["task2"]["weights"], "train.lr", p.train.lr, \
            p.switches.msd_samples
    t = cfg.train
    train = split("train").subsample(t.max_train_rows if rows is None else rows, t.seed)
    val = split("val") if with_val else None
    data = FitData(train, val, info.class_weights["task1"]["weights"], weights2, tokenizer.pad_token_id,
                   max_length)
    return Recipe(stage, cfg, data, tokenizer, ckpt, lr_key, current, info, p.model, n_cat, msd)
