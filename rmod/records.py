"""rmod's records to plain JSON/YAML values and back: the shared converter
(:mod:`rmod_dose_common.records`) bound to rmod's :class:`RecordError`.

:func:`to_plain` turns a record into dicts, lists and scalars; :func:`from_plain` builds a
record back from them, driven by the type hints, and raises :class:`RecordError` naming the
field path (``drums.kick.weights[0]``) of the first value that does not fit. Every record
of rmod (recipes, example parameters, library entries, manifest rows, ``build.json``) goes
through these two functions; a record's ``to_dict``/``from_dict`` are thin calls to them.
The types understood and the field metadata (``skip``, ``optional``, ``range``,
``choices``) are described in :mod:`rmod_dose_common.records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rmod.errors import RmodError
from rmod_dose_common import records
from rmod_dose_common.records import Parser, to_plain

__all__ = ["RecordError", "from_plain", "to_plain"]


class RecordError(RmodError, records.RecordError):
    """A plain value that does not fit its record; ``where`` is the field path, ``reason``
    what is wrong with it (a ``ValueError`` too)."""


def from_plain(
    tp: Any, value: Any, where: str = "", parsers: Mapping[type, Parser] | None = None
) -> Any:
    """Build a value of type ``tp`` from plain ``value``; :class:`RecordError` naming the
    path (``where`` is the path of ``value`` itself, ``""`` at the top) when it does not fit."""
    return records.from_plain(tp, value, where, parsers, error=RecordError)
