"""The whole DAG through DVC in a throwaway git repo: repro, exp run -S, metrics diff, exp show, plots diff."""

import json

import pandas as pd
import pytest

from dvc_project import clone_project, run


def _exp_rows(exp_show: list) -> list[dict]:
    rows = []
    for commit in exp_show:
        rows.append(commit)
        for e in commit.get("experiments") or []:
            rows.extend(e.get("revs") or [])
    return rows


def _params_of(row) -> dict:
    return row["data"]["params"]["params.yaml"]["data"]


def _metrics_of(row, path) -> dict:
    return row["data"]["metrics"][path]["data"]


@pytest.mark.slow
def test_repro_then_experiment_workflow(shared_project, tmp_path):
    shared, out = shared_project  # `dvc repro` of the whole DAG, committed as the baseline
    proj = clone_project(shared, tmp_path / "proj")
    for stage in ("build_demo_encoder", "prepare_labels", "pretrain_stage1", "tokenize", "train_stage2", "calibrate",
                  "evaluate", "plot", "predict"):
        assert f"Running stage '{stage}'" in out
    scored = pd.read_csv(proj / "data" / "scored" / "predictions.csv", keep_default_na=False)
    assert len(scored) == len(pd.read_csv(proj / "data" / "demo" / "news_demo.csv"))
    # the command a user runs after `dvc repro`, from the project root
    run(["twohead", "predict", "models/stage2", "data/demo/news_demo.csv", "--output", "cli.csv"], proj)
    cli = pd.read_csv(proj / "cli.csv", keep_default_na=False)
    assert list(cli["id"]) == list(scored["id"]) and (cli["combined"] == scored["combined"]).all()
    (proj / "cli.csv").unlink()
    for f in ("metrics/train.json", "metrics/test.json", "metrics/bands.json", "metrics/per_class.csv",
              "metrics/worst_k.csv", "plots/confusion.csv", "plots/predictions.csv", "plots/task2_accuracy.png"):
        assert (proj / f).is_file(), f
    base = json.loads((proj / "metrics" / "train.json").read_text())

    # a decision param re-runs calibrate (then what reads its output), never training
    params = (proj / "params.yaml").read_text()
    assert "rule: pick_or_maxprob" in params   # the default; the test switches it back
    (proj / "params.yaml").write_text(params.replace("rule: pick_or_maxprob", "rule: pick_threshold", 1))
    dry = run(["dvc", "repro", "--dry"], proj).stdout  # dry: downstream stages show once calibrate's output moves
    assert "Running stage 'calibrate'" in dry and "Stage 'train_stage2' didn't change" in dry
    for stage in ("train_stage2", "tokenize", "pretrain_stage1", "prepare_labels"):
        assert f"Running stage '{stage}'" not in dry, stage
    status = run(["dvc", "status"], proj).stdout
    assert "calibrate:" in status and "modified:           decide" in status and "train_stage2:" not in status
    (proj / "params.yaml").write_text(params)
    decision = json.loads((proj / "models" / "decision.json").read_text())
    assert decision["chosen_on"] == "val" and decision["decision"]["temperature_task2"] > 0

    exp = run(["dvc", "exp", "run", "-S", "loss.label_smoothing=0.15", "-n", "smooth015"], proj).stdout
    exp_name = "smooth015"
    assert "Running stage 'train_stage2'" in exp and "Running stage 'evaluate'" in exp
    for stage in ("prepare_labels", "pretrain_stage1", "tokenize", "build_demo_encoder"):  # their params did not change
        assert f"Running stage '{stage}'" not in exp
    after = json.loads((proj / "metrics" / "train.json").read_text())
    assert after["val_loss_task2"] != base["val_loss_task2"]

    # did it help? the experiment by name against the baseline commit, on the same test rows
    cmp = run(["twohead", "compare", "HEAD", exp_name, "--json", "cmp.json", "--resamples", "1000"], proj).stdout
    assert f"### {exp_name} vs HEAD" in cmp and "Noise guide: on these" in cmp
    result = json.loads((proj / "cmp.json").read_text())
    (proj / "cmp.json").unlink()
    acc = result["comparisons"][0]["metrics"]["task2_acc"]
    assert {"base", "other", "delta", "ci_low", "ci_high", "p_value", "verdict"} <= set(acc)
    assert acc["ci_low"] <= acc["delta"] <= acc["ci_high"] and 0 <= acc["p_value"] <= 1
    tested = json.loads((proj / "metrics" / "test.json").read_text())["test"]
    # the workspace holds the experiment's results (its metrics files carry 6 significant digits)
    assert acc["other"] == pytest.approx(tested["task2"]["acc"], abs=5e-7)
    assert result["comparisons"][0]["metrics"]["combined_acc"]["other"] == pytest.approx(tested["combined"]["acc"],
                                                                                         abs=5e-7)

    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], proj).stdout)
    change = params_diff["params.yaml"]["loss.label_smoothing"]
    assert (change["old"], change["new"]) == (0.1, 0.15)
    # only metrics/headline.json is a declared metric; the detail files are read with --targets
    detail = ["--targets", "metrics/train.json", "metrics/test.json"]
    metrics_diff = json.loads(run(["dvc", "metrics", "diff", "--json", *detail], proj).stdout)
    train_diff = metrics_diff["metrics/train.json"]
    assert train_diff["val_loss_task2"]["old"] == pytest.approx(base["val_loss_task2"])
    assert train_diff["val_loss_task2"]["new"] == pytest.approx(after["val_loss_task2"])
    assert metrics_diff["metrics/test.json"]  # evaluation re-ran on the new model: something moved
    full = json.loads(run(["dvc", "metrics", "diff", "--all", "--json", *detail], proj).stdout)
    keys = {"test.task2.acc", "test.combined.acc", "test.consistency.gold_pick_low_conf"}
    assert keys <= set(full["metrics/test.json"])
    text = run(["dvc", "metrics", "diff", "--all"], proj).stdout
    assert "metrics/headline.json" in text and "test.task2.acc" in text and "val_loss_task2" not in text

    shown = json.loads(run(["dvc", "exp", "show", "--json"], proj).stdout)
    smoothings = [_params_of(r)["loss"]["label_smoothing"] for r in _exp_rows(shown) if r.get("data")]
    assert 0.15 in smoothings and 0.1 in smoothings
    exp_row = next(r for r in _exp_rows(shown) if r.get("data") and _params_of(r)["loss"]["label_smoothing"] == 0.15)
    assert set(_metrics_of(exp_row, "metrics/headline.json")["test"]) == {"task1", "task2", "combined"}
    assert set(exp_row["data"]["metrics"]) == {"metrics/headline.json"}  # exp show: the headline only

    # the hierarchy regulariser: its loss and the consistency rates show up in the metrics diff
    hier = run(["dvc", "exp", "run", "-S", "switches.pick_consistency_weight=0.1"], proj).stdout
    assert "Running stage 'train_stage2'" in hier and "Running stage 'prepare_labels'" not in hier
    diff = json.loads(run(["dvc", "metrics", "diff", "--json", "--targets", "metrics/train.json"],
                          proj).stdout)["metrics/train.json"]
    assert diff["train_loss_hier"]["old"] == 0 and diff["train_loss_hier"]["new"] > 0
    full = json.loads(run(["dvc", "metrics", "diff", "--all", "--json", "--targets", "metrics/train.json"],
                          proj).stdout)["metrics/train.json"]
    assert {"val_loss_hier", "val_acc_task2"} <= set(full)
    curve = (proj / "plots" / "consistency.csv").read_text().splitlines()   # the plot stage's, under eval.*
    assert curve[0] == "epoch,gold_pick_low_conf,gold_decline_high_conf" and len(curve) == 3
    assert (proj / "metrics" / "cartography_task2.csv").is_file()

    # bring your own Stage-1 checkpoint: Stage-1 training is skipped, Stage 2 would start from that directory (the
    # experiment stops at pretrain_stage1; `dvc status` shows tokenize and train_stage2 must re-run)
    byo = run(["dvc", "exp", "run", "-S", "model.stage1_checkpoint=models/demo_encoder", "pretrain_stage1"],
              proj).stdout
    assert "[pretrain_stage1] skipped" in byo and "Running stage 'train_stage2'" not in byo
    assert json.loads((proj / "metrics" / "stage1.json").read_text())["trained"] is False
    status = run(["dvc", "status", "tokenize", "train_stage2"], proj).stdout
    assert "tokenize:" in status and "train_stage2:" in status and "model.stage1_checkpoint" in status
    run(["git", "checkout", "-q", "--", "."], proj)
    run(["dvc", "exp", "apply", exp_name], proj)

    html_dir = tmp_path / "html"
    run(["dvc", "plots", "diff", "HEAD", "-o", str(html_dir)], proj)
    html = (html_dir / "index.html").read_text()
    for title in ("Task1 (Pick/Decline) loss, train vs val", "Task2 (category) accuracy and val macro-F1",
                  "Hierarchy consistency on val", "Stage 1 (Pick/Decline pretraining) accuracy",
                  "Task2 val recall per frequency band", "Task2 confusion matrix (test)"):
        assert title in html
    assert "val_loss_task2" in html and "HEAD" in html and "workspace" in html


@pytest.mark.slow
def test_seed_grid_through_the_queue_then_group_by(shared_project, tmp_path):
    """The README's recipe: a seeds x setting grid with DVC's own queue, summarised per setting. The queued runs
    stop at `evaluate` (a target): the comparison reads its outputs; plot and predict run in the workflow test."""
    proj = clone_project(shared_project[0], tmp_path / "proj")
    run(["dvc", "exp", "run", "--queue", "-S", "train.seed=1,2", "-S", "loss.label_smoothing=0.1,0.15", "evaluate"],
        proj)
    out = run(["dvc", "exp", "run", "--run-all", "-j", "1"], proj)
    assert out.stdout.count("Running stage 'train_stage2'") == 4, out.stdout[-3000:]
    assert "Running stage 'prepare_labels'" not in out.stdout  # train.seed and the smoothing do not touch the data
    text = run(["twohead", "compare", "--group-by", "loss.label_smoothing", "--json", "g.json", "--plot", "g.png"],
               proj).stdout
    assert "loss.label_smoothing=0.1 (n=2)" in text and "loss.label_smoothing=0.15 (n=2)" in text
    g = json.loads((proj / "g.json").read_text())
    assert [x["value"] for x in g["groups"]] == [0.1, 0.15]
    assert all(sorted(r["seed"] for r in x["runs"]) == [1, 2] for x in g["groups"])
    diff = g["differences"][0]["metrics"]["task2_acc"]
    assert diff["pairs"] == 2 and diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
    acc = g["groups"][0]["metrics"]["task2_acc"]
    assert len(acc["values"]) == 2 and acc["mean"] == pytest.approx(sum(acc["values"]) / 2)
    assert (proj / "g.png").stat().st_size > 10_000

    # the learning curve: the seed runs at all rows are reused (same params), the half-rows points run as experiments
    out = run(["twohead", "curve", "--fractions", "0.5", "1.0", "--seeds", "1", "2", "--json", "c.json", "--plot",
               "c.png"], proj).stdout
    assert "4 points (2 fractions of" in out and "2 reused, 2 to run" in out
    assert "[curve] 2/2 done: curve-f0.5-s2" in out
    c = json.loads((proj / "c.json").read_text())
    assert c["measured"] and c["runs"] == 4 and c["reused"] == 2 and [p["times"] for p in c["projection"]] == [2, 4]
    half = [p for p in c["points"] if p["fraction"] == 0.5]
    assert {p["experiment"] for p in half} == {"curve-f0.5-s1", "curve-f0.5-s2"}
    assert all(p["rows"] == round(c["train_rows"] / 2) for p in half) and (proj / "c.png").stat().st_size > 10_000
    again = run(["twohead", "curve", "--fractions", "0.5", "1.0", "--seeds", "1", "2", "--json", "c.json", "--plot",
                 "c.png"], proj).stdout
    assert "4 reused, 0 to run" in again


@pytest.mark.slow
def test_params_typo_fails_every_repro_and_stage2_keys_leave_stage1(shared_project, tmp_path):
    """A key the schema does not know, in a section no other stage tracks, fails `dvc repro` in its first stage;
    fixing it re-runs that stage alone. A Stage-2-only training key never invalidates Stage 1."""
    proj = clone_project(shared_project[0], tmp_path / "proj")
    params = (proj / "params.yaml").read_text()
    assert "Data and pipelines are up to date" in run(["dvc", "repro"], proj).stdout
    (proj / "params.yaml").write_text(params.replace("\neval:\n", "\neval:\n  pick_treshold: 0.5\n", 1))
    bad = run(["dvc", "repro"], proj, check=False)
    assert bad.returncode != 0
    assert "[validate_params] error: params.yaml: unknown key(s) eval.pick_treshold" in bad.stderr
    assert bad.stdout.count("Running stage") == 1 and "Running stage 'validate_params'" in bad.stdout
    (proj / "params.yaml").write_text(params)
    fixed = run(["dvc", "repro"], proj).stdout
    assert fixed.count("Running stage") == 1 and "Running stage 'validate_params'" in fixed  # the rest: cached
    assert "up to date" in run(["dvc", "status"], proj).stdout

    # Stage-2-only keys (train.checkpoint_every_steps, train.grad_accum) leave Stage 1 cached; stage1.* re-runs it
    (proj / "params.yaml").write_text(_in_section(params, "train", "checkpoint_every_steps: 0",
                                                  "checkpoint_every_steps: 5"))
    status = run(["dvc", "status"], proj).stdout
    assert "train_stage2:" in status and "pretrain_stage1:" not in status, status
    (proj / "params.yaml").write_text(_in_section(params, "stage1", "checkpoint_every_steps: 0",
                                                  "checkpoint_every_steps: 5"))
    assert "pretrain_stage1:" in run(["dvc", "status"], proj).stdout


def _in_section(text: str, section: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` after the top-level ``section:`` line replaced."""
    text = "\n" + text   # a section may open the file
    start = text.index(f"\n{section}:")
    return (text[:start] + text[start:].replace(old, new, 1))[1:]
