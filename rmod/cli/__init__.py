"""Command-line tools of rmod: each module parses arguments and calls the library.

Every tool's ``main`` hands its work to :func:`run`: the toolkit's one runner
(:mod:`rmod_dose_common.cli`, where the exit statuses are listed) bound to :class:`RmodError`, which
prints as one line and exits 2 (as does an ``OSError``); any other exception is a bug and
prints its traceback (exit 3); ``--debug`` shows the traceback of both.
"""

from rmod.errors import RmodError
from rmod_dose_common.cli import runner

run = runner(RmodError)
