"""No stale pointers: every file, module, class or function a doc, a comment or a docstring names exists.

Checked: repository paths under src/, docs/, stages/, scripts/, benchmarks/, tests/ and .ci/; package-relative
module paths (``train/step.py``); Sphinx roles (``:func:`~twohead.train.step.train_step```, ``:meth:`X.y``` —
resolved in the module that holds them); dotted ``twohead.…`` names; relative Markdown links in README.md and
docs/. A pointer to something gone (``train/run.py`` after its rename) fails, naming the file and line.
"""

import ast
import importlib
import re

import pytest

from conftest import ROOT

PKG = ROOT / "src" / "twohead"
FOLDERS = ("config", "data", "model", "evaluate", "train", "tune", "experiments", "review", "pipeline")
REPO_PATH = re.compile(r"(?<![\w/.-])((?:src/twohead|docs|stages|scripts|benchmarks|tests|\.ci)/[\w./-]*\w)")
MODULE_PATH = re.compile(r"(?<![\w/.-])((?:" + "|".join(FOLDERS) + r")/\w+\.py)\b")
ROLE = re.compile(r":(?:func|class|meth|mod|data|attr):`~?([\w.]+)[^`]*`")
DOTTED = re.compile(r"(?<![\w.])(twohead(?:\.\w+)+)")
ATTR_ROLE = re.compile(r":attr:`~?([\w.]+)`")
FILE_SUFFIXES = {"json", "md", "yaml", "csv", "py", "txt", "png", "jsonl", "parquet"}
MD_LINK = re.compile(r"\]\(((?!https?:|#|mailto:)[^)\s]+)\)")


def _texts():
    """(file, text) of every doc and source file whose prose is checked."""
    files = [ROOT / "README.md", ROOT / "params.yaml", ROOT / "dvc.yaml", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("src", "stages", "scripts", "benchmarks"):   # tests name made-up modules on purpose
        files += sorted((ROOT / folder).rglob("*.py"))
    return [(f, f.read_text(encoding="utf-8")) for f in files if "egg-info" not in str(f)]


def _module_of(path):
    """The dotted module a source file under src/ defines (None elsewhere)."""
    try:
        rel = path.relative_to(ROOT / "src")
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolves(dotted: str, home: str | None) -> bool:
    """``dotted`` names an importable module or an attribute chain of one (or, unqualified, of ``home`` or of a
    class in ``home``: a method named inside its class)."""
    candidates = [dotted] if dotted.startswith("twohead") else ([f"{home}.{dotted}"] if home else []) + [dotted]
    if home and not dotted.startswith("twohead"):
        mod = importlib.import_module(home)
        candidates += [f"{home}.{name}.{dotted}" for name, obj in vars(mod).items()
                       if isinstance(obj, type) and obj.__module__ == home]
    for name in candidates:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                return True
            except AttributeError:
                break
    return not dotted.startswith("twohead") and home is None  # an unqualified name outside the package: unchecked


def _problems() -> list[str]:
    out = []
    for path, text in _texts():
        home = _module_of(path)
        rel = path.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{n}"
            for m in REPO_PATH.finditer(line):
                ref = m.group(1).rstrip(".")
                if line[m.end():m.end() + 1] in ("*", "{", "<") or ref.endswith("/"):
                    continue   # a pattern (benchmarks/results/levers_*), not one file
                if not (ROOT / ref).exists():
                    out.append(f"{where}: names {ref}, which does not exist")
            for ref in MODULE_PATH.findall(line):
                if not (PKG / ref).exists() and not (ROOT / ref).exists():
                    out.append(f"{where}: names {ref}, which is not a module of src/twohead")
            attrs = set(ATTR_ROLE.findall(line))
            for ref in ROLE.findall(line) + DOTTED.findall(line):
                ref = ref.rstrip(".")
                if ref.rsplit(".", 1)[-1] in FILE_SUFFIXES:
                    continue   # twohead.json: a file name
                if ref in attrs:  # an instance attribute: its class must exist
                    ref = ref.rsplit(".", 1)[0]
                if not _resolves(ref, home):
                    out.append(f"{where}: names {ref}, which does not resolve")
            if path.suffix == ".md":
                for ref in MD_LINK.findall(line):
                    target = (path.parent / ref.split("#")[0]).resolve()
                    if ref.split("#")[0] and not target.exists():
                        out.append(f"{where}: links {ref}, which does not exist")
    return out


def test_every_pointer_in_docs_and_comments_exists():
    problems = _problems()
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_stale_pointer(tmp_path, monkeypatch):
    """It can fail: a docstring naming a function that is gone, and a path that was renamed."""
    import twohead.train.step as step

    assert _resolves("twohead.train.step.train_step", None)
    assert not _resolves("twohead.train.step.forward_samples", None)
    assert not _resolves("TwoHeadModel.forward_samples", "twohead.model.two_head")
    assert _resolves("StepContext", step.__name__)
    assert MODULE_PATH.findall("see train/run.py") == ["train/run.py"] and not (PKG / "train" / "run.py").exists()


@pytest.mark.parametrize("name", ["build_parser"])
def test_no_function_in_src_is_longer_than_80_lines(name):
    """Functions stay readable: none in src/ over 80 lines (``build_parser`` is built from a table)."""
    long = []
    for f in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)
