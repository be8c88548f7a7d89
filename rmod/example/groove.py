"""Groove variant: drum patterns cut from the user's General MIDI drum files.

A folder of MIDI files (the Groove MIDI Dataset, or any GM drum tracks) becomes a set of
4 s *windows*:

* :func:`scan_midi_dir` reads every ``*.mid``/``*.midi`` under the folder (sorted by
  relative path; links to folders are not followed, a file link that leads out of the
  folder is refused and not read). A file is refused, with its reason, when it is not a
  regular file, is bigger than :data:`rmod.limits.MAX_MIDI_BYTES`, cannot be parsed, has
  no drum track (no instrument flagged as drums, MIDI channel 10), holds more than
  :data:`rmod.limits.MAX_MIDI_NOTES` drum notes or one later than
  :data:`rmod.limits.MAX_MIDI_SECONDS`, or its mapped notes span less than one window.
  Each kept file gets its SHA-256 (:attr:`GrooveSet.hashes`, which ``build.json``
  records) and a split: the dataset's own when the folder holds the Groove MIDI Dataset's
  ``info.csv`` naming the file (:func:`dataset_splits`; GMD's test performances are then the
  test split, and the table's hash is recorded with the files), else one drawn from the hash
  (:func:`rmod.library.hashing.split_for_hash` of ``"midi:" + sha256``): a file's windows
  all land in one split, never spread over two.
* The drum notes are mapped to classes by the recipe's ``groove.notes`` (defaults:
  :data:`DEFAULT_NOTES`, kick 35/36, snare 37/38/40, hi-hat 42/44/46 plus 22/26, where the
  Roland kit that recorded the Groove MIDI Dataset writes hi-hat edge hits); other notes
  (toms, cymbals) are dropped unless mapped.
* Windows start at 0, ``window_s``, ``2 window_s``... seconds of the file's own timeline
  (its tempo map applies; ticks are turned into seconds note by note, so the cost follows
  the number of notes, not the ticks they span), and hold the mapped notes with ``start <= t < start +
  window_s``; a note's onset is the sample ``round((t - start) * sample_rate)``, and
  notes of one class that fall on the same sample count once. **Rule:** a window is kept
  only if it holds at least one kick, one snare and one hi-hat.
* An example of a Groove recipe has one grid point per sample, so its ``pattern.mid``
  (:func:`rmod.example.pattern.build_midi`) holds the window's onsets to the sample.

:meth:`GrooveSet.draw` picks a window of a split with the example's generator.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rmod import DRUMS, SPLITS
from rmod.errors import InputError
from rmod.library.hashing import DEFAULT_SPLIT_FRACTIONS, split_for_hash
from rmod.limits import (
    MAX_INFO_CSV_BYTES,
    MAX_MIDI_BYTES,
    MAX_MIDI_NOTES,
    MAX_MIDI_SECONDS,
    FileRefused,
    read_regular,
    real_path,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rmod.recipe.spec import Recipe

DEFAULT_NOTES = {"kick": (35, 36), "snare": (37, 38, 40), "hihat": (42, 44, 46, 22, 26)}
MIDI_EXTENSIONS = (".mid", ".midi")


@dataclass(frozen=True)
class GrooveRef:
    """Where an example's drum pattern comes from: the MIDI file (path relative to the
    ``--midi-dir`` folder, SHA-256 of its bytes) and the window's start in seconds."""

    path: str
    sha256: str
    start_s: float


@dataclass(frozen=True)
class GrooveWindow:
    """One window: its source file (relative path, SHA-256), start (s) and the sorted,
    distinct onset samples per class."""

    path: str
    sha256: str
    start_s: float
    onsets: dict[str, tuple[int, ...]]

    @property
    def ref(self) -> GrooveRef:
        """The record an example keeps of this window."""
        return GrooveRef(self.path, self.sha256, self.start_s)


@dataclass
class GrooveSet:
    """Windows per split, the files used (relative path -> split), their SHA-256
    (relative path -> hex digest) and refused files ``(path, reason)``."""

    windows: dict[str, list[GrooveWindow]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)

    def draw(self, split: str, rng: np.random.Generator) -> GrooveWindow:
        """A window of ``split``, uniformly (``ValueError`` naming the split if none)."""
        pool = self.windows.get(split, [])
        if not pool:
            raise ValueError(f"no Groove window in split {split!r}: add MIDI files")
        return pool[int(rng.integers(len(pool)))]


def first_difference(recorded: dict[str, str], found: dict[str, str]) -> str | None:
    """The first MIDI file (by relative path) whose SHA-256 differs between two
    ``{relative path: sha256}`` sets, said in words (``"sub/a.mid: changed"``,
    ``"added"``, ``"removed"``); ``None`` when the sets are equal."""
    for rel in sorted(set(recorded) | set(found)):
        old, new = recorded.get(rel), found.get(rel)
        if old == new:
            continue
        if old is None:
            return f"{rel}: added"
        if new is None:
            return f"{rel}: removed (or no longer usable)"
        return f"{rel}: changed (sha256 {old[:12]}... -> {new[:12]}...)"
    return None


class _TempoMap:
    """Seconds of a tick under a file's tempo changes (miditoolkit's ``TempoChange``: BPM at
    a tick): the same arithmetic as miditoolkit's tick table, without the table."""

    def __init__(self, ticks_per_beat: int, changes: Iterable[Any]) -> None:
        if ticks_per_beat < 1:
            raise ValueError(f"unreadable ({ticks_per_beat} ticks per beat)")
        changes = sorted(changes, key=lambda c: c.time) or []
        self.starts = [int(c.time) for c in changes] or [0]
        self.per_tick = [60.0 / float(c.tempo) / float(ticks_per_beat) for c in changes]
        if not self.per_tick:
            self.per_tick = [0.5 / ticks_per_beat]  # 120 BPM, the MIDI default
        self.offsets = [0.0]
        for k in range(1, len(self.starts)):
            span = self.starts[k] - self.starts[k - 1]
            self.offsets.append(self.offsets[-1] + self.per_tick[k - 1] * span)

    def seconds(self, tick: int) -> float:
        k = max(0, bisect.bisect_right(self.starts, tick) - 1)
        return self.offsets[k] + self.per_tick[k] * (tick - self.starts[k])


def _drum_notes(data: bytes) -> list[tuple[float, int, int]]:
    """``(onset seconds, pitch, velocity)`` of every drum-track note, by time; ``ValueError``
    past :data:`rmod.limits.MAX_MIDI_NOTES` notes or :data:`rmod.limits.MAX_MIDI_SECONDS`."""
    import miditoolkit

    midi = miditoolkit.MidiFile(file=io.BytesIO(data))
    drums = [inst for inst in midi.instruments if inst.is_drum]
    if not drums:
        raise ValueError("no drum track (no instrument on MIDI channel 10)")
    count = sum(len(inst.notes) for inst in drums)
    if count > MAX_MIDI_NOTES:
        raise ValueError(f"{count} drum notes, more than MAX_MIDI_NOTES = {MAX_MIDI_NOTES}")
    tempo = _TempoMap(int(midi.ticks_per_beat), midi.tempo_changes)
    notes: list[tuple[float, int, int]] = []
    for inst in drums:
        for n in inst.notes:
            t = float(tempo.seconds(int(n.start)))
            if not t <= MAX_MIDI_SECONDS:  # also NaN
                raise ValueError(
                    f"a drum note at {t:.6g} s, later than MAX_MIDI_SECONDS = {MAX_MIDI_SECONDS:g}"
                )
            notes.append((t, int(n.pitch), int(n.velocity)))
    return sorted(notes)


def file_windows(
    rel: str,
    data: bytes,
    notes_map: dict[str, tuple[int, ...]],
    window_s: float,
    sample_rate: int,
) -> list[GrooveWindow]:
    """Kept windows of one MIDI file (``ValueError`` with the reason if it is refused)."""
    by_pitch = {p: cls for cls, pitches in notes_map.items() for p in pitches}
    mapped = [(t, by_pitch[p], v) for t, p, v in _drum_notes(data) if p in by_pitch]
    if not mapped or mapped[-1][0] - mapped[0][0] < window_s:
        raise ValueError(f"too short: its mapped drum notes span less than {window_s} s")
    digest = hashlib.sha256(data).hexdigest()
    n = int(round(window_s * sample_rate))
    times = [t for t, _, _ in mapped]  # sorted
    last = int(mapped[-1][0] // window_s)
    # Only windows that can hold a note (a neighbour absorbs float rounding at an edge).
    occupied = sorted(
        {min(last, max(0, int(t // window_s) + d)) for t in times for d in (-1, 0, 1)}
    )
    out = []
    for k in occupied:
        start = k * window_s
        inside = mapped[
            bisect.bisect_left(times, start) : bisect.bisect_left(times, start + window_s)
        ]
        hits: dict[str, set[int]] = {c: set() for c in DRUMS}
        for t, cls, _ in inside:
            pos = int(round((t - start) * sample_rate))
            if 0 <= pos < n:
                hits[cls].add(pos)
        if all(hits[c] for c in DRUMS):
            onsets = {c: tuple(sorted(hits[c])) for c in DRUMS}
            out.append(GrooveWindow(rel, digest, round(start, 6), onsets))
    return out


def with_midi_dir(recipe: Recipe, midi_dir: str | os.PathLike) -> Recipe:
    """``recipe`` whose ``groove.midi_dir`` is the absolute path of ``midi_dir`` and whose
    ``groove.midi_files`` are the SHA-256 of the usable files found there now (how
    ``rmod-build --midi-dir`` hands the folder to its workers, who check that they see the
    same files: :func:`recipe_grooves`)."""
    if recipe.groove is None:
        raise InputError(f"--midi-dir needs a Groove recipe (e.g. rmod-groove), not {recipe.name}")
    folder = str(real_path(midi_dir, "--midi-dir"))
    groove = dataclasses.replace(recipe.groove, midi_dir=folder, midi_files=None)
    found = _scan(folder, *_scan_args(dataclasses.replace(recipe, groove=groove)), fresh=True)
    groove = dataclasses.replace(groove, midi_files=tuple(sorted(found.hashes.items())))
    return dataclasses.replace(recipe, groove=groove)


_SCANS: dict[tuple, GrooveSet] = {}  # the last few scans of this process
_MAX_SCANS = 4


def _scan(
    midi_dir: str, notes: tuple, window_s: float, sample_rate: int, fresh: bool = False
) -> GrooveSet:
    """:func:`scan_midi_dir`, remembered per folder and settings (``fresh``: scan again)."""
    key = (midi_dir, notes, window_s, sample_rate)
    if fresh or key not in _SCANS:
        _SCANS.pop(key, None)
        while len(_SCANS) >= _MAX_SCANS:
            _SCANS.pop(next(iter(_SCANS)))
        _SCANS[key] = scan_midi_dir(
            midi_dir, dict(notes), window_s=window_s, sample_rate=sample_rate
        )
    return _SCANS[key]


def _scan_args(recipe: Recipe) -> tuple[tuple, float, int]:
    """A Groove recipe's note map (hashable), window length (the mixture's) and rate."""
    # Every caller passes a Groove recipe: with_midi_dir has just set recipe.groove,
    # recipe_grooves and rmod-render-one's _grooves check it first.
    assert recipe.groove is not None
    notes = tuple((c, tuple(getattr(recipe.groove.notes, c))) for c in DRUMS)
    return notes, recipe.audio.mixture_seconds, recipe.audio.sample_rate


def recipe_grooves(recipe: Recipe) -> GrooveSet | None:
    """The windows of the recipe's ``groove.midi_dir`` (scanned once per process), or None.

    When the recipe records the files it was planned with (``groove.midi_files``, set by
    :func:`with_midi_dir`), the folder must still hold exactly those:
    :class:`rmod.errors.InputError` names the first file that differs.
    """
    if recipe.groove is None or recipe.groove.midi_dir is None:
        return None
    args = (recipe.groove.midi_dir, *_scan_args(recipe))
    found = _scan(*args)
    expected = recipe.groove.midi_files
    if expected is not None and first_difference(dict(expected), found.hashes) is not None:
        found = _scan(*args, fresh=True)  # this process may remember an older scan
        change = first_difference(dict(expected), found.hashes)
        if change is not None:
            raise InputError(
                f"{recipe.groove.midi_dir}: the MIDI files changed since the build was planned "
                f"({change}); a build uses one set of files"
            )
    return found


def for_recipe(midi_dir: str | os.PathLike, recipe: Recipe) -> GrooveSet:
    """:func:`scan_midi_dir` with a Groove recipe's note map, mixture length and rate."""
    notes, window_s, sample_rate = _scan_args(recipe)
    return scan_midi_dir(midi_dir, dict(notes), window_s=window_s, sample_rate=sample_rate)


def scan_midi_dir(
    midi_dir: str | os.PathLike,
    notes_map: dict[str, tuple[int, ...]] | None = None,
    *,
    window_s: float = 4.0,
    sample_rate: int = 44100,
    fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
) -> GrooveSet:
    """Windows of every usable MIDI file under ``midi_dir`` (module docstring)."""
    root = real_path(midi_dir, "--midi-dir")
    if not root.is_dir():
        raise FileNotFoundError(f"{midi_dir}: no such folder (--midi-dir)")
    notes_map = notes_map or DEFAULT_NOTES
    out = GrooveSet(windows={s: [] for s in SPLITS})
    given = dataset_splits(root)
    if given is not None:
        out.hashes[INFO_CSV] = given.sha256  # a resume with an edited info.csv is refused
    for path in _midi_files(root, out.refused):
        rel = path.relative_to(root).as_posix()
        try:
            data = read_regular(path, MAX_MIDI_BYTES, "MAX_MIDI_BYTES")
            windows = file_windows(rel, data, notes_map, window_s, sample_rate)
        except FileRefused as exc:
            out.refused.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        except Exception as exc:  # miditoolkit/mido raise many kinds on a damaged file
            detail = str(exc) or type(exc).__name__
            reason = detail if isinstance(exc, ValueError) else f"unreadable ({detail})"
            out.refused.append((str(path), reason.splitlines()[0] if reason else "unreadable"))
            continue
        if not windows:
            out.refused.append((str(path), "no window holds a kick, a snare and a hi-hat"))
            continue
        split = given.splits.get(rel) if given is not None else None
        split = split or split_for_hash("midi:" + windows[0].sha256, fractions)
        out.files[rel] = split
        out.hashes[rel] = windows[0].sha256
        out.windows[split].extend(windows)
    return out


INFO_CSV = "info.csv"
#: The Groove MIDI Dataset's split names (``info.csv``, column ``split``) -> ours.
GMD_SPLITS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}


@dataclass(frozen=True)
class DatasetSplits:
    """The split of each MIDI file a folder's ``info.csv`` names (relative path -> split)
    and the file's SHA-256."""

    splits: dict[str, str]
    sha256: str


def dataset_splits(root: Path) -> DatasetSplits | None:
    """The dataset's own split, when ``root/info.csv`` exists (the Groove MIDI Dataset's
    table: columns ``midi_filename``, a path relative to the folder, and ``split``, one of
    train / validation / test): so GMD's test performances are the test split. None
    without the file. A file that is not a regular file, is larger than
    `MAX_INFO_CSV_BYTES`, lacks a column or names another split is refused
    (`InputError` naming the file and line)."""
    path = root / INFO_CSV
    if not path.exists() and not path.is_symlink():
        return None
    try:
        data = read_regular(path, MAX_INFO_CSV_BYTES, "MAX_INFO_CSV_BYTES", what="Groove info.csv")
        text = data.decode("utf-8-sig")
    except FileRefused as exc:
        raise InputError(str(exc)) from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"midi_filename", "split"} - set(reader.fieldnames or ())
    if missing:
        raise InputError(
            f"{path}: no {' or '.join(sorted(missing))} column (Groove MIDI Dataset format)"
        )
    splits = {}
    for row in reader:
        name, split = (row.get("midi_filename") or "").strip(), (row.get("split") or "").strip()
        if split.lower() not in GMD_SPLITS:
            raise InputError(
                f"{path}: line {reader.line_num}: split {split!r} is not one of "
                f"{', '.join(sorted(GMD_SPLITS))}"
            )
        if name:
            splits[Path(name).as_posix()] = GMD_SPLITS[split.lower()]
    return DatasetSplits(splits, hashlib.sha256(data).hexdigest())


def _midi_files(root: Path, refused: list[tuple[str, str]]) -> list[Path]:
    """MIDI files under ``root`` by relative path. Links to folders are not followed; a
    file link that leads out of ``root`` and folders that cannot be listed go to
    ``refused`` with the reason."""

    def report(exc: OSError) -> None:
        refused.append((str(exc.filename), f"cannot read folder ({exc.strerror or exc})"))

    found = []
    for folder, _, names in os.walk(root, onerror=report):
        for name in names:
            path = Path(folder, name)
            if path.suffix.lower() not in MIDI_EXTENSIONS:
                continue
            if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
                refused.append((str(path), "a symbolic link out of the folder: not read"))
                continue
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
