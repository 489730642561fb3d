"""Every stage and command ends a user error in one line: status 2 for what the user can fix (a TwoheadError, an
OS error on a named file), 130 for Ctrl-C, a traceback only for a bug (or with TWOHEAD_DEBUG=1)."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import committed_text
from twohead.config.errors import DataError, user_message
from twohead.pipeline.stage_main import run_stage

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class OnePath:
    out: Path


def _params(tmp_path) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(committed_text("params.yaml"))  # not the workspace's copy: `dvc exp run` changes it
    return str(path)


def _stage(main, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        run_stage("demo", main, OnePath, ["--out", str(tmp_path / "o.json")], params_path=_params(tmp_path))
    return e.value.code, capsys.readouterr().err


def test_stage_user_error_is_one_line_status_2(capsys, tmp_path):
    def main(p, paths):
        raise DataError(f"{paths.out}: row 3 is bad")
    code, err = _stage(main, capsys, tmp_path)
    assert code == 2 and err.startswith(f"[demo] error: {tmp_path / 'o.json'}: row 3 is bad.")
    assert len(err.strip().splitlines()) == 1


def test_stage_os_error_on_a_file_is_one_line_naming_it(capsys, tmp_path):
    def main(p, paths):
        open(tmp_path / "missing" / "x.csv")
    code, err = _stage(main, capsys, tmp_path)
    assert code == 2 and f"[demo] error: {tmp_path / 'missing' / 'x.csv'}: No such file or directory." in err


def test_stage_ctrl_c_is_status_130(capsys, tmp_path):
    def main(p, paths):
        raise KeyboardInterrupt
    code, err = _stage(main, capsys, tmp_path)
    assert code == 130 and err.strip() == ("[demo] interrupted (Ctrl-C); no output was half-written (each is renamed"
                                           " into place only when complete).")


def test_a_bug_keeps_its_traceback(capsys, tmp_path, monkeypatch):
    def main(p, paths):
        raise ZeroDivisionError("a bug")
    with pytest.raises(ZeroDivisionError):
        run_stage("demo", main, OnePath, ["--out", "x"], params_path=_params(tmp_path))
    monkeypatch.setenv("TWOHEAD_DEBUG", "1")
    assert user_message(DataError("x")) is None  # debugging: tracebacks for everything


def test_real_sigint_during_a_stage_exits_130_and_leaves_no_temp_file(tmp_path):
    """A real SIGINT (what Ctrl-C sends to `dvc repro`'s process group) while a stage is writing its output."""
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent(f"""
        import dataclasses, sys, time
        from pathlib import Path
        from twohead.data.io import atomic_path
        from twohead.pipeline.stage_main import run_stage

        @dataclasses.dataclass(frozen=True)
        class P:
            out: Path

        def main(p, paths):
            with atomic_path(paths.out) as tmp:
                tmp.write_text("half")
                print("ready", flush=True)
                time.sleep(60)

        run_stage("slow", main, P, params_path={_params(tmp_path)!r})
    """))
    proc = subprocess.Popen([sys.executable, str(script), "--out", str(tmp_path / "out" / "o.txt")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["[slow] interrupted (Ctrl-C); no output was half-written (each is renamed"
                                        " into place only when complete)."]
    assert os.listdir(tmp_path / "out") == []


def test_sigint_while_a_stage_still_imports_is_one_line_130(tmp_path):
    """Ctrl-C in the seconds a stage spends importing torch / transformers: the same line and status, no traceback
    from inside an import (and, had the imports finished, run_stage's own handling says the same)."""
    import time

    from twohead.pipeline.stage_main import flag
    from twohead.pipeline.train_stage2 import TrainPaths

    args = [a for f in dataclasses.fields(TrainPaths) for a in (flag(f.name), str(tmp_path / f.name))]
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages" / "train_stage2.py"), *args],  # ~4 s of imports
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)   # the handler is in place after ~0.1 s; the imports take >= 1 s (1.4 s here, warm)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["[train_stage2] interrupted (Ctrl-C); no output was half-written (each is"
                                        " renamed into place only when complete)."]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
