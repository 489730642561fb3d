import json

import numpy as np
import pandas as pd
import pytest

from conftest import evaluate_in, stage_paths, train_in
from twohead.evaluate.metrics import combined_view, consistency
from twohead.evaluate.tables import per_class_table, worst_k_table
from twohead.pipeline import plot


def test_combined_view_by_hand():
    # N = 3 categories; Decline is id 3 in the combined view
    y1 = np.array([1, 1, 0, 0, 1, -100, 1])
    y2 = np.array([0, 2, -100, -100, -100, 1, 1])
    p_pick = np.array([0.9, 0.4, 0.2, 0.7, 0.9, 0.9, 0.6])
    pred2 = np.array([0, 2, 1, 1, 0, 1, 0])
    r = combined_view(y1, y2, p_pick < 0.5, pred2, 3)
    # scored rows: 0 (gold 0, pred 0 ok), 1 (gold 2, pred Decline), 2 (gold D, pred D ok), 3 (gold D, pred 1),
    # 6 (gold 1, pred 0)
    assert r["combined_rows"] == 5 and r["combined_acc"] == pytest.approx(2 / 5)
    # per gold class F1: class0: tp1 fp1(row6) fn0 -> 2/3; class1: 0; class2: 0; Decline: tp1 fp1(row1) fn1(row3) -> 0.5
    assert r["combined_macro_f1"] == pytest.approx((2 / 3 + 0 + 0 + 0.5) / 4)


def test_consistency_rates_by_hand():
    y1 = np.array([1, 1, 1, 0, 0, -100])
    p_pick = np.array([0.9, 0.8, 0.3, 0.1, 0.6, 0.95])
    maxp = np.array([0.4, 0.95, 0.3, 0.92, 0.5, 0.45])
    c = consistency(y1, p_pick < 0.5, maxp, low_confidence=0.5, high_confidence=0.9)
    assert c["gold_pick_low_conf"] == pytest.approx(2 / 3)       # rows 0, 2
    assert c["gold_decline_high_conf"] == pytest.approx(1 / 2)   # row 3
    assert c["pred_pick_low_conf"] == pytest.approx(2 / 4)       # pred Pick: 0,1,4,5 -> low: 0,5
    assert c["pred_decline_high_conf"] == pytest.approx(1 / 2)   # pred Decline: 2,3 -> high: 3
    assert c["mean_maxprob_pred_pick"] == pytest.approx((0.4 + 0.95 + 0.5 + 0.45) / 4)
    assert c["mean_maxprob_pred_decline"] == pytest.approx((0.3 + 0.92) / 2)


def test_worst_k_orders_by_gold_loss():
    probs = np.array([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    y2 = np.array([0, 0, -100, 1])
    df = worst_k_table(np.array(["a", "b", "c", "d"], dtype=object), np.array(["x" * 300, "b", "c", "d"], dtype=object),
                       y2, probs, ["P", "Q"], k=2)
    assert list(df["id"]) == ["b", "a"] and list(df["predicted"]) == ["Q", "P"]
    assert df["loss"].iloc[0] == pytest.approx(-np.log(0.1))
    assert len(df["text"].iloc[1]) == 200


def test_per_class_table_marks_unscored_classes():
    bands = {"a": "H", "b": "H", "c": "L"}
    df = per_class_table(np.array([0, 0, 1]), np.array([0, 1, 1]), ["a", "b", "c"], bands, [10, 5, 1])
    assert list(df["test_support"]) == [2, 1, 0]
    assert df["recall"].iloc[0] == 0.5 and df["precision"].iloc[1] == 0.5 and np.isnan(df["recall"].iloc[2])


def test_evaluate_and_plot_on_a_trained_tiny_model(tiny_data, tmp_path):
    from matplotlib.image import imread

    data_dir, p = tiny_data
    train_in(tmp_path, data_dir, p)
    out = lambda name: tmp_path / name  # noqa: E731
    res = evaluate_in(tmp_path, data_dir, p)
    saved = json.loads(out("metrics/test.json").read_text())
    assert set(saved) == {"test", "val", "decided", "decided_vs_plain"}
    from twohead.config.schema import headline
    assert json.loads(out("metrics/headline.json").read_text()) == headline(saved)
    # the file holds 6 significant digits (float noise between machines must not change a committed file)
    assert saved["test"]["task2"]["acc"] == pytest.approx(res["test"]["task2"]["acc"], rel=1e-5)
    # what the decisions bought, on test, with the paired interval of each difference
    effect = saved["decided_vs_plain"]["metrics"]
    for name in ("task2_acc", "task2_macro_f1", "task2_ece", "decline_recall", "combined_acc", "band_Low_recall"):
        m = effect[name]
        assert m["ci_low"] <= m["delta"] <= m["ci_high"] or np.isnan(m["ci_low"]), name
    assert effect["task2_acc"]["base"] == pytest.approx(saved["test"]["task2"]["acc"], rel=1e-5)
    assert effect["task2_acc"]["other"] == pytest.approx(saved["decided"]["test"]["task2"]["acc"], rel=1e-5)
    assert effect["combined_acc"]["other"] == pytest.approx(saved["decided"]["test"]["combined"]["acc"], rel=1e-5)
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 10_000
    # val accuracy from evaluate equals the trainer's last-epoch figure (same model, same rows)
    hist = pd.read_csv(out("plots/train_history.csv"))
    assert saved["val"]["task2"]["acc"] == pytest.approx(hist["val_acc_task2"].iloc[-1], rel=1e-5)
    preds = pd.read_csv(out("plots/predictions.csv"), keep_default_na=False)
    test = pd.read_parquet(data_dir / "prepared" / "test.parquet")
    assert len(preds) == len(test) and set(preds["id"]) == set(test["id"])
    scored = preds[preds["gold_category"] != ""]
    assert (scored["gold_category"] == scored["pred_category"]).mean() == pytest.approx(saved["test"]["task2"]["acc"],
                                                                                         rel=1e-5)
    conf = pd.read_csv(out("plots/confusion.csv"))
    assert len(conf) == saved["test"]["task2"]["rows"]
    bands = json.loads(out("metrics/bands.json").read_text())
    assert set(bands) == {"High", "Mid", "Low"} and sum(b["support"] for b in bands.values()) == len(conf)

    made = plot.run(p, stage_paths(plot.PlotPaths, tmp_path, prepared=data_dir / "prepared"))
    assert sorted(m.name for m in made) == sorted(plot.FIGURES)
    summary = (tmp_path / "plots" / "summary.md").read_text()
    assert f"| {saved['test']['task2']['acc']:.4f} |" in summary and "## What the curves say" in summary
    assert "![task2_accuracy.png](task2_accuracy.png)" in summary
    for other in ("reliability.png", "decision.png", "lr_find.png"):  # every figure is listed
        assert f"![{other}]({other})" in summary
    assert "task_weighting" not in summary and list((tmp_path / "plots" / "switches").iterdir()) == []  # all off
    # a switch on: its curve is drawn into plots/switches and listed in the summary; off again: gone
    paths = stage_paths(plot.PlotPaths, tmp_path, prepared=data_dir / "prepared")
    plain_hist = pd.read_csv(paths.train_history)
    plain_hist.assign(train_loss_rdrop=[0.3] * len(plain_hist)).to_csv(paths.train_history, index=False)
    with_switch = plot.run(p, paths)
    assert tmp_path / "plots" / "switches" / "rdrop_loss.png" in with_switch
    assert "![switches/rdrop_loss.png](switches/rdrop_loss.png)" in (tmp_path / "plots" / "summary.md").read_text()
    plain_hist.to_csv(paths.train_history, index=False)
    plot.run(p, paths)
    assert list((tmp_path / "plots" / "switches").iterdir()) == []
    assert "## Plain rule vs the decisions chosen on val" in summary and "| Decline recall |" in summary
    for png in made:
        img = imread(png)
        assert png.stat().st_size > 10_000 and img.shape[0] >= 400 and img.shape[1] >= 600, png
        assert img[..., :3].std() > 0.05, png  # not a blank canvas
