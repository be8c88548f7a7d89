"""``rmod-render-one``: draw, render and inspect one RMOD example."""

from __future__ import annotations

import argparse
import sys
import time

from rmod import SPLITS
from rmod.cli import quiet_broken_pipe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rmod-render-one",
        description=(
            "Render one RMOD example into a folder: mixture, the three target one-shots "
            "(kick/snare/hihat), stems/ (each track after its chain, and the dry drum tracks), "
            "pattern.mid, example.json (every drawn parameter, the recipe and the library, "
            "self-contained) and overview.png. With --from, re-render a recorded example: "
            "the audio files come out byte-identical."
        ),
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed of the example's generator (default: 0)"
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="split to draw the sources from (default: train)",
    )
    p.add_argument(
        "--index", type=int, default=0, help="example index within the split (default: 0)"
    )
    p.add_argument(
        "--recipe",
        default=None,
        help="recipe YAML path or shipped name, e.g. rmod-drums-only (default: rmod-paper; "
        "with --from: the recipe recorded in the file)",
    )
    p.add_argument(
        "--library",
        default=None,
        help="library manifest (default: the built-in library; with --from: the library "
        "recorded in the file)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder, created if needed: new, empty, or one holding an earlier render, "
        "whose recorded files (example.json) are replaced or removed; other files are never "
        "touched (required)",
    )
    p.add_argument(
        "--from",
        dest="from_file",
        default=None,
        metavar="FILE",
        help="re-render from example.json, a one-row JSON file or a manifest .jsonl[.gz] "
        "(with --id; audio in the dataset's format, so files compare byte for byte); "
        "--seed/--split/--index are then ignored (default: off)",
    )
    p.add_argument(
        "--id",
        default=None,
        help="id of the manifest row to re-render, e.g. train-00000042 (default: none)",
    )
    p.add_argument(
        "--midi-dir",
        default=None,
        metavar="DIR",
        help="folder of General MIDI drum files whose 4 s windows are the drum patterns "
        "(required by, and only for, a Groove recipe such as rmod-groove; default: none)",
    )
    p.add_argument(
        "--no-overview",
        action="store_true",
        help="do not draw overview.png (faster; default: draw it)",
    )
    return p


def _grooves(midi_dir, recipe):
    """The Groove windows of ``midi_dir`` (refused files listed on stderr), or None."""
    from rmod.example import ExampleError
    from rmod.groove import for_recipe

    if midi_dir is None:
        return None
    if recipe.groove is None:
        raise ExampleError(
            f"--midi-dir needs a Groove recipe (e.g. rmod-groove), not {recipe.name}"
        )
    grooves = for_recipe(midi_dir, recipe)
    for path, reason in grooves.refused:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return grooves


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 1 error, 2 usage)."""
    args = _parser().parse_args(argv)
    from pathlib import Path

    from rmod.audio import AudioFileError
    from rmod.example import ExampleError, draw_example, render_example
    from rmod.library import Library, LibraryError
    from rmod.overview import contribution_db, onset_snr_db, plot_overview
    from rmod.recipe import RecipeError, load_recipe
    from rmod.render_folder import (
        check_overwrites,
        claim_folder,
        load_example_source,
        planned_files,
        save_example,
    )

    t0 = time.perf_counter()
    try:
        if args.from_file:
            src = load_example_source(args.from_file, _example_id(args.id))
            recipe = load_recipe(args.recipe) if args.recipe or src.recipe is None else src.recipe
            lib_path = args.library if args.library else src.library_path
            library = Library.load(lib_path)
            params = src.params
            fmt = src.audio_format
            _check_params(args, params, recipe, library)
        else:
            recipe = load_recipe(args.recipe)
            grooves = _grooves(args.midi_dir, recipe)
            lib_path = args.library
            library = Library.load(lib_path)
            params = draw_example(recipe, library, args.seed, args.split, args.index, grooves)
            fmt = None
        lib_path = str(Path(lib_path).resolve()) if lib_path else None
        out = Path(args.out)
        previous = claim_folder(out)  # before the work: a folder that is not ours is refused
        t1 = time.perf_counter()
        rendered = render_example(params, recipe, library)
        t_render = time.perf_counter() - t1
        fmt = fmt or recipe.audio.format
        check_overwrites(out, previous, planned_files(rendered, fmt))
        files = save_example(
            out, params, recipe, rendered, lib_path, library.fingerprint, fmt, previous
        )
        if not args.no_overview:
            plot_overview(out / "overview.png", params, rendered)
        elif (out / "overview.png").is_file():  # it would show another example
            (out / "overview.png").unlink()
    except (RecipeError, ExampleError, LibraryError, AudioFileError, KeyError, OSError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"rmod-render-one: error: {text}", file=sys.stderr)
        return 1
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
    n_files = len(files) + 1 + (0 if args.no_overview else 1)
    print(
        f"wrote {n_files} files to {out} in {time.perf_counter() - t0:.2f} s "
        f"(render {t_render:.2f} s)"
    )
    return 0


def _example_id(value: str | None) -> str | None:
    """``--id`` when it is an example id; :class:`rmod.example.ExampleError` otherwise."""
    from rmod.example import ExampleError
    from rmod.manifest import check_example_id

    if value is None:
        return None
    try:
        return check_example_id(value)
    except ValueError as exc:
        raise ExampleError(f"--id: {exc}") from None


def _check_params(args: argparse.Namespace, params, recipe, library) -> None:
    """Refuse drawn parameters (read with ``--from``) that the recipe and the library could
    not have produced, naming each field (:class:`rmod.example.ExampleError`)."""
    from rmod.example import ExampleError
    from rmod.render_folder import params_problems
    from rmod.stats import params_outside_recipe

    wrong = params_problems(params, recipe, library)
    wrong += params_outside_recipe(params.to_dict(), recipe.to_dict())
    if args.id is not None and params.id != args.id:
        wrong.insert(0, f"id: the row's parameters are of {params.id}, not {args.id}")
    if wrong:
        raise ExampleError(
            f"{args.from_file}: {params.id}: parameters the recipe or library cannot give:\n  "
            + "\n  ".join(wrong)
        )


if __name__ == "__main__":
    sys.exit(main())
