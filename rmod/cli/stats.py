"""``rmod-stats``: statistics and plots of a dataset against its recipe (:mod:`rmod.stats`)."""

from __future__ import annotations

import argparse
import sys

from rmod import SPLITS
from rmod.cli import add_common, new_parser, run
from rmod.stats import compute_stats, worst_metrics

PROG = "rmod-stats"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``rmod-stats --help``)."""
    p = new_parser(
        PROG,
        "Write DIR/stats/stats.json and PNG plots (hits, layering, instruments, "
        "semitones, mixing, master, loudness): the distribution of every drawn "
        "parameter in the dataset, each against the recipe's distribution.",
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
    p.add_argument("--no-plots", action="store_true", help="write stats.json only")
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 2 when the dataset cannot be read (see :mod:`rmod.cli`)."""
    return run(PROG, _stats, build_parser().parse_args(argv))


def _stats(args: argparse.Namespace) -> int:
    stats = compute_stats(
        args.dir, args.splits, args.out, plots=not args.no_plots, progress=not args.no_progress
    )
    n_out = sum(v.get("out_of_bounds", 0) for v in stats["metrics"].values())
    worst = ", ".join(f"{k} {v:.2f}" for k, v in worst_metrics(stats))
    where = args.out or f"{args.dir}/stats"
    print(
        f"{PROG}: {sum(stats['rows'].values())} rows, {len(stats['metrics'])} metrics, "
        f"{len(stats['plots'])} plots, {n_out} values outside recipe bounds; "
        f"largest TV distance to the recipe: {worst or 'n/a'} -> {where}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
