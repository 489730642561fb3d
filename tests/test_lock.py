"""requirements.lock (scripts/lock.py) pins every dependency at one version per platform/Python; it must stay inside
pyproject.toml's ranges (the ranges library users get), name no torch build (installed per machine) and cover every
dependency pyproject names."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT, committed_text

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _lock() -> list[Requirement]:
    reqs = []
    for line in committed_text("requirements.lock").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            reqs.append(Requirement(line))
    return reqs


def _ranges() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in names}


def test_every_pin_is_exact_and_inside_pyprojects_range():
    ranges, lock = _ranges(), _lock()
    assert lock, "requirements.lock is empty"
    for req in lock:
        (spec,) = list(req.specifier)  # one exact pin per line
        assert spec.operator == "==", req
        wanted = ranges.get(canonicalize_name(req.name))
        if wanted is not None:
            assert wanted.specifier.contains(spec.version, prereleases=True), f"{req} is outside {wanted}"


def test_the_lock_covers_every_direct_dependency_and_no_torch_build():
    locked = {canonicalize_name(r.name) for r in _lock()}
    missing = set(_ranges()) - locked - {"torch"}
    assert not missing, f"requirements.lock misses {sorted(missing)}: run python scripts/lock.py"
    assert not locked & {"torch", "triton"} and not any(n.startswith("nvidia-") for n in locked)
