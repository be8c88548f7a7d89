"""Command-line tools of dose_model: each module parses arguments and calls the library.

Every tool's ``main`` hands its work to :func:`run`: the toolkit's one runner
(:mod:`rmod_dose_common.cli`, where the exit statuses are listed) bound to :class:`DoseError`, which
prints as one line and exits 2 (as does an ``OSError``); any other exception is a bug and
prints its traceback (exit 3); ``--debug`` shows the traceback of both. dose-train turns
SIGTERM into ``rmod_dose_common.cli.Terminated`` (exit 143).
"""

from dose_model.errors import DoseError
from rmod_dose_common.cli import runner

run = runner(DoseError)
