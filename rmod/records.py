"""The one converter between rmod's records (frozen dataclasses) and plain JSON/YAML values.

:func:`to_plain` turns a record into dicts, lists and scalars; :func:`from_plain` builds a
record back from them, driven by the type hints, and raises :class:`RecordError` naming the
field path (``drums.kick.weights[0]``) of the first value that does not fit. Every record
of rmod (recipes, example parameters, library entries, manifest rows, ``build.json``) goes
through these two functions; a record's ``to_dict``/``from_dict`` are thin calls to them.

Types understood: nested dataclasses, ``dict[str, T]``, ``tuple[T, ...]``, fixed
``tuple[A, B]``, ``list[T]``, ``T | None``, ``str``, ``int``, ``float`` (an integer is
accepted and stored as a float; non-finite numbers are refused), ``bool`` and ``Any`` (kept
as it is). Any other class is built by a function given in ``parsers``; on the way out a
value that is not a dataclass but has a ``to_dict`` method (a tagged union such as a
:class:`rmod.recipe.distributions.Distribution`) is written as ``value.to_dict()``.

Field metadata read here (``dataclasses.field(metadata=...)``):

* ``"skip"``: not part of the plain form (e.g. where a recipe was loaded from);
* ``"optional"``: left out of the plain form while it equals its default (so adding such a
  field keeps older files, and the fingerprints over them, as they were);
* ``"range"``: ``(lo, hi)``, either ``None``, for a number or each number of a container;
* ``"choices"``: the allowed values of a scalar or of each item of a container.

A field with a default may be absent from the plain data; one without may not.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from rmod.errors import RmodError

#: A parser for a class the converter does not know: ``(value, where, field metadata) -> obj``.
Parser = Callable[[Any, str, Mapping[str, Any]], Any]


class RecordError(RmodError, ValueError):
    """A plain value that does not fit its record; ``where`` is the field path, ``reason``
    what is wrong with it."""

    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


def to_plain(value: Any) -> Any:
    """``value`` as dicts (fields in declaration order), lists and scalars (see the module
    docstring for skipped and optional fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("skip") or (f.metadata.get("optional") and item == f.default):
                continue
            out[f.name] = to_plain(item)
        return out
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def from_plain(
    tp: Any, value: Any, where: str = "", parsers: Mapping[type, Parser] | None = None
) -> Any:
    """Build a value of type ``tp`` from plain ``value``; :class:`RecordError` naming the
    path (``where`` is the path of ``value`` itself, ``""`` at the top) when it does not fit."""
    return _convert(tp, value, where, {}, parsers or {})


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _record(cls: type, data: Any, where: str, parsers: Mapping[type, Parser]) -> Any:
    if not isinstance(data, dict):
        raise RecordError(where or "<top>", f"expected a mapping, got {_type_name(data)}")
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("skip")]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            raise RecordError(
                _join(where, str(key)), f"unknown key (expected one of: {', '.join(names)})"
            )
    hints = _hints(cls)
    values = {}
    for f in fields:
        path = _join(where, f.name)
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], path, f.metadata, parsers)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(path, "missing field")
    return cls(**values)


def _convert(
    tp: Any, value: Any, where: str, meta: Mapping[str, Any], parsers: Mapping[type, Parser]
) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp in parsers:
        return parsers[tp](value, where, meta)
    if dataclasses.is_dataclass(tp):
        return _record(tp, value, where, parsers)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(where, f"expected a mapping, got {_type_name(value)}")
        return {
            str(k): _convert(args[1], v, _join(where, str(k)), meta, parsers)
            for k, v in value.items()
        }
    if origin in (tuple, list):
        return _sequence(origin, args, value, where, meta, parsers)
    return _scalar(tp, value, where, meta)


def _sequence(
    origin: type,
    args: tuple,
    value: Any,
    where: str,
    meta: Mapping[str, Any],
    parsers: Mapping[type, Parser],
) -> Any:
    if not isinstance(value, (list, tuple)):
        raise RecordError(where, f"expected a list, got {_type_name(value)}")
    if origin is list or (len(args) == 2 and args[1] is Ellipsis):
        item_types = [args[0]] * len(value)
    elif len(value) != len(args):
        raise RecordError(where, f"expected {len(args)} items, got {len(value)}")
    else:
        item_types = list(args)
    items = [
        _convert(t, v, f"{where}[{i}]", meta, parsers)
        for i, (t, v) in enumerate(zip(item_types, value, strict=True))
    ]
    return items if origin is list else tuple(items)


def _scalar(tp: Any, value: Any, where: str, meta: Mapping[str, Any]) -> Any:
    if tp is str and not isinstance(value, str):
        raise RecordError(where, f"expected a string, got {_type_name(value)}")
    if tp is bool and not isinstance(value, bool):
        raise RecordError(where, f"expected true/false, got {_type_name(value)} {value!r}")
    if tp is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise RecordError(where, f"expected an integer, got {_type_name(value)} {value!r}")
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise RecordError(where, f"expected a number, got {_type_name(value)} {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an int beyond any float
            raise RecordError(where, "number out of range") from None
        if not math.isfinite(value):
            raise RecordError(where, f"expected a finite number, got {value!r}")
    if tp not in (str, bool, int, float):
        raise TypeError(f"{where}: the converter has no rule for {tp!r}")  # a code error
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise RecordError(where, f"{value!r} not allowed (expected one of: {list(choices)})")
    lo, hi = meta.get("range") or (None, None)
    if lo is not None and value < lo:
        raise RecordError(where, f"{value} below the allowed minimum {lo}")
    if hi is not None and value > hi:
        raise RecordError(where, f"{value} above the allowed maximum {hi}")
    return value
