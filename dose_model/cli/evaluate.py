"""`dose-eval`: Table I from one command (MSS and FAD per drum, every system, every dataset).

Only parses arguments, loads the codec, the models, LarsNet and the embedding models, and
calls `dose_model.evaluate.table.evaluate_table`. Modules that load torch are imported where
used, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from dose_model import DRUMS
from dose_model.cli import run
from dose_model.cli.extract import add_model_arguments, check_model_arguments
from rmod_dose_common.cli import counted, float_in, new_parser

if TYPE_CHECKING:  # loads torch; the work imports it where used
    from dose_model.evaluate.split import Systems

PROG = "dose-eval"
DEFAULT_LABEL = "DOSE"
DEFAULT_ABLATION_LABEL = "DOSE (w/o onset loss)"

EPILOG = """\
rows of the table (lower is better in every column):
  Reconstruction  ground truth through the codec (the codec's ceiling)
  LarsNet         with --larsnet: LarsNet's stem of the drum, the most isolated hit picked
  DSP baseline    HPSS + band-pass instead of LarsNet, the same picker (needs no weights)
  DOSE            the models given with --kick/--snare/--hihat (name: --label)
  DOSE (w/o ...)  with --ablation-kick/...: a second set of models (name: --ablation-label)
columns: MSS (mean multi-scale spectral distance), FAD_vgg / FAD_clap (with --fad: Frechet
distance between the embeddings of a system's one-shots and of the ground truths) x drum.
files written under OUT:
  table.md, table.csv   the table (with --paper the published values beside ours)
  summary.json          settings, hashes, rows, every cell with n, FAD-inf and its interval
  <dataset>/rows.csv    id, drum, system, mss (+ frames, ended, score for model sets)
  table.png             the table as bars
  report/index.html     the table and --examples rows per dataset to listen to
datasets named like the paper's (rmod, "drums only", groove) get its values with --paper.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dose-eval` (every option with its default)."""
    p = new_parser(
        PROG,
        "Score DOSE models (one per drum) on RMOD test splits as in the paper's Table I: MSS "
        "and FAD (VGGish, CLAP) per drum, beside the codec's reconstruction, LarsNet and a "
        "DSP baseline, for several datasets at once.",
        EPILOG,
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a dataset to score and its name in the table (repeat for several), e.g. "
        'rmod=shards/ "drums only"=drums/ groove=groove/; DIR is an RMOD folder or a manifest',
    )
    p.add_argument("--manifest", default=None, help="one dataset, named rmod (= --data rmod=DIR)")
    p.add_argument(
        "--split",
        default=None,
        choices=("train", "valid", "test"),
        help="split to score; if not given: test for a folder, the manifest's own split for a file",
    )
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--max-rows", type=int, default=None, help="first N rows of each dataset only")
    add_model_arguments(p)
    p.add_argument("--label", default=DEFAULT_LABEL, help="table name of the models")
    for drum in DRUMS:
        p.add_argument(
            f"--ablation-{drum}", default=None, metavar="CKPT", help=f"second set: {drum} model"
        )
    p.add_argument("--ablation-label", default=DEFAULT_ABLATION_LABEL, help="its table name")
    p.add_argument(
        "--fad",
        action="append",
        default=[],
        metavar="MODEL=WEIGHTS",
        help="embedding model for FAD: vggish=vggish-10086976.pth or "
        "clap=630k-audioset-best.pt (repeat for both); local files only",
    )
    p.add_argument(
        "--clap-pad",
        default="repeat",
        choices=("repeat", "zero"),
        help="CLAP: a one-shot under 10 s is tiled (LAION's rule) or zero-padded (fadtk's)",
    )
    p.add_argument("--clap-int16", action="store_true", help="CLAP: int16 round trip first")
    p.add_argument(
        "--embedding-cache",
        default=None,
        metavar="DIR",
        help="cached embeddings (by clip content and model); if not given: OUT/../.dose-embeddings",
    )
    p.add_argument("--bootstrap", type=int, default=100, help="FAD interval resamples (0: none)")
    p.add_argument("--larsnet", default=None, metavar="DIR", help="LarsNet checkpoint folder")
    p.add_argument(
        "--wiener",
        type=float_in(0.0, above=True),
        default=None,
        metavar="ALPHA",
        help="LarsNet's alpha-Wiener masks (needs all five stems); if not given: plain masks",
    )
    p.add_argument("--paper", action="store_true", help="the paper's values beside ours")
    p.add_argument("--examples", type=int, default=3, help="rows per dataset in the report")
    return p


def parse_data(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple:
    """((name, DIR), ...) from --data and --manifest; exits with status 2 on a bad one."""
    pairs = []
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            parser.error(f"--data {item!r}: expected NAME=DIR")
        pairs.append((name.strip(), path))
    if args.manifest:
        pairs.append(("rmod", args.manifest))
    if not pairs:
        parser.error("give a dataset: --data NAME=DIR (or --manifest DIR)")
    return tuple(pairs)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 rows skipped, 2 bad arguments or input;
    see :mod:`dose_model.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.datasets = parse_data(parser, args)
    if args.max_rows is not None and args.max_rows < 1:
        parser.error("--max-rows must be >= 1")
    if args.bootstrap < 0 or args.examples < 0:
        parser.error("--bootstrap and --examples must be >= 0")
    check_model_arguments(parser, args)
    return run(PROG, _evaluate, args)


def _systems(args: argparse.Namespace) -> tuple[Systems, dict[str, Any]]:
    """The `Systems` to score and the settings to record (checkpoints and their hashes)."""
    from dose_model.evaluate.split import Systems
    from dose_model.extract.extractor import (
        ExtractOptions,
        Extractor,
        check_model_fits,
        load_extractor,
    )
    from dose_model.model.checkpoints import load_any_model
    from rmod_dose_common.fileio import sha256_file

    options = ExtractOptions.from_args(args)
    extractor = load_extractor(options)
    sampling, checkpoints = options.sampling, dict(options.checkpoints)
    models = {args.label: extractor}
    recorded = {
        args.label: {d: {"path": p, "sha256": sha256_file(p)} for d, p in checkpoints.items()}
    }
    ablation = {d: getattr(args, f"ablation_{d}") for d in DRUMS if getattr(args, f"ablation_{d}")}
    if ablation:
        if args.ablation_label == args.label:
            raise ValueError("--ablation-label must differ from --label")
        second = {}
        for drum, path in ablation.items():
            second[drum] = load_any_model(path, args.heads, extractor.codec.device)
            check_model_fits(second[drum], extractor.codec, str(path))
        models[args.ablation_label] = Extractor(
            extractor.codec, second, extractor.precision, extractor.batch_size, extractor.concurrent
        )
        recorded[args.ablation_label] = {
            d: {"path": p, "sha256": sha256_file(p)} for d, p in ablation.items()
        }
    larsnet = None
    if args.larsnet:
        from dose_model.separate.larsnet import STEMS, load_larsnet

        larsnet = load_larsnet(
            args.larsnet,
            stems=STEMS if args.wiener is not None else ("kick", "snare", "hihat"),
            device=extractor.codec.device,
        )
    systems = Systems(extractor.codec, models, larsnet, args.wiener, sampling)
    settings = {"models": recorded, "larsnet": args.larsnet}
    return systems, settings


def _evaluate(args: argparse.Namespace) -> int:
    from dose_model.evaluate.table import TableOptions, evaluate_table

    systems, settings = _systems(args)
    out = Path(args.out)
    cache = Path(args.embedding_cache) if args.embedding_cache else out.parent / ".dose-embeddings"
    labels = {args.label: "DOSE", args.ablation_label: "DOSE (w/o onset loss)"}
    options = TableOptions(
        datasets=args.datasets,
        out=out,
        split=args.split,
        max_rows=args.max_rows,
        fad=tuple(args.fad),
        clap_pad=args.clap_pad,
        clap_int16=args.clap_int16,
        embedding_cache=cache,
        bootstrap=args.bootstrap,
        seed=args.seed,
        paper=args.paper,
        examples=args.examples,
        labels=labels,
    )
    bars: dict[str, tqdm] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(desc=f"{PROG} {name}", unit="row", disable=args.no_progress)
        bar.total = total
        bar.update(done - bar.n)

    table, summary = evaluate_table(options, systems, settings, progress)
    for bar in bars.values():
        bar.close()
    from dose_model.evaluate.tables import write_table_markdown

    print(write_table_markdown(table, fad_details=False))
    skipped = [(d["name"], s) for d in summary["datasets"] for s in d["skipped"]]
    for name, item in skipped:
        print(f"{PROG}: {name}: skipped row {item['id']}: {item['path']}: {item['reason']}",
              file=sys.stderr)  # fmt: skip
    rows, sets = sum(d["rows"] for d in summary["datasets"]), len(summary["datasets"])
    print(
        f"{PROG}: {counted(rows, 'row')} of {counted(sets, 'dataset')} scored in "
        f"{summary['elapsed_s']:.1f} s, {counted(len(skipped), 'row')} skipped; results in {out}"
    )
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
