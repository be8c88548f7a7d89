"""``rmod-verify``: check a built dataset. The work is in :mod:`rmod.inspect.verify`."""

from __future__ import annotations

import argparse
import os
import sys

from rmod.cli import run
from rmod.errors import InputError
from rmod.inspect.verify import verify_dataset
from rmod_dose_common.cli import add_common, new_parser

PROG = "rmod-verify"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``rmod-verify --help``)."""
    p = new_parser(
        PROG,
        "Check an RMOD dataset: every manifest row's files (or, in a --layout tar build, "
        "tar members) exist, decode, are 16-bit with the right sample rate, channels and "
        "length, and match their checksums; every byte of every tar is checked against its "
        "index (a problem names the shard and the example); "
        "ids are unique; row counts match build.json; no library source is shared "
        "between splits. Exit status 0 only when everything holds; otherwise the "
        "problems are listed, one per line (see --max-problems).",
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder (holds build.json)")
    p.add_argument(
        "--max-problems",
        type=int,
        default=50,
        help="list at most this many problems, 0 = all; the count is always shown",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="threads checking files at once; the report is the same for any number; "
        "if not given: the CPU count",
    )
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 when the dataset passes every check, 1 when it does not, 2 on bad
    input (see :mod:`rmod.cli`)."""
    return run(PROG, _verify, build_parser().parse_args(argv))


def _verify(args: argparse.Namespace) -> int:
    jobs = (os.cpu_count() or 1) if args.jobs is None else args.jobs
    if jobs < 1:
        raise InputError("--jobs must be >= 1")
    report = verify_dataset(args.dir, progress=not args.no_progress, jobs=jobs)
    shown = report.problems if args.max_problems <= 0 else report.problems[: args.max_problems]
    for problem in shown:
        print(f"PROBLEM {problem}")
    if len(shown) < len(report.problems):
        print(f"... and {len(report.problems) - len(shown)} more")
    print(report.line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
