import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from twohead.evaluate.metrics import band_recall, per_class_recall, task1_metrics, task2_metrics
from twohead.train.losses import TwoTaskLoss
from twohead.train.validation import val_metrics


def test_task_metrics_equal_sklearn_on_labelled_rows():
    y2 = np.array([0, 1, 2, 2, -100, 1, 0, 3, -100, 2])
    p2 = np.array([0, 2, 2, 2, 1, 1, 1, 3, 0, 0])
    m = task2_metrics(y2, p2)
    keep = y2 != -100
    assert m["task2_acc"] == pytest.approx(5 / 8)
    assert m["task2_macro_f1"] == pytest.approx(f1_score(y2[keep], p2[keep], average="macro"))
    assert m["task2_weighted_f1"] == pytest.approx(f1_score(y2[keep], p2[keep], average="weighted"))
    y1 = np.array([1, 1, 0, -100, 1, 0])
    p1 = np.array([1, 0, 0, 1, 1, 1])
    m1 = task1_metrics(y1, p1)
    k = y1 != -100
    assert m1["task1_acc"] == pytest.approx(accuracy_score(y1[k], p1[k])) == pytest.approx(0.6)
    assert m1["pick_precision"] == pytest.approx(precision_score(y1[k], p1[k])) == pytest.approx(2 / 3)
    assert m1["pick_recall"] == pytest.approx(recall_score(y1[k], p1[k])) == pytest.approx(2 / 3)


def test_macro_f1_averages_over_gold_classes_only():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 2, 1, 1])  # class 2 is predicted but has no gold row
    m = task2_metrics(y, p)
    f0 = 2 * 1.0 * 0.5 / 1.5
    assert m["task2_macro_f1"] == pytest.approx((f0 + 1.0) / 2)


def test_band_recall_by_hand():
    names = ["a", "b", "c", "d"]
    class_band = {"a": "High", "b": "High", "c": "Low", "d": "Low"}
    y = np.array([0, 0, 1, 1, 2, -100])
    p = np.array([0, 1, 1, 1, 0, 3])
    rec = per_class_recall(y, p, 4)
    assert rec[0] == 0.5 and rec[1] == 1.0 and rec[2] == 0.0 and np.isnan(rec[3])
    rows = band_recall(y, p, class_band, names, ["High", "Low"])
    assert rows == [{"band": "High", "recall": 0.75, "n_classes": 2}, {"band": "Low", "recall": 0.0, "n_classes": 1}]


def test_val_metrics_loss_and_metrics():
    logits1 = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    logits2 = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]], np.float32)
    y1, y2 = np.array([1, 0, -100]), np.array([0, -100, 2])
    loss = TwoTaskLoss(torch.tensor([2.0, 1.0]), torch.ones(3), 0.4, 1.0, 0.0, 0.0)
    f = val_metrics(logits1, logits2, y1, y2, loss)
    lp1 = torch.log_softmax(torch.tensor(logits1), -1)
    l1 = (-(1.0 * lp1[0, 1] + 2.0 * lp1[1, 0]) / 3.0).item()
    lp2 = torch.log_softmax(torch.tensor(logits2), -1)
    l2 = (-(lp2[0, 0] + lp2[2, 2]) / 2).item()
    assert f["val_loss_task1"] == pytest.approx(l1, rel=1e-5) and f["val_loss_task2"] == pytest.approx(l2, rel=1e-5)
    assert f["val_loss_total"] == pytest.approx(0.4 * l1 + l2, rel=1e-5)
    assert f["val_acc_task1"] == 1.0 and f["val_acc_task2"] == 0.5
