"""`dose-extract`: extract kick, snare and hi-hat one-shots from songs with trained DOSE models.

Only parses arguments, loads the codec and the models once, and calls
`dose_model.extract.extract_song` for each song.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dose_model import DRUMS

EPILOG = """\
files written under OUT, per song:
  <stem>.<drum>.wav      the one-shot: mono 16-bit WAV at the codec's rate (44.1 kHz)
  <stem>.extract.json    clip start, sampling settings, checkpoints, frames and peak per drum
a song that cannot be read is reported by path and skipped; the exit status is then 1.
with --strategy top-p each drum samples from a generator seeded by (--seed, drum).
"""


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options `dose-extract` and `dose-eval` share: one checkpoint per drum, the codec,
    sampling and device."""
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
        help="token choice (default: greedy)",
    )
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus mass for top-p (default 0.9)")
    p.add_argument("--temperature", type=float, default=1.0, help="for top-p (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument(
        "--heads",
        type=int,
        default=16,
        help="attention heads of published checkpoints (not stored in them; default 16)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")


def load_codec_and_models(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """(codec, {drum: model}, {drum: checkpoint path}, sampling kwargs) from the shared options;
    exits with status 2 when no drum is given. Raises CheckpointError, CodecLoadError,
    ValueError or OSError naming the file or device."""
    checkpoints = {d: getattr(args, d) for d in DRUMS if getattr(args, d)}
    if not checkpoints:
        parser.error("give at least one of --kick, --snare, --hihat")
    if not args.temperature > 0 or not 0 < args.top_p <= 1:
        parser.error("--temperature must be > 0 and --top-p in (0, 1]")
    from dose_model.checkpoints import load_any_model
    from dose_model.codec import DacCodec
    from dose_model.device import resolve_device
    from dose_model.extract import check_model_fits

    device = resolve_device(args.device)
    codec = DacCodec.load(args.codec_weights, device=device)
    models = {}
    for drum, path in checkpoints.items():
        models[drum] = load_any_model(path, args.heads, device)
        check_model_fits(models[drum], codec, path)
    sampling = {
        "strategy": args.strategy,
        "top_p": args.top_p,
        "temperature": args.temperature,
        "seed": args.seed,
    }
    return codec, models, checkpoints, sampling


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-extract` (every option with its default)."""
    p = argparse.ArgumentParser(
        prog="dose-extract",
        description="Extract drum one-shots from songs with trained DOSE models (one per drum).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("songs", nargs="+", help="audio files (WAV, FLAC, AIFF, OGG, MP3; any rate)")
    p.add_argument("--out", required=True, help="folder for the WAV files and JSON sidecars")
    p.add_argument(
        "--start",
        type=float,
        default=None,
        help="start of the 4 s clip in seconds (default: the loudest 4 s on a 0.5 s grid)",
    )
    add_model_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a song or model failed, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stems: dict[str, str] = {}
    for song in args.songs:
        stem = Path(song).stem
        if stem in stems:
            parser.error(
                f"{stems[stem]} and {song} would both write {stem}.<drum>.wav; "
                "extract them into different --out folders"
            )
        stems[stem] = song
    from dose_model.extract import ExtractError, extract_song

    try:
        codec, models, checkpoints, sampling = load_codec_and_models(parser, args)
    except (ValueError, OSError) as err:  # CheckpointError and CodecLoadError are ValueErrors
        print(f"dose-extract: error: {err}", file=sys.stderr)
        return 1
    failed = 0
    for song in args.songs:
        try:
            result = extract_song(
                song, codec, models, args.out, args.start, checkpoints=checkpoints, **sampling
            )
        except (ExtractError, OSError) as err:
            print(f"dose-extract: skipped {err}", file=sys.stderr)
            failed += 1
            continue
        parts = ", ".join(
            f"{d} {r['seconds']:.2f} s" + ("" if r["ended"] else " (length limit)")
            for d, r in result.oneshots.items()
        )
        print(
            f"{song}: clip {result.start_s:.2f}-{result.start_s + result.window_s:.2f} s "
            f"({result.chosen}) -> {parts}"
        )
    done = len(args.songs) - failed
    print(f"dose-extract: {done} of {len(args.songs)} songs extracted into {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
