"""Build a throwaway git + DVC copy of this project with a tiny configuration, for end-to-end tests.

One such project is built and reproduced once per test session (the ``shared_project`` fixture in conftest);
tests that need the reproduced pipeline take a :func:`clone_project` of it — a git clone whose DVC outputs are
checked out from the shared cache, so nothing re-runs — and change what they test in their own clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from conftest import DEMO_CSV, ROOT, committed_text

TINY = {
    "demo_encoder": {"vocab_size": 400, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "tokenize": {"max_length": 64},
    "split": {"val_ratio": 0.15, "test_ratio": 0.15},
    "mlm": {"epochs": 1, "batch_size": 16, "lr": 0.003},
}


#: The shared project: 400 demo rows, tiny encoder, Stage 1 one epoch, Stage 2 two epochs, on the CPU.
SHARED_ROWS = 400
SHARED_OVERRIDES = {"train": {"epochs": 2, "batch_size": 16, "lr": 0.003, "device": "cpu"}, "eval": {"worst_k": 10},
                    "stage1": {"epochs": 1, "batch_size": 16, "lr": 0.003}}


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def deep_update(base: dict, changes: dict) -> dict:
    for k, v in changes.items():
        if isinstance(v, dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def make_project(dest: Path, rows: int = 600, overrides: dict | None = None) -> Path:
    """Copy dvc.yaml, params.yaml, stages/ and src/ into ``dest``, shrink the demo data to ``rows`` rows
    (every category kept), apply the tiny params, and make it a committed git + DVC repo."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore"):  # .gitignore: what git must not hold, as in the project
        shutil.copy(ROOT / name, dest / name)
    # params.yaml as committed: after the README's `dvc exp run -S …` the workspace's copy holds the experiment's
    # values, and a test's own `-S` of the same value would then change nothing
    (dest / "params.yaml").write_text(committed_text("params.yaml"))
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    demo = pd.read_csv(DEMO_CSV, dtype=str, keep_default_na=False)
    strat = demo["category"].where(demo["category"] != "", demo["pick"])
    small = demo.groupby(strat, group_keys=False).head(5)
    small = pd.concat([small, demo.drop(small.index).head(max(0, rows - len(small)))]).sort_index()
    (dest / "data" / "demo").mkdir(parents=True)
    small.to_csv(dest / "data" / "demo" / "news_demo.csv", index=False)
    for name in ("corrections.csv", "unlabeled.csv"):   # data.corrections, data.unlabeled_path (header only: none)
        shutil.copy(ROOT / "data" / name, dest / "data" / name)
    (dest / "metrics").mkdir()   # the plot stage reads `twohead curve`'s result (in git; not measured yet)
    (dest / "metrics" / "learning_curve.json").write_text(committed_text("metrics/learning_curve.json"))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    deep_update(params, TINY)
    deep_update(params, overrides or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["dvc", "init", "-q"], dest)
    shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots")  # the project's custom plot templates
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "tiny project"], dest)
    return dest


def clone_project(src: Path, dest: Path, params: dict | None = None) -> Path:
    """A clone of the reproduced project ``src`` with every DVC output checked out from ``src``'s cache (nothing
    re-runs); ``params`` are applied to the clone's params.yaml as an uncommitted edit, as a user would."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["git", "clone", "-q", str(src), str(dest)], dest.parent)
    run(["dvc", "cache", "dir", "--local", str(src / ".dvc" / "cache")], dest)
    run(["dvc", "checkout", "-q"], dest)
    if params:
        p = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_update(p, params), sort_keys=False))
    return dest


def train_stage2_in(proj: Path, kill_after: int | None = None, processes: int = 1) -> subprocess.CompletedProcess:
    """Run stages/train_stage2.py in ``proj`` with dvc.yaml's paths, under ``torchrun`` when ``processes`` > 1;
    ``kill_after``: SIGKILL each process right after its N-th state save (the resume tests' hook)."""
    import dataclasses

    from conftest import dvc_paths
    from twohead.pipeline.stage_main import flag
    from twohead.pipeline.train_stage2 import TrainPaths
    from twohead.train.fit import KILL_AFTER_SAVE_ENV

    layout = dvc_paths()
    args = [a for f in dataclasses.fields(TrainPaths) for a in (flag(f.name), layout[f.name])]
    env = {k: v for k, v in os.environ.items() if k != KILL_AFTER_SAVE_ENV}
    if kill_after is not None:
        env[KILL_AFTER_SAVE_ENV] = str(kill_after)
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    return subprocess.run([sys.executable, *launch, "stages/train_stage2.py", *args], cwd=proj, env=env,
                          capture_output=True, text=True)
