"""The one base class of the errors dose_model raises on purpose.

Every error class of the package derives from :class:`DoseError` (keeping a builtin base such
as ``ValueError`` or ``RuntimeError`` where callers rely on it), so a caller can tell a
reported problem (bad input, an unusable checkpoint, a cache of other settings) from a bug with
one ``except``. The command-line tools print a ``DoseError`` as one line and exit 2 (see
:mod:`dose_model.cli`).
"""

from __future__ import annotations


class DoseError(Exception):
    """A problem dose_model detected and explains in its message (naming the file or field)."""


class InputError(DoseError, ValueError):
    """A bad value of an argument or option (a count, a length, a device); the message names
    the option."""
