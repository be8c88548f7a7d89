"""`dose-train`: train a DOSE model for one drum class on an RMOD dataset.

Only parses arguments and calls `dose_model.train.pipeline.train_from_manifest`. Modules
that load torch are imported where used, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from dose_model import DRUMS
from dose_model.cli import run
from rmod_dose_common.cli import add_common, new_parser, sigterm_as_interrupt

PROG = "dose-train"

EPILOG = """\
files written under RUN:
  metrics.csv  step, lr, train_loss, full_loss, onset_loss, token_accuracy, valid_loss,
               valid_full_loss, valid_onset_loss, valid_accuracy, examples_per_s
  last.ckpt    weights + configs + optimizer + step + RNG state (for --resume)
  best.ckpt    the same at the lowest validation loss
SIGTERM or Ctrl-C: last.ckpt is written at the end of the current step, then dose-train exits
  (143 / 130) with a --resume hint
data-parallel: torchrun --nproc_per_node N $(which dose-train) ... (tokenize first;
  --batch-size is the global batch, split over the N processes)
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-train` (every option with its default)."""
    p = new_parser(
        PROG,
        "Train a DOSE transformer (one drum class) on an RMOD dataset's DAC tokens.",
        EPILOG,
    )
    p.add_argument(
        "--manifest",
        required=True,
        help="RMOD dataset folder DIR, or one of its DIR/manifests/*.jsonl (whole DIR is used)",
    )
    p.add_argument("--drum", required=True, choices=DRUMS, help="drum class to extract")
    p.add_argument("--out", required=True, help="run folder for metrics.csv, last.ckpt, best.ckpt")
    p.add_argument(
        "--codec-weights",
        default=None,
        help="DAC 44 kHz weights file (.pth, local path); needed when the token cache must be "
        "made or completed; if not given (and no --tokens): the reference package's cache "
        "file ~/.cache/descript/dac/weights_44khz_8kbps_0.0.1.pth when it exists (never "
        "downloaded)",
    )
    p.add_argument(
        "--tokens",
        default=None,
        help="token cache folder; if not given: DIR/tokens-<sha256[:12] of --codec-weights>, "
        "created with dose-tokenize's code if missing or incomplete",
    )
    p.add_argument(
        "--config",
        default=None,
        help="YAML with 'model' and 'train' sections, e.g. recipes/dose-tiny.yaml; "
        "if not given: built-in defaults = published sizes, our model mode",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="override train.max_steps (if not given: the config's)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="override train.batch_size, the global batch (if not given: the config's)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="override train.seed (if not given: the config's)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (cuda if available, else cpu), cpu, cuda, cuda:N",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="auto = bf16 autocast on cuda, fp32 on cpu",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from RUN/last.ckpt with its stored configs (only --max-steps may "
        "change; a --config, --batch-size, --seed, --drum or dataset that differs from the "
        "checkpoint's is refused, naming the difference); without it, a RUN that already "
        "holds last.ckpt is refused",
    )
    compiling = p.add_mutually_exclusive_group()
    compiling.add_argument(
        "--compile",
        dest="compile",
        action="store_const",
        const=True,
        default=None,
        help="torch.compile the training forward and loss; if neither this nor --no-compile: "
        "on for CUDA, off on CPU",
    )
    compiling.add_argument(
        "--no-compile",
        dest="compile",
        action="store_const",
        const=False,
        help="run eagerly, also on CUDA",
    )
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad arguments or a training error,
    130 interrupted by Ctrl-C, 143 by SIGTERM; both after writing last.ckpt when training;
    see :mod:`dose_model.cli`)."""
    args = build_parser().parse_args(argv)
    hint = (
        f"rerun with --resume to continue from {args.out}/last.ckpt (the last checkpoint "
        "written), or rerun the same command to finish tokenizing"
    )
    return run(PROG, _train, args, hint=hint)


def _train(args: argparse.Namespace) -> int:
    from dose_model.train.distributed import dist_env
    from dose_model.train.options import TrainOptions
    from dose_model.train.pipeline import train_from_manifest

    options = TrainOptions.from_args(args)
    with sigterm_as_interrupt():  # while tokenizing; training saves, then stops, on its own
        result = train_from_manifest(options)
    if not dist_env().main:
        return 0  # under torchrun, rank 0 reports
    if result.interrupted:
        print(
            f"{PROG}: stopped by {result.interrupted} at step {result.step}; rerun with "
            f"--resume to continue from {args.out}/last.ckpt (the last checkpoint written)",
            file=sys.stderr,
        )
        return 143 if result.interrupted == "SIGTERM" else 130
    best = (
        f"best valid loss {result.best_valid:.4f} at step {result.best_step}"
        if result.best_step >= 0
        else "no validation"
    )
    stop = ", stopped early" if result.stopped_early else ""
    print(
        f"{PROG}: {args.drum} {result.step} steps{stop}, last train loss "
        f"{result.last_train_loss:.4f}, {best}, {result.examples_per_s:.1f} examples/s "
        f"-> {result.out}/best.ckpt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
