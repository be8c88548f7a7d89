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

The split of an entry is a pure function of its family key (:func:`family_key`: the
family, else the content hash; see :func:`split_for_hash`), so a family never spans two
splits and re-indexing gives the same assignment. Entries without a family split exactly
as before families existed.
:attr:`Library.fingerprint` is the SHA-256 of the manifest's entry lines (everything
after the header): it names the library's content, wherever its folder lives.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rmod import CLASSES, DRUMS, INSTRUMENTS, SPLITS
from rmod.audio import (
    AUDIO_EXTENSIONS,
    AudioFileError,
    atomic_write_text,
    audio_info,
    native_channels,
    peak_db,
    read_audio,
    resample,
)
from rmod.errors import RmodError

FORMAT_NAME = "rmod-library"
FORMAT_VERSION = 1
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: Most samples (frames x channels) ``index_library`` decodes from one file (1 GiB as float32).
MAX_DECODED_SAMPLES = 2**28


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
    cls: str
    duration: float
    sample_rate: int
    channels: int
    sha256: str
    split: str
    size_bytes: int = 0
    family: str = ""
    source: str = ""

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of every field (``family``/``source`` only when set, so a
        manifest without families keeps its bytes and fingerprint)."""
        data = asdict(self)
        for key in ("family", "source"):
            if not data[key]:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LibraryEntry:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on missing/unknown keys."""
        names = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown entry keys {sorted(unknown)}")
        required = names - {"size_bytes", "family", "source"}
        missing = required - set(data)
        if missing:
            raise ValueError(f"missing entry keys {sorted(missing)}")
        entry = cls(
            id=str(data["id"]),
            path=str(data["path"]),
            cls=str(data["cls"]),
            duration=float(data["duration"]),
            sample_rate=int(data["sample_rate"]),
            channels=int(data["channels"]),
            sha256=str(data["sha256"]),
            split=str(data["split"]),
            size_bytes=int(data.get("size_bytes", 0)),
            family=str(data.get("family", "")),
            source=str(data.get("source", "")),
        )
        if entry.cls not in CLASSES:
            raise ValueError(f"unknown class {entry.cls!r} (expected one of {CLASSES})")
        if entry.split not in SPLITS:
            raise ValueError(f"unknown split {entry.split!r} (expected one of {SPLITS})")
        return entry


# ----------------------------------------------------------------------------- hashing


def content_hash(audio: np.ndarray) -> str:
    """SHA-256 hex digest of decoded audio ``[channels, samples]`` (float32, little endian)."""
    arr = np.ascontiguousarray(audio, dtype="<f4")
    h = hashlib.sha256(arr.tobytes())
    h.update(f"|channels={arr.shape[0]}".encode())
    return h.hexdigest()


def make_id(cls: str, sha256: str) -> str:
    """Stable entry id ``<cls>/<first 16 hex digits of the content hash>``."""
    return f"{cls}/{sha256[:16]}"


def family_key(entry: LibraryEntry) -> str:
    """What decides an entry's split: ``"family:<family>"``, or its content hash if none."""
    return f"family:{entry.family}" if entry.family else entry.sha256


def split_for_hash(sha256: str, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """Deterministic split of a content hash.

    A number ``u`` in [0, 1) is taken from SHA-256(``"split:" + sha256``) (first 64 bits),
    then ``train`` if ``u < f_train``, ``valid`` if ``u < f_train + f_valid``, else ``test``.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be 3 non-negative numbers summing to 1: {fractions}"
        )
    digest = hashlib.sha256(f"split:{sha256}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for name, frac in zip(SPLITS, fractions, strict=True):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


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
    except json.JSONDecodeError as exc:
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
        entries.append(_with_path(entry, str(root / entry.path)))
    body = text.split("\n", 1)[1] if "\n" in text else ""
    return root, entries, _fingerprint(body)


def _with_path(entry: LibraryEntry, path: str) -> LibraryEntry:
    data = entry.to_dict()
    data["path"] = path
    return LibraryEntry.from_dict(data)


# ----------------------------------------------------------------------------- the library


@dataclass(eq=False)
class Library:
    """An indexed sample library (see the module docstring for the file format).

    Holds entries only, so it pickles cheaply to joblib/dask workers. It decodes audio on
    request and keeps none: :class:`rmod.store.SampleStore` caches it on disk for builds.
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
            from rmod.builtin import builtin_manifest_path

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


# ----------------------------------------------------------------------------- indexing


def _default_durations() -> dict[str, tuple[float, float]]:
    d = {c: (0.05, 10.0) for c in DRUMS}
    d.update({c: (4.0, 300.0) for c in INSTRUMENTS})
    return d


@dataclass(frozen=True)
class IndexLimits:
    """What ``index_library`` accepts.

    ``durations``: per class ``(min_s, max_s)``. Defaults: one-shots (kick, snare, hihat)
    0.05-10 s; loops (bass, piano, guitar, vocal) 4-300 s, so a 4 s segment always fits.
    ``silence_db``: files whose peak is below this (dBFS) are refused as silent.
    ``split_fractions``: (train, valid, test), summing to 1.
    ``group_by``: ``"file"`` (each file is its own family) or ``"folder"`` (files under the
    same sub-folder of a class folder share a family, hence a split; see
    :func:`folder_family`).
    """

    durations: dict[str, tuple[float, float]] = field(default_factory=_default_durations)
    silence_db: float = -60.0
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS
    group_by: str = "file"


GROUP_BY = ("file", "folder")


def folder_family(rel: str) -> str:
    """Family of a file at ``rel`` (``cls/sub/.../name``) under ``--group-by folder``:
    ``"cls/sub"`` (the sub-folder right under the class folder: a kit, a pack), or ``""``
    (its own family) for a file directly in the class folder."""
    parts = rel.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else ""


@dataclass
class IndexReport:
    """What ``index_library`` did: the manifest written, how many files entered it,
    each refused file with its reason, and counts ``{cls: {split: n}}``."""

    library_path: Path
    n_indexed: int
    refused: list[tuple[str, str]]
    counts: dict[str, dict[str, int]]
    fingerprint: str = ""


def _walk(src: Path, unreadable: list[tuple[str, str]]) -> list[Path]:
    """Every path under ``src`` (symbolic links to folders not followed); folders that
    cannot be listed are added to ``unreadable`` with the reason instead of skipped."""

    def report(exc: OSError) -> None:
        unreadable.append((str(exc.filename), f"cannot read folder ({exc.strerror or exc})"))

    paths: list[Path] = []
    for folder, dirs, files in os.walk(src, onerror=report):
        paths += [Path(folder, name) for name in dirs + files]
    return paths


def _scan(src: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Audio files under ``src`` with their class, and audio files outside class folders
    (and folders that cannot be read)."""
    found: list[tuple[Path, str]] = []
    outside: list[tuple[str, str]] = []
    for p in sorted(_walk(src, outside), key=lambda q: q.relative_to(src).as_posix()):
        if not p.is_file() or p.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        top = p.relative_to(src).parts[0]
        if len(p.relative_to(src).parts) > 1 and top in CLASSES:
            found.append((p, top))
        else:
            outside.append((str(p), f"not inside a class folder ({', '.join(CLASSES)})"))
    return found, outside


def check_audio(path: Path, cls: str, limits: IndexLimits) -> tuple[np.ndarray, int]:
    """Decode ``path`` and apply the limits of class ``cls``; ``AudioFileError`` if refused.

    The length and size are checked from the header first, so a huge file is refused
    without being decoded (decoding is what costs memory).
    """
    frames, rate, channels = audio_info(path)
    lo, hi = limits.durations[cls]
    if rate > 0 and frames / rate > hi:
        raise AudioFileError(path, f"too long for {cls}: {frames / rate:.3f} s > {hi} s")
    if frames * channels > MAX_DECODED_SAMPLES:
        raise AudioFileError(
            path, f"{frames * channels} samples; at most {MAX_DECODED_SAMPLES} are decoded"
        )
    audio, sr = read_audio(path)
    duration = audio.shape[1] / sr
    if duration < lo:
        raise AudioFileError(path, f"too short for {cls}: {duration:.3f} s < {lo} s")
    if duration > hi:
        raise AudioFileError(path, f"too long for {cls}: {duration:.3f} s > {hi} s")
    level = peak_db(audio)
    if level < limits.silence_db:
        raise AudioFileError(path, f"silent: peak {level:.1f} dBFS < {limits.silence_db} dBFS")
    return audio, sr


def check_output_file(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that cannot become a file: ``OSError``
    naming it when it exists and is not a regular file, or when its folder cannot be
    created or written (a temporary file is made there and removed)."""
    import tempfile

    path = Path(path)
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise IsADirectoryError(f"{path}: exists and is not a file; name the manifest to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise OSError(f"{path}: cannot write there ({exc.strerror or exc})") from None


def index_library(
    src_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    limits: IndexLimits | None = None,
    progress: bool = False,
) -> IndexReport:
    """Index the class folders under ``src_dir`` into a manifest at ``out_path``.

    Looks for WAV/FLAC/AIFF/OGG files (any rate, depth, channel count, nested folders)
    under ``kick/ snare/ hihat/ bass/ piano/ guitar/ vocal/``. Refused files (undecodable,
    empty, non-finite, silent, too short/long for the class, duplicate content, or audio
    outside a class folder) are listed in the report with their reason and never enter
    the library; of duplicates the first by sorted relative path is kept. Splits follow
    families (``limits.group_by``). The manifest
    root is the absolute path of ``src_dir``. Written atomically, even if empty.
    """
    from tqdm import tqdm

    limits = limits or IndexLimits()
    split_for_hash("0" * 64, limits.split_fractions)  # ValueError on bad fractions, before work
    if limits.group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {GROUP_BY}, not {limits.group_by!r}")
    src = Path(src_dir).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder")
    check_output_file(out_path)
    found, refused = _scan(src)
    entries: list[LibraryEntry] = []
    first_by_hash: dict[str, str] = {}
    for path, cls in tqdm(found, desc="indexing", unit="file", disable=not progress):
        try:
            audio, sr = check_audio(path, cls, limits)
        except AudioFileError as err:
            refused.append((str(path), err.reason))
            continue
        digest = content_hash(audio)
        rel = path.relative_to(src).as_posix()
        if digest in first_by_hash:
            refused.append((str(path), f"duplicate content of {first_by_hash[digest]}"))
            continue
        first_by_hash[digest] = rel
        family = folder_family(rel) if limits.group_by == "folder" else ""
        key = f"family:{family}" if family else digest
        entries.append(
            LibraryEntry(
                id=make_id(cls, digest),
                path=rel,
                cls=cls,
                duration=round(audio.shape[1] / sr, 6),
                sample_rate=int(sr),
                channels=int(audio.shape[0]),
                sha256=digest,
                split=split_for_hash(key, limits.split_fractions),
                size_bytes=path.stat().st_size,
                family=family,
            )
        )
    out = Path(out_path)
    fingerprint = write_library(out, str(src), entries)
    counts = {c: {s: 0 for s in SPLITS} for c in CLASSES}
    for e in entries:
        counts[e.cls][e.split] += 1
    refused.sort()
    return IndexReport(out.resolve(), len(entries), refused, counts, fingerprint)
