"""Statistics of `twohead compare`: answers known by construction."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from twohead.config.errors import DataError
from twohead.experiments.compare import Run, _vocab, check_same_rows, code, group_compare, run_metrics
from twohead.experiments.stats import (
    MISSING,
    Coded,
    band_recall,
    binary_f1,
    detectable_difference,
    macro_f1,
    mcnemar_p,
    paired_compare,
    t_interval,
)


def _coded(y2, p2, k=5):
    n = len(y2)
    y1 = np.ones(n, np.int64)
    return Coded(y1, y1.copy(), np.asarray(y2), np.asarray(p2), np.asarray(y2), np.asarray(p2), k)


def _base(n=2000, k=5, acc=0.7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    wrong = rng.random(n) > acc
    p = np.where(wrong, (y + 1 + rng.integers(0, k - 1, n)) % k, y)
    return y, p


def _fix(y, p, share, seed=1):
    """OTHER = BASE with ``share`` of BASE's wrong rows made right (and nothing else changed)."""
    wrong = np.nonzero(p != y)[0]
    fixed = np.random.default_rng(seed).choice(wrong, size=int(round(share * len(wrong))), replace=False)
    q = p.copy()
    q[fixed] = y[fixed]
    return q


def test_identical_predictions_are_within_noise_with_p_one():
    y, p = _base()
    r = paired_compare(_coded(y, p), _coded(y, p), resamples=1000)
    for m in r.values():
        assert m["delta"] == 0 and m["ci_low"] <= 0 <= m["ci_high"] and m["verdict"] == "within noise"
    assert r["task2_acc"]["p_value"] == 1.0 and r["task2_macro_f1"]["p_value"] is None


def test_fixing_ten_percent_of_errors_is_better_half_a_percent_is_noise():
    y, p = _base()
    big = paired_compare(_coded(y, p), _coded(y, _fix(y, p, 0.10)), resamples=1000)["task2_acc"]
    assert big["verdict"] == "better" and big["ci_low"] > 0 and big["p_value"] < 1e-6
    assert big["delta"] == pytest.approx(((_fix(y, p, 0.10) == y).mean() - (p == y).mean()))
    small = paired_compare(_coded(y, p), _coded(y, _fix(y, p, 0.005)), resamples=1000)["task2_acc"]
    assert small["verdict"] == "within noise" and small["ci_low"] <= 0 <= small["ci_high"]
    worse = paired_compare(_coded(y, _fix(y, p, 0.10)), _coded(y, p), resamples=1000)["task2_acc"]
    assert worse["verdict"] == "worse"


def test_bootstrap_is_seeded():
    y, p = _base()
    q = _fix(y, p, 0.03)
    a = paired_compare(_coded(y, p), _coded(y, q), resamples=1000, seed=7)
    b = paired_compare(_coded(y, p), _coded(y, q), resamples=1000, seed=7)
    c = paired_compare(_coded(y, p), _coded(y, q), resamples=1000, seed=8)
    assert a == b and a["task2_acc"]["ci_low"] != c["task2_acc"]["ci_low"]


def test_vectorised_metrics_match_sklearn_on_the_full_set():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 500)
    y[rng.random(500) < 0.1] = MISSING
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 6, 500)).clip(0)
    idx = np.arange(500)[None, :]
    m = y != MISSING
    want = f1_score(y[m], p[m], labels=np.unique(y[m]), average="macro", zero_division=0)
    assert macro_f1(idx, y, p, 6)[0] == pytest.approx(want)
    y1 = rng.integers(0, 2, 500)
    p1 = np.where(rng.random(500) < 0.8, y1, 1 - y1)
    assert binary_f1(idx, y1, p1)[0] == pytest.approx(f1_score(y1, p1))
    rec = [((p[m] == c) & (y[m] == c)).sum() / (y[m] == c).sum() for c in (0, 2)]
    assert band_recall(idx, y, p, 6, np.array([0, 2]))[0] == pytest.approx(np.mean(rec))


def test_mcnemar_and_t_interval_known_values():
    a = np.array([True] * 10 + [False] * 10)
    b = np.array([True] * 10 + [True] * 8 + [False] * 2)
    # 8 discordant pairs, all in favour of b: two-sided binomial p = 2 * 0.5**8
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5 ** 8)
    mean, sd, low, high = t_interval([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0) and high - mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert np.isnan(t_interval([1.0])[2])


def test_detectable_difference_shrinks_with_more_rows():
    y, p = _base(n=500)
    y2, p2 = _base(n=8000)
    small, large = detectable_difference(_coded(y, p)), detectable_difference(_coded(y2, p2))
    assert 0.02 < small < 0.06 and large < small / 3


def _run(rev, ids, gold, pred, params=None):
    preds = pd.DataFrame({"id": ids, "gold_pick": "Pick", "gold_category": gold, "pred_pick": "Pick",
                          "pred_category": pred, "combined_pred": pred})
    per_class = pd.DataFrame({"class": sorted(set(gold)), "band": "High"})
    return Run(rev, rev, preds, per_class, params or {})


def test_different_test_rows_are_refused_with_counts():
    a = _run("a", ["1", "2", "3"], ["x", "y", "x"], ["x", "x", "x"])
    b = _run("b", ["1", "2", "4", "5"], ["x", "y", "x", "y"], ["x", "x", "x", "y"])
    with pytest.raises(DataError, match=r"1 id\(s\) only in a, 2 only in b"):
        check_same_rows(a, b)


def test_coding_reads_decline_and_missing_labels():
    df = pd.DataFrame({"id": ["1", "2", "3"], "gold_pick": ["Pick", "Decline", ""], "gold_category": ["x", "", "y"],
                       "pred_pick": ["Pick", "Pick", "Decline"], "pred_category": ["x", "y", "y"],
                       "combined_pred": ["x", "y", "Decline"]})
    r = Run("r", "r", df, pd.DataFrame({"class": ["x", "y"], "band": ["High", "Low"]}), {})
    c = code(r, _vocab([r]))
    assert list(c.y1) == [1, 0, MISSING] and list(c.y2) == [0, MISSING, 1]
    assert list(c.yc) == [0, 2, MISSING] and list(c.pc) == [0, 1, 2]
    m = run_metrics(r, _vocab([r]))
    assert m["combined_acc"] == 0.5 and m["task2_acc"] == 1.0 and m["task1_acc"] == 0.5


def test_group_compare_pairs_by_seed(monkeypatch):
    ids = [str(i) for i in range(10)]
    gold = ["x"] * 5 + ["y"] * 5
    runs = {}
    for s, (acc_a, acc_b) in {1: (5, 7), 2: (6, 8), 3: (4, 7)}.items():
        for value, n_right in ((0.1, acc_a), (0.15, acc_b)):
            pred = gold[:n_right] + [("y" if g == "x" else "x") for g in gold[n_right:]]
            rev = f"s{s}-{value}"
            runs[rev] = _run(rev, ids, gold, pred, {"train": {"seed": s}, "loss": {"label_smoothing": value}})
    monkeypatch.setattr("twohead.experiments.compare.load_run", lambda rev, root=".": runs[rev])
    g = group_compare(list(runs), "loss.label_smoothing")
    assert [x["value"] for x in g["groups"]] == [0.1, 0.15]
    acc = g["groups"][0]["metrics"]["task2_acc"]
    assert acc["mean"] == pytest.approx(0.5) and sorted(acc["values"]) == [0.4, 0.5, 0.6]
    d = g["differences"][0]["metrics"]["task2_acc"]
    assert d["pairs"] == 3 and d["mean"] == pytest.approx(np.mean([0.2, 0.2, 0.3]))
    assert d["verdict"] == "better" and d["ci_low"] > 0
