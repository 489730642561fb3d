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
