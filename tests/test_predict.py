"""twohead predict: same probabilities as the evaluate stage, every input/output format, clear errors."""

import io
import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import evaluate_in, train_in
from twohead.cli import main
from twohead.predictor import Predictor


@pytest.fixture(scope="module")
def scored(tiny_data, tmp_path_factory):
    """A tiny trained model, evaluate's test predictions, and the test texts as a CSV."""
    data_dir, p = tiny_data
    out = tmp_path_factory.mktemp("predict")
    train_in(out, data_dir, p)
    evaluate_in(out, data_dir, p)
    test = pd.read_parquet(data_dir / "prepared" / "test.parquet")[["id", "text"]]
    test.to_csv(out / "test.csv", index=False)
    return out, pd.read_csv(out / "plots" / "predictions.csv", keep_default_na=False), test


def _run(args, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(["predict", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_matches_evaluate_probabilities(scored, capsys):
    out, evaluated, _ = scored
    rc, _, err = _run([out / "models" / "stage2", out / "test.csv", "-o", out / "cli.csv", "--plain"], capsys)
    assert rc == 0 and "rows ->" in err and "plain rule" in err
    got = pd.read_csv(out / "cli.csv", keep_default_na=False)
    assert list(got["id"]) == list(pd.read_csv(out / "test.csv")["id"])  # input order
    m = got.merge(evaluated, on="id", suffixes=("", "_eval"))
    assert len(m) == len(evaluated) == len(got)
    for col in ("p_pick", "p_top1", "p_top2", "p_top3"):
        np.testing.assert_allclose(m[col], m[f"{col}_eval"], atol=1e-5)
    assert (m["top1"] == m["pred_category"]).all() and (m["combined"] == m["combined_pred"]).all()
    assert (m["pick"] == m["pred_pick"]).all()
    assert (got[["p_top1", "p_top2", "p_top3"]].sum(axis=1) <= 1 + 1e-6).all()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_every_file_format_in_and_out(scored, capsys, suffix):
    out, evaluated, test = scored
    src = out / f"in{suffix}"
    if suffix == ".parquet":
        test.to_parquet(src, index=False)
    else:
        test.to_json(src, orient="records", lines=True)
    dst = out / f"out{suffix}"
    assert _run([out / "models" / "stage2", src, "-o", dst, "--top-k", "2", "--plain"], capsys)[0] == 0
    got = pd.read_parquet(dst) if suffix == ".parquet" else pd.read_json(dst, lines=True, dtype={"id": str})
    assert len(got) == len(test) and "top2" in got.columns and "top3" not in got.columns
    assert list(got["id"]) == list(test["id"])
    m = got.merge(evaluated, on="id", suffixes=("", "_eval"))
    assert len(m) == len(test)
    np.testing.assert_allclose(m["p_pick"], m["p_pick_eval"], atol=1e-5)


def test_stdin_one_text_per_line_and_empty_rows(scored, capsys, monkeypatch):
    out, _, test = scored
    texts = list(test["text"].head(3))
    rc, stdout, err = _run([out / "models" / "stage2", "-"], capsys, stdin="\n".join([texts[0], "", texts[1]]) + "\n",
                           monkeypatch=monkeypatch)
    assert rc == 0 and "1 row(s) with empty text got no prediction" in err
    got = pd.read_csv(io.StringIO(stdout), keep_default_na=False)
    assert list(got["id"]) == [0, 1, 2] and got.loc[1, "pick"] == "" and got.loc[1, "p_pick"] == ""
    direct = Predictor(out / "models" / "stage2", device="cpu").predict([texts[0], texts[1]])  # both: decision
    assert float(got.loc[0, "p_pick"]) == pytest.approx(direct.loc[0, "p_pick"], abs=1e-5)
    assert got.loc[2, "top1"] == direct.loc[1, "top1"]


def test_predictor_threshold_and_metadata(scored):
    out, _, test = scored
    model = out / "models" / "stage2"
    meta = json.loads((model / "twohead.json").read_text())
    assert meta["max_length"] == 64 and "pick_threshold" not in meta  # the threshold is the decision's now
    decision = json.loads((out / "models" / "decision.json").read_text())["decision"]
    pred = Predictor(model, device="cpu")
    assert pred.max_length == 64 and pred.pick_threshold == decision["pick_threshold"]
    assert pred.decision_path == out / "models" / "decision.json"
    assert Predictor(model, device="cpu", plain=True).pick_threshold == 0.5
    df = Predictor(model, device="cpu", pick_threshold=0.999).predict(list(test["text"]))
    assert set(df.loc[df["p_pick"] < 0.999, "combined"]) <= {"Decline"}
    assert (df.loc[df["p_pick"] >= 0.999, "pick"] == "Pick").all()


def test_under_a_prior_correction_the_ranking_scores_are_written_and_descend(scored, tmp_path):
    """With τ ≠ 0 the categories are ranked by the corrected scores while p_top* stay calibrated probabilities (so
    p_top1 … need not descend): rank_score_top* are the scores that order them, descending in every row."""
    out, _, test = scored
    saved = json.loads((out / "models" / "decision.json").read_text())
    k = len(Predictor(out / "models" / "stage2", device="cpu", plain=True).names)
    saved["decision"]["tau"] = 2.0
    saved["decision"]["log_prior"] = list(np.log(np.linspace(1.0, 0.01, k) / np.linspace(1.0, 0.01, k).sum()))
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(saved))
    df = Predictor(out / "models" / "stage2", device="cpu", decision=path).predict(list(test["text"]), top_k=3)
    ranks = df[["rank_score_top1", "rank_score_top2", "rank_score_top3"]].to_numpy()
    assert (np.diff(ranks, axis=1) <= 1e-12).all()
    probs = df[["p_top1", "p_top2", "p_top3"]].to_numpy()
    assert (np.diff(probs, axis=1) > 0).any()   # the case the user met: calibrated probabilities out of order
    plain = Predictor(out / "models" / "stage2", device="cpu", plain=True).predict(list(test["text"][:3]))
    assert not any(c.startswith("rank_score") for c in plain.columns)


@pytest.mark.parametrize("case", ["missing_file", "no_text_column", "not_stage2", "bad_suffix", "no_id_column"])
def test_bad_input_is_one_line_and_writes_nothing(scored, capsys, case, tmp_path):
    out, _, _ = scored
    model, src, extra = out / "models" / "stage2", out / "test.csv", []
    dst = tmp_path / "p.csv"
    expect = {"missing_file": "input file not found", "no_text_column": "no text column 'body'",
              "not_stage2": "not a Stage-2 model directory", "bad_suffix": "cannot tell the output format",
              "no_id_column": "no id column 'key'"}[case]
    if case == "missing_file":
        src = tmp_path / "nope.csv"
    elif case == "no_text_column":
        extra = ["--text-column", "body"]
    elif case == "not_stage2":
        model = tmp_path
    elif case == "bad_suffix":
        dst = tmp_path / "p.txt"
    else:
        extra = ["--id-column", "key"]
    rc, _, err = _run([model, src, "-o", dst, *extra], capsys)
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.glob("p.*")) == []
    if case == "no_text_column":
        assert "the columns are ['id', 'text']" in err


def test_default_predictions_apply_the_decision_as_evaluate_scores_it(scored):
    """twohead predict's default answers are the decided rule's: on the test texts, its combined answers score
    exactly the combined accuracy evaluate reports under the decision."""
    out, evaluated, test = scored
    df = Predictor(out / "models" / "stage2", device="cpu").predict(list(test["text"]), ids=list(test["id"]))
    gold = evaluated.set_index("id").loc[df["id"]]
    want = json.loads((out / "metrics" / "test.json").read_text())["decided"]["test"]["combined"]
    has = (gold["gold_pick"] == "Decline") | ((gold["gold_pick"] == "Pick") & (gold["gold_category"] != ""))
    truth = np.where(gold["gold_pick"] == "Decline", "Decline", gold["gold_category"])
    acc = float((df["combined"].to_numpy()[has.to_numpy()] == truth[has.to_numpy()]).mean())
    assert acc == pytest.approx(want["acc"], rel=1e-5) and int(has.sum()) == want["rows"]


def test_cp1252_input_needs_and_takes_encoding(scored, capsys, tmp_path):
    out, _, test = scored
    src = tmp_path / "in.csv"
    frame = test.head(4).copy()
    frame.loc[frame.index[0], "text"] = "Café owners’ “best” year"  # ’ “ ” are cp1252 bytes 0x92-0x94
    src.write_bytes(frame.to_csv(index=False).encode("cp1252"))
    rc, _, err = _run([out / "models" / "stage2", src, "-o", tmp_path / "p.csv"], capsys)
    assert rc == 2 and "not valid utf-8 text at byte" in err and "pass --encoding the file's encoding" in err
    assert "data.encoding" not in err and not (tmp_path / "p.csv").exists()
    rc, _, err = _run([out / "models" / "stage2", src, "-o", tmp_path / "p.csv", "--encoding", "cp1252"], capsys)
    assert rc == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 4


def test_truncated_and_unknown_script_rows_are_counted(scored, capsys, tmp_path):
    out, _, test = scored
    long = " ".join(test["text"].head(40))  # far beyond max_length 64
    unknown = "金融市场今日大幅波动投资者担心经济前景" * 3  # a script the demo tokenizer never saw
    pred = Predictor(out / "models" / "stage2", device="cpu")
    pred.predict([long, unknown, "markets rally", ""])
    assert (pred.skipped, pred.truncated, pred.unreadable) == (1, 1, 1)
    pred.predict(["markets rally today", "a new film opens"])
    assert (pred.truncated, pred.unreadable) == (0, 0)
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": [long, unknown, "markets"]}).to_csv(src, index=False)
    rc, _, err = _run([out / "models" / "stage2", src, "-o", tmp_path / "p.csv"], capsys)
    assert rc == 0 and "1 row(s) longer than 64 tokens were truncated" in err
    assert "1 row(s) are mostly unknown tokens" in err


@pytest.mark.parametrize("errno_, words", [(28, "No space left on device"), (13, "Permission denied")])
def test_full_disk_or_read_only_output_is_one_line(scored, capsys, tmp_path, monkeypatch, errno_, words):
    out, _, _ = scored
    import os as _os
    real = _os.replace

    def failing(src, dst):  # the final rename fails as on a full disk / a read-only folder
        raise OSError(errno_, words)
    monkeypatch.setattr("twohead.data.atomic.os.replace", failing)
    rc, _, err = _run([out / "models" / "stage2", out / "test.csv", "-o", tmp_path / "p.csv"], capsys)
    monkeypatch.setattr("twohead.data.atomic.os.replace", real)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"p.csv: cannot write it ({words}); nothing was written there" in err
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_ctrl_c_is_one_line_and_status_130(scored, capsys, monkeypatch):
    out, _, _ = scored

    def interrupted(self, texts, ids=None, top_k=3):
        raise KeyboardInterrupt
    monkeypatch.setattr(Predictor, "predict", interrupted)
    rc, _, err = _run([out / "models" / "stage2", out / "test.csv", "-o", out / "never.csv"], capsys)
    assert rc == 130 and err.strip() == ("twohead predict: interrupted (Ctrl-C); no output was half-written"
                                         " (each is renamed into place only when complete)")
    assert not (out / "never.csv").exists()


def test_full_standard_output_is_one_line(scored, capsys, monkeypatch):
    out, _, _ = scored

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

        def fileno(self):  # what the handler points at /dev/null: a descriptor of its own, not the real stdout
            return os.open(os.devnull, os.O_WRONLY)
    monkeypatch.setattr("sys.stdout", Full())
    rc = main(["predict", str(out / "models" / "stage2"), str(out / "test.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "twohead predict: error: standard output: cannot write it (No space left on device)" in err


def test_a_file_in_the_way_of_the_output_folder_is_named(scored, capsys, tmp_path):
    out, _, _ = scored
    (tmp_path / "x").write_text("")
    rc, _, err = _run([out / "models" / "stage2", out / "test.csv", "-o", tmp_path / "x" / "sub" / "p.csv"], capsys)
    assert rc == 2 and f"cannot write it ({tmp_path / 'x'} is a file, not a folder)" in err


# --- untrusted inputs and scale (reliability round 4) -------------------------------------------------------------

def test_predict_refuses_to_overwrite_its_input(scored, capsys, tmp_path):
    out, _, test = scored
    src = tmp_path / "in.csv"
    test.to_csv(src, index=False)
    before = src.read_bytes()
    rc, _, err = _run([out / "models" / "stage2", src, "-o", src], capsys)
    assert rc == 2 and "is the input file" in err and len(err.strip().splitlines()) == 1
    assert src.read_bytes() == before


@pytest.mark.parametrize("args, said", [(["--batch-size", "0"], "must be at least 1"),
                                        (["--batch-size", "-3"], "must be at least 1"),
                                        (["--top-k", "0"], "must be at least 1")])
def test_bad_counts_are_usage_errors(scored, capsys, args, said):
    out, _, _ = scored
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(out / "models" / "stage2"), str(out / "test.csv"), *args])
    assert exc.value.code == 2 and said in capsys.readouterr().err


def test_an_output_that_is_a_folder_is_named(scored, capsys, tmp_path):
    out, _, _ = scored
    (tmp_path / "p.csv").mkdir()
    rc, _, err = _run([out / "models" / "stage2", out / "test.csv", "-o", tmp_path / "p.csv"], capsys)
    assert rc == 2 and "p.csv: is a folder" in err and len(err.strip().splitlines()) == 1


def test_predict_streams_in_chunks_with_the_same_rows_and_counts(scored, tmp_path, monkeypatch):
    """Chunks of 7 rows give the same file as one chunk (the row order, ids, every value) and the counts sum."""
    import twohead.data.stream as stream
    from twohead.predictor import predict_file

    out, _, test = scored
    src = tmp_path / "in.csv"
    test.assign(text=[""] + list(test["text"][1:])).to_csv(src, index=False)  # one empty row
    pred = Predictor(out / "models" / "stage2")
    whole = predict_file(pred, stream.iter_texts(src, "text", chunk_rows=10 ** 6), tmp_path / "a.csv", "csv", 3)
    small = predict_file(pred, stream.iter_texts(src, "text", chunk_rows=7), tmp_path / "b.csv", "csv", 3)
    a, b = (pd.read_csv(tmp_path / f"{x}.csv", keep_default_na=False) for x in "ab")
    assert whole == small and whole["rows"] == len(test) and whole["skipped"] == 1 and pred.skipped == 1
    probs = [c for c in a if c.startswith("p_")]
    pd.testing.assert_frame_equal(a.drop(columns=probs), b.drop(columns=probs))
    np.testing.assert_allclose(*(pd.read_csv(tmp_path / f"{x}.csv")[probs].to_numpy(float) for x in "ab"), atol=1e-5)
    for fmt, suffix in (("jsonl", ".jsonl"), ("parquet", ".parquet")):
        predict_file(pred, stream.iter_texts(src, "text", chunk_rows=7), tmp_path / f"c{suffix}", fmt, 3)
    assert len(pd.read_json(tmp_path / "c.jsonl", lines=True)) == len(pd.read_parquet(tmp_path / "c.parquet")) \
        == len(test)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.csv", "b.csv", "c.jsonl", "c.parquet", "in.csv"]


def test_a_decision_file_is_checked_against_the_model(scored, tmp_path):
    import json

    from twohead.config.errors import DataError

    out, _, _ = scored
    good = json.loads((out / "models" / "decision.json").read_text())
    assert good["classes"] and good["n_classes"] == len(good["classes"])

    def load(**changes):
        bad = json.loads(json.dumps(good))
        for key, value in changes.items():
            if key == "classes":
                bad["classes"] = value
            else:
                bad["decision"][key] = value
        path = tmp_path / "d.json"
        path.write_text(json.dumps(bad))
        return Predictor(out / "models" / "stage2", decision=path)

    for changes, said in (({"temperature_task1": 0}, "temperature_task1 is 0"),
                          ({"temperature_task2": -1}, "temperature_task2 is -1"),
                          ({"pick_threshold": 2}, "pick_threshold is 2"),
                          ({"tau": None}, "tau is None"),
                          ({"classes": list(reversed(good["classes"]))}, "belongs to another model"),
                          ({"log_prior": [0.0], "tau": 1.0}, "class prior has 1 entries")):
        with pytest.raises(DataError, match=said):
            load(**changes)


def test_a_missing_decision_is_said_before_scoring(scored, capsys, tmp_path):
    import shutil

    out, _, _ = scored
    model = tmp_path / "models" / "stage2"
    shutil.copytree(out / "models" / "stage2", model)  # no decision.json beside it (a failed calibrate)
    rc, _, err = _run([model, out / "test.csv", "-o", tmp_path / "p.csv"], capsys)
    assert rc == 0 and err.splitlines()[0].startswith("twohead predict: no decision file at")
    assert "the plain rule applies" in err.splitlines()[0]


@pytest.mark.parametrize("damage, said", [("heads", "heads.safetensors: not found"),
                                          ("meta", "twohead.json: not valid JSON"),
                                          ("maps", "2 category names but twohead.json says"),
                                          ("max_length", "max_length 100000 is not a whole number")])
def test_a_damaged_stage2_directory_is_one_line(scored, capsys, tmp_path, damage, said):
    import json
    import shutil

    out, _, _ = scored
    model = tmp_path / "stage2"
    shutil.copytree(out / "models" / "stage2", model)
    if damage == "heads":
        (model / "heads.safetensors").unlink()
    elif damage == "meta":
        (model / "twohead.json").write_text("{not json")
    elif damage == "maps":
        maps = json.loads((model / "label_maps.json").read_text())
        maps["task2"]["names"] = maps["task2"]["names"][:2]
        (model / "label_maps.json").write_text(json.dumps(maps))
    else:
        meta = json.loads((model / "twohead.json").read_text())
        meta["max_length"] = 100000
        (model / "twohead.json").write_text(json.dumps(meta))
    rc, _, err = _run([model, out / "test.csv", "-o", tmp_path / "p.csv", "--plain"], capsys)
    assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_refuses_a_model_from_another_run(scored):
    """calibrate / evaluate score with a model whose classes must be the prepared label map's (a KeyError
    traceback before)."""
    from pathlib import Path

    from twohead.config.errors import DataError
    from twohead.train.scoring import Scorer

    out, _, _ = scored
    scorer = Scorer(out / "models" / "stage2", "cpu", 8)
    scorer.check_classes(list(scorer.names), Path("data/prepared"))  # its own run: fine
    with pytest.raises(DataError, match="comes from another run; re-run train_stage2"):
        scorer.check_classes(list(reversed(scorer.names)), Path("data/prepared"))
