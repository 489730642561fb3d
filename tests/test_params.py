import dataclasses

import pytest
import yaml

from conftest import committed_text
from twohead.config.params import ParamsError, load_params, params_from_dict, to_dict


def test_project_params_file_loads_strictly(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(committed_text("params.yaml"))  # the committed file, whatever `dvc exp run` left in the workspace
    p = load_params(path)
    assert p.loss.label_smoothing == pytest.approx(0.1)
    assert p.loss.lambda_task1 == pytest.approx(0.4) and p.loss.lambda_task2 == pytest.approx(1.0)
    assert p.model.stage1_checkpoint == "models/stage1" and p.stage1.base_model == "models/demo_encoder"


def test_params_yaml_has_every_key_the_code_knows():
    raw = yaml.safe_load(committed_text("params.yaml"))
    defaults = to_dict(params_from_dict({}, partial=True))
    for section, keys in defaults.items():
        assert set(raw[section]) == set(keys), section


def _raw():
    return yaml.safe_load(committed_text("params.yaml"))


def _write(tmp_path, raw):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_misspelt_key_is_an_error_naming_it(tmp_path):
    raw = _raw()
    raw["loss"]["label_smothing"] = 0.2
    with pytest.raises(ParamsError, match=r"loss\.label_smothing"):
        load_params(_write(tmp_path, raw))


def test_unknown_section_is_an_error(tmp_path):
    raw = _raw()
    raw["trian"] = {"lr": 1}
    with pytest.raises(ParamsError, match="trian"):
        load_params(_write(tmp_path, raw))


def test_missing_key_is_an_error_naming_it(tmp_path):
    raw = _raw()
    del raw["train"]["llrd"]
    with pytest.raises(ParamsError, match=r"missing key\(s\) train\.llrd"):
        load_params(_write(tmp_path, raw))


def test_wrong_types_and_choices_are_errors(tmp_path):
    raw = _raw()
    raw["train"]["epochs"] = "five"
    with pytest.raises(ParamsError, match=r"train\.epochs must be an integer"):
        load_params(_write(tmp_path, raw))
    raw = _raw()
    raw["model"]["pooling"] = "max"
    with pytest.raises(ParamsError, match=r"model\.pooling = 'max' is not one of"):
        load_params(_write(tmp_path, raw))
    raw = _raw()
    raw["train"]["group_by_length"] = "yes"
    with pytest.raises(ParamsError, match="group_by_length"):
        load_params(_write(tmp_path, raw))


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    path = tmp_path / "params.yaml"
    text = committed_text("params.yaml").replace("lr: 0.001", "lr: 2e-5")
    path.write_text(text)
    assert yaml.safe_load(text)["train"]["lr"] == "2e-5"  # PyYAML reads it as a string...
    p = load_params(path)
    assert p.train.lr == pytest.approx(2e-5) and p.stage1.lr == pytest.approx(2e-5)  # ...the loader: a number


def test_cross_field_validation():
    with pytest.raises(ParamsError, match="val_ratio \\+ split.test_ratio"):
        params_from_dict({"split": {"val_ratio": 0.5, "test_ratio": 0.5}}, partial=True)
    with pytest.raises(ParamsError, match="task2_weight_min"):
        params_from_dict({"loss": {"task2_weight_min": 6.0, "task2_weight_max": 5.0}}, partial=True)
    with pytest.raises(ParamsError, match="bands.thresholds"):
        params_from_dict({"bands": {"method": "threshold", "names": ["A", "B"], "thresholds": [1, 2]}}, partial=True)


def test_params_are_frozen():
    p = params_from_dict({}, partial=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.train.lr = 1.0


def test_a_moved_key_says_where_it_went(tmp_path):
    raw = _raw()
    raw["eval"]["pick_threshold"] = 0.5
    with pytest.raises(ParamsError, match=r"eval\.pick_threshold is now decide\.pick_threshold"):
        load_params(_write(tmp_path, raw))


def test_decide_ranges_are_checked(tmp_path):
    raw = _raw()
    raw["decide"]["pick_threshold"] = 1.5
    with pytest.raises(ParamsError, match=r"decide\.pick_threshold must be val \(chosen on val\) or a"):
        load_params(_write(tmp_path, raw))


def test_train_launch_is_a_launcher_and_nothing_else(tmp_path):
    """dvc.yaml's train_stage2 command starts with train.launch: a launcher and its options, never a second command."""
    from conftest import make_params

    for ok in ("python", "accelerate launch --multi_gpu --num_processes 4", "torchrun --nproc_per_node=2",
               "accelerate launch --config_file /etc/acc.yaml --mixed_precision no"):
        assert make_params(train={"launch": ok}).train.launch == ok
    for bad in ("python; rm -rf ~", "bash -c x", "torchrun --nproc_per_node 2 && curl x", "python $(id)", "",
                "accelerate launch  --num_processes 2", "python3"):
        with pytest.raises(ParamsError, match="train.launch .*: use python, 'accelerate launch"):
            make_params(train={"launch": bad})
    assert "${train.launch} stages/train_stage2.py" in committed_text("dvc.yaml")
