"""train_stage2 on a tiny prepared data set (real demo rows, tiny encoder, CPU)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import replace, train_in
from twohead.config.schema import HISTORY_COLUMNS
from twohead.data.batching import SortedBatchSampler, TokenizedDataset, make_collate
from twohead.model.two_head import load_stage2


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    data_dir, p = tiny_data
    out = tmp_path_factory.mktemp("run1")
    return out, train_in(out, data_dir, p)


def test_outputs_and_fields(trained, tiny_data):
    out, metrics = trained
    hist = pd.read_csv(out / "plots" / "train_history.csv")
    switch_only = {"train_loss_hier", "val_loss_hier", "train_loss_rdrop", "lambda_task1", "lambda_task2",
                   "sigma_task1", "sigma_task2"}   # constant with every switch off: not written
    assert list(hist.columns) == [c for c in HISTORY_COLUMNS if c not in switch_only] and len(hist.columns) == 19
    assert list(hist["epoch"]) == [1, 2]
    assert hist.notna().all().all()
    bands = pd.read_csv(out / "plots" / "band_recall.csv")
    assert list(bands.columns) == ["epoch", "band", "recall", "n_classes"]
    assert set(bands["band"]) == {"High", "Mid", "Low"} and len(bands) == 6
    saved = json.loads((out / "metrics" / "train.json").read_text())
    assert saved["kept_epoch"] == 2
    assert saved["val_acc_task2"] == pytest.approx(hist["val_acc_task2"].iloc[-1], rel=1e-5)  # 6 digits
    # timings live in train_speed.json only (they differ run to run; history and train.json must not)
    assert "epoch_seconds" not in saved and "epoch_seconds" not in hist.columns
    speed = json.loads((out / "metrics" / "train_speed.json").read_text())
    assert speed["train_samples_per_second_mean"] > 0 and [e["epoch"] for e in speed["epochs"]] == [1, 2]
    # batch shapes, observed in the run (auto → longest on the CPU), and the host memory
    assert speed["padding"] == "longest" and all(e["train_shapes"] >= 1 for e in speed["epochs"])
    assert speed["max_train_shapes_per_epoch"] == max(e["train_shapes"] for e in speed["epochs"]) >= 1
    assert speed["val_shapes"] >= 1
    assert speed["memory"]["max_peak_rss_mb"] > 100 and speed["memory"]["cache_clears"] == 0  # the CPU: host RSS
    assert all(e["memory_mb"]["peak_rss_mb"] > 100 for e in speed["epochs"])
    assert speed["epoch_seconds_mean"] == pytest.approx(np.mean([e["epoch_seconds"] for e in speed["epochs"]]),
                                                        rel=1e-5)
    steps = [json.loads(x) for x in (out / "logs" / "steps.jsonl").read_text().splitlines()]
    assert steps[-1]["step"] == len(steps) and steps[0]["grad_norm"] > 0
    assert not (out / "plots" / "train_history.csv.partial").exists()
    # training records per epoch and val row what the reporting needs; eval.* is applied by the plot stage
    epochs = pd.read_parquet(out / "metrics" / "val_epochs.parquet")
    val = pd.read_parquet(tiny_data[0] / "prepared" / "val.parquet").set_index("id")
    assert epochs.groupby("epoch").size().to_dict() == {1: len(val), 2: len(val)}
    from twohead.data.prepared import read_label_info
    from twohead.evaluate.tables import val_epoch_reports

    names = read_label_info(tiny_data[0] / "prepared").names
    curve, worst = val_epoch_reports(epochs, val, names, 0.5, 0.9, 7)
    k = min(7, int((val["labels_task2"] != -100).sum()))
    assert worst.groupby("epoch").size().to_dict() == {1: k, 2: k} and list(curve["epoch"]) == [1, 2]
    for _, g in worst.groupby("epoch"):
        assert list(g["rank"]) == list(range(1, k + 1)) and g["loss"].is_monotonic_decreasing
        assert (g["p_gold"] <= g["p_predicted"] + 1e-9).all()
    lower = val_epoch_reports(epochs, val, names, 0.99, 0.9, 7)[0]   # a stricter "low": more rows count as low
    assert (lower["gold_pick_low_conf"] >= curve["gold_pick_low_conf"]).all()
    assert lower["gold_pick_low_conf"].iloc[-1] == pytest.approx(
        float((epochs[(epochs["epoch"] == 2)].set_index("id").loc[val.index[val["labels_task1"] == 1],
                                                                   "p_pred_task2"] < 0.99).mean()))


def test_training_lowers_the_loss(trained):
    out, _ = trained
    hist = pd.read_csv(out / "plots" / "train_history.csv")
    assert hist["train_loss_total"].iloc[1] < hist["train_loss_total"].iloc[0]
    assert hist["train_loss_task2"].iloc[1] < hist["train_loss_task2"].iloc[0]


def test_saved_model_reloads_and_predicts_the_same(trained, tiny_data):
    out, _ = trained
    data_dir, p = tiny_data
    model, tok, maps = load_stage2(out / "models" / "stage2")
    prepared_maps = json.loads((data_dir / "prepared" / "label_maps.json").read_text())
    assert maps["task2"]["names"] == prepared_maps["task2"]["names"]
    assert tok("hello world")["input_ids"][0] == tok.cls_token_id
    ds = TokenizedDataset(data_dir / "tokenized" / "val.parquet", tok.pad_token_id)
    batch = make_collate(tok.pad_token_id)([ds[i] for i in range(8)])
    with torch.inference_mode():
        l1, l2 = model(batch["input_ids"], batch["attention_mask"])
        l1b, l2b = model(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(l2, l2b)  # eval mode: no dropout
    saved_hist = pd.read_csv(out / "plots" / "train_history.csv")
    # recompute val Task2 accuracy from the reloaded model: equals the last epoch's logged value
    collate = make_collate(tok.pad_token_id)
    preds = np.zeros(len(ds), int)
    with torch.inference_mode():
        for b in SortedBatchSampler(ds.lengths, 64):
            x = collate([ds[i] for i in b])
            preds[b] = model(x["input_ids"], x["attention_mask"])[1].argmax(-1).numpy()
    y = ds.labels_task2
    acc = (preds[y != -100] == y[y != -100]).mean()
    assert acc == pytest.approx(saved_hist["val_acc_task2"].iloc[-1], rel=1e-5)


def test_same_seed_gives_identical_metrics(trained, tiny_data, tmp_path):
    out, _ = trained
    data_dir, p = tiny_data
    train_in(tmp_path, data_dir, p)
    assert (tmp_path / "metrics" / "train.json").read_bytes() == (out / "metrics" / "train.json").read_bytes()


def test_keep_best_and_smoothing_param_change_the_run(tiny_data, tmp_path):
    data_dir, p = tiny_data
    p2 = replace(replace(p, "train", keep="best", epochs=2), "loss", label_smoothing=0.3)
    m = train_in(tmp_path, data_dir, p2)
    assert m["kept_epoch"] == m["best_epoch"] and m["best_epoch"] in (1, 2)
    meta = json.loads((tmp_path / "models" / "stage2" / "twohead.json").read_text())
    assert meta["kept_epoch"] == m["best_epoch"] and meta["params"]["loss"]["label_smoothing"] == 0.3


def test_failed_run_leaves_no_metrics(tiny_data, tmp_path):
    data_dir, p = tiny_data
    bad = replace(p, "model", stage1_checkpoint=str(tmp_path / "missing"))
    with pytest.raises(Exception, match="model.stage1_checkpoint .*missing: not found"):
        train_in(tmp_path, data_dir, bad)
    assert not (tmp_path / "metrics" / "train.json").exists() and not (tmp_path / "models").exists()


def test_progress_line_in_a_log_says_where_the_run_stands():
    """Non-TTY runs (dvc repro > log) print one line every ~30 s instead of minutes of silence."""
    from twohead.train.report import ProgressLine

    lines, now = [], [0.0]
    p = ProgressLine("train_stage2", epochs=5, steps_per_epoch=100, every=30, log=lines.append, enabled=True,
                     clock=lambda: now[0])
    now[0] = 10.0
    p(1, 20, 640, 10.0)      # too soon: nothing
    now[0] = 31.0
    p(2, 150, 1600, 25.0)    # epoch 2, 50 of 100 steps in 25 s: 0.5 s/step
    assert lines == ["[train_stage2] epoch 2/5 step 50/100 | 64 samples/s | epoch ETA 0:25 | run ETA 2:55"]
    off = ProgressLine("t", 5, 100, every=0, log=lines.append, enabled=False)
    off(1, 10, 320, 5.0)
    assert len(lines) == 1
    gpu = ProgressLine("t", 5, 100, every=0, log=lines.append, enabled=True, clock=lambda: 99.0,
                       memory=lambda: {"allocated_mb": 812.4, "reserved_mb": 1034.0})
    gpu(1, 10, 320, 5.0)
    assert lines[-1].endswith("| run ETA 4:05 | mem 812/1034 MB")


def test_stage1_epoch_line_leaves_out_task2():
    from twohead.train.report import epoch_line

    f = {"train_loss_total": 0.5, "train_loss_task1": 0.5, "train_loss_task2": float("nan"), "val_loss_task1": 0.4,
         "val_loss_task2": float("nan"), "val_acc_task1": 0.9, "val_acc_task2": float("nan"),
         "val_macro_f1_task2": float("nan")}
    speed = {"train_samples_per_second": 100.0, "epoch_seconds": 12.0}
    assert "nan" not in epoch_line("pretrain_stage1", 1, 2, f, speed, task2=False)
    assert "t2 macro-F1" in epoch_line("train_stage2", 1, 2, {**f, "val_macro_f1_task2": 0.3,
                                                                "train_loss_task2": 1.0, "val_loss_task2": 1.0,
                                                                "val_acc_task2": 0.5}, speed)
