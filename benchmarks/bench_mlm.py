"""What the masked-LM phase buys in Task2 accuracy on test, and what it costs, over seeds.

    python benchmarks/bench_mlm.py --out runs/mlm_demo [--epochs 0 1 3 10] [--seeds 1 2 3] [--set KEY=VALUE ...]
        [--base-model DIR]
    python benchmarks/bench_mlm.py --out runs/mlm_demo --report PREFIX   # PREFIX.md + PREFIX.json, e.g.
        # benchmarks/results/mlm_demo.md

Each run is the pipeline's training path in its own folder laid out as the project (dvc.yaml, params.yaml, data/,
models/, metrics/): prepare_labels → pretrain_mlm (``mlm.epochs`` = E; 0 = off) → pretrain_stage1 → tokenize →
train_stage2 → calibrate → evaluate, with ``mlm.seed`` = ``stage1.seed`` = ``train.seed`` = the run's seed (so a
seed draws every random choice of the run: masks, Stage 1, Stage 2). ``--base-model`` replaces
``stage1.base_model`` (e.g. the pretrained MiniLM directory); the demo encoder is the workspace's
``models/demo_encoder`` (``dvc repro build_demo_encoder`` first). Each folder's ``timings.json`` holds every
stage's seconds. Nothing is written outside --out; a finished run is not run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from ablation_runs import set_dotted  # noqa: E402

from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.config.params import load_params  # noqa: E402


def one_run(epochs: int, seed: int, out: Path, sets: dict, base_model: str | None) -> str:
    from twohead.pipeline import (
        calibrate,
        evaluate,
        prepare_labels,
        pretrain_mlm,
        pretrain_stage1,
        tokenize,
        train_stage2,
    )

    folder = out / f"e{epochs:02d}-s{seed}"
    layout = dvc_paths(ROOT)
    if (folder / layout["test_metrics"]).is_file():
        return f"{folder.name}: done already"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for k, v in {"mlm.epochs": epochs, "mlm.seed": seed, "stage1.seed": seed, "train.seed": seed, **sets}.items():
        set_dotted(raw, k, v)
    set_dotted(raw, "stage1.base_model", base_model or str(ROOT / raw["stage1"]["base_model"]))
    for key in ("data.raw_path", "data.corrections", "data.unlabeled_path"):
        section, name = key.split(".")
        set_dotted(raw, key, str(ROOT / raw[section][name]))
    set_dotted(raw, "model.stage1_checkpoint", str(folder / layout["stage1_model"]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    p = load_params(folder / "params.yaml")

    def paths(cls):
        return cls(**{f.name: folder / layout[f.name] for f in dataclasses.fields(cls)})

    timings = {}
    for name, stage, cls in (("prepare_labels", prepare_labels, prepare_labels.PreparePaths),
                             ("pretrain_mlm", pretrain_mlm, pretrain_mlm.MlmPaths),
                             ("pretrain_stage1", pretrain_stage1, pretrain_stage1.Stage1Paths),
                             ("tokenize", tokenize, tokenize.TokenizePaths),
                             ("train_stage2", train_stage2, train_stage2.TrainPaths),
                             ("calibrate", calibrate, calibrate.CalibratePaths),
                             ("evaluate", evaluate, evaluate.EvaluatePaths)):
        t0 = time.perf_counter()
        stage.run(p, paths(cls))
        timings[name] = round(time.perf_counter() - t0, 1)
    (folder / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    for big in ("stage2_model", "stage1_model", "mlm_model"):   # the table needs none of the models
        shutil.rmtree(folder / layout[big], ignore_errors=True)
    return f"{folder.name}: {sum(timings.values()):.0f}s ({', '.join(f'{k} {v:.0f}s' for k, v in timings.items())})"


def report(out: Path, dest: Path) -> None:
    """``twohead compare --group-by mlm.epochs`` over the run folders (paired by seed), plus the cost: the masked-LM
    phase's minutes per run and seconds per epoch, the whole run's minutes (each folder's ``timings.json`` and
    ``metrics/mlm_speed.json``)."""
    import numpy as np

    from twohead.experiments.ablation import load_runs
    from twohead.experiments.compare import group_runs, groups_markdown

    g = group_runs(load_runs(runs_dir=out), "mlm.epochs", seed_key="train.seed")
    layout = dvc_paths(ROOT)
    cost = {}
    for grp in g["groups"]:
        rows = []
        for r in grp["runs"]:
            folder = out / r["rev"]
            t = json.loads((folder / "timings.json").read_text())
            speed = json.loads((folder / layout["mlm_speed"]).read_text())
            rows.append((t["pretrain_mlm"], speed.get("epoch_seconds_mean", 0.0), sum(t.values())))
        cost[grp["value"]] = {k: float(np.median([x[i] for x in rows])) for i, k in
                              enumerate(("mlm_seconds", "mlm_epoch_seconds", "run_seconds"))}
    g["cost"] = cost
    lines = [groups_markdown(g), "Cost per run (median over its seeds; the 2-core box — runs that shared the cores with"
             " other work are slower, see each folder's timings.json):", "",
             "| mlm.epochs | masked-LM phase, minutes | seconds per masked-LM epoch | whole run, minutes |",
             "|---|---|---|---|"]
    lines += [f"| {v} | {c['mlm_seconds'] / 60:.1f} | {c['mlm_epoch_seconds']:.0f} | {c['run_seconds'] / 60:.1f} |"
              for v, c in cost.items()]
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dest.with_suffix(".json").write_text(json.dumps(g, indent=2, default=str) + "\n", encoding="utf-8")
    print(dest.with_suffix(".md").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, nargs="+", default=[0, 1, 3, 10], help="mlm.epochs values (0 = off)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an extra param for every run")
    ap.add_argument("--base-model", help="stage1.base_model for every run (default: the demo encoder)")
    ap.add_argument("--report", type=Path, metavar="PREFIX", help="write the table of --out's runs to PREFIX.md and"
                                                                  " PREFIX.json instead of running")
    args = ap.parse_args()
    if args.report:
        report(args.out, args.report)
        return
    sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    t0 = time.perf_counter()
    for seed in args.seeds:           # seed-major: an interrupted grid still has complete pairs
        for e in args.epochs:
            print(one_run(e, seed, args.out, sets, args.base_model), flush=True)
    print(f"done in {time.perf_counter() - t0:.0f}s -> twohead compare --group-by mlm.epochs --runs-dir {args.out}")


if __name__ == "__main__":
    main()
