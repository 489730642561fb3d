"""train_stage2 under torchrun with 2 CPU processes (gloo): the Accelerate path for multi-GPU users."""

import dataclasses
import json
import math
import re
import sys

import pandas as pd
import pytest
import yaml

from conftest import dvc_paths
from dvc_project import clone_project, run, train_stage2_in
from twohead.pipeline.stage_main import flag
from twohead.pipeline.train_stage2 import TrainPaths


@pytest.mark.slow
def test_two_process_training_matches_the_data(shared_project, tmp_path):
    launch = "torchrun --nproc_per_node 2"   # the DVC way: train.launch starts dvc.yaml's train_stage2 command
    proj = clone_project(shared_project[0], tmp_path / "proj", params={
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 50, "lr": 0.003, "device": "cpu",
                  "launch": launch}})
    layout = dvc_paths()
    args = [a for f in dataclasses.fields(TrainPaths) for a in (flag(f.name), layout[f.name])]
    out = run(["dvc", "repro", "train_stage2"], proj).stdout
    assert f"> {launch} stages/train_stage2.py --prepared" in out and "(2 process(es))" in out, out[-3000:]
    one = int(re.search(r"\[train_stage2\].*; (\d+) steps/epoch", shared_project[1]).group(1))  # 1 process, same batch
    assert f"; {math.ceil(one / 2)} steps/epoch" in out  # each process counts its own half (was the whole: step -127)
    m = json.loads((proj / "metrics" / "train.json").read_text())
    val = pd.read_parquet(proj / "data" / "tokenized" / "val.parquet")
    assert m["val_rows"] == len(val) and 0 <= m["val_acc_task2"] <= 1
    # every val row was scored once: the logged val accuracy is a multiple of 1/(rows with a category)
    n = int((val["labels_task2"] != -100).sum())
    assert abs(m["val_acc_task2"] * n - round(m["val_acc_task2"] * n)) < 1e-6
    carto = pd.read_csv(proj / "metrics" / "cartography_task2.csv")
    train = pd.read_parquet(proj / "data" / "tokenized" / "train.parquet")
    assert len(carto) == int((train["labels_task2"] != -100).sum())  # rows from both processes merged
    # every switch on at once: the extra passes (R-Drop's doubled batch, AWP's second backward, K dropout
    # samples) and the learned log-variances must run under DDP (no unused parameters, no double reduction)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["switches"].update({"task_weighting": "uncertainty", "rdrop_alpha": 1.0, "awp_start_epoch": 1,
                               "msd_samples": 3})
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "stages/train_stage2.py", *args], proj)
    m = json.loads((proj / "metrics" / "train.json").read_text())
    assert m["sigma_task1"] != 1.0 and m["train_loss_rdrop"] > 0 and 0 <= m["val_acc_task2"] <= 1


@pytest.mark.slow
def test_two_process_run_killed_after_epoch_1_resumes_to_identical_metrics(shared_project, tmp_path):
    """torchrun with 2 processes: SIGKILL right after the end-of-epoch-1 save (Accelerate's save_state from both
    processes, each with its own progress and RNG states), re-run: metrics identical to an uninterrupted run."""
    import signal

    proj = clone_project(shared_project[0], tmp_path / "proj", params={
        "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 50, "lr": 0.003, "device": "cpu"}})
    layout = dvc_paths()
    outputs = ("train_metrics", "train_history", "steps_log", "band_recall", "cartography_task2")

    def torchrun(kill_after=None):
        return train_stage2_in(proj, kill_after, processes=2)

    ref = torchrun()
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = {k: (proj / layout[k]).read_bytes() for k in outputs}
    state = proj / layout["stage2_state"]
    assert [f.name for f in state.iterdir()] == ["DONE.json"]  # cleared after success
    for k in outputs:
        (proj / layout[k]).unlink()

    killed = torchrun(kill_after=1)  # both processes: SIGKILL after the end-of-epoch-1 save
    assert killed.returncode != 0 and not (proj / layout["train_metrics"]).exists()
    assert str(-signal.SIGKILL) in killed.stderr or "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    saved = sorted(f.name for f in state.iterdir())
    assert {"progress.pt", "progress_1.pt", "fingerprint.json", "accelerate"} <= set(saved), saved
    assert json.loads((state / "fingerprint.json").read_text())["processes"] == 2
    resumed = torchrun()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at epoch 2 step" in resumed.stdout, resumed.stdout[-2000:]
    for k in outputs:
        assert (proj / layout[k]).read_bytes() == expected[k], f"{layout[k]} differs after resuming under torchrun"
