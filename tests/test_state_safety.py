"""A resume state is untrusted input: a progress file that would run code is refused before anything of the state
is applied, a code change starts fresh with a message, a failed save is one line and keeps the previous state."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from twohead.config.errors import OutputError, user_message
from twohead.train.resume import StateStore, fingerprint, from_plain, read_progress, to_plain


class FakeAccelerator:
    num_processes, process_index, is_main_process = 1, 0, True

    def __init__(self):
        self.loaded = []

    def load_state(self, folder):
        self.loaded.append(folder)

    def save_state(self, folder, safe_serialization=True):
        os.makedirs(folder, exist_ok=True)


MARK = "/tmp/twohead_state_safety_ran"


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


def _store(tmp_path, fp, log):
    return StateStore(tmp_path / "state", fp, log=log.append)


def test_a_progress_file_that_would_run_code_is_refused_and_nothing_is_applied(tmp_path):
    if os.path.exists(MARK):
        os.remove(MARK)
    fp = {"params": "p", "inputs": "i"}
    log: list[str] = []
    store, acc = _store(tmp_path, fp, log), FakeAccelerator()
    store.save(acc, {"epoch": 1, "history": [{"acc": np.float64(0.5)}]})
    assert read_progress(store.folder / "progress.pt")["epoch"] == 1  # a real save is plain data
    with open(store.folder / "progress.pt", "wb") as f:  # the attack: a pickle whose loading runs a command
        pickle.dump({"epoch": 1, "x": Evil()}, f)
    assert store.load(acc) is None
    assert not os.path.exists(MARK), "loading the state ran code"
    assert acc.loaded == [] and "not plain training data" in log[-1] and "starting fresh" in log[-1]


def test_state_from_other_code_starts_fresh_naming_the_code(tmp_path):
    log: list[str] = []
    a = tmp_path / "a.py"
    a.write_text("x = 1\n")
    store, acc = _store(tmp_path, fingerprint({"k": 1}, [], code=a), log), FakeAccelerator()
    store.save(acc, {"epoch": 1})
    a.write_text("x = 2\n")  # the stage's code changed since the save
    again = _store(tmp_path, fingerprint({"k": 1}, [], code=a), log)
    assert again.load(acc) is None and acc.loaded == []
    assert "other code" in log[-1] and "mix two versions" in log[-1]
    same = _store(tmp_path, fingerprint({"k": 1}, [], code=a), log)
    same.save(acc, {"epoch": 2})
    assert same.load(acc)["epoch"] == 2 and acc.loaded  # the same code resumes


def test_the_code_digest_follows_imported_project_modules(tmp_path):
    import shutil

    import twohead
    import twohead.pipeline.train_stage2 as stage
    from twohead.modules import SRC, closure, code_digest

    files = {p.name for p in closure(Path(stage.__file__), SRC)}
    assert {"fit.py", "recipe.py", "step.py", "losses.py"} <= files
    copy = tmp_path / "src"  # an edit to a module the stage imports (not the stage file itself) changes the digest
    shutil.copytree(Path(twohead.__file__).parent, copy / "twohead", ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(copy / "twohead/pipeline/train_stage2.py", copy)
    losses = copy / "twohead/train/losses.py"
    losses.write_text(losses.read_text() + "\n# changed\n")
    assert code_digest(copy / "twohead/pipeline/train_stage2.py", copy) != before


def test_a_failed_save_is_one_line_and_keeps_the_previous_state(tmp_path, monkeypatch):
    store, acc = _store(tmp_path, {"params": "p"}, []), FakeAccelerator()
    store.save(acc, {"epoch": 1})
    before = (store.folder / "progress.pt").read_bytes()

    def full_disk(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4224 vs 4110\nmore lines")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError) as err:
        store.save(acc, {"epoch": 2})
    line, status = user_message(err.value)
    assert status == 2 and "\n" not in line and "disk full" in line and "previous state is kept" in line
    assert (store.folder / "progress.pt").read_bytes() == before


def test_plain_encoding_round_trips_numpy_and_frames_exactly():
    df = pd.DataFrame({"epoch": np.arange(3), "p": np.array([0.1, 0.2, 0.3], np.float32), "id": ["a", "b", None]})
    obj = {"rng": np.random.get_state(), "t": [df], "s": np.float32(0.25), "n": [np.int64(3), 1.5, "x", None]}
    back = from_plain(to_plain(obj))
    assert back["t"][0].equals(df) and list(back["t"][0].dtypes) == list(df.dtypes)
    assert back["s"] == np.float32(0.25) and back["s"].dtype == np.float32 and back["n"][0].dtype == np.int64
    assert (back["rng"][1] == obj["rng"][1]).all() and back["rng"][0] == "MT19937"
    with pytest.raises(TypeError, match="plain data"):
        to_plain({"x": object()})
    json.dumps(to_plain({"a": [1, 2.5, "s"]}))  # plain values stay plain


def test_a_planted_pickle_in_the_optimizer_state_stops_in_one_line(tmp_path):
    """Accelerate's own files (optimizer.bin …) are read with weights_only=True too: the planted pickle is refused,
    runs nothing, and the run stops with one line naming the fix (not a traceback; not a "fresh" start from a model
    that may already hold the state's weights)."""
    from accelerate import Accelerator

    from twohead.config.errors import TrainingError

    if os.path.exists(MARK):
        os.remove(MARK)
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    model, opt = acc.prepare(model, torch.optim.AdamW(model.parameters()))
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    log: list[str] = []
    store = _store(tmp_path, {"params": "p", "inputs": "i"}, log)
    store.save(acc, {"epoch": 1})
    optimizer_file = store.folder / "accelerate" / "optimizer.bin"
    assert optimizer_file.is_file()
    with open(optimizer_file, "wb") as f:
        pickle.dump({"state": Evil()}, f)
    with pytest.raises(TrainingError) as e:
        store.load(acc)
    msg = str(e.value)
    assert "is not plain training data" in msg and f"delete {store.folder}" in msg and "\n" not in msg
    assert not os.path.exists(MARK), "loading the state ran code"


def test_a_writer_killed_mid_write_leaves_no_temp_file_behind_the_next_write(tmp_path):
    """kill -9 mid-write left metrics/.confusable_pairs.csv.*.tmp behind: the next write of that output removes the
    temp files of writers that are gone, and keeps a live writer's and other tools' temp names."""
    import subprocess
    import sys

    from twohead.data.atomic import write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "pairs.csv"
    stale = [tmp_path / f".pairs.csv.{dead}.ab12cd34.tmp", tmp_path / ".pairs.csv.k2j4h5g6.tmp"]
    kept = [tmp_path / f".pairs.csv.{os.getpid()}.zz99yy88.tmp", tmp_path / ".pairs.csv.saving.tmp",
            tmp_path / f".other.csv.{dead}.ab12cd34.tmp"]
    for f in stale + kept:
        f.write_text("half")
    write_text(out, "a,b\n")
    assert out.read_text() == "a,b\n"
    assert [f.exists() for f in stale] == [False, False] and all(f.exists() for f in kept)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".pairs")) == sorted(
        f.name for f in kept if f.name.startswith(".pairs"))


def test_a_stage_whose_params_change_under_it_keeps_no_output(tmp_path, capsys, monkeypatch):
    """Two `dvc exp run` in one workspace edit one params.yaml: a stage that started with one set must not leave
    outputs beside the other's. The closest deterministic stand-in for the race (two real DVC processes interleave
    differently on every run): a stage that writes an output, then finds params.yaml edited, then writes again."""
    from dataclasses import dataclass

    import twohead.pipeline.stage_main as stage_main
    from twohead.data.atomic import write_text
    from twohead.pipeline.stage_main import run_stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stage_main, "load_params", lambda path: None)   # the file's bytes are what is guarded
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  seed: 42\n")

    @dataclass(frozen=True)
    class Paths:
        first: Path
        second: Path

    def main(p, paths):
        write_text(paths.first, "model of worst_k 50\n")
        params.write_text("train:\n  seed: 7\n")   # the other experiment's -S
        write_text(paths.second, "metrics\n")

    with pytest.raises(SystemExit) as e:
        run_stage("fake", main, Paths, ["--first", "out/a.txt", "--second", "out/b.txt"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "params.yaml changed while this stage ran" in err and "dvc exp run --queue" in err
    assert not (tmp_path / "out" / "a.txt").exists() and not (tmp_path / "out" / "b.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []            # no temp file either
    write_text(tmp_path / "after.txt", "x")                     # outside a stage nothing is guarded
