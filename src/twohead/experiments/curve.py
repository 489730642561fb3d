"""``twohead curve``: would more labelled rows move Task2 accuracy? A learning curve made of real DVC experiments.

Each point is ``dvc exp run --temp -n curve-f0.25-s1 -S train.max_train_rows=R -S train.seed=S evaluate``: Stage 2
trained on a seeded subsample of R train rows (val and test untouched), calibrated and evaluated like any
experiment, so it shows in ``dvc exp show`` and ``twohead compare``. A point whose params equal an experiment's of
the current commit (or the commit itself) is read, not re-run; Ctrl-C leaves every finished point as an
experiment, and the next call reuses them (also after a commit that changed only docs, tests or metrics:
:data:`RESULT_PATHS`). Then two curves are fitted to test Task2 accuracy against the rows:

- **log-linear** ``acc = a + b·ln(rows)`` (2 parameters) and
- **saturating power law** ``acc = c − a·rows^(−α)`` (3 parameters, c ≤ 1),

the one with the lower AIC is used to project accuracy at 2× and 4× the rows; the band is the spread of the same
projection fitted to each seed alone. Writes ``metrics/learning_curve.json`` (read by the plot stage's route table)
and ``plots/learning_curve.png``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..config.errors import DataError
from ..config.layout import paths_from_text
from .revisions import experiments, read_text

FRACTIONS = (0.25, 0.5, 1.0)
SEEDS = (1, 2)
#: minutes per run besides training (DVC, calibrate, evaluate), for the cost said before starting
OVERHEAD_MIN = 0.7


@dataclass
class Point:
    fraction: float
    seed: int
    rows: int             # train rows the run trains on
    name: str             # the experiment's name
    commit: str | None = None
    task2_acc: float | None = None
    reused: bool = False


def _params_with(base: dict, rows_param: int, seed: int) -> dict:
    out = json.loads(json.dumps(base))
    out["train"]["max_train_rows"], out["train"]["seed"] = rows_param, seed
    return out


def train_rows(root: Path, params: dict) -> int:
    """The train rows the current params train on (the prepared train split, or train.max_train_rows of it)."""
    import pyarrow.parquet as pq

    layout = paths_from_text((root / "dvc.yaml").read_text(encoding="utf-8"), "dvc.yaml")
    f = root / layout["prepared"] / "train.parquet"
    if not f.is_file():
        raise DataError(f"{f}: not found; run dvc repro (or dvc pull) first: the curve subsamples the train split")
    n = pq.ParquetFile(f).metadata.num_rows
    cap = params["train"].get("max_train_rows") or 0
    return min(n, cap) if cap else n


def plan(root: Path, fractions, seeds, prefix: str) -> tuple[int, list[Point], dict]:
    base = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    n = train_rows(root, base)
    points = []
    for f in fractions:
        rows = max(1, round(f * n))
        for s in seeds:
            points.append(Point(f, s, rows, f"{prefix}-f{f:g}-s{s}"))
    return n, points, base


#: what decides a run's result besides its params: the code, the stage definitions and the raw data in git (a commit
#: that changed only docs, tests or metrics leaves its experiments valid for this one)
RESULT_PATHS = ("src", "stages", "dvc.yaml", "data")


def same_code(root: Path, baseline: str, head: str) -> bool:
    if baseline == head:
        return True
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", baseline, head], cwd=root).returncode == 0
    return ancestor and subprocess.run(["git", "diff", "--quiet", baseline, head, "--", *RESULT_PATHS],
                                       cwd=root).returncode == 0


def _known_runs(root: Path) -> list[tuple[str, str, dict]]:
    """(name, commit, params) of the current commit and the experiments run on the same code (:func:`same_code`)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *RESULT_PATHS], cwd=root).returncode != 0:
        return []   # uncommitted code or data: every point runs on it (dvc exp run --temp takes the workspace)
    runs = [("HEAD", head)] + [(e.name, e.commit) for e in experiments(root) if same_code(root, e.baseline, head)]
    out = []
    for name, commit in runs:
        try:
            out.append((name, commit, yaml.safe_load(read_text(commit, "params.yaml", root))))
        except DataError:
            continue
    return out


def task2_acc_at(root: Path, commit: str) -> float | None:
    layout = paths_from_text(read_text(commit, "dvc.yaml", root), "dvc.yaml")
    try:
        return float(json.loads(read_text(commit, layout["test_metrics"], root))["test"]["task2"]["acc"])
    except (DataError, KeyError, TypeError, ValueError):
        return None


def reuse(root: Path, points: list[Point], base: dict, n_all: int) -> None:
    """Mark every point an existing run already measured (same params, test metrics present)."""
    known = _known_runs(root)
    for pt in points:
        want = _params_with(base, 0 if pt.rows >= n_all else pt.rows, pt.seed)
        for name, commit, params in known:
            if params == want and (acc := task2_acc_at(root, commit)) is not None:
                pt.name, pt.commit, pt.task2_acc, pt.reused = name, commit, acc, True
                break


def estimate_minutes(root: Path, base: dict, fraction: float) -> float:
    try:
        speed = json.loads((root / "metrics" / "train_speed.json").read_text(encoding="utf-8"))
        epoch = float(speed["epoch_seconds_mean"])
    except (OSError, KeyError, TypeError, ValueError):
        epoch = float("nan")
    return base["train"]["epochs"] * epoch * fraction / 60 + OVERHEAD_MIN


def run_point(root: Path, pt: Point, n_all: int, log=print) -> None:
    rows_param = 0 if pt.rows >= n_all else pt.rows
    cmd = ["dvc", "exp", "run", "--temp", "-n", pt.name, "-S", f"train.max_train_rows={rows_param}",
           "-S", f"train.seed={pt.seed}", "evaluate"]
    log(f"[curve] {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=root, stdout=sys.stdout, stderr=sys.stderr)
    if proc.returncode != 0:
        raise DataError(f"{pt.name}: dvc exp run failed (exit {proc.returncode}); its output is above")
    named = [e for e in experiments(root) if e.name == pt.name]
    if not named:
        raise DataError(f"{pt.name}: dvc exp run finished but no experiment of that name exists")
    pt.commit = named[-1].commit
    pt.task2_acc = task2_acc_at(root, pt.commit)


def _unique_name(root: Path, pt: Point) -> None:
    taken = {e.name for e in experiments(root)}
    name, i = pt.name, 2
    while name in taken:
        name, i = f"{pt.name}-{i}", i + 1
    pt.name = name


def run_curve(root: str | Path = ".", fractions=FRACTIONS, seeds=SEEDS, prefix: str = "curve",
              json_path: str | Path | None = None, plot_path: str | Path | None = None, dry_run: bool = False,
              log=print) -> dict | None:
    """Plan, reuse, say the cost, run what is missing (foreground, one at a time), fit, write. Ctrl-C: the finished
    points stay experiments (reused next time) and nothing is written."""
    from ..data.io import write_json
    from .curve_fit import curve_plot, fit_curve

    root = Path(root)
    if not fractions or any(not 0 < f <= 1 for f in fractions) or len(set(fractions)) < 2:
        raise DataError(f"--fractions {' '.join(map(str, fractions))}: give at least two shares of the train rows,"
                        " each in (0, 1] (e.g. 0.25 0.5 1.0)")
    if not seeds:
        raise DataError("--seeds: give at least one train.seed")
    n_all, points, base = plan(root, sorted(set(fractions)), sorted(set(seeds)), prefix)
    reuse(root, points, base, n_all)
    todo = [pt for pt in points if not pt.reused]
    minutes = sum(estimate_minutes(root, base, pt.fraction) for pt in todo)
    log(f"[curve] {len(points)} points ({len(fractions)} fractions of {n_all:,} train rows × {len(seeds)} seeds):"
        f" {len(points) - len(todo)} reused, {len(todo)} to run ≈ {minutes:.0f} min on this machine (estimated from"
        f" metrics/train_speed.json's epoch time + {OVERHEAD_MIN:g} min each for DVC, calibrate and evaluate)")
    if dry_run:
        return None
    started = time.monotonic()
    for i, pt in enumerate(todo, 1):
        _unique_name(root, pt)
        try:
            run_point(root, pt, n_all, log)
        except KeyboardInterrupt:
            done = len(points) - len(todo) + i - 1
            log(f"[curve] stopped: {done} of {len(points)} points are finished experiments; twohead curve again"
                " reuses them")
            raise
        log(f"[curve] {i}/{len(todo)} done: {pt.name} Task2 {pt.task2_acc:.4f} ({(time.monotonic() - started) / 60:.1f}"
            " min so far)")
    rows = np.array([pt.rows for pt in points])
    acc = np.array([pt.task2_acc for pt in points], dtype=np.float64)
    if np.isnan(acc).any():
        missing = [pt.name for pt in points if pt.task2_acc is None or math.isnan(pt.task2_acc)]
        raise DataError(f"no test Task2 accuracy in {', '.join(missing)} (their metrics/test.json)")
    fit = fit_curve(rows, acc, np.array([pt.seed for pt in points]), n_all)
    result = {"measured": True, "train_rows": n_all, "fractions": sorted(set(fractions)), "seeds": sorted(set(seeds)),
              "runs": len(points), "reused": len(points) - len(todo), "minutes": (time.monotonic() - started) / 60,
              "points": [{"fraction": pt.fraction, "seed": pt.seed, "rows": pt.rows, "experiment": pt.name,
                          "task2_acc": pt.task2_acc} for pt in points],
              "fit": {k: fit[k] for k in ("loglin", "power", "chosen", "acc_at_all_rows")},
              "projection": fit["projection"]}
    if plot_path:
        curve_plot(result["points"], fit, n_all, plot_path, f"twohead curve | {len(points)} runs | test Task2")
    if json_path:
        write_json(json_path, result)
    return result


def curve_lines(result: dict) -> list[str]:
    fit = result["fit"]
    lines = [f"fit: {fit['chosen']} (AIC log-linear {fit['loglin']['aic']:.1f}"
             + (f", power law {fit['power']['aic']:.1f}" if fit.get("power") else ", power law: not fitted") + ")",
             f"measured at {result['train_rows']:,} rows: Task2 {fit['acc_at_all_rows']:.4f} (mean over seeds)"]
    for p in result["projection"]:
        lines.append(f"{p['times']}× rows ({p['rows']:,}): Task2 {p['acc']:.4f}, gain {100 * p['gain']:+.1f} points"
                     f" (per-seed fits: {100 * p['gain_low']:+.1f} to {100 * p['gain_high']:+.1f}; the other fit:"
                     f" {100 * p['gain_other_fit']:+.1f})")
    return lines


def read_curve(path: str | Path) -> dict | None:
    """``metrics/learning_curve.json`` for the route table: None when not measured; otherwise rebuilt from checked
    values only (a file is untrusted and these go onto a page)."""
    from ..data.io import read_json

    if not Path(path).is_file():   # a stage run outside DVC (tests, benchmarks): not measured
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("measured") is not True:
        return None
    try:
        chosen = data["fit"]["chosen"]
        if chosen not in ("loglin", "power"):
            raise ValueError(f"fit.chosen {str(chosen)[:20]!r}")
        return {"measured": True, "train_rows": int(data["train_rows"]), "runs": int(data["runs"]),
                "fractions": [float(f) for f in data["fractions"]], "seeds": [int(x) for x in data["seeds"]],
                "fit": {"chosen": chosen},
                "projection": [{"times": int(p["times"]), "rows": int(p["rows"]), "acc": float(p["acc"]),
                                "gain": float(p["gain"]), "gain_low": float(p["gain_low"]),
                                "gain_high": float(p["gain_high"]),
                                "gain_other_fit": float(p.get("gain_other_fit", "nan"))} for p in data["projection"]]}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a twohead curve result ({type(exc).__name__}: {exc}); run twohead curve"
                        " again") from None
