"""Manifest rows and ``build.json``: the on-disk contract between ``rmod`` and its readers.

A dataset folder ``DIR`` holds ``DIR/build.json`` (:class:`BuildInfo`) and one JSON Lines
manifest per split, ``DIR/manifests/{split}.jsonl`` (optionally ``.jsonl.gz``), one
:class:`ManifestRow` per line. Paths inside rows are relative to ``DIR``. The format is
documented in ``manifests/README.md`` and ``manifests/rmod-manifest.schema.json``.

Rows are serialized with a fixed key order, no NaN/Inf and compact separators, so equal
rows always give equal bytes.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rmod.errors import RmodError
from rmod.limits import MAX_JSON_BYTES, FileRefused, bounded_lines, open_stream, read_regular
from rmod.records import RecordError, from_plain, to_plain
from rmod_dose_common.fileio import atomic_write_bytes

MANIFEST_FORMAT = "rmod-manifest/1"
BUILD_JSON = "build.json"
MANIFEST_DIR = "manifests"
PARTS_DIR = "parts"
#: ``build.json`` fields that must match for a rerun to continue an existing build.
IDENTITY_FIELDS = (
    "recipe_fingerprint",
    "engine_fingerprint",
    "library_fingerprint",
    "seed",
    "counts",
    "shard_size",
    "audio_format",
    "format",
    "stored",
    "midi_files",
    "library_sources",
    "layout",
)


#: Every example id: ``{split}-{index:08d}`` (see ``manifests/README.md``).
ID_PATTERN = re.compile(r"(train|valid|test)-[0-9]{8}")
#: Examples per split that ids can name (8 index digits).
MAX_PER_SPLIT = 10**8
#: File roles of a row and their name suffixes: ``{id}.{role}.{ext}`` (``ext`` for audio).
AUDIO_ROLES = ("mixture", "kick", "snare", "hihat")
#: How a build stores its shards: a folder of files each (the default) or one tar each.
LAYOUTS = ("folder", "tar")


def check_example_id(value: object) -> str:
    """``value`` when it is a documented example id; ``ValueError`` naming it otherwise."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"id {value!r} is not an example id (expected e.g. train-00000042)")
    return value


def expected_files(
    example_id: str, index: int, shard_size: int, audio_format: str, layout: str = "folder"
) -> dict[str, str]:
    """Role -> path (relative to ``DIR``) that ``rmod-build`` gives the files of an example:
    ``{split}/{index // shard_size:06d}/{id}.{role}.{fmt}`` and ``{id}.pattern.mid``; in the
    tar layout the member ``{split}/{split}-{index // shard_size:06d}.tar#{id}.{role}.{fmt}``
    (and ``#{id}.pattern.mid``).

    File names are tied to ids: a row whose paths differ points at another row's files.
    """
    split = example_id.split("-", 1)[0]
    number = index // shard_size
    if layout == "tar":
        prefix = f"{split}/{split}-{number:06d}.tar#"
    else:
        prefix = f"{split}/{number:06d}/"
    out = {role: f"{prefix}{example_id}.{role}.{audio_format}" for role in AUDIO_ROLES}
    out["midi"] = f"{prefix}{example_id}.pattern.mid"
    return out


class ManifestError(RmodError):
    """A manifest or ``build.json`` that cannot be read; the message names the file and line."""


def dumps_row(obj: dict[str, Any]) -> str:
    """One JSON line (no trailing newline): key order kept, compact, NaN/Inf refused."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


@dataclass(frozen=True)
class ManifestRow:
    """One RMOD example as recorded in a manifest.

    ``mixture``, ``oneshots`` and ``midi`` are paths relative to the dataset folder.
    ``frames`` and ``checksums`` are keyed by role (``mixture``, ``kick``, ``snare``,
    ``hihat``, ``midi``): length in samples and SHA-256 of the file's bytes.
    ``sources`` maps a class/instrument to the library ids used; ``params`` is
    ``ExampleParams.to_dict()`` (enough to re-render the example); ``loudness`` holds
    levels in dBFS (``None`` for digital silence). ``channels`` is the mixture's;
    ``file_channels`` gives each audio role's channels (a one-shot is mono when both of its
    layered sources are; rows written before it existed have every file at ``channels``).
    ``sizes`` (role -> bytes of each file) serves the cheap per-shard check on resume; rows
    of older builds have none (``None``, left out of :meth:`to_dict`). ``stored`` False: the
    files this row names were never written (``rmod-build --tokens``); ``checksums``,
    ``sizes`` and ``frames`` still describe them, and ``rmod-render-one --from`` renders them
    again, byte for byte (True, the default, is left out of :meth:`to_dict`).
    """

    id: str
    split: str
    index: int
    seed: int
    mixture: str
    oneshots: dict[str, str]
    sample_rate: int
    channels: int
    duration: float
    frames: dict[str, int]
    checksums: dict[str, str]
    sources: dict[str, list[str]]
    params: dict[str, Any]
    loudness: dict[str, float | None] = field(default_factory=dict)
    midi: str | None = None
    sizes: dict[str, int] | None = field(default=None, metadata={"optional": True})
    file_channels: dict[str, int] = field(default_factory=dict)
    stored: bool = field(default=True, metadata={"optional": True})

    def files(self) -> dict[str, str]:
        """Role -> relative path of every file this row points to."""
        out = {"mixture": self.mixture, **self.oneshots}
        if self.midi is not None:
            out["midi"] = self.midi
        return out

    def source_ids(self) -> set[str]:
        """Every library id used by this example, whatever the class."""
        return {sid for ids in self.sources.values() for sid in ids}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, keys in declaration order (``sizes`` only when known)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestRow:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming a missing, unknown or mistyped
        key (``manifest row: oneshots.kick: expected a string, got int``) or a bad id."""
        try:
            row = from_plain(cls, data)
            check_example_id(row.id)
        except ValueError as err:  # RecordError included
            raise ValueError(f"manifest row: {err}") from None
        return row

    def to_json(self) -> str:
        """The row as one JSON line (no newline)."""
        return dumps_row(self.to_dict())


def open_manifest_bytes(path: Path) -> BinaryIO:
    """A manifest file (``.jsonl`` or ``.jsonl.gz``) opened for reading bytes; only a
    regular file is opened (:class:`rmod.limits.FileRefused` otherwise)."""
    return open_stream(path, what="manifest")


def iter_manifest(path: str | os.PathLike) -> Iterator[ManifestRow]:
    """Yield the rows of a ``.jsonl`` or ``.jsonl.gz`` manifest, in file order, one line
    in memory at a time.

    Raises :class:`ManifestError` naming the file and line of a malformed row, of bytes
    that are not UTF-8, of a line longer than :data:`rmod.limits.MAX_LINE_BYTES` (or more
    than :data:`rmod.limits.MAX_BLANK_LINES` blank lines), or where a damaged gzip stream
    stops; :class:`rmod.limits.FileRefused` for a path that is not a regular file;
    ``OSError`` if the file cannot be opened.
    """
    path = Path(path)
    with open_manifest_bytes(path) as fh:
        lines = bounded_lines(fh, str(path))
        lineno = 0
        while True:
            try:
                lineno, raw = next(lines, (lineno, b""))
            except FileRefused as exc:
                raise ManifestError(str(exc)) from None
            except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz
                raise ManifestError(f"{path}:{lineno + 1}: cannot read ({exc})") from None
            if not raw:
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})") from None
            try:
                row = ManifestRow.from_dict(json.loads(line))
            except (ValueError, TypeError, RecursionError) as exc:  # Recursion: nested too deep
                raise ManifestError(f"{path}:{lineno}: {exc}") from None
            yield row


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """All rows of a manifest (see :func:`iter_manifest`)."""
    return list(iter_manifest(path))


def encode_manifest(rows: Iterable[ManifestRow]) -> bytes:
    """JSON Lines bytes of ``rows`` (UTF-8, one row per line, trailing newline)."""
    return "".join(row.to_json() + "\n" for row in rows).encode("utf-8")


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> None:
    """Write rows atomically; a ``.gz`` suffix writes gzip (with a fixed mtime, so the
    bytes depend only on the rows)."""
    path = Path(path)
    data = encode_manifest(rows)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)


def manifest_path(root: str | os.PathLike, split: str) -> Path:
    """The final manifest of ``split``: ``.jsonl.gz`` if present, else ``.jsonl``."""
    base = Path(root) / MANIFEST_DIR
    gz = base / f"{split}.jsonl.gz"
    return gz if gz.exists() else base / f"{split}.jsonl"


_AT_LEAST_0 = {"range": (0, None)}
_AT_LEAST_1 = {"range": (1, None)}


@dataclass(frozen=True)
class BuildInfo:
    """Content of ``DIR/build.json``: what a dataset was built from.

    ``counts`` is examples per split; ``recipe`` is ``Recipe.to_dict()``;
    ``engine_fingerprint`` names the rendering code and audio package versions. ``stored``
    False: a ``--tokens`` build, whose rows' files were not written (True, the default, is
    left out of :meth:`to_dict`). Nothing here depends on how the build ran (workers,
    backend, time), so it is byte-stable.

    Two optional fields (left out when ``None``, so older ``build.json`` files read as they
    are): ``midi_files``, ``{relative path: SHA-256}`` of the MIDI files a Groove build draws
    its windows from; ``library_sources``, what the built-in library was generated from
    (``{"sf2:<file name>": SHA-256, "espeak-ng": version}``, see
    :meth:`rmod.library.builtin.generate.Sources.record`). A resume whose inputs differ is
    refused naming the first file that differs.
    """

    recipe: dict[str, Any]
    recipe_fingerprint: str
    library_path: str | None
    library_fingerprint: str
    seed: int = field(metadata=_AT_LEAST_0)
    counts: dict[str, int] = field(metadata=_AT_LEAST_0)  # each count
    shard_size: int = field(metadata=_AT_LEAST_1)
    audio_format: str = field(metadata={"choices": ("wav", "flac")})
    sample_rate: int = field(metadata=_AT_LEAST_1)
    channels: int = field(metadata=_AT_LEAST_1)
    rmod_version: str
    engine_fingerprint: str
    format: str = field(default=MANIFEST_FORMAT, metadata={"choices": (MANIFEST_FORMAT,)})
    stored: bool = field(default=True, metadata={"optional": True})
    midi_files: dict[str, str] | None = field(default=None, metadata={"optional": True})
    library_sources: dict[str, str] | None = field(default=None, metadata={"optional": True})
    #: ``folder`` (shard folders of files) or ``tar`` (one tar per shard); left out of
    #: ``build.json`` for a folder build, so folder builds keep their bytes.
    layout: str = field(default="folder", metadata={"choices": LAYOUTS, "optional": True})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildInfo:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming a missing, unknown or bad key
        (``build.json: seed: -1 below the allowed minimum 0``), or a tar layout that says its
        files are not stored."""
        try:
            info = from_plain(cls, data)
        except RecordError as err:
            raise ValueError(f"build.json: {err}") from None
        if info.layout == "tar" and not info.stored:
            raise ValueError(
                "build.json: layout: tar with stored: false, which no build writes (a --tokens "
                "build stores no audio, so it has no tars)"
            )
        return info

    def differences(self, other: BuildInfo) -> list[str]:
        """Human-readable list of identity fields that differ from ``other``."""
        out = []
        for name in IDENTITY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "recipe_fingerprint":
                    keys = _changed_keys(self.recipe, other.recipe)
                    out.append(f"recipe differs (fields: {', '.join(keys) or 'unknown'})")
                elif name in ("midi_files", "library_sources"):
                    out.append(changed_inputs(name, theirs, mine))
                elif name == "engine_fingerprint":
                    out.append(
                        "the rmod rendering code or an audio package version changed since "
                        f"this build started (engine {theirs[:12]} -> {mine[:12]}); finish it "
                        "with the original version"
                    )
                elif name == "stored":
                    how = {True: "writes audio files", False: "writes tokens only (--tokens)"}
                    out.append(f"stored: the existing build {how[theirs]}, this one {how[mine]}")
                else:
                    out.append(f"{name}: existing {theirs!r}, requested {mine!r}")
        return out


def changed_inputs(name: str, recorded: dict | None, found: dict | None) -> str:
    """One line naming the first input file (by name) that differs between the recorded
    set and the one found now (``name``: ``midi_files`` or ``library_sources``)."""
    what = "MIDI files (--midi-dir)" if name == "midi_files" else "sources of the built-in library"
    recorded, found = recorded or {}, found or {}
    for key in sorted(set(recorded) | set(found)):
        old, new = recorded.get(key), found.get(key)
        if old == new:
            continue
        if old is None:
            change = "added"
        elif new is None:
            change = "removed (or no longer usable)"
        else:
            change = f"changed ({old[:16]} -> {new[:16]})"
        return f"{name}: the {what} differ from this build's: first {key}: {change}"
    return f"{name}: recorded {len(recorded)}, found {len(found)}"


def _changed_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two nested dicts differ (at most 10)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += _changed_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out[:10]
    return [] if a == b else [prefix.rstrip(".") or "<root>"]


def write_build_info(root: str | os.PathLike, info: BuildInfo) -> None:
    """Write ``DIR/build.json`` atomically (indented, sorted keys, trailing newline)."""
    text = json.dumps(info.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(Path(root) / BUILD_JSON, text.encode("utf-8"))


def read_build_info(root: str | os.PathLike) -> BuildInfo:
    """Read ``DIR/build.json``; :class:`ManifestError` names the file when it is unusable."""
    path = Path(root) / BUILD_JSON
    try:
        data = read_regular(path, MAX_JSON_BYTES, "MAX_JSON_BYTES")
        return BuildInfo.from_dict(json.loads(data.decode("utf-8")))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no build.json (is this an rmod dataset folder?)") from None
    except FileRefused as exc:
        raise ManifestError(str(exc)) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
