"""The figures README.md quotes are the ones in the files they come from (scripts/readme_figures.py)."""

import importlib.util
import subprocess
import sys

from conftest import ROOT, committed_text

spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)


def test_quoted_figures_match_their_committed_sources():
    problems, _ = figures.drift(ROOT, committed=True)
    assert problems == [], "\n".join(problems) + "\n(python scripts/readme_figures.py --write, then commit)"
    text = "".join((ROOT / doc).read_text() for doc in figures.DOCS)
    assert set(m.group("name") for m in figures.MARKER.finditer(text)) == set(figures.FIGURES)  # every one is used


def test_a_drifted_figure_is_named_and_rewritten(tmp_path):
    for rel in ("README.md", "metrics/test.json", "metrics/data.json", "benchmarks/results/lr_grid_minilm.json",
                "benchmarks/results/speed_cpu_demo.json", "benchmarks/results/speed_cpu_4L256H.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(committed_text(rel))  # as committed: `dvc exp run` changes the workspace's
    readme = tmp_path / "README.md"
    original = readme.read_text()
    readme.write_text(readme.read_text().replace("<!-- fig:demo.task2_acc -->0.", "<!-- fig:demo.task2_acc -->9.", 1))
    # not a git repo: the sources are read from the folder
    problems, fixed = figures.drift(tmp_path, committed=True)
    assert len(problems) == 1 and "README.md:" in problems[0] and "demo.task2_acc quotes '9." in problems[0]
    rc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figures.py"), "--root", str(tmp_path)],
                        capture_output=True, text=True).returncode
    assert rc == 1
    figures.main(["--write", "--root", str(tmp_path)])
    assert readme.read_text() == original
