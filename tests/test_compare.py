"""Statistics of `twohead compare`: answers known by construction."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from twohead.config.errors import DataError
from twohead.config.schema import compared_metrics
from twohead.experiments.compare import (
    Revision,
    check_same_rows,
    class_vocabulary,
    code,
    group_compare,
    revision_metrics,
)
from twohead.experiments.stats import (
    FORMULAS,
    MISSING,
    Coded,
    detectable_difference,
    mcnemar_p,
    paired_compare,
    point_values,
    t_interval,
)


def _coded(y2, p2, k=5):
    n = len(y2)
    y1 = np.ones(n, np.int64)
    conf = np.full(n, 0.8)  # a constant confidence: the ECE is defined (and differs only through correctness)
    return Coded(y1, y1.copy(), np.asarray(y2), np.asarray(p2), np.asarray(y2), np.asarray(p2), k, conf)


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


def _mixed(n=500, k=6, seed=3) -> Coded:
    """Task2 with missing labels, Task1 with Decline and missing rows, a combined view: every code path."""
    rng = np.random.default_rng(seed)
    y2 = rng.integers(0, k, n)
    y2[rng.random(n) < 0.1] = MISSING
    p2 = np.where(rng.random(n) < 0.6, y2, rng.integers(0, k, n)).clip(0)
    y1 = rng.integers(0, 2, n)
    y1[rng.random(n) < 0.05] = MISSING
    p1 = np.where(rng.random(n) < 0.8, y1, 1 - y1).clip(0)
    yc = np.where(y1 == 0, k, np.where((y1 == 1) & (y2 != MISSING), y2, MISSING))
    pc = np.where(p1 == 0, k, p2)
    return Coded(y1, p1, y2, p2, yc, pc, k)


def test_count_based_metrics_match_sklearn_on_the_full_set():
    c = _mixed()
    got = point_values(c, {"A": [0, 2], "B": [1, 3, 4, 5]})
    m2, m1, mc = c.y2 != MISSING, c.y1 != MISSING, c.yc != MISSING
    want_f1 = f1_score(c.y2[m2], c.p2[m2], labels=np.unique(c.y2[m2]), average="macro", zero_division=0)
    assert got["task2_macro_f1"] == pytest.approx(want_f1)
    assert got["task2_acc"] == pytest.approx((c.y2[m2] == c.p2[m2]).mean())
    assert got["task1_acc"] == pytest.approx((c.y1[m1] == c.p1[m1]).mean())
    assert got["pick_f1"] == pytest.approx(f1_score(c.y1[m1], c.p1[m1]))
    assert got["combined_acc"] == pytest.approx((c.yc[mc] == c.pc[mc]).mean())
    y, p = c.y2[m2], c.p2[m2]
    rec = [((p == k) & (y == k)).sum() / (y == k).sum() for k in (0, 2)]
    assert got["band_A_recall"] == pytest.approx(np.mean(rec))
    assert list(got) == [m.name for m in compared_metrics(["A", "B"])]


def _reference(idx, c: Coded, members):
    """The former index-based implementation (bincount over R×n index arrays), kept here as the oracle."""
    def counts(gold, pred, k):
        g, p = gold[idx], pred[idx]
        valid = g != MISSING
        base = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape) * k
        tp = np.bincount((base + g)[valid & (g == p)], minlength=idx.shape[0] * k).reshape(-1, k)
        gold_n = np.bincount((base + g)[valid], minlength=idx.shape[0] * k).reshape(-1, k)
        pred_n = np.bincount((base + p)[valid], minlength=idx.shape[0] * k).reshape(-1, k)
        return tp, gold_n, pred_n

    def acc(gold, pred):
        g, p = gold[idx], pred[idx]
        v = g != MISSING
        return np.where(v.sum(1) > 0, ((g == p) & v).sum(1) / np.maximum(v.sum(1), 1), np.nan)

    tp, gold_n, pred_n = counts(c.y2, c.p2, c.n_classes)
    present = gold_n > 0
    f1 = np.where(present, 2 * tp / np.maximum(gold_n + pred_n, 1), 0.0).sum(1) / np.maximum(present.sum(1), 1)
    g, p = c.y1[idx], c.p1[idx]
    v = g != MISSING
    btp, bfp, bfn = (((g == 1) & (p == 1) & v).sum(1), ((g != 1) & (p == 1) & v).sum(1),
                     ((g == 1) & (p != 1) & v).sum(1))
    t, gm = tp[:, members], gold_n[:, members]
    band = np.where(gm > 0, t / np.maximum(gm, 1), 0.0).sum(1) / np.maximum((gm > 0).sum(1), 1)
    return {"task2_acc": acc(c.y2, c.p2), "task2_macro_f1": f1, "band_A_recall": band,
            "task1_acc": acc(c.y1, c.p1), "pick_f1": 2 * btp / np.maximum(2 * btp + bfp + bfn, 1),
            "combined_acc": acc(c.yc, c.pc)}


def test_paired_compare_equals_the_former_index_based_bootstrap():
    """Same resamples (the same seeded index draws), same numbers, on a demo-sized test set (1,000 rows, 27
    classes); the count-based version only changes how the counts are made."""
    base, other = _mixed(1000, 27, seed=5), _mixed(1000, 27, seed=6)
    other.y1, other.y2, other.yc = base.y1, base.y2, base.yc  # same gold rows, different predictions
    members = np.arange(0, 27, 3)
    got = paired_compare(base, other, {"A": list(members)}, resamples=1000, seed=4)
    idx = np.random.default_rng(4).integers(0, 1000, size=(1000, 1000))
    ref_b, ref_o = _reference(idx, base, members), _reference(idx, other, members)
    for name, ref in ref_b.items():
        d = ref_o[name] - ref
        low, high = np.quantile(d[~np.isnan(d)], [0.025, 0.975])
        assert got[name]["ci_low"] == pytest.approx(low, abs=1e-12), name
        assert got[name]["ci_high"] == pytest.approx(high, abs=1e-12), name
    assert set(got) == set(FORMULAS) | {"band_A_recall"}


def test_every_compared_metric_has_a_formula():
    assert {m.name for m in compared_metrics()} <= set(FORMULAS)


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
    return Revision(rev, rev, preds, per_class, params or {})


def test_different_test_rows_are_refused_with_counts():
    a = _run("a", ["1", "2", "3"], ["x", "y", "x"], ["x", "x", "x"])
    b = _run("b", ["1", "2", "4", "5"], ["x", "y", "x", "y"], ["x", "x", "x", "y"])
    with pytest.raises(DataError, match=r"1 id\(s\) only in a, 2 only in b"):
        check_same_rows(a, b)


def test_coding_reads_decline_and_missing_labels():
    df = pd.DataFrame({"id": ["1", "2", "3"], "gold_pick": ["Pick", "Decline", ""], "gold_category": ["x", "", "y"],
                       "pred_pick": ["Pick", "Pick", "Decline"], "pred_category": ["x", "y", "y"],
                       "combined_pred": ["x", "y", "Decline"]})
    r = Revision("r", "r", df, pd.DataFrame({"class": ["x", "y"], "band": ["High", "Low"]}), {})
    c = code(r, class_vocabulary([r]))
    assert list(c.y1) == [1, 0, MISSING] and list(c.y2) == [0, MISSING, 1]
    assert list(c.yc) == [0, 2, MISSING] and list(c.pc) == [0, 1, 2]
    m = revision_metrics(r, class_vocabulary([r]))
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
    monkeypatch.setattr("twohead.experiments.compare.load_revision", lambda rev, root=".": runs[rev])
    g = group_compare(list(runs), "loss.label_smoothing")
    assert [x["value"] for x in g["groups"]] == [0.1, 0.15]
    acc = g["groups"][0]["metrics"]["task2_acc"]
    assert acc["mean"] == pytest.approx(0.5) and sorted(acc["values"]) == [0.4, 0.5, 0.6]
    d = g["differences"][0]["metrics"]["task2_acc"]
    assert d["pairs"] == 3 and d["mean"] == pytest.approx(np.mean([0.2, 0.2, 0.3]))
    assert d["verdict"] == "better" and d["ci_low"] > 0


def test_verdicts_follow_each_metrics_direction():
    from twohead.experiments.stats import verdict

    assert verdict(0.01, 0.03) == "better" and verdict(0.01, 0.03, higher_is_better=False) == "worse"
    assert verdict(-0.03, -0.01, higher_is_better=False) == "better" and verdict(-0.01, 0.01) == "within noise"
    # a run whose confidences match its correctness beats one that is over-confident on its errors: lower ECE
    y, p = _base(n=3000)
    good, bad = _coded(y, p), _coded(y, p)
    good.conf2 = np.where(p == y, 0.9, 0.3)
    bad.conf2 = np.full(len(y), 0.95)
    r = paired_compare(bad, good, resamples=1000)["task2_ece"]
    assert r["delta"] < 0 and r["verdict"] == "better"


def test_runs_trained_on_other_machines_say_so_in_plain_words():
    from twohead.experiments.compare import to_markdown, trained_on

    ids, gold = [str(i) for i in range(40)], ["x", "y"] * 20
    mac = _run("main", ids, gold, gold, {"train": {"device": "auto", "precision": "fp32", "launch": "python"}})
    mac.env = {"auto_device": "mps", "packages": {"torch": "2.13.0"}}
    gpu = _run("gpu-seed7", ids, gold, gold, {"train": {"device": "auto", "precision": "bf16",
                                                        "launch": "torchrun --nproc_per_node 2"}})
    gpu.env = {"auto_device": "cuda", "gpu": "NVIDIA H100 80GB HBM3<script>", "packages": {"torch": "2.13.0+cu128"}}
    assert trained_on(mac) == "mps, torch 2.13.0, fp32"
    assert trained_on(gpu) == ("cuda (NVIDIA H100 80GB HBM3script), torch 2.13.0+cu128, bf16,"
                               " torchrun --nproc_per_node 2")
    same = _run("other", ids, gold, gold, mac.params)
    same.env = dict(mac.env)
    assert trained_on(same) == trained_on(mac)
    assert trained_on(_run("old", ids, gold, gold)) == "?, torch ?, fp32"   # no env file at that revision
    result = {"test_rows": 40, "resamples": 1000, "seed": 0, "base": {"rev": "main"}, "detectable_task2_acc": 0.1,
              "comparisons": [{"rev": "gpu-seed7", "metrics": {"task2_acc": {"base": 1, "other": 1, "delta": 0,
                                                                              "ci_low": 0, "ci_high": 0,
                                                                              "p_value": 1.0,
                                                                              "verdict": "within noise"}},
                               "trained_on": {"base": trained_on(mac), "other": trained_on(gpu)}}]}
    text = to_markdown(result)
    assert "**Trained differently** — main: mps, torch 2.13.0, fp32; gpu-seed7: cuda (NVIDIA H100" in text
    assert "<script>" not in text
