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
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmod.errors import RmodError
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
    of older builds have none (``None``, left out of :meth:`to_dict`).
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


def open_manifest_bytes(path: Path) -> io.BufferedIOBase:
    """A manifest file (``.jsonl`` or ``.jsonl.gz``) opened for reading bytes."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def iter_manifest(path: str | os.PathLike) -> Iterator[ManifestRow]:
    """Yield the rows of a ``.jsonl`` or ``.jsonl.gz`` manifest, in file order.

    Raises :class:`ManifestError` naming the file and line of a malformed row, of bytes
    that are not UTF-8, or where a damaged gzip stream stops; ``OSError`` if the file
    cannot be opened.
    """
    path = Path(path)
    with open_manifest_bytes(path) as fh:
        lineno = 0
        while True:
            try:
                raw = fh.readline()
            except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
                raise ManifestError(f"{path}:{lineno + 1}: cannot read ({exc})") from None
            if not raw:
                return
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{path}:{lineno}: not UTF-8 text ({exc.reason})") from None
            if not line.strip():
                continue
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
    ``engine_fingerprint`` names the rendering code and audio package versions. Nothing
    here depends on how the build ran (workers, backend, time), so it is byte-stable.
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
    #: ``folder`` (shard folders of files) or ``tar`` (one tar per shard); left out of
    #: ``build.json`` for a folder build, so folder builds keep their bytes.
    layout: str = field(default="folder", metadata={"choices": LAYOUTS, "optional": True})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildInfo:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming a missing, unknown or bad key
        (``build.json: seed: -1 below the allowed minimum 0``)."""
        try:
            return from_plain(cls, data)
        except RecordError as err:
            raise ValueError(f"build.json: {err}") from None

    def differences(self, other: BuildInfo) -> list[str]:
        """Human-readable list of identity fields that differ from ``other``."""
        out = []
        for name in IDENTITY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "recipe_fingerprint":
                    keys = _changed_keys(self.recipe, other.recipe)
                    out.append(f"recipe differs (fields: {', '.join(keys) or 'unknown'})")
                elif name == "engine_fingerprint":
                    out.append(
                        "the rmod rendering code or an audio package version changed since "
                        f"this build started (engine {theirs[:12]} -> {mine[:12]}); finish it "
                        "with the original version"
                    )
                else:
                    out.append(f"{name}: existing {theirs!r}, requested {mine!r}")
        return out


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
        return BuildInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no build.json (is this an rmod dataset folder?)") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
