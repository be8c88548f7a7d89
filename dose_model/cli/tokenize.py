"""``dose-tokenize``: encode an RMOD dataset into a token cache. The work is in
:mod:`dose_model.cache.tokenize`.

:mod:`dose_model.cache.tokenize` loads torch: imported where used, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from dose_model.cache.index import verify_cache
from dose_model.cli import run
from rmod_dose_common.cli import add_common, counted, new_parser

PROG = "dose-tokenize"
RESUME = "finished shards are kept, rerun the same command to resume"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``dose-tokenize --help``)."""
    p = new_parser(
        PROG,
        "Encode each row's mixture (mono mean, cropped/padded to --mixture-seconds) and "
        "its kick, snare and hi-hat one-shots (mono mean, cropped/padded to "
        "--oneshot-seconds) with DAC into int16 code shards TOKDIR/{split}/{shard:06d}/ "
        "plus TOKDIR/index.json. Rerunning the same command resumes an interrupted run "
        "(finished shards are kept). Rows with missing or undecodable audio are skipped, "
        "reported by id and path, and listed in the index.",
    )
    p.add_argument(
        "--verify",
        default=None,
        metavar="TOKDIR",
        help="only check an existing token cache: every shard file's SHA-256 against "
        "index.json and every code's range; exit 0 when all match, 2 naming the first bad "
        "file (no --manifest or --out needed)",
    )
    p.add_argument(
        "--manifest",
        metavar="M",
        help="an RMOD manifest (.jsonl / .jsonl.gz; its split is its file name) or an RMOD "
        "dataset DIR (all of DIR/manifests/{train,valid,test}.jsonl)",
    )
    p.add_argument(
        "--codec-weights",
        default=None,
        metavar="W",
        help="DAC weights file in the released format, e.g. weights_44khz_8kbps_0.0.1.pth; "
        "if not given: the reference package's cache file "
        "~/.cache/descript/dac/weights_44khz_8kbps_0.0.1.pth when it exists (never downloaded)",
    )
    p.add_argument("--out", metavar="TOKDIR", help="token cache folder (needed unless --verify)")
    p.add_argument("--device", default="cpu", help="torch device to encode on: cpu, cuda, cuda:1")
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="rows encoded together (mixtures, then 3x one-shots)",
    )
    p.add_argument(
        "--shard-size", type=int, default=1024, help="rows per shard (the unit of resume)"
    )
    p.add_argument(
        "--mixture-seconds",
        type=float,
        default=None,
        help="mixture length encoded, s (at most 60); if not given: the first row's mixture "
        "length (its frames / sample_rate), else 4.0 = 345 frames",
    )
    p.add_argument(
        "--oneshot-seconds",
        type=float,
        default=None,
        help="one-shot length encoded, s (at most 60); if not given: the first row's longest "
        "one-shot (frames / sample_rate), else 2.0 = 173 frames",
    )
    p.add_argument(
        "--no-tf32",
        action="store_true",
        help="strict FP32 on CUDA: no TF32 convolutions, so codes equal CPU encoding "
        "(slower; without it: PyTorch's setting, TF32 convolutions on)",
    )
    p.add_argument("--workers", type=int, default=4, help="threads that read audio ahead")
    p.add_argument(
        "--rank",
        type=int,
        default=None,
        help="with --world-size: encode only this rank's shards (shard ordinal g, counted "
        "over the splits in order, when g %% world size == rank) and write no index; run "
        "--merge once when every rank is done. If not given: RANK/WORLD_SIZE under torchrun "
        "(the ranks then wait for each other and rank 0 merges), else one process",
    )
    p.add_argument(
        "--world-size",
        type=int,
        default=None,
        help="number of ranks sharing the work (with --rank); all of them use the same "
        "--manifest, --out and settings",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="encode nothing: check that every shard is there and write TOKDIR/index.json "
        "(after the ranks; same --manifest, --codec-weights, --out and settings as they "
        "had); names the missing shards if any",
    )
    p.add_argument(
        "--max-skipped",
        type=int,
        default=0,
        help="exit with status 1 when more rows than this were skipped (the cache is "
        "written either way)",
    )
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success, 1 when too many rows were skipped, 2 on an error, 130 when
    interrupted (see :mod:`dose_model.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verify is None and (args.manifest is None or args.out is None):
        parser.error("the following arguments are required: --manifest, --out (or --verify TOKDIR)")
    if args.verify is not None:
        return run(PROG, _verify, args)
    return run(PROG, _tokenize, args, hint=RESUME, hint_on_oserror=True)


def _verify(args: argparse.Namespace) -> int:
    checked = verify_cache(args.verify, progress=not args.no_progress)
    print(f"{PROG}: {args.verify}: {checked} files match their checksums, codes in range")
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    import dataclasses

    from dose_model.cache.options import TokenizeOptions
    from dose_model.cache.ranks import merge_after_barrier
    from dose_model.cache.tokenize import tokenize_manifest

    options = TokenizeOptions.from_args(args)
    if options.torchrun:  # the ranks wait for each other, then rank 0 merges
        merge = dataclasses.replace(
            options, rank=0, world_size=1, merge=True, device="cpu", torchrun=False
        )
        summary = merge_after_barrier(
            options.part, lambda: tokenize_manifest(options), lambda: tokenize_manifest(merge)
        )
    else:
        summary = tokenize_manifest(options)
    part = options.part
    alone = part.world_size == 1 or (options.torchrun and part.rank == 0)
    print(summary if alone else f"rank {part.rank} of {part.world_size}: {summary}")
    if summary.rows_skipped > args.max_skipped:
        print(
            f"{PROG}: {counted(summary.rows_skipped, 'row')} skipped (more than --max-skipped "
            f"{args.max_skipped}); see 'skipped' in {args.out}/index.json",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
