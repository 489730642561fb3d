"""Run the ablation grid without DVC: train_stage2 + evaluate for the plain recipe and each switch alone,
per seed, each run in its own folder laid out as the project (dvc.yaml, params.yaml, plots/, metrics/).

    python scripts/ablation_runs.py --out runs/ablation [--seeds 1 2 3] [--only rdrop,msd] [--jobs 1]
    twohead ablation report --runs-dir runs/ablation

The DVC way (`twohead ablation queue` + `dvc queue start`) is the one to use on your project: it caches and
versions every run. This script is for a machine without DVC (a rented GPU box) or to fan runs out over one
GPU (--jobs N processes). Each run does prepare_labels → tokenize → train_stage2 → calibrate → evaluate in its folder
(a switch may change the class weights that prepare_labels computes); the Stage-1 checkpoint is the one in
params.yaml (`dvc repro pretrain_stage1` makes the demo's). Nothing is written outside --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.config import switches  # noqa: E402
from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.config.params import load_params  # noqa: E402


def set_dotted(raw: dict, dotted: str, value) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def one_run(name: str, seed: int, out: str, extra: dict) -> str:
    from twohead.pipeline import calibrate, evaluate, prepare_labels, tokenize, train_stage2

    folder = Path(out) / f"{name}-s{seed}"
    if (folder / "metrics" / "test.json").is_file():
        return f"{folder.name}: done already"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    set_dotted(raw, "train.seed", seed)
    for k, v in {**({} if name == "plain" else switches.ABLATION[name]), **extra}.items():
        set_dotted(raw, k, v)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    p = load_params(folder / "params.yaml")
    p = dataclasses.replace(p, model=dataclasses.replace(p.model, stage1_checkpoint=str(
        ROOT / p.model.stage1_checkpoint)), data=dataclasses.replace(p.data, raw_path=str(ROOT / p.data.raw_path)))
    layout = dvc_paths(ROOT)

    def paths(cls):
        return cls(**{f.name: folder / layout[f.name] for f in dataclasses.fields(cls)})

    t0 = time.perf_counter()
    prepare_labels.run(p, paths(prepare_labels.PreparePaths))
    tokenize.run(p, paths(tokenize.TokenizePaths))
    train_stage2.run(p, paths(train_stage2.TrainPaths))
    calibrate.run(p, paths(calibrate.CalibratePaths))
    evaluate.run(p, paths(evaluate.EvaluatePaths))
    shutil.rmtree(folder / layout["stage2_model"], ignore_errors=True)  # the model is not needed for the table
    return f"{folder.name}: {time.perf_counter() - t0:.0f}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", help="comma-separated switches (default: all): " + ", ".join(switches.ABLATION))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an extra param for every run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (processes; e.g. several on one GPU)")
    args = ap.parse_args()
    names = ["plain", *(args.only.split(",") if args.only else switches.ABLATION)]
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    grid = [(n, s) for n in names for s in args.seeds]
    t0 = time.perf_counter()
    if args.jobs == 1:
        for n, s in grid:
            print(one_run(n, s, args.out, extra), flush=True)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for msg in pool.map(one_run, *zip(*grid), [args.out] * len(grid), [extra] * len(grid)):
                print(msg, flush=True)
    print(f"{len(grid)} runs in {time.perf_counter() - t0:.0f}s -> {args.out}; twohead ablation report --runs-dir"
          f" {args.out}")


if __name__ == "__main__":
    main()
