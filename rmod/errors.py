"""The one base class of the errors rmod raises on purpose.

Every error class of the package derives from :class:`RmodError` (keeping a builtin base such
as ``ValueError`` or ``OSError`` where callers rely on it), so a caller can tell a reported
problem (bad input, an unreadable file, a refused build) from a bug with one ``except``. The
command-line tools print an ``RmodError`` as one line and exit 2 (see :mod:`rmod.cli`).
"""

from __future__ import annotations


class RmodError(Exception):
    """A problem rmod detected and explains in its message (which names the file or field)."""


class InputError(RmodError, ValueError):
    """A bad value of an argument or option (a count, a fraction, a pair of limits); the
    message names the option."""
