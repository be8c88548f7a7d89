"""`dose-separate`: separate drum stems from songs with LarsNet's released models.

Only parses arguments, loads the models once, and calls
`dose_model.separate.songs.separate_songs`. Modules that load torch are imported where used,
so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from dose_model.cli import run
from rmod_dose_common.cli import add_common, float_in, new_parser

PROG = "dose-separate"

EPILOG = """\
files written under OUT, per song (a song found in a folder keeps its subfolders):
  <name>.<stem>.wav   float32 WAV, 44.1 kHz, stereo, as many samples as the song has at 44.1 kHz
stems: kick, snare, hihat; with --all-stems also toms and cymbals.
DIR is LarsNet's released folder pretrained_larsnet_models/, holding
{kick,snare,toms,hihat,cymbals}/pretrained_<stem>_unet.pth (weights CC BY-NC 4.0, not shipped).
Without --wiener only the stems written need their files; --wiener needs all five.
masks: LarsNet's plain sigmoid masks by default; --wiener ALPHA: its alpha-Wiener masks, each
stem's masked magnitude to the power ALPHA over the sum of all five (LarsNet's default: 1).
mono songs are duplicated to stereo; other rates are resampled to 44.1 kHz (SciPy resample_poly).
files inside OUT are never taken as songs, so OUT may lie inside a SONGS folder.
a song that cannot be read is reported by path and skipped; the exit status is then 1.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-separate` (every option with its default)."""
    p = new_parser(PROG, "Separate drum stems from songs with LarsNet.", EPILOG)
    p.add_argument(
        "songs",
        nargs="+",
        help="audio files or folders (searched recursively; WAV, FLAC, AIFF, OGG, MP3; any rate)",
    )
    p.add_argument("--out", required=True, help="folder for the stem WAV files")
    p.add_argument(
        "--larsnet",
        required=True,
        metavar="DIR",
        help="LarsNet's pretrained_larsnet_models folder",
    )
    p.add_argument(
        "--wiener",
        type=float_in(0.0, above=True),
        default=None,
        metavar="ALPHA",
        help="alpha-Wiener masks over all five stems with this exponent (> 0); if not given: "
        "plain masks",
    )
    p.add_argument("--all-stems", action="store_true", help="also write toms and cymbals stems")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a song was skipped, 2 bad arguments or
    an unusable model folder; see :mod:`dose_model.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dose_model.extract.extractor import ExtractError
    from dose_model.extract.songs import find_songs
    from dose_model.separate.songs import outside

    try:
        songs = find_songs(args.songs)
    except ExtractError as err:
        parser.error(str(err))
    args.songs, inside = outside(songs, args.out)
    if inside:
        print(f"{PROG}: {len(inside)} file(s) inside --out {args.out} left out", file=sys.stderr)
    if not args.songs:
        parser.error(f"no songs outside --out {args.out}")
    return run(PROG, _separate, args)


def _separate(args: argparse.Namespace) -> int:
    from dose_model.device import resolve_device
    from dose_model.separate import DRUM_STEMS, SAMPLE_RATE, STEMS, load_larsnet
    from dose_model.separate.songs import separate_songs

    stems = STEMS if args.all_stems else DRUM_STEMS
    needed = STEMS if args.wiener is not None else stems
    larsnet = load_larsnet(args.larsnet, stems=needed, device=resolve_device(args.device))
    songs, failed, out = args.songs, 0, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(songs), desc=PROG, unit="song", disable=args.no_progress) as bar:
        results = separate_songs(
            songs, larsnet, out, stems, args.wiener, progress=lambda n: bar.update(n - bar.n)
        )
        for result in results:
            if isinstance(result, Exception):
                tqdm.write(f"{PROG}: skipped {result}", file=sys.stderr)
                failed += 1
                continue
            seconds = result.samples / SAMPLE_RATE
            tqdm.write(f"{result.path}: {seconds:.2f} s -> {result.name}.{{{','.join(stems)}}}.wav")
    masks = "plain masks" if args.wiener is None else f"alpha-Wiener masks (alpha {args.wiener:g})"
    print(
        f"{PROG}: {len(songs) - failed} of {len(songs)} songs separated into {out} "
        f"({', '.join(stems)}; {masks})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
