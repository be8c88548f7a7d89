"""`dose-extract`: extract kick, snare and hi-hat one-shots from songs with trained DOSE models.

Only parses arguments, loads the codec and the models once, and calls
`dose_model.extract.songs.extract_songs`. Modules that load torch are imported where used, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from dose_model import DRUMS
from dose_model.cli import run
from rmod_dose_common.cli import add_common, float_in, new_parser

PROG = "dose-extract"
#: Limits of the float options: a 16-bit one-shot whose peak is under about -90 dBFS is all
#: zeros, and one above 0 dBFS clips; a tail threshold above the peak would cut everything.
PEAK_DB, TRIM_DB, TEMPERATURE = (-90.0, 0.0), (-200.0, 0.0), (0.01, 100.0)

EPILOG = """\
files written under OUT, per song (a song found in a folder keeps its subfolders):
  <name>.<drum>.wav                    the best candidate: mono 16-bit WAV at the codec's rate
  candidates/<name>.<drum>.<rank>.wav  the other candidates (rank 2, 3, ...)
  <name>.extract.json                  clips (start, activity), settings, and per drum every
                                       candidate's score, frames, length, peak and file
confidence score: the candidate's mean token log-probability under its model (natural log,
all 9 codebooks of every generated row up to its end row); closer to 0 is more confident.
drum activity: mean positive spectral flux over the clip (sum over bins of the dB rises from
one STFT frame to the next); onsets score high, sustained sounds low.
a song that cannot be read is reported by path and skipped; the exit status is then 1.
a folder search leaves out OUT (when it lies inside the folder) and skips, with a report, a
link to a file out of the folder; a song folder that is OUT or lies inside it is refused.
with --strategy top-p each candidate samples from its own seed (--seed, song, clip, drum,
candidate), whatever the batch.
"""


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options `dose-extract` and `dose-eval` share: one checkpoint per drum, the codec,
    sampling, candidates, precision and device."""
    for drum in DRUMS:
        p.add_argument(
            f"--{drum}",
            metavar="CKPT",
            help=f"{drum} model: a dose-train checkpoint or a published DOSE .ckpt",
        )
    p.add_argument(
        "--codec-weights",
        required=True,
        help="DAC 44 kHz weights file (the one the models' tokens were made with)",
    )
    p.add_argument(
        "--strategy",
        choices=("greedy", "top-p"),
        default="greedy",
        help="token choice",
    )
    p.add_argument(
        "--top-p",
        type=float_in(0.0, 1.0, above=True),
        default=0.9,
        help="nucleus mass for top-p, in (0, 1]",
    )
    p.add_argument(
        "--temperature",
        type=float_in(*TEMPERATURE),
        default=1.0,
        help=f"for top-p, {TEMPERATURE[0]:g} to {TEMPERATURE[1]:g}",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--candidates",
        type=int,
        default=1,
        metavar="K",
        help="samples per clip and drum, ranked by confidence (top-p when > 1)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="generation weights and cache: auto = bf16 on cuda, fp32 on cpu",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="clips x candidates generated together; if not given: 64 on cuda, 8 on cpu",
    )
    p.add_argument(
        "--concurrent-drums",
        choices=("auto", "on", "off"),
        default="auto",
        help="generate the drums of a batch at the same time, a thread (and on cuda a stream) "
        "per drum; same files either way (auto: on cuda only)",
    )
    p.add_argument(
        "--heads",
        type=int,
        default=16,
        help="attention heads of published checkpoints (not stored in them)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    add_common(p)


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with status 2 (``parser.error``) on bad values of the shared options."""
    if not any(getattr(args, d) for d in DRUMS):
        parser.error("give at least one of --kick, --snare, --hihat")
    if args.candidates < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--candidates and --batch-size must be >= 1")
    if args.candidates > 1 and args.strategy == "greedy":
        parser.error("--candidates above 1 needs --strategy top-p (greedy gives one)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-extract` (every option with its default)."""
    p = new_parser(
        PROG, "Extract drum one-shots from songs with trained DOSE models (one per drum).", EPILOG
    )
    p.add_argument(
        "songs",
        nargs="+",
        help="audio files or folders (searched recursively; WAV, FLAC, AIFF, OGG, MP3; any rate)",
    )
    p.add_argument("--out", required=True, help="folder for the WAV files and JSON sidecars")
    p.add_argument(
        "--windows",
        type=int,
        default=1,
        metavar="N",
        help="4 s clips per song, the N with the most drum activity",
    )
    p.add_argument(
        "--start",
        type=float_in(0.0),
        default=None,
        help="start of the one 4 s clip in seconds; if not given: chosen by drum activity",
    )
    p.add_argument(
        "--trim-db",
        type=float_in(*TRIM_DB),
        default=-60.0,
        help=f"cut the tail below this dB re peak, {TRIM_DB[0]:g} to {TRIM_DB[1]:g}",
    )
    p.add_argument("--no-trim", action="store_true", help="keep the whole decoded tail")
    p.add_argument("--fade-ms", type=float_in(0.0), default=10.0, help="fade-out length (ms), >= 0")
    p.add_argument("--no-fade", action="store_true", help="no fade-out")
    p.add_argument(
        "--peak-db",
        type=float_in(*PEAK_DB),
        default=-1.0,
        help=f"one-shot peak (dBFS), {PEAK_DB[0]:g} to {PEAK_DB[1]:g}",
    )
    p.add_argument("--no-normalize", action="store_true", help="keep the decoded level")
    p.add_argument(
        "--no-input-normalize",
        action="store_true",
        help="encode clips at their own level (without it: peak -1 dBFS, as the training mixtures)",
    )
    add_model_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a song was skipped, 2 bad arguments or
    an unusable model; see :mod:`dose_model.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.windows < 1:
        parser.error("--windows must be >= 1")
    from dose_model.extract.extractor import ExtractError
    from dose_model.extract.songs import find_songs

    try:
        args.songs = find_songs(args.songs, args.out)
    except ExtractError as err:
        parser.error(str(err))
    check_model_arguments(parser, args)
    return run(PROG, _extract, args)


def _extract(args: argparse.Namespace) -> int:
    from dose_model.extract.extractor import ExtractError, ExtractOptions, load_extractor
    from dose_model.extract.songs import extract_songs

    options = ExtractOptions.from_args(args)
    extractor = load_extractor(options)
    songs, failed = args.songs, 0
    with tqdm(total=len(songs), desc=PROG, unit="song", disable=args.no_progress) as bar:
        results = extract_songs(
            songs,
            extractor,
            args.out,
            options,
            record={"checkpoints": dict(options.checkpoints)},
            progress=lambda n: bar.update(n - bar.n),
        )
        for result in results:
            if isinstance(result, ExtractError):
                tqdm.write(f"{PROG}: skipped {result}", file=sys.stderr)
                failed += 1
                continue
            parts = ", ".join(
                f"{d} {r['seconds']:.2f} s score {r['score']:.2f}"
                + ("" if r["ended"] else " (length limit)")
                for d, r in result.oneshots.items()
            )
            starts = " ".join(f"{w['start_s']:.2f}" for w in result.clips)
            tqdm.write(f"{result.song}: clips at {starts} s -> {parts}")
    print(f"{PROG}: {len(songs) - failed} of {len(songs)} songs extracted into {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
