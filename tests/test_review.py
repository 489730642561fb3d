"""The review stage: cleanlab finds planted label errors (recall ≥ 0.8 at the default threshold) and a planted
overlapping pair; merge gains are exact; conflicting duplicates are found through case, spacing and punctuation;
the stage on the tiny run writes its queue, pairs, duplicates and the summary section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import evaluate_in, stage_paths, train_in
from twohead.review.duplicates import conflicting_duplicates, normalise_text
from twohead.review.issues import accuracy_without, find_issues
from twohead.review.pairs import confusable_pairs, merge_gain


def _model_probs(true: np.ndarray, k: int, rng, strength: float = 4.0) -> np.ndarray:
    """A decent model's out-of-sample probabilities: mass on the true class, the rest spread at random."""
    p = rng.dirichlet(np.full(k, 0.3), size=len(true))
    p[np.arange(len(true)), true] += strength * rng.uniform(0.3, 1.0, size=len(true))
    return p / p.sum(1, keepdims=True)


def test_planted_label_errors_are_found():
    rng = np.random.default_rng(0)
    n, k = 3000, 12
    true = rng.integers(0, k, n)
    probs = _model_probs(true, k, rng)
    given = true.copy()
    planted = rng.choice(n, size=150, replace=False)                       # 5% wrong labels
    given[planted] = (true[planted] + rng.integers(1, k, size=150)) % k
    res = find_issues(given, probs, [f"c{i}" for i in range(k)])
    hits = np.isin(res.flagged, planted)
    assert hits.sum() / len(planted) >= 0.8                                 # recall of the planted errors
    assert hits.mean() >= 0.6                                               # most flags are planted ones
    assert abs(res.estimated_issues - 150) <= 60                            # cleanlab's estimate of the count
    assert res.quality[res.flagged[0]] <= np.median(res.quality)            # worst first
    assert (res.suggested[planted] == true[planted]).mean() > 0.9
    noisy = res.per_class.set_index("class")
    assert noisy["flagged"].sum() == len(res.flagged) and noisy["estimated_noise"].between(0, 1).all()
    correct = probs.argmax(1) == given
    assert accuracy_without(correct, res.flagged) > correct.mean()          # the upper-bound view


def test_a_planted_overlapping_pair_comes_first_with_its_merge_gain():
    rng = np.random.default_rng(1)
    n, k = 2000, 8
    y = rng.integers(0, k, n)
    probs = _model_probs(y, k, rng)
    mixed = np.isin(y, (2, 5))                                               # classes 2 and 5: the model cannot tell
    avg = (probs[mixed, 2] + probs[mixed, 5]) / 2
    probs[mixed, 2], probs[mixed, 5] = (avg + rng.normal(0, 0.05, mixed.sum()) for _ in range(2))
    probs = np.clip(probs, 1e-6, None)
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    pairs = confusable_pairs(y, pred, probs, [f"c{i}" for i in range(k)], top=5, resamples=500)
    top = pairs.iloc[0]
    assert {top["a"], top["b"]} == {"c2", "c5"} and top["a_as_b"] > 50 and top["b_as_a"] > 50
    assert top["overlap_joint"] == pairs["overlap_joint"].max() > 0
    assert top["merge_gain"] == pytest.approx((top["a_as_b"] + top["b_as_a"]) / n)
    assert 0 < top["merge_gain_low"] < top["merge_gain"] < top["merge_gain_high"]


def test_merge_gain_counts_only_the_pair():
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    pred = np.array([0, 1, 0, 1, 2, 0, 2, 1])   # 0→1, 1→0 inside the pair; 2→0 and 0→2 outside it
    gain, low, high = merge_gain(y, pred, 0, 1, resamples=200)
    assert gain == pytest.approx(2 / 8) and low <= gain <= high


def test_conflicting_duplicates_through_case_spacing_and_punctuation():
    rows = pd.DataFrame({"id": ["a", "b", "c", "d", "e", "f"],
                         "split": ["train", "test", "train", "train", "val", "val"],
                         "text": ["Stocks fall, again!", "stocks  FALL again", "Rain in Paris", "rain in paris.",
                                  "Only once", "Same label"],
                         "pick": ["Pick", "Pick", "Pick", "Pick", "Pick", "Pick"],
                         "category": ["BUSINESS", "POLITICS", "WEATHER", "WEATHER", "X", "X"]})
    dups, counts = conflicting_duplicates(rows)
    assert normalise_text("Stocks fall, again!") == normalise_text("stocks  FALL again") == "stocks fall again"
    assert set(dups["id"]) == {"a", "b"} and counts == {"groups": 1, "rows": 2, "within_split": 0, "across_splits": 1}
    assert set(dups["splits_in_group"]) == {"test+train"}


def test_the_review_stage_on_the_tiny_run(tiny_data, tmp_path):
    from twohead.evaluate.summary import review_section
    from twohead.pipeline import review

    data_dir, p = tiny_data
    train_in(tmp_path, data_dir, p)
    evaluate_in(tmp_path, data_dir, p)
    paths = stage_paths(review.ReviewPaths, tmp_path, prepared=data_dir / "prepared",
                        tokenized=data_dir / "tokenized")
    r = review.run(p, paths)
    saved = json.loads(paths.review_metrics.read_text())
    assert saved["splits"]["test"]["task2"]["rows"] == r["splits"]["test"]["task2"]["rows"] > 0
    queue = pd.read_csv(paths.label_issues, keep_default_na=False)
    assert list(queue.columns) == ["id", "split", "task", "rank", "given", "suggested", "score", "text"]
    assert len(queue) == saved["queue"]["rows"] == sum(saved["splits"][s][t]["flagged"] for s in ("val", "test")
                                                       for t in ("task1", "task2"))
    assert set(queue["split"]) <= {"val", "test"} and queue["score"].between(0, 1).all()
    assert (queue["given"] != queue["suggested"]).mean() > 0.5
    pairs = pd.read_csv(paths.confusable_pairs)
    assert (pairs["confusions"] == pairs["a_as_b"] + pairs["b_as_a"]).all()
    assert paths.pairs_plot.stat().st_size > 1000 and paths.duplicates.is_file()
    assert saved["train_queue"]["rows"] >= 0 and "hard-to-learn" in saved["train_queue"]["what"]
    text = "\n".join(review_section(saved, "confusable_pairs.png"))
    assert "## Where the labels lose" in text and "upper bound" in text and "data.corrections" in text
    # `twohead review`'s source (the model's own tokenizer on the prepared texts) gives the stage's figures
    import dataclasses

    outside = tmp_path / "outside"
    other = dataclasses.replace(paths, **{f: outside / getattr(paths, f).name for f in
                                         ("label_issues", "confusable_pairs", "pairs_plot", "duplicates",
                                          "review_metrics")})
    again = review.run(p, other, review.TextSource(paths.stage2_model, "cpu", 16, "longest"))
    assert again["splits"] == r["splits"] and again["top_pairs"] == r["top_pairs"]
    assert (outside / "label_issues.csv").read_bytes() == paths.label_issues.read_bytes()
    from twohead.cli import build_parser

    args = build_parser().parse_args(["review", "models/stage2", "--out", "x"])
    assert args.func.__name__ == "cmd_review" and args.decision is None


def test_one_class_is_skipped_in_one_line_not_a_crash():
    """A split whose labels are all one class (a test split without Decline, via data.split_column): cleanlab
    raised 'Labels must contain at least 2 classes' and the review stage crashed; now it reports what it can."""
    import pandas as pd

    from twohead.check import one_class_splits
    from twohead.pipeline.review import report
    from twohead.review.issues import find_issues
    from twohead.review.pairs import confusable_pairs

    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1]])
    issues = find_issues(np.array([1, 1, 1]), probs, ["Decline", "Pick"])
    assert issues.summary()["flagged"] == 0 and "every one of its 3 labelled rows is 'Pick'" in issues.skipped
    assert list(issues.quality) == [0.3, 0.8, 0.1]
    pairs = confusable_pairs(np.array([0, 0, 0]), np.array([1, 0, 1]), probs, ["A", "B"], top=5, resamples=50)
    assert pairs.iloc[0]["confusions"] == 2 and pairs.iloc[0]["overlap_joint"] == 0.0
    split = {"task2": {"flagged": 0, "rows": 3, "estimated_wrong_share": 0.0},
             "task1": {"flagged": 0, "rows": 3, "skipped": issues.skipped}}
    lines = report({"splits": {"val": split, "test": split}, "top_pairs": [], "queue": {"path": "q", "rows": 0}})
    assert lines[0].startswith("skipped the Pick/Decline labels of val: every one of its 3 labelled rows")
    one = pd.DataFrame({"labels_task1": [1, 1], "category": ["A", "B"]})
    two = pd.DataFrame({"labels_task1": [1, 0, 1], "category": ["A", None, "B"]})
    warned = one_class_splits({"val": two, "test": one})
    assert len(warned) == 1 and "the test split's Pick/Decline labels are all 'Pick'" in warned[0]


def test_cumulative_merges_join_pairs_that_share_a_category():
    from twohead.review.pairs import cumulative_merge_gains, merge_gains

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 500)
    pred = np.where(rng.random(500) < 0.6, y, rng.integers(0, 5, 500))
    pairs = [(0, 1), (1, 2), (3, 4)]
    c = cumulative_merge_gains(y, pred, pairs)
    wrong = pred != y
    assert c[0, 0] == pytest.approx(merge_gains(y, pred, pairs[:1])[0, 0])        # one pair: the pair's own gain
    both = (wrong & np.isin(y, [0, 1, 2]) & np.isin(pred, [0, 1, 2])).mean()       # {0,1} and {1,2}: one group
    assert c[1, 0] == pytest.approx(both) and c[1, 0] > merge_gains(y, pred, pairs[:2])[:, 0].sum()
    assert c[2, 0] == pytest.approx(both + (wrong & np.isin(y, [3, 4]) & np.isin(pred, [3, 4])).mean())
    assert (np.diff(c[:, 0]) >= 0).all() and (c[:, 1] <= c[:, 0]).all() and (c[:, 0] <= c[:, 2]).all()
