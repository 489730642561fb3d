"""One source per setting: the tools' flags come from their config dataclasses, the decision objectives and rules
from one table each, the decision file's name from one constant — and the copies they replaced cannot come back."""

from __future__ import annotations

import typing
from pathlib import Path

from conftest import dvc_paths
from twohead.cli import build_parser
from twohead.config.flags import from_flags
from twohead.config.params import DecideParams
from twohead.evaluate.decision import DECISION_FILE, OBJECTIVES, RULES
from twohead.tune.lr_range import RangeTestConfig
from twohead.tune.lr_sweep import SweepConfig
from twohead.tune.speed import SpeedConfig


def _parse(*argv):
    return build_parser().parse_args(list(argv))


def test_lr_find_defaults_and_help_come_from_the_configs():
    args = _parse("lr-find")
    assert from_flags(SweepConfig, args) == SweepConfig() and from_flags(RangeTestConfig, args) == RangeTestConfig()
    sub = build_parser()._subparsers._group_actions[0].choices["lr-find"]
    text = " ".join(sub.format_help().split())
    lrs = " ".join(f"{x:g}" for x in SweepConfig().lrs)
    assert f"(default: {lrs})" in text and "3e-03" not in text and "0.003" not in text
    assert "(default: 2 x the last rung's rows)" in text and f"(default: {RangeTestConfig().steps})" in text


def test_given_flags_reach_the_configs_with_their_types():
    args = _parse("lr-find", "--lrs", "1e-4", "3e-4", "--val-rows", "0", "--head-rows", "64", "--method", "range",
                  "--steps", "30", "--rows", "100")
    sweep, rng = from_flags(SweepConfig, args), from_flags(RangeTestConfig, args)
    assert sweep.lrs == (1e-4, 3e-4) and sweep.val_rows == 0 and sweep.head_rows == 64 and sweep.budget == 0.1
    assert rng.steps == 30 and rng.rows == 100 and isinstance(rng.steps, int)
    speed = from_flags(SpeedConfig, _parse("speed", "--seconds", "30", "--batch-sizes", "8", "64", "--compile"))
    assert speed == SpeedConfig(seconds=30.0, batch_sizes=(8, 64), compile=True)
    assert from_flags(SpeedConfig, _parse("speed")) == SpeedConfig()


def test_decision_objectives_rules_and_file_have_one_home():
    hints = typing.get_type_hints(DecideParams)
    assert set(typing.get_args(hints["objective"])) == set(OBJECTIVES)
    assert set(typing.get_args(hints["rule"])) == set(RULES)
    layout = dvc_paths()
    decision, model = Path(layout["decision"]), Path(layout["stage2_model"])
    assert decision.name == DECISION_FILE and decision.parent == model.parent  # where Predictor looks by default


def test_pipeline_holds_stages_only():
    """Every module of twohead.pipeline (but the shared entry) is a stage: <Stage>Paths and run(params, paths)."""
    import importlib
    import pkgutil

    import twohead.pipeline as pipeline

    names = [m.name for m in pkgutil.iter_modules(pipeline.__path__) if m.name != "stage_main"]
    for name in names:
        mod = importlib.import_module(f"twohead.pipeline.{name}")
        assert callable(getattr(mod, "run", None)), name
        assert any(n.endswith("Paths") for n in vars(mod)), name
    assert {"train_stage2", "pretrain_stage1", "evaluate", "calibrate"} <= set(names)
