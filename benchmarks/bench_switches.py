"""Cost of each switch in training samples/s, relative to the plain recipe, on this machine.

    python benchmarks/bench_switches.py [--rows 640] [--repeats 3] [--out benchmarks/results/switches_cpu.json]

Run after `dvc repro tokenize`. Same rows, same Stage-1 model, same batch size; each switch alone at the
ablation's strength (twohead.config.switches.ABLATION; AWP from the first epoch so that it is measured); one
`train_one_epoch` per repeat via the project's own `fit` building blocks; median of the repeats.
Weight-scheme switches change no computation (their cost is ~1 by construction; measured anyway).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.config import switches  # noqa: E402
from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.config.params import load_params, params_from_dict, to_dict  # noqa: E402
from twohead.data.batching import TokenizedDataset  # noqa: E402
from twohead.data.prepared import read_label_info  # noqa: E402
from twohead.model.checkpoint import load_encoder, load_tokenizer  # noqa: E402
from twohead.model.two_head import TwoHeadModel  # noqa: E402
from twohead.train.device import make_accelerator  # noqa: E402
from twohead.train.loop import train_one_epoch  # noqa: E402
from twohead.train.run_config import FitData, RunConfig  # noqa: E402
from twohead.train.setup import prepare_training  # noqa: E402


def with_switch(p, overrides: dict):
    raw = {k: to_dict(getattr(p, k)) for k in ("loss", "switches", "model", "train")}
    for dotted, v in overrides.items():
        section, key = dotted.split(".")
        raw[section][key] = v
    return params_from_dict(raw, partial=True)


def measure(p, ds, info, tok) -> float:
    """One epoch of the run as ``fit`` builds it (the switches' model preparation, loss and objective)."""
    torch.manual_seed(0)
    model = TwoHeadModel(load_encoder(ROOT / p.model.stage1_checkpoint), len(info.names), p.model.pooling,
                         p.model.head_dropout, p.switches.msd_samples)
    train = dataclasses.replace(p.train, epochs=1, seed=0, grad_accum=1)
    data = FitData(ds, ds, info.class_weights["task1"]["weights"], info.class_weights["task2"]["weights"],
                   tok.pad_token_id)
    s = prepare_training(model, data, RunConfig(train, p.loss, p.switches), validate=False)
    return train_one_epoch(s.step, s.train_loader, 1, 0, refresh=0).metrics["train_samples_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "switches_cpu.json"))
    args = ap.parse_args()
    base = load_params(ROOT / "params.yaml")
    layout = {k: ROOT / v for k, v in dvc_paths(ROOT).items()}
    tok = load_tokenizer(ROOT / base.model.stage1_checkpoint)
    info = read_label_info(layout["prepared"])
    ds = TokenizedDataset(layout["tokenized"] / "train.parquet", tok.pad_token_id).subsample(args.rows, 0)
    acc = make_accelerator(base.train.device, base.train.precision, 1)
    grid = {"plain": {}, **switches.ABLATION, "awp": {"switches.awp_start_epoch": 1}}
    rates = {name: [] for name in grid}
    for _ in range(args.repeats):  # interleaved, so a load change on the machine hits every switch alike
        for name, overrides in grid.items():
            p = dataclasses.replace(base, **{s: getattr(with_switch(base, overrides), s)
                                             for s in ("loss", "switches", "model")})
            rates[name].append(measure(p, ds, info, tok))
    med = {n: statistics.median(v) for n, v in rates.items()}
    out = {"device": str(acc.device), "threads": torch.get_num_threads(), "rows": len(ds),
           "batch_size": base.train.batch_size, "repeats": args.repeats,
           "samples_per_s": med, "relative": {n: med[n] / med["plain"] for n in med}, "all": rates}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{acc.device}, {torch.get_num_threads()} threads, {len(ds)} rows, median of {args.repeats}")
    print("| switch | samples/s | × plain |\n|---|---|---|")
    for n in grid:
        print(f"| {n} | {med[n]:.0f} | {med[n] / med['plain']:.2f} |")


if __name__ == "__main__":
    main()
