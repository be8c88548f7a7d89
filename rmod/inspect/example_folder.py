"""One rendered example as a folder (``rmod-render-one``): what it writes, what it reads back,
and what it trusts.

The folder format: ``mixture``, ``kick``/``snare``/``hihat``, ``stems/*``, ``pattern.mid``
and ``example.json`` (:func:`save_example`, :func:`write_rendered`,
:func:`example_document`); drawn parameters are read back from ``example.json`` or a
dataset manifest row (:func:`load_example_source`).

Parameters read with ``--from`` (a hand-edited ``example.json`` or a manifest row) are
checked against the recipe and the library before anything renders
(:func:`params_problems`): the record's seed and id, the tracks it names, the library samples it
uses (present, of the right class and split), the layer weights (a pair the recipe can
draw), the loop slices (inside their loop), and every drawn value against the bounds of
its recipe distribution (:func:`rmod.recipe.checks.params_outside_recipe`).

The output folder is the user's: a render writes into a new or empty folder, or into one
that holds an earlier render (its ``example.json`` lists the files it wrote, with their
SHA-256). It overwrites or deletes only files that earlier render recorded and that still
hold the recorded bytes (plus its ``example.json`` and ``overview.png``); any other file
in the way is refused by name, and a non-empty folder without a render is refused whole
(:func:`claim_folder`, :func:`check_overwrites`). Every path written is proven inside the
folder once resolved (:func:`inside`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from rmod import DRUMS
from rmod.audio import write_audio
from rmod.build.manifest import check_example_id, read_build_info
from rmod.example.draw import ExampleError, ExampleParams, InstrumentParams, example_id
from rmod.example.pattern import midi_bytes
from rmod.example.render import Rendered
from rmod.limits import (
    MAX_JSON_BYTES,
    MAX_SLICE_SAMPLES,
    FileRefused,
    bounded_lines,
    open_stream,
    read_regular,
    real_path,
)
from rmod.recipe.checks import params_outside_recipe
from rmod.recipe.spec import Recipe, RecipeError
from rmod_dose_common.fileio import atomic_write_bytes, atomic_write_text, sha256_file

if TYPE_CHECKING:
    from rmod.library.catalog import Library

#: Files of a render folder that are not listed in ``example.json``'s ``files``.
OWN_FILES = ("example.json", "overview.png")


# ----------------------------------------------------------------------------- parameters


def params_problems(params: ExampleParams, recipe: Recipe, library: Library) -> list[str]:
    """What in ``params`` the recipe and the library could not have produced; one
    ``'field: why'`` line per problem (empty list when rendering is safe): the record's own
    consistency, its samples against the library, then every drawn value against the
    recipe (:func:`rmod.recipe.checks.params_outside_recipe`)."""
    out = []
    if params.seed < 0:  # rmod-build's --seed and example_rng take non-negative seeds only
        out.append(f"seed: {params.seed} is negative (rmod-build draws with seeds >= 0)")
    try:
        check_example_id(params.id)
        if params.id != example_id(params.split, params.index):
            out.append(f"id: {params.id} does not match split {params.split} and index")
    except (ValueError, ExampleError) as exc:
        out.append(f"id: {exc}")
    if set(params.drums) != set(DRUMS):
        out.append(f"drums: expected {', '.join(DRUMS)}, got {', '.join(params.drums)}")
    for cls, drum in params.drums.items():
        out += [
            f"drums.{cls}.sample_ids: {p}"
            for p in _sample_problems(drum.sample_ids, cls, params.split, library)
        ]
        out += _weight_problems(f"drums.{cls}.weights", drum.weights, recipe)
    names = set(recipe.instrument_names)
    if set(params.instruments) != names:
        out.append(f"instruments: expected {sorted(names)}, got {sorted(params.instruments)}")
    for name, inst in params.instruments.items():
        where = f"instruments.{name}"
        if inst.plays and (inst.dropped or not inst.available):
            out.append(f"{where}: a dropped or unavailable instrument has a loop")
        if inst.plays and name in names:
            assert inst.loop_id is not None  # it plays: it has a loop
            found = _sample_problems((inst.loop_id,), name, params.split, library)
            out += [f"{where}.loop_id: {p}" for p in found]
            if not found:
                out += _slice_problems(where, inst, recipe, library)
    playing = list(params.drums) + [n for n, p in params.instruments.items() if p.plays]
    if list(params.mix) != playing:
        out.append(f"mix: expected tracks {playing}, got {list(params.mix)}")
    return out + params_outside_recipe(params.to_dict(), recipe.to_dict())


def _sample_problems(ids: tuple[str, ...], cls: str, split: str, library: Library) -> list[str]:
    out = []
    for sid in ids:
        if sid not in library:
            out.append(f"{sid!r} is not in the library {library.path}")
            continue
        entry = library.entry(sid)
        if entry.cls != cls:
            out.append(f"{sid} is a {entry.cls} sample, not a {cls} one")
        if entry.split != split:
            out.append(f"{sid} belongs to the {entry.split} split, the example to {split}")
    return out


def _weight_problems(where: str, weights: tuple[float, float], recipe: Recipe) -> list[str]:
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        return [f"{where}: {list(weights)} (weights are finite and non-negative)"]
    dist = recipe.drums.layer_weights
    pairs = dist.options if hasattr(dist, "options") else (getattr(dist, "value", None),)
    allowed = {tuple(float(w) for w in pair) for pair in pairs if isinstance(pair, tuple)}
    if tuple(weights) not in allowed:
        choices = ", ".join(str(list(p)) for p in sorted(allowed))
        return [f"{where}: {list(weights)} is not a pair the recipe draws ({choices})"]
    return []


def _slice_problems(
    where: str, inst: InstrumentParams, recipe: Recipe, library: Library
) -> list[str]:
    sr = recipe.audio.sample_rate
    seg = inst.segment_seconds * sr
    if not math.isfinite(seg) or not 0 < seg <= MAX_SLICE_SAMPLES:
        return [
            f"{where}.segment_seconds: {inst.segment_seconds} is not a loop slice length "
            f"(0 < samples <= MAX_SLICE_SAMPLES = {MAX_SLICE_SAMPLES})"
        ]
    seg_n = int(round(seg))
    assert inst.loop_id is not None  # called for a playing instrument only
    loop_n = int(math.floor(library.entry(inst.loop_id).duration * sr))
    last = max(0, loop_n - seg_n)
    if not 0 <= inst.start_sample <= last:
        return [f"{where}.start_sample: {inst.start_sample} outside the loop's [0, {last}]"]
    return []


# ----------------------------------------------------------------------------- the folder


def inside(folder: Path, path: Path) -> bool:
    """True when ``path``, resolved (symbolic links followed), lies inside ``folder``."""
    root = os.path.realpath(folder)
    return os.path.realpath(path).startswith(root + os.sep)


def claim_folder(out: Path) -> dict[str, str]:
    """Files an earlier render recorded in ``out/example.json`` (relative path -> SHA-256;
    empty for a new or empty folder). Raises :class:`ExampleError` for a non-empty folder
    that holds no render, or an ``out`` that is not a folder."""
    if not out.exists() and not out.is_symlink():
        return {}
    if not out.is_dir():
        raise ExampleError(f"{out}: exists and is not a folder")
    try:
        empty = next(out.iterdir(), None) is None
    except OSError as exc:
        raise ExampleError(f"{out}: cannot list the folder ({exc.strerror or exc})") from None
    if empty:
        return {}
    try:
        doc = json.loads((out / "example.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != EXAMPLE_FORMAT:
        raise ExampleError(
            f"{out}: not empty and holds no earlier render (no rmod example.json); "
            "render into a new or empty folder, or one that rmod-render-one wrote"
        )
    files = doc.get("files")
    if not isinstance(files, dict):
        files = {}
    return {
        rel: sha
        for rel, sha in files.items()
        if isinstance(sha, str) and _plain_relative(rel) and inside(out, out / rel)
    }


def _plain_relative(rel: object) -> bool:
    return (
        isinstance(rel, str)
        and bool(rel)
        and not os.path.isabs(rel)
        and os.path.normpath(rel) == rel
        and ".." not in rel.split("/")
        and rel not in OWN_FILES
    )


def planned_files(rendered: Rendered, fmt: str) -> list[str]:
    """Relative paths :func:`rmod.example.draw.write_rendered` writes for ``rendered``."""
    names = [f"mixture.{fmt}", *(f"{cls}.{fmt}" for cls in rendered.oneshots)]
    names += [f"stems/{name}.{fmt}" for name in rendered.stems]
    return names + ["pattern.mid"]


def check_overwrites(out: Path, previous: dict[str, str], planned: list[str]) -> None:
    """Refuse (:class:`ExampleError` naming the file) a render that would overwrite a file
    the earlier render did not write (or that changed since), or write outside ``out``."""
    if not out.exists():
        return
    has_render = (out / "example.json").is_file()
    for rel in [*planned, *OWN_FILES]:
        path = out / rel
        if not inside(out, path):
            raise ExampleError(f"{path}: would be written outside {out}; refusing")
        if not (path.exists() or path.is_symlink()):
            continue
        if rel in OWN_FILES and has_render and path.is_file() and not path.is_symlink():
            continue
        ours = rel in previous and path.is_file() and not path.is_symlink()
        if not ours or sha256_file(path) != previous[rel]:
            raise ExampleError(
                f"{path}: exists and is not a file the earlier render recorded (or it changed "
                "since); move it away or render into another folder"
            )


# ----------------------------------------------------------------------------- the folder format
EXAMPLE_FORMAT = "rmod-example"
EXAMPLE_VERSION = 1


def stems_gain(stems: dict[str, np.ndarray]) -> np.float32:
    """The one linear gain (≤ 1) applied to every stem file so that none exceeds full scale."""
    peak = max((float(np.max(np.abs(x))) for x in stems.values() if x.size), default=0.0)
    return np.float32(1.0 if peak <= 1.0 else 1.0 / peak)


def write_rendered(
    rendered: Rendered, out_dir: str | os.PathLike, fmt: str = "wav"
) -> dict[str, str]:
    """Write ``mixture``, ``kick``/``snare``/``hihat``, ``stems/*`` and ``pattern.mid``.

    Audio is 16-bit ``fmt`` (wav/flac) through :func:`rmod.audio.write_audio` (atomic).
    Stems are tracks before mastering, so parallel delay/reverb can push one past full scale:
    then every stem is lowered by the same gain (:func:`stems_gain`), which keeps their
    relative levels and clips none. Returns ``{relative path: sha256}`` of every file written.
    """
    out = Path(out_dir)
    sr = rendered.sample_rate
    files = {f"mixture.{fmt}": write_audio(out / f"mixture.{fmt}", rendered.mixture, sr)}
    for cls, shot in rendered.oneshots.items():
        files[f"{cls}.{fmt}"] = write_audio(out / f"{cls}.{fmt}", shot, sr)
    gain = stems_gain(rendered.stems)
    for name, stem in rendered.stems.items():
        path = out / "stems" / f"{name}.{fmt}"
        files[f"stems/{name}.{fmt}"] = write_audio(path, stem * gain, sr)
    data = midi_bytes(rendered.midi)
    atomic_write_bytes(out / "pattern.mid", data)
    files["pattern.mid"] = hashlib.sha256(data).hexdigest()
    return files


def example_document(
    params: ExampleParams,
    recipe: Recipe,
    library_path: str | None,
    library_fingerprint: str,
    files: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The self-contained ``example.json`` content: params, the recipe dict, the library
    (``path`` ``None`` = the built-in library) and the checksums of the written files."""
    return {
        "format": EXAMPLE_FORMAT,
        "version": EXAMPLE_VERSION,
        "id": params.id,
        "params": params.to_dict(),
        "sources": params.sources(),
        "recipe": recipe.to_dict(),
        "recipe_fingerprint": recipe.fingerprint,
        "library": {"path": library_path, "fingerprint": library_fingerprint},
        "files": dict(sorted((files or {}).items())),
    }


@dataclass(frozen=True)
class ExampleSource:
    """What re-rendering needs, read from ``example.json`` or a manifest row.

    ``recipe`` is ``None`` when the file holds none (give one explicitly);
    ``library_path`` is ``None`` for the built-in library (or a file that names none);
    ``audio_format`` is the format a dataset was built in (``build.json``; ``None``: the
    recipe's).
    """

    params: ExampleParams
    recipe: Recipe | None
    library_path: str | None
    audio_format: str | None = None


def load_example_source(path: str | os.PathLike, example: str | None = None) -> ExampleSource:
    """Read drawn params (+ recipe, library) from ``example.json``, a one-row JSON file, a
    manifest ``.jsonl``/``.jsonl.gz`` or a tar shard of a tar build (then ``example`` names
    the row id; recipe and library come from ``build.json`` in the manifest's or tar's
    grandparent folder when present).

    Only a regular file is read: ``example.json`` whole (at most
    :data:`rmod.limits.MAX_JSON_BYTES`), a manifest line by line (each at most
    :data:`rmod.limits.MAX_LINE_BYTES`, decompressed as it is read), a tar's row member
    (at most :data:`rmod.limits.MAX_JSON_BYTES`) through the shard's index, so no file,
    however it is made, takes more memory than one line. Raises :class:`ExampleError`
    naming the file (and line) for anything unreadable or missing (for a tar, a truncated
    shard or a row member whose bytes no longer match its index).
    """
    path = Path(path)
    is_tar = path.suffix == ".tar"
    build: dict[str, Any] = {}
    try:
        many = example is not None and not is_tar and _many_lines(path)
        if path.name.endswith((".jsonl", ".jsonl.gz")) or many:
            if example is None:
                raise ExampleError(f"{path}: a manifest holds many examples; name one with --id")
            doc = _manifest_row(path, example)
            build_json = real_path(path, "--from").parent.parent / "build.json"
            if build_json.exists():
                build = _build_of(build_json.parent)
        else:
            raw = _tar_row(path, example) if is_tar else _document_bytes(path)
            doc = json.loads(raw.decode("utf-8"))
            if is_tar and (root := real_path(path, "--from").parent.parent / "build.json").exists():
                build = _build_of(root.parent)
    except ExampleError:  # already names the file (an ExampleError is a ValueError too)
        raise
    except (ValueError, RecursionError) as exc:  # not JSON, or an integer too long to parse
        raise ExampleError(f"{path}: not valid JSON ({exc})") from None
    except FileRefused as exc:
        raise ExampleError(str(exc)) from None
    except (OSError, EOFError, zlib.error) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ExampleError(f"{path}: cannot read ({reason})") from None
    if not isinstance(doc, dict) or "params" not in doc:
        raise ExampleError(f"{path}: no 'params' object (expected example.json or a manifest row)")
    try:
        params = ExampleParams.from_dict(doc["params"])
    except ValueError as exc:
        raise ExampleError(
            f"{path}: {exc} (hand-edited, or drawn by another version of rmod, whose "
            "parameters this version does not read: re-render it with that version)"
        ) from None
    recipe_dict = doc.get("recipe", build.get("recipe"))
    recipe = None
    if recipe_dict is not None:
        try:
            recipe = Recipe.from_dict(recipe_dict, source=f"{path}:recipe")
        except RecipeError as exc:
            raise ExampleError(str(exc)) from None
    fmt = build.get("audio_format")
    if isinstance(doc.get("library"), dict):
        lib_path = doc["library"].get("path")
        if lib_path is not None and not isinstance(lib_path, str):
            what = f"expected a string or null, got {type(lib_path).__name__}"
            raise ExampleError(f"{path}: library.path: {what}")
        return ExampleSource(params, recipe, lib_path, fmt)
    if "library_path" in build:
        return ExampleSource(params, recipe, build["library_path"], fmt)
    return ExampleSource(params, recipe, None, fmt)


def _document_bytes(path: Path) -> bytes:
    """The bytes of a JSON document (gunzipped for ``.gz``), at most
    :data:`rmod.limits.MAX_JSON_BYTES` of them."""
    if path.suffix != ".gz":
        return read_regular(path, MAX_JSON_BYTES, "MAX_JSON_BYTES", "--from")
    with open_stream(path, what="--from") as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise FileRefused(f"{path}: more than MAX_JSON_BYTES = {MAX_JSON_BYTES} bytes unpacked")
    return data


def _open_text_lines(path: Path) -> tuple[BinaryIO, Iterator[tuple[int, bytes]]]:
    """``(line number, raw line)`` of a JSON Lines file, gzip or not (bounded lines)."""
    fh = open_stream(path, what="--from")
    return fh, bounded_lines(fh, str(path))


def _many_lines(path: Path) -> bool:
    """Whether the file holds more than one non-blank line (a manifest, not a document)."""
    fh, lines = _open_text_lines(path)
    with fh:
        return next(lines, None) is not None and next(lines, None) is not None


def _manifest_row(path: Path, example: str) -> Any:
    """The row of ``path`` (JSON Lines, gzip or not) whose ``id`` is ``example``, read a line
    at a time; :class:`ExampleError` naming the line of one that is not a JSON object."""
    fh, lines = _open_text_lines(path)
    with fh:
        for lineno, raw in lines:
            try:
                row = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:
                raise ExampleError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                what = f"a JSON {type(row).__name__}" if row is not None else "null"
                raise ExampleError(f"{path}:{lineno}: expected a JSON object (a row), got {what}")
            if row.get("id") == example:
                return row
    raise ExampleError(f"{path}: no row with id {example!r}")


def _tar_row(path: Path, example: str | None) -> bytes:
    """The ``{id}.json`` member (the manifest row) of example ``example`` in tar shard
    ``path``, read through the shard's index and checked against its SHA-256."""
    from rmod_dose_common.tar_shards import TarShardError, read_index, read_member

    if example is None:
        raise ExampleError(f"{path}: a tar shard holds many examples; name one with --id")
    try:
        entry = read_index(path).entry(f"{example}.json")
        if entry is None:
            raise ExampleError(f"{path}: no example {example!r} in this shard")
        if entry.size > MAX_JSON_BYTES:
            raise ExampleError(
                f"{path}: {entry.name} is {entry.size} bytes, more than "
                f"MAX_JSON_BYTES = {MAX_JSON_BYTES}"
            )
        return read_member(path, entry)
    except TarShardError as exc:
        raise ExampleError(str(exc)) from None


def _build_of(root: Path) -> dict[str, Any]:
    """Recipe, library path and audio format of the dataset in ``root``, from its
    ``build.json`` read as every reader does (:class:`rmod.build.manifest.ManifestError` naming
    a bad key or an unknown format)."""
    info = read_build_info(root)
    return {
        "recipe": info.recipe,
        "library_path": info.library_path,
        "audio_format": info.audio_format,
    }


def save_example(
    out_dir: str | os.PathLike,
    params: ExampleParams,
    recipe: Recipe,
    rendered: Rendered,
    library_path: str | None,
    library_fingerprint: str,
    audio_format: str | None = None,
    previous: dict[str, str] | None = None,
) -> dict[str, str]:
    """Write every audio file, ``pattern.mid`` and ``example.json`` into ``out_dir``.

    ``audio_format`` (``wav``/``flac``) defaults to the recipe's. ``previous``: the files
    an earlier render in ``out_dir`` recorded (its ``example.json`` ``files``); those this
    render does not rewrite are removed when they still hold the recorded bytes, nothing
    else is (see :mod:`rmod.inspect.example_folder`).

    Returns ``{relative path: sha256}`` of the audio and MIDI files (also recorded in
    ``example.json``).
    """
    files = write_rendered(rendered, out_dir, audio_format or recipe.audio.format)
    doc = example_document(params, recipe, library_path, library_fingerprint, files)
    atomic_write_text(Path(out_dir) / "example.json", json.dumps(doc, indent=1) + "\n")
    remove_stale_audio(out_dir, files, previous or {})
    return files


def remove_stale_audio(
    out_dir: str | os.PathLike, keep: dict[str, str], previous: dict[str, str]
) -> list[str]:
    """Delete files an earlier render recorded (``previous``: relative path -> SHA-256)
    that this one did not write (a stem of an instrument that no longer plays, files of
    the other format), so the folder holds one example only. A file is removed only while
    it is a regular file inside ``out_dir`` with the recorded bytes: the user's own files
    are never touched. Returns the relative paths removed."""
    out = Path(out_dir)
    removed = []
    for name, sha in sorted(previous.items()):
        path = out / name
        if name in keep or path.is_symlink() or not path.is_file():
            continue
        if not inside(out, path) or sha256_file(path) != sha:
            continue
        path.unlink()
        removed.append(name)
    return removed
