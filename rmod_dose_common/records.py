"""The one converter between records (dataclasses) and plain values, for both packages.

Plain values are what JSON, YAML and torch's ``weights_only`` files hold: dicts, lists,
tuples, strings, numbers, booleans and ``None``. :func:`to_plain` turns a record into them;
one type walker, driven by the record's type hints, reads them back in one of two ways:

* :func:`from_plain` *builds* a record (rmod: recipes, example parameters, library entries,
  manifest rows, ``build.json``): nested records, lists become tuples where a tuple is
  declared, integers become floats where a float is, and the first value that does not fit
  raises ``error(where, reason)`` naming its path (``drums.kick.weights[0]``).
* :func:`check_plain` / :func:`plain_problem` *check* flat records whose values are kept as
  they are (dose_model: configs, checkpoints holding tensors, manifest rows): a value must
  already be of its declared type (a list is no tuple), and a problem is one sentence naming
  the field and its type (``model.d_model must be int, got 'big'``); the caller picks the
  error class.

Types understood: dataclasses, ``dict[K, T]`` (keys are not checked), ``tuple[T, ...]``,
fixed ``tuple[A, B]``, ``list[T]``, unions (``T | None``, ``float | bool``: the first arm
that fits), ``str``, ``int`` (a bool is not one), ``float`` (an integer is accepted; NaN,
infinities and integers beyond any float are refused, except an infinity in a field whose
default is one), ``bool`` and ``Any`` (kept as it is). Any other class is built by a
function given in ``parsers``; on the way out a value that is not a dataclass but has a
``to_dict`` method (a tagged union) is written as ``value.to_dict()``.

Field metadata read here (``dataclasses.field(metadata=...)``):

* ``"skip"``: not part of the plain form (e.g. where a recipe was loaded from);
* ``"optional"``: left out of the plain form while it equals its default (so adding such a
  field keeps older files, and the fingerprints over them, as they were);
* ``"range"``: ``(lo, hi)``, either ``None``, for a number or each number of a container;
* ``"choices"``: the allowed values of a scalar or of each item of a container.

A field with a default may be absent from the plain data; one without may not (nor any,
when checking with ``require_all``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")
#: A parser for a class the converter does not know: ``(value, where, field metadata) -> obj``.
Parser = Callable[[Any, str, Mapping[str, Any]], Any]
_NONE = type(None)


class RecordError(ValueError):
    """A plain value that does not fit its record; ``where`` is the field path, ``reason``
    what is wrong with it. A package passes its own subclass to :func:`from_plain`."""

    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


class _Misfit(Exception):
    """Raised inside the walker; turned into the caller's error or problem sentence."""

    def __init__(self, where: str, reason: str):
        super().__init__(where, reason)
        self.where, self.reason = where, reason


@dataclass(frozen=True)
class _Rules:
    """How the walker reads: ``exact`` checks without converting (a list is no tuple)."""

    parsers: Mapping[type, Parser]
    exact: bool


# ------------------------------------------------------------------------ out
def to_plain(value: Any, deep: bool = True) -> Any:
    """``value`` as plain values: a record as a dict of its fields in declaration order
    (without skipped fields, and optional ones at their default; see the module docstring).

    ``deep`` converts what the fields hold too (records, tuples as lists, ``to_dict``).
    With ``deep=False`` a record's values are kept as they are, not copied: a checkpoint's
    tensors and optimizer state stay as torch made them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("skip") or (f.metadata.get("optional") and item == f.default):
                continue
            out[f.name] = to_plain(item) if deep else item
        return out
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


# ------------------------------------------------------------------------ build
def from_plain(
    tp: Any,
    value: Any,
    where: str = "",
    parsers: Mapping[type, Parser] | None = None,
    error: Callable[[str, str], Exception] = RecordError,
) -> Any:
    """Build a value of type ``tp`` from plain ``value`` (see the module docstring);
    ``error(path, reason)`` (:class:`RecordError` unless given) for the first value that
    does not fit, ``where`` being the path of ``value`` itself (``""`` at the top)."""
    try:
        return _convert(tp, value, where, {}, _Rules(parsers or {}, exact=False))
    except _Misfit as misfit:
        raise error(misfit.where, misfit.reason) from None


# ------------------------------------------------------------------------ check
def check_plain(
    cls: type[R],
    data: Any,
    where: str,
    error: Callable[[str], Exception] = ValueError,
    require_all: bool = False,
) -> R:
    """``cls(**data)`` once ``data`` passes :func:`plain_problem`; else ``error(problem)``."""
    problem = plain_problem(cls, data, where, require_all)
    if problem is not None:
        raise error(problem)
    return cls(**data)


def plain_problem(cls: type, data: Any, where: str, require_all: bool = False) -> str | None:
    """What keeps ``data`` from being a ``cls`` (``None`` if nothing): not a mapping, an
    unknown field, a missing field (one without a default, or any with ``require_all``), or
    a value of the wrong type (:func:`type_problem`)."""
    if not isinstance(data, Mapping):
        return f"{where} must be a mapping, got {type(data).__name__}"
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        return f"unknown field(s) {', '.join(f'{where}.{name}' for name in unknown)}"
    for f in dataclasses.fields(cls):
        if f.name not in data and (require_all or not _has_default(f)):
            return f"{where} has no {f.name!r}"
    return type_problem(cls, data, where)


def type_problem(cls: type, values: Mapping[str, Any], where: str) -> str | None:
    """The first field of ``values`` whose value is not of ``cls``'s declared type, as
    ``"where.field must be int | None, got 'x'"``; ``None`` when all fit."""
    hints, defaults = _hints(cls), _defaults(cls)
    rules = _Rules({}, exact=True)
    for name, value in values.items():
        if _infinite(value) and _infinite(defaults.get(name)):
            continue  # e.g. "no validation loss yet"
        try:
            _convert(hints[name], value, name, {}, rules)
        except _Misfit:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            return f"{where}.{name} must be {_describe(hints[name])}, got {shown}"
    return None


# ------------------------------------------------------------------------ the walker
def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _infinite(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _record(cls: type, data: Any, where: str, rules: _Rules) -> Any:
    if not isinstance(data, dict):
        raise _Misfit(where or "<top>", f"expected a mapping, got {_type_name(data)}")
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("skip")]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            raise _Misfit(
                _join(where, str(key)), f"unknown key (expected one of: {', '.join(names)})"
            )
    hints = _hints(cls)
    values = {}
    for f in fields:
        path = _join(where, f.name)
        if f.name in data:
            value = data[f.name]
            if _infinite(value) and _infinite(f.default):
                values[f.name] = value  # an infinite default may stay infinite
            else:
                values[f.name] = _convert(hints[f.name], value, path, f.metadata, rules)
        elif not _has_default(f):
            raise _Misfit(path, "missing field")
    return cls(**values)


def _convert(tp: Any, value: Any, where: str, meta: Mapping[str, Any], rules: _Rules) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        *first, last = [a for a in args if a is not _NONE]
        for arm in first:
            try:
                return _convert(arm, value, where, meta, rules)
            except _Misfit:
                pass
        return _convert(last, value, where, meta, rules)
    if tp is Any:
        return value
    if tp in rules.parsers:
        return rules.parsers[tp](value, where, meta)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record(tp, value, where, rules)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Misfit(where, f"expected a mapping, got {_type_name(value)}")
        return {
            k if rules.exact else str(k): _convert(args[1], v, _join(where, str(k)), meta, rules)
            for k, v in value.items()
        }
    if origin in (tuple, list):
        return _sequence(origin, args, value, where, meta, rules)
    return _scalar(tp, value, where, meta)


def _sequence(
    origin: type, args: tuple, value: Any, where: str, meta: Mapping[str, Any], rules: _Rules
) -> Any:
    if not isinstance(value, (list, tuple)) or (rules.exact and not isinstance(value, origin)):
        expected = f"a {origin.__name__}" if rules.exact else "a list"
        raise _Misfit(where, f"expected {expected}, got {_type_name(value)}")
    if origin is list or (len(args) == 2 and args[1] is Ellipsis):
        item_types = [args[0]] * len(value)
    elif len(value) != len(args):
        raise _Misfit(where, f"expected {len(args)} items, got {len(value)}")
    else:
        item_types = list(args)
    items = [
        _convert(t, v, f"{where}[{i}]", meta, rules)
        for i, (t, v) in enumerate(zip(item_types, value, strict=True))
    ]
    return items if origin is list else tuple(items)


def _scalar(tp: Any, value: Any, where: str, meta: Mapping[str, Any]) -> Any:
    if tp is _NONE and value is not None:
        raise _Misfit(where, f"expected null, got {_type_name(value)} {value!r}")
    if tp is str and not isinstance(value, str):
        raise _Misfit(where, f"expected a string, got {_type_name(value)}")
    if tp is bool and not isinstance(value, bool):
        raise _Misfit(where, f"expected true/false, got {_type_name(value)} {value!r}")
    if tp is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise _Misfit(where, f"expected an integer, got {_type_name(value)} {value!r}")
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Misfit(where, f"expected a number, got {_type_name(value)} {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an int beyond any float
            raise _Misfit(where, "number out of range") from None
        if not math.isfinite(value):
            raise _Misfit(where, f"expected a finite number, got {value!r}")
    if tp not in (str, bool, int, float, _NONE):
        raise TypeError(f"{where}: the converter has no rule for {tp!r}")  # a code error
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise _Misfit(where, f"{value!r} not allowed (expected one of: {list(choices)})")
    lo, hi = meta.get("range") or (None, None)
    if lo is not None and value < lo:
        raise _Misfit(where, f"{value} below the allowed minimum {lo}")
    if hi is not None and value > hi:
        raise _Misfit(where, f"{value} above the allowed maximum {hi}")
    return value


def _describe(tp: Any) -> str:
    """A type hint as a reader writes it: ``int | None``, ``dict[str, Any]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(a) for a in args)
    if tp is _NONE or tp is Ellipsis:
        return "None" if tp is _NONE else "..."
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_describe(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))
