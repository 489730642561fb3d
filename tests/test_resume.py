"""Runs survive interruption: SIGKILL after epoch 1 and mid-epoch 2, then a re-run finishes with metrics
identical to an uninterrupted run; SIGINT saves and stops cleanly; non-finite losses stop or are skipped."""

import json
import math
import os
import shutil
import signal

import pandas as pd
import pytest

from conftest import dvc_paths, replace, train_in
from dvc_project import clone_project, train_stage2_in
from twohead.config.errors import TrainingError
from twohead.train.fit import Diverged

OUTPUTS = ("train_metrics", "train_history", "steps_log", "band_recall", "val_epochs", "cartography_task2")


def _train(proj, kill_after=None):
    return train_stage2_in(proj, kill_after)


@pytest.mark.slow
def test_sigkill_after_epoch_1_and_mid_epoch_2_then_resume_is_identical(shared_project, tmp_path):
    proj = clone_project(shared_project[0], tmp_path / "proj", params={
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.003, "device": "cpu", "checkpoint_every_steps": 3},
        "eval": {"worst_k": 5}})
    layout = dvc_paths()
    ref = _train(proj)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = {k: (proj / layout[k]).read_bytes() for k in OUTPUTS}
    state = proj / layout["stage2_state"]
    assert [f.name for f in state.iterdir()] == ["DONE.json"]  # cleared after success
    for k in OUTPUTS:
        (proj / layout[k]).unlink()

    n_train = len(pd.read_parquet(proj / "data" / "tokenized" / "train.parquet"))
    steps_per_epoch = math.ceil(n_train / 16)
    first = _train(proj, kill_after=steps_per_epoch // 3 + 1)  # the save at the end of epoch 1
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert (state / "progress.pt").is_file() and not (proj / layout["train_metrics"]).exists()
    second = _train(proj, kill_after=1)  # the first save inside epoch 2
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert f"resuming at epoch 2 step 0/{steps_per_epoch} (run step {steps_per_epoch})" in second.stdout
    third = _train(proj)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resuming at epoch 2 step" in third.stdout and "batches of the epoch done" in third.stdout
    for k in OUTPUTS:
        assert (proj / layout[k]).read_bytes() == expected[k], f"{layout[k]} differs after resuming"
    speed = json.loads((proj / layout["train_speed"]).read_text())
    assert speed["state"]["saves"] >= 1 and speed["state"]["state_mb"] > 0

    # a changed input (here: a param the stage reads) discards a stale state instead of resuming it
    shutil.rmtree(state)
    assert _train(proj, kill_after=1).returncode == -signal.SIGKILL
    params = (proj / "params.yaml").read_text().replace("label_smoothing: 0.1\n", "label_smoothing: 0.2\n", 1)
    (proj / "params.yaml").write_text(params)
    fresh = _train(proj)
    assert fresh.returncode == 0 and "saved with other params: starting fresh" in fresh.stdout
    assert "resuming" not in fresh.stdout


def test_sigint_saves_the_state_and_stops_then_resumes_identically(tiny_data, tmp_path, monkeypatch):
    import twohead.train.loop as loop

    data_dir, p = tiny_data
    ref = train_in(tmp_path / "ref", data_dir, p)
    calls = {"n": 0}
    real = loop._counts

    def counting(*args):
        calls["n"] += 1
        if calls["n"] == 20:  # mid-epoch 2 on the tiny data: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(loop, "_counts", counting)
    with pytest.raises(TrainingError,
                       match=r"SIGINT: interrupted at epoch 2 step \d+/\d+ \(run step \d+\); re-run to resume") as e:
        train_in(tmp_path / "run", data_dir, p)
    assert e.value.exit_status == 130  # what the stage exits with: 128 + SIGINT, as for any Ctrl-C
    assert not (tmp_path / "run" / "metrics" / "train.json").exists()
    assert not (tmp_path / "run" / "models" / "stage2").exists()
    monkeypatch.setattr(loop, "_counts", real)
    resumed = train_in(tmp_path / "run", data_dir, p)
    assert resumed == ref
    assert (tmp_path / "run" / "metrics" / "train.json").read_bytes() == \
        (tmp_path / "ref" / "metrics" / "train.json").read_bytes()


def _nan_at(monkeypatch, calls: set[int]):
    """Make the loss non-finite on the given training batches (1-based count across the run)."""
    import twohead.train.losses as losses
    from twohead.train.losses import TwoTaskLoss

    seen = {"n": 0}

    class NanLoss(TwoTaskLoss):
        def terms(self, l1, l2, y1, y2):
            out = super().terms(l1, l2, y1, y2)
            if l1.requires_grad:
                seen["n"] += 1
                if seen["n"] - 1 in calls:  # the first call is the smoke check
                    out["total"] = out["total"] * float("nan")
            return out

    monkeypatch.setattr(losses, "TwoTaskLoss", NanLoss)   # what loss_for_run builds


def test_nonfinite_loss_stops_with_step_ids_and_lrs(tiny_data, tmp_path, monkeypatch):
    data_dir, p = tiny_data
    _nan_at(monkeypatch, {5})
    with pytest.raises(Diverged) as err:
        train_in(tmp_path, data_dir, p)
    msg = str(err.value)
    assert "non-finite loss at epoch 1, step 5" in msg and "batch rows: " in msg and "learning rates: " in msg
    assert "hp-" in msg  # the ids of the batch's rows
    assert not (tmp_path / "metrics" / "train.json").exists()
    steps = [json.loads(x) for x in (tmp_path / "logs" / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 5 and steps[-1]["nonfinite"] is True and steps[-1]["step"] == 5 and steps[-1]["ids"]


def test_nonfinite_skip_drops_the_step_and_counts_it(tiny_data, tmp_path, monkeypatch):
    data_dir, p = tiny_data
    _nan_at(monkeypatch, {5})
    m = train_in(tmp_path, data_dir, replace(p, "train", on_nonfinite="skip"))
    assert m["skipped_steps"] == 1 and math.isfinite(m["train_loss_total"])
    n_batches = len((tmp_path / "logs" / "steps.jsonl").read_text().splitlines())
    assert n_batches == 2 * math.ceil(m["train_rows"] / p.train.batch_size) - 1


def test_nonfinite_skip_still_stops_when_too_many(tiny_data, tmp_path, monkeypatch):
    data_dir, p = tiny_data
    _nan_at(monkeypatch, set(range(1, 100)))
    with pytest.raises(TrainingError, match="optimiser steps had a non-finite loss or gradient norm"):
        train_in(tmp_path, data_dir, replace(p, "train", on_nonfinite="skip"))
    assert not (tmp_path / "metrics" / "train.json").exists()


def test_stage1_resume_fingerprint_ignores_lr_and_saving_keys(tmp_path):
    """Stage 1's saved state, like Stage 2's, survives a lower LR or another saving setting, not a recipe change."""
    from conftest import make_params
    from twohead.pipeline.pretrain_stage1 import Stage1Paths, state_fingerprint

    (tmp_path / "prepared").mkdir()
    (tmp_path / "prepared" / "train.parquet").write_bytes(b"x")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    paths = Stage1Paths(*(tmp_path / n for n in ("prepared", "mlm", "s1", "h.csv", "m.json", "sp.json", "state")))
    p = make_params(stage1={"base_model": str(tmp_path / "base")})
    base = state_fingerprint(p, paths)
    for key, value in (("lr", 0.5), ("checkpoint_every_steps", 7), ("on_nonfinite", "skip")):
        assert state_fingerprint(replace(p, "stage1", **{key: value}), paths) == base, key
    assert state_fingerprint(replace(p, "stage1", epochs=9), paths) != base
    assert state_fingerprint(replace(p, "train", checkpoint_every_steps=7, grad_accum=4), paths) == base
