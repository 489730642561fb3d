"""``twohead lr-find``: the LR range test on the data, model, loss, LLRD groups, batch size, precision and
device the chosen stage would use (:mod:`twohead.experiments.lr_find` has the method). The model is built fresh and
discarded: no checkpoint, state, metric or DVC output of the pipeline is touched; only the JSON and PNG
named in dvc.yaml (``paths.lr_find``, ``paths.lr_find_plot``) are written. The Stage-2 switches that change
the loss (uncertainty weighting, R-Drop, multi-sample dropout, hierarchy terms) apply; AWP does not (it starts
at a later epoch by design).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from ..config.errors import MissingInputError
from ..config.params import Params
from ..data.batching import TokenizedDataset
from ..data.io import METRIC_DIGITS, write_json
from ..experiments.lr_find import RangeTestConfig, plot, range_test, suggestions
from ..model.checkpoint import load_encoder, validate_checkpoint
from ..model.two_head import TwoHeadModel
from ..train.run import FitData, RunConfig
from ..train.setup import prepare_training
from ..train.stage1 import pick_rows_dataset, stage1_run
from .prepared import read_label_info, read_split


@dataclass(frozen=True)
class LrFindPaths:
    prepared: Path
    tokenized: Path
    demo_encoder: Path   # to name the stage that builds a missing base model
    stage1_model: Path
    lr_find: Path
    lr_find_plot: Path


def checkpoint_tokenizer(path: str | Path, what: str, built_by: str | None, max_length: int):
    if not Path(path).exists():
        hint = f"run `dvc repro {built_by}` first" if built_by else "check the path"
        raise MissingInputError(f"{what} {path}: not found; {hint}")
    return validate_checkpoint(path, max_length=max_length)[0]


def stage_setup(p: Params, paths: LrFindPaths, stage: str, rows: int | None, with_val: bool = False):
    """(run config, train rows, val rows or None, a builder of the fresh model, tokenizer, Task1 / Task2 weights,
    LR key). ``rows``: a seeded subsample of the training rows (0 = all; None = the run's own,
    ``max_train_rows``)."""
    info = read_label_info(paths.prepared)
    if stage == "stage1":
        run_cfg = stage1_run(p)
        base = Path(p.stage1.base_model)
        built = "build_demo_encoder" if base.resolve() == Path(paths.demo_encoder).resolve() else None
        tokenizer = checkpoint_tokenizer(base, "stage1.base_model", built, p.tokenize.max_length)
        df = read_split(paths.prepared, "train")
        n = run_cfg.train.max_train_rows if rows is None else rows
        if n and n < len(df):  # tokenize only what the test can use
            df = df.sample(n=n, random_state=run_cfg.train.seed).sort_index()
        ds = pick_rows_dataset(df, tokenizer, p.tokenize.max_length, p.tokenize.batch_size)
        val = pick_rows_dataset(read_split(paths.prepared, "val"), tokenizer, p.tokenize.max_length,
                                p.tokenize.batch_size) if with_val else None

        def build():
            return TwoHeadModel(load_encoder(base), 1, p.model.pooling, p.model.head_dropout)

        weights2, key = [1.0], "stage1.lr"
    else:
        run_cfg = RunConfig(p.train, p.loss, p.hier, p.reg)
        ckpt = Path(p.model.stage1_checkpoint)
        built = "pretrain_stage1" if ckpt.resolve() == Path(paths.stage1_model).resolve() else None
        tokenizer = checkpoint_tokenizer(ckpt, "model.stage1_checkpoint", built, p.tokenize.max_length)
        files = [paths.tokenized / f"{split}.parquet" for split in (("train", "val") if with_val else ("train",))]
        for f in files:
            if not f.is_file():
                raise MissingInputError(f"{f}: not found; run `dvc repro tokenize` first")
        n = run_cfg.train.max_train_rows if rows is None else rows
        ds = TokenizedDataset(files[0], tokenizer.pad_token_id).subsample(n, run_cfg.train.seed)
        val = TokenizedDataset(files[1], tokenizer.pad_token_id) if with_val else None

        def build():
            return TwoHeadModel(load_encoder(ckpt), len(info.names), p.model.pooling, p.model.head_dropout,
                                p.model.msd_samples)

        weights2, key = info.class_weights["task2"]["weights"], "train.lr"
    return run_cfg, ds, val, build, tokenizer, info.class_weights["task1"]["weights"], weights2, key


def run(p: Params, paths: LrFindPaths, cfg: RangeTestConfig, stage: str = "stage2", rows: int = 0,
        progress: bool = True) -> dict:
    from accelerate.utils import set_seed

    cfg.validate()
    run_cfg, ds, _, build, tokenizer, w1, w2, key = stage_setup(p, paths, stage, rows)
    set_seed(run_cfg.train.seed)  # before the heads are initialised
    model = build()
    t = run_cfg.train
    if len(ds) == 0:
        raise MissingInputError(f"{paths.tokenized if stage == 'stage2' else paths.prepared}: no training rows")
    cfg = RangeTestConfig(**{**cfg.__dict__, "max_grad_norm": t.max_grad_norm})
    # the run as training would build it (switches, LLRD groups, loss, objective), at base lr 1: each group's lr
    # is then its LLRD ratio, which the range test scales
    s = prepare_training(model, FitData(ds, ds, w1, w2, tokenizer.pad_token_id), run_cfg, base_lr=1.0,
                         schedule=False, validate=False)

    def batches():
        for n in itertools.count():  # as many passes over the rows as the steps need, reshuffled each pass
            s.sampler.passes = n
            yield from s.train_loader

    def loss_terms(batch: dict) -> dict:
        out = s.step.objective(s.model, batch)[2]  # R-Drop / multi-sample dropout as the stage would run
        terms = {"total": out["total"], "task1": out["task1"]}
        if stage == "stage2":
            terms["task2"] = out["task2"]
        return terms

    accelerator = s.accelerator
    res = range_test(s.model, s.optimizer, s.initial_lrs, batches(), loss_terms, cfg, backward=accelerator.backward,
                     clip=lambda norm: accelerator.clip_grad_norm_(s.model.parameters(), norm), progress=progress)
    sugg = suggestions(res)
    command = None if sugg["suggested_lr"] is None else f"dvc exp run -S {key}={sugg['suggested_lr']:.2g}"
    current = p.stage1.lr if stage == "stage1" else p.train.lr
    result = {
        "stage": stage, "lr_key": key, "current_lr": current, **{k: sugg[k] for k in
                                                                  ("suggested_lr", "rule", "clipped", "valley",
                                                                   "steepest", "min_div10")},
        "command": command, "steps_run": len(res.lrs), "steps": cfg.steps, "min_lr": cfg.min_lr,
        "max_lr": cfg.max_lr, "stopped_early": res.stopped_early, "stop_reason": res.stop_reason,
        "rows": len(ds), "batch_size": t.batch_size, "device": str(accelerator.device), "precision": t.precision,
        "seed": t.seed, "seconds": round(res.seconds, 2),
        "curve": [{"step": i, "lr": lr, **{f"loss_{k}": v[i] for k, v in res.losses.items()},
                   **{f"smoothed_{k}": v[i] for k, v in res.smoothed.items()}} for i, lr in enumerate(res.lrs)],
    }
    ckpt = p.stage1.base_model if stage == "stage1" else p.model.stage1_checkpoint
    caption = (f"checkpoint {ckpt} | {stage} | {len(ds)} rows, batch {t.batch_size}, LLRD {t.llrd:g}, {t.precision},"
               f" {accelerator.device} | {len(res.lrs)} of {cfg.steps} steps, seed {t.seed}")
    plot(res, sugg, paths.lr_find_plot, f"LR range test ({key} now {current:g})", caption)
    write_json(paths.lr_find, result, digits=METRIC_DIGITS)
    return result
