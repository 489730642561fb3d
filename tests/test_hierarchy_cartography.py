import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from twohead.train.cartography import CartographyRecorder, cartography_table
from twohead.train.losses import LossAccumulator, TwoTaskLoss, hier_sums

LOGITS1 = torch.tensor([[0.0, 2.0], [1.0, 0.5], [0.3, 0.0], [-1.0, 1.0]])
LOGITS2 = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 2.0], [1.0, 0.0, 0.0]])
Y1 = torch.tensor([1, 0, 1, -100])
Y2 = torch.tensor([0, -100, -100, 2])  # only row 0 has Pick and a category; row 1 is Decline


def plain(w1=None, w2=None, **hier):
    w1 = torch.tensor([2.0, 0.5]) if w1 is None else w1
    w2 = torch.ones(3) if w2 is None else w2
    return TwoTaskLoss(w1, w2, 0.4, 1.0, 0.0, 0.1, **hier)


def test_weight_zero_is_bit_identical_to_the_plain_recipe():
    base = plain().terms(LOGITS1, LOGITS2, Y1, Y2)
    off = plain(pick_consistency_weight=0.0, pick_consistency_type="kl", decline_uniform_weight=0.0).terms(
        LOGITS1, LOGITS2, Y1, Y2)
    expected = 0.4 * base["task1"] + 1.0 * base["task2"]
    assert torch.equal(off["total"], expected) and torch.equal(base["total"], expected)
    assert off["hier"].item() == 0.0


def test_l2_pick_consistency_by_hand():
    lp1 = F.log_softmax(LOGITS1, -1)[0, 1]
    lp2 = F.log_softmax(LOGITS2, -1)[0, 0]
    expected = (lp1 - lp2) ** 2  # one eligible row
    parts = plain(pick_consistency_weight=0.1, pick_consistency_type="l2").terms(LOGITS1, LOGITS2, Y1, Y2)
    assert parts["hier"].item() == pytest.approx(0.1 * expected.item(), rel=1e-6)
    base = plain().terms(LOGITS1, LOGITS2, Y1, Y2)["total"]
    assert parts["total"].item() == pytest.approx(base.item() + 0.1 * expected.item(), rel=1e-6)


def test_kl_pick_consistency_by_hand():
    p = torch.softmax(LOGITS1, -1)[0, 1].item()
    q = torch.softmax(LOGITS2, -1)[0, 0].item()
    kl = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    num, den, _, _ = hier_sums(LOGITS1, LOGITS2, Y1, Y2, "kl")
    assert den.item() == 1 and num.item() == pytest.approx(kl, rel=1e-5)


def test_decline_uniform_by_hand_and_gradients_flow():
    probs = torch.softmax(LOGITS2[1], -1)
    kl = sum((1 / 3) * math.log((1 / 3) / probs[c].item()) for c in range(3))
    logits1 = LOGITS1.clone().requires_grad_(True)
    logits2 = LOGITS2.clone().requires_grad_(True)
    parts = plain(decline_uniform_weight=0.5).terms(logits1, logits2, Y1, Y2)
    assert parts["hier"].item() == pytest.approx(0.5 * kl, rel=1e-5)
    parts["hier"].backward()
    assert logits2.grad[1].abs().sum() > 0 and logits2.grad[[0, 2, 3]].abs().sum() == 0
    # a uniform Task2 on the Decline row gives exactly 0
    flat = LOGITS2.clone()
    flat[1] = 0.0
    assert plain(decline_uniform_weight=1.0).terms(LOGITS1, flat, Y1, Y2)["hier"].item() == pytest.approx(0.0, abs=1e-7)


def test_no_eligible_rows_gives_zero_not_nan():
    y1 = torch.full((4,), -100)
    parts = plain(pick_consistency_weight=1.0, decline_uniform_weight=1.0).terms(LOGITS1, LOGITS2, y1, Y2)
    assert parts["hier"].item() == 0.0 and torch.isfinite(parts["total"])


def test_epoch_level_hier_matches_whole_batch():
    loss = plain(pick_consistency_weight=0.2, decline_uniform_weight=0.3)
    acc = LossAccumulator("cpu")
    for a, b in ((0, 2), (2, 4)):
        acc.add(loss.terms(LOGITS1[a:b], LOGITS2[a:b], Y1[a:b], Y2[a:b]))
    whole = loss.terms(LOGITS1, LOGITS2, Y1, Y2)
    res = loss.combine(acc.sums.tolist())
    assert res["hier"] == pytest.approx(whole["hier"].item(), rel=1e-6)
    assert res["total"] == pytest.approx(whole["total"].item(), rel=1e-6)


def test_recorder_and_cartography_table_by_hand():
    rec = CartographyRecorder(n_rows=3, epochs=2, device="cpu")
    l1 = torch.log(torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]))
    l2 = torch.log(torch.tensor([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]]))
    rec.record(0, torch.tensor([2, 0, 1]), l1, l2, torch.tensor([1, 1, 0]), torch.tensor([0, -100, 1]))
    rec.record(1, torch.tensor([0, 1, 2]), l1, l2, torch.tensor([1, 0, 1]), torch.tensor([-100, 1, 0]))
    (p1, r1), (p2, r2) = rec.arrays()
    assert np.allclose(p1, [[0.4, 0.8], [0.5, 0.6], [0.8, 0.5]])
    assert r1.tolist() == [[False, True], [True, True], [True, False]]  # a 0.5/0.5 tie's argmax is class 0
    assert np.isnan(p2[0]).tolist() == [True, True] and np.allclose(p2[1], [0.5, 0.9])
    t = cartography_table(np.array(["a", "b", "c"], dtype=object), p1, r1, np.array(["Pick", "Decline", "Pick"]))
    assert t["confidence"].tolist() == pytest.approx([0.6, 0.55, 0.65])
    assert t["variability"].tolist() == pytest.approx([0.2, 0.05, 0.15])
    assert t["correctness"].tolist() == [0.5, 1.0, 0.5]
    assert t.set_index("id")["region"].to_dict() == {"a": "ambiguous", "b": "hard-to-learn", "c": "easy-to-learn"}
    t2 = cartography_table(np.array(["a", "b", "c"], dtype=object), p2, r2, np.array(["", "x", "y"]))
    assert t2["id"].tolist() == ["b", "c"]  # rows labelled in every epoch only


def test_training_writes_cartography(tiny_data, tmp_path):
    from conftest import replace, train_in

    data_dir, p = tiny_data
    p = replace(p, "switches", pick_consistency_weight=0.1, decline_uniform_weight=0.05)
    m = train_in(tmp_path, data_dir, p)
    assert m["train_loss_hier"] > 0 and m["val_loss_hier"] > 0
    train = pd.read_parquet(data_dir / "tokenized" / "train.parquet")
    t1 = pd.read_csv(tmp_path / "metrics" / "cartography_task1.csv")
    t2 = pd.read_csv(tmp_path / "metrics" / "cartography_task2.csv")
    assert len(t1) == int((train["labels_task1"] != -100).sum())
    assert len(t2) == int((train["labels_task2"] != -100).sum())
    assert set(t2["band"]) <= {"High", "Mid", "Low"} and t2["confidence"].between(0, 1).all()
    flagged = pd.read_csv(tmp_path / "metrics" / "cartography_flagged.csv")
    assert set(flagged["region"]) <= {"hard-to-learn", "ambiguous"}
    flag = ["hard-to-learn", "ambiguous"]
    n_flag = int(t1["region"].isin(flag).sum() + t2["region"].isin(flag).sum())
    assert len(flagged) == n_flag and flagged["text"].str.len().gt(0).all()
