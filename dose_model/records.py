"""dose_model's one converter between its records (dataclasses) and plain dicts.

Its records are flat: `ModelConfig`, `TrainConfig`, `TrainState` and `DacConfig` hold
scalars, optional scalars, lists, tuples and dicts of plain values or tensors, so a record's
plain form is its field dict and reading one back is a check of keys and value types against
the type hints. `from_plain` refuses a mapping with an unknown or (where required) absent field
or a value of the wrong type (NaN and infinities are no number, except in a field whose
default is an infinity), with a message naming ``where.field``; the caller picks the error
class (`ConfigError`, `CheckpointError`), so each keeps the type it always had.
`TrainState.from_dict` drops keys of older checkpoint layouts before it calls
:func:`plain_problem`, so an old checkpoint still resumes.

rmod has its own, richer converter (``rmod/records.py``: nested records, ranges); the two
packages must not import each other, so this one stays separate and small.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

R = TypeVar("R")


def to_plain(record: Any) -> dict[str, Any]:
    """The record's fields as a dict, in declaration order (the values are already plain)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def from_plain(
    cls: type[R],
    data: Any,
    where: str,
    error: type[Exception] = ValueError,
    require_all: bool = False,
) -> R:
    """``cls(**data)`` once ``data`` passes `plain_problem`; else ``error(problem)``."""
    problem = plain_problem(cls, data, where, require_all)
    if problem is not None:
        raise error(problem)
    return cls(**data)


def plain_problem(cls: type, data: Any, where: str, require_all: bool = False) -> str | None:
    """What keeps ``data`` from being a ``cls`` (``None`` if nothing): not a mapping, an
    unknown field, a missing field (one without a default, or any with ``require_all``), or
    a value of the wrong type."""
    if not isinstance(data, Mapping):
        return f"{where} must be a mapping, got {type(data).__name__}"
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        return f"unknown field(s) {', '.join(f'{where}.{name}' for name in unknown)}"
    for f in fields(cls):
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if f.name not in data and (require_all or not has_default):
            return f"{where} has no {f.name!r}"
    return type_problem(cls, data, where)


def type_problem(cls: type, values: Mapping[str, Any], where: str) -> str | None:
    """The first field of ``values`` whose value does not fit ``cls``'s type hint, described
    as ``"where.field must be int | None, got 'x'"``; ``None`` when all fit."""
    hints = _hints(cls)
    for name, value in values.items():
        if value in (math.inf, -math.inf) and _infinite_default(cls, name):
            continue  # e.g. "no validation loss yet"
        if not _fits(hints[name], value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return f"{where}.{name} must be {_describe(hints[name])}, got {shown}"
    return None


def _infinite_default(cls: type, name: str) -> bool:
    """Whether field ``name`` of ``cls`` defaults to an infinity (then it may hold one)."""
    default = next(f.default for f in fields(cls) if f.name == name)
    return isinstance(default, float) and math.isinf(default)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(tp: Any, value: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in args)
    if tp is type(None):
        return value is None
    if tp in (int, float):  # bool is an int to Python, never to a config; NaN and inf no number
        allowed = (int,) if tp is int else (int, float)
        if not isinstance(value, allowed) or isinstance(value, bool):
            return False
        try:
            return tp is int or math.isfinite(float(value))
        except OverflowError:  # an int beyond any float
            return False
    if origin is dict:
        return isinstance(value, dict) and all(_fits(args[1], v) for v in value.values())
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return isinstance(value, origin) and all(_fits(args[0], v) for v in value)
    if origin is tuple:
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(_fits(a, v) for a, v in zip(args, value, strict=True))
        )
    return isinstance(value, origin or tp)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(a) for a in args)
    if tp is type(None) or tp is Ellipsis:
        return "None" if tp is type(None) else "..."
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_describe(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))
