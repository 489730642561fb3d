"""Reliability round 4: what a hostile or merely odd file could do — run code, inject markup into a page or a
spreadsheet, split one class in two, stop a stage with a traceback — ends in one line naming the place, or is
handled and reported. (Resume states: tests/test_state_safety.py; predict: tests/test_predict.py.)"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import make_params, write_table
from twohead.check import run_check
from twohead.config.errors import CheckpointError, DataError, ParamsError
from twohead.data.io import page_safe, spreadsheet_safe, write_csv
from twohead.data.labels import prepare
from twohead.model.checkpoint import validate_checkpoint


def _rows(cats, n=8, decline=8):
    picks = [{"id": f"{i}-{c}", "text": f"text {c} {i}", "pick": "Pick", "category": c} for c in cats for i in range(n)]
    return picks + [{"id": f"d{i}", "text": f"declined {i}", "pick": "Decline", "category": ""} for i in range(decline)]


def _data(tmp_path, rows, **split):
    path = write_table(tmp_path / "raw.csv", rows)
    return make_params(data={"raw_path": str(path)}, split=split)


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_checkpoint_that_needs_its_own_code_is_refused(demo_encoder_dir, tmp_path, where):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(demo_encoder_dir, ckpt)
    cfg = json.loads((ckpt / where).read_text())
    cfg["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (ckpt / where).write_text(json.dumps(cfg))
    (ckpt / "evil.py").write_text("import os\nos.system('touch /tmp/twohead_evil_ran')\n")
    with pytest.raises(CheckpointError, match="needs its own Python code.*never runs code"):
        validate_checkpoint(ckpt)


def test_a_weight_pickle_that_needs_code_is_refused_by_check(demo_encoder_dir, tmp_path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    ckpt = tmp_path / "ckpt"
    shutil.copytree(demo_encoder_dir, ckpt)
    (ckpt / "model.safetensors").unlink()
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(CheckpointError, match="pytorch_model.bin: not plain tensors.*convert the checkpoint"):
        validate_checkpoint(ckpt)


def test_names_reach_pages_and_spreadsheets_harmless(tmp_path):
    names = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "ARTS & CULTURE"]
    safe = page_safe(names)
    assert not any("<" in n or ">" in n for n in safe) and safe[2] == "ARTS & CULTURE"
    assert "script" in safe[0] and "onerror" in safe[1]  # still readable
    df = pd.DataFrame({"class": ["=HYPERLINK(\"http://x\")", "+1+2", "@SUM(A1)", "-0.5", "POLITICS", "-cmd"],
                       "n": [1, 2, 3, 4, 5, 6]})
    out = spreadsheet_safe(df)
    assert list(out["class"]) == ["'=HYPERLINK(\"http://x\")", "'+1+2", "'@SUM(A1)", "-0.5", "POLITICS", "'-cmd"]
    assert spreadsheet_safe(df[df["class"] == "POLITICS"]) is not df  # a slice: only what needs it changes
    plain = pd.DataFrame({"class": ["A", "B"]})
    assert spreadsheet_safe(plain) is plain
    write_csv(tmp_path / "t.csv", df)
    assert "'=HYPERLINK" in (tmp_path / "t.csv").read_text()


def test_invisible_variants_are_one_class_and_zero_width_texts_are_empty(tmp_path):
    rows = _rows(["POLITICS", "CAF\u00c9", "SPORT"]) + [
        {"id": f"z{i}", "text": f"more politics {i}", "pick": "Pick", "category": "POLITICS\u200b"} for i in range(4)] \
        + [{"id": f"n{i}", "text": f"more cafe {i}", "pick": "Pick", "category": "CAFE\u0301"} for i in range(4)]
    p = _data(tmp_path, rows)
    prep = prepare(p.data, p.split)
    assert prep.categories == ["CAF\u00c9", "POLITICS", "SPORT"] and prep.names_respelled == 2
    assert any("2 category spelling(s)" in w for w in prep.warnings)
    bad = _data(tmp_path, _rows(["A", "B"]) + [{"id": "zw", "text": "\u200b\u200d ", "pick": "Pick", "category": "A"}])
    with pytest.raises(DataError, match=r"id 'zw'.*empty text"):
        prepare(bad.data, bad.split)


def test_a_dollar_in_a_category_is_drawn_as_text(tmp_path):
    from twohead.evaluate.plots import per_class_recall, top_confusions

    per_class = pd.DataFrame({"class": ["COST $\\bad$", "C$ / US$"], "band": ["Head", "Head"], "recall": [0.5, 0.2],
                              "train_support": [10, 5], "test_support": [3, 2]})
    per_class_recall(per_class, ["Head"], tmp_path / "r.png", "caption with $ too")
    confusion = pd.DataFrame({"actual": ["COST $\\bad$"] * 3, "predicted": ["C$ / US$"] * 3})
    top_confusions(confusion, 5, tmp_path / "c.png", "x")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "c.png").stat().st_size > 0


def test_max_length_is_bounded_and_huge_texts_are_cut_before_tokenizing(demo_encoder_dir):
    from twohead.data.tokenization import CHARS_PER_TOKEN, encode
    from twohead.model.checkpoint import load_tokenizer

    with pytest.raises(ParamsError, match=r"tokenize.max_length must be in \[8, 4096\]"):
        make_params(tokenize={"max_length": 100000})
    tok = load_tokenizer(demo_encoder_dir)
    huge = "word " * 400_000  # 2 MB
    ids, truncated = encode(tok, [huge, "short text"], 64, 10)
    assert truncated == 1 and len(ids[0]) == 64 and len(ids[1]) < 64
    spaced = "a" + " " * (64 * CHARS_PER_TOKEN + 10) + "b"  # cut, though only two tokens: counted as truncated
    assert encode(tok, [spaced], 64, 10)[1] == 1


def test_check_names_a_train_split_without_decline_rows(tmp_path):
    rows = _rows(["A", "B"], decline=6)
    for r in rows:
        r["split"] = "val" if r["pick"] == "Decline" else ("train" if int(r["id"].split("-")[0]) < 6 else "test")
    path = write_table(tmp_path / "raw.csv", rows)
    p = make_params(data={"raw_path": str(path), "split_column": "split"})
    with pytest.raises(DataError, match=r"train split has no Decline row \(6 in all"):
        prepare(p.data, p.split)


def test_check_reports_the_same_problem(tmp_path, demo_encoder_dir):
    import yaml

    from conftest import committed_text

    rows = _rows(["A", "B"], decline=6)
    for r in rows:
        r["split"] = "val" if r["pick"] == "Decline" else ("train" if int(r["id"].split("-")[0]) < 6 else "test")
    raw = yaml.safe_load(committed_text("params.yaml"))
    raw["data"].update(raw_path=str(write_table(tmp_path / "raw.csv", rows)), split_column="split")
    raw["model"]["stage1_checkpoint"] = str(demo_encoder_dir)
    raw["predict"]["input"] = str(tmp_path / "raw.csv")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    report = run_check(tmp_path / "params.yaml", root=tmp_path)
    assert any("train split has no Decline row" in e for e in report.errors)


def test_a_verdict_between_single_runs_says_what_it_means():
    from twohead.experiments.compare import ONE_RUN_CAVEAT, pts, to_markdown

    assert pts(0.0004) == "+0.040" and pts(0.0123) == "+1.2" and pts(0.0) == "+0.0"
    m = {"base": 0.5, "other": 0.5004, "delta": 0.0004, "ci_low": 0.0001, "ci_high": 0.0007, "p_value": 0.04,
         "verdict": "better"}
    text = to_markdown({"test_rows": 1000, "resamples": 2000, "seed": 0, "base": {"rev": "a"},
                        "comparisons": [{"rev": "b", "metrics": {"task2_acc": m}}],
                        "detectable_task2_acc": 0.03})
    assert ONE_RUN_CAVEAT in text and "better (these two models)" in text and "[+0.010, +0.070]" in text
    assert "--group-by" in text and np.isfinite(0.0)


def test_tokenizer_coverage_flags_a_checkpoint_that_cannot_read_the_texts(demo_encoder_dir):
    """The demo encoder's tokenizer reads the demo's English; on Japanese news most tokens are unknown — said with
    examples — and an uncased BERT-style normaliser that strips voicing marks is caught too."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from twohead.data.coverage import coverage, warnings
    from twohead.model.checkpoint import load_tokenizer

    tok = load_tokenizer(demo_encoder_dir)
    english = ["Senate passes the budget bill", "Stocks rally as markets open higher"]
    japanese = ["インタビューで首相は経済政策について語った", "東京都で新しい美術館が開館した"]
    ok = coverage(tok, english)
    assert ok["ok"] and ok["unknown_share"] < 0.01 and warnings(ok, "x") == []
    bad = coverage(tok, japanese)
    assert not bad["ok"] and bad["unknown_share"] > 0.05 and bad["unknown_examples"]
    assert "unknown token" in warnings(bad, "model.stage1_checkpoint")[0]

    vocab = {"[UNK]": 0, "[PAD]": 1, **{ch: i + 2 for i, ch in enumerate("インタヒュービーで")}}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bert = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    c = coverage(bert, ["インタビューで"])
    assert c["normaliser_changed_share"] > 0.1 and "ビ" in c["changed_examples"][0]
    assert any("normaliser changes or drops" in w for w in warnings(c, "x"))


def test_check_says_when_predict_input_is_still_the_demo(tmp_path, demo_encoder_dir):
    import yaml

    from conftest import DEMO_CSV, ROOT, committed_text

    raw = yaml.safe_load(committed_text("params.yaml"))
    rows = _rows(["A", "B"])
    raw["data"]["raw_path"] = str(write_table(tmp_path / "mine.csv", rows))
    raw["model"]["stage1_checkpoint"] = str(demo_encoder_dir)
    raw["predict"]["input"] = str(DEMO_CSV)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    report = run_check(tmp_path / "params.yaml", root=ROOT)
    assert any("still the demo's articles" in w for w in report.warnings)
    assert any("reads the texts" in m for m in report.ok)


def test_figure_footers_wrap_to_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    from twohead.evaluate.plots import save_figure

    fig = plt.figure(figsize=(5.0, 4.0))
    save_figure(fig, tmp_path / "a.png", "checkpoint models/stage1 | " + "lr 0.001, LLRD 0.8, " * 20)
    footer = fig.texts[0].get_text()
    assert "\n" in footer and max(len(line) for line in footer.split("\n")) <= 5 * 17
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
