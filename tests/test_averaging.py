"""Weight averaging (switches.ema): the EMA follows its formula, is scored on val every epoch beside the raw weights,
train.keep keeps whichever has the higher val Task2 accuracy (ties: raw), train.json says which, and an interrupted
run resumes to the same result (the averages are run state)."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from conftest import replace, train_in
from twohead.config.errors import ParamsError, TrainingError
from twohead.train.averaging import WeightAverages


def test_the_ema_follows_its_formula_and_the_choice_goes_by_val():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    avg = WeightAverages(lin, [0.9])
    ema = avg.candidates[0]
    expected = 0.0
    for step, w in enumerate([1.0, 2.0, 3.0]):
        with torch.no_grad():
            lin.weight.fill_(w)
        avg.update()
        expected = w if step == 0 else 0.9 * expected + 0.1 * w    # the first update copies the weights
    assert torch.allclose(ema.model.module.weight, torch.full((1, 2), expected))
    row = {"val_acc_task2": 0.6, "val_macro_f1_task2": 0.3, "val_loss_total": 1.0}
    avg.record(ema, 1, row, "last")
    assert avg.choose("last", raw_score=0.6, raw_epoch=1)[0] == "raw"            # a tie keeps the raw weights
    name, epoch, weights = avg.choose("last", raw_score=0.55, raw_epoch=1)
    assert (name, epoch) == ("ema0.9", 1) and torch.allclose(weights["weight"], torch.full((1, 2), expected))
    again = WeightAverages(lin, [0.9])
    again.load_state_dict(avg.state_dict())
    assert torch.equal(again.candidates[0].model.module.weight, ema.model.module.weight)
    assert again.candidates[0].val == ema.val
    with pytest.raises(ValueError, match="switches.ema changed"):
        WeightAverages(lin, [0.99]).load_state_dict(avg.state_dict())


def test_ema_params_are_checked():
    from conftest import make_params

    for bad in ([1.0], [0.9, 0.9], [0.0]):
        with pytest.raises(ParamsError, match="switches.ema must be"):
            make_params(switches={"ema": bad})


def test_training_scores_each_average_and_keeps_the_better_on_val(tiny_data, tmp_path):
    data_dir, p = tiny_data
    p = replace(p, "switches", ema=[0.9, 0.5])
    m = train_in(tmp_path, data_dir, p)
    saved = json.loads((tmp_path / "metrics" / "train.json").read_text())
    wa = saved["weight_averaging"]
    assert set(wa["candidates"]) == {"ema0.9", "ema0.5"}
    for c in wa["candidates"].values():
        assert [r["epoch"] for r in c["val"]] == [1, 2] and 0 <= c["val"][-1]["val_acc_task2"] <= 1
    scores = {"raw": saved["val_acc_task2"], **{k: c["val"][-1]["val_acc_task2"] for k, c in wa["candidates"].items()}}
    assert saved["kept_weights"] == wa["kept"] == max(scores, key=lambda k: (scores[k], k == "raw"))
    assert m["kept_weights"] == saved["kept_weights"]


def test_an_interrupted_run_with_averages_resumes_to_the_same_result(tiny_data, tmp_path, monkeypatch):
    import twohead.train.loop as loop

    data_dir, p = tiny_data
    p = replace(replace(p, "switches", ema=[0.8]), "train", checkpoint_every_steps=3)
    ref = train_in(tmp_path / "ref", data_dir, p)
    calls = {"n": 0}
    real = loop._counts

    def counting(*args):
        calls["n"] += 1
        if calls["n"] == 20:  # mid-epoch 2: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(loop, "_counts", counting)
    with pytest.raises(TrainingError, match="SIGINT: interrupted at epoch 2"):
        train_in(tmp_path / "run", data_dir, p)
    monkeypatch.setattr(loop, "_counts", real)
    assert train_in(tmp_path / "run", data_dir, p) == ref
    assert (tmp_path / "run" / "metrics" / "train.json").read_bytes() == \
        (tmp_path / "ref" / "metrics" / "train.json").read_bytes()


def test_the_summary_says_what_moved_task2_accuracy():
    from twohead.evaluate.summary import moved_section

    m = {"task2_acc": {"delta": 0.012, "ci_low": 0.002, "ci_high": 0.021},
         "task2_macro_f1": {"delta": -0.03, "ci_low": -0.06, "ci_high": 0.0},
         "band_Mid_recall": {"delta": -0.08}, "band_High_recall": {"delta": 0.01}}
    test = {"decided_vs_plain": {"metrics": m}, "decided": {"decision": {"tau": -0.7, "temperature_task2": 1.31,
                                                                         "rule": "pick_threshold"}}}
    train = {"weight_averaging": {"kept": "ema0.99", "kept_epoch": 5, "raw": {"val_acc_task2": 0.61},
                                  "candidates": {"ema0.99": {"val": [{"val_acc_task2": 0.62}]}}}}
    text = "\n".join(moved_section(test, train))
    assert "| decisions (calibrate) | τ -0.7, T2 1.31, Decline rule pick_threshold | +1.2 [+0.2, +2.1] |" in text
    assert "Mid band mean recall -8.0" in text and "High band" not in text      # the cost: what went down
    assert "| weight averaging (switches.ema) | ema0.99 (epoch 5) | val: +1.0 (test: re-run evaluate)" in text
    assert "| weight averaging (switches.ema) | off |" in "\n".join(moved_section(test, {}))


def test_a_kept_average_is_compared_with_the_raw_weights_on_test(tiny_data, tmp_path, monkeypatch):
    """When an average is kept, the raw weights are saved beside it and evaluate scores both on test (paired)."""
    from conftest import evaluate_in
    from twohead.train import averaging

    def first_average(self, keep, raw_score, raw_epoch):
        c = self.candidates[0]
        return c.name, c.val[-1]["epoch"], {k: v.detach().clone() for k, v in c.model.module.state_dict().items()}

    monkeypatch.setattr(averaging.WeightAverages, "choose", first_average)
    data_dir, p = tiny_data
    p = replace(p, "switches", ema=[0.5])
    train_in(tmp_path, data_dir, p)
    assert (tmp_path / "models" / "stage2" / "raw_weights.safetensors").is_file()
    res = evaluate_in(tmp_path, data_dir, p)
    avg = res["averaged_vs_raw"]
    assert avg["kept"] == "ema0.5" and avg["rows"] > 0
    assert avg["metrics"]["task2_acc"]["other"] == pytest.approx(res["test"]["task2"]["acc"])   # the kept model
    saved = json.loads((tmp_path / "metrics" / "test.json").read_text())
    assert saved["averaged_vs_raw"]["metrics"]["task2_acc"]["base"] == pytest.approx(
        avg["metrics"]["task2_acc"]["base"], rel=1e-5)
    from twohead.evaluate.summary import moved_section

    assert "| weight averaging (switches.ema) | ema0.5 |" in "\n".join(moved_section(saved, None))


def test_damaged_raw_weights_are_one_line_naming_the_file(tmp_path):
    from twohead.config.errors import CheckpointError
    from twohead.model.two_head import RAW_WEIGHTS, load_raw_weights

    lin = torch.nn.Linear(2, 1)
    assert load_raw_weights(lin, tmp_path) is False                       # none: nothing to compare
    (tmp_path / RAW_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="raw_weights.safetensors: cannot load the raw weights") as e:
        load_raw_weights(lin, tmp_path)
    assert "\n" not in str(e.value)
