"""Groove variant: drum patterns cut from the user's General MIDI drum files.

A folder of MIDI files (the Groove MIDI Dataset, or any GM drum tracks) becomes a set of
4 s *windows*:

* :func:`scan_midi_dir` reads every ``*.mid``/``*.midi`` under the folder (sorted by
  relative path). A file is refused, with its reason, when it cannot be parsed, has no
  drum track (no instrument flagged as drums, MIDI channel 10), or its mapped notes span
  less than one window. Each kept file gets its SHA-256 and a split drawn from it
  (:func:`rmod.library.hashing.split_for_hash` of ``"midi:" + sha256``): a file's windows all
  land in one split, never spread over two.
* The drum notes are mapped to classes by the recipe's ``groove.notes`` (defaults:
  :data:`DEFAULT_NOTES`, kick 35/36, snare 37/38/40, hi-hat 42/44/46 plus 22/26, where the
  Roland kit that recorded the Groove MIDI Dataset writes hi-hat edge hits); other notes
  (toms, cymbals) are dropped unless mapped.
* Windows start at 0, ``window_s``, ``2 window_s``... seconds of the file's own timeline
  (its tempo map applies), and hold the mapped notes with ``start <= t < start +
  window_s``; a note's onset is the sample ``round((t - start) * sample_rate)``, and
  notes of one class that fall on the same sample count once. **Rule:** a window is kept
  only if it holds at least one kick, one snare and one hi-hat.
* An example of a Groove recipe has one grid point per sample, so its ``pattern.mid``
  (:func:`rmod.example.pattern.build_midi`) holds the window's onsets to the sample.

:meth:`GrooveSet.draw` picks a window of a split with the example's generator.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmod import DRUMS, SPLITS
from rmod.errors import InputError
from rmod.library.hashing import DEFAULT_SPLIT_FRACTIONS, split_for_hash

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
    """Windows per split, the files used (relative path -> split) and refused files
    ``(path, reason)``."""

    windows: dict[str, list[GrooveWindow]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def draw(self, split: str, rng: np.random.Generator) -> GrooveWindow:
        """A window of ``split``, uniformly (``ValueError`` naming the split if none)."""
        pool = self.windows.get(split, [])
        if not pool:
            raise ValueError(f"no Groove window in split {split!r}: add MIDI files")
        return pool[int(rng.integers(len(pool)))]


def _drum_notes(data: bytes):
    """``(onset seconds, pitch, velocity)`` of every drum-track note, by time."""
    import miditoolkit

    midi = miditoolkit.MidiFile(file=io.BytesIO(data))
    drums = [inst for inst in midi.instruments if inst.is_drum]
    if not drums:
        raise ValueError("no drum track (no instrument on MIDI channel 10)")
    ticks = midi.get_tick_to_time_mapping()
    notes = []
    for inst in drums:
        for n in inst.notes:
            t = float(ticks[min(n.start, len(ticks) - 1)])
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
    out = []
    for k in range(int(mapped[-1][0] // window_s) + 1):
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


def with_midi_dir(recipe, midi_dir: str | os.PathLike):
    """``recipe`` whose ``groove.midi_dir`` is the absolute path of ``midi_dir`` (how
    ``rmod-build --midi-dir`` hands the folder to its workers)."""
    if recipe.groove is None:
        raise InputError(f"--midi-dir needs a Groove recipe (e.g. rmod-groove), not {recipe.name}")
    groove = dataclasses.replace(recipe.groove, midi_dir=str(Path(midi_dir).resolve()))
    return dataclasses.replace(recipe, groove=groove)


@functools.lru_cache(maxsize=4)
def _cached_scan(midi_dir: str, notes: tuple, window_s: float, sample_rate: int) -> GrooveSet:
    return scan_midi_dir(midi_dir, dict(notes), window_s=window_s, sample_rate=sample_rate)


def _scan_args(recipe) -> tuple[tuple, float, int]:
    """A Groove recipe's note map (hashable), window length (the mixture's) and rate."""
    notes = tuple((c, tuple(getattr(recipe.groove.notes, c))) for c in DRUMS)
    return notes, recipe.audio.mixture_seconds, recipe.audio.sample_rate


def recipe_grooves(recipe) -> GrooveSet | None:
    """The windows of the recipe's ``groove.midi_dir`` (scanned once per process), or None."""
    if recipe.groove is None or recipe.groove.midi_dir is None:
        return None
    return _cached_scan(recipe.groove.midi_dir, *_scan_args(recipe))


def for_recipe(midi_dir: str | os.PathLike, recipe) -> GrooveSet:
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
    root = Path(midi_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (--midi-dir)")
    notes_map = notes_map or DEFAULT_NOTES
    found = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_EXTENSIONS),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    out = GrooveSet(windows={s: [] for s in SPLITS})
    for path in found:
        rel = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
            windows = file_windows(rel, data, notes_map, window_s, sample_rate)
        except Exception as exc:  # miditoolkit/mido raise many kinds on a damaged file
            detail = str(exc) or type(exc).__name__
            reason = detail if isinstance(exc, ValueError) else f"unreadable ({detail})"
            out.refused.append((str(path), reason.splitlines()[0] if reason else "unreadable"))
            continue
        if not windows:
            out.refused.append((str(path), "no window holds a kick, a snare and a hi-hat"))
            continue
        split = split_for_hash("midi:" + windows[0].sha256, fractions)
        out.files[rel] = split
        out.windows[split].extend(windows)
    return out
