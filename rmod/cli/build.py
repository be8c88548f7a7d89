"""``rmod-build``: build (or resume) an RMOD dataset. The work is in :mod:`rmod.build.run`."""

from __future__ import annotations

import argparse
import sys

from rmod.build.run import BACKENDS, BuildOptions, BuildSummary, build
from rmod.build.sink import SinkSpec
from rmod.cli import run
from rmod.errors import InputError
from rmod.example.store_folder import parse_size
from rmod_dose_common.cli import add_common, new_parser, sigterm_as_interrupt

PROG = "rmod-build"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``rmod-build --help``)."""
    p = new_parser(
        PROG,
        "Build an RMOD dataset into DIR: audio in shards DIR/{split}/{shard:06d}/ (or one "
        "tar per shard with --layout tar), manifests DIR/manifests/{train,valid,test}.jsonl, "
        "DIR/build.json. "
        "Rerunning the same command resumes an interrupted build; a different "
        "recipe/library/seed/size on an existing DIR is refused.",
    )
    p.add_argument(
        "--n",
        type=int,
        required=True,
        help="number of training examples (required); valid/test sizes are the "
        "recipe's fractions of N, at least 1 each",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output dataset folder (created; required)"
    )
    p.add_argument(
        "--recipe",
        default=None,
        help="recipe: a YAML file or a shipped name such as rmod-drums-only; if not given: "
        "rmod-paper, the paper recipe",
    )
    p.add_argument(
        "--library",
        default=None,
        help="library manifest written by rmod-library; if not given: the built-in library, "
        "generated and cached on first use",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="base seed; example i of a split draws from (seed, split, i)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel workers; if not given: all cores (with --scheduler: every "
        "worker thread of the cluster)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="loky",
        help="joblib backend: loky = processes on this machine, dask = "
        "dask.distributed (a LocalCluster of --jobs processes, or --scheduler)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask scheduler, e.g. tcp://host:8786 "
        "(needs --backend dask; DIR and the library must be on a filesystem "
        "every worker sees); if not given with --backend dask: a LocalCluster here",
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="examples per shard, the unit of work, commit and resume; if not given: N/50 "
        "clamped to 1..100 for folders, 500 for tars (recorded in build.json, so a resume "
        "must use the same value)",
    )
    p.add_argument(
        "--layout",
        choices=("folder", "tar"),
        default="folder",
        help="folder = a folder of files per shard (DIR/{split}/{shard:06d}/, 5 files per "
        "example); tar = one WebDataset tar per shard, DIR/{split}/{split}-{shard:06d}.tar, "
        "with an index of member offsets (.tar.index.json) beside it, for datasets that are "
        "copied to the Hub or an object store; same bytes per file either way (not with "
        "--tokens, which writes no audio)",
    )
    p.add_argument(
        "--format",
        dest="audio_format",
        choices=("wav", "flac"),
        default=None,
        help="audio file format, 16-bit either way; if not given: the recipe's",
    )
    p.add_argument(
        "--midi-dir",
        default=None,
        metavar="DIR",
        help="folder of General MIDI drum files for a Groove recipe (rmod-groove): their 4 s "
        "windows are the drum patterns",
    )
    p.add_argument(
        "--tokens",
        default=None,
        metavar="TOKDIR",
        help="write no audio: encode each rendered example with the token sink (see "
        "--token-sink; dac: dose_model's DAC token cache, as dose-tokenize writes it, one "
        "token shard per build shard) into TOKDIR; DIR gets build.json and the manifests, "
        "whose rows say "
        '"stored": false (rmod-render-one --from renders any of them again). If not given: '
        "audio files, no tokens",
    )
    p.add_argument(
        "--codec-weights",
        default=None,
        metavar="W",
        help="with --tokens: the DAC weights file; if not given: the reference package's "
        "cache file ~/.cache/descript/dac/weights_44khz_8kbps_0.0.1.pth when it exists",
    )
    p.add_argument(
        "--token-device",
        default="cpu",
        help="with --tokens: torch device each worker encodes on (cpu, cuda, cuda:1)",
    )
    p.add_argument(
        "--token-sink",
        default="dac",
        metavar="NAME",
        help="with --tokens: the token sink, by its entry point name in rmod.token_sinks",
    )
    p.add_argument(
        "--token-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --tokens: a setting of the sink, repeatable (dac: batch_size=8, "
        "tf32=false for strict FP32 on CUDA, codes equal to CPU encoding)",
    )
    p.add_argument(
        "--store-max",
        type=_size,
        default=None,
        metavar="SIZE",
        help="cap of the sample store DIR/.rmod-store, the pitched loops and decoded sources "
        "the workers share during a run (least recently used out, recomputed when needed: "
        "the dataset's bytes do not depend on it), e.g. 20MB, 4GB, 512MiB; 0: no store; "
        "if not given: half of the free space of DIR's disk less what the run will still "
        "write (not recorded in build.json: a resume may use another value)",
    )
    add_common(p)
    return p


def _size(text: str) -> int:
    """argparse type of ``--store-max``."""
    try:
        return parse_size(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 when the dataset is complete, 1 when the build stopped with failed
    shards (finished ones are kept), 2 on bad input or a refused build (see :mod:`rmod.cli`)."""
    return run(PROG, _build, build_parser().parse_args(argv))


def _token_sink(args: argparse.Namespace) -> SinkSpec | None:
    """The token sink ``--tokens`` asks for (None without it)."""
    if args.tokens is None:
        if args.codec_weights is not None or args.token_option:
            raise InputError("--codec-weights and --token-option need --tokens TOKDIR")
        return None
    options = {"device": args.token_device}
    if args.codec_weights is not None:
        options["codec_weights"] = args.codec_weights
    for item in args.token_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--token-option {item!r}: expected KEY=VALUE")
        options[key] = value
    return SinkSpec(args.token_sink, args.tokens, options)


def _build(args: argparse.Namespace) -> int:
    options = BuildOptions(
        n=args.n,
        out=args.out,
        recipe=args.recipe,
        library=args.library,
        seed=args.seed,
        jobs=args.jobs,
        backend=args.backend,
        scheduler=args.scheduler,
        shard_size=args.shard_size,
        audio_format=args.audio_format,
        progress=not args.no_progress,
        midi_dir=args.midi_dir,
        tokens=_token_sink(args),
        store_max=args.store_max,
        layout=args.layout,
    )
    with sigterm_as_interrupt():
        summary = build(options)
    _report(summary, args.debug)
    print(summary.line())
    return 0 if summary.ok else 1


def _report(summary: BuildSummary, debug: bool = False) -> None:
    """What the build repaired or why it stopped, on stderr (with ``debug``, the traceback
    of an unexpected exception that stopped it)."""
    if summary.restored:
        print(
            f"{PROG}: rebuilt {len(summary.restored)} deleted manifest part(s) from the "
            "final manifests",
            file=sys.stderr,
        )
    if summary.cleaned:
        print(f"{PROG}: removed {len(summary.cleaned)} leftover(s) of an interrupted run",
              file=sys.stderr)  # fmt: skip
        for damaged in (c for c in summary.cleaned if c.endswith("; redone)")):
            print(f"{PROG}: damaged shard {damaged}", file=sys.stderr)
    if summary.error:
        if debug and summary.error_traceback:
            print(summary.error_traceback, end="", file=sys.stderr)
        print(f"{PROG}: error: {summary.error}", file=sys.stderr)
        if "rerun the same command" not in summary.error:
            print(f"{PROG}: finished shards are kept; rerun the same command to resume",
                  file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
