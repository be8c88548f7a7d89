"""Thin command-line wrappers; the work lives in the library modules."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

#: Exit status when the reader of our output went away (as a shell reports SIGPIPE).
BROKEN_PIPE_STATUS = 141


def quiet_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap an entry point so output piped into e.g. ``head`` that stops reading ends the
    command quietly (status 141) instead of with a ``BrokenPipeError`` traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the final flush quiet
            return BROKEN_PIPE_STATUS

    return wrapper
