"""What ``fit`` is given: the data side of a run and its settings (both plain dataclasses, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config.params import LossParams, SwitchParams, TrainParams
from ..data.batching import TokenizedDataset


@dataclass
class FitData:
    """Datasets, the class weights of each task (id order) and the tokenizer's pad id."""

    train: TokenizedDataset
    val: TokenizedDataset | None      # None: a tool that never validates (the LR range test)
    weights_task1: list[float]
    weights_task2: list[float]
    pad_id: int
    max_length: int | None = None     # tokenize.max_length: no padded batch is longer


@dataclass
class RunConfig:
    """The settings of a run: train / loss / switch params, the history column that picks the best epoch and a tag
    for log lines (no eval.* setting: what training writes never depends on how it is reported)."""

    train: TrainParams
    loss: LossParams
    switches: SwitchParams = field(default_factory=SwitchParams)
    select: str = "val_acc_task2"
    tag: str = "train_stage2"
