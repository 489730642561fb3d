"""The masked-LM phase (pretrain_mlm): which texts it trains on, what it refuses, that it learns, that Stage 1 starts
from it, and that a killed run resumes to byte-identical weights."""

import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT, build_bert, replace, stage_paths
from twohead.config.errors import CheckpointError
from twohead.config.params import to_dict
from twohead.data.batching import make_collate
from twohead.model.checkpoint import load_encoder, load_tokenizer
from twohead.pipeline import pretrain_mlm, pretrain_stage1
from twohead.train.fit import KILL_AFTER_SAVE_ENV
from twohead.train.masked_lm import MaskedLMObjective, mlm_datasets


def _mlm_params(tiny_data, encoder, **mlm):
    data_dir, p = tiny_data
    p = replace(p, "model", stage1_checkpoint="models/stage1")
    p = replace(p, "stage1", base_model=str(encoder), epochs=1, batch_size=16, lr=3e-3)
    return data_dir, replace(p, "mlm", **{"epochs": 2, "batch_size": 16, "lr": 3e-3, **mlm})


def _paths(root, data_dir):
    return stage_paths(pretrain_mlm.MlmPaths, root, prepared=data_dir / "prepared", stage1_model="models/stage1")


def test_train_texts_only_unless_transductive_and_the_pool_joins(tiny_data, demo_encoder_dir, tmp_path):
    import pandas as pd

    data_dir, p = _mlm_params(tiny_data, demo_encoder_dir)
    splits = {s: pd.read_parquet(data_dir / "prepared" / f"{s}.parquet") for s in ("train", "val", "test")}
    tok = load_tokenizer(demo_encoder_dir)
    train, val, sources = mlm_datasets(p, data_dir / "prepared", tok)
    assert set(train.ids) == set(splits["train"]["id"].astype(str))   # no val/test text is trained on
    assert set(val.ids) == set(splits["val"]["id"].astype(str))       # val texts score it, held out
    assert sources == {"train_texts": len(splits["train"]), "pool_texts": 0}

    pool = tmp_path / "pool.jsonl"
    pd.DataFrame({"text": ["an unlabelled article about the economy", "another one on sport"]}).to_json(
        pool, orient="records", lines=True)
    p2 = replace(replace(p, "data", unlabeled_path=str(pool)), "mlm", transductive=True)
    train2, _, sources2 = mlm_datasets(p2, data_dir / "prepared", tok)
    expected = set().union(*(set(splits[s]["id"].astype(str)) for s in splits)) | {"pool:0", "pool:1"}
    assert set(train2.ids) == expected
    assert sources2 == {"train_texts": len(splits["train"]), "val_texts": len(splits["val"]),
                        "test_texts": len(splits["test"]), "pool_texts": 2}
    header_only = tmp_path / "none.csv"
    header_only.write_text("text\n")
    _, _, sources3 = mlm_datasets(replace(p, "data", unlabeled_path=str(header_only)), data_dir / "prepared", tok)
    assert sources3["pool_texts"] == 0


def test_masking_takes_15_percent_of_real_tokens_and_never_pads_or_specials(demo_encoder_dir):
    tok = load_tokenizer(demo_encoder_dir)
    obj = MaskedLMObjective(tok, 0.15, seed=0)
    ids = tok(["world news " * 30, "politics today"], truncation=True, max_length=64)["input_ids"]
    items = [(torch.tensor(x).numpy(), -100, -100, i) for i, x in enumerate(ids)]
    batches = [make_collate(tok.pad_token_id, "longest", 64)(items) for _ in range(200)]
    for b in batches:
        obj.mask(b)
    real = len(batches) * sum(t not in tok.all_special_ids for x in ids for t in x)
    masked = sum(len(b["mlm_positions"]) for b in batches)
    assert 0.13 < masked / real < 0.17
    for b in batches:
        picked = torch.zeros(b["input_ids"].numel(), dtype=torch.bool)
        picked[b["mlm_positions"]] = True
        picked = picked.view(b["input_ids"].shape)
        assert not picked[b["attention_mask"] == 0].any()
        assert not picked[:, 0].any()                          # [CLS] never masked
        assert (b["labels_task1"] != -100).all() and len(b["labels_task1"]) == int(picked.sum())
    replaced = sum(int((b["input_ids"].view(-1)[b["mlm_positions"]] == tok.mask_token_id).sum()) for b in batches)
    assert 0.75 < replaced / masked < 0.85                     # 80% become [MASK]


def test_no_mask_token_is_one_line_naming_the_checkpoint(tiny_data, tmp_path):
    ckpt = build_bert(tmp_path / "bert_no_mask", mask=False)
    data_dir, p = _mlm_params(tiny_data, ckpt)
    p = replace(p, "tokenize", max_length=64)
    with pytest.raises(CheckpointError) as e:
        pretrain_mlm.run(p, _paths(tmp_path, data_dir))
    msg = str(e.value)
    assert msg.startswith(str(ckpt)) and "no mask token" in msg and "mlm.epochs: 0" in msg and "\n" not in msg
    assert not (tmp_path / "metrics" / "mlm.json").exists() and not (tmp_path / "models" / "mlm").exists()


@pytest.mark.parametrize("layout", ["deberta_spm_only", "bert"])
def test_mlm_learns_saves_the_encoder_and_stage1_starts_from_it(layout, tiny_data, demo_encoder_dir, tmp_path):
    ckpt = demo_encoder_dir if layout == "deberta_spm_only" else build_bert(tmp_path / "bert")
    data_dir, p = _mlm_params(tiny_data, ckpt, epochs=3, lr=5e-3)
    paths = _paths(tmp_path, data_dir)
    m = pretrain_mlm.run(p, paths, log=lambda *a: None)
    assert m["trained"] and m["fresh_head"] and m["epoch"] == 3
    assert m["trained_texts"] == m["train_texts"] > 0 and m["pool_texts"] == 0   # no pool: the train split alone
    import pandas as pd

    hist = pd.read_csv(paths.mlm_history)
    assert list(hist["epoch"]) == [1, 2, 3]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0] - 0.3   # it learns the texts
    assert hist["val_loss"].iloc[-1] < hist["val_loss"].iloc[0]
    names = {f.name for f in paths.mlm_model.iterdir()}
    assert {"config.json", "model.safetensors", "mlm.json"} <= names
    assert ("spm.model" in names) == (layout == "deberta_spm_only")   # the base's tokenizer files, as they were
    adapted, base = load_encoder(paths.mlm_model).state_dict(), load_encoder(ckpt).state_dict()
    assert adapted.keys() == base.keys()                               # an encoder in the base's layout
    assert not torch.equal(adapted["embeddings.word_embeddings.weight"], base["embeddings.word_embeddings.weight"])

    s1 = stage_paths(pretrain_stage1.Stage1Paths, tmp_path, prepared=data_dir / "prepared",
                     mlm_model=paths.mlm_model, stage1_model=tmp_path / "models" / "stage1")
    p1 = replace(p, "model", stage1_checkpoint=str(tmp_path / "models" / "stage1"))
    assert pretrain_stage1.start(p1, s1) == paths.mlm_model
    assert pretrain_stage1.run(p1, s1)["started_from"] == str(paths.mlm_model)
    assert pretrain_stage1.start(replace(p1, "mlm", epochs=0), s1) == ckpt


def test_off_and_own_stage1_checkpoint_skip_in_one_file(tiny_data, demo_encoder_dir, tmp_path):
    data_dir, p = _mlm_params(tiny_data, demo_encoder_dir)
    for params, reason in ((replace(p, "mlm", epochs=0), "mlm.epochs is 0"),
                           (replace(p, "model", stage1_checkpoint=str(demo_encoder_dir)), "Stage 1 does not run")):
        m = pretrain_mlm.run(params, _paths(tmp_path, data_dir))
        assert m["trained"] is False and reason in m["reason"]
        assert [f.name for f in (tmp_path / "models" / "mlm").iterdir()] == ["SKIPPED.json"]


def _run_stage(cwd, kill_after=None):
    layout = yaml.safe_load((ROOT / "dvc.yaml").read_text())["vars"][0]["paths"]
    args = [a for f in ("prepared", "stage1_model", "mlm_model", "mlm_history", "mlm_metrics", "mlm_speed",
                        "mlm_state") for a in ("--" + f.replace("_", "-"), layout[f])]
    env = {k: v for k, v in os.environ.items() if k != KILL_AFTER_SAVE_ENV}
    if kill_after:
        env[KILL_AFTER_SAVE_ENV] = str(kill_after)
    return subprocess.run([sys.executable, str(ROOT / "stages" / "pretrain_mlm.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_byte_identical_weights(tiny_data, demo_encoder_dir, tmp_path):
    data_dir, p = _mlm_params(tiny_data, demo_encoder_dir, epochs=2, checkpoint_every_steps=3)
    p = replace(p, "data", unlabeled_path="data/unlabeled.csv", corrections="data/corrections.csv")
    runs = {}
    for name in ("ref", "killed"):
        d = tmp_path / name
        (d / "data").mkdir(parents=True)
        (d / "data" / "prepared").symlink_to(data_dir / "prepared")
        for f in ("unlabeled.csv", "corrections.csv"):
            (d / "data" / f).write_bytes((ROOT / "data" / f).read_bytes())
        (d / "params.yaml").write_text(yaml.safe_dump(to_dict(p), sort_keys=False))
        runs[name] = d
    ref = _run_stage(runs["ref"])
    assert ref.returncode == 0, ref.stderr[-3000:]
    first = _run_stage(runs["killed"], kill_after=2)      # killed right after its 2nd save (mid epoch 1)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert not (runs["killed"] / "models" / "mlm").exists()
    second = _run_stage(runs["killed"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming at epoch 1 step 6/" in second.stdout
    for f in ("models/mlm/model.safetensors", "plots/mlm_history.csv"):
        assert (runs["killed"] / f).read_bytes() == (runs["ref"] / f).read_bytes(), f


def test_bucketed_shapes_pad_the_masked_positions_without_changing_the_loss(demo_encoder_dir):
    """On MPS / CUDA (padding: buckets) the head sees a short ladder of shapes: the masked positions are padded to
    the bucket ladder with label -100, and the loss is the unpadded one."""
    from twohead.data.batching import bucket_width
    from twohead.model.masked_lm import load_masked_lm
    from twohead.train.losses import TwoTaskLoss

    tok = load_tokenizer(demo_encoder_dir)
    model, _ = load_masked_lm(demo_encoder_dir)
    model.eval()
    ids = tok(["world news " * 20, "politics today and tomorrow"], truncation=True, max_length=64)["input_ids"]
    items = [(torch.tensor(x).numpy(), -100, -100, i) for i, x in enumerate(ids)]
    loss_fn = TwoTaskLoss(torch.ones(model.encoder.config.vocab_size), torch.ones(1), lambda_task1=1.0,
                          lambda_task2=0.0)
    out = {}
    for padding in ("longest", "buckets"):
        obj = MaskedLMObjective(tok, 0.15, seed=3)
        batch = make_collate(tok.pad_token_id, "longest", 64)(items)
        with torch.no_grad():
            logits, _, terms = obj.hook(loss_fn, padding)(model, batch)
        out[padding] = (batch, logits, terms)
    (b0, _, t0), (b1, l1, t1) = out["longest"], out["buckets"]
    m = len(b0["mlm_positions"])
    assert len(b1["mlm_positions"]) == bucket_width(m) > m and l1.shape[0] == bucket_width(m)
    assert (b1["labels_task1"][m:] == -100).all() and torch.equal(b1["labels_task1"][:m], b0["labels_task1"])
    assert torch.allclose(t0["task1"], t1["task1"]) and t0["task1_den"] == t1["task1_den"] == m


def test_each_mlm_head_layout_gives_vocabulary_logits_at_the_positions(demo_encoder_dir, tmp_path):
    """DeBERTa-v2's two head layouts (legacy `cls`, the newer `lm_predictions` that reads the embedding table) and
    BERT's: logits (M, V) at the given positions, the output layer tied to the word embeddings."""
    import json
    import shutil

    from twohead.model.masked_lm import load_masked_lm

    new = tmp_path / "deberta_new_head"
    shutil.copytree(demo_encoder_dir, new)
    cfg = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**cfg, "legacy": False}))
    for ckpt, kind in ((demo_encoder_dir, "cls"), (new, "lm_predictions"), (build_bert(tmp_path / "b"), "cls")):
        model, fresh = load_masked_lm(ckpt)
        assert model.head_kind == kind and fresh
        vocab = model.encoder.config.vocab_size
        ids = torch.randint(5, 100, (2, 7))
        logits = model(ids, torch.ones_like(ids), torch.tensor([1, 4, 9]))
        assert logits.shape == (3, vocab)
        names = [n for n, _ in model.named_parameters()]
        assert all(n.startswith(("encoder.", "head_mlm.")) for n in names)
        assert "head_mlm.predictions.decoder.weight" not in names   # tied: one parameter, the embeddings'
