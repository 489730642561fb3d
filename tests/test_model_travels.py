"""A model trained on one machine predicts on another: weights trained under bf16 autocast, or saved in half
precision, load and score in float32 on the CPU; the directory says which version wrote it and where it trained;
a directory from a newer project version is refused in one line."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import replace, train_in
from twohead import __version__
from twohead.config.errors import CheckpointError
from twohead.model.two_head import STAGE2_FORMAT, load_stage2
from twohead.predictor import Predictor
from twohead.train.device import reset_accelerator_state

TEXTS = ["The senate passed the budget bill", "A new recipe for summer salads", "Stocks fell on Monday", ""]


@pytest.fixture(scope="module")
def bf16_model(tiny_data, tmp_path_factory):
    """A Stage-2 model trained on the CPU under bf16 autocast (train.precision: bf16)."""
    data_dir, p = tiny_data
    tmp = tmp_path_factory.mktemp("bf16")
    p = replace(p, "train", epochs=1, max_train_rows=64, precision="bf16")
    reset_accelerator_state()   # an earlier test's Accelerator fixed fp32 for this process
    try:
        train_in(tmp, data_dir, p)
    finally:  # Accelerate fixes one process's mixed precision: the next Accelerator (predict, other tests) uses fp32
        reset_accelerator_state()
    return tmp / "models" / "stage2"


def test_a_bf16_run_records_where_it_trained_and_predicts_in_float32(bf16_model):
    meta = json.loads((bf16_model / "twohead.json").read_text())
    assert meta["written_by"] == {"twohead": __version__, "format": STAGE2_FORMAT, "trained_on": "cpu"}
    assert meta["params"]["train"]["precision"] == "bf16"
    model, _, _ = load_stage2(bf16_model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    out = Predictor(bf16_model, device="cpu").predict(TEXTS)
    assert len(out) == len(TEXTS) and out["p_pick"][:3].between(0, 1).all()
    assert out["p_top1"][:3].between(0, 1).all() and out.loc[3, "combined"] == ""  # an empty text: no answer


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_weights_saved_in_half_precision_load_and_score_in_float32(bf16_model, tmp_path, half):
    d = shutil.copytree(bf16_model, tmp_path / "half")
    for name in ("model.safetensors", "heads.safetensors"):
        save_file({k: v.to(half) for k, v in load_file(str(d / name)).items()}, str(d / name))
    config = json.loads((d / "config.json").read_text())
    config["dtype"] = str(half).removeprefix("torch.")  # as transformers writes it for a half-precision save
    (d / "config.json").write_text(json.dumps(config))
    model, _, _ = load_stage2(d)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # transformers 5 alone would keep `half`
    full = Predictor(bf16_model, device="cpu").logits(TEXTS[:3])
    travelled = Predictor(d, device="cpu").logits(TEXTS[:3])
    for a, b in zip(full, travelled):
        assert a.dtype == b.dtype == np.float32
        assert np.abs(a - b).max() < 0.1  # the rounding of the stored weights, nothing else
        assert not np.array_equal(a, b)   # the weights really were rounded


def test_a_model_from_a_newer_project_version_is_refused_in_one_line(bf16_model, tmp_path):
    d = shutil.copytree(bf16_model, tmp_path / "newer")
    meta = json.loads((d / "twohead.json").read_text())
    meta["written_by"] = {"twohead": "9.9.0", "format": STAGE2_FORMAT + 1, "trained_on": "cuda (NVIDIA H100)"}
    (d / "twohead.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        load_stage2(d)
    msg = str(err.value)
    assert "\n" not in msg and "twohead 9.9.0" in msg and f"format {STAGE2_FORMAT + 1}" in msg
    assert "pip install --no-deps -e ." in msg and str(d / "twohead.json") in msg
    del meta["written_by"]  # written before the key existed: the first format, loads
    (d / "twohead.json").write_text(json.dumps(meta))
    load_stage2(d)
    meta["written_by"] = {"format": "2"}
    (d / "twohead.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a format number"):
        load_stage2(d)
