"""Throughput and memory of the data path and the training step, on the pipeline's own outputs.

Run after `dvc repro` (it reads data/prepared, data/tokenized and the checkpoint in params.yaml):

    python benchmarks/bench_throughput.py [--rows 1920] [--repeats 2]

Reports: tokenization rows/s; tokenized-split load time; training samples/s and padding share with
length-grouped vs random batches (same rows, same model, one epoch each, via the trainer's own
train_one_epoch); eval samples/s; peak resident memory. Figures vary with machine load: repeat.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.config.params import load_params  # noqa: E402
from twohead.data.batching import (  # noqa: E402
    LengthGroupedBatchSampler,
    SortedBatchSampler,
    TokenizedDataset,
    make_collate,
    pad_share,
)
from twohead.data.io import read_json  # noqa: E402
from twohead.data.prepared import read_split  # noqa: E402
from twohead.data.tokenization import encode  # noqa: E402
from twohead.model.checkpoint import load_encoder, load_tokenizer  # noqa: E402
from twohead.model.two_head import TwoHeadModel  # noqa: E402
from twohead.train.device import make_accelerator  # noqa: E402
from twohead.train.loop import predict_logits, train_one_epoch  # noqa: E402
from twohead.train.losses import TwoTaskLoss  # noqa: E402
from twohead.train.optim import llrd_groups, make_optimizer, make_scheduler  # noqa: E402
from twohead.train.step import StepContext  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1920, help="training rows per measured epoch")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    t = p.train
    out: dict = {"torch_threads": torch.get_num_threads()}

    layout = {k: ROOT / v for k, v in dvc_paths(ROOT).items()}
    tok = load_tokenizer(ROOT / p.model.stage1_checkpoint)
    texts = read_split(layout["prepared"], "train")["text"].tolist()
    t0 = time.perf_counter()
    encode(tok, texts, p.tokenize.max_length, p.tokenize.batch_size)
    out["tokenize_rows_per_s"] = len(texts) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    full = TokenizedDataset(layout["tokenized"] / "train.parquet", tok.pad_token_id)
    out["load_train_split_s"] = time.perf_counter() - t0
    ds = full.subsample(args.rows, seed=0)
    weights = read_json(layout["prepared"] / "class_weights.json")
    names = read_json(layout["prepared"] / "label_maps.json")["task2"]["names"]
    acc = make_accelerator(t.device, t.precision, 1)
    collate = make_collate(tok.pad_token_id)
    loss_fn = TwoTaskLoss(torch.tensor(weights["task1"]["weights"], dtype=torch.float32, device=acc.device),
                          torch.tensor(weights["task2"]["weights"], dtype=torch.float32, device=acc.device),
                          p.loss.lambda_task1, p.loss.lambda_task2, p.loss.label_smoothing_task1,
                          p.loss.label_smoothing)
    for grouped in (True, False):
        sampler = LengthGroupedBatchSampler(ds.lengths, t.batch_size, t.seed, grouped)
        key = "grouped" if grouped else "random"
        out[f"pad_share_{key}"] = pad_share(ds.lengths, sampler.batches(0))
        rates = []
        for _ in range(args.repeats):
            torch.manual_seed(0)
            encoder = load_encoder(ROOT / p.model.stage1_checkpoint)
            model = TwoHeadModel(encoder, len(names), p.model.pooling, p.model.head_dropout)
            groups, _ = llrd_groups(model, t.lr, t.llrd, t.head_lr_mult, t.weight_decay)
            opt = make_optimizer(groups, t.lr, acc.device.type)
            loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
            sched = make_scheduler(opt, t.scheduler, len(loader), t.warmup_ratio)
            model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
            parts = StepContext(acc, model, opt, sched, loss_fn, t.max_grad_norm)
            rates.append(train_one_epoch(parts, loader, 1, 0, refresh=0).metrics["train_samples_per_second"])
        out[f"train_samples_per_s_{key}"] = max(rates)
    val = TokenizedDataset(layout["tokenized"] / "val.parquet", tok.pad_token_id)
    sorted_batches = SortedBatchSampler(val.lengths, t.eval_batch_size)
    loader = acc.prepare(DataLoader(val, batch_sampler=sorted_batches, collate_fn=collate))
    t0 = time.perf_counter()
    predict_logits(acc, model, loader, len(val))
    out["eval_samples_per_s"] = len(val) / (time.perf_counter() - t0)
    out["peak_rss_mb"] = peak_rss_mb()
    out["device"] = str(acc.device)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
