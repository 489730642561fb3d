"""twohead ablation report: runs labelled by their switches, paired by seed with the plain recipe; the
deltas, intervals, verdicts and cost are checked against numbers computed here by hand."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from twohead.cli import main
from twohead.config.errors import DataError
from twohead.experiments.stats import t_interval

CLASSES = {"a": "High", "b": "Mid", "c": "Low"}
N = 60  # rows with a category (20 per class), plus 10 Decline rows


def _predictions(n_wrong: int, pick_wrong: int = 0) -> pd.DataFrame:
    """Task2 wrong on the first ``n_wrong`` categorised rows (predicted as the next class)."""
    gold = [c for c in CLASSES for _ in range(20)]
    names = list(CLASSES)
    pred = [names[(names.index(g) + 1) % 3] if i < n_wrong else g for i, g in enumerate(gold)]
    rows = [{"id": f"r{i}", "gold_pick": "Pick", "gold_category": g, "pred_pick": "Pick", "pred_category": p,
             "combined_pred": p} for i, (g, p) in enumerate(zip(gold, pred))]
    rows += [{"id": f"d{i}", "gold_pick": "Decline", "gold_category": "", "pred_pick": "Pick" if i < pick_wrong
              else "Decline", "pred_category": "a", "combined_pred": "a" if i < pick_wrong else "Decline"}
             for i in range(10)]
    return pd.DataFrame(rows)


def _run(root, name: str, seed: int, params: dict, n_wrong: int, speed: float, pick_wrong: int = 0):
    d = root / name
    (d / "plots").mkdir(parents=True)
    (d / "metrics").mkdir()
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    (d / "params.yaml").write_text(yaml.safe_dump({"train": {"seed": seed}, **params}))
    _predictions(n_wrong, pick_wrong).to_csv(d / "plots" / "predictions.csv", index=False)
    pd.DataFrame({"class": list(CLASSES), "band": list(CLASSES.values())}).to_csv(d / "metrics" / "per_class.csv",
                                                                                  index=False)
    (d / "metrics" / "train_speed.json").write_text(json.dumps({"train_samples_per_second_mean": speed}))


def test_report_pairs_by_seed_and_computes_intervals(tmp_path):
    runs = tmp_path / "runs"
    plain_wrong, rdrop_wrong = {1: 20, 2: 22, 3: 18}, {1: 15, 2: 16, 3: 15}
    for s in (1, 2, 3):
        _run(runs, f"plain-s{s}", s, {"switches": {"rdrop_alpha": 0.0}}, plain_wrong[s], 100.0)
        _run(runs, f"rdrop-s{s}", s, {"switches": {"rdrop_alpha": 1.0}}, rdrop_wrong[s], 50.0, pick_wrong=s + 1)
        _run(runs, f"msd-s{s}", s, {"switches": {"msd_samples": 5}}, plain_wrong[s], 98.0)
    out = tmp_path / "abl.json"
    assert main(["ablation", "report", "--runs-dir", str(runs), "--json", str(out), "--md",
                 str(tmp_path / "abl.md")]) == 0
    res = json.loads(out.read_text())
    assert res["plain"]["metrics"]["task2_acc"]["mean"] == pytest.approx(1 - 20 / N)
    rows = {r["switch"]: r for r in res["rows"]}
    assert list(rows) == ["rdrop", "msd"]
    deltas = [(plain_wrong[s] - rdrop_wrong[s]) / N for s in (1, 2, 3)]
    mean, _, low, high = t_interval(deltas)
    got = rows["rdrop"]["metrics"]["task2_acc"]
    assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx((mean, low, high))
    assert got["verdict"] == "better" and rows["rdrop"]["pairs"] == 3
    t1 = rows["rdrop"]["metrics"]["task1_acc"]  # 2, 3, 4 Decline rows called Pick: worse, by 2/70 .. 4/70
    assert t1["mean"] == pytest.approx(-3 / 70) and t1["verdict"] == "worse"
    assert rows["rdrop"]["cost"] == pytest.approx(0.5) and rows["msd"]["cost"] == pytest.approx(0.98)
    assert rows["msd"]["metrics"]["task2_acc"]["mean"] == 0 and rows["msd"]["metrics"]["task2_acc"]["verdict"] \
        == "within noise"
    # band recall: rdrop's extra correct rows are all class a (High): High recall up, Low unchanged
    assert rows["rdrop"]["metrics"]["band_High_recall"]["mean"] > 0
    assert rows["rdrop"]["metrics"]["band_Low_recall"]["mean"] == 0
    md = (tmp_path / "abl.md").read_text()
    assert "| rdrop (switches.rdrop_alpha=1.0) | 3 |" in md and "▲" in md and "▼" in md and "0.50 |" in md


def test_report_without_a_plain_run_says_so(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "rdrop-s1", 1, {"switches": {"rdrop_alpha": 1.0}}, 10, 50.0)
    with pytest.raises(DataError, match="plain recipe"):
        from twohead.experiments import ablation
        ablation.ablation(ablation.load_runs(runs_dir=runs), [np.nan])
    assert main(["ablation", "report", "--runs-dir", str(tmp_path / "empty")]) == 2


def test_queue_dry_run_prints_the_grid(capsys):
    assert main(["ablation", "queue", "--dry-run", "--seeds", "7", "--only", "msd,awp", "--set",
                 "train.epochs=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "dvc exp run --queue -n abl-plain-s7 -S train.seed=7 -S train.epochs=1",
        "dvc exp run --queue -n abl-msd-s7 -S train.seed=7 -S switches.msd_samples=5 -S train.epochs=1",
        "dvc exp run --queue -n abl-awp-s7 -S train.seed=7 -S switches.awp_start_epoch=2 -S train.epochs=1"]
    assert main(["ablation", "queue", "--dry-run", "--only", "nope"]) == 2


def test_docs_and_readme_list_exactly_the_ablation_switches():
    """One switch list: docs/switches.md's table rows and its summary sentence are ABLATION, in its order, with
    each switch's param at the queued strength."""
    import re

    from twohead.config.switches import ABLATION

    docs = (ROOT / "docs" / "switches.md").read_text()
    table = docs[docs.index("| switch (ablation name) |"):]
    table = table[:table.index("\n\n")]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [re.fullmatch(r"\| `(\w+)`", r[0]).group(1) for r in rows] == list(ABLATION)
    for row, (name, overrides) in zip(rows, ABLATION.items()):
        for key, value in overrides.items():
            assert f"`{key}: {value}`" in row[1], (name, row[1])
    section = docs[docs.index("## In brief"):]
    section = section[:section.index("\n## ")]
    named = re.findall(r"`(\w+)`\s+\(`([\w.]+)`\)", section)
    assert named == [(name, next(iter(o))) for name, o in ABLATION.items()]


def test_compare_group_by_reads_run_folders(tmp_path):
    """`twohead compare --group-by KEY --runs-dir DIR` (benchmarks/bench_mlm.py's folders): grouped by the param,
    paired by seed."""
    runs = tmp_path / "runs"
    off, on = {1: 20, 2: 22, 3: 18}, {1: 17, 2: 18, 3: 16}
    for s in (1, 2, 3):
        _run(runs, f"e00-s{s}", s, {"mlm": {"epochs": 0}}, off[s], 100.0)
        _run(runs, f"e03-s{s}", s, {"mlm": {"epochs": 3}}, on[s], 100.0)
    out = tmp_path / "g.json"
    assert main(["compare", "--group-by", "mlm.epochs", "--runs-dir", str(runs), "--json", str(out)]) == 0
    g = json.loads(out.read_text())
    assert [x["value"] for x in g["groups"]] == [0, 3]
    d = g["differences"][0]["metrics"]["task2_acc"]
    assert d["pairs"] == 3 and d["mean"] == pytest.approx(np.mean([3, 4, 2]) / N) and d["verdict"] == "better"
