"""Files of a revision of this repository: a branch, tag, commit, DVC experiment name, or ``workspace``.

The pipeline keeps what a comparison needs in git (``cache: false`` outputs): the test predictions,
the per-class table, ``params.yaml`` and ``dvc.yaml``. DVC experiments live under ``refs/exps/…``
(one ref per experiment, named by ``dvc exp show``); a name is resolved to that ref's commit.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..config.errors import DataError

WORKSPACE = "workspace"


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass
class Experiment:
    name: str
    commit: str
    baseline: str   # the commit the experiment was run from


def experiments(root: str | Path = ".") -> list[Experiment]:
    """Every DVC experiment in the repository (refs/exps/<baseline sha split 2/38>/<name>)."""
    out = _git(Path(root), "for-each-ref", "refs/exps", "--format=%(refname) %(objectname)")
    exps = []
    for line in out.splitlines():
        ref, sha = line.split()
        parts = ref.split("/")
        if len(parts) == 5 and len(parts[2]) == 2:  # refs exps ab cdef… name (skip exec/celery refs)
            exps.append(Experiment(parts[4], sha, parts[2] + parts[3]))
    return exps


def resolve(rev: str, root: str | Path = ".") -> str:
    """A commit sha for ``rev`` (a git revision or a DVC experiment name), or ``workspace``."""
    if rev == WORKSPACE:
        return rev
    root = Path(root)
    named = [e for e in experiments(root) if e.name == rev]
    if len(named) > 1:
        raise DataError(f"{rev}: {len(named)} experiments have this name; give the commit instead"
                        f" ({', '.join(e.commit[:7] for e in named)})")
    if named:
        return named[0].commit
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"{rev}: not a branch, tag, commit or experiment name of this repository (see git log,"
                        " dvc exp show)")
    return proc.stdout.strip()


def read_text(rev: str, path: str, root: str | Path = ".") -> str:
    """The text of ``path`` at revision ``rev`` (already resolved), or in the working tree."""
    root = Path(root)
    if rev == WORKSPACE:
        f = root / path
        if not f.is_file():
            raise DataError(f"workspace: {path} not found (run dvc repro first)")
        return f.read_text(encoding="utf-8")
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"{rev[:12]}: {path} is not in that revision (was the pipeline run and committed there?)")
    return proc.stdout
