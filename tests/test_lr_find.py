"""twohead lr-find: the range test's ramp, early stop and suggestion rules on problems whose good learning
rates are known, and the command on the tiny pipeline data (writes only its JSON and PNG)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import replace, tool_paths, tree_digest
from twohead.config.errors import MissingInputError, ParamsError
from twohead.tune.lr_range import (
    SANE_MAX,
    RangeTestConfig,
    RangeTestResult,
    lr_at,
    range_test,
    steepest,
    suggestions,
    valley,
)


def _separable(seed: int = 0, n: int = 512, d: int = 20):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, generator=g) > 0).long()
    return x, y


def _batches(x, y, bs: int = 32):
    for start in itertools.cycle(range(0, len(x), bs)):
        yield {"x": x[start:start + bs], "y": y[start:start + bs]}


def _linear_range_test(steps: int = 200, seed: int = 0):
    torch.manual_seed(seed)
    x, y = _separable(seed)
    model = torch.nn.Linear(x.shape[1], 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=0.0)
    ce = torch.nn.CrossEntropyLoss()
    res = range_test(model, opt, [1.0], _batches(x, y), lambda b: {"total": ce(model(b["x"]), b["y"])},
                     RangeTestConfig(steps=steps, min_lr=1e-6, max_lr=100.0), progress=False)
    return res


def _loss_after(lr: float, steps: int = 60, seed: int = 0) -> float:
    """Full-data loss of the linear model after ``steps`` AdamW steps at a fixed ``lr``."""
    torch.manual_seed(seed)
    x, y = _separable(seed)
    model = torch.nn.Linear(x.shape[1], 2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ce = torch.nn.CrossEntropyLoss()
    batches = _batches(x, y)
    for _ in range(steps):
        b = next(batches)
        ce(model(b["x"]), b["y"]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        return float(ce(model(x), y))


def test_ramp_is_exponential_from_min_to_max():
    cfg = RangeTestConfig(steps=11, min_lr=1e-5, max_lr=1e-1)
    lrs = [lr_at(i, cfg) for i in range(11)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1e-1)
    assert np.allclose(np.diff(np.log10(lrs)), 0.4)


def test_suggestion_lands_in_the_range_that_trains_a_separable_problem():
    res = _linear_range_test()
    sugg = suggestions(res)
    # the learning rates that actually train this problem in 60 fixed-LR steps: loss below half its start
    start = _loss_after(0.0, steps=1)
    grid = np.logspace(-6, 2, 33)
    good = [lr for lr in grid if _loss_after(lr) < 0.5 * start]
    assert good, "the reference grid found no working learning rate"
    lo, hi = min(good), max(good)
    assert lo < 1e-2 < hi  # sanity of the reference: Adam on a linear model trains around 1e-2
    assert sugg["rule"] == "steepest"
    # an encoder never gets more than SANE_MAX suggested, a linear model's range goes beyond it
    assert sugg["suggested_lr"] == pytest.approx(min(sugg["steepest"], SANE_MAX))
    assert sugg["clipped"] == (sugg["steepest"] > SANE_MAX)
    for rule in ("steepest", "valley"):
        assert lo <= sugg[rule] <= hi, (rule, sugg[rule], lo, hi)
    # the loss blew up at the high end: the test stopped before max_lr
    assert res.stopped_early and res.lrs[-1] < 100.0 and "minimum" in res.stop_reason


def test_every_group_keeps_its_ratio_to_the_base_lr():
    layers = torch.nn.ModuleList([torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)])
    opt = torch.optim.AdamW([{"params": layers[0].parameters()}, {"params": layers[1].parameters()}], lr=1.0)
    seen = []

    def loss_terms(batch):
        seen.append([g["lr"] for g in opt.param_groups])
        return {"total": layers[1](layers[0](batch)).pow(2).mean()}

    range_test(layers, opt, [0.25, 1.0], itertools.repeat(torch.ones(4, 3)), loss_terms,
               RangeTestConfig(steps=10, min_lr=1e-4, max_lr=1e-2), progress=False)
    lows, highs = np.array(seen).T
    assert np.allclose(lows / highs, 0.25) and highs[0] == pytest.approx(1e-4) and highs[-1] == pytest.approx(1e-2)


def test_early_stop_fires_on_divergence():
    # SGD on (w - t)^2 diverges for lr > 1: the test must stop soon after, far before max_lr
    w = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=1.0)
    targets = iter(1.0 + 0.1 * torch.randn(200, generator=torch.Generator().manual_seed(0)))
    res = range_test(torch.nn.Module(), opt, [1.0], targets, lambda t: {"total": (w - t) ** 2},
                     RangeTestConfig(steps=200, min_lr=1e-4, max_lr=1e4, max_grad_norm=0), progress=False)
    assert res.stopped_early
    assert 1.0 < res.lrs[-1] < 100.0
    assert len(res.lrs) < 200


def test_nonfinite_loss_stops_the_test():
    w = torch.nn.Parameter(torch.ones(()))
    opt = torch.optim.SGD([w], lr=1.0)
    calls = itertools.count()
    res = range_test(torch.nn.Module(), opt, [1.0], itertools.repeat(None),
                     lambda _: {"total": w * (float("nan") if next(calls) == 12 else 1.0)},
                     RangeTestConfig(steps=50, min_lr=1e-6, max_lr=1e-3, max_grad_norm=0), progress=False)
    assert res.stopped_early and len(res.lrs) == 13 and "non-finite" in res.stop_reason


def test_rules_on_a_known_curve():
    lrs = list(np.logspace(-6, 0, 61))
    x = np.log10(lrs)
    loss = list(2.0 - np.tanh(x + 3.0))  # falls fastest at lr = 1e-3, flat at both ends
    assert lrs[steepest(lrs, loss)] == pytest.approx(1e-3)
    i = valley(loss)
    assert 1e-4 < lrs[i] < 1e-1
    rising = list(np.linspace(1, 2, 20))
    assert valley(rising) is None and steepest(list(np.logspace(-6, 0, 20)), rising) is None  # never falls


def test_too_short_or_rising_curves_give_no_suggestion():
    res = RangeTestResult(lrs=[1e-5, 1e-4], losses={"total": [1.0, 0.9]}, smoothed={"total": [1.0, 0.9]})
    sugg = suggestions(res)
    assert sugg["suggested_lr"] is None and sugg["rule"] is None
    rising = list(np.linspace(1, 2, 30))
    sugg = suggestions(RangeTestResult(lrs=list(np.logspace(-6, 0, 30)), losses={"total": rising},
                                       smoothed={"total": rising}))
    assert sugg["suggested_lr"] is None and sugg["min_div10"] is None


def test_config_is_checked():
    with pytest.raises(ParamsError, match="min-lr"):
        RangeTestConfig(min_lr=1.0, max_lr=0.1).validate()
    with pytest.raises(ParamsError, match="steps"):
        RangeTestConfig(steps=3).validate()



def test_command_writes_its_json_and_png_and_touches_nothing_else(tiny_data, tmp_path):
    from twohead.tune.lr_range import run

    data_dir, p = tiny_data
    before = tree_digest(data_dir)
    enc_before = tree_digest(Path(p.model.stage1_checkpoint))
    paths = tool_paths(tmp_path, "lr_find", "lr_find_plot", prepared=data_dir / "prepared",
                       tokenized=data_dir / "tokenized")
    cfg = RangeTestConfig(steps=30, min_lr=1e-6, max_lr=10.0)
    r1 = run(p, paths, cfg, progress=False)
    saved = json.loads(paths.json.read_text())
    assert saved["suggested_lr"] == pytest.approx(r1["suggested_lr"]) and 1e-6 <= r1["suggested_lr"] <= 1e-2
    assert saved["lr_key"] == "train.lr" and saved["command"] == f"dvc exp run -S train.lr={r1['suggested_lr']:.2g}"
    assert len(saved["curve"]) == saved["steps_run"] and {"loss_task1", "loss_task2", "smoothed_total"} <= set(
        saved["curve"][0])
    assert paths.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f.relative_to(tmp_path).as_posix() for f in tmp_path.rglob("*") if f.is_file()) == sorted(
        [paths.json.relative_to(tmp_path).as_posix(), paths.plot.relative_to(tmp_path).as_posix()])
    assert tree_digest(data_dir) == before and tree_digest(Path(p.model.stage1_checkpoint)) == enc_before
    # seeded: the same curve again
    r2 = run(p, paths, cfg, progress=False)
    assert [c["loss_total"] for c in r2["curve"]] == [c["loss_total"] for c in r1["curve"]]
    assert all(math.isfinite(c["lr"]) for c in r2["curve"])


def test_stage1_variant_uses_the_base_model_and_stage1_lr(tiny_data, tmp_path):
    from twohead.tune.lr_range import run

    data_dir, p = tiny_data
    paths = tool_paths(tmp_path, "lr_find", "lr_find_plot", prepared=data_dir / "prepared",
                       tokenized=data_dir / "tokenized")
    p = replace(p, "stage1", base_model=p.model.stage1_checkpoint)
    r = run(p, paths, RangeTestConfig(steps=12, rows=60), stage="stage1", progress=False)
    assert r["lr_key"] == "stage1.lr" and r["rows"] <= 60 and "loss_task2" not in r["curve"][0]


def test_missing_inputs_name_the_stage_that_builds_them(tiny_data, tmp_path):
    from twohead.tune.lr_range import run

    data_dir, p = tiny_data
    paths = tool_paths(tmp_path, "lr_find", "lr_find_plot", prepared=data_dir / "prepared")  # tokenized: absent
    with pytest.raises(MissingInputError, match="dvc repro tokenize"):
        run(p, paths, RangeTestConfig(steps=12), progress=False)
    gone = replace(p, "model", stage1_checkpoint=str(tmp_path / "nope"))
    with pytest.raises(MissingInputError, match="model.stage1_checkpoint"):
        run(gone, paths, RangeTestConfig(steps=12), progress=False)
    no_base = replace(p, "stage1", base_model=str(paths.demo_encoder))  # the demo encoder, not built yet
    with pytest.raises(MissingInputError, match="dvc repro build_demo_encoder"):
        run(no_base, paths, RangeTestConfig(steps=12), stage="stage1", progress=False)
    assert not paths.json.exists() and not paths.plot.exists()


def test_per_task_panel_range_covers_every_task():
    """The lower panel's y-range once followed Task1's start only, so Task2 (a higher loss) was drawn off-scale."""
    from twohead.tune.lr_range import y_range

    task1 = [0.7 - 0.001 * i for i in range(100)]
    task2 = [3.3 - 0.01 * i for i in range(100)]
    lo, hi = y_range([task1, task2])
    assert lo < min(task1) and hi > max(task2[:10])
    assert y_range([[float("nan")]]) is None
