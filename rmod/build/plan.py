"""Step 1 of a build (see :mod:`rmod.build.run`): what it makes, checked before any work.

:func:`plan_build` loads the recipe and the library that :class:`BuildOptions` name,
derives the split sizes (valid/test are recipe fractions of the training size, at least
1 each) and the shard size, refuses sizes past the format's limits, a library that lacks
a drum class in a split to be built and a Groove MIDI folder without windows in one, and
returns the :class:`BuildPlan`: the ``build.json`` record and the shards. It writes nothing;
bad options (numbers, ``--backend``/``--scheduler``, ``--format``, ``--layout``, ``--tokens``
with ``--layout tar``,
``--shard-size``) are refused first.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import rmod
from rmod import SPLITS
from rmod.build.backends import check_backend
from rmod.build.fingerprint import engine_fingerprint
from rmod.build.manifest import (
    BUILD_JSON,
    LAYOUTS,
    BuildInfo,
    ManifestError,
    changed_inputs,
    read_build_info,
)
from rmod.build.preflight import check_library_covers, check_numbers, check_sizes
from rmod.build.shards import Shard, plan_shards
from rmod.build.sink import SinkSpec, TokenSink, build_facts, make_sink
from rmod.build.tar_layout import DEFAULT_TAR_SHARD_SIZE
from rmod.errors import InputError, RmodError
from rmod.example.groove import recipe_grooves, with_midi_dir
from rmod.library.catalog import Library
from rmod.limits import real_path
from rmod.recipe.spec import Recipe, load_recipe

log = logging.getLogger("rmod.build.run")  # a build's warnings, wherever they arise

MAX_DEFAULT_SHARD_SIZE = 100


@dataclass(frozen=True)
class BuildOptions:
    """Arguments of :func:`build` (the ``rmod-build`` options).

    ``n``: training examples. ``recipe``/``library``: paths, ``None`` for the paper
    recipe / built-in library. ``jobs``: parallel workers (``None``: all cores for
    loky and a ``LocalCluster``; every worker thread of a ``--scheduler`` cluster).
    ``audio_format``: ``wav``/``flac``, ``None`` for the recipe's. ``shard_size``:
    examples per shard, ``None`` for :func:`default_shard_size`. ``midi_dir``: MIDI
    files of a Groove recipe (recorded in the recipe as ``groove.midi_dir``). ``tokens``: a
    token sink fed instead of writing audio files (``--tokens``, :mod:`rmod.build.sink`).
    ``store_max``: the sample store's cap in bytes (0: no store; ``None``:
    :func:`rmod.example.store_folder.default_store_max`); not part of ``build.json``.
    ``layout``: ``folder`` (a folder of files per shard) or ``tar`` (one WebDataset tar per
    shard, :mod:`rmod.build.tar_layout`).
    """

    n: int
    out: str | os.PathLike
    recipe: str | os.PathLike | None = None
    library: str | os.PathLike | None = None
    seed: int = 0
    jobs: int | None = None
    backend: str = "loky"
    scheduler: str | None = None
    shard_size: int | None = None
    audio_format: str | None = None
    progress: bool = True
    midi_dir: str | os.PathLike | None = None
    tokens: SinkSpec | None = None
    store_max: int | None = None
    layout: str = "folder"


def split_counts(recipe: Recipe, n: int) -> dict[str, int]:
    """Examples per split: ``n`` training; valid/test are the recipe's fractions of ``n``,
    rounded half up, at least ``max(1, recipe.splits.min_per_split)`` each."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    floor = max(1, int(recipe.splits.min_per_split))
    spec = recipe.splits
    return {
        "train": n,
        "valid": max(floor, math.floor(n * float(spec.valid_fraction) + 0.5)),
        "test": max(floor, math.floor(n * float(spec.test_fraction) + 0.5)),
    }


def default_shard_size(n: int, layout: str = "folder") -> int:
    """Folders: ``n // 50`` clamped to 1..100: about 50 training shards for small builds
    (fine progress, balanced workers), 100-example shards from 5,000 examples up. Tars:
    :data:`rmod.build.tar_layout.DEFAULT_TAR_SHARD_SIZE` (at most one file per 500 examples,
    ~0.6 GB per tar at the paper's lengths). Depends on ``n`` and the layout only, so
    rerunning the same command finds the same shards."""
    if layout == "tar":
        return DEFAULT_TAR_SHARD_SIZE
    return max(1, min(MAX_DEFAULT_SHARD_SIZE, n // 50))


class BuildRefused(RmodError):
    """The output folder holds a different build (the message lists what differs), or
    another build is running on it."""


def make_build_info(
    recipe: Recipe,
    library: Library,
    library_path: str | None,
    seed: int,
    counts: dict[str, int],
    shard_size: int,
    audio_format: str,
    library_sources: dict[str, str] | None = None,
    stored: bool = True,
    layout: str = "folder",
) -> BuildInfo:
    """The ``build.json`` record of a build (nothing about how it is run): with the MIDI
    files of a Groove recipe (``recipe.groove.midi_files``) and, for the built-in library,
    the ``library_sources`` it was generated from; ``stored`` False for a ``--tokens``
    build."""
    groove = recipe.groove
    midi = None if groove is None or groove.midi_files is None else dict(groove.midi_files)
    return BuildInfo(
        recipe=recipe.to_dict(),
        recipe_fingerprint=recipe.fingerprint,
        library_path=library_path,
        library_fingerprint=library.fingerprint,
        seed=int(seed),
        counts=dict(counts),
        shard_size=int(shard_size),
        audio_format=audio_format,
        sample_rate=int(recipe.audio.sample_rate),
        channels=int(recipe.audio.channels),
        rmod_version=rmod.__version__,
        engine_fingerprint=engine_fingerprint(),
        midi_files=midi,
        library_sources=library_sources if library_path is None else None,
        stored=stored,
        layout=layout,
    )


def load_inputs(options: BuildOptions) -> tuple[Recipe, Library, str | None]:
    """The recipe (with ``--midi-dir`` and its files recorded in it), the library and the
    library's absolute path (``None`` for the built-in one)."""
    recipe = load_recipe(options.recipe)
    if (
        options.midi_dir is not None
    ):  # Groove variant: workers read the folder (rmod.example.groove)
        recipe = with_midi_dir(recipe, options.midi_dir)
        grooves = recipe_grooves(recipe)
        assert grooves is not None  # with_midi_dir has given the recipe a groove.midi_dir
        for path, reason in grooves.refused:
            log.warning("skipped %s: %s", path, reason)
    elif recipe.groove is not None and recipe.groove.midi_dir is None:
        raise InputError(
            f"recipe {recipe.name} takes its drum patterns from MIDI files: --midi-dir"
        )
    library_path = str(real_path(options.library, "--library")) if options.library else None
    return recipe, Library.load(library_path), library_path


def builtin_sources(out: Path) -> dict[str, str]:
    """What the built-in library is made from on this machine
    (:meth:`rmod.library.builtin.generate.Sources.record`). When ``out`` already holds a
    build of the built-in library made from other sources, :class:`BuildRefused` names the
    first that differs, before the library is generated for the new ones."""
    from rmod.library.builtin.generate import Sources

    found = Sources.detect().record()
    try:
        existing = read_build_info(out) if (out / BUILD_JSON).exists() else None
    except ManifestError:
        existing = None  # prepare_output reports it
    if existing is not None and existing.library_path is None:
        if existing.library_sources is not None and existing.library_sources != found:
            raise BuildRefused(
                f"{out} already holds a different build; refusing to mix them.\n  "
                + changed_inputs("library_sources", existing.library_sources, found)
                + "\nRestore the original sources (RMOD_SOUNDFONTS, espeak-ng) to resume, or "
                "choose another --out."
            )
    return found


def check_grooves(recipe: Recipe, counts: dict[str, int]) -> None:
    """A Groove build needs MIDI windows in every split it renders (ValueError if not)."""
    grooves = recipe_grooves(recipe)
    if grooves is None:
        return
    assert recipe.groove is not None  # recipe_grooves found a groove.midi_dir
    empty = [s for s in SPLITS if counts.get(s, 0) and not grooves.windows.get(s)]
    if empty:
        raise InputError(
            f"{recipe.groove.midi_dir}: no usable MIDI window in split(s) {', '.join(empty)} "
            f"({len(grooves.files)} usable files; files are split 80/10/10 by their sha256)"
        )


def check_token_dir(out: Path, tokens: str | os.PathLike) -> Path:
    """``--tokens`` as an absolute path (workers elsewhere get it); refused when it is the
    dataset folder or lies in one of its split or manifest folders (whose contents the
    build and ``rmod-verify`` own)."""
    tokdir = real_path(tokens, "--tokens")
    owned = [out / name for name in (*SPLITS, "manifests")]
    if tokdir == out or any(tokdir.is_relative_to(folder) for folder in owned):
        raise InputError(
            f"--tokens {tokens}: not the dataset folder or inside its split or manifest "
            f"folders ({out}); e.g. {out / 'tokens'} or a folder beside it"
        )
    return tokdir


@dataclass(frozen=True)
class BuildPlan:
    """What a build makes, checked before any work: the output folder, recipe, library
    (and its path, ``None`` for the built-in one), audio format, ``build.json`` record and
    shards; for a ``--tokens`` build its token sink (made, not yet opened) and the spec
    the workers get."""

    out: Path
    recipe: Recipe
    library: Library
    library_path: str | None
    audio_format: str
    info: BuildInfo
    shards: list[Shard]
    sink: TokenSink | None = None
    sink_spec: SinkSpec | None = None


def plan_build(options: BuildOptions) -> BuildPlan:
    """Load and check everything ``options`` name (step 1 of the module docstring); writes
    nothing. Raises ``ValueError`` for bad options, a library or MIDI folder that cannot
    serve the build."""
    check_numbers(options.n, options.seed, options.jobs)
    check_backend(options.backend, options.scheduler)
    if options.tokens is not None and options.layout != "folder":
        raise InputError(
            "--tokens writes no audio, so there is nothing to put in tars: drop --layout tar"
        )
    out = real_path(options.out, "--out")
    sources = builtin_sources(out) if not options.library else None
    recipe, library, library_path = load_inputs(options)
    fmt = (options.audio_format or recipe.audio.format).lower()
    if fmt not in ("wav", "flac"):
        raise InputError(f"unsupported --format {fmt!r} (use wav or flac)")
    if options.layout not in LAYOUTS:
        raise InputError(f"unknown --layout {options.layout!r} (use {' or '.join(LAYOUTS)})")
    counts = split_counts(recipe, options.n)
    check_grooves(recipe, counts)
    shard_size = options.shard_size
    if shard_size is None:
        shard_size = default_shard_size(options.n, options.layout)
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, got {shard_size}")
    check_sizes(counts, shard_size)
    check_library_covers(library, counts)
    info = make_build_info(
        recipe,
        library,
        library_path,
        options.seed,
        counts,
        shard_size,
        fmt,
        sources,
        stored=options.tokens is None,
        layout=options.layout,
    )
    shards = plan_shards(counts, shard_size, options.layout)
    spec = sink = None
    if options.tokens is not None:  # the sink checks its options here, before any work
        tokdir = check_token_dir(out, options.tokens.out)
        spec = replace(options.tokens, out=str(tokdir), build=build_facts(info, recipe))
        sink = make_sink(spec)
    return BuildPlan(out, recipe, library, library_path, fmt, info, shards, sink, spec)
