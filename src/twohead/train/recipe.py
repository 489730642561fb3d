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

from ..config.errors import MissingInputError, TrainingError
from ..config.params import MACHINE_FIELDS, LossParams, ModelParams, Params, StepParams, TrainParams
from ..config.schema import STAGES
from ..data.batching import TokenizedDataset
from ..data.labels import IGNORE
from ..data.prepared import LabelInfo, read_label_info, read_split
from ..data.tokenization import encode, to_arrow
from ..model.checkpoint import load_encoder, validate_checkpoint
from ..model.two_head import TwoHeadModel
from .run_config import FitData, RunConfig


@dataclass(frozen=True)
class Inputs:
    """The files a recipe reads, and which stage builds a checkpoint (to name it when the checkpoint is missing)."""

    prepared: Path
    tokenized: Path | None = None                  # Stage 2's token ids
    built_by: tuple[tuple[Path, str], ...] = ()    # (checkpoint directory, the stage that writes it)

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

    def build(self) -> TwoHeadModel:
        return TwoHeadModel(load_encoder(self.checkpoint), self.n_categories, self.model.pooling,
                            self.model.head_dropout, self.msd_samples)


def stage1_config(p: Params) -> RunConfig:
    """``stage1.*`` for the whole recipe (every :class:`StepParams` field), ``train.*`` for the machine's settings
    only (:data:`MACHINE_FIELDS`); Task2 off (λ2 = 0, no smoothing), Task1 smoothing from
    ``stage1.label_smoothing_task1``, no switches (they are Stage 2's), the last epoch kept."""
    own = {f.name: getattr(p.stage1, f.name) for f in dataclasses.fields(StepParams)}
    shared = {k: getattr(p.train, k) for k in MACHINE_FIELDS}
    train = TrainParams(**own, **shared, keep="last")
    loss = LossParams(lambda_task1=1.0, lambda_task2=0.0, label_smoothing_task1=p.stage1.label_smoothing_task1,
                      label_smoothing=0.0)  # Task2 off: none of loss.* applies
    return RunConfig(train, loss, select="val_acc_task1", tag="pretrain_stage1")


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
        cfg, ckpt = stage1_config(p), Path(p.stage1.base_model)
        tokenizer = _checkpoint(ckpt, "stage1.base_model", inputs, max_length)

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
