import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from twohead.config.errors import CheckpointError
from twohead.data.tokenization import encode, to_arrow, write_tokenized
from twohead.model.checkpoint import load_tokenizer


def test_demo_encoder_directory_layout(demo_encoder_dir):
    names = {p.name for p in demo_encoder_dir.iterdir()}
    assert {"spm.model", "tokenizer_config.json", "config.json", "model.safetensors"} <= names
    assert "tokenizer.json" not in names  # like DeBERTa-v3's release: the spm-only path is exercised
    cfg = json.loads((demo_encoder_dir / "config.json").read_text())
    assert cfg["model_type"] == "deberta-v2" and cfg["relative_attention"] is True


def test_roundtrip_matches_sentencepiece(demo_encoder_dir):
    tok = load_tokenizer(demo_encoder_dir)
    assert tok.is_fast
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    sp = spm.SentencePieceProcessor(model_file=str(demo_encoder_dir / "spm.model"))
    s = "Over 4 Million Americans Roll Up Sleeves For COVID Boosters"
    ids = tok(s)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids[1:-1] == sp.encode(s)
    assert len(set(ids[1:-1])) > 5 and tok.unk_token_id not in ids  # a real segmentation, not [UNK]s
    assert tok.decode(ids, skip_special_tokens=True) == s


def test_model_vocab_covers_the_tokenizer(demo_encoder_dir):
    from transformers import AutoModel

    tok = load_tokenizer(demo_encoder_dir)
    model = AutoModel.from_pretrained(str(demo_encoder_dir))
    assert model.config.vocab_size >= len(tok)
    assert tok.mask_token_id < model.config.vocab_size


def test_demo_encoder_build_is_reproducible(demo_encoder_dir, tmp_path):
    from conftest import demo_texts
    from twohead.config.params import DemoEncoderParams
    from twohead.demo import build_demo_encoder

    cfg = DemoEncoderParams(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=0)
    again = build_demo_encoder(cfg, demo_texts(), tmp_path / "again")
    for name in ("spm.model", "model.safetensors", "config.json"):
        assert (again / name).read_bytes() == (demo_encoder_dir / name).read_bytes(), name


def test_truncation_keeps_special_tokens_and_counts(demo_encoder_dir):
    tok = load_tokenizer(demo_encoder_dir)
    texts = ["short", " ".join(["politics"] * 50), "news", " ".join(["world news today"] * 20)]
    full = [tok(t)["input_ids"] for t in texts]
    assert [len(f) > 12 for f in full] == [False, True, False, True]
    ids, n_trunc = encode(tok, texts, max_length=12, batch_size=3)
    assert n_trunc == 2
    assert ids[0] == full[0] and ids[2] == full[2]
    for i in (1, 3):
        assert len(ids[i]) == 12 and ids[i][0] == tok.cls_token_id and ids[i][-1] == tok.sep_token_id
        assert ids[i][:-1] == full[i][:11]


def test_arrow_format_is_unpadded_int32(tmp_path):
    df = pd.DataFrame({"id": ["a", "b"], "labels_task1": [1, -100], "labels_task2": [3, 0]})
    table = to_arrow(df, [[1, 5, 6, 2], [1, 2]])
    path = tmp_path / "t.parquet"
    write_tokenized(path, table)
    back = pq.read_table(path)
    assert back.schema.field("input_ids").type == pa.list_(pa.int32())
    assert back["input_ids"].to_pylist() == [[1, 5, 6, 2], [1, 2]]
    assert back["length"].to_pylist() == [4, 2]
    assert back["labels_task1"].to_pylist() == [1, -100]


def test_missing_checkpoint_and_broken_tokenizer(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path / "empty")


def test_head_tail_keeps_both_ends_of_a_long_text(demo_encoder_dir):
    """tokenize.truncation: head_tail — a long text keeps its first head_share of the room and its last tokens;
    short texts are untouched; head (the default) is the tokenizer's own truncation."""
    tok = load_tokenizer(demo_encoder_dir)
    words = [f"news{i} politics{i % 7} market" for i in range(200)]
    long_text, short = " ".join(words), "a short headline"
    body = tok(long_text, add_special_tokens=False)["input_ids"]
    ids, n_cut = encode(tok, [long_text, short], 64, 16, truncation="head_tail", head_share=0.25)
    room = 64 - 2                                       # [CLS] … [SEP]
    head, tail = round(room * 0.25), room - round(room * 0.25)
    assert n_cut == 1 and len(ids[0]) == 64 and len(body) > 200
    assert ids[0] == [tok.cls_token_id, *body[:head], *body[-tail:], tok.sep_token_id]
    assert ids[1] == tok(short)["input_ids"]
    plain, _ = encode(tok, [long_text], 64, 16)
    assert plain[0] == tok(long_text, truncation=True, max_length=64)["input_ids"] and plain[0] != ids[0]
    with pytest.raises(ValueError, match="truncation must be one of"):
        encode(tok, [short], 64, 16, truncation="middle")


def test_head_tail_never_reads_a_text_twice(demo_encoder_dir):
    """A text long in characters (past max_length × 100) whose tokens fit: its head and tail cuts used to overlap,
    and it came out as [CLS] … night Senate … night [SEP]."""
    tok = load_tokenizer(demo_encoder_dir)
    text = "Senate passes the budget bill" + " " * 30000 + "after a long night"
    ids, _ = encode(tok, [text], 64, 16, truncation="head_tail", head_share=0.25)
    whole = tok("Senate passes the budget bill after a long night")["input_ids"]
    assert ids[0] == whole and len(ids[0]) < 64


def test_check_reports_the_cut_share_and_suggests_head_tail(demo_encoder_dir):
    from twohead.check import Report, check_truncation

    tok = load_tokenizer(demo_encoder_dir)
    texts = ["word " * 300] * 3 + ["short text"] * 7   # 30% of the texts are longer than 128 tokens
    report = Report()
    shares = check_truncation(tok, texts, 128, "head", report)
    assert shares[128] == pytest.approx(0.3) and shares[1024] == 0.0
    assert len(report.warnings) == 1 and "cuts 30.0% of the training texts" in report.warnings[0]
    assert "tokenize.truncation: head_tail" in report.warnings[0]
    fine = Report()
    check_truncation(tok, ["short text"] * 10, 128, "head", fine)
    assert not fine.warnings and "cuts 0.0%" in fine.ok[0]
