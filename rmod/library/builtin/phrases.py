"""Random musical phrases for the built-in instrument loops.

A phrase is a list of :class:`Note` in a random key, scale, tempo and chord progression,
exactly ``n_bars`` bars of 4/4 long (enough bars for at least ``min_s`` seconds), so the
rendered audio loops seamlessly. Styles per instrument:

* bass: chord roots (sometimes fifths/octaves) on a random eighth-note rhythm, MIDI 28-50.
* piano: block chords on a rhythm, or eighth/sixteenth arpeggios, around middle C.
* guitar: strummed chords ringing until the next strum (strings staggered 8-25 ms,
  down/up on eighths) or a
  pentatonic single-note riff.
* vocal: a legato melody of scale tones with short rests, never two in a row nor at the
  start (vibrato is added by the renderer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
# Chord progressions as scale degrees (0 = tonic), one chord per bar (cycled).
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 0, 3, 4), (1, 4, 0, 0))


@dataclass(frozen=True)
class Note:
    """One note: onset and length in seconds, MIDI key, MIDI velocity (1-127)."""

    start: float
    length: float
    key: int
    velocity: int


@dataclass(frozen=True)
class Phrase:
    """Notes of a loop plus its musical frame; ``duration`` = bars x 4 beats (seconds)."""

    notes: tuple[Note, ...]
    tempo: float
    tonic: int
    scale: str
    n_bars: int
    duration: float


def _chord(tonic: int, scale: tuple[int, ...], degree: int, size: int = 3) -> list[int]:
    """Pitch classes (semitones above the tonic's C-relative pitch) of a diatonic chord."""
    out = []
    for k in range(size):
        d = degree + 2 * k
        out.append(tonic + scale[d % 7] + 12 * (d // 7))
    return out


def _near(pitch_class: int, low: int, high: int, rng: np.random.Generator) -> int:
    """A MIDI key with the given pitch class inside [low, high]."""
    options = [k for k in range(low, high + 1) if (k - pitch_class) % 12 == 0]
    return int(rng.choice(options))


def _vel(rng: np.random.Generator, lo: int = 70, hi: int = 115) -> int:
    return int(rng.integers(lo, hi + 1))


def _bass(
    rng: np.random.Generator, chords: list[list[int]], beat: float, n_bars: int
) -> list[Note]:
    notes: list[Note] = []
    for bar in range(n_bars):
        chord = chords[bar % len(chords)]
        root = _near(chord[0], 28, 43, rng)
        mask = rng.random(8) < rng.uniform(0.35, 0.8)
        mask[0] = True
        steps = np.flatnonzero(mask)
        for i, s in enumerate(steps):
            end = steps[i + 1] if i + 1 < len(steps) else 8
            key = root
            if s > 0 and rng.random() < 0.3:
                key = root + int(rng.choice([7, 12, -5]))
            length = (end - s) * beat / 2 * rng.uniform(0.6, 0.95)
            notes.append(
                Note((bar * 4 + s / 2) * beat, length, int(np.clip(key, 24, 52)), _vel(rng))
            )
    return notes


def _piano(
    rng: np.random.Generator, chords: list[list[int]], beat: float, n_bars: int
) -> list[Note]:
    notes: list[Note] = []
    arpeggio = rng.random() < 0.5
    for bar in range(n_bars):
        chord = chords[bar % len(chords)]
        low = int(rng.integers(48, 58))
        voicing = sorted(_near(pc, low, low + 12, rng) for pc in chord)
        bar0 = bar * 4 * beat
        if arpeggio:
            sub = int(rng.choice([2, 4]))
            pattern = voicing + [voicing[0] + 12] + voicing[1:][::-1]
            for s in range(4 * sub):
                key = pattern[s % len(pattern)]
                notes.append(Note(bar0 + s * beat / sub, beat / sub * 1.5, key, _vel(rng, 60, 100)))
        else:
            hits = [0.0, 2.0] if rng.random() < 0.5 else [0.0, 1.0, 2.0, 3.0]
            bass = voicing[0] - 12
            for h in hits:
                length = beat * (4 / len(hits)) * rng.uniform(0.7, 0.98)
                vel = _vel(rng, 65, 105)
                for key in [bass, *voicing]:
                    notes.append(Note(bar0 + h * beat, length, key, vel))
    return notes


def _guitar(
    rng: np.random.Generator,
    chords: list[list[int]],
    beat: float,
    n_bars: int,
    tonic: int,
    scale: str,
) -> list[Note]:
    notes: list[Note] = []
    if rng.random() < 0.6:  # strums
        for bar in range(n_bars):
            chord = chords[bar % len(chords)]
            low = int(rng.integers(40, 48))
            shape = sorted({_near(pc, low, low + 11, rng) for pc in chord})
            shape = shape + [k + 12 for k in shape][: int(rng.integers(1, 4))]
            mask = rng.random(8) < 0.6
            mask[0] = True
            steps = np.flatnonzero(mask)
            for i, s in enumerate(steps):
                ring = ((steps[i + 1] if i + 1 < len(steps) else 8) - s) * beat / 2
                down = s % 2 == 0
                order = shape if down else shape[::-1]
                gap = rng.uniform(0.008, 0.025)
                vel = _vel(rng, 70 if down else 55, 110 if down else 90)
                t0 = (bar * 4 + s / 2) * beat
                for j, key in enumerate(order):
                    notes.append(Note(t0 + j * gap, ring * rng.uniform(0.85, 1.0), key, vel))
    else:  # pentatonic riff
        penta = [tonic + d for d in ((0, 3, 5, 7, 10) if "minor" in scale else (0, 2, 4, 7, 9))]
        keys = [k for k in range(50, 72) if (k - tonic) % 12 in {(p - tonic) % 12 for p in penta}]
        sub = int(rng.choice([2, 4]))
        idx = int(rng.integers(0, len(keys)))
        for step in range(n_bars * 4 * sub):
            if rng.random() < 0.25:
                continue
            idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(keys) - 1))
            notes.append(Note(step * beat / sub, beat / sub * 0.9, keys[idx], _vel(rng)))
    return notes


def _vocal(
    rng: np.random.Generator,
    chords: list[list[int]],
    beat: float,
    n_bars: int,
    tonic: int,
    scale_steps: list[int],
) -> list[Note]:
    notes: list[Note] = []
    keys = [k for k in range(55, 77) if (k - tonic) % 12 in {s % 12 for s in scale_steps}]
    t = 0.0
    total = n_bars * 4 * beat
    idx = int(rng.integers(2, len(keys) - 2))
    rested = True  # no rest at the start: the loop's end may already be a gap
    while t < total - beat / 2:
        length = beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0, 3.0]))
        length = min(length, total - t)
        rest = rng.random() < 0.15  # drawn every time: the draws stay in step
        if rest and not rested:  # a short rest: at most a beat, never two in a row
            t += min(length, beat)
            rested = True
            continue
        rested = False
        idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(keys) - 1))
        notes.append(Note(t, length * 0.97, keys[idx], _vel(rng, 75, 110)))
        t += length
    return notes


def random_phrase(cls: str, rng: np.random.Generator, min_s: float = 4.5) -> Phrase:
    """A random phrase for instrument ``cls`` lasting whole bars and at least ``min_s`` s.

    Tempo 80-140 BPM, any of 12 tonics, one of :data:`SCALES`, one of :data:`PROGRESSIONS`.
    """
    tempo = float(rng.uniform(80, 140))
    beat = 60.0 / tempo
    n_bars = max(1, math.ceil(min_s / (4 * beat)))
    tonic = int(rng.integers(0, 12))
    scale_name = str(rng.choice(sorted(SCALES)))
    steps = SCALES[scale_name]
    prog = PROGRESSIONS[int(rng.integers(0, len(PROGRESSIONS)))]
    chords = [_chord(tonic, steps, d) for d in prog]
    if cls == "bass":
        notes = _bass(rng, chords, beat, n_bars)
    elif cls == "piano":
        notes = _piano(rng, chords, beat, n_bars)
    elif cls == "guitar":
        notes = _guitar(rng, chords, beat, n_bars, tonic, scale_name)
    elif cls == "vocal":
        notes = _vocal(rng, chords, beat, n_bars, tonic, [tonic + s for s in steps])
    else:
        raise ValueError(f"no phrase style for class {cls!r}")
    return Phrase(tuple(notes), tempo, tonic, scale_name, n_bars, n_bars * 4 * beat)
