"""twohead speed: out-of-memory settings are reported (never a crash) and stop the batch ladder, a setting that
cannot finish within the budget is skipped and listed, the projection's arithmetic, the recommendation keeps the
configured settings within noise and flags what changes results, and the command on the tiny data writes only its
JSON and PNG."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import tool_paths, tree_digest
from twohead.tune import speed as sp

BASE = sp.Setting("fp32", 32, True, False)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeStepper(sp.Stepper):
    """Each step costs ``cost(setting)`` fake seconds; batch sizes above ``fits`` raise the device's OOM error
    on their first step."""

    def __init__(self, setting: sp.Setting, clock: Clock, cost, fits: int = 10 ** 9):
        self.setting, self.clock, self.cost, self.fits = setting, clock, cost, fits

    def step(self):
        if self.setting.batch_size > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.clock.t += self.cost(self.setting)
        return self.setting.batch_size, 40 * self.setting.batch_size

    def memory_mb(self):
        return 10.0 * self.setting.batch_size


def _search(cost, fits=10 ** 9, seconds=100.0, **kw):
    clock = Clock()
    rows = sp.search(lambda s: FakeStepper(s, clock, cost, fits), BASE, "cuda", seconds, [16, 64, 128, 256],
                     deberta=True, try_compile=False, bf16=(True, ""), clock=clock, log=lambda *_: None, **kw)
    return rows, clock


def test_oom_is_reported_and_stops_the_batch_ladder():
    rows, _ = _search(lambda s: 0.01 * s.batch_size ** 0.8, fits=64)
    by = {(m.axis, m.setting.batch_size): m for m in rows if m.axis == "batch_size"}
    assert by[("batch_size", 64)].status == "ok"
    assert by[("batch_size", 128)].status == "oom" and by[("batch_size", 128)].reason == "out of memory"
    assert by[("batch_size", 256)].status == "skipped" and "did not fit" in by[("batch_size", 256)].reason
    # the search went on: the winners together and the baseline again were measured
    assert [m.axis for m in rows if m.status == "ok"][-1] == "baseline again"
    assert by[("batch_size", 64)].peak_memory_mb == 640.0


def test_a_setting_that_cannot_finish_in_the_budget_is_skipped_and_listed():
    slow = lambda s: 30.0 if s.precision == "fp16" else 0.05  # noqa: E731
    rows, clock = _search(slow, seconds=20.0)
    fp16 = next(m for m in rows if m.setting.precision == "fp16")
    assert fp16.status == "skipped" and "budget" in fp16.reason
    assert clock.t <= 20.0 + 30.0  # at most one step past the deadline
    assert all(m.status in ("ok", "skipped", "oom", "failed") for m in rows)


def test_measured_throughput_is_rows_over_timed_seconds():
    rows, _ = _search(lambda s: 0.5)
    base = next(m for m in rows if m.axis == "baseline")
    assert base.samples_per_s == pytest.approx(32 / 0.5) and base.tokens_per_s == pytest.approx(40 * 32 / 0.5)
    assert base.steps >= sp.MIN_TIMED_STEPS and base.warmup_seconds == pytest.approx(sp.WARMUP_STEPS * 0.5)


def test_projection_arithmetic():
    # 5 epochs × (1000 rows / 50 per s + 200 val rows / 100 per s) + 30 s of compile
    assert sp.projection(1000, 200, 5, 50.0, 100.0, 30.0) == pytest.approx(5 * (20 + 2) + 30)
    assert math.isnan(sp.projection(1000, 200, 5, math.nan, 100.0))


def _m(setting, axis, sps):
    return sp.Measured(setting, axis, steps=10, seconds=10.0, rows=int(sps * 10))


def test_recommendation_keeps_results_and_flags_what_changes_them():
    rows = [_m(BASE, "baseline", 100), _m(replace(BASE, fast_attention=False), "fast_attention", 130),
            _m(replace(BASE, precision="bf16"), "precision", 150), _m(replace(BASE, batch_size=64), "batch_size", 200),
            _m(BASE, "baseline again", 100)]
    rec = sp.recommend(BASE, rows)
    assert rec["safe"]["command"] == "dvc exp run -S train.fast_attention=false" and rec["safe"]["flags"] == []
    assert rec["fastest"]["command"] == "dvc exp run -S train.batch_size=64"
    assert any("lr-find" in f for f in rec["fastest"]["flags"])
    assert sp.command(replace(BASE, precision="bf16", compile=True), BASE) == \
        "dvc exp run -S train.precision=bf16 -S train.compile=true"
    assert any("numerics" in f for f in sp.flags(replace(BASE, precision="bf16"), BASE))
    # a gain inside the baseline's own drift is no reason to change
    noisy = [_m(BASE, "baseline", 100), _m(replace(BASE, fast_attention=False), "fast_attention", 102),
             _m(BASE, "baseline again", 92)]
    rec = sp.recommend(BASE, noisy)
    assert rec["safe"]["kept_configured"] and rec["safe"]["command"] is None
    assert sp.drift(noisy) == pytest.approx(-0.08)


def test_batch_ladder_and_truncation():
    assert sp.batch_ladder(32, None) == [16, 64, 128, 256]
    assert sp.batch_ladder(32, [64, 8, 64]) == [8, 64]
    tr = sp.truncation(np.array([10, 64, 100, 128, 128]), 128)
    assert tr["cut_share"] == pytest.approx(0.4) and tr["at"] == {64: pytest.approx(0.8)}



def test_speed_on_the_tiny_data_writes_only_its_json_and_png(tiny_data, tmp_path):
    data_dir, p = tiny_data
    before = tree_digest(data_dir)
    paths = tool_paths(tmp_path, "speed", "speed_plot", prepared=data_dir / "prepared",
                       tokenized=data_dir / "tokenized")
    r = sp.run(p, paths, sp.SpeedConfig(seconds=8.0, batch_sizes=(4,)), log=lambda *_: None)
    saved = json.loads(paths.json.read_text())
    axes = [s["axis"] for s in saved["settings"]]
    assert axes[0] == "baseline" and "baseline again" in axes and "precision" in axes
    base = saved["settings"][0]
    assert base["status"] == "ok" and base["samples_per_s"] > 0 and base["peak_memory_mb"] > 0
    assert base["projected_run_seconds"] == pytest.approx(sp.projection(
        saved["train_rows"], saved["val_rows"], saved["epochs"], base["samples_per_s"],
        saved["eval_rows_per_s"][str(p.train.eval_batch_size)]), rel=1e-4)  # the file holds 6 digits
    assert r["recommendation"]["safe"] is not None and 0 <= saved["truncation"]["cut_share"] <= 1
    assert paths.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f.relative_to(tmp_path).as_posix() for f in tmp_path.rglob("*") if f.is_file()) == sorted(
        [paths.json.relative_to(tmp_path).as_posix(), paths.plot.relative_to(tmp_path).as_posix()])
    assert tree_digest(data_dir) == before
    # the process-wide Accelerate state was left clean: a later fp32 run in this process still builds
    from twohead.train.device import make_accelerator
    assert make_accelerator("cpu", "fp32", 1).mixed_precision == "no"


def test_a_machine_that_drifts_makes_the_recommendation_unreliable():
    """A busy machine: every step gets slower as the fake clock advances (another job starts). The configured
    settings re-measured at the end are far slower than at the start: nothing is recommended, and the reason names
    the measured drift; a machine that holds still gets a recommendation that quotes its measured drift."""
    clock = Clock()

    def busy(s):  # 0.05 s a step at first, 3 times slower once 10 fake seconds have passed
        return 0.05 * (3.0 if clock.t > 10 else 1.0)
    rows = sp.search(lambda s: FakeStepper(s, clock, busy), BASE, "cuda", 40.0, [16, 64], deberta=True,
                     try_compile=False, bf16=(True, ""), clock=clock, log=lambda *_: None)
    assert [m.axis for m in rows if m.status == "ok"][-1] == "baseline again"
    rec = sp.recommend(BASE, rows)
    assert not rec["reliable"] and "drifted -67%" in rec["unreliable_because"]
    assert rec["safe"]["kept_configured"] and rec["fastest"]["kept_configured"]  # nothing adopted on bad data

    still, _ = _search(lambda s: 0.01 * s.batch_size ** 0.8)
    ok = sp.recommend(BASE, still)
    assert ok["reliable"] and ok["measured_drift"] == pytest.approx(0.0) and ok["noise"] == pytest.approx(0.05)


def test_the_baseline_is_re_measured_even_when_the_budget_is_spent():
    rows, _ = _search(lambda s: 30.0 if s.precision == "fp16" else 0.05, seconds=20.0)
    again = [m for m in rows if m.axis == "baseline again"]
    assert len(again) == 1 and again[0].status == "ok"
    assert sp.reliability(rows) == (True, "")


def test_the_search_tries_the_padding_and_on_a_gpu_the_cache_cadence():
    """Padding is toggled on every device; the cache cadence only where there is a device cache (MPS / CUDA). A
    faster padding is recommended with its `dvc exp run -S` command and shown as a neutral switch (same results)."""
    rows, _ = _search(lambda s: 0.05 if s.padding == "longest" else 0.08)
    axes = {m.axis: m.setting for m in rows}
    assert axes["padding"].padding == "longest" and axes["empty_cache_steps"].empty_cache_steps == sp.CACHE_STEPS_TRIED
    rec = sp.recommend(BASE, rows)
    assert rec["safe"]["command"] == "dvc exp run -S train.padding=longest" and rec["safe"]["flags"] == []
    clock = Clock()
    cpu = sp.search(lambda s: FakeStepper(s, clock, lambda s: 0.05), BASE, "cpu", 20.0, [16], deberta=False,
                    try_compile=False, bf16=(True, ""), clock=clock, log=lambda *_: None)
    assert "padding" in {m.axis for m in cpu} and "empty_cache_steps" not in {m.axis for m in cpu}
    assert "empty_cache every 50" in replace(BASE, empty_cache_steps=50).name()


def test_the_table_shows_gpu_memory_as_allocated_over_reserved():
    m = sp.Measured(BASE, "baseline", steps=5, seconds=1.0, rows=160, tokens=6400, peak_memory_mb=900.0,
                    memory={"allocated_mb": 812.0, "reserved_mb": 1034.0})
    text = sp.table([m], 160.0)
    assert "memory MB (allocated / reserved)" in text and "| 812 / 1,034 |" in text
    m.memory = {}
    assert "peak RSS MB" in sp.table([m], 160.0) and "| 900 |" in sp.table([m], 160.0)
