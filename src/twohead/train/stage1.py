"""The Stage-1 recipe as a run: Pick/Decline only, on every row with a Pick/Decline label.

Stage 1 is Stage 2's model and ``fit`` with Task2 switched off. Its own values of the training fields it
shares with Stage 2 (:class:`~twohead.config.params.OptimParams`: lr, LLRD, warmup, weight decay, epochs,
batch size, seed, row cap) come from ``stage1.*``; device, precision, batching, clipping, scheduler, state
saving and the speed switches follow ``train.*``.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..config.params import LossParams, OptimParams, Params, TrainParams
from ..data.batching import TokenizedDataset
from ..data.labels import IGNORE
from ..data.tokenization import encode, to_arrow
from .run import RunConfig

#: The ``train.*`` fields Stage 1 reads (the rest of ``train`` is Stage 2's alone).
SHARED_TRAIN_FIELDS = ("head_lr_mult", "scheduler", "eval_batch_size", "grad_accum", "max_grad_norm", "device",
                       "precision", "group_by_length", "num_workers", "checkpoint_every_steps", "on_nonfinite",
                       "compile", "fast_attention")


def stage1_run(p: Params) -> RunConfig:
    """``stage1.*`` over ``train.*`` for the shared optimisation fields; Task2 off (λ2 = 0, no smoothing), Task1
    smoothing from ``stage1.label_smoothing``, fixed task weighting, no techniques (they are Stage-2 switches),
    the last epoch kept."""
    own = {f.name: getattr(p.stage1, f.name) for f in dataclasses.fields(OptimParams)}
    shared = {k: getattr(p.train, k) for k in SHARED_TRAIN_FIELDS}
    train = TrainParams(**own, **shared, keep="last")  # a train field not named here takes its default, unread
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
