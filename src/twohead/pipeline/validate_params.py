"""The validate_params stage: the pipeline's first step, so a params.yaml that the schema refuses (a typo'd key
such as ``eval.pick_treshold``, a key given twice, a value out of range) fails every ``dvc repro`` / ``dvc exp run``
in about a second — even when the typo sits in a section no other stage tracks, where DVC alone would say "Data and
pipelines are up to date".

It depends on the whole params file and writes a marker whose bytes never depend on the params, so fixing a typo
re-runs this stage alone: the stages after it see an unchanged marker and stay cached. It imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.params import Params
from ..data.atomic import write_text

MARKER = "params.yaml: valid (every key known, typed and in range; see src/twohead/config/params.py)\n"


@dataclass(frozen=True)
class ValidateParamsPaths:
    """Output: the marker the first stages depend on (the params were loaded strictly before this runs)."""

    params_valid: Path


def run(p: Params, paths: ValidateParamsPaths) -> None:
    write_text(paths.params_valid, MARKER)
