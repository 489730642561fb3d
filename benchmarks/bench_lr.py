"""Is `twohead lr-find`'s suggestion a learning rate that trains well? Checked by training, over seeds.

    python benchmarks/bench_lr.py train --out runs/lr --lrs 2e-5 5e-5 1e-4 2e-4 5e-4 1e-3 --seeds 1 \
        [--set train.max_train_rows=3000 ...] [--checkpoint DIR]
    python benchmarks/bench_lr.py report --out runs/lr [--sweep metrics/lr_find.json ...] [--json F] [--md F]

``train``: one 5-epoch Stage-2 run per (LR, seed), each in its own folder under --out (prepare_labels →
tokenize → train_stage2 with the project's params, --set applied; --checkpoint replaces
model.stage1_checkpoint, e.g. the pretrained MiniLM directory). A finished run is skipped, so the grid can be
grown (more seeds for the best LRs) by running again.

``report``: per LR, test Task2 accuracy and macro-F1 (mean over seeds with the 95% t-interval over seeds); the
best LR of the grid (highest mean test Task2 accuracy); every other LR against it, paired by seed (mean Δ with its
t-interval) and per seed by the paired bootstrap over the test rows (2,000 resamples, the `twohead compare`
statistics); each --sweep JSON's suggestion, its cost, and where it lands in the grid. Nothing is written outside
--out, --json and --md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decisions import train_one  # noqa: E402

from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.evaluate.metrics import softmax  # noqa: E402
from twohead.experiments.stats import Coded, paired_compare, point_values, t_interval  # noqa: E402

SHOWN = ("task2_acc", "task2_macro_f1")


def _folder_name(lr: float) -> str:
    return f"lr{lr:.0e}".replace("e-0", "e-")


def train(args, sets: dict) -> None:
    for seed in args.seeds:
        for lr in args.lrs:
            t0 = time.perf_counter()
            train_one(seed, args.out / _folder_name(lr), {**sets, "train.lr": lr}, args.checkpoint)
            print(f"lr {lr:g} seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)


def test_coded(folder: Path, p) -> Coded:
    from twohead.train.scoring import Scorer

    layout = dvc_paths(ROOT)
    scorer = Scorer(folder / layout["stage2_model"], p.train.device, p.train.eval_batch_size)
    test, t1, t2 = scorer.split(folder / layout["tokenized"], "test")
    p1, p2 = softmax(t1), softmax(t2)
    return Coded.from_arrays(test.labels_task1, p1[:, 1] < 0.5, test.labels_task2, p2.argmax(1), p2.max(1),
                             len(scorer.names))


def collect(out: Path) -> dict[float, dict[int, Coded]]:
    """{lr: {seed: the kept model's plain test answers}} for every finished run under ``out``."""
    import yaml

    from twohead.config.params import params_from_dict

    layout = dvc_paths(ROOT)
    runs: dict[float, dict[int, Coded]] = {}
    for params in sorted(out.glob("lr*/s*/params.yaml")):
        folder = params.parent
        if not (folder / layout["train_metrics"]).is_file():
            continue
        # partial: a run trained before a key was added (e.g. stage1.scheduler) takes that key's default
        p = params_from_dict(yaml.safe_load(params.read_text(encoding="utf-8")), str(params), partial=True)
        runs.setdefault(p.train.lr, {})[p.train.seed] = test_coded(folder, p)
    return runs


def report(runs: dict[float, dict[int, Coded]], sweeps: list[dict]) -> tuple[dict, str]:
    lrs = sorted(runs)
    values = {lr: {s: point_values(c) for s, c in runs[lr].items()} for lr in lrs}
    summary = {}
    for lr in lrs:
        row = {}
        for m in SHOWN:
            mean, sd, low, high = t_interval([v[m] for v in values[lr].values()])
            row[m] = {"mean": mean, "low": low, "high": high, "seeds": sorted(values[lr])}
        summary[lr] = row
    best = max(lrs, key=lambda lr: (summary[lr]["task2_acc"]["mean"], len(runs[lr])))
    versus = {}
    for lr in lrs:
        if lr == best:
            continue
        shared = sorted(set(runs[lr]) & set(runs[best]))
        entry = {"seeds": shared}
        for m in SHOWN:
            d = [100 * (values[lr][s][m] - values[best][s][m]) for s in shared]
            mean, _, low, high = t_interval(d)
            boot = [paired_compare(runs[best][s], runs[lr][s], resamples=2000, seed=0)[m] for s in shared]
            entry[m] = {"mean_pts": mean, "low": low, "high": high, "verdicts": [b["verdict"] for b in boot],
                        "bootstrap_pts": [[100 * b["ci_low"], 100 * b["ci_high"]] for b in boot]}
        versus[lr] = entry
    lines = [f"Test figures per train.lr: mean over seeds [95% t-interval over seeds]; best of the grid = {best:g}."
             " Δ vs best: mean of per-seed differences, points [t-interval]; per-seed paired bootstrap"
             " (▲ better than best, ▼ worse, ≈ within noise).", "",
             "| train.lr | seeds | Task2 accuracy | Task2 macro-F1 | Δ acc vs best | Δ macro-F1 vs best |",
             "|---|---|---|---|---|---|"]
    mark = {"better": "▲", "worse": "▼", "within noise": "≈", "undefined": "?"}

    def cell(s: dict) -> str:
        ci = "" if np.isnan(s["low"]) else f" [{s['low']:.3f}, {s['high']:.3f}]"
        return f"{s['mean']:.3f}{ci}"

    def delta(v: dict | None) -> str:
        if v is None:
            return "(best)"
        ci = "" if np.isnan(v["low"]) else f" [{v['low']:+.1f}, {v['high']:+.1f}]"
        return f"{v['mean_pts']:+.1f}{ci} {''.join(mark[x] for x in v['verdicts'])}"

    for lr in lrs:
        vs = versus.get(lr)
        lines.append(f"| {lr:g} | {len(runs[lr])} | {cell(summary[lr]['task2_acc'])} |"
                     f" {cell(summary[lr]['task2_macro_f1'])} | {delta(vs and vs['task2_acc'])} |"
                     f" {delta(vs and vs['task2_macro_f1'])} |")
    if sweeps:
        lines += ["", "| suggestion | method | suggested train.lr | nearest grid LR | its Δ acc vs best | cost |",
                  "|---|---|---|---|---|---|"]
    for sw in sweeps:
        lr = sw["suggested_lr"]
        near = min(lrs, key=lambda g: abs(np.log10(g) - np.log10(lr))) if lr else None
        vs = versus.get(near)
        lines.append(f"| {sw.get('name', '')} | {sw['method']} | {lr:.2g} | {near:g} |"
                     f" {delta(vs and vs['task2_acc'])} | {sw['seconds']:.0f}s"
                     f" ({sw.get('cost_share_of_run', float('nan')):.0%} of one run) |")
    return {"best": best, "summary": summary, "versus_best": versus, "sweeps": sweeps}, "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["train", "report"])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--lrs", type=float, nargs="+", default=[2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--checkpoint")
    ap.add_argument("--sweep", action="append", default=[], type=Path, metavar="LR_FIND_JSON")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.action == "train":
        train(args, sets)
        return
    sweeps = []
    for f in args.sweep:
        d = json.loads(f.read_text())
        sweeps.append({"name": f.stem, **{k: d.get(k) for k in ("method", "suggested_lr", "seconds",
                                                                  "cost_share_of_run", "rule")}})
    result, text = report(collect(args.out), sweeps)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
