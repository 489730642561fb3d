"""Decisions chosen on val: temperature, class-prior correction, the Decline rule — answers known by construction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from twohead.config.errors import DataError
from twohead.config.params import DecideParams, EvalParams
from twohead.evaluate.calibration import ece, fit_temperature, nll, reliability
from twohead.evaluate.decision import PLAIN, Decision, choose, decide, objective_value
from twohead.evaluate.metrics import softmax
from twohead.evaluate.tables import split_metrics

OFF = DecideParams(temperature=False, prior_correction=False)


def _sample(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """Labels drawn from softmax(z): z are then the true (calibrated) logits."""
    rng = np.random.default_rng(seed)
    p = softmax(z)
    return np.array([rng.choice(len(row), p=row) for row in p])


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_temperature_recovers_a_known_scale(scale):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2.0, size=(4000, 6))
    y = _sample(z)
    t = fit_temperature(z * scale, y)  # logits `scale` times too sharp (or flat): T = scale undoes it
    assert t == pytest.approx(scale, rel=0.08)
    assert nll(z * scale, y, t) <= nll(z * scale, y) + 1e-12
    assert ece(softmax(z * scale / t), y) < 0.03


def test_ece_and_reliability_by_hand():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.35, 0.65], [0.4, 0.6]])
    y = np.array([0, 1, 1, -100])  # the last row has no label
    rows = reliability(probs, y, bins=10)
    b9, b6 = rows[9], rows[6]
    assert (b9["rows"], b9["accuracy"]) == (2, 0.5) and b9["confidence"] == pytest.approx(0.925)
    assert (b6["rows"], b6["accuracy"]) == (1, 1.0)
    assert ece(probs, y, bins=10) == pytest.approx((2 * abs(0.5 - 0.925) + abs(1 - 0.65)) / 3)


def _pick_logits(p_pick: np.ndarray) -> np.ndarray:
    return np.stack([np.zeros_like(p_pick), np.log(p_pick / (1 - p_pick))], axis=1)


def test_threshold_search_finds_the_known_optimum_nearest_the_plain_rule():
    # Decline rows have P(Pick) in [0.55, 0.65], Pick rows in [0.75, 0.95]: every t in (0.65, 0.75] is perfect;
    # the plain 0.5 calls every Decline row Pick
    rng = np.random.default_rng(0)
    n_dec, n_pick = 60, 240
    p_pick = np.concatenate([rng.uniform(0.55, 0.65, n_dec), rng.uniform(0.75, 0.95, n_pick)])
    y1 = np.concatenate([np.zeros(n_dec, int), np.ones(n_pick, int)])
    y2 = np.concatenate([np.full(n_dec, -100), rng.integers(0, 3, n_pick)])
    logits2 = np.eye(3)[np.where(y2 < 0, 0, y2)] * 5.0  # Task2 always right
    dec, report = choose(_pick_logits(p_pick), logits2, y1, y2, [100, 100, 100], OFF)
    assert dec.pick_threshold == pytest.approx(0.66) and dec.temperature_task1 == 1.0 and dec.tau == 0.0
    assert report["decline_rule"]["val_value"] == pytest.approx(1.0)
    assert report["decline_rule"]["val_value_at_plain_threshold"] == pytest.approx(n_pick / (n_dec + n_pick))


def test_a_flat_objective_keeps_the_plain_threshold_and_a_pin_is_kept():
    p_pick = np.array([0.99, 0.98, 0.01, 0.02])
    y1, y2 = np.array([1, 1, 0, 0]), np.array([0, 1, -100, -100])
    logits2 = np.array([[5.0, 0], [0, 5.0], [1, 0], [0, 1]])
    dec, _ = choose(_pick_logits(p_pick), logits2, y1, y2, [2, 2], OFF)
    assert dec.pick_threshold == 0.5  # every t in [0.02, 0.98] is perfect: the tie goes to the plain rule
    pinned, _ = choose(_pick_logits(p_pick), logits2, y1, y2, [2, 2],
                       DecideParams(temperature=False, prior_correction=False, pick_threshold=0.3))
    assert pinned.pick_threshold == 0.3


def test_pick_or_maxprob_declines_flat_task2_rows():
    # out-of-scope rows: a confident Task1 "Pick" but a flat Task2; only the max-prob rule can catch them
    n = 200
    y1 = np.array([1] * 150 + [0] * 50)
    y2 = np.array(list(np.arange(150) % 4) + [-100] * 50)
    logits1 = _pick_logits(np.full(n, 0.9))
    logits2 = np.vstack([np.eye(4)[np.arange(150) % 4] * 4.0, np.zeros((50, 4))])
    s = DecideParams(temperature=False, prior_correction=False, rule="pick_or_maxprob")
    dec, _ = choose(logits1, logits2, y1, y2, [1, 1, 1, 1], s)
    decline = decide(dec, logits1, logits2).decline
    assert decline[150:].all() and not decline[:150].any()
    assert 0.25 < dec.maxprob_threshold <= 0.6


def test_prior_correction_recovers_the_balanced_rule():
    # logits = true balanced scores + log prior: the model leans towards frequent classes; tau = 1 removes it
    rng = np.random.default_rng(3)
    prior = np.array([0.7, 0.2, 0.07, 0.03])
    y2 = rng.integers(0, 4, 4000)  # balanced val labels
    scores = np.eye(4)[y2] * 1.5 + rng.normal(0, 1, (4000, 4))
    logits2 = scores + np.log(prior)
    y1 = np.ones(4000, int)
    s = DecideParams(temperature=False, prior_correction=True, prior_objective="macro_f1", tau_max=2.0)
    dec, report = choose(_pick_logits(np.full(4000, 0.9)), logits2, y1, y2, list((prior * 1e4).astype(int)), s)
    assert 0.7 <= dec.tau <= 1.3
    curve = {r["tau"]: r["macro_f1"] for r in report["prior_correction"]["curve"]}
    assert curve[dec.tau] > curve[0.0] + 0.05


def test_a_negative_tau_undoes_weights_that_pushed_toward_rare_classes():
    """Val labels follow the train prior, but the model leans toward rare classes (as inverse-frequency class
    weights make it): accuracy wants τ ≈ −1, which tau_min = 0 (the default) cannot reach."""
    rng = np.random.default_rng(4)
    prior = np.array([0.7, 0.2, 0.07, 0.03])
    y2 = rng.choice(4, size=4000, p=prior)
    scores = np.eye(4)[y2] * 1.5 + rng.normal(0, 1, (4000, 4)) + np.log(prior)   # calibrated, prior included
    logits2 = scores - np.log(prior)                                              # the weights' push to rare ones
    y1 = np.ones(4000, int)
    counts = list((prior * 1e4).astype(int))
    both = DecideParams(temperature=False, prior_correction=True, prior_objective="acc", tau_min=-2.0)
    dec, report = choose(_pick_logits(np.full(4000, 0.9)), logits2, y1, y2, counts, both)
    assert -1.4 <= dec.tau <= -0.6
    curve = {r["tau"]: r["acc"] for r in report["prior_correction"]["curve"]}
    assert curve[dec.tau] > curve[0.0] + 0.03 and min(curve) == -2.0
    one_way, _ = choose(_pick_logits(np.full(4000, 0.9)), logits2, y1, y2, counts, replace(both, tau_min=0.0))
    assert one_way.tau == 0.0
    with pytest.raises(Exception, match="tau_min must be in"):
        DecideParams(tau_min=0.5)


def test_plain_decision_reproduces_the_plain_metrics():
    rng = np.random.default_rng(4)
    logits1, logits2 = rng.normal(size=(300, 2)).astype(np.float32), rng.normal(size=(300, 5)).astype(np.float32)
    y1 = rng.integers(0, 2, 300)
    y2 = np.where(y1 == 1, rng.integers(0, 5, 300), -100)
    e = EvalParams()
    plain = split_metrics(y1, y2, softmax(logits1), softmax(logits2), 5, e)
    d = decide(PLAIN, logits1, logits2)
    decided = split_metrics(y1, y2, d.p1, d.p2, 5, e, decline=d.decline, pred2=d.pred2)
    for group in ("task1", "task2", "combined"):
        for key, value in plain[group].items():
            if key != "ece":
                assert decided[group][key] == value, (group, key)
    assert decided["task2"]["ece"] == pytest.approx(plain["task2"]["ece"], abs=1e-6)


def test_constraint_objectives_and_unreachable_targets():
    y1 = np.array([0, 0, 1, 1])
    decline = np.array([True, False, True, False])
    # Decline precision 1/2, recall 1/2
    assert objective_value("decline_recall_at_precision", 0.5, y1, y1, decline, y1, 2) == 0.5
    assert objective_value("decline_recall_at_precision", 0.9, y1, y1, decline, y1, 2) == -np.inf
    p_pick = np.array([0.6, 0.7, 0.8, 0.9])  # Decline rows above Pick rows: no threshold gives precision 1
    s = DecideParams(temperature=False, prior_correction=False, objective="decline_recall_at_precision", target=1.0)
    y1 = np.array([1, 1, 0, 0])
    with pytest.raises(DataError, match="no threshold on val meets the target"):
        choose(_pick_logits(p_pick), np.zeros((4, 2)), y1, np.full(4, -100), [1, 1], s)


def test_decision_round_trips_and_rejects_bad_files(tmp_path):
    import json

    from twohead.evaluate.decision import read_decision

    dec = Decision(0.7, 1.4, 0.5, [-0.1, -2.3], "pick_or_maxprob", 0.42, 0.2)
    (tmp_path / "d.json").write_text(json.dumps({"decision": dec.to_dict()}))
    assert read_decision(tmp_path / "d.json")[0] == dec
    (tmp_path / "bad.json").write_text(json.dumps({"decision": {**dec.to_dict(), "rule": "nope"}}))
    with pytest.raises(DataError, match="rule 'nope'"):
        read_decision(tmp_path / "bad.json")
    with pytest.raises(DataError, match="run `dvc repro calibrate`"):
        read_decision(tmp_path / "missing.json")


def test_the_calibrate_stage_never_reads_test(tiny_data, tmp_path):
    """Choices on val, results on test: calibrate decides identically without the test split at all, and its DVC
    deps name the val split only."""
    import shutil

    import yaml

    from conftest import ROOT, stage_paths, train_in
    from twohead.pipeline import calibrate

    data_dir, p = tiny_data
    train_in(tmp_path, data_dir, p)
    no_test = tmp_path / "tokenized_without_test"
    shutil.copytree(data_dir / "tokenized", no_test)
    (no_test / "test.parquet").unlink()
    decided = []
    for tokenized, out in ((data_dir / "tokenized", tmp_path / "a"), (no_test, tmp_path / "b")):
        paths = stage_paths(calibrate.CalibratePaths, out, prepared=data_dir / "prepared", tokenized=tokenized,
                            stage2_model=tmp_path / "models" / "stage2")
        calibrate.run(p, paths)
        decided.append(paths.decision.read_bytes())
    assert decided[0] == decided[1]
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["calibrate"]["deps"]
    assert "${paths.tokenized}/val.parquet" in deps and "${paths.tokenized}" not in deps
    assert not any("test" in str(d) for d in deps)


def _decline_case(pick_rows_near: int, decline_rows_near: int, n: int = 1000):
    """Val rows where P(Pick) is 0.9 / 0.1 for gold Pick / Decline and the Task2 head is right, except
    ``pick_rows_near`` gold-Pick and ``decline_rows_near`` gold-Decline rows at P(Pick) = 0.45: a threshold below
    0.45 gains (pick_rows_near - decline_rows_near) rows of combined accuracy over the plain 0.5."""
    k = 4
    gold_pick = np.r_[np.ones(n - 100 - decline_rows_near), np.zeros(100 + decline_rows_near)].astype(int)
    p = np.where(gold_pick == 1, 0.9, 0.1)
    p[:pick_rows_near] = 0.45
    p[n - decline_rows_near:] = 0.45
    logits1 = np.stack([np.zeros(n), np.log(p / (1 - p))], 1).astype(np.float32)
    y2 = np.where(gold_pick == 1, np.arange(n) % k, -100)
    logits2 = np.where(np.arange(k)[None, :] == (np.arange(n) % k)[:, None], 6.0, 0.0).astype(np.float32)
    return logits1, logits2, gold_pick, y2, [100] * k


@pytest.mark.parametrize("guard", [True, False])
def test_a_three_row_val_gain_keeps_the_plain_rule_unless_the_guard_is_off(guard):
    """The demo's case: the Decline rule won on val by ~3 rows (+0.3 points) and lost on test. Within val's noise the
    plain rule stays, and decision.json's report says so with the gain and its interval."""
    logits1, logits2, y1, y2, counts = _decline_case(pick_rows_near=5, decline_rows_near=2)
    s = DecideParams(temperature=False, prior_correction=False, rule="pick_threshold", noise_guard=guard)
    dec, report = choose(logits1, logits2, y1, y2, counts, s)
    g = report["guard"]["decline_rule"]
    assert g["gain"] == pytest.approx(3 / 1000) and g["ci_low"] < 0 < g["ci_high"] and not g["beats_noise"]
    assert report["decline_rule"]["val_value"] - report["decline_rule"]["val_value_at_plain_threshold"] > 0
    assert dec.pick_threshold == (0.5 if guard else 0.44) and g["adopted"] is (not guard)
    assert "paired bootstrap" in report["guard"]["method"]


def test_a_rule_that_wins_by_a_wide_margin_is_adopted():
    logits1, logits2, y1, y2, counts = _decline_case(pick_rows_near=60, decline_rows_near=0)
    dec, report = choose(logits1, logits2, y1, y2, counts,
                         DecideParams(temperature=False, prior_correction=False, rule="pick_threshold"))
    g = report["guard"]["decline_rule"]
    assert dec.pick_threshold == 0.44 and g["adopted"] and g["beats_noise"] and g["ci_low"] > 0
    assert g["gain"] == pytest.approx(60 / 1000)


def test_a_temperature_within_noise_is_not_adopted_and_a_clear_one_is():
    rng = np.random.default_rng(0)
    top = rng.integers(0, 3, 2000)   # the predicted class, said with P = 0.7; the label follows that distribution
    calibrated_logits = np.log(np.where(np.eye(3)[top] == 1, 0.7, 0.15)).astype(np.float32)
    y = np.where(rng.random(2000) < 0.7, top, (top + rng.integers(1, 3, 2000)) % 3)
    dec, report = choose(calibrated_logits[:, :2], calibrated_logits, (y > 0).astype(int), y, [1, 1, 1],
                         DecideParams(prior_correction=False, rule="pick_threshold", pick_threshold=0.5))
    g2 = report["guard"]["temperature_task2"]
    assert g2 is None or (not g2["beats_noise"] and dec.temperature_task2 == 1.0)
    overconfident = (calibrated_logits * 6).astype(np.float32)   # far too sharp: a temperature is a clear gain
    dec, report = choose(overconfident[:, :2], overconfident, (y > 0).astype(int), y, [1, 1, 1],
                         DecideParams(prior_correction=False, rule="pick_threshold", pick_threshold=0.5))
    g2 = report["guard"]["temperature_task2"]
    assert g2["adopted"] and g2["ci_low"] > 0 and dec.temperature_task2 > 2


def test_four_rows_won_and_none_lost_is_still_noise():
    """The committed demo's case after the guard's first version: 4 val rows won, none lost. The percentile
    bootstrap's interval then sits above 0 (its lower end is one row); the exact McNemar test (p = 0.125) does not."""
    logits1, logits2, y1, y2, counts = _decline_case(pick_rows_near=4, decline_rows_near=0)
    dec, report = choose(logits1, logits2, y1, y2, counts,
                         DecideParams(temperature=False, prior_correction=False, rule="pick_threshold"))
    g = report["guard"]["decline_rule"]
    assert g["ci_low"] > 0 and (g["rows_won"], g["rows_lost"]) == (4, 0) and g["mcnemar_p"] == pytest.approx(0.125)
    assert not g["beats_noise"] and not g["adopted"] and dec.pick_threshold == 0.5
