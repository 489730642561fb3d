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

from torch.utils.data import DataLoader

from ..config.errors import MissingInputError
from ..config.params import Params, RegParams
from ..data.batching import LengthGroupedBatchSampler, TokenizedDataset, make_collate
from ..data.io import write_json
from ..experiments.lr_find import RangeTestConfig, plot, range_test, suggestions
from ..model.checkpoint import load_encoder, validate_checkpoint
from ..model.fast_attention import install as install_fast_attention
from ..model.two_head import TwoHeadModel
from ..train.device import make_accelerator
from ..train.fit import FitData, RunConfig, make_loss, make_objective, prepare_model
from ..train.optim import llrd_groups, make_optimizer
from .prepared import read_label_info, read_split
from .pretrain_stage1 import pick_rows_dataset, stage1_config


@dataclass(frozen=True)
class LrFindPaths:
    prepared: Path
    tokenized: Path
    demo_encoder: Path   # to name the stage that builds a missing base model
    stage1_model: Path
    lr_find: Path
    lr_find_plot: Path


def _checkpoint(path: str | Path, what: str, built_by: str | None, max_length: int):
    if not Path(path).exists():
        hint = f"run `dvc repro {built_by}` first" if built_by else "check the path"
        raise MissingInputError(f"{what} {path}: not found; {hint}")
    return validate_checkpoint(path, max_length=max_length)[0]


def _setup(p: Params, paths: LrFindPaths, stage: str, rows: int):
    """(train params, loss params, dataset, fresh model, tokenizer, Task1 / Task2 weights, LR key)."""
    info = read_label_info(paths.prepared)
    if stage == "stage1":
        t, loss_cfg = stage1_config(p)
        base = Path(p.stage1.base_model)
        built = "build_demo_encoder" if base.resolve() == Path(paths.demo_encoder).resolve() else None
        tokenizer = _checkpoint(base, "stage1.base_model", built, p.tokenize.max_length)
        df = read_split(paths.prepared, "train")
        if rows and rows < len(df):  # tokenize only what the test can use
            df = df.sample(n=rows, random_state=t.seed).sort_index()
        ds = pick_rows_dataset(df, tokenizer, p.tokenize.max_length, p.tokenize.batch_size)
        model = TwoHeadModel(load_encoder(base), 1, p.model.pooling, p.model.head_dropout)
        weights2, key = [1.0], "stage1.lr"
    else:
        t, loss_cfg = p.train, p.loss
        ckpt = Path(p.model.stage1_checkpoint)
        built = "pretrain_stage1" if ckpt.resolve() == Path(paths.stage1_model).resolve() else None
        tokenizer = _checkpoint(ckpt, "model.stage1_checkpoint", built, p.tokenize.max_length)
        f = paths.tokenized / "train.parquet"
        if not f.is_file():
            raise MissingInputError(f"{f}: not found; run `dvc repro tokenize` first")
        ds = TokenizedDataset(f, tokenizer.pad_token_id).subsample(rows, t.seed)
        model = TwoHeadModel(load_encoder(ckpt), len(info.names), p.model.pooling, p.model.head_dropout,
                             p.model.msd_samples)
        weights2, key = info.class_weights["task2"]["weights"], "train.lr"
    return t, loss_cfg, ds, model, tokenizer, info.class_weights["task1"]["weights"], weights2, key


def run(p: Params, paths: LrFindPaths, cfg: RangeTestConfig, stage: str = "stage2", rows: int = 0,
        progress: bool = True) -> dict:
    from accelerate.utils import set_seed

    cfg.validate()
    set_seed(p.stage1.seed if stage == "stage1" else p.train.seed)  # before the heads are initialised
    t, loss_cfg, ds, model, tokenizer, w1, w2, key = _setup(p, paths, stage, rows)
    if len(ds) == 0:
        raise MissingInputError(f"{paths.tokenized if stage == 'stage2' else paths.prepared}: no training rows")
    cfg = RangeTestConfig(**{**cfg.__dict__, "max_grad_norm": t.max_grad_norm})
    accelerator = make_accelerator(t.device, t.precision, 1)
    run_cfg = RunConfig(t, loss_cfg, p.hier, p.reg if stage == "stage2" else RegParams())
    prepare_model(model, run_cfg)
    if t.fast_attention:
        install_fast_attention(model)
    groups, _ = llrd_groups(model, 1.0, t.llrd, t.head_lr_mult, t.weight_decay)  # base 1: each lr is the ratio
    ratios = [g["lr"] for g in groups]
    optimizer = make_optimizer(groups, 1.0, accelerator.device.type)
    sampler = LengthGroupedBatchSampler(ds.lengths, t.batch_size, t.seed, t.group_by_length)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=make_collate(tokenizer.pad_token_id),
                        num_workers=t.num_workers)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    data = FitData(ds, ds, w1, w2, tokenizer.pad_token_id)
    raw = accelerator.unwrap_model(model)
    loss_fn = make_loss(data, run_cfg, accelerator.device, raw.loss_log_vars)
    objective = make_objective(raw, loss_fn, run_cfg)  # R-Drop / multi-sample dropout as the stage would run

    def batches():
        for n in itertools.count():  # as many passes over the rows as the steps need, reshuffled each pass
            sampler.passes = n
            yield from loader

    def loss_terms(batch: dict) -> dict:
        out = objective(model, batch)[2]
        terms = {"total": out["total"], "task1": out["task1"]}
        if stage == "stage2":
            terms["task2"] = out["task2"]
        return terms

    res = range_test(model, optimizer, ratios, batches(), loss_terms, cfg, backward=accelerator.backward,
                     clip=lambda norm: accelerator.clip_grad_norm_(model.parameters(), norm), progress=progress)
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
    write_json(paths.lr_find, result)
    return result
