"""The Stage-1 recipe as a run: Pick/Decline only, on every row with a Pick/Decline label.

Stage 1 is Stage 2's model and ``fit`` with Task2 switched off. Its whole recipe comes from ``stage1.*`` (the
:class:`~twohead.config.params.StepParams` fields: lr, LLRD, warmup, weight decay, epochs, batch size, seed, row
cap, head LR multiplier, scheduler, accumulation, clipping, length grouping, state saving, non-finite handling);
only the machine's settings (:data:`~twohead.config.params.MACHINE_FIELDS`: device, precision, eval batch size,
loader workers, compile, fast attention) follow ``train.*``, so no other ``train.*`` key re-runs Stage 1.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..config.params import MACHINE_FIELDS, LossParams, Params, StepParams, TrainParams
from ..data.batching import TokenizedDataset
from ..data.labels import IGNORE
from ..data.tokenization import encode, to_arrow
from .run import RunConfig


def stage1_run(p: Params) -> RunConfig:
    """``stage1.*`` for the whole recipe (every :class:`StepParams` field), ``train.*`` for the machine's settings
    only (:data:`MACHINE_FIELDS`); Task2 off (λ2 = 0, no smoothing), Task1 smoothing from
    ``stage1.label_smoothing``, fixed task weighting, no techniques (they are Stage-2 switches), the last epoch
    kept."""
    own = {f.name: getattr(p.stage1, f.name) for f in dataclasses.fields(StepParams)}
    shared = {k: getattr(p.train, k) for k in MACHINE_FIELDS}
    train = TrainParams(**own, **shared, keep="last")
    loss = LossParams(lambda_task1=1.0, lambda_task2=0.0, label_smoothing_task1=p.stage1.label_smoothing,
                      label_smoothing=0.0, weighting="fixed")  # Task2 off: none of loss.* applies
    return RunConfig(train, loss, select="val_acc_task1", tag="pretrain_stage1")


def pick_rows_dataset(df: pd.DataFrame, tokenizer, max_length: int, batch_size: int) -> TokenizedDataset:
    """The rows of a prepared split that have a Pick/Decline label, tokenized with the base model's tokenizer,
    categories masked out."""
    rows = df[df["labels_binary"] != IGNORE].copy()
    rows["labels_category"] = IGNORE
    ids, _ = encode(tokenizer, rows["text"].astype(str).tolist(), max_length, batch_size, desc="tokenize stage1")
    return TokenizedDataset(to_arrow(rows, ids), tokenizer.pad_token_id)
