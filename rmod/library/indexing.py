"""Indexing: turn class folders of audio files into a library manifest (``rmod-library index``).

:func:`index_library` walks ``kick/ snare/ hihat/ bass/ piano/ guitar/ vocal/`` under a
folder, decodes each audio file once, refuses what does not fit (:class:`IndexLimits`),
names each kept sound by its content hash (:mod:`rmod.library.hashing`), gives it the split of its
family, and writes the manifest (:mod:`rmod.library.catalog` format) atomically. The report lists
every refused file with its reason.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rmod import CLASSES, DRUMS, INSTRUMENTS, SPLITS
from rmod.audio import AUDIO_EXTENSIONS, AudioFileError, audio_info, peak_db, read_audio
from rmod.errors import InputError
from rmod.library.catalog import LibraryEntry, write_library
from rmod.library.hashing import (
    DEFAULT_SPLIT_FRACTIONS,
    content_hash,
    make_id,
    split_for_hash,
    split_key,
)
from rmod.limits import real_path

#: Most samples (frames x channels) ``index_library`` decodes from one file (1 GiB as float32).
MAX_DECODED_SAMPLES = 2**28


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
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if p.is_symlink() and not Path(os.path.realpath(p)).is_relative_to(src):
            outside.append((str(p), "a symbolic link out of the folder: not read"))
            continue
        if not p.is_file():
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
    path = Path(path)
    real_path(path, "--out")  # a link loop is a one-line error
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
    root is the absolute path of ``src_dir``, which must be the manifest's folder or inside
    it (:class:`rmod.errors.InputError` before any work otherwise: a manifest reads samples
    from its own folder only). Written atomically, even if empty.
    """
    limits = limits or IndexLimits()
    check_limits(limits)
    src = real_path(src_dir, "SRC_DIR")
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder")
    check_output_file(out_path)
    folder = real_path(Path(out_path).parent, "--out's folder")
    if not src.is_relative_to(folder):
        raise InputError(
            f"{out_path}: a library manifest must lie in its sample folder {src} or a folder "
            "above it (a manifest reads samples from its own folder only)"
        )
    found, refused = _scan(src)
    entries: list[LibraryEntry] = []
    first_by_hash: dict[str, str] = {}  # content hash -> relative path of the kept file
    for path, cls in tqdm(found, desc="indexing", unit="file", disable=not progress):
        try:
            audio, sr = check_audio(path, cls, limits)
        except AudioFileError as err:
            refused.append((str(path), err.reason))
            continue
        rel = path.relative_to(src).as_posix()
        entry = _entry(rel, cls, audio, sr, path.stat().st_size, limits)
        if entry.sha256 in first_by_hash:
            refused.append((str(path), f"duplicate content of {first_by_hash[entry.sha256]}"))
            continue
        first_by_hash[entry.sha256] = rel
        entries.append(entry)
    out = Path(out_path)
    fingerprint = write_library(out, str(src), entries)
    refused.sort()
    return IndexReport(out.resolve(), len(entries), refused, _counts(entries), fingerprint)


def check_limits(limits: IndexLimits) -> None:
    """``ValueError`` on bad split fractions or grouping, before any work."""
    split_for_hash("0" * 64, limits.split_fractions)
    if limits.group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {GROUP_BY}, not {limits.group_by!r}")


def _entry(
    rel: str, cls: str, audio: np.ndarray, sr: int, size: int, limits: IndexLimits
) -> LibraryEntry:
    """The entry of the decoded file at ``rel`` (relative to the library root)."""
    digest = content_hash(audio)
    family = folder_family(rel) if limits.group_by == "folder" else ""
    key = split_key(family, digest)
    return LibraryEntry(
        id=make_id(cls, digest),
        path=rel,
        cls=cls,
        duration=round(audio.shape[1] / sr, 6),
        sample_rate=int(sr),
        channels=int(audio.shape[0]),
        sha256=digest,
        split=split_for_hash(key, limits.split_fractions),
        size_bytes=size,
        family=family,
    )


def _counts(entries: list[LibraryEntry]) -> dict[str, dict[str, int]]:
    """``{cls: {split: n}}`` over every class and split (zeros included)."""
    counts = {c: {s: 0 for s in SPLITS} for c in CLASSES}
    for e in entries:
        counts[e.cls][e.split] += 1
    return counts
