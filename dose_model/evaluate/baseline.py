"""The separation-based baselines: separate the drums, then pick an isolated hit.

The paper's baseline separates the drums from the mixture with LarsNet, then picks an isolated
one-shot from each separated stem (how it picked is not published). This module owns the
picking, for every separator:

* **LarsNet** (`larsnet_oneshots`): the released U-Nets (`dose_model.separate.larsnet`),
  given their checkpoint folder; each drum's stereo stem is averaged to mono and picked.
* **DSP** (`baseline_oneshots`), which needs no weights: median-filtering harmonic/percussive
  separation (``librosa.effects.hpss``) keeps the percussive part of the mixture; a 4th-order
  zero-phase Butterworth band-pass then keeps the drum's band (`BANDS`: kick 30-150 Hz,
  snare 150 Hz-5 kHz, hi-hat 6-16 kHz). That is the drum's "stem".

**Pick** (`pick_hit`, the same for both). Onsets of the stem (`detect_onsets`: rises of its
level within `RANGE_DB` of the peak, at least `MIN_GAP_S` apart, placed at the attack) cut it
into hits; a hit runs from its onset to the next onset or to ``length`` samples, whichever is
first. Among the hits with at least `LOUD_ENOUGH` of the loudest hit's energy, the most
isolated one wins: the one whose stem holds the largest share of the mixture's energy over the
same samples (least covered by other sounds). Its tail is gated where the envelope stays
`GATE_DB` below the peak and fades out over `FADE_S`; the rest of ``length`` is silence.
The settings were tuned on the DSP stems and are recorded with every evaluation
(`PICKER_SETTINGS`).

A stem without onsets gives silence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import librosa
import numpy as np
from scipy.signal import butter, sosfiltfilt

if TYPE_CHECKING:  # torch is imported only by the caller that runs LarsNet
    from dose_model.separate.larsnet import LarsNet

BANDS = {"kick": (30.0, 150.0), "snare": (150.0, 5000.0), "hihat": (6000.0, 16000.0)}
"""Pass band in Hz of each drum's stem."""
FADE_S = 0.010
"""Fade-out at the end of the picked hit."""
MIN_GAP_S = 0.03
"""Onsets closer than this count as one hit."""
LOUD_ENOUGH = 0.25
"""Candidate hits carry at least this fraction of the loudest hit's energy."""
RANGE_DB = 30.0
"""Onsets are looked for only where the stem is within this many dB of its peak level."""
GATE_DB = -40.0
"""The hit ends where its envelope last rises above this level relative to its peak."""


def percussive_part(mixture: np.ndarray) -> np.ndarray:
    """The percussive part of a mono mixture (median-filtering HPSS, 2048-point STFT),
    float32, same length; shared by every drum's stem. A mixture shorter than one STFT frame
    is zero-padded for the separation.

    Raises:
        ValueError: the mixture is not 1-D or holds non-finite samples.
    """
    x = np.asarray(mixture, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono mixture [samples], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the mixture holds NaN or infinite samples")
    n = x.shape[0]
    padded = np.pad(x, (0, max(0, 2048 - n)))
    return librosa.effects.percussive(padded)[:n].astype(np.float32)


def separate(
    mixture: np.ndarray, sample_rate: int, drum: str, percussive: np.ndarray | None = None
) -> np.ndarray:
    """The drum's stem of a mono mixture: its percussive part (`percussive_part`, or the one
    given), band-passed to ``BANDS[drum]``; float32 ``[samples]``. A band that lies above the
    Nyquist frequency gives silence."""
    if drum not in BANDS:
        raise ValueError(f"unknown drum {drum!r}; expected one of {sorted(BANDS)}")
    if percussive is None:
        percussive = percussive_part(mixture)
    low, high = BANDS[drum]
    high = min(high, 0.45 * sample_rate)
    if low >= high or percussive.shape[0] <= 27:  # 27: sosfiltfilt's padding of this filter
        return np.zeros_like(percussive)
    sos = butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, percussive).astype(np.float32)


def detect_onsets(stem: np.ndarray, sample_rate: int) -> np.ndarray:
    """Sample positions where the stem's level rises: the positive slope of its RMS level in
    dB (1024-sample frames, 256-sample hop: 23 ms and 5.8 ms at 44.1 kHz), counted only within
    `RANGE_DB` of the stem's peak level and peak-picked at least `MIN_GAP_S` apart; each placed
    at its attack (see below)."""
    hop = 256
    rms = librosa.feature.rms(y=stem, frame_length=1024, hop_length=hop)[0]
    level = 20.0 * np.log10(rms + 1e-9)
    rise = np.maximum(0.0, np.diff(level, prepend=level[0]))
    rise[level < level.max() - RANGE_DB] = 0.0
    wait = max(1, int(MIN_GAP_S * sample_rate / hop))
    frames = librosa.onset.onset_detect(
        onset_envelope=rise, sr=sample_rate, hop_length=hop, units="frames", wait=wait
    )
    # Look for the attack within +-1024 samples of frame * hop (the frame spans +-512): the
    # first sample reaching 30 % of the window's peak (the percussive part's STFT smears an
    # attack up to 23 ms earlier at a lower level), minus a 2 ms pre-roll.
    onsets = []
    for frame in frames:
        a = max(0, frame * hop - 1024)
        b = min(stem.shape[0], frame * hop + 1024)
        mag = np.abs(stem[a:b])
        first = int(np.argmax(mag >= 0.3 * mag.max())) if b > a else 0
        onsets.append(max(0, a + first - int(0.002 * sample_rate)))
    return np.unique(np.asarray(onsets, dtype=np.int64))  # sorted; merges equal positions


def pick_hit(stem: np.ndarray, mixture: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
    """The most isolated loud hit of ``stem`` (see the module docstring), float32 ``[length]``."""

    onsets = detect_onsets(stem, sample_rate)
    out = np.zeros(max(0, length), dtype=np.float32)
    if onsets.size == 0 or length <= 0:
        return out
    ends = np.minimum(np.append(onsets[1:], stem.shape[0]), onsets + length)
    stem64, mix64 = stem.astype(np.float64), mixture.astype(np.float64)
    energy = np.array([np.sum(stem64[a:b] ** 2) for a, b in zip(onsets, ends, strict=True)])
    purity = np.array(
        [
            e / max(np.sum(mix64[a:b] ** 2), 1e-12)
            for e, a, b in zip(energy, onsets, ends, strict=True)
        ]
    )
    loud = energy >= LOUD_ENOUGH * energy.max()
    best = int(np.argmax(np.where(loud, purity, -1.0)))
    start, end = int(onsets[best]), int(ends[best])
    hit = stem[start:end].copy()
    # Gate the tail: end where the hit's 10 ms envelope stays below GATE_DB under its peak.
    win = max(1, min(hit.shape[0], round(0.010 * sample_rate)))
    env = np.sqrt(np.convolve(hit.astype(np.float64) ** 2, np.ones(win) / win, mode="same"))
    above = np.nonzero(env >= env.max() * 10 ** (GATE_DB / 20))[0]
    cut = int(above[-1]) + 1 if above.size else hit.shape[0]
    hit = hit[:cut]
    fade = min(hit.shape[0], int(FADE_S * sample_rate))
    if fade:
        hit[hit.shape[0] - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    out[: hit.shape[0]] = hit
    return out


#: The picker's settings, recorded beside every evaluation's results.
PICKER_SETTINGS = {
    "fade_s": FADE_S,
    "min_gap_s": MIN_GAP_S,
    "loud_enough": LOUD_ENOUGH,
    "range_db": RANGE_DB,
    "gate_db": GATE_DB,
}


def pick_oneshots(
    stems: Mapping[str, np.ndarray],
    mixture: np.ndarray,
    sample_rate: int,
    length: int | Mapping[str, int],
) -> dict[str, np.ndarray]:
    """`pick_hit` on each drum's mono stem ``[samples]`` against the mono mixture: float32
    ``[length]`` (or ``[length[drum]]``) per drum. Every separator's stems go through here."""
    out = {}
    for drum, stem in stems.items():
        n = length[drum] if isinstance(length, Mapping) else length
        out[drum] = pick_hit(np.asarray(stem, dtype=np.float32), mixture, sample_rate, n)
    return out


def larsnet_oneshots(
    net: LarsNet,
    mixture: np.ndarray,
    sample_rate: int,
    drums: Sequence[str],
    length: int | Mapping[str, int],
    wiener_alpha: float | None = None,
) -> dict[str, np.ndarray]:
    """LarsNet's one-shot of each drum: ``mixture`` float32 ``[channels, samples]`` (mono or
    stereo, any rate) separated by ``net``, each drum's stem averaged to mono and picked
    (`pick_oneshots`) against the mono mean of the mixture; float32 ``[length]`` per drum."""
    mix = np.asarray(mixture, dtype=np.float32)
    if mix.ndim == 1:
        mix = mix[None]
    stems = net.separate(mix, sample_rate=sample_rate, wiener_alpha=wiener_alpha, stems=drums)
    mono = {drum: stems[drum].mean(axis=0) for drum in drums}
    return pick_oneshots(mono, mix.mean(axis=0), sample_rate, length)


def baseline_oneshots(
    mixture: np.ndarray, sample_rate: int, drums: Sequence[str], length: int | dict[str, int]
) -> dict[str, np.ndarray]:
    """The baseline's one-shot of each drum (one separation shared by all), float32
    ``[length]`` (or ``[length[drum]]``)."""
    percussive = percussive_part(mixture)
    stems = {drum: separate(mixture, sample_rate, drum, percussive) for drum in drums}
    return pick_oneshots(stems, mixture, sample_rate, length)


def baseline_oneshot(mixture: np.ndarray, sample_rate: int, drum: str, length: int) -> np.ndarray:
    """`separate` then `pick_hit`: the baseline's one-shot of ``drum``, float32 ``[length]``."""
    return baseline_oneshots(mixture, sample_rate, [drum], length)[drum]
