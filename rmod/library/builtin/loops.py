"""Instrument loops of the built-in library: phrases played by General MIDI programs.

Each loop draws (from its own generator) a program of its class's :data:`PROGRAMS`
groups, a phrase (:mod:`rmod.library.builtin.phrases`) and, per class:

* guitar: with probability :data:`DRIVE_P` an overdrive (tanh waveshaper, 12-30 dB of
  drive, a 2nd-order low-pass "cabinet" at 7-12 kHz): distorted guitars fill the top end
  of real mixes;
* piano (keys): acoustic/electric pianos, organs, or bright synth leads and pads;
* vocal: with probability :data:`SPEECH_P`, when ``espeak-ng`` is installed, a speech loop
  (:mod:`rmod.library.builtin.voice`) with consonants; else choir/voice programs with vibrato;
* every loop: its DC offset removed (soundfont samples can carry one);
* every class but bass: with probability :data:`AIR_P` a high-shelf "air" boost of 4-14 dB
  from 2.5-7 kHz, as a mix engineer brightens a part (soundfont samples are often dull);
* keys, guitars and vocals: then, with probability :data:`EXCITER_P`, an exciter
  (:func:`exciter`): the upper mids saturated into harmonics above 4-6 kHz and mixed in,
  as a production brightens keys, guitars and vocals (the issue 12 high-band target).

**No silent stretch**, whatever the sources: every :data:`LOOP_WINDOW_S` window of a loop
(hop a quarter of it, wrapping around the loop's end) must have an RMS at most
:data:`QUIET_WINDOW_DB` below the loop's peak (:func:`quietest_window_db`). A loop that
fails (a phrase with a long rest, a program whose samples miss some keys) is drawn again
from the same generator, up to :data:`MAX_LOOP_TRIES` times, so the library stays the same
for the same sources; a font that never passes is a one-line
:class:`rmod.library.builtin.sf2.SoundFontError`.

The melodic soundfont is the best General MIDI font found (lowest rank) that holds a program
of the class. Note tails past
the loop end wrap to its start so the loop repeats seamlessly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import butter, lfilter, resample_poly, sosfilt

from rmod.library.builtin.phrases import random_phrase
from rmod.library.builtin.sf2 import SoundFontError, load_soundfont, render_note
from rmod.library.builtin.voice import speech_loop

if TYPE_CHECKING:
    from collections.abc import Callable

    from rmod.library.builtin.sf2 import SoundFont

#: Program groups per class: (weight, GM programs).
PROGRAMS = {
    "bass": ((1.0, tuple(range(32, 40))),),
    "piano": (
        (0.3, tuple(range(0, 8))),
        (0.3, (16, 17, 18, 19)),  # drawbar, percussive, rock and church organ
        (0.4, (62, 63, 80, 81, 84, 87, 90)),  # synth brass, square/saw/charang/bass leads, pad
    ),
    "guitar": ((1.0, tuple(range(24, 32))),),
    "vocal": ((1.0, (52, 53, 54, 85)),),  # choir aahs, voice oohs, synth voice, solo vox
}
DRIVE_P = 0.9
SPEECH_P = 0.9
AIR_P = 0.9
EXCITER_P = {"piano": 0.9, "guitar": 0.85, "vocal": 0.9}
#: The no-silent-stretch rule: window length (s), and how far below the loop's peak (dB)
#: a window's RMS may be. The built-in library's loops peak at -6..-1 dBFS, so every
#: second of one is louder than -44 dBFS.
LOOP_WINDOW_S = 1.0
QUIET_WINDOW_DB = 38.0
MAX_LOOP_TRIES = 8


def quietest_window_db(x: np.ndarray, sr: int, window_s: float = LOOP_WINDOW_S) -> float:
    """RMS (dB) of the quietest ``window_s`` window of loop ``x`` (mono, ``sr`` Hz) re its
    peak; windows start every quarter window and wrap around the loop's end (-inf for
    silence; a loop shorter than a window is one window)."""
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return -np.inf
    n = min(x.size, max(1, int(round(window_s * sr))))
    hop = max(1, n // 4)
    power = np.concatenate([[0.0], np.cumsum(np.concatenate([x, x[: n - 1]]) ** 2)])
    starts = np.arange(0, x.size, hop)
    rms = np.sqrt(np.maximum(power[starts + n] - power[starts], 0.0) / n)
    return float(20 * np.log10(max(float(rms.min()), 1e-300) / peak))


def until_sound(
    make: Callable[[], tuple[np.ndarray, str]], what: str, sr: int
) -> tuple[np.ndarray, str]:
    """The first of up to :data:`MAX_LOOP_TRIES` loops ``make()`` gives (``(audio, how)``)
    that has no silent stretch (:func:`quietest_window_db` >= -:data:`QUIET_WINDOW_DB`);
    :class:`SoundFontError` naming ``what`` when none has."""
    worst = -np.inf
    for _ in range(MAX_LOOP_TRIES):
        x, how = make()
        quiet = quietest_window_db(x, sr)
        if quiet >= -QUIET_WINDOW_DB:
            return x, how
        worst = max(worst, quiet)
    raise SoundFontError(
        f"{what}: no loop without a silent stretch in {MAX_LOOP_TRIES} tries (best: a "
        f"{LOOP_WINDOW_S:g} s window {-worst:.0f} dB below the peak; QUIET_WINDOW_DB = "
        f"{QUIET_WINDOW_DB:g})"
    )


def high_shelf(x: np.ndarray, freq: float, gain_db: float, sr: int) -> np.ndarray:
    """RBJ high shelf (slope 1) at ``freq`` Hz, ``gain_db`` dB, applied circularly so a
    loop stays seamless."""
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sr
    cw, alpha = np.cos(w0), np.sin(w0) / 2 * np.sqrt(2)
    sq = 2 * np.sqrt(a_) * alpha
    b = a_ * np.array([(a_ + 1) + (a_ - 1) * cw + sq, -2 * ((a_ - 1) + (a_ + 1) * cw), 0.0])
    b[2] = a_ * ((a_ + 1) + (a_ - 1) * cw - sq)
    a = np.array([(a_ + 1) - (a_ - 1) * cw + sq, 2 * ((a_ - 1) - (a_ + 1) * cw), 0.0])
    a[2] = (a_ + 1) - (a_ - 1) * cw - sq
    return _circular(lambda y: lfilter(b / a[0], a / a[0], y), x)


def _circular(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, k: int = 4096) -> np.ndarray:
    """Apply a causal filter to a loop as if it had been playing: its end runs in first."""
    k = min(x.size, k)
    return fn(np.concatenate([x[-k:], x]))[k:]


def overdrive(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Tanh overdrive with a random drive (12-30 dB) and a low-pass cabinet (7-12 kHz)."""
    peak = float(np.max(np.abs(x))) or 1.0
    drive = 10 ** (rng.uniform(12, 30) / 20)
    y = np.tanh(drive * x / peak + rng.uniform(0.0, 0.2))  # a bias adds even harmonics
    y -= np.mean(y)
    cab = butter(2, min(rng.uniform(7000, 12000), 0.45 * sr), btype="low", fs=sr, output="sos")
    return _circular(lambda v: sosfilt(cab, v), y)


def exciter(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """``x`` plus harmonics of its upper mids: a 2nd-order high-pass at 1.5-3.5 kHz, a tanh
    at 6-18 dB of drive (with a bias for even harmonics; 2x oversampled against aliasing),
    a 2nd-order high-pass at 4-6 kHz, mixed in at -10..-3 dB re ``x``'s RMS. Circular
    filters, so a loop stays seamless."""
    rms = float(np.sqrt(np.mean(x**2)))
    side = butter(2, rng.uniform(1500, 3500), btype="high", fs=sr, output="sos")
    h = _circular(lambda v: sosfilt(side, v), x)
    h /= float(np.max(np.abs(h))) or 1.0
    bias = rng.uniform(0.0, 0.3)
    drive = 10 ** (rng.uniform(6, 18) / 20)
    s = resample_poly(np.tanh(drive * resample_poly(h, 2, 1) + bias) - np.tanh(bias), 1, 2)
    top = butter(2, min(rng.uniform(4000, 6000), 0.45 * sr), btype="high", fs=sr, output="sos")
    s = _circular(lambda v: sosfilt(top, v), s)
    s_rms = float(np.sqrt(np.mean(s**2)))
    if rms == 0.0 or s_rms == 0.0:
        return x
    return x + s * (rms / s_rms) * 10 ** (rng.uniform(-10, -3) / 20)


def has_programs(cls: str, font: str) -> bool:
    """Whether bank 0 of ``font`` holds any program of class ``cls``'s groups."""
    sf = load_soundfont(font)
    return any(sf.has_preset(0, p) for _, group in PROGRAMS[cls] for p in group)


def _program(cls: str, rng: np.random.Generator, sf: SoundFont) -> int:
    groups = PROGRAMS[cls]
    weights = np.array([w for w, _ in groups])
    group = groups[int(rng.choice(len(groups), p=weights / weights.sum()))][1]
    programs = [p for p in group if sf.has_preset(0, p)]
    if not programs:
        programs = [p for _, g in groups for p in g if sf.has_preset(0, p)]
    return int(rng.choice(programs))


def render_loop(
    cls: str, rng: np.random.Generator, font: str, min_s: float, sr: int, speech: bool
) -> tuple[np.ndarray, str]:
    """A seamless loop of instrument ``cls`` without a silent stretch (module docstring):
    ``(float mono audio, what played it)``.

    ``font``: the melodic soundfont's path; ``speech``: whether espeak-ng may be used.
    """

    def one() -> tuple[np.ndarray, str]:
        if cls == "vocal" and speech and rng.random() < SPEECH_P:
            phrase = random_phrase(cls, rng, min_s)
            return _finish(cls, speech_loop(rng, phrase.duration, sr), rng, sr), "espeak-ng"
        program = _program(cls, rng, load_soundfont(font))
        return program_loop(cls, rng, font, program, min_s, sr)

    return until_sound(one, f"{font}: {cls}", sr)


def program_loop(
    cls: str, rng: np.random.Generator, font: str, program: int, min_s: float, sr: int
) -> tuple[np.ndarray, str]:
    """A seamless loop of a random ``cls`` phrase on bank-0 ``program`` of ``font``."""
    sf = load_soundfont(font)
    phrase = random_phrase(cls, rng, min_s)
    n = int(round(phrase.duration * sr))
    out = np.zeros(n, dtype=np.float64)
    for note in phrase.notes:
        vib = None
        if cls == "vocal":
            vib = (float(rng.uniform(4.5, 6.5)), float(rng.uniform(15, 45)), 0.15)
        x = render_note(sf, 0, program, note.key, note.velocity, note.length, sr, vibrato=vib)
        start = int(round(note.start * sr)) % n
        x = x[:n]  # a tail longer than the loop would overlap itself
        first = min(x.size, n - start)
        out[start : start + first] += x[:first]
        out[: x.size - first] += x[first:]
    if not np.any(out) or not np.all(np.isfinite(out)):
        raise SoundFontError(f"{font}: program {program} rendered silence for {cls}")
    how = f"program {program}"
    if cls == "guitar" and rng.random() < DRIVE_P:
        out = overdrive(out, rng, sr)
        how += " overdrive"
    return _finish(cls, out, rng, sr), how


def _finish(cls: str, x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """DC removed (a loop's mean), then the air shelf and the exciter (each with its
    class's probability)."""
    x = x - np.mean(x)
    if cls != "bass" and rng.random() < AIR_P:
        x = high_shelf(x, float(rng.uniform(2500, 7000)), float(rng.uniform(4, 14)), sr)
    if cls in EXCITER_P and rng.random() < EXCITER_P[cls]:
        x = exciter(x, rng, sr)
    return x
