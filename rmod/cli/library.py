"""``rmod-library``: index sample folders into a library manifest, describe a library."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rmod import CLASSES, SPLITS
from rmod.cli import quiet_broken_pipe


def _parser() -> argparse.ArgumentParser:
    from rmod.library import IndexLimits

    lim = IndexLimits()
    d_one, d_loop = lim.durations["kick"], lim.durations["bass"]
    p = argparse.ArgumentParser(
        prog="rmod-library",
        description="Index your own samples into a library manifest, or describe a library.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{index,info}")

    ix = sub.add_parser(
        "index",
        help="index class folders into a library manifest",
        description=(
            "Index SRC_DIR/{kick,snare,hihat}/ (one-shots) and SRC_DIR/{bass,piano,guitar,vocal}/ "
            "(loops); nested folders allowed; WAV, FLAC, AIFF, OGG at any rate, depth, channel "
            "count. Unusable files are listed with their reason and left out. "
            "Exit status: 0 if every file was indexed, 1 if any was refused or none was found "
            "in the class folders, 2 on usage errors."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ix.add_argument("src_dir", metavar="SRC_DIR", help="folder holding the class folders")
    ix.add_argument(
        "--out",
        required=True,
        metavar="LIB",
        default=argparse.SUPPRESS,
        help="manifest to write (JSON Lines; required)",
    )
    ix.add_argument(
        "--oneshot-min", type=float, default=d_one[0], help="shortest kick/snare/hihat (s)"
    )
    ix.add_argument(
        "--oneshot-max", type=float, default=d_one[1], help="longest kick/snare/hihat (s)"
    )
    ix.add_argument(
        "--loop-min",
        type=float,
        default=d_loop[0],
        help="shortest bass/piano/guitar/vocal loop (s); keep >= the segment length",
    )
    ix.add_argument(
        "--loop-max", type=float, default=d_loop[1], help="longest bass/piano/guitar/vocal loop (s)"
    )
    ix.add_argument(
        "--silence-db",
        type=float,
        default=lim.silence_db,
        help="refuse files whose peak is below this level (dBFS)",
    )
    ix.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=list(lim.split_fractions),
        metavar=("TRAIN", "VALID", "TEST"),
        help="split fractions, summing to 1 (assigned from each file's content hash)",
    )
    ix.add_argument(
        "--group-by",
        choices=("file", "folder"),
        default=lim.group_by,
        help="what shares a split: each file alone, or every file under the same sub-folder "
        "of a class folder (a kit, a pack: SRC_DIR/kick/KIT/...)",
    )
    ix.add_argument("--quiet", action="store_true", help="no progress bar")

    info = sub.add_parser(
        "info",
        help="counts per class and split",
        description=(
            "Print counts per class and split of a library. Without LIB: the built-in "
            "library (generated into the cache on first use, about half a minute)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    info.add_argument(
        "lib",
        nargs="?",
        default=argparse.SUPPRESS,
        metavar="LIB",
        help="library manifest (default: the built-in library)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument(
        "--leaks",
        action="store_true",
        help="also measure near-duplicate one-shots across splits: a valid/test one-shot "
        "leaks when a train one-shot of its class correlates above 0.95 over the 0.25 s "
        "from the onset (best lag within 5 ms; see rmod.leaks)",
    )
    _add_soundfont_parser(sub)
    return p


def _index(args: argparse.Namespace) -> int:
    from rmod.library import IndexLimits, index_library, split_for_hash

    if args.oneshot_min > args.oneshot_max or args.loop_min > args.loop_max:
        print("rmod-library: error: a minimum duration is above its maximum", file=sys.stderr)
        return 2
    durations = {c: (args.oneshot_min, args.oneshot_max) for c in CLASSES[:3]}
    durations.update({c: (args.loop_min, args.loop_max) for c in CLASSES[3:]})
    try:
        limits = IndexLimits(durations, args.silence_db, tuple(args.splits), group_by=args.group_by)
        split_for_hash("0" * 64, limits.split_fractions)  # validates the fractions
    except ValueError as exc:
        print(f"rmod-library: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = index_library(args.src_dir, args.out, limits=limits, progress=not args.quiet)
    except FileNotFoundError as exc:
        print(f"rmod-library: error: {exc}", file=sys.stderr)
        return 2
    for path, reason in report.refused:
        print(f"refused {path}: {reason}")
    per_class = ", ".join(f"{c} {sum(report.counts[c].values())}" for c in CLASSES)
    print(
        f"indexed {report.n_indexed} files ({per_class}), refused {len(report.refused)}; "
        f"wrote {report.library_path}"
    )
    if report.n_indexed == 0 and not report.refused:
        folders = ", ".join(f"{c}/" for c in CLASSES)
        print(
            f"rmod-library: error: no audio files in {args.src_dir}'s "
            f"class folders ({folders}); the library is empty",
            file=sys.stderr,
        )
        return 1
    return 1 if report.refused else 0


def _info(args: argparse.Namespace) -> int:
    from rmod.families import family_counts, source_counts
    from rmod.library import Library, LibraryError

    try:
        lib = Library.load(getattr(args, "lib", None))
    except LibraryError as exc:
        print(f"rmod-library: error: {exc}", file=sys.stderr)
        return 1
    counts = lib.counts()
    families = family_counts(lib)
    leaks = _leaks(lib) if args.leaks else None
    if args.json:
        data = {
            "library": str(lib.path),
            "fingerprint": lib.fingerprint,
            "n_entries": len(lib),
            "counts": counts,
            "families": families,
            "sources": source_counts(lib),
        }
        if leaks is not None:
            data["leaks"] = {
                r.cls: {"n_eval": r.n_eval, "n_leaking": r.n_leaking, "worst": r.worst}
                for r in leaks
            }
        print(json.dumps(data, indent=2))
        return 0
    print(f"library {lib.path}")
    print(f"fingerprint {lib.fingerprint}")
    print(f"{'class':<8}" + "".join(f"{s:>7}" for s in SPLITS) + f"{'total':>7}{'families':>10}")
    for c in CLASSES:
        row = counts[c]
        cells = "".join(f"{row[s]:>7}" for s in SPLITS)
        print(f"{c:<8}{cells}{sum(row.values()):>7}{families[c]:>10}")
    print(f"{len(lib)} entries in {len(lib.classes)} classes")
    for source, per_class in source_counts(lib).items():
        what = ", ".join(f"{c} {n}" for c, n in per_class.items())
        print(f"source {source or '(indexed files)'}: {what}")
    for r in leaks or ():
        worst = f"; worst {r.worst[0][0]} ~ {r.worst[0][1]} ({r.worst[0][2]})" if r.worst else ""
        print(
            f"leaks {r.cls}: {r.n_leaking} of {r.n_eval} valid/test one-shots "
            f"({r.percent:.1f} %) have a train near-duplicate{worst}"
        )
    return 0


def _leaks(lib):
    from rmod import DRUMS
    from rmod.leaks import leak_report

    return leak_report(lib, [c for c in DRUMS if c in lib.classes])


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rmod-library``; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    return _index(args) if args.command == "index" else _info(args)


if __name__ == "__main__":
    sys.exit(main())
