"""``rmod-stats``: statistics and plots of a dataset against its recipe (:mod:`rmod.stats`)."""

from __future__ import annotations

import argparse
import sys

from rmod import SPLITS
from rmod.cli import quiet_broken_pipe
from rmod.manifest import ManifestError
from rmod.stats import compute_stats, worst_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``rmod-stats --help``)."""
    p = argparse.ArgumentParser(
        prog="rmod-stats",
        description=(
            "Write DIR/stats/stats.json and PNG plots (hits, layering, instruments, "
            "semitones, mixing, master, loudness, sources, high-band share): the "
            "distribution of every drawn parameter in the dataset, each against the "
            "recipe's distribution."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="dataset folder (holds build.json)")
    p.add_argument(
        "--out",
        default=None,
        help="output folder for stats.json and the plots (default: DIR/stats)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        default=list(SPLITS),
        help="splits to include (default: train valid test)",
    )
    p.add_argument(
        "--high-band",
        type=int,
        default=16,
        metavar="N",
        help="re-render the first N examples to measure the non-drum share of the energy "
        "above 5 kHz against its target (default: 16; 0: skip)",
    )
    p.add_argument(
        "--no-plots", action="store_true", help="write stats.json only (default: plots too)"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar (default: shown)"
    )
    return p.parse_args(argv)


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on success, 1 when the dataset cannot be read."""
    args = parse_args(argv)
    try:
        stats = compute_stats(
            args.dir,
            args.splits,
            args.out,
            plots=not args.no_plots,
            progress=not args.no_progress,
            high_band=args.high_band,
        )
    except (ManifestError, OSError) as exc:
        print(f"rmod-stats: error: {exc}", file=sys.stderr)
        return 1
    n_out = sum(v.get("out_of_bounds", 0) for v in stats["metrics"].values())
    worst = ", ".join(f"{k} {v:.2f}" for k, v in worst_metrics(stats))
    where = args.out or f"{args.dir}/stats"
    print(
        f"rmod-stats: {sum(stats['rows'].values())} rows, {len(stats['metrics'])} metrics, "
        f"{len(stats['plots'])} plots, {n_out} values outside recipe bounds; "
        f"largest TV distance to the recipe: {worst or 'n/a'} -> {where}"
    )
    band = stats["high_band"]
    if "median" in band:
        print(
            f"rmod-stats: high-band share (non-drum energy above 5 kHz) over "
            f"{band['examples']} examples: median {100 * band['median']:.1f} % "
            f"(target {100 * band['target_median']:.0f} %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
