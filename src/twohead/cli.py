"""What every stage script shares: load params, run, and turn known input errors into one clear line."""

from __future__ import annotations

import sys
from typing import Callable

from .io import DataError
from .params import Params, ParamsError, load_params

USER_ERRORS: tuple[type[BaseException], ...] = (DataError, ParamsError)


def register_user_error(exc_type: type[BaseException]) -> None:
    global USER_ERRORS
    USER_ERRORS = USER_ERRORS + (exc_type,)


def run_stage(name: str, main: Callable[[Params], None], params_path: str = "params.yaml") -> None:
    """Run ``main(params)``; a bad params file or bad input ends with ``error: …`` and exit status 2."""
    from .checkpoint import CheckpointError

    errors = USER_ERRORS + (CheckpointError,)
    try:
        main(load_params(params_path))
    except errors as exc:
        print(f"[{name}] error: {exc}", file=sys.stderr)
        sys.exit(2)
