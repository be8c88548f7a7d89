"""What ``rmod-render-one`` trusts: drawn parameters read from a file, and its output folder.

Parameters read with ``--from`` (a hand-edited ``example.json`` or a manifest row) are
checked against the recipe and the library before anything renders
(:func:`params_problems`): the record's id, the tracks it names, the library samples it
uses (present, of the right class and split), the layer weights (a pair the recipe can
draw), the loop slices (inside their loop). Distribution bounds are checked by
:func:`rmod.stats.params_outside_recipe`.

The output folder is the user's: a render writes into a new or empty folder, or into one
that holds an earlier render (its ``example.json`` lists the files it wrote, with their
SHA-256). It overwrites or deletes only files that earlier render recorded and that still
hold the recorded bytes (plus its ``example.json`` and ``overview.png``); any other file
in the way is refused by name, and a non-empty folder without a render is refused whole
(:func:`claim_folder`, :func:`check_overwrites`). Every path written is proven inside the
folder once resolved (:func:`inside`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rmod import DRUMS
from rmod.audio import sha256_file
from rmod.example import EXAMPLE_FORMAT, ExampleError, ExampleParams, Rendered, example_id
from rmod.manifest import check_example_id
from rmod.recipe import Recipe

#: Files of a render folder that are not listed in ``example.json``'s ``files``.
OWN_FILES = ("example.json", "overview.png")


# ----------------------------------------------------------------------------- parameters


def params_problems(params: ExampleParams, recipe: Recipe, library: Any) -> list[str]:
    """What in ``params`` the recipe and the library could not have produced; one
    ``'field: why'`` line per problem (empty list when rendering is safe)."""
    out = []
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
            found = _sample_problems((inst.loop_id,), name, params.split, library)
            out += [f"{where}.loop_id: {p}" for p in found]
            if not found:
                out += _slice_problems(where, inst, recipe, library)
    playing = list(params.drums) + [n for n, p in params.instruments.items() if p.plays]
    if list(params.mix) != playing:
        out.append(f"mix: expected tracks {playing}, got {list(params.mix)}")
    return out


def _sample_problems(ids: tuple[Any, ...], cls: str, split: str, library: Any) -> list[str]:
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


def _slice_problems(where: str, inst: Any, recipe: Recipe, library: Any) -> list[str]:
    sr = recipe.audio.sample_rate
    seg_n = int(round(inst.segment_seconds * sr))
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
    files = doc.get("files") if isinstance(doc.get("files"), dict) else {}
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
    """Relative paths :func:`rmod.example.write_rendered` writes for ``rendered``."""
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
