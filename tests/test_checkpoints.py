"""Bring-your-own Stage-1 checkpoints: each layout loads and trains; each defect gets a clear error."""

import json
import shutil

import pytest
import torch

from conftest import build_bert, make_params, replace, stage_paths, train_in
from twohead.model.checkpoint import CheckpointError, load_tokenizer, validate_checkpoint
from twohead.model.two_head import load_stage2
from twohead.pipeline import tokenize


@pytest.fixture(scope="module")
def deberta_json_bin(demo_encoder_dir, tmp_path_factory):
    """DeBERTa with tokenizer.json (no spm.model) and pytorch_model.bin weights."""
    from transformers import AutoModel

    d = tmp_path_factory.mktemp("ckpt") / "deberta_json_bin"
    load_tokenizer(demo_encoder_dir).save_pretrained(str(d))
    (d / "spm.model").unlink(missing_ok=True)
    model = AutoModel.from_pretrained(str(demo_encoder_dir))
    model.config.save_pretrained(str(d))  # transformers 5 saves only safetensors: write the .bin by hand
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    return d


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A BERT-style encoder with a WordPiece tokenizer trained here on the demo texts."""
    return build_bert(tmp_path_factory.mktemp("ckpt") / "bert")


@pytest.mark.parametrize("layout", ["spm_only_safetensors", "tokenizer_json_bin", "bert"])
def test_each_layout_loads_and_trains_one_short_epoch(layout, demo_encoder_dir, deberta_json_bin, bert_dir,
                                                      tiny_data, tmp_path):
    ckpt = {"spm_only_safetensors": demo_encoder_dir, "tokenizer_json_bin": deberta_json_bin, "bert": bert_dir}[layout]
    names = {f.name for f in ckpt.iterdir()}
    if layout == "spm_only_safetensors":
        assert "tokenizer.json" not in names and "model.safetensors" in names
    if layout == "tokenizer_json_bin":
        assert "spm.model" not in names and "pytorch_model.bin" in names and "tokenizer.json" in names
        from twohead.model.checkpoint import load_encoder
        a, b = load_encoder(ckpt).state_dict(), load_encoder(demo_encoder_dir).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in b)  # the .bin holds the same weights
    _, info = validate_checkpoint(ckpt)
    assert info["model_type"] == ("bert" if layout == "bert" else "deberta-v2")
    data_dir, p = tiny_data
    p = replace(replace(p, "model", stage1_checkpoint=str(ckpt)), "train", epochs=1, max_train_rows=64)
    tokenize.run(p, tokenize.TokenizePaths(data_dir / "prepared", tmp_path / "tokenized", tmp_path / "tok.json"))
    (tmp_path / "prepared").symlink_to(data_dir / "prepared")
    m = train_in(tmp_path, tmp_path, p)
    assert m["epoch"] == 1 and m["train_rows"] == 64 and 0 <= m["val_acc_task2"] <= 1
    model, tok, _ = load_stage2(tmp_path / "models" / "stage2")
    assert type(model.encoder).__name__ == ("BertModel" if layout == "bert" else "DebertaV2Model")
    ids = tok("the senate passed the bill")["input_ids"]
    assert ids == load_tokenizer(ckpt)("the senate passed the bill")["input_ids"]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_config_and_weights(demo_encoder_dir, tmp_path):
    d = _copy(demo_encoder_dir, tmp_path / "a")
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        validate_checkpoint(d)
    d = _copy(demo_encoder_dir, tmp_path / "b")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no weights \(model.safetensors / pytorch_model.bin\)"):
        validate_checkpoint(d)
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        validate_checkpoint(tmp_path / "nowhere")


def test_missing_protobuf_is_named(demo_encoder_dir, monkeypatch):
    import twohead.model.checkpoint as tz

    monkeypatch.setattr(tz, "_missing_packages", lambda: ["google.protobuf"])
    with pytest.raises(CheckpointError, match=r"spm.model.*needs the package\(s\) protobuf: pip install protobuf"):
        validate_checkpoint(demo_encoder_dir)


def test_tokenizer_larger_than_vocab(demo_encoder_dir, tmp_path):
    d = _copy(demo_encoder_dir, tmp_path / "c")
    cfg = json.loads((d / "config.json").read_text())
    cfg["vocab_size"] = 100
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tokenizer has 1000 tokens but config.json's vocab_size is 100"):
        validate_checkpoint(d)


def test_encoder_decoder_is_refused(demo_encoder_dir, tmp_path):
    from transformers import T5Config, T5Model

    d = tmp_path / "t5"
    T5Model(T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(str(d))
    for f in demo_encoder_dir.iterdir():
        if f.name in ("spm.model", "tokenizer_config.json"):
            shutil.copy(f, d / f.name)
    with pytest.raises(CheckpointError, match="'t5' is an encoder-decoder"):
        validate_checkpoint(d)


def test_stage1_trains_and_keeps_the_input_layout(demo_encoder_dir, tiny_data, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from twohead.pipeline.pretrain_stage1 import Stage1Paths, run

    data_dir, p = tiny_data
    out = tmp_path / "stage1"
    p = make_params(**{**{k: v for k, v in {
        "data": {"raw_path": p.data.raw_path}, "split": {"val_ratio": 0.2, "test_ratio": 0.2},
        "tokenize": {"max_length": 64},
        "model": {"stage1_checkpoint": str(out)},
        "stage1": {"base_model": str(demo_encoder_dir), "epochs": 1, "lr": 3e-3, "batch_size": 16},
        "train": {"device": "cpu"}}.items()}})
    m = run(p, stage_paths(Stage1Paths, tmp_path, prepared=data_dir / "prepared", stage1_model=out))
    assert m["trained"] is True and 0 < m["val_acc"] <= 1 and m["train_rows"] > 0
    names = {f.name for f in out.iterdir()}
    assert {"config.json", "model.safetensors", "spm.model", "tokenizer_config.json",
            "stage1_head.safetensors"} <= names
    assert "tokenizer.json" not in names  # the base's tokenizer files, unchanged
    assert (out / "spm.model").read_bytes() == (demo_encoder_dir / "spm.model").read_bytes()
    AutoTokenizer.from_pretrained(str(out))
    AutoModel.from_pretrained(str(out))
    before, after = load_file(str(demo_encoder_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(before) == set(after)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the encoder was trained
    saved = json.loads((tmp_path / "metrics" / "stage1.json").read_text())
    assert saved["val_f1_pick"] == pytest.approx(m["val_f1_pick"])
    assert [f.name for f in (tmp_path / "models" / "stage1_state").iterdir()] == ["DONE.json"]  # cleared after success


def test_stage1_skips_when_another_checkpoint_is_used(demo_encoder_dir, tiny_data, tmp_path):
    from twohead.pipeline.pretrain_stage1 import Stage1Paths, run

    data_dir, _ = tiny_data
    out = tmp_path / "stage1"
    p = make_params(model={"stage1_checkpoint": str(demo_encoder_dir)},
                    stage1={"base_model": str(demo_encoder_dir)})
    m = run(p, stage_paths(Stage1Paths, tmp_path, prepared=data_dir / "prepared", stage1_model=out))
    assert m == {"trained": False, "stage1_checkpoint": str(demo_encoder_dir)}
    assert [f.name for f in out.iterdir()] == ["SKIPPED.json"]


def test_missing_packages_detects_absent_protobuf(monkeypatch):
    import importlib.util

    import twohead.model.checkpoint as tz

    real = importlib.util.find_spec

    def fake(name, *a, **k):
        if name == "google.protobuf":
            raise ModuleNotFoundError("No module named 'google'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    assert tz._missing_packages() == ["google.protobuf"]
