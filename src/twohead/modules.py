"""The project modules a Python file imports, transitively, found with ``ast`` (nothing is imported or run): the one
source of both a stage's module deps in dvc.yaml (``scripts/dvc_deps.py``) and the code part of a resume state's
fingerprint (:mod:`twohead.train.resume`).

Every ``import`` / ``from … import`` statement counts, wherever it sits (a function-level import runs too, just
later). Importing ``twohead.train.step`` also runs ``twohead/__init__.py`` and ``twohead/train/__init__.py``, so
those count as well. Modules outside the package are ignored.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]   # the folder holding the twohead package


def _module_file(src: Path, dotted: str) -> Path | None:
    base = src.joinpath(*dotted.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _dotted_of(src: Path, file: Path) -> str:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(src: Path, file: Path, package: str) -> set[str]:
    """Dotted names (modules, or module.attribute candidates) imported by ``file``."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    own = _dotted_of(src, file) if file.is_relative_to(src) else ""
    is_pkg = file.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own.split(".") if is_pkg else own.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in out if m == package or m.startswith(package + ".")}


def closure(script: Path, src: Path, package: str = "twohead") -> set[Path]:
    """Files of ``package`` (under ``src``) that running ``script`` imports, transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        f = todo.pop()
        for dotted in _imports(src, f, package):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # every parent package's __init__ runs too
                mf = _module_file(src, ".".join(parts[:i]))
                if mf is not None and mf not in seen:
                    seen.add(mf)
                    todo.append(mf)
    return seen


def code_digest(file: str | Path, src: Path = SRC, package: str = "twohead") -> str:
    """One hash over ``file`` and every package module it imports (names and bytes): what changes when the code a
    stage runs changes."""
    file = Path(file).resolve()
    h = hashlib.sha256()
    for f in sorted({file, *closure(file, src, package)}):
        h.update(str(f.relative_to(src) if f.is_relative_to(src) else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()
