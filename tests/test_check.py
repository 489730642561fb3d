"""`twohead check` and the input checks behind it: every problem named by file, row, key or value."""

import json

import pandas as pd
import pytest
import yaml

from conftest import DEMO_CSV, ROOT, committed_text, make_params, write_table
from twohead.check import run_check
from twohead.cli import main
from twohead.config.errors import CheckpointError, DataError, ParamsError
from twohead.config.params import load_params
from twohead.data.labels import prepare
from twohead.model.checkpoint import validate_checkpoint


def params_file(tmp_path, encoder, **changes) -> str:
    """The project's params.yaml with absolute demo paths, the given checkpoint, and dotted-key changes."""
    raw = yaml.safe_load(committed_text("params.yaml"))  # not the workspace's: `dvc exp run` changes it
    raw["data"]["raw_path"] = str(DEMO_CSV)
    raw["predict"]["input"] = str(DEMO_CSV)
    raw["model"]["stage1_checkpoint"] = str(encoder)
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def test_check_passes_on_the_demo_and_runs_nothing(demo_encoder_dir, tmp_path, capsys):
    path = params_file(tmp_path, demo_encoder_dir)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["check", "--params", path])
    out = capsys.readouterr().out
    assert rc == 0 and "all good" in out and "27 categories" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("key, value, expect", [
    ("train.lr", "abc", "train.lr must be a number, got 'abc'"),
    ("train.lr", float("inf"), "train.lr must be a finite number"),
    ("split.seed", -1, "split.seed must be in [0, 2**32)"),
    ("loss.lambda_task1", 0.0, "at least one of loss.lambda_task1, loss.lambda_task2 must be > 0"),
    ("train.warmup_ratio", 1.5, "train.warmup_ratio must be in [0, 1)"),
    ("train.llrd", 0.0, "train.llrd must be in (0, 1]"),
])
def test_params_out_of_range_are_named(demo_encoder_dir, tmp_path, capsys, key, value, expect):
    changes = {key: value}
    if key == "loss.lambda_task1":
        changes["loss.lambda_task2"] = 0.0
    rc = main(["check", "--params", params_file(tmp_path, demo_encoder_dir, **changes)])
    err = capsys.readouterr().err
    assert rc == 1 and expect in err, err


def test_every_problem_is_reported_not_only_the_first(tmp_path, capsys):
    rc = main(["check", "--params", params_file(tmp_path, tmp_path / "no_such_checkpoint",
                                                **{"data.raw_path": str(tmp_path / "missing.csv"),
                                                   "predict.input": str(tmp_path / "new.csv")})])
    err = capsys.readouterr().err
    assert rc == 1 and "3 problem(s)" in err
    assert "missing.csv: raw data file (data.raw_path) not found" in err
    assert "model.stage1_checkpoint" in err and "checkpoint directory not found" in err
    assert "predict.input" in err and "new.csv" in err


def test_an_unbuilt_pipeline_checkpoint_checks_the_base_model_instead(demo_encoder_dir, tmp_path):
    path = params_file(tmp_path, "models/not_built_yet")
    report = run_check(path, root=ROOT)
    assert any("model.stage1_checkpoint" in e for e in report.errors)  # not a pipeline output: an error
    raw = yaml.safe_load(open(path))
    raw["model"]["stage1_checkpoint"] = str(ROOT / "models" / "stage1")
    raw["stage1"]["base_model"] = str(demo_encoder_dir)
    open(path, "w").write(yaml.safe_dump(raw))
    report = run_check(path, root=ROOT)
    if not (ROOT / "models" / "stage1").exists():
        assert any(m.startswith("stage1.base_model") for m in report.ok), report.lines()
    assert not report.errors, report.lines()


def _data(tmp_path, rows, name="raw.csv", **cfg):
    path = write_table(tmp_path / name, rows)
    p = make_params(data={"raw_path": str(path), **cfg}, split={"val_ratio": 0.2, "test_ratio": 0.2})
    return p


def _rows(cats, n=6):
    return [{"id": f"{c}{i}", "text": f"text {c} {i}", "pick": "Pick", "category": c} for c in cats for i in range(n)] \
        + [{"id": f"d{i}", "text": f"declined {i}", "pick": "Decline", "category": ""} for i in range(6)]


def test_degenerate_data_is_refused(tmp_path):
    p = _data(tmp_path, _rows(["A"]))
    with pytest.raises(DataError, match=r"only one category \('A'\).*at least two"):
        prepare(p.data, p.split)
    p = _data(tmp_path, _rows(["politics", "POLITICS", "Sport"]))
    with pytest.raises(DataError, match=r"\['POLITICS', 'politics'\].*differ only in case"):
        prepare(p.data, p.split)
    rows = [dict(r, pick="Pick") if r["pick"] == "Decline" else r for r in _rows(["A", "B"])]
    rows = [dict(r, category="A") if r["category"] == "" else r for r in rows]
    p = _data(tmp_path, rows)
    with pytest.raises(DataError, match=r"no row is Decline in column 'pick' \(data.pick_column"):
        prepare(p.data, p.split)
    p = make_params(data={"raw_path": str(write_table(tmp_path / "r.csv", _rows(["A", "B"])))},
                    split={"val_ratio": 0.0, "test_ratio": 0.2})
    with pytest.raises(DataError, match=r"the val split is empty \(split.val_ratio is 0.0\)"):
        prepare(p.data, p.split)


def test_cross_split_duplicates_warn_or_drop(tmp_path):
    rows = _rows(["A", "B"], n=10)
    for r in rows:
        r["text"] = r["text"].rsplit(" ", 1)[0]  # every text of a category is the same text
    p = _data(tmp_path, rows)
    prep = prepare(p.data, p.split)
    assert prep.cross_split_duplicates["test"] == len(prep.splits["test"]) > 0
    assert "have the exact text of a train row (ids: val " in prep.warnings[0] and "; kept" in prep.warnings[0]
    first_val = prep.splits["val"]["id"].iloc[0]  # every val row is a duplicate here: the first is named
    assert f"val {first_val}" in prep.warnings[0]
    p = _data(tmp_path, rows, drop_cross_split_duplicates=True)
    with pytest.raises(DataError, match="every val row's text is also in train"):
        prepare(p.data, p.split)


def test_read_errors_name_the_place(tmp_path):
    bad = tmp_path / "latin.csv"
    bad.write_bytes("id,text,pick,category\n1,caf\xe9 news,Pick,A\n".encode("latin-1"))
    p = make_params(data={"raw_path": str(bad)})
    with pytest.raises(DataError, match=r"not valid utf-8 text at byte 27 \(line 2: .*set data.encoding"):
        prepare(p.data, p.split)
    semi = tmp_path / "semi.csv"
    semi.write_text("id;text;pick;category\n1;a;Pick;A\n")
    p = make_params(data={"raw_path": str(semi)})
    with pytest.raises(DataError, match="Only one column was found.*separated by something other than commas"):
        prepare(p.data, p.split)
    jl = tmp_path / "broken.jsonl"
    jl.write_text(json.dumps({"id": "1", "text": "a", "pick": "Pick", "category": "A"}) + "\n{\"id\": 2, text}\n")
    p = make_params(data={"raw_path": str(jl)})
    with pytest.raises(DataError, match=r"broken.jsonl: line 2 is not valid JSON"):
        prepare(p.data, p.split)


def test_latin1_with_the_encoding_param_reads(tmp_path):
    rows = _rows(["A", "B"])
    rows[0]["text"] = "café"
    path = tmp_path / "latin.csv"
    pd.DataFrame(rows).to_csv(path, index=False, encoding="latin-1")
    p = make_params(data={"raw_path": str(path), "encoding": "latin-1"}, split={"val_ratio": 0.2, "test_ratio": 0.2})
    assert "café" in set(pd.concat(prepare(p.data, p.split).splits.values())["text"])


def test_max_length_beyond_the_position_embeddings_is_refused(demo_encoder_dir, tmp_path):
    import shutil

    ckpt = tmp_path / "absolute"
    shutil.copytree(demo_encoder_dir, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config.update(position_biased_input=True, max_position_embeddings=32)
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"tokenize.max_length is 64 but .*max_position_embeddings 32"):
        validate_checkpoint(ckpt, max_length=64)
    validate_checkpoint(ckpt, max_length=32)
    validate_checkpoint(demo_encoder_dir, max_length=4096)  # relative positions (DeBERTa-v3): no absolute limit


def test_strict_params_file_still_names_unknown_keys(tmp_path, demo_encoder_dir):
    path = params_file(tmp_path, demo_encoder_dir)
    text = open(path).read().replace("  lr: 0.001", "  lr: 0.001\n  lr_typo: 1", 1)
    open(path, "w").write(text)
    with pytest.raises(ParamsError, match="unknown key"):
        load_params(path)


def test_csv_line_numbers_count_multi_line_fields(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('id,text,pick,category\n1,"two\nlines",Pick,A\n\n2,"three\nline\ntext",Pick,A\n3,ok,Maybe,A\n')
    p = make_params(data={"raw_path": str(path)})
    with pytest.raises(DataError, match=r"row 2 \(line 8 of the CSV\).*unknown value 'Maybe'"):
        prepare(p.data, p.split)


def test_duplicate_params_key_is_caught_by_check(demo_encoder_dir, tmp_path, capsys):
    path = params_file(tmp_path, demo_encoder_dir)
    text = open(path).read().replace("\n  epochs:", "\n  lr: 0.5\n  epochs:", 1)  # train.lr given twice
    open(path, "w").write(text)
    assert main(["check", "--params", path]) == 1  # check: 1 = problems found
    cap = capsys.readouterr()
    out = cap.out + cap.err
    assert "key 'lr' given twice in one section (first on line" in out and "DVC refuses such a file too" in out


@pytest.mark.parametrize("damage", ["cut", "header", "tiny"])
def test_truncated_safetensors_is_caught_by_check(demo_encoder_dir, tmp_path, capsys, damage):
    import shutil
    enc = tmp_path / "enc"
    shutil.copytree(demo_encoder_dir, enc)
    weights = enc / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"cut": data[:len(data) - 1000], "header": data[:20], "tiny": data[:5]}[damage])
    want = {"cut": "truncated; copy or download it again", "header": "bytes of header but the file has 20 bytes",
            "tiny": "too short to be a safetensors file"}[damage]
    with pytest.raises(CheckpointError, match=want):
        validate_checkpoint(enc)
    assert main(["check", "--params", params_file(tmp_path, enc)]) == 1
    cap = capsys.readouterr()
    assert f"{weights}" in cap.out + cap.err


def test_sharded_index_naming_a_missing_shard_is_caught(demo_encoder_dir, tmp_path):
    import shutil
    enc = tmp_path / "enc"
    shutil.copytree(demo_encoder_dir, enc)
    (enc / "model.safetensors").rename(enc / "model-00001-of-00002.safetensors")
    (enc / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match=r"lists 1 shard\(s\) not in the directory: \['model-00002-of-00002"):
        validate_checkpoint(enc)


def test_japanese_texts_on_an_english_tokenizer_are_not_ready_by_characters(demo_encoder_dir, tmp_path, capsys):
    """Japanese news with the English demo tokenizer as the checkpoint: most *characters* sit inside unknown tokens
    (whole phrases fold into one [UNK]), and check says not ready with exit 1, before anything runs."""
    from conftest import japanese_rows

    raw = write_table(tmp_path / "ja.csv", japanese_rows())
    path = params_file(tmp_path, demo_encoder_dir, **{"data.raw_path": str(raw), "predict.input": str(raw)})
    rc = main(["check", "--params", path])
    err = capsys.readouterr().err
    assert rc == 1 and "not ready above 5%" in err, err
    share = float(err.split("% of the characters")[0].rsplit(" ", 1)[-1])
    assert share > 50   # the token share understates it: the characters are the measure
    assert "1 problem(s)" in err


def test_own_data_without_a_checkpoint_measures_the_tokenizer_the_pipeline_will_build(tmp_path, capsys):
    """No checkpoint: the from-scratch encoder is not built yet, so check builds its tokenizer from the train texts
    (in a temporary folder) and measures it on the val texts: Japanese is read, and nothing is written."""
    from conftest import japanese_rows

    raw = write_table(tmp_path / "ja.csv", japanese_rows())
    path = params_file(tmp_path, ROOT / "models" / "stage1", **{
        "data.raw_path": str(raw), "predict.input": str(raw),
        "stage1.base_model": str(ROOT / "models" / "demo_encoder")})
    before = sorted(p.name for p in tmp_path.iterdir())
    report = run_check(path, root=ROOT)
    assert not report.errors, report.lines()
    line = next(m for m in report.ok if "the tokenizer build_demo_encoder will build" in m)
    assert "reads the texts" in line and float(line.split("% of the characters")[0].rsplit("(", 1)[-1]) < 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == before
