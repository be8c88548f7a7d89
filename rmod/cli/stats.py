"""``rmod-stats``: statistics and plots of a dataset against its recipe (:mod:`rmod.inspect.stats`)."""

from __future__ import annotations

import argparse
import sys

from rmod import SPLITS
from rmod.cli import run
from rmod.errors import InputError
from rmod.inspect.stats import compute_stats, worst_metrics
from rmod_dose_common.cli import add_common, new_parser

PROG = "rmod-stats"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``rmod-stats --help``)."""
    p = new_parser(
        PROG,
        "Write DIR/stats/stats.json and PNG plots (hits, layering, instruments, "
        "semitones, mixing, master, loudness, sources, high-band share): the distribution "
        "of every drawn parameter in the dataset, each against the recipe's distribution.",
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder (holds build.json)")
    p.add_argument(
        "--out",
        default=None,
        help="output folder for stats.json and the plots; if not given: DIR/stats",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="splits to include",
    )
    p.add_argument(
        "--high-band",
        type=int,
        default=16,
        metavar="N",
        help="re-render the first N examples to measure the non-drum share of the energy "
        "above 5 kHz against its target (0: skip)",
    )
    p.add_argument("--no-plots", action="store_true", help="write stats.json only")
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 2 when the dataset cannot be read (see :mod:`rmod.cli`)."""
    return run(PROG, _stats, build_parser().parse_args(argv))


def _stats(args: argparse.Namespace) -> int:
    if args.high_band < 0:
        raise InputError(f"--high-band must be 0 or more, got {args.high_band}")
    stats = compute_stats(
        args.dir,
        args.splits,
        args.out,
        plots=not args.no_plots,
        progress=not args.no_progress,
        high_band=args.high_band,
    )
    n_out = sum(v.get("out_of_bounds", 0) for v in stats["metrics"].values())
    worst = ", ".join(f"{k} {v:.2f}" for k, v in worst_metrics(stats))
    where = args.out or f"{args.dir}/stats"
    print(
        f"{PROG}: {sum(stats['rows'].values())} rows, {len(stats['metrics'])} metrics, "
        f"{len(stats['plots'])} plots, {n_out} values outside recipe bounds; "
        f"largest TV distance to the recipe: {worst or 'n/a'} -> {where}"
    )
    band = stats["high_band"]
    if "median" in band:
        print(
            f"{PROG}: high-band share (non-drum energy above 5 kHz) over "
            f"{band['examples']} examples: median {100 * band['median']:.1f} % "
            f"(target {100 * band['target_median']:.0f} %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
