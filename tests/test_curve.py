"""`twohead curve`: the fit picks the model that describes the points, projects with a band from the seeds, and the
route table reads only a checked result."""

import json

import numpy as np
import pytest

from twohead.config.errors import DataError
from twohead.experiments.curve import read_curve, run_curve
from twohead.experiments.curve_fit import fit_curve


def _points(f, seeds=(1, 2, 3), fractions=(0.125, 0.25, 0.5, 1.0), n_all=8000, noise=0.004):
    rng = np.random.default_rng(0)
    rows, acc, seed = [], [], []
    for s in seeds:
        for fr in fractions:
            rows.append(round(fr * n_all))
            acc.append(f(fr * n_all) + rng.normal(0, noise))
            seed.append(s)
    return np.array(rows), np.array(acc), np.array(seed), n_all


def test_a_saturating_curve_is_fitted_by_the_power_law_and_projected_below_its_ceiling():
    truth = lambda n: 0.80 - 3.0 * n ** -0.5   # noqa: E731 - the curve the points come from
    rows, acc, seeds, n_all = _points(truth)
    fit = fit_curve(rows, acc, seeds, n_all)
    assert fit["chosen"] == "power" and fit["power"]["aic"] < fit["loglin"]["aic"]
    two, four = fit["projection"]
    assert (two["times"], two["rows"], four["rows"]) == (2, 16000, 32000)
    assert two["acc"] == pytest.approx(truth(16000), abs=0.01) and four["acc"] == pytest.approx(truth(32000), abs=0.01)
    assert 0 < two["gain"] < four["gain"] < 0.80 - fit["acc_at_all_rows"]
    assert two["seeds"] == 3 and two["gain_low"] <= two["gain_high"]


def test_a_straight_line_in_log_rows_is_fitted_log_linear():
    truth = lambda n: 0.30 + 0.05 * np.log(n)   # noqa: E731
    rows, acc, seeds, n_all = _points(truth, noise=0.001)
    fit = fit_curve(rows, acc, seeds, n_all)
    assert fit["chosen"] == "loglin"
    assert fit["loglin"]["params"][1] == pytest.approx(0.05, abs=0.005)
    assert fit["projection"][0]["gain"] == pytest.approx(0.05 * np.log(2), abs=0.005)


def test_the_route_table_reads_only_a_checked_curve(tmp_path):
    f = tmp_path / "curve.json"
    f.write_text(json.dumps({"measured": False, "how": "twohead curve"}))
    assert read_curve(f) is None
    good = {"measured": True, "train_rows": 8006, "runs": 6, "fractions": [0.25, 0.5, 1.0], "seeds": [1, 2],
            "fit": {"chosen": "power", "loglin": {}}, "projection": [
                {"times": 2, "rows": 16012, "acc": 0.64, "gain": 0.02, "gain_low": 0.01, "gain_high": 0.03}]}
    f.write_text(json.dumps(good))
    assert read_curve(f)["projection"][0]["rows"] == 16012
    good["fit"]["chosen"] = "<img src=x onerror=alert(1)>"
    f.write_text(json.dumps(good))
    with pytest.raises(DataError, match="not a twohead curve result"):
        read_curve(f)


def test_bad_fractions_are_refused_before_anything_runs(tmp_path):
    for fractions in ([1.0], [0.5, 1.5], [0, 1.0]):
        with pytest.raises(DataError, match="--fractions"):
            run_curve(tmp_path, fractions, [1])
