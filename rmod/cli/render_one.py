"""``rmod-render-one``: draw, render and inspect one RMOD example.

Modules that load pedalboard and scipy (drawing, rendering, the example folder) are imported
inside the functions that use them, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rmod import SPLITS
from rmod.build.manifest import MAX_PER_SPLIT, check_example_id
from rmod.cli import run
from rmod.errors import InputError
from rmod.example.groove import for_recipe
from rmod.inspect.overview import contribution_db, onset_snr_db, plot_overview
from rmod.library.catalog import Library
from rmod.limits import real_path
from rmod.recipe.spec import load_recipe
from rmod_dose_common.cli import add_common, new_parser

if TYPE_CHECKING:  # annotations only: drawing and rendering are imported where used
    from rmod.example.draw import ExampleParams
    from rmod.example.groove import GrooveSet
    from rmod.example.render import Rendered
    from rmod.recipe.spec import Recipe

PROG = "rmod-render-one"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (see ``rmod-render-one --help``)."""
    p = new_parser(
        PROG,
        "Render one RMOD example into a folder: mixture, the three target one-shots "
        "(kick/snare/hihat), stems/ (each track after its chain, and the dry drum tracks), "
        "pattern.mid, example.json (every drawn parameter, the recipe and the library, "
        "self-contained) and overview.png. With --from, re-render a recorded example: "
        "the audio files come out byte-identical.",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed of the example's generator")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="split to draw the sources from",
    )
    p.add_argument("--index", type=int, default=0, help="example index within the split")
    p.add_argument(
        "--recipe",
        default=None,
        help="recipe YAML path or shipped name, e.g. rmod-drums-only; if not given: rmod-paper "
        "(with --from: the recipe recorded in the file)",
    )
    p.add_argument(
        "--library",
        default=None,
        help="library manifest; if not given: the built-in library (with --from: the library "
        "recorded in the file)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder, created if needed: new, empty, or one holding an earlier render, "
        "whose recorded files (example.json) are replaced or removed; other files are never "
        "touched",
    )
    p.add_argument(
        "--from",
        dest="from_file",
        default=None,
        metavar="FILE",
        help="re-render from example.json, a one-row JSON file, a manifest .jsonl[.gz] or a "
        "tar shard of a --layout tar build (the last two with --id; audio in the dataset's "
        "format, so files compare byte for byte); --seed/--split/--index are then ignored",
    )
    p.add_argument(
        "--id",
        default=None,
        help="id of the manifest row to re-render, e.g. train-00000042",
    )
    p.add_argument(
        "--midi-dir",
        default=None,
        metavar="DIR",
        help="folder of General MIDI drum files whose 4 s windows are the drum patterns "
        "(required by, and only for, a Groove recipe such as rmod-groove)",
    )
    p.add_argument(
        "--no-overview",
        action="store_true",
        help="do not draw overview.png (faster)",
    )
    add_common(p, progress=False)
    return p


def _grooves(midi_dir: str | None, recipe: Recipe) -> GrooveSet | None:
    """The Groove windows of ``midi_dir`` (refused files listed on stderr), or None."""
    if midi_dir is None:
        return None
    if recipe.groove is None:
        raise InputError(f"--midi-dir needs a Groove recipe (e.g. rmod-groove), not {recipe.name}")
    grooves = for_recipe(midi_dir, recipe)
    for path, reason in grooves.refused:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return grooves


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status (see :mod:`rmod.cli`: 0 ok, 2 bad input)."""
    return run(PROG, _render_one, build_parser().parse_args(argv))


def _render_one(args: argparse.Namespace) -> int:
    from rmod.example.render import render_example
    from rmod.inspect.example_folder import (
        check_overwrites,
        claim_folder,
        planned_files,
        save_example,
    )

    t0 = time.perf_counter()
    if not args.from_file:
        _check_draw_options(args.seed, args.index)
    params, recipe, library, lib_path, fmt = _inputs(args)
    out = Path(args.out)
    previous = claim_folder(out)  # before the work: a folder that is not ours is refused
    t1 = time.perf_counter()
    rendered = render_example(params, recipe, library)
    t_render = time.perf_counter() - t1
    fmt = fmt or recipe.audio.format
    check_overwrites(out, previous, planned_files(rendered, fmt))
    lib_path = str(real_path(lib_path, "--library")) if lib_path else None
    files = save_example(
        out, params, recipe, rendered, lib_path, library.fingerprint, fmt, previous
    )
    if not args.no_overview:
        plot_overview(out / "overview.png", params, rendered)
    elif (out / "overview.png").is_file():  # it would show another example
        (out / "overview.png").unlink()
    _summary(params, recipe, rendered)
    n_files = len(files) + 1 + (0 if args.no_overview else 1)
    print(
        f"wrote {n_files} files to {out} in {time.perf_counter() - t0:.2f} s "
        f"(render {t_render:.2f} s)"
    )
    return 0


def _inputs(
    args: argparse.Namespace,
) -> tuple[ExampleParams, Recipe, Library, str | None, str | None]:
    """(params, recipe, library, library path or None, audio format or None) to render:
    read with ``--from`` (and checked), else drawn."""
    from rmod.example.draw import draw_example
    from rmod.inspect.example_folder import load_example_source

    if args.from_file:
        src = load_example_source(args.from_file, _example_id(args.id))
        recipe = load_recipe(args.recipe) if args.recipe or src.recipe is None else src.recipe
        lib_path = args.library if args.library else src.library_path
        library = Library.load(lib_path)
        _check_params(args, src.params, recipe, library)
        return src.params, recipe, library, lib_path, src.audio_format
    recipe = load_recipe(args.recipe)
    grooves = _grooves(args.midi_dir, recipe)
    library = Library.load(args.library)
    params = draw_example(recipe, library, args.seed, args.split, args.index, grooves)
    return params, recipe, library, args.library, None


def _summary(params: ExampleParams, recipe: Recipe, rendered: Rendered) -> None:
    """Print what was drawn and how loud each part came out."""
    levels = contribution_db(rendered.stems)
    hits = ", ".join(f"{c} {len(d.grid)}" for c, d in params.drums.items())
    inst = ", ".join(
        (f"{n} {p.semitones:+d} st" if p.plays else f"{n} {'dropped' if p.dropped else 'absent'}")
        for n, p in params.instruments.items()
    )
    print(f"{params.id} seed {params.seed} ({recipe.name}): hits {hits}")
    if inst:
        print(f"instruments: {inst}")
    print("level in mix (dB): " + ", ".join(f"{k} {v:.1f}" for k, v in levels.items()))
    snr = onset_snr_db(rendered.stems, rendered.onsets, rendered.sample_rate)
    print("drum vs rest at onsets (dB): " + ", ".join(f"{k} {v:.1f}" for k, v in snr.items()))


def _check_draw_options(seed: int, index: int) -> None:
    """Refuse (:class:`rmod.errors.InputError`) a ``--seed`` or ``--index`` that
    ``rmod-build`` would not draw with: ids have 8 digits, seeds are non-negative."""
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    if not 0 <= index < MAX_PER_SPLIT:
        raise InputError(
            f"--index must be in 0..{MAX_PER_SPLIT - 1}, got {index} (example ids have 8 digits)"
        )


def _example_id(value: str | None) -> str | None:
    """``--id`` when it is an example id; :class:`rmod.errors.InputError` otherwise."""
    if value is None:
        return None
    try:
        return check_example_id(value)
    except ValueError as exc:
        raise InputError(f"--id: {exc}") from None


def _check_params(
    args: argparse.Namespace, params: ExampleParams, recipe: Recipe, library: Library
) -> None:
    """Refuse drawn parameters (read with ``--from``) that the recipe and the library could
    not have produced, naming each field (:class:`rmod.example.draw.ExampleError`)."""
    from rmod.example.draw import ExampleError
    from rmod.inspect.example_folder import params_problems

    wrong = params_problems(params, recipe, library)
    if args.id is not None and params.id != args.id:
        wrong.insert(0, f"id: the row's parameters are of {params.id}, not {args.id}")
    if wrong:
        raise ExampleError(
            f"{args.from_file}: {params.id}: parameters the recipe or library cannot give:\n  "
            + "\n  ".join(wrong)
        )


if __name__ == "__main__":
    sys.exit(main())
