"""`dose-eval`: score DOSE models on an RMOD split with the multi-scale spectral distance.

Only parses arguments, loads the codec and the models, and calls
`dose_model.evaluate.split.evaluate_split`. Modules that load torch are imported where used, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from dose_model.cli import run
from dose_model.cli.extract import add_model_arguments, check_model_arguments
from rmod_dose_common.cli import new_parser

PROG = "dose-eval"

EPILOG = """\
columns (mean over the split's rows, lower is better):
  MSS model    extracted one-shot vs ground truth
  MSS baseline separation-based baseline without weights (HPSS + band-pass, most isolated hit)
  MSS DAC      ground truth through the codec vs ground truth (the codec's ceiling)
  MSS silence  an all-zero estimate vs ground truth (a floor to beat)
files written under OUT:
  rows.csv       id, drum, frames, ended, score (confidence: mean token log-probability),
                 mss_model, mss_baseline, mss_dac, mss_silence
  summary.json   per drum: rows, mean and median of each column; skipped rows; settings
  audio/         with --save-audio: <id>.<drum>.wav (the scored one-shot, as decoded); a row
                 id that would write outside audio/ (absolute, or with ..) stops the run
with --candidates K (top-p) each row and drum gets K samples and the most confident is scored.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-eval` (every option with its default)."""
    p = new_parser(
        PROG,
        "Score DOSE models (one per drum) on an RMOD split: MSS against the ground truth, "
        "beside a separation-based baseline, the codec's reconstruction and silence.",
        EPILOG,
    )
    p.add_argument(
        "--manifest",
        required=True,
        help="RMOD dataset folder DIR, or one manifest DIR/manifests/<split>.jsonl",
    )
    p.add_argument(
        "--split",
        default=None,
        choices=("train", "valid", "test"),
        help="split to score; if not given: test for a folder, the manifest's own split for a file",
    )
    p.add_argument("--out", required=True, help="folder for rows.csv and summary.json")
    p.add_argument("--max-rows", type=int, default=None, help="first N rows only")
    p.add_argument("--save-audio", action="store_true", help="also write the one-shots")
    add_model_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 rows skipped, 2 bad arguments or input;
    see :mod:`dose_model.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_rows is not None and args.max_rows < 1:
        parser.error("--max-rows must be >= 1")
    check_model_arguments(parser, args)
    return run(PROG, _evaluate, args)


def _evaluate(args: argparse.Namespace) -> int:
    from dose_model.evaluate.split import evaluate_split
    from dose_model.extract.extractor import ExtractOptions, load_extractor

    options = ExtractOptions.from_args(args)
    extractor = load_extractor(options)
    with tqdm(desc=PROG, unit="row", disable=args.no_progress) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        summary = evaluate_split(
            args.manifest,
            extractor,
            args.out,
            split=args.split,
            max_rows=args.max_rows,
            save_audio=args.save_audio,
            progress=progress,
            sampling=options.sampling,
        )
    print(summary.table())
    for item in summary.skipped:
        print(f"{PROG}: skipped row {item['id']}: {item['path']}: {item['reason']}",
              file=sys.stderr)  # fmt: skip
    print(
        f"{PROG}: {sum(summary.rows.values())} scores from the {summary.split} split in "
        f"{summary.elapsed_s:.1f} s, {len(summary.skipped)} rows skipped; results in {args.out}"
    )
    return 1 if summary.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
