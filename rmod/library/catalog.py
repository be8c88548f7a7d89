"""Sample libraries: drum one-shots and instrument loops, indexed in a manifest.

A library is a JSON Lines manifest (UTF-8, one JSON object per line, keys sorted):

* line 1, the header::

      {"format": "rmod-library", "root": "/abs/samples", "version": 1}

  ``root`` is the folder that entry paths are relative to. A relative ``root`` (the
  built-in library writes ``"."``) is resolved against the manifest file's folder.
* every further line, one entry, sorted by ``id``::

      {"channels": 1, "cls": "kick", "duration": 0.41, "id": "kick/3f2a9c0d1e7b4a55",
       "path": "kick/acoustic/k01.wav", "sample_rate": 44100, "sha256": "3f2a...",
       "size_bytes": 36214, "split": "train"}

  ``sha256`` is the *content* hash: SHA-256 of the decoded samples (float32,
  ``[channels, samples]`` order, little endian) followed by the channel count, so the
  same sound stored as WAV and as FLAC has the same hash. ``id`` is
  ``<cls>/<first 16 hex digits of sha256>``. ``duration`` is in seconds (6 decimals),
  ``size_bytes`` is the file size when indexed (a cheap integrity check).
  Two optional keys: ``family`` names the source sound an entry comes from (velocity
  layers, detuned or trimmed copies, or a kit's samples share one family; empty: the
  entry is its own family) and ``source`` says where the sound came from (free text,
  e.g. ``"sf2:Black_Pearl_4_LV2.sf2"``; empty for indexed user files).

The split of an entry is a pure function of its family key (:func:`rmod.library.hashing.family_key`:
the family, else the content hash; see :func:`rmod.library.hashing.split_for_hash`), so a family never spans two
splits and re-indexing gives the same assignment. Entries without a family split exactly
as before families existed.
:attr:`Library.fingerprint` is the SHA-256 of the manifest's entry lines (everything
after the header): it names the library's content, wherever its folder lives.

Here: the entry record, reading and writing manifests, and :class:`Library`. The hashes,
ids and splits live in :mod:`rmod.library.hashing`; making a manifest from
sample folders (``index_library``) lives in :mod:`rmod.library.indexing`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rmod import CLASSES, SPLITS
from rmod.audio import AudioFileError, native_channels, read_audio, resample
from rmod.errors import RmodError
from rmod.library.hashing import content_hash
from rmod.records import from_plain, to_plain
from rmod_dose_common.fileio import atomic_write_text

FORMAT_NAME = "rmod-library"
FORMAT_VERSION = 1


class LibraryError(RmodError):
    """A library manifest that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class LibraryEntry:
    """One sample of a library.

    ``path`` is absolute once the entry belongs to a loaded :class:`Library` (relative
    to the root inside the manifest file). ``duration`` in seconds, ``sample_rate`` in Hz,
    ``size_bytes`` the file size when indexed.
    """

    id: str
    path: str
    cls: str = field(metadata={"choices": CLASSES})
    duration: float
    sample_rate: int
    channels: int
    sha256: str
    split: str = field(metadata={"choices": SPLITS})
    size_bytes: int = 0
    # Left out of to_dict when empty, so a manifest without them keeps its bytes and fingerprint.
    family: str = field(default="", metadata={"optional": True})
    source: str = field(default="", metadata={"optional": True})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (``family``/``source`` only when set)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LibraryEntry:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming a missing, unknown or bad key."""
        return from_plain(cls, data)


# ----------------------------------------------------------------------------- manifest I/O


def _entry_line(entry: LibraryEntry) -> str:
    return json.dumps(entry.to_dict(), sort_keys=True)


def manifest_text(root: str, entries: Iterable[LibraryEntry]) -> str:
    """Full manifest text: header line, then entries (paths relative to ``root``) by id."""
    header = {"format": FORMAT_NAME, "root": str(root), "version": FORMAT_VERSION}
    lines = [json.dumps(header, sort_keys=True)]
    lines += [_entry_line(e) for e in sorted(entries, key=lambda e: e.id)]
    return "\n".join(lines) + "\n"


def write_library(path: str | os.PathLike, root: str, entries: Iterable[LibraryEntry]) -> str:
    """Write a manifest atomically; returns its fingerprint."""
    text = manifest_text(root, entries)
    atomic_write_text(path, text)
    return _fingerprint(text.split("\n", 1)[1])


def _fingerprint(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def read_library(path: str | os.PathLike) -> tuple[Path, list[LibraryEntry], str]:
    """Parse a manifest: ``(root folder, entries with absolute paths, fingerprint)``.

    Raises :class:`LibraryError` naming the file (and line) when it is missing or malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LibraryError(f"{path}: cannot read library manifest ({exc})") from None
    lines = text.split("\n")
    try:
        header = json.loads(lines[0])
    except ValueError as exc:  # not JSON, or an integer too long to parse
        raise LibraryError(f"{path}:1: header is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise LibraryError(f"{path}:1: not an rmod library manifest (no format={FORMAT_NAME!r})")
    if header.get("version") != FORMAT_VERSION:
        raise LibraryError(
            f"{path}:1: manifest version {header.get('version')!r}, this code reads {FORMAT_VERSION}"
        )
    root = Path(str(header.get("root", ".")))
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    entries: list[LibraryEntry] = []
    seen: set[str] = set()
    inside = _Containment(root)
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            entry = LibraryEntry.from_dict(json.loads(line))
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise LibraryError(f"{path}:{lineno}: bad entry ({exc})") from None
        if entry.id in seen:
            raise LibraryError(f"{path}:{lineno}: duplicate id {entry.id}")
        seen.add(entry.id)
        full = root / entry.path
        if Path(entry.path).is_absolute() or not inside(full):
            raise LibraryError(
                f"{path}:{lineno}: {entry.path!r} leaves the library folder {root} "
                "(absolute, '..' or a symbolic link out): not read"
            )
        entries.append(_with_path(entry, str(full)))
    body = text.split("\n", 1)[1] if "\n" in text else ""
    return root, entries, _fingerprint(body)


class _Containment:
    """Whether paths, resolved (``..`` and symbolic links), lie inside ``root``: each folder
    is resolved once (entries share a few), a file only when it is a link itself."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.folders: dict[Path, str] = {}

    def __call__(self, path: Path) -> bool:
        folder = self.folders.get(path.parent)
        if folder is None:
            folder = self.folders[path.parent] = os.path.realpath(path.parent)
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(folder, path.name)
        return Path(real).is_relative_to(self.root)


def _with_path(entry: LibraryEntry, path: str) -> LibraryEntry:
    return dataclasses.replace(entry, path=path)


# ----------------------------------------------------------------------------- the library


@dataclass(eq=False)
class Library:
    """An indexed sample library (see the module docstring for the file format).

    Holds entries only, so it pickles cheaply to joblib/dask workers. It decodes audio on
    request and keeps none: :class:`rmod.example.sample_store.SampleStore` caches it on disk for builds.
    """

    path: Path
    root: Path
    fingerprint: str
    entries: tuple[LibraryEntry, ...]
    _by_id: dict[str, LibraryEntry] = field(init=False, repr=False)
    _index: dict[tuple[str, str], tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entries}
        groups: dict[tuple[str, str], list[str]] = {}
        for e in self.entries:
            groups.setdefault((e.cls, e.split), []).append(e.id)
        self._index = {k: tuple(sorted(v)) for k, v in groups.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Library):
            return NotImplemented
        return (self.path, self.fingerprint) == (other.path, other.fingerprint)

    def __hash__(self) -> int:
        return hash((str(self.path), self.fingerprint))

    def __getstate__(self) -> dict:
        return {
            "path": self.path,
            "root": self.root,
            "fingerprint": self.fingerprint,
            "entries": self.entries,
        }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Library:
        """Load a manifest; ``None`` loads the built-in library (generated on first use)."""
        if path is None:
            from rmod.library.builtin import (
                builtin_manifest_path,  # here: rmod.library.builtin imports us
            )

            path = builtin_manifest_path()
        path = Path(path).resolve()
        root, entries, fingerprint = read_library(path)
        return cls(path=path, root=root, fingerprint=fingerprint, entries=tuple(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._by_id

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes with at least one entry, in :data:`rmod.CLASSES` order."""
        present = {e.cls for e in self.entries}
        return tuple(c for c in CLASSES if c in present)

    def ids(self, cls: str, split: str) -> tuple[str, ...]:
        """Sorted ids of class ``cls`` in ``split`` (empty tuple when there are none)."""
        if cls not in CLASSES:
            raise KeyError(f"unknown class {cls!r} (expected one of {CLASSES})")
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r} (expected one of {SPLITS})")
        return self._index.get((cls, split), ())

    def entry(self, entry_id: str) -> LibraryEntry:
        """The entry with this id (``KeyError`` naming the library if absent)."""
        try:
            return self._by_id[entry_id]
        except KeyError:
            raise KeyError(f"no entry {entry_id!r} in library {self.path}") from None

    def counts(self) -> dict[str, dict[str, int]]:
        """``{cls: {split: n}}`` for every class of :data:`rmod.CLASSES` (zeros included)."""
        return {c: {s: len(self._index.get((c, s), ())) for s in SPLITS} for c in CLASSES}

    def load_audio(self, entry_id: str, sample_rate: int = 44100) -> np.ndarray:
        """Decoded audio of an entry as float32 ``[channels, samples]`` at ``sample_rate`` Hz.

        Mono and stereo files keep their channels; more channels are averaged to mono.
        Raises :class:`rmod.audio.AudioFileError` naming the path if the file is gone,
        undecodable, or no longer matches the manifest (length, sample rate or content
        hash changed), so an example never silently renders from other audio.
        """
        entry = self.entry(entry_id)
        audio, sr = read_audio(entry.path)
        if sr != entry.sample_rate or round(audio.shape[1] / sr, 6) != entry.duration:
            raise AudioFileError(
                entry.path,
                f"file changed since indexing (now {audio.shape[1] / sr:.6f} s at {sr} Hz, "
                f"manifest says {entry.duration} s at {entry.sample_rate} Hz); re-index it",
            )
        if content_hash(audio) != entry.sha256:
            raise AudioFileError(
                entry.path,
                "file changed since indexing (same length, other samples: content hash "
                f"differs from {entry.sha256[:16]}); re-index it",
            )
        audio = native_channels(audio)
        return np.ascontiguousarray(resample(audio, sr, int(sample_rate)), dtype=np.float32)
