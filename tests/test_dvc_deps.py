"""The DVC cache must never lie: each stage's deps cover every module its script imports, its paths come
from dvc.yaml alone, and an edit to an imported module makes `dvc status` report the stage changed."""

import dataclasses
import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from dvc_deps import rewrite  # noqa: E402

from conftest import ROOT, dvc_paths
from dvc_project import make_project, run
from twohead.modules import closure  # noqa: E402

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]
SRC = ROOT / "src"


def _script(stage: dict) -> Path:
    m = re.search(r"\b(stages/\S+\.py)\b", stage["cmd"])
    assert m, f"cmd does not run a stages/*.py script: {stage['cmd']}"
    return ROOT / m.group(1)


def _paths_class(stage_name: str):
    """The dataclass of paths the stage script hands to run_stage (found in the script's source)."""
    script = _script(STAGES[stage_name]).read_text()
    mod, cls = re.search(r"from (twohead\.pipeline\.\w+) import (\w+Paths)", script).groups()
    return getattr(importlib.import_module(mod), cls)


def test_import_closure_finds_relative_and_parent_package_imports(tmp_path):
    pkg = tmp_path / "src" / "twohead"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g\n")   # a function-level import counts
    (pkg / "c.py").write_text("import os\n")
    (pkg / "unused.py").write_text("")
    (pkg / "sub" / "m.py").write_text("from ..a import x\n")
    script = tmp_path / "s.py"
    script.write_text("from twohead.sub.m import y\n")
    got = {str(p.relative_to(pkg)) for p in closure(script, tmp_path / "src")}
    assert got == {"__init__.py", "sub/__init__.py", "sub/m.py", "a.py", "b.py", "c.py"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_imported_module(name):
    stage = STAGES[name]
    deps = {str(d) for d in stage["deps"]}
    script = _script(stage)
    assert str(script.relative_to(ROOT)) in deps, f"stage {name}: its own script is not in deps"
    needed = {str(p.relative_to(ROOT)) for p in closure(script, SRC)}
    missing = sorted(n for n in needed if not _covered(n, deps))
    assert not missing, (f"stage {name}: deps miss {', '.join(missing)} (imported by {script.name});"
                         " edits there would not re-run it")
    listed = {d for d in deps if d.startswith("src/")}
    stale = sorted(d for d in listed if not any(_covered(n, {d}) for n in needed))
    assert not stale, (f"stage {name}: deps list {', '.join(stale)}, which {script.name} does not import"
                       " (needless re-runs)")


def _covered(module: str, deps: set[str]) -> bool:
    """``module`` is a dep itself or lies in a folder that is one."""
    return any(module == d or module.startswith(d.rstrip("/") + "/") for d in deps)


#: Reporting code: an edit here must never re-run a stage that trains (or one that feeds training).
REPORTING = ("src/twohead/evaluate/plots.py", "src/twohead/evaluate/summary.py", "src/twohead/evaluate/diagnose.py",
             "src/twohead/review/issues.py", "src/twohead/review/pairs.py", "src/twohead/review/duplicates.py",
             "src/twohead/pipeline/plot.py", "src/twohead/pipeline/review.py", "src/twohead/pipeline/evaluate.py",
             "src/twohead/pipeline/calibrate.py", "src/twohead/experiments/compare.py")


def _upstream(stage: str) -> set[str]:
    """``stage`` and every stage whose outputs it depends on, transitively (through dvc.yaml's paths)."""
    layout = dvc_paths()

    def outs(name):
        return {str(next(iter(o)) if isinstance(o, dict) else o) for o in STAGES[name].get("outs", [])}

    def resolve(path):
        return re.sub(r"\$\{paths\.(\w+)\}", lambda m: layout[m.group(1)], path)

    out_of = {resolve(o): name for name in STAGES for o in outs(name)}
    seen, todo = set(), [stage]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in STAGES[name]["deps"]:
            dep = resolve(str(dep))
            todo += [owner for out, owner in out_of.items() if dep == out or dep.startswith(out + "/")]
    return seen


def test_an_edit_to_reporting_code_never_re_runs_training():
    """The two guarantees of folder-level deps: every stage that trains or feeds training (pretrain_stage1,
    train_stage2 and what they depend on) lists no reporting module, not even through a folder."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from dvc_deps import TRAINING_SIDE

    training = _upstream("train_stage2") | _upstream("pretrain_stage1")
    assert training <= set(TRAINING_SIDE), f"stages feeding training but listed file by file only in part: {training}"
    for name in training:
        deps = {str(d) for d in STAGES[name]["deps"]}
        hit = [m for m in REPORTING if _covered(m, deps)]
        assert not hit, f"stage {name}: an edit to {', '.join(hit)} would re-run it"
    assert len((ROOT / "dvc.yaml").read_text().splitlines()) <= 485   # 450 + the masked-LM stage and its figures


def test_reporting_settings_never_re_train():
    """eval.*, decide.* (and any report.* / plot.* section) are applied after training: no stage that trains or
    feeds training lists them (and tests/test_dvc_params.py checks each stage lists exactly what it reads), so an
    experiment that changes only how a run is reported costs no training run."""
    training = _upstream("train_stage2") | _upstream("pretrain_stage1")
    for name in training:
        listed = [str(k) for k in STAGES[name].get("params", [])]
        assert not [k for k in listed if k.split(".")[0] in ("eval", "decide", "report", "plot")], (name, listed)


def test_dvc_yaml_deps_are_the_generated_ones():
    """`python scripts/dvc_deps.py` owns the src/ lines: regenerating them changes nothing."""
    text = (ROOT / "dvc.yaml").read_text()
    assert rewrite(text) == text, "dvc.yaml's src/ deps are stale: run `python scripts/dvc_deps.py`"


def test_dvc_deps_rewrite_replaces_only_the_src_lines(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    runner = "      - src/twohead/pipeline/stage_main.py\n"
    stale = text.replace("      - src/twohead/data\n", "", 1)
    stale = stale.replace(runner, runner + "      - src/twohead/gone.py\n", 1)
    assert stale != text
    assert rewrite(stale) == text


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_paths_come_from_dvc_yaml(name):
    """Every field of the stage's paths dataclass is a dvc.yaml path passed by `cmd` as --field ${paths.field}."""
    cls = _paths_class(name)
    layout = dvc_paths()
    cmd = STAGES[name]["cmd"]
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        assert f.name in layout, f"{cls.__name__}.{f.name} has no entry in dvc.yaml vars.paths"
        assert f"{flag} ${{paths.{f.name}}}" in cmd, f"stage {name}: cmd does not pass {flag} ${{paths.{f.name}}}"
        assert f.default is dataclasses.MISSING, f"{cls.__name__}.{f.name} has a default path: paths live in dvc.yaml"
    flags = [f for f in re.findall(r"--[\w-]+", cmd) if f != "--environment"]  # run_stage's own flag
    assert len(flags) == len(dataclasses.fields(cls)), f"stage {name}: cmd passes unknown flags"
    if name != "validate_params":  # every stage that computes something records what produced its numbers
        record = f"${{paths.environment}}/{name}.json"
        assert f"--environment {record}" in cmd, f"stage {name}: cmd does not record its environment"
        outs = {next(iter(o)): o[next(iter(o))] for o in STAGES[name]["outs"] if isinstance(o, dict)}
        assert outs.get(record) == {"cache": False}, f"stage {name}: {record} is not a git-kept output"


def test_plot_stage_declares_exactly_the_figures_it_writes():
    from twohead.pipeline.plot import FIGURES

    outs = {next(iter(o)) if isinstance(o, dict) else o for o in STAGES["plot"]["outs"]}
    assert outs == {f"${{paths.figures}}/{name}" for name in FIGURES} | {
        "${paths.summary}", "${paths.switch_figures}", "${paths.environment}/plot.json",
        "${paths.consistency_curve}", "${paths.val_worst_k}"}   # the val reports under eval.*


@pytest.mark.slow
def test_editing_an_imported_module_marks_the_stage_changed(tmp_path):
    """The bug this guards against: io.py was missing from prepare_labels' deps, so an edit there kept
    stale outputs. Here: run the stage, edit io.py, and DVC must see it. (Its own small project, one stage:
    this file stays fast when run alone, without the shared fully reproduced one.)"""
    proj = make_project(tmp_path / "proj", rows=200)
    run(["dvc", "repro", "prepare_labels"], proj)
    assert "up to date" in run(["dvc", "status", "prepare_labels"], proj).stdout
    io = proj / "src" / "twohead" / "data" / "io.py"
    io.write_text(io.read_text() + "\n# an edit\n")
    status = run(["dvc", "status", "prepare_labels"], proj).stdout
    assert "prepare_labels" in status and "modified:" in status and "src/twohead/data" in status  # its folder
    # and a module the stage does not import does not touch it
    io.write_text(io.read_text().replace("\n# an edit\n", ""))
    plots = proj / "src" / "twohead" / "evaluate" / "plots.py"
    plots.write_text(plots.read_text() + "\n# an edit\n")
    assert "src/twohead/evaluate/plots.py" not in run(["dvc", "status", "prepare_labels"], proj).stdout


def test_stage_scripts_import_the_code_beside_them(tmp_path):
    """`dvc exp run --queue` runs a copy of the repo; its stages must run the copy's code (the code DVC hashed),
    not the editable install's workspace code."""
    proj = make_project(tmp_path / "proj", rows=50)
    init = proj / "src" / "twohead" / "__init__.py"
    init.write_text(init.read_text() + "\nprint('the copy beside the script')\n")
    out = run([sys.executable, "stages/prepare_labels.py", "--help"], proj).stdout
    assert "the copy beside the script" in out


def test_dvc_plots_render_offline():
    """`dvc plots show/diff` use the project's page with the Vega libraries inlined: nothing is fetched from a
    CDN, so the charts render on a laptop without the internet."""
    import configparser

    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / ".dvc" / "config")
    page = (root / ".dvc" / cfg["plots"]["html_template"]).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN <script src> tags are never inserted
    assert "http://" not in page.split("<body>")[0].split("<script>")[0] and 'src="http' not in page
    for lib in ("vega@5.20.2", "vega-lite@5.2.0", "vega-embed@6.18.2"):
        assert lib.split("@")[1] in page.split("<title>")[1].split("</title>")[0]
    assert page.count("<script>") == 3


def test_only_the_headline_is_a_dvc_metric():
    """`dvc exp show` lists every leaf of every declared metrics file (301 columns before): only the headline
    file is declared; the detail files are plain outputs, still readable with `dvc metrics diff --targets`."""
    import yaml

    from twohead.config.schema import HEADLINE, headline

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    declared = {name: [next(iter(m)) if isinstance(m, dict) else m for m in st.get("metrics", [])]
                for name, st in stages.items() if st.get("metrics")}
    assert declared == {"evaluate": ["${paths.headline_metrics}"]}
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages["evaluate"]["outs"]]
    assert "${paths.test_metrics}" in outs
    results = {"test": {"task2": {"acc": 0.7, "macro_f1": 0.3, "ece": 0.1, "top2_acc": 0.8, "top3_acc": 0.85},
                        "task1": {"acc": 0.9}, "combined": {"acc": 0.68, "macro_f1": 0.31}, "consistency": {"x": 1}},
               "val": {"task2": {"acc": 0.71}}, "decided": {"test": {"task2": {"acc": 0.72, "ece": 0.05},
                                                                      "task1": {"acc": 0.88, "f1_pick": 0.9},
                                                                      "combined": {"acc": 0.69}}}}
    h = headline(results)
    assert h == {"test": {"task2": {"acc": 0.7, "macro_f1": 0.3, "top2_acc": 0.8}, "task1": {"acc": 0.9},
                          "combined": {"acc": 0.68, "macro_f1": 0.31}},
                 "decided": {"test": {"task2": {"acc": 0.72, "ece": 0.05}, "task1": {"acc": 0.88},
                                      "combined": {"acc": 0.69}}},
                 "val": {"task2": {"acc": 0.71}}}
    assert len(HEADLINE) == 11   # what the user gets (decided Task1) and how close the misses are (top-2)
