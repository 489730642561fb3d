"""Plain again: one name per concept (renamed keys answered in one line), one way to say "chosen on val", the plain
step in step.py with the loss built from params by name, switch columns and figures only while a switch is on,
figures that draw every class, and --help lines that say each flag's default."""

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import committed_text, make_params
from twohead.config.params import ParamsError, load_params
from twohead.config.schema import HISTORY_COLUMNS, history_columns


def _write(tmp_path, raw):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("section, key, value, new", [
    ("loss", "weighting", "fixed", "switches.task_weighting"),
    ("train", "ema", [], "switches.ema"),
    ("model", "msd_samples", 1, "switches.msd_samples"),
    ("stage1", "label_smoothing", 0.0, "stage1.label_smoothing_task1"),
])
def test_an_old_key_is_one_line_naming_the_new_one(tmp_path, section, key, value, new):
    raw = yaml.safe_load(committed_text("params.yaml"))
    raw[section][key] = value
    with pytest.raises(ParamsError) as e:
        load_params(_write(tmp_path, raw))
    msg = str(e.value)
    assert f"{section}.{key} is now {new}" in msg and "\n" not in msg


def test_an_old_section_is_named_too(tmp_path):
    raw = yaml.safe_load(committed_text("params.yaml"))
    raw["reg"] = {"rdrop_alpha": 0.0}
    with pytest.raises(ParamsError, match=r"reg is now switches \(the same keys"):
        load_params(_write(tmp_path, raw))


def test_val_is_the_one_way_to_say_chosen_on_val(tmp_path):
    p = load_params(_write(tmp_path, yaml.safe_load(committed_text("params.yaml"))))
    assert p.decide.pick_threshold == "val" and p.decide.maxprob_threshold == "val"
    assert make_params(decide={"pick_threshold": 0.3, "maxprob_threshold": 0.0}).decide.pick_threshold == 0.3
    for key, old in (("pick_threshold", 0), ("maxprob_threshold", -1)):
        raw = yaml.safe_load(committed_text("params.yaml"))
        raw["decide"][key] = old
        with pytest.raises(ParamsError, match=f"decide.{key} must be val .*; {old} used to mean 'chosen on val'"):
            load_params(_write(tmp_path, raw))
    raw = yaml.safe_load(committed_text("params.yaml"))
    raw["decide"]["pick_threshold"] = "later"
    with pytest.raises(ParamsError, match="decide.pick_threshold must be float or 'val', got 'later'"):
        load_params(_write(tmp_path, raw))


def test_the_loss_takes_each_param_by_its_name():
    from twohead.train.losses import loss_for_run
    from twohead.train.recipe import stage1_config, stage2_config

    p = make_params(loss={"label_smoothing": 0.3, "label_smoothing_task1": 0.05, "lambda_task1": 0.7},
                    switches={"rdrop_alpha": 0.5, "pick_consistency_weight": 0.2},
                    stage1={"label_smoothing_task1": 0.15})
    w = torch.ones(2), torch.ones(3)
    loss = loss_for_run(stage2_config(p), *w)
    assert (loss.label_smoothing, loss.label_smoothing_task1, loss.lambda_task1) == (0.3, 0.05, 0.7)
    assert (loss.rdrop_alpha, loss.pick_consistency_weight, loss.task_weighting) == (0.5, 0.2, "fixed")
    s1 = loss_for_run(stage1_config(p), *w)   # Stage 1: Task1 alone, its own smoothing, no switch
    assert (s1.label_smoothing_task1, s1.label_smoothing, s1.lambda_task2, s1.rdrop_alpha) == (0.15, 0.0, 0.0, 0.0)
    uncertain = make_params(switches={"task_weighting": "uncertainty"})
    with pytest.raises(ValueError, match="needs the model's loss_log_vars"):
        loss_for_run(stage2_config(uncertain), *w)


def test_the_plain_step_has_no_hook_and_is_the_model_plus_the_loss():
    from transformers import BertConfig, BertModel

    from twohead.model.two_head import TwoHeadModel
    from twohead.train import switches
    from twohead.train.losses import loss_for_run
    from twohead.train.recipe import stage2_config
    from twohead.train.step import StepContext, forward_and_loss

    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32))
    model = TwoHeadModel(enc, 3, head_dropout=0.0).eval()
    cfg = stage2_config(make_params())
    loss = loss_for_run(cfg, torch.ones(2), torch.ones(3))
    hook, awp = switches.build(model, loss, cfg)
    assert hook is None and awp is None   # every switch off: nothing but the plain forward
    batch = {"input_ids": torch.randint(5, 50, (4, 7)), "attention_mask": torch.ones(4, 7, dtype=torch.long),
             "labels_task1": torch.tensor([1, 0, 1, -100]), "labels_task2": torch.tensor([2, -100, 0, 1])}
    l1, l2, terms = forward_and_loss(StepContext(None, model, None, None, loss, 1.0), batch)
    r1, r2 = model(batch["input_ids"], batch["attention_mask"])
    want = loss.terms(r1, r2, batch["labels_task1"], batch["labels_task2"])["total"]
    assert torch.equal(l1, r1) and torch.equal(terms["total"], want)
    on = stage2_config(make_params(switches={"rdrop_alpha": 1.0}))
    assert switches.build(model, loss_for_run(on, torch.ones(2), torch.ones(3)), on)[0] is not None


def test_switch_columns_only_while_their_switch_is_on():
    plain = history_columns(make_params().switches)
    assert len(HISTORY_COLUMNS) - len(plain) == 7
    assert not {"train_loss_hier", "train_loss_rdrop", "sigma_task1", "lambda_task2"} & set(plain)
    rdrop = history_columns(make_params(switches={"rdrop_alpha": 1.0}).switches)
    assert set(rdrop) - set(plain) == {"train_loss_rdrop"}
    hier = history_columns(make_params(switches={"decline_uniform_weight": 0.1}).switches)
    assert set(hier) - set(plain) == {"train_loss_hier", "val_loss_hier"}
    unc = history_columns(make_params(switches={"task_weighting": "uncertainty"}).switches)
    assert set(unc) - set(plain) == {"lambda_task1", "lambda_task2", "sigma_task1", "sigma_task2"}


def _captured(monkeypatch):
    import twohead.evaluate.plots as plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, text: figs.append(fig))
    return plots, figs


def test_a_zero_recall_class_still_gets_a_visible_bar(monkeypatch):
    plots, figs = _captured(monkeypatch)
    per_class = pd.DataFrame({"class": ["A", "B", "C"], "band": ["High", "Mid", "Mid"], "train_support": [90, 20, 10],
                              "test_support": [9, 3, 2], "recall": [0.8, 0.0, 0.0]})
    plots.per_class_recall(per_class, ["High", "Mid", "Low"], None, "x")
    bars = [p for p in figs[0].axes[0].patches if p.get_height() > 0]
    assert len(bars) == 3   # A's bar + a hatched stub for each zero-recall class (their own bars have height 0)
    stubs = [p for p in bars if p.get_hatch()]
    assert [round(p.get_x() + p.get_width() / 2) for p in stubs] == [1, 2]


def test_top_confusions_rows_and_columns_share_one_order(monkeypatch):
    plots, figs = _captured(monkeypatch)
    pairs = [("US", "POL")] * 5 + [("POL", "US")] * 3 + [("ENT", "POL")] * 2 + [("POL", "POL")] * 9
    conf = pd.DataFrame(pairs, columns=["actual", "predicted"])
    plots.top_confusions(conf, 10, None, "x")
    ax = figs[0].axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == cols == ["US", "POL", "ENT"]
    img = ax.images[0].get_array()
    assert img[0, 1] == 5 and img[1, 0] == 3 and np.trace(img) == 0   # the darkest cell is off the diagonal


def test_every_flag_of_every_command_says_what_it_does_and_its_default():
    from twohead.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "sealed technique" not in text and "what is not a DVC stage" not in text
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"twohead {name} {action.option_strings[0]}: no help"
                shown = action.default is None or action.default is False or "(default:" in action.help \
                    or action.default == argparse.SUPPRESS
                assert shown or f"{action.option_strings[0]}" in text, name
    help_text = sub.choices["compare"].format_help()
    assert "(default: 2000)" in help_text and "(default: train.seed)" in help_text


def test_steps_are_counted_one_way():
    from twohead.evaluate.summary import headline_lines
    from twohead.train.report import step_text

    assert step_text(5, 1016, 251) == "epoch 5 step 12/251 (run step 1016)"
    assert step_text(2, 251, 251) == "epoch 2 step 0/251 (run step 251)"
    fig = {"task2": {"acc": 0.6, "macro_f1": 0.2}, "task1": {"acc": 0.96}, "combined": {"acc": 0.59}}
    lines = headline_lines({"test": fig, "decided": {"test": {**fig, "task1": {"acc": 0.95}}}}).splitlines()
    assert lines[0].startswith("[test, plain] Task2 acc 0.6000") and "Task1 acc 0.9500" in lines[1]
