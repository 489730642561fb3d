"""Regenerate ``requirements.lock``: the exact version of every runtime and dev dependency, for every supported
platform and Python (3.10+) at once (``uv pip compile --universal``), resolved against ``torch==2.13.0`` (the build
CI installs first). torch itself and its CUDA-only wheels are left out: the right torch build differs per machine
(CPU, CUDA, Apple) and is installed before the lock (README, Install).

    pip install uv && python scripts/lock.py        # then commit requirements.lock and re-run dvc repro

The ranges in pyproject.toml stay for library users; tests/test_lock.py keeps the lock inside them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
#: torch and what only a CUDA build of it pulls in: installed per machine, never from the lock
NOT_LOCKED = ("torch", "triton", "cuda-bindings", "cuda-pathfinder", "cuda-toolkit", "nvidia-cublas",
              "nvidia-cuda-cupti", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime", "nvidia-cudnn-cu13", "nvidia-cufft",
              "nvidia-cufile",
              "nvidia-curand", "nvidia-cusolver", "nvidia-cusparse", "nvidia-cusparselt-cu13", "nvidia-nccl-cu13",
              "nvidia-nvjitlink", "nvidia-nvshmem-cu13", "nvidia-nvtx")


def main() -> int:
    uv = shutil.which("uv")
    if uv is None:
        print("scripts/lock.py: needs uv (pip install uv)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(TORCH + "\n")
        cmd = [uv, "pip", "compile", str(ROOT / "pyproject.toml"), "--extra", "dev", "--universal",
               "--python-version", "3.10", "-c", str(constraints), "--custom-compile-command", "python scripts/lock.py",
               "-o", str(ROOT / "requirements.lock")]
        for name in NOT_LOCKED:
            cmd += ["--no-emit-package", name]
        return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
