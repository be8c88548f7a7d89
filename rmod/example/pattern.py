"""Drum patterns: random grid points per class, their sample positions, and the MIDI file.

The mixture is divided into ``grid_points`` equally spaced onset positions (paper:
1,920 over 4 s). Grid point ``g`` starts at sample::

    round(g * n_samples / grid_points)          # round half up, in exact integer arithmetic

computed once by :func:`grid_to_samples`; every renderer and the overview use it. The
MIDI file puts the same onsets on a drum track (channel 10) with General MIDI notes, at a
tempo and resolution where one grid point is a whole number of ticks.
"""

from __future__ import annotations

import io

import miditoolkit
import numpy as np


def draw_grid(n_hits: int, grid_points: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Draw ``n_hits`` distinct grid indices in ``[0, grid_points)``, sorted ascending."""
    if not 0 <= n_hits <= grid_points:
        raise ValueError(f"cannot place {n_hits} hits on {grid_points} grid points")
    picks = rng.choice(grid_points, size=n_hits, replace=False)
    return tuple(sorted(int(g) for g in picks))


def grid_to_samples(
    grid: tuple[int, ...] | np.ndarray, grid_points: int, n_samples: int
) -> np.ndarray:
    """Sample positions (int64) of grid indices: ``round(g * n_samples / grid_points)``.

    Integer arithmetic (``(2 g n + G) // 2G``, round half up) so the result never depends
    on floating-point rounding.
    """
    g = np.asarray(grid, dtype=np.int64)
    return (2 * g * n_samples + grid_points) // (2 * grid_points)


def ticks_per_point(
    mixture_seconds: float, tempo_bpm: float, ticks_per_beat: int, grid_points: int
) -> int:
    """MIDI ticks per grid point (the recipe guarantees it is a whole number)."""
    total = mixture_seconds * tempo_bpm / 60.0 * ticks_per_beat
    return int(round(total / grid_points))


def build_midi(
    grids: dict[str, tuple[int, ...]],
    notes: dict[str, int],
    grid_points: int,
    mixture_seconds: float,
    tempo_bpm: float,
    ticks_per_beat: int,
    velocity: int = 100,
) -> miditoolkit.MidiFile:
    """A one-track drum MIDI file (4/4, given tempo) holding every class's onsets.

    ``grids`` maps class -> sorted grid indices; ``notes`` maps class -> MIDI note number.
    Each note lasts until the next onset of its class or the end of the pattern.
    """
    tpp = ticks_per_point(mixture_seconds, tempo_bpm, ticks_per_beat, grid_points)
    end_tick = grid_points * tpp
    midi = miditoolkit.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tempo_changes = [miditoolkit.TempoChange(float(tempo_bpm), 0)]
    midi.time_signature_changes = [miditoolkit.TimeSignature(4, 4, 0)]
    drums = miditoolkit.Instrument(program=0, is_drum=True, name="drums")
    for cls, grid in grids.items():
        starts = [g * tpp for g in grid]
        ends = starts[1:] + [end_tick]
        for start, end in zip(starts, ends, strict=True):
            drums.notes.append(
                miditoolkit.Note(
                    velocity=int(velocity), pitch=int(notes[cls]), start=start, end=end
                )
            )
    drums.notes.sort(key=lambda n: (n.start, n.pitch))
    midi.instruments = [drums]
    midi.max_tick = end_tick
    return midi


def midi_bytes(midi: miditoolkit.MidiFile) -> bytes:
    """Serialize a MIDI file to standard MIDI file bytes (for atomic writes)."""
    buf = io.BytesIO()
    midi.dump(file=buf)
    return buf.getvalue()


def read_midi_grid(
    data: bytes, notes: dict[str, int], ticks_per_grid_point: int
) -> dict[str, tuple[int, ...]]:
    """Recover class -> grid indices from MIDI bytes written by :func:`build_midi`."""
    midi = miditoolkit.MidiFile(file=io.BytesIO(data))
    by_note = {v: k for k, v in notes.items()}
    found: dict[str, list[int]] = {cls: [] for cls in notes}
    for inst in midi.instruments:
        for note in inst.notes:
            if note.pitch in by_note:
                found[by_note[note.pitch]].append(note.start // ticks_per_grid_point)
    return {cls: tuple(sorted(v)) for cls, v in found.items()}
