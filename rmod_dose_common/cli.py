"""How every command-line tool of the toolkit ends: one runner shared by `rmod` and `dose_model`.

`rmod` and `dose_model` meet only at the manifest format and never import each other; this
small package holds what both command lines need and imports neither. Each package binds
:func:`run` to its own base error with :func:`runner` (:mod:`rmod.cli`, :mod:`dose_model.cli`),
so a tool's ``main`` is ``run(PROG, work, args)``:

====  ===========================================================================
exit  meaning
====  ===========================================================================
0     done
1     the job ran and reported failures (the tool's own meaning: refused files,
      failed examples, skipped songs or rows)
2     bad usage or bad input: argparse's own errors, and every error of the
      package's base class or ``OSError``, printed as one line
      ``<tool>: error: <what and where>``
3     a bug: any other exception, printed with its traceback
130   interrupted (Ctrl-C)
141   the reader of the output went away (``| head``): ends quietly
143   terminated (SIGTERM, where a tool turns it into :class:`Terminated` with
      :func:`sigterm_as_interrupt`)
====  ===========================================================================

``--debug`` prints the traceback of the one-line errors (status 2) too. ``rmod-build``
catches an interruption itself and reports the stopped build with its summary (status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator

#: Exit statuses of the failures :func:`run` reports (see the module docstring).
BAD_INPUT, BUG, INTERRUPTED, TERMINATED = 2, 3, 130, 143
#: Exit status when the reader of our output went away (as a shell reports SIGPIPE).
BROKEN_PIPE_STATUS = 141


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by :func:`sigterm_as_interrupt`'s handler: stops the work the way
    Ctrl-C does (it is a ``KeyboardInterrupt``), with its own exit status."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM (what batch schedulers and ``kill`` send) inside
    the block, so the work stops the same clean way as on Ctrl-C. Main thread only."""

    def _raise(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps a description or epilog unless it holds line breaks (then it is kept as
    written), and appends ``(default: X)`` to an option's help, except for required options
    and defaults that say nothing (None, False, SUPPRESS): their help says what leaving them
    out does."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" not in text:
            return super()._fill_text(text, width, indent)
        return "".join(indent + line for line in text.splitlines(keepends=True))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.required or default is None or default is False:
            return text
        if default is argparse.SUPPRESS or action.option_strings == []:
            return text
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


def new_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with :class:`HelpFormatter` (add :func:`add_common` last)."""
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


def float_in(
    lo: float | None = None, hi: float | None = None, above: bool = False
) -> Callable[[str], float]:
    """An argparse ``type`` for a float option: a finite number from ``lo`` to ``hi`` (either
    ``None`` for no limit; strictly above ``lo`` with ``above``). Anything else (``nan``,
    ``inf``, out of range) is argparse's one-line error naming the option, exit status 2."""
    low = "" if lo is None else f"{'>' if above else '>='} {lo:g}"
    high = "" if hi is None else f"<= {hi:g}"
    limits = " and ".join(x for x in (low, high) if x)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = lo is not None and (value <= lo if above else value < lo)
        if too_low or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {limits})")
        return value

    parse.__name__ = "float"  # argparse's fallback message: "invalid float value"
    return parse


def add_common(p: argparse.ArgumentParser, progress: bool = True) -> None:
    """The options every tool has: ``--debug`` (and ``--no-progress`` where it shows one)."""
    if progress:
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--debug", action="store_true", help="print the traceback of errors that stop the run"
    )


def counted(n: int, noun: str) -> str:
    """``1 row``, ``0 rows``, ``2 rows``: a count and its noun, for the lines commands print."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe(exc: BaseException, base: type[Exception]) -> str:
    """One line naming what went wrong and where (a plain ``OSError``'s file and reason;
    the message of an error of the package's ``base`` class, which names its file)."""
    if isinstance(exc, OSError) and not isinstance(exc, base) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc).strip() or type(exc).__name__


def run(
    prog: str,
    work: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
    base: type[Exception],
    hint: str = "",
    hint_on_oserror: bool = False,
) -> int:
    """``work(args)``'s status, or the status of the exception it raised (see the table
    above; ``base`` is the package's error class); the message goes to stderr as
    ``<prog>: error: ...``. ``hint`` (e.g. how to resume) follows an interruption's message,
    and an ``OSError``'s with ``hint_on_oserror`` (a full disk while writing)."""
    tail = f"; {hint}" if hint else ""
    try:
        status = work(args)
        sys.stdout.flush()  # output still buffered meets a closed pipe here, not at exit
        return status
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the final flush quiet
        return BROKEN_PIPE_STATUS
    except (base, OSError) as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        more = tail if hint_on_oserror and isinstance(exc, OSError) else ""
        print(f"{prog}: error: {describe(exc, base)}{more}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"{prog}: {'terminated' if terminated else 'interrupted'}{tail}", file=sys.stderr)
        return TERMINATED if terminated else INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(f"{prog}: internal error (a bug): please report the traceback above", file=sys.stderr)
        return BUG


def runner(base: type[Exception]) -> Callable[..., int]:
    """:func:`run` for a package whose errors derive from ``base``:
    ``run(prog, work, args, hint="", hint_on_oserror=False)``."""

    def run_for_package(
        prog: str,
        work: Callable[[argparse.Namespace], int],
        args: argparse.Namespace,
        hint: str = "",
        hint_on_oserror: bool = False,
    ) -> int:
        return run(prog, work, args, base, hint=hint, hint_on_oserror=hint_on_oserror)

    return run_for_package
