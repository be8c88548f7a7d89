"""The fuzz test with a long budget: the seeded generators of tests/fuzz_cases.py, run for as
long as they are given, each input in a child under tests/fuzzing.py's limits.

Usage::

    python benchmarks/fuzz.py [--seconds 600] [--campaign audio ...] [--first 0]
                              [--cases N] [--memory-gib 2] [--cpu-seconds 20] [--work DIR]

Campaigns (default: all): ``audio`` (WAV/FLAC headers through both packages' readers),
``dose-extract``, ``dose-tokenize``, ``dose-manifest``, ``rmod-verify``, ``render-one``
(see tests/fuzz_cases.py). ``--seconds`` is shared evenly among them (after each one's set-up);
``--cases`` runs that many seeds per campaign instead. Seeds start at ``--first`` (CI runs
0..n-1, its slow test the next 10 n, so start above them to look further).

Prints per campaign the cases run, their exit statuses, the slowest input, and every input
that broke the promise (a traceback, an exit status other than 0/1/2, killed by a limit, a
hang), each with the seed that reproduces it: ``--campaign NAME --first SEED --cases 1``.
The exit status is 1 when something was found. Run from the repository root.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_cases import CAMPAIGNS, run_campaign  # noqa: E402
from tests.fuzzing import Limits  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600.0, help="wall-clock budget in all")
    p.add_argument("--campaign", nargs="+", choices=sorted(CAMPAIGNS), default=sorted(CAMPAIGNS))
    p.add_argument("--first", type=int, default=0, help="first seed of every campaign")
    p.add_argument("--cases", type=int, default=None, help="seeds per campaign (not --seconds)")
    p.add_argument("--memory-gib", type=float, default=2.0, help="address space per input")
    p.add_argument("--cpu-seconds", type=int, default=20, help="CPU time per input")
    p.add_argument("--wall-seconds", type=float, default=60.0, help="wall clock per input")
    p.add_argument("--work", default=None, help="folder for the worlds (default: a temp one)")
    return p.parse_args(argv)


def fuzz(name: str, folder: Path, library, seeds, limits: Limits, seconds: float | None) -> int:
    """Run one campaign over ``seeds`` (for ``seconds`` when given); print what it did and
    found; return how many inputs broke the promise."""
    campaign = CAMPAIGNS[name]()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if library is not None:
        campaign.setup(folder, library)
    else:
        campaign.setup(folder)
    deadline = None if seconds is None else time.monotonic() + seconds
    codes: Counter = Counter()
    slowest = [0.0, ""]

    def seen(case, outcome) -> bool:
        codes[outcome.returncode] += 1
        if outcome.seconds > slowest[0]:
            slowest[:] = [outcome.seconds, outcome.label]
        return deadline is None or time.monotonic() < deadline

    found = run_campaign(campaign, seeds, limits, on_outcome=seen)
    statuses = ", ".join(f"exit {k}: {v}" for k, v in sorted(codes.items(), key=str))
    took = time.monotonic() - started
    print(f"\n{name}: {sum(codes.values())} cases in {took:.0f} s ({statuses})")
    print(f"  slowest: {slowest[0]:.2f} s  {slowest[1]}")
    for _, outcome in found:
        print("  FOUND " + outcome.describe().replace("\n", "\n  "))
    return len(found)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limits = Limits(int(args.memory_gib * 2**30), args.cpu_seconds, args.wall_seconds)
    work = Path(args.work or tempfile.mkdtemp(prefix="rmod-dose-fuzz-"))
    library = None
    found = 0
    print(f"fuzzing {', '.join(args.campaign)} in {work} ({limits})", flush=True)
    for name in args.campaign:
        if name in ("rmod-verify", "render-one") and library is None:
            from tests.conftest import write_small_library

            library = write_small_library(work / "library").library_path
        if args.cases is None:
            seeds, seconds = itertools.count(args.first), args.seconds / len(args.campaign)
        else:
            seeds, seconds = range(args.first, args.first + args.cases), None
        needs = name in ("rmod-verify", "render-one")
        found += fuzz(name, work / name, library if needs else None, seeds, limits, seconds)
        sys.stdout.flush()
    print(f"\n{found} input(s) broke the promise" if found else "\nnothing found")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
