"""What every stage script shares: its paths from the command line, params from ``params.yaml``, and any
:class:`~twohead.config.errors.TwoheadError` (or an OS error on a named file) turned into one clear line with
exit status 2, and Ctrl-C into one line with status 130."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from ..config.errors import INTERRUPTED, user_message
from ..config.params import Params, load_params

P = TypeVar("P")


def flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def parse_paths(cls: type[P], argv: Sequence[str] | None = None, prog: str | None = None) -> P:
    """``cls`` (a dataclass of paths) from ``--field-name PATH`` arguments; every field is required."""
    ap = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip())
    for f in dataclasses.fields(cls):
        ap.add_argument(flag(f.name), dest=f.name, required=True, type=Path, metavar="PATH")
    return cls(**vars(ap.parse_args(argv)))


def exit_on_interrupt(name: str) -> None:
    """Ctrl-C while a stage script is still importing (torch and transformers take seconds): the same one line
    and status 130 as during its work, not a traceback from inside an import. :func:`run_stage` hands SIGINT
    back to Python's ``KeyboardInterrupt`` once the imports are done."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        print(f"[{name}] {user_message(KeyboardInterrupt())[0]}.", file=sys.stderr)
        raise SystemExit(INTERRUPTED)
    signal.signal(signal.SIGINT, handler)


def run_stage(name: str, main: Callable[[Params, P], None], paths_cls: type[P], argv: Sequence[str] | None = None,
              params_path: str = "params.yaml") -> None:
    """Parse the stage's paths, load params strictly, run ``main(params, paths)``; a user-facing error ends
    with ``[stage] error: …`` on stderr and exit status 2 (no traceback, no half-written output)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on Ctrl-C is a KeyboardInterrupt
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--environment", type=Path, default=None)  # where to record what produced the numbers
    known, rest = pre.parse_known_args(argv)
    paths = parse_paths(paths_cls, rest, prog=f"stages/{name}.py")
    # no "Loading weights" / "Writing model shards" bars from transformers in a stage's log (read at its import)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from ..data.atomic import guarded, write_text

        with guarded(params_path):   # every output write checks params.yaml still holds what the stage read
            main(load_params(params_path), paths)
            if known.environment is not None:
                from ..environment import environment

                write_text(known.environment, json.dumps(environment(name), indent=2) + "\n")
    except BaseException as exc:  # noqa: B902 - Ctrl-C too: one line and status 130, not a traceback
        said = user_message(exc)
        if said is None:
            raise
        line, status = said
        if status != 2:  # Ctrl-C or a signal: no error of the user's to explain
            print(f"[{name}] {line}.", file=sys.stderr)
        else:
            print(f"[{name}] error: {line}. (Under dvc repro this stage's previous outputs were removed before it"
                  f" ran; to get the last good ones back: git checkout -- metrics plots && dvc checkout. Next time,"
                  f" `twohead check` first.)", file=sys.stderr)
        sys.exit(status)
