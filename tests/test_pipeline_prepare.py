"""The prepare_labels and tokenize stages through DVC on a tiny copy of the demo (the shared project ran them)."""

import json

import pyarrow.parquet as pq
import pytest

from dvc_project import SHARED_ROWS, clone_project, make_project, run


@pytest.mark.slow
def test_dvc_repro_prepare_and_tokenize(shared_project, tmp_path):
    shared, out = shared_project
    assert "Running stage 'prepare_labels'" in out and "Running stage 'tokenize'" in out
    proj = clone_project(shared, tmp_path / "proj")
    data = json.loads((proj / "metrics" / "data.json").read_text())
    total = sum(s["rows"] for s in data["splits"].values())
    assert total == SHARED_ROWS and data["n_classes"] == 27
    assert data["splits"]["train"]["category_only"] > 0 and data["splits"]["train"]["decline"] > 0
    maps = json.loads((proj / "data" / "prepared" / "label_maps.json").read_text())
    assert maps["task2"]["names"] == sorted(maps["task2"]["names"])
    ids = {}
    for split in ("train", "val", "test"):
        t = pq.read_table(proj / "data" / "tokenized" / f"{split}.parquet")
        ids[split] = set(t["id"].to_pylist())
        assert t.num_rows == data["splits"][split]["rows"]
        lengths = t["length"].to_pylist()
        assert max(lengths) <= 64 and all(len(x) == n for x, n in zip(t["input_ids"].to_pylist(), lengths))
    assert not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    # nothing changed -> nothing re-runs (in a fresh clone too: the outputs came from the cache)
    assert "didn't change" in run(["dvc", "repro", "prepare_labels", "tokenize"], proj).stdout
    out = run(["dvc", "repro", "-s", "prepare_labels"], proj)
    assert "Stage 'prepare_labels' didn't change" in out.stdout


@pytest.mark.slow
def test_bad_input_fails_the_stage_with_a_clear_error_and_no_metrics(tmp_path):
    proj = make_project(tmp_path / "proj", overrides={"data": {"pick_values": ["Yes"]}})
    proc = run(["dvc", "repro", "prepare_labels"], proj, check=False)
    assert proc.returncode != 0
    assert "unknown value 'Pick' in column 'pick'" in proc.stderr + proc.stdout
    assert not (proj / "metrics" / "data.json").exists()
