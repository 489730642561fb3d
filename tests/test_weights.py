import numpy as np
import pandas as pd
import pytest

from twohead.config.params import BandsParams, LossParams
from twohead.data.io import DataError
from twohead.data.weights import frequency_bands, task1_weights, task2_weights


def train_table(cat_counts, decline=0, pick_missing=0):
    labels = [c for c, n in enumerate(cat_counts) for _ in range(n)]
    binary = [1] * len(labels)
    for i in range(pick_missing):
        binary[i] = -100
    labels += [-100] * decline
    binary += [0] * decline
    return pd.DataFrame({"labels_task2": labels, "labels_task1": binary})


def test_task1_weights_balanced_over_labelled_rows_only():
    # 90 Pick-labelled + 10 category-only (no pick) + 25 Decline: n = 115 labelled rows
    df = train_table([100], decline=25, pick_missing=10)
    w = task1_weights(df)
    assert w["support"] == [25, 90]
    assert w["weights"] == pytest.approx([115 / (2 * 25), 115 / (2 * 90)])


def test_task1_needs_both_classes():
    with pytest.raises(DataError, match="Decline=0, Pick=10"):
        task1_weights(train_table([10]))


def test_task2_weights_normalised_then_clipped():
    # supports 80, 15, 4, 1 -> n=100, N=4: raw n/(N n_c) = 0.3125, 1.6667, 6.25, 25
    df = train_table([80, 15, 4, 1], decline=3)
    w = task2_weights(df, ["a", "b", "c", "d"], LossParams(task2_weight_min=0.5, task2_weight_max=5.0))
    raw = np.array([100 / (4 * 80), 100 / (4 * 15), 100 / (4 * 4), 100 / (4 * 1)])
    norm = raw / raw.mean()
    assert w["weights_unclipped"] == pytest.approx(norm)
    assert np.mean(w["weights_unclipped"]) == pytest.approx(1.0)
    assert w["weights"] == pytest.approx(np.clip(norm, 0.5, 5.0))
    assert w["weights"][0] == 0.5 and w["weights"][3] == pytest.approx(25 / raw.mean())
    assert w["support"] == [80, 15, 4, 1]
    assert (w["n_clipped_low"], w["n_clipped_high"]) == (2, 0)
    w = task2_weights(df, ["a", "b", "c", "d"], LossParams(task2_weight_min=0.5, task2_weight_max=2.0))
    assert w["weights"][3] == 2.0 and w["weights"][2] == pytest.approx(min(2.0, norm[2]))
    assert w["n_clipped_high"] == 1


def test_quantile_bands_split_by_support():
    cats = list("abcdefg")
    support = [5, 100, 50, 1, 50, 20, 7]
    b = frequency_bands(cats, support, BandsParams(method="quantile", names=["High", "Mid", "Low"]))
    assert [x["classes"] for x in b["bands"]] == [["b", "c", "e"], ["f", "g"], ["a", "d"]]
    assert b["class_band"]["d"] == "Low" and b["bands"][0]["min_support"] == 50


def test_threshold_bands():
    cats = list("abcd")
    cfg = BandsParams(method="threshold", names=["H", "M", "L"], thresholds=[500, 50])
    b = frequency_bands(cats, [500, 499, 50, 49], cfg)
    assert b["class_band"] == {"a": "H", "b": "M", "c": "M", "d": "L"}
    assert [x["n_classes"] for x in b["bands"]] == [1, 2, 1]
