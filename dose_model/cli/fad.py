"""`dose-fad`: Fréchet audio distance between two sets of audio files, offline.

Only parses arguments, loads the embedding model and calls `dose_model.fad.score.score`.
Modules that load torch are imported where used, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from tqdm import tqdm

from dose_model.cli import run
from rmod_dose_common.cli import add_common, new_parser

PROG = "dose-fad"

EPILOG = """\
models (weights are local files; nothing is downloaded):
  vggish=FILE  torchvggish's release file (vggish-10086976.pth); 16 kHz, 0.96 s windows,
               128-d pre-ReLU embeddings; clips under 1 s zero-padded to 1 s (fadtk's rule)
  clap=FILE    a LAION-CLAP checkpoint (630k-audioset-best.pt, ...); 48 kHz, 10 s windows,
               512-d; shorter clips tiled (--pad repeat) or zero-padded (--pad zero)
sets (REF and EVAL):
  DIR                     every .wav and .flac file under DIR, recursively
  rmod:DIR:SPLIT:DRUM     the DRUM one-shots of an RMOD dataset split, e.g. rmod:data:test:kick
output:
  FAD over every window of every file pooled (float64 mean and covariance); FAD-inf, the
  extrapolation to infinitely many windows (fit against 1/n over subsets of both sets), with
  a bootstrap interval. A warning when a set has no more windows than dimensions (the
  covariance is then rank-deficient and FAD mostly bias).
  with --save-embeddings DIR: DIR/ref/<relative path>.npy and DIR/eval/<relative path>.npy
  (float32, one row per window), the path relative to the set's folder (rmod: the dataset's).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-fad` (every option with its default)."""
    p = new_parser(
        PROG,
        "Fréchet audio distance (FAD and FAD-inf with a bootstrap interval) between a reference "
        "and an evaluated set of audio files, with VGGish or CLAP from local weight files.",
        EPILOG,
    )
    p.add_argument("model", metavar="MODEL", help="vggish=WEIGHTS or clap=WEIGHTS")
    p.add_argument("ref", metavar="REF", help="reference set: a folder or rmod:DIR:SPLIT:DRUM")
    p.add_argument("eval", metavar="EVAL", help="evaluated set: a folder or rmod:DIR:SPLIT:DRUM")
    p.add_argument(
        "--save-embeddings", metavar="DIR", default=None,
        help="also write each file's embeddings under DIR/ref and DIR/eval",
    )  # fmt: skip
    p.add_argument(
        "--cache", metavar="DIR", default=None,
        help="reuse and store embeddings per file content and model in DIR (not given: no cache)",
    )  # fmt: skip
    p.add_argument(
        "--pad", choices=("repeat", "zero"), default=None,
        help="clap: fill clips under 10 s by tiling them (repeat) or with zeros; "
        "not given: the model's default (clap: repeat; vggish only zero-pads)",
    )  # fmt: skip
    p.add_argument(
        "--int16", action="store_true",
        help="clap: round the audio through int16 first (fadtk's convention)",
    )  # fmt: skip
    p.add_argument(
        "--vggish-output", choices=("pre_relu", "relu", "postprocessed"), default="pre_relu",
        help="vggish: the last layer before its ReLU (what FAD tools use), after it, or "
        "postprocessed (PCA, clip, 8-bit; needs --vggish-pca)",
    )  # fmt: skip
    p.add_argument("--vggish-pca", metavar="FILE", default=None, help="vggish: the PCA file")
    p.add_argument(
        "--bootstrap", metavar="N", type=int, default=100,
        help="resamples for the FAD-inf interval (0: no interval; each costs one FAD-inf)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and resamples")
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad arguments or input; see
    :mod:`dose_model.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")
    return run(PROG, _score, args)


def _model_options(args: argparse.Namespace) -> dict:
    if args.model.startswith("vggish="):
        return {
            "pad": args.pad,
            "int16": args.int16 or None,
            "output": args.vggish_output,
            "pca": args.vggish_pca,
        }
    if args.vggish_pca is not None or args.vggish_output != "pre_relu":
        from dose_model.fad.embedder import FadError

        raise FadError("--vggish-output and --vggish-pca apply to vggish only")
    return {"pad": args.pad, "int16": args.int16}


def _score(args: argparse.Namespace) -> int:
    from dose_model.fad.embedder import load_embedder
    from dose_model.fad.frechet import RankDeficiencyWarning
    from dose_model.fad.score import score

    embedder = load_embedder(args.model, **_model_options(args))
    with tqdm(desc=PROG, unit="file", disable=args.no_progress) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficiencyWarning)  # reported below, once
            report = score(
                args.ref,
                args.eval,
                embedder,
                cache_dir=args.cache,
                save_dir=args.save_embeddings,
                bootstrap=args.bootstrap,
                seed=args.seed,
                progress=progress,
            )
    print("\n".join(report.lines()))
    r = report.result
    if r.rank_deficient:
        print(
            f"{PROG}: warning: {min(r.n_ref, r.n_eval)} windows in a set for {r.dim} dimensions: "
            "the covariance is rank-deficient and FAD mostly bias; compare FAD-inf, or use "
            "more files",
            file=sys.stderr,
        )
    cached = f", {report.cache_hits} of them from the cache" if args.cache else ""
    print(
        f"{PROG}: {report.ref_files + report.eval_files} files embedded{cached} and scored in "
        f"{report.elapsed_s:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
