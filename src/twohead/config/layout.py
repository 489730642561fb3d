"""The pipeline's file layout, read from ``dvc.yaml`` (``vars: - paths: …``), where it lives.

For tools that are not stages (benchmarks, ``twohead compare``) and need to find a stage's output;
stages themselves get their paths on the command line.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import MissingInputError


def paths_from_text(text: str, source: str = "dvc.yaml") -> dict[str, str]:
    for entry in (yaml.safe_load(text) or {}).get("vars") or []:
        if isinstance(entry, dict) and isinstance(entry.get("paths"), dict):
            return {k: str(v) for k, v in entry["paths"].items()}
    raise MissingInputError(f"{source}: no `vars: - paths:` block (the pipeline's file layout)")


def dvc_paths(root: str | Path = ".") -> dict[str, str]:
    """``{name: path}`` as dvc.yaml names them, relative to the repository root ``root``."""
    f = Path(root) / "dvc.yaml"
    if not f.is_file():
        raise MissingInputError(f"{f}: not found (run from the project root)")
    return paths_from_text(f.read_text(encoding="utf-8"), str(f))
