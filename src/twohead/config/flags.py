"""Command-line flags generated from a tool's config dataclass (as HF's ``HfArgumentParser`` does), so a flag's
default, type and help live in one place — the field — and ``--help`` cannot drift from what the tool uses.

A field becomes ``--field-name`` when its metadata has ``help``; the help line ends with the field's own default
(or ``metadata["default_text"]`` where the default needs words, e.g. ``None``). Types: ``int``, ``float``,
``str``, ``bool`` (a switch: ``--flag`` sets True), ``tuple[int | float, ...]`` (one or more values), and
``X | None``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _strip_none(tp: Any) -> Any:
    """``X`` of ``X | None`` (``tp`` itself otherwise)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(scalar type, whether several values are taken) of a field annotation."""
    tp = _strip_none(tp)
    if typing.get_origin(tp) in (tuple, list):
        return typing.get_args(tp)[0], True
    return tp, False


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """One flag per documented field of the dataclass ``cls``; parsed values go to ``dest`` = the field name, with
    ``argparse.SUPPRESS`` as the default so that :func:`from_flags` leaves an absent flag at the field's default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help")
        if help_text is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = f.metadata.get("default_text", _show(default))
        kind, many = _base_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{help_text} (default: {shown})"}
        if kind is bool:
            parser.add_argument(flag_name(f.name), action="store_true", **kw)
            continue
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        parser.add_argument(flag_name(f.name), type=kind, nargs="+" if many else None,
                            metavar=f.metadata.get("metavar"), **kw)


def from_flags(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """An instance of ``cls`` from the parsed flags (absent ones keep the field's default)."""
    hints = typing.get_type_hints(cls)
    given = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if typing.get_origin(_strip_none(hints[f.name])) is tuple and value is not None:
            value = tuple(value)
        given[f.name] = value
    return cls(**given, **overrides)

