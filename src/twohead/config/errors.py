"""User-facing errors: one base class, so a stage (or the ``twohead`` command) can turn any of them into
one clear line and exit status 2 instead of a traceback. Everything else is a bug and keeps its traceback.

Each subclass also derives from the built-in exception it used to be (``ValueError``, ``RuntimeError``,
``FileNotFoundError``), so callers catching those keep working.
"""

from __future__ import annotations


class TwoheadError(Exception):
    """Base class: the message says what is wrong and, where it can, which file, key or row."""


class ParamsError(TwoheadError, ValueError):
    """A params file that cannot be used as written (names the dotted key)."""


class DataError(TwoheadError, ValueError):
    """Input data that cannot be used as written; the message names file, column, row and value."""


class MissingInputError(TwoheadError, FileNotFoundError):
    """An input another stage writes is not there; the message names the stage to run."""


class CheckpointError(TwoheadError, ValueError):
    """A model directory that cannot be used; the message says what is missing."""


class DeviceError(TwoheadError, RuntimeError):
    """The requested device or precision is not available here."""


class TrainingError(TwoheadError, RuntimeError):
    """Training could not start or went wrong in a way the user can act on."""


class OutputError(TwoheadError, OSError):
    """An output that cannot be written (full disk, read-only folder, no permission); names the file."""


#: exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


class Interrupted(TrainingError):
    """Training stopped by SIGINT / SIGTERM after saving its state; exits 128 + the signal's number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


def user_message(exc: BaseException) -> tuple[str, int] | None:
    """(one line, exit status) for what the user can act on: a :class:`TwoheadError` or an OS error on a named
    file (2), Ctrl-C (130). None for anything else: a bug, which keeps its traceback. With TWOHEAD_DEBUG=1 in
    the environment every error keeps its traceback."""
    import os

    if os.environ.get("TWOHEAD_DEBUG"):
        return None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C); no output was half-written (each is renamed into place only when complete)", \
            INTERRUPTED
    if isinstance(exc, TwoheadError):
        return str(exc), getattr(exc, "exit_status", 2)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}", 2
    return None
