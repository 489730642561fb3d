"""Bounded batch shapes on this machine: ``train.padding: buckets`` (the default) against ``longest`` (each batch
padded to its longest row, the behaviour before).

    python benchmarks/bench_padding.py [--batches 120] [--repeats 3] [--out benchmarks/results/padding_cpu.json]

Run after `dvc repro tokenize`. Two encoders: the demo's Stage-1 checkpoint (2 layers, 128 hidden) and a randomly
initialised 4-layer / 256-hidden DeBERTa-v2 (the demo encoder's config, resized). For each: the distinct
(rows, length) batch shapes of one training epoch (the length-grouped sampler, batch ``train.batch_size``) and of
one validation pass (sorted, ``train.eval_batch_size``), the padding share, and training samples/s — the project's
own step (``prepare_training`` + ``train_step``) over the same first ``--batches`` batches of epoch 1, the two
paddings alternated ``--repeats`` times (A B A B …, so a drifting machine hits both), the first 5 steps of each
measurement left out; the median of the repeats and the paired ratio buckets ÷ longest with its min–max.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

WARMUP = 5


def shapes_and_pad(data, t, padding: str) -> dict:
    from twohead.data.batching import LengthGroupedBatchSampler, SortedBatchSampler, batch_shapes, pad_share

    train_b = LengthGroupedBatchSampler(data.train.lengths, t.batch_size, t.seed, t.group_by_length).batches(0)
    val_b = list(SortedBatchSampler(data.val.lengths, t.eval_batch_size))
    return {"train_shapes_per_epoch": len(batch_shapes(data.train.lengths, train_b, padding, data.max_length)),
            "val_shapes": len(batch_shapes(data.val.lengths, val_b, padding, data.max_length)),
            "train_pad_share": round(pad_share(data.train.lengths, train_b, padding, data.max_length), 4),
            "val_pad_share": round(pad_share(data.val.lengths, val_b, padding, data.max_length), 4)}


def timed(build, data, cfg, padding: str, batches: int) -> float:
    """Training samples/s over the first ``batches`` batches of epoch 1 (after WARMUP steps)."""
    from accelerate.utils import set_seed

    from twohead.train.device import reset_accelerator_state
    from twohead.train.setup import prepare_training
    from twohead.train.step import train_step

    reset_accelerator_state()
    set_seed(0)
    run = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, padding=padding))
    s = prepare_training(build(), data, run, validate=False)
    rows, t0 = 0, None
    for i, batch in enumerate(s.train_loader):
        if i == WARMUP:
            t0, rows = time.perf_counter(), 0
        train_step(s.step, batch)
        rows += batch["input_ids"].shape[0]
        if i + 1 >= batches:
            break
    float(next(s.raw_model.parameters()).sum())  # wait for the last step
    return rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "padding_cpu.json"))
    args = ap.parse_args()

    import torch
    from bench_trainer import build_model

    from twohead.config.layout import dvc_paths
    from twohead.config.params import load_params
    from twohead.train.recipe import Inputs, recipe

    p = load_params(ROOT / "params.yaml")
    layout = {k: ROOT / v for k, v in dvc_paths(ROOT).items()}
    r = recipe(p, "stage2", Inputs(layout["prepared"], layout["tokenized"]))
    n_cat = len(r.info.names)
    builds = {"demo (2L/128H, Stage-1 checkpoint)": r.build,
              "4L/256H (random init)": lambda: build_model(argparse.Namespace(layers=4, hidden=256), n_cat)}
    out = {"machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
           "batches": args.batches, "repeats": args.repeats, "max_length": r.data.max_length, "encoders": {}}
    for name, build in builds.items():
        res = {pad: {**shapes_and_pad(r.data, r.cfg.train, pad), "samples_per_s": []} for pad in ("buckets", "longest")}
        for _ in range(args.repeats):
            for pad in ("buckets", "longest"):
                res[pad]["samples_per_s"].append(round(timed(build, r.data, r.cfg, pad, args.batches), 1))
                print(f"{name} {pad}: {res[pad]['samples_per_s'][-1]} samples/s", flush=True)
        ratios = [b / a for b, a in zip(res["buckets"]["samples_per_s"], res["longest"]["samples_per_s"])]
        for pad in res:
            res[pad]["median_samples_per_s"] = statistics.median(res[pad]["samples_per_s"])
        res["ratio_buckets_over_longest"] = {"median": round(statistics.median(ratios), 3),
                                             "min": round(min(ratios), 3), "max": round(max(ratios), 3)}
        out["encoders"][name] = res
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n| encoder | padding | train shapes / epoch | val shapes | train pad share | samples/s (median of"
          f" {args.repeats}) |\n|---|---|---:|---:|---:|---:|")
    for name, res in out["encoders"].items():
        for pad in ("longest", "buckets"):
            m = res[pad]
            print(f"| {name} | {pad} | {m['train_shapes_per_epoch']} | {m['val_shapes']} | {m['train_pad_share']:.1%} |"
                  f" {m['median_samples_per_s']:.0f} |")
        q = res["ratio_buckets_over_longest"]
        print(f"| {name} | ratio | | | | {q['median']:.3f} ({q['min']:.3f}–{q['max']:.3f}) |")
    print(f"-> {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
