"""dvc.yaml's per-stage module deps, generated: ``python scripts/dvc_deps.py`` rewrites them, ``--check`` only
checks, and ``tests/test_dvc_deps.py`` uses the same functions. The import closure itself (``ast``, nothing run)
is :func:`twohead.modules.closure`, shared with the resume fingerprint.
"""

from __future__ import annotations

import re
from pathlib import Path

from twohead.modules import closure

# --- dvc.yaml: each stage's `src/` deps generated from its script's import closure -------------------------

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = re.compile(r"\b(stages/\S+\.py)\b")


def stage_script(cmd: str, root: Path = ROOT) -> Path:
    m = _SCRIPT.search(cmd)
    if not m:
        raise ValueError(f"cmd does not run a stages/*.py script: {cmd}")
    return root / m.group(1)


#: Folders of the package listed whole (one dep line) when a stage imports anything in them: they hold the training
#: core and no reporting code, so a whole-folder dep re-runs a stage at most needlessly, never misses an edit.
WHOLE_FOLDERS = ("config", "data", "model", "train")

#: The stages that train or feed training: besides WHOLE_FOLDERS they list every other module file by file, so an
#: edit to plotting, review or report code (evaluate/, review/, pipeline/plot.py …) never re-runs them. The stages
#: after training list every folder they import from whole (tests/test_dvc_deps.py checks both guarantees).
TRAINING_SIDE = ("validate_params", "build_demo_encoder", "prepare_labels", "pretrain_mlm", "pretrain_stage1",
                 "tokenize", "train_stage2")


def collapse(files: list[str], folders: tuple[str, ...] | None = WHOLE_FOLDERS) -> list[str]:
    """``src/twohead/<folder>/…`` files of one of ``folders`` (None: any folder) replaced by the folder itself."""
    out = set()
    for f in files:
        parts = f.split("/")
        whole = len(parts) > 3 and parts[:2] == ["src", "twohead"] and (folders is None or parts[2] in folders)
        out.add("/".join(parts[:3]) if whole else f)
    return sorted(out)


def stage_modules(cmd: str, root: Path = ROOT, stage: str = "") -> list[str]:
    """The ``src/`` deps of ``stage``: the files its script imports, folders listed whole as :data:`TRAINING_SIDE`
    says (sorted, repository-relative)."""
    files = [str(p.relative_to(root)) for p in closure(stage_script(cmd, root), root / "src")]
    return collapse(files, WHOLE_FOLDERS if stage in TRAINING_SIDE else None)


def rewrite(text: str, root: Path = ROOT) -> str:
    """dvc.yaml's text with every stage's ``- src/...`` dep lines replaced by the generated list (placed where
    the first one was, right after the stage's script); everything else — comments, other deps — is kept."""
    import yaml

    stages = yaml.safe_load(text)["stages"]
    lines = text.splitlines(keepends=True)
    out, stage, in_deps, wrote = [], None, False, False
    for line in lines:
        m = re.match(r"^  (\w+):\s*(#.*)?$", line)
        if m and m.group(1) in stages:
            stage, in_deps, wrote = m.group(1), False, False
        stripped = line.strip()
        if stage and re.match(r"^    deps:\s*$", line):
            in_deps = True
        elif stage and in_deps and re.match(r"^    \w+:", line):
            in_deps = False
        if stage and in_deps and stripped.startswith("- src/"):
            if not wrote:
                out += [f"      - {m}\n" for m in stage_modules(stages[stage]["cmd"], root, stage)]
                wrote = True
            continue
        out.append(line)
        if stage and in_deps and stripped.startswith("- stages/") and not wrote:
            out += [f"      - {m}\n" for m in stage_modules(stages[stage]["cmd"], root, stage)]
            wrote = True
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Regenerate the src/ deps of every stage in dvc.yaml from imports.")
    ap.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is not up to date; write nothing")
    args = ap.parse_args(argv)
    path = ROOT / "dvc.yaml"
    old = path.read_text(encoding="utf-8")
    new = rewrite(old)
    if args.check:
        if new != old:
            print("dvc.yaml: stage deps are stale; run `python scripts/dvc_deps.py`")
            return 1
        print("dvc.yaml: stage deps match the imports")
        return 0
    if new != old:
        path.write_text(new, encoding="utf-8")
        print("dvc.yaml: stage deps rewritten")
    else:
        print("dvc.yaml: already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
