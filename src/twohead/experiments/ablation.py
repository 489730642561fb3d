"""``twohead ablation``: which of the switches helps, beyond noise?

Runs (DVC experiments, commits, or run folders laid out as the project) are labelled by the switches their
params have on (:func:`twohead.config.switches.label`); each switch's runs are paired by seed with the plain
recipe's, and every metric's per-seed difference gets a Student-t interval over the seed pairs and a verdict
(better / worse when the interval excludes 0, else within noise). Cost = the switch's mean training
samples/s ÷ the plain runs' (from each run's ``metrics/train_speed.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import switches
from ..config.errors import DataError
from ..config.layout import paths_from_text
from ..config.schema import higher_is_better, label
from .compare import Revision, class_vocabulary, load_revision, pts, revision_metrics
from .revisions import WORKSPACE, read_text
from .stats import t_interval, verdict

MARK = {"better": "▲", "worse": "▼", "within noise": "≈"}


def load_runs(revs: list[str] | None = None, runs_dir: str | Path | None = None, root=".") -> list[Revision]:
    """Runs from revisions / experiment names, or from every sub-folder of ``runs_dir`` (each a project
    layout: dvc.yaml, params.yaml and the evaluate / train outputs it names)."""
    if runs_dir is not None:
        if not Path(runs_dir).is_dir():
            raise DataError(f"{runs_dir}: no such folder (scripts/ablation_runs.py --out writes one)")
        folders = sorted(d for d in Path(runs_dir).iterdir() if (d / "dvc.yaml").is_file())
        if not folders:
            raise DataError(f"{runs_dir}: no run folders (sub-folders with dvc.yaml, params.yaml and outputs)")
        return [_named(load_revision(WORKSPACE, d), d.name) for d in folders]
    if not revs:
        raise DataError("no runs: name experiments / revisions, or give --runs-dir")
    return [load_revision(r, root) for r in revs]


def _named(run: Revision, name: str) -> Revision:
    run.rev = name
    return run


def samples_per_s(run: Revision, root=".", runs_dir: str | Path | None = None) -> float:
    """Mean training samples/s of a run (NaN when its speed file is missing)."""
    base = Path(runs_dir) / run.rev if runs_dir is not None else Path(root)
    try:
        layout = paths_from_text(read_text(run.commit, "dvc.yaml", base))
        data = json.loads(read_text(run.commit, layout["train_speed"], base))
        return float(data["train_samples_per_second_mean"])
    except (DataError, KeyError, ValueError):
        return float("nan")


def ablation(runs: list[Revision], speeds: list[float], seed_key: str = "train.seed", level: float = 0.95) -> dict:
    vocab = class_vocabulary(runs)
    groups: dict[str, list[tuple]] = {}
    for run, sp in zip(runs, speeds):
        groups.setdefault(switches.label(run.params), []).append(
            (switches.get(run.params, seed_key), run.rev, revision_metrics(run, vocab), sp))
    if "plain" not in groups:
        raise DataError(f"none of the {len(runs)} runs is the plain recipe (every switch off): the ablation needs"
                        " it as the reference (twohead ablation queue adds it)")
    names = list(groups["plain"][0][2])  # every compared metric, in the vocabulary's order
    plain = groups["plain"]
    ref = {seed: (m, sp) for seed, _, m, sp in plain}
    base_speed = float(np.nanmean([sp for *_, sp in plain])) if plain else float("nan")
    out = {"seed_key": seed_key, "level": level, "metrics": names, "plain": {
        "runs": [rev for _, rev, _, _ in plain], "seeds": [s for s, *_ in plain],
        "samples_per_second": base_speed,
        "metrics": {n: dict(zip(("mean", "sd", "ci_low", "ci_high"), t_interval([m[n] for _, _, m, _ in plain],
                                                                                 level))) for n in names}},
        "rows": []}
    for name in [n for n in switches.ABLATION if n in groups] + sorted(set(groups) - set(switches.ABLATION) -
                                                                         {"plain"}):
        rows = groups[name]
        pairs = [(m, ref[s][0]) for s, _, m, _ in rows if s in ref]
        deltas = {}
        for n in names:
            mean, _, low, high = t_interval([a[n] - b[n] for a, b in pairs], level)
            deltas[n] = {"mean": mean, "ci_low": low, "ci_high": high,
                         "verdict": verdict(low, high, higher_is_better(n)) if len(pairs) >= 2 else "undefined"}
        sp = float(np.nanmean([x[3] for x in rows])) if rows else float("nan")
        out["rows"].append({"switch": name, "overrides": switches.ABLATION.get(name, {}),
                            "runs": [rev for _, rev, _, _ in rows], "pairs": len(pairs), "metrics": deltas,
                            "samples_per_second": sp, "cost": sp / base_speed if base_speed else float("nan")})
    return out


def _cell(m: dict) -> str:
    if m["verdict"] == "undefined" or np.isnan(m["ci_low"]):
        return f"{pts(m['mean'])} (n/a)"
    return f"{pts(m['mean'])} [{pts(m['ci_low'])}, {pts(m['ci_high'])}] {MARK.get(m['verdict'], '')}"


def to_markdown(a: dict) -> str:
    names = a["metrics"]
    p = a["plain"]
    heads = " | ".join(label(n).replace(" mean recall", " recall") for n in names)
    lines = [f"Each switch alone vs the plain recipe, paired by `{a['seed_key']}`; Δ in points, mean over seeds with"
             f" its {a['level']:.0%} t-interval; ▲ better / ▼ worse (interval excludes 0), ≈ within noise.", "",
             f"| switch | seeds | {heads} | samples/s × |", "|---|---|" + "---|" * len(names) + "---|"]
    base = " | ".join(f"{p['metrics'][n]['mean']:.3f}" for n in names)
    lines.append(f"| plain (absolute) | {len(p['runs'])} | {base} | 1.00 ({p['samples_per_second']:.0f}/s) |")
    for r in a["rows"]:
        cells = " | ".join(_cell(r["metrics"][n]) for n in names)
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items())
        name = f"{r['switch']} ({over})" if over else r["switch"]
        cost = "n/a" if np.isnan(r["cost"]) else f"{r['cost']:.2f}"
        lines.append(f"| {name} | {r['pairs']} | {cells} | {cost} |")
    k = sum(1 for r in a["rows"] for n in names if r["metrics"][n]["verdict"] in MARK)
    hits = sum(1 for r in a["rows"] for n in names if r["metrics"][n]["verdict"] in ("better", "worse"))
    if k:
        lines += ["", f"{hits} of {k} intervals exclude 0; at {a['level']:.0%} about {k * (1 - a['level']):.1f} would"
                      " by chance alone even if no switch did anything: read a lone ▲/▼ as a lead to re-test with more"
                      " seeds, not as a finding."]
    return "\n".join(lines) + "\n"
