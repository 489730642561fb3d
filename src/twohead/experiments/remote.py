"""``twohead remote [EXP]``: is this clone ready for the GPU round trip (docs/remote.md)?

The round trip is DVC's own: ``dvc exp push origin EXP`` on the machine that ran the experiment, ``dvc exp pull
origin EXP`` on this one. This check runs the questions those verbs answer late or cryptically, each failure one
line naming the fix: a git remote to push experiments through; a default DVC remote in the *committed* config (a
``--local`` one stays on this machine) whose directory exists when it is a path; and, given an experiment name,
whether it is here or on the git remote, and whether its ``params.yaml`` validates with this checkout's code (an
experiment run on a newer commit may set keys this code does not know).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ..config.errors import DataError, ParamsError
from .revisions import experiments, read_text

FIX = "docs/remote.md"


def _run(root: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=root, capture_output=True, text=True)


def git_remote(root: Path, name: str) -> str:
    proc = _run(root, "git", "remote", "get-url", name)
    if proc.returncode != 0:
        raise DataError(f"no git remote {name!r}: git remote add {name} <url> (the repository both machines push to;"
                        f" {FIX})")
    return proc.stdout.strip()


def _default(root: Path, *level: str) -> str:
    proc = _run(root, "dvc", "remote", "default", *level)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def dvc_remote(root: Path) -> tuple[str, str]:
    """The default DVC remote's name and URL, from the committed config (what a fresh clone sees)."""
    project = _default(root, "--project")
    if not project:
        anywhere = _default(root)
        if anywhere:
            raise DataError(f"the default DVC remote {anywhere!r} is set in .dvc/config.local only: a fresh clone on"
                            f" the other machine will not see it; dvc remote add -d {anywhere} <url> (without"
                            f" --local) and commit .dvc/config ({FIX})")
        raise DataError("no DVC remote configured: dvc remote add -d storage <url> (s3://…, ssh://…, a shared"
                        f" folder) && git commit .dvc/config -m 'DVC remote' ({FIX})")
    urls = dict(line.split()[:2] for line in _run(root, "dvc", "remote", "list").stdout.splitlines()
                if len(line.split()) >= 2)
    url = urls.get(project, "")
    if url and "://" not in url and not (root / url).expanduser().is_dir():
        raise DataError(f"the DVC remote {project!r} is the folder {url}, which does not exist on this machine: mount"
                        f" it, or dvc remote modify --local {project} url <its path here> ({FIX})")
    return project, url


def remote_experiments(root: Path, remote: str) -> list[str]:
    proc = _run(root, "dvc", "exp", "list", remote, "--all-commits", "--name-only")
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DataError(f"dvc exp list {remote}: {first[0] if first else 'failed'}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def check_params_fit(root: Path, name: str, commit: str) -> None:
    """The experiment's params.yaml must validate with this checkout's code."""
    from ..config.params import load_params

    text = read_text(commit, "params.yaml", root)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "params.yaml"
        f.write_text(text, encoding="utf-8")
        try:
            load_params(f)
        except ParamsError as exc:
            why = str(exc).replace(str(f), "params.yaml")
            raise DataError(f"experiment {name!r} (commit {commit[:7]}) has params this checkout's code refuses —"
                            f" {why} — it was run on other code: dvc exp apply {name} brings that code (then pip"
                            f" install --no-deps -e .), or git pull to the commit it was run from") from None


def check(exp: str | None, remote: str = "origin", root: str | Path = ".") -> list[str]:
    """Lines that say what is ready; the first problem raises one line naming its fix."""
    root = Path(root)
    lines = [f"git remote {remote}: {git_remote(root, remote)}"]
    name, url = dvc_remote(root)
    lines.append(f"DVC remote {name} (default, committed): {url}")
    if exp is None:
        return lines
    here = [e for e in experiments(root) if e.name == exp]
    if not here:
        there = remote_experiments(root, remote)
        if exp not in there:
            listed = ", ".join(there[:10]) + (" …" if len(there) > 10 else "") if there else "none"
            raise DataError(f"no experiment {exp!r} here or on {remote} ({remote} has: {listed}); on the machine that"
                            f" ran it: dvc exp push {remote} {exp}")
        lines.append(f"experiment {exp}: on {remote}, not here yet: dvc exp pull {remote} {exp}")
        return lines
    e = here[-1]
    check_params_fit(root, exp, e.commit)
    head = _run(root, "git", "rev-parse", "HEAD").stdout.strip()
    ancestor = _run(root, "git", "merge-base", "--is-ancestor", e.baseline, "HEAD").returncode == 0
    where = "this commit" if e.baseline == head else ("an ancestor of HEAD" if ancestor else
                                                      "a commit not in this branch (git pull to compare it with main)")
    lines.append(f"experiment {exp}: here, run from {e.baseline[:7]} ({where}); its params fit this code:"
                 f" dvc exp apply {exp}, or twohead compare main {exp}")
    return lines
