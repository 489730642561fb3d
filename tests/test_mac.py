"""The Mac, designed for without one: MPS precisions offered only where macOS supports them, a missing MPS kernel
named with its fallback switch, DataLoader workers on macOS warned about, and no float64 tensor in a training step
(MPS cannot hold one) — checked on the CPU with a dispatch guard."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from twohead.config.errors import DeviceError
from twohead.train import device
from twohead.train.report import machine_warnings


def test_bf16_on_mps_needs_macos_14(monkeypatch):
    monkeypatch.setattr(device, "available", lambda kind: kind in ("mps", "cpu"))
    monkeypatch.setattr(device, "macos_major", lambda: 13)
    with pytest.raises(DeviceError, match="bf16 on Apple MPS needs macOS 14 or later \\(this is macOS 13\\)"):
        device.make_accelerator("mps", "bf16", 1)
    monkeypatch.setattr(device, "macos_major", lambda: 14)
    assert device.precision_problem("mps", "bf16") is None
    assert "needs a GPU" in device.precision_problem("cpu", "fp16")


def test_fp16_on_mps_and_workers_on_macos_are_said_before_the_first_step():
    said = machine_warnings("mps", "fp16", 2, platform="darwin")
    assert len(said) == 2 and "num_workers = 2 on macOS" in said[0] and "without a loss scaler" in said[1]
    assert machine_warnings("cpu", "fp32", 2, platform="linux") == []
    assert machine_warnings("mps", "fp32", 0, platform="darwin") == []


def test_a_missing_mps_kernel_is_one_line_naming_the_op_and_the_switch():
    exc = NotImplementedError("The operator 'aten::_linalg_eigh.eigenvalues' is not currently implemented for the MPS"
                              " device. If you want this op to be added in priority ... As a temporary fix, you can"
                              " set the environment variable `PYTORCH_ENABLE_MPS_FALLBACK=1` ...")
    line = device.mps_kernel_hint(exc)
    assert line.startswith("aten::_linalg_eigh.eigenvalues has no Apple MPS kernel")
    assert "PYTORCH_ENABLE_MPS_FALLBACK=1" in line and "\n" not in line
    assert device.mps_kernel_hint(RuntimeError("CUDA out of memory")) is None


class NoFloat64(TorchDispatchMode):
    """Fails the moment any operation produces a float64 tensor (MPS has no float64)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                raise AssertionError(f"{func} produced a float64 tensor")
        return out


def test_a_training_step_creates_no_float64_tensor(tiny_data):
    """Class weights, the loss, AdamW, the scheduler, the accuracy counts: one Stage-2 step and its bookkeeping,
    every op watched."""
    from accelerate.utils import set_seed

    from twohead.train.loop import EpochAccum
    from twohead.train.recipe import Inputs, recipe
    from twohead.train.setup import prepare_training
    from twohead.train.step import train_step

    data_dir, p = tiny_data
    set_seed(0)
    r = recipe(p, "stage2", Inputs(data_dir / "prepared", data_dir / "tokenized"))
    s = prepare_training(r.build(), r.data, r.cfg)
    batch = next(iter(s.train_loader))
    acc = EpochAccum(s.accelerator.device)
    with NoFloat64():
        st = train_step(s.step, batch)
        acc.record(st, batch, 1, s.scheduler.get_last_lr()[0])
    assert st.applied and torch.isfinite(st.out["total"])
    assert s.loss_fn.weight_task2.dtype == torch.float32
    with pytest.raises(AssertionError, match="float64"), NoFloat64():  # the guard itself can fail
        torch.tensor([0.5, 2.0], dtype=torch.float64) * 2
