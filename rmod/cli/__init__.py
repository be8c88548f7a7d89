"""Command-line tools of rmod: each module parses arguments and calls the library.

Every tool's ``main`` hands its work to :func:`run`, which is the toolkit's one runner
(:mod:`rmod_dose_cli`, where the exit statuses are listed) bound to :class:`RmodError`:
an ``RmodError`` or ``OSError`` prints as one line and exits 2, any other exception is a
bug and prints its traceback (exit 3), ``--debug`` shows the traceback of both.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rmod.errors import RmodError
from rmod_dose_cli import (  # noqa: F401 (the tools import these from here)
    BROKEN_PIPE_STATUS,
    HelpFormatter,
    Terminated,
    add_common,
    new_parser,
    sigterm_as_interrupt,
)
from rmod_dose_cli import run as _run


def run(
    prog: str,
    work: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
    hint: str = "",
    hint_on_oserror: bool = False,
) -> int:
    """``work(args)``'s exit status, or the status of what it raised (see :mod:`rmod_dose_cli`)."""
    return _run(prog, work, args, RmodError, hint=hint, hint_on_oserror=hint_on_oserror)
