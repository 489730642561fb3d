"""The GPU round trip of docs/remote.md, run here with local remotes: a bare git repository as `origin` and a folder
as the DVC remote. The "GPU machine" and the "Mac" are two clones; an experiment run on one is pushed, pulled and
applied on the other, and must arrive byte for byte: metrics, plots, the model, the decision, the predictions."""

import hashlib
import json
import subprocess

import pandas as pd
import pytest
import yaml

from conftest import tree_digest
from dvc_project import clone_project, run
from twohead.config.errors import DataError
from twohead.experiments.remote import check


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _digest(root, *names) -> dict:
    out = {}
    for name in names:
        p = root / name
        if p.is_dir():
            out.update({f"{name}/{k}": v for k, v in tree_digest(p).items()})
        else:
            out[name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_an_experiment_run_on_one_machine_arrives_whole_on_another(shared_project, tmp_path):
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-store"
    run(["git", "clone", "-q", "--bare", str(shared_project[0]), str(origin)], tmp_path)

    # once: the remotes, committed (docs/remote.md "Once")
    setup = clone_project(shared_project[0], tmp_path / "setup")
    run(["git", "remote", "set-url", "origin", str(origin)], setup)
    line = _one_line_error(run(["twohead", "remote"], setup, check=False))
    assert "no DVC remote configured: dvc remote add -d storage <url>" in line
    assert "failed to push" in run(["dvc", "push"], setup, check=False).stderr  # DVC's own words, same fix
    run(["dvc", "remote", "add", "-d", "storage", str(store)], setup)
    run(["git", "commit", "-qm", "DVC remote", ".dvc/config"], setup)
    run(["git", "push", "-q", "origin", "main"], setup)
    run(["dvc", "push"], setup)

    # the GPU machine: clone, pull, run, push
    gpu = tmp_path / "gpu"
    run(["git", "clone", "-q", str(origin), str(gpu)], tmp_path)
    run(["dvc", "pull"], gpu)
    assert "twohead remote: ready" in run(["twohead", "remote"], gpu).stdout
    out = run(["dvc", "exp", "run", "-S", "train.seed=7", "-n", "gpu-seed7"], gpu).stdout
    assert "Running stage 'train_stage2'" in out and "Running stage 'prepare_labels'" not in out
    run(["dvc", "exp", "push", "origin", "gpu-seed7"], gpu)

    # the Mac: a clone of its own (its own cache), pull the experiment, check, compare, apply
    mac = tmp_path / "mac"
    run(["git", "clone", "-q", str(origin), str(mac)], tmp_path)
    run(["dvc", "pull"], mac)
    assert "up to date" in run(["dvc", "status"], mac).stdout
    again = run(["dvc", "repro"], mac).stdout  # the pulled baseline: nothing to recompute
    assert "Running stage" not in again and "didn't change" in again
    assert (mac / "models" / "stage2" / "heads.safetensors").is_file()
    said = run(["twohead", "remote", "gpu-seed7"], mac).stdout
    assert "on origin, not here yet: dvc exp pull origin gpu-seed7" in said
    line = _one_line_error(run(["twohead", "remote", "gpu-seed8"], mac, check=False))
    assert "no experiment 'gpu-seed8' here or on origin (origin has: gpu-seed7)" in line
    assert "not a valid experiment name" in run(["dvc", "exp", "pull", "origin", "gpu-seed8"], mac, check=False).stderr
    run(["dvc", "exp", "pull", "origin", "gpu-seed7"], mac)
    said = run(["twohead", "remote", "gpu-seed7"], mac).stdout
    assert "experiment gpu-seed7: here" in said and "(this commit)" in said and "its params fit this code" in said

    run(["twohead", "compare", "main", "gpu-seed7", "--json", "cmp.json", "--resamples", "1000"], mac)
    cmp = json.loads((mac / "cmp.json").read_text())["comparisons"][0]["metrics"]["task2_acc"]
    (mac / "cmp.json").unlink()
    run(["dvc", "exp", "apply", "gpu-seed7"], mac)
    tested = json.loads((mac / "metrics" / "test.json").read_text())["test"]["task2"]["acc"]
    assert cmp["other"] == pytest.approx(tested, abs=5e-7)   # metrics files carry 6 significant digits
    assert "up to date" in run(["dvc", "status"], mac).stdout  # outputs and dvc.lock agree: nothing to re-run

    travelled = ("metrics", "plots", "models/stage2", "models/decision.json", "data/scored", "dvc.lock",
                 "params.yaml")
    mine, theirs = _digest(mac, *travelled), _digest(gpu, *travelled)
    assert mine == theirs and len(mine) > 40
    print(f"round trip: {len(mine)} files identical by SHA-256, e.g. models/stage2/model.safetensors"
          f" {mine['models/stage2/model.safetensors'][:16]}…, metrics/test.json {mine['metrics/test.json'][:16]}…")
    assert "train_stage2.json" in " ".join(mine) and "models/stage2/model.safetensors" in mine

    for side in (mac, gpu):
        run(["twohead", "predict", "models/stage2", "data/demo/news_demo.csv", "--output", "p.csv"], side)
    a, b = (pd.read_csv(side / "p.csv", keep_default_na=False) for side in (mac, gpu))
    pd.testing.assert_frame_equal(a, b)
    scored = pd.read_csv(mac / "data" / "scored" / "predictions.csv", keep_default_na=False)
    assert list(scored["combined"]) == list(a["combined"])

    run(["dvc", "plots", "diff", "main", "-o", str(tmp_path / "html")], mac)
    html = (tmp_path / "html" / "index.html").read_text()
    assert "Task2 (category) accuracy and val macro-F1" in html and "workspace" in html


def _git(root, *args):
    return run(["git", *args], root).stdout.strip()


def test_a_pulled_experiment_whose_params_this_code_refuses_is_named_with_its_fix(tmp_path):
    """An experiment run on newer code (here: a params.yaml with a key this code does not know) — as `dvc exp pull`
    leaves it, a commit under refs/exps — is refused in one line that says where it came from and what to do."""
    from conftest import committed_text

    root = tmp_path / "r"
    run(["git", "init", "-q", "-b", "main", str(root)], tmp_path)
    (root / "params.yaml").write_text(committed_text("params.yaml"))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "base"], root)
    base = _git(root, "rev-parse", "HEAD")
    newer_params = yaml.safe_load(committed_text("params.yaml"))
    newer_params["stage1"]["mlm_epochs"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(newer_params, sort_keys=False))
    run(["git", "commit", "-qam", "newer"], root)
    newer = _git(root, "rev-parse", "HEAD")
    run(["git", "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/from-newer-code", newer], root)
    run(["git", "reset", "-q", "--hard", base], root)
    run(["git", "remote", "add", "origin", str(tmp_path / "nowhere.git")], root)
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text(f"[core]\n    remote = storage\n['remote \"storage\"']\n"
                                          f"    url = {tmp_path}\n")
    with pytest.raises(DataError) as err:
        check("from-newer-code", root=root)
    msg = str(err.value)
    assert "\n" not in msg and f"experiment 'from-newer-code' (commit {newer[:7]})" in msg
    assert "mlm_epochs" in msg and "dvc exp apply from-newer-code brings that code" in msg
    (root / ".dvc" / "config").write_text(f"[core]\n    remote = storage\n['remote \"storage\"']\n"
                                          f"    url = {tmp_path / 'unmounted'}\n")
    with pytest.raises(DataError, match="does not exist on this machine: mount it"):
        check(None, root=root)
