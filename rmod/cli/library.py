"""``rmod-library``: index sample folders into a library manifest, describe a library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING

from rmod import CLASSES, DRUMS, INSTRUMENTS, SPLITS
from rmod.cli import run
from rmod.errors import InputError
from rmod.library.catalog import Library
from rmod.library.families import family_counts, source_counts
from rmod.library.indexing import GROUP_BY, IndexLimits, check_limits, index_library
from rmod.library.leaks import leak_report
from rmod_dose_common.cli import HelpFormatter, add_common, float_in, new_parser

if TYPE_CHECKING:
    from rmod.library.leaks import ClassLeaks

PROG = "rmod-library"
#: argparse type of a length in seconds: a finite number above 0.
SECONDS = float_in(0.0, above=True)
# rmod.library.builtin.export (the soundfont sampler) loads scipy: imported where used.


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``rmod-library --help``)."""
    lim = IndexLimits()
    d_one, d_loop = lim.durations["kick"], lim.durations["bass"]
    p = new_parser(PROG, "Index your own samples into a library manifest, or describe a library.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{index,info,soundfont}")

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
        formatter_class=HelpFormatter,
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
        "--oneshot-min", type=SECONDS, default=d_one[0], help="shortest kick/snare/hihat (s)"
    )
    ix.add_argument(
        "--oneshot-max", type=SECONDS, default=d_one[1], help="longest kick/snare/hihat (s)"
    )
    ix.add_argument(
        "--loop-min",
        type=SECONDS,
        default=d_loop[0],
        help="shortest bass/piano/guitar/vocal loop (s); keep >= the segment length",
    )
    ix.add_argument(
        "--loop-max",
        type=SECONDS,
        default=d_loop[1],
        help="longest bass/piano/guitar/vocal loop (s)",
    )
    ix.add_argument(
        "--silence-db",
        type=float_in(-200.0, 0.0),
        default=lim.silence_db,
        help="refuse files whose peak is below this level (dBFS, -200 to 0)",
    )
    ix.add_argument(
        "--splits",
        type=float_in(0.0, 1.0),
        nargs=3,
        default=list(lim.split_fractions),
        metavar=("TRAIN", "VALID", "TEST"),
        help="split fractions, summing to 1 (assigned from each file's content hash)",
    )
    ix.add_argument(
        "--group-by",
        choices=GROUP_BY,
        default=lim.group_by,
        help="what shares a split: each file alone, or every file under the same sub-folder "
        "of a class folder (a kit, a pack: SRC_DIR/kick/KIT/...)",
    )
    ix.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common(ix, progress=False)

    info = sub.add_parser(
        "info",
        help="counts per class and split",
        description=(
            "Print counts per class and split of a library. Without LIB: the built-in "
            "library (generated into the cache on first use, about half a minute)."
        ),
        formatter_class=HelpFormatter,
    )
    info.add_argument(
        "lib",
        nargs="?",
        default=argparse.SUPPRESS,
        metavar="LIB",
        help="library manifest; if not given: the built-in library",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument(
        "--leaks",
        action="store_true",
        help="also measure near-duplicate one-shots across splits: a valid/test one-shot "
        "leaks when a train one-shot of its class correlates above 0.95 over the 0.25 s "
        "from the onset (best lag within 5 ms; see rmod.library.leaks)",
    )
    add_common(info, progress=False)
    _add_soundfont_parser(sub)
    return p


def _add_soundfont_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sf = sub.add_parser(
        "soundfont",
        help="turn a SoundFont 2 file into library folders",
        description=(
            "Write SF2's drum kits as one-shots (every velocity layer of the General MIDI "
            "kick, snare and hi-hat keys, one folder per sound family) and its melodic "
            "programs as phrase loops (bass, piano/organ/synth, guitar, choir/voice) under "
            "OUT_DIR/<class>/, ready for: rmod-library index OUT_DIR --out LIB --group-by "
            "folder."
        ),
        formatter_class=HelpFormatter,
    )
    sf.add_argument("sf2", metavar="SF2", help="SoundFont 2 file (.sf2; SF3 is not supported)")
    sf.add_argument(
        "--out",
        required=True,
        metavar="OUT_DIR",
        default=argparse.SUPPRESS,
        help="folder that receives the class folders",
    )
    sf.add_argument("--loops-per-program", type=int, default=2, help="loops per melodic program")
    sf.add_argument("--min-loop-s", type=SECONDS, default=4.5, help="shortest loop (s)")
    sf.add_argument("--seed", type=int, default=0, help="seed of the phrases")
    add_common(sf, progress=False)


def _soundfont(args: argparse.Namespace) -> int:
    from rmod.library.builtin.export import export_soundfont

    if args.loops_per_program < 0:  # --min-loop-s is checked by its type
        raise InputError(f"--loops-per-program must be >= 0, got {args.loops_per_program}")
    report = export_soundfont(
        args.sf2,
        args.out,
        loops_per_program=args.loops_per_program,
        min_loop_s=args.min_loop_s,
        seed=args.seed,
    )
    for line in report.skipped:
        print(f"skipped {line}")
    per_class = ", ".join(f"{c} {n}" for c, n in report.counts.items())
    print(f"wrote {sum(report.counts.values())} files ({per_class}) under {args.out}")
    return 0


def _index(args: argparse.Namespace) -> int:
    if args.oneshot_min > args.oneshot_max or args.loop_min > args.loop_max:
        raise InputError("a minimum duration is above its maximum")
    durations = {c: (args.oneshot_min, args.oneshot_max) for c in DRUMS}
    durations.update({c: (args.loop_min, args.loop_max) for c in INSTRUMENTS})
    try:
        limits = IndexLimits(durations, args.silence_db, tuple(args.splits), group_by=args.group_by)
        check_limits(limits)
    except ValueError as exc:  # the limits' own checks
        raise InputError(str(exc)) from None
    report = index_library(args.src_dir, args.out, limits=limits, progress=not args.quiet)
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
            f"{PROG}: error: no audio files in {args.src_dir}'s "
            f"class folders ({folders}); the library is empty",
            file=sys.stderr,
        )
        return 1
    return 1 if report.refused else 0


def _info(args: argparse.Namespace) -> int:
    lib = Library.load(getattr(args, "lib", None))
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


def _leaks(lib: Library) -> list[ClassLeaks]:
    return leak_report(lib, [c for c in DRUMS if c in lib.classes])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rmod-library``; the exit status (see :mod:`rmod.cli`)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    commands = {"index": _index, "info": _info, "soundfont": _soundfont}
    return run(PROG, commands[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
