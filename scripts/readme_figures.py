"""Keep the figures README.md and docs/*.md quote in step with the files they come from.

A quoted figure sits between markers that render as nothing on GitHub::

    Test: Task2 accuracy <!-- fig:demo.task2_acc -->0.614<!-- /fig -->, …

Each name in :data:`FIGURES` says which file the figure comes from (a committed metrics file of the demo run,
or a benchmark result under ``benchmarks/results/``) and how it is written. ``--check`` (the default; the test
suite runs it) lists every quoted figure that differs from its source and exits 1; ``--write`` rewrites them.

Sources are read as committed (``git show HEAD:<path>``) by ``--check``, so the check does not depend on the
workspace (a ``dvc exp run`` changes ``metrics/``); ``--write`` reads the workspace, i.e. what you just ran: after
``dvc repro`` or a benchmark, ``python scripts/readme_figures.py --write`` and commit both together.

    python scripts/readme_figures.py [--check | --write] [--root .]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

DOCS = ("README.md", "docs/methods.md", "docs/training.md", "docs/loss.md", "docs/decisions.md",
        "docs/learning-rate.md", "docs/speed.md", "docs/metrics.md", "docs/operations.md", "docs/switches.md",
        "docs/data.md", "docs/what-moved-task2.md", "docs/review.md", "docs/predict.md", "docs/code.md",
        "docs/glossary.md")
MARKER = re.compile(r"<!-- fig:(?P<name>[\w.]+) -->(?P<value>.*?)<!-- /fig -->", re.S)


class Sources:
    """The JSON files figures come from: committed (``git show HEAD:``) or in the workspace."""

    def __init__(self, root: Path, committed: bool):
        self.root, self.committed, self._cache = root, committed, {}

    def __call__(self, path: str):
        if path not in self._cache:
            text = None
            if self.committed:
                proc = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=self.root, capture_output=True, text=True)
                text = proc.stdout if proc.returncode == 0 else None
            if text is None:
                text = (self.root / path).read_text(encoding="utf-8")
            self._cache[path] = json.loads(text.replace("NaN", "null"))
        return self._cache[path]


def _test(key: str, digits: int = 3) -> Callable[[Sources], str]:
    def render(src: Sources) -> str:
        node = src("metrics/test.json")["test"]
        for part in key.split("."):
            node = node[part]
        return f"{node:.{digits}f}"
    return render


def _rows(src: Sources) -> str:
    splits = src("metrics/data.json")["splits"]
    return " / ".join(f"{splits[s]['rows']:,}" for s in ("train", "val", "test"))


def _grid_best(src: Sources) -> str:
    grid = src("benchmarks/results/lr_grid_minilm.json")
    best = grid["summary"][f"{grid['best']:g}"]["task2_acc"]
    return f"{best['mean']:.2f}, {len(best['seeds'])} seeds"


def _setting_label(setting: str, baseline: str, axis: str) -> str:
    if axis == "baseline":
        return "configured"
    if axis == "baseline again":
        return "configured, measured again"
    differs = [part for part in setting.split(", ") if part not in baseline.split(", ")]
    return ", ".join(differs) + (" (winners together)" if axis == "combined" else "")


def _speed_table(src: Sources) -> str:
    """The README's table of `twohead speed` on the demo and on a 4-layer / 256-hidden encoder."""
    runs = [src("benchmarks/results/speed_cpu_demo.json"), src("benchmarks/results/speed_cpu_4L256H.json")]
    cells: dict[str, list[str]] = {}
    for i, run in enumerate(runs):
        base_setting = run["settings"][0]["setting"]
        base = run["configured_samples_per_s"]
        for s in run["settings"]:
            if s["status"] != "ok":
                continue
            label = _setting_label(s["setting"], base_setting, s["axis"])
            row = cells.setdefault(label, ["-"] * len(runs))
            row[i] = f"{s['samples_per_s']:.0f} (×{s['samples_per_s'] / base:.2f})"
    lines = ["| setting (else: fp32, batch 32, fast_attention on) | demo encoder (2 layers, 128 hidden) |"
             " 4 layers, 256 hidden |", "|---|---|---|"]
    again = "configured, measured again"  # the drift check closes the table
    order = [label for label in cells if label != again] + ([again] if again in cells else [])
    lines += [f"| {label} | {' | '.join(cells[label])} |" for label in order]
    return "\n" + "\n".join(lines) + "\n"


#: name -> how the quoted text is made from the sources
FIGURES: dict[str, Callable[[Sources], str]] = {
    "demo.task2_acc": _test("task2.acc"),
    "demo.task2_macro_f1": _test("task2.macro_f1"),
    "demo.task1_acc": _test("task1.acc"),
    "demo.pick_f1": _test("task1.f1_pick"),
    "demo.combined_acc": _test("combined.acc"),
    "demo.rows": _rows,
    "demo.categories": lambda src: str(src("metrics/data.json")["n_classes"]),
    "minilm.grid_best": _grid_best,
    "speed.table": _speed_table,
}


def drift(root: Path, committed: bool) -> tuple[list[str], dict[Path, str]]:
    """(one line per figure that differs from its source, {file: its text with every figure from its source})."""
    src = Sources(root, committed)
    problems, fixed = [], {}
    for rel in DOCS:
        path = root / rel
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        new = MARKER.sub(lambda m, rel=rel, text=text: _quote(m, rel, text, src, problems), text)
        if new != text:
            fixed[path] = new
    return problems, fixed


def _quote(m: re.Match, rel: str, text: str, src: Sources, problems: list[str]) -> str:
    """The marked figure as its source says it; a difference is added to ``problems``."""
    name = m.group("name")
    if name not in FIGURES:
        problems.append(f"{rel}: unknown figure {name!r} (known: {', '.join(FIGURES)})")
        return m.group(0)
    want = FIGURES[name](src)
    if m.group("value") != want:
        line = text.count("\n", 0, m.start()) + 1
        problems.append(f"{rel}:{line}: {name} quotes {m.group('value').strip()!r}, its source says {want.strip()!r}")
    return f"<!-- fig:{name} -->{want}<!-- /fig -->"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the quoted figures from the workspace's files")
    ap.add_argument("--check", action="store_true", help="(default) list drifted figures, exit 1 if any")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)
    root = Path(args.root)
    problems, fixed = drift(root, committed=not args.write)
    if args.write:
        for path, text in fixed.items():
            path.write_text(text, encoding="utf-8")
        print(f"readme_figures: {len(problems)} figure(s) rewritten in {len(fixed)} file(s)")
        return 0
    for p in problems:
        print(p)
    print(f"readme_figures: {len(problems)} figure(s) out of step" if problems else "readme_figures: all in step")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
