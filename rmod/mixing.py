"""Per-track mixing: Gain -> EQ -> Compressor -> Pan -> Limiter, plus parallel sends.

For every track (kick, snare, hi-hat, each instrument)::

    x --Gain--EQ--Compressor(+makeup)--Pan--Limiter--+--> track output
    |                                                 |
    +--Delay (fully wet) * send -----------------------+
    +--Reverb (fully wet) * send ----------------------+

Gain, EQ (low shelf, peaking bands, high shelf), compressor, delay and reverb are
pedalboard plugins. Two parts are ours:

* **Pan** (pedalboard has none): position ``p`` in [-1, 1], angle
  ``theta = (p + 1) * pi / 4``, gains ``L = cos(theta) ** k``, ``R = sin(theta) ** k`` with
  ``k = pan_law_db / -3``. The nominal laws: -3 dB is constant power (k = 1, a centred
  source at -3.01 dB in each channel), -6 dB constant amplitude (k = 2, -6.02 dB), -4.5 dB
  the compromise used by pymixconsole (k = 1.5, -4.52 dB). Stereo input is balance-panned (L and R
  channels scaled by their gains).
* **Limiter**: a pedalboard ``Compressor`` with ratio 1000:1 and 0.01 ms attack, so the
  sample peak stays at the threshold (within ~0.1 dB) and levels below it pass unchanged.
  pedalboard's own ``Limiter`` adds a fixed make-up gain of ``3.75 - threshold`` dB and
  hard-clips at 0 dBFS, which clips loud tracks; we do not use it.

Parameters are drawn into frozen records (:class:`TrackMixParams`) by
:func:`draw_track_mix`; :func:`process_track` renders from them and draws nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pedalboard

LIMITER_RATIO = 1000.0
LIMITER_ATTACK_MS = 0.01


@dataclass(frozen=True)
class BandParams:
    """One EQ band: frequency (Hz), gain (dB), Q."""

    freq_hz: float
    gain_db: float
    q: float


@dataclass(frozen=True)
class EQParams:
    """Low shelf, peaking bands (in order), high shelf."""

    low_shelf: BandParams
    peaks: tuple[BandParams, ...]
    high_shelf: BandParams


@dataclass(frozen=True)
class CompressorParams:
    """Compressor threshold (dBFS), ratio, attack/release (ms) and makeup gain (dB)."""

    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    makeup_db: float


@dataclass(frozen=True)
class LimiterParams:
    """Peak limiter threshold (dBFS sample peak) and release (ms)."""

    threshold_db: float
    release_ms: float


@dataclass(frozen=True)
class DelayParams:
    """Parallel delay: on/off, delay time (s), feedback (0..1), send level (dB)."""

    active: bool
    time_s: float
    feedback: float
    send_db: float


@dataclass(frozen=True)
class ReverbParams:
    """Parallel reverb: on/off, room size, damping, width (0..1), send level (dB)."""

    active: bool
    room_size: float
    damping: float
    width: float
    send_db: float


@dataclass(frozen=True)
class TrackMixParams:
    """Every drawn mixing parameter of one track."""

    gain_db: float
    eq: EQParams
    compressor: CompressorParams
    pan: float
    limiter: LimiterParams
    delay: DelayParams
    reverb: ReverbParams


# ----------------------------------------------------------------------------- drawing
def _band(spec, rng: np.random.Generator) -> BandParams:
    return BandParams(
        freq_hz=float(spec.freq_hz.sample(rng)),
        gain_db=float(spec.gain_db.sample(rng)),
        q=float(spec.q.sample(rng)),
    )


def draw_eq(spec, rng: np.random.Generator) -> EQParams:
    """Draw an EQ from a recipe ``EQSpec``: low shelf, each peak, high shelf (in that order)."""
    low = _band(spec.low_shelf, rng)
    peaks = tuple(_band(p, rng) for p in spec.peaks)
    high = _band(spec.high_shelf, rng)
    return EQParams(low_shelf=low, peaks=peaks, high_shelf=high)


def draw_limiter(spec, rng: np.random.Generator) -> LimiterParams:
    """Draw limiter settings from a recipe ``LimiterSpec``."""
    return LimiterParams(
        threshold_db=float(spec.threshold_db.sample(rng)),
        release_ms=float(spec.release_ms.sample(rng)),
    )


def draw_track_mix(track_spec, mixing_spec, rng: np.random.Generator) -> TrackMixParams:
    """Draw every parameter of one track's chain (recipe ``TrackSpec`` + ``MixingSpec``).

    All parameters are drawn, in a fixed order, even for a bypassed delay or reverb,
    so one switch never shifts the other draws.
    """
    gain = float(track_spec.gain_db.sample(rng))
    pan = float(track_spec.pan.sample(rng))
    eq = draw_eq(mixing_spec.eq, rng)
    c = mixing_spec.compressor
    comp = CompressorParams(
        threshold_db=float(c.threshold_db.sample(rng)),
        ratio=float(c.ratio.sample(rng)),
        attack_ms=float(c.attack_ms.sample(rng)),
        release_ms=float(c.release_ms.sample(rng)),
        makeup_db=float(c.makeup_db.sample(rng)),
    )
    lim = draw_limiter(mixing_spec.limiter, rng)
    d = mixing_spec.delay
    delay = DelayParams(
        active=bool(d.active.sample(rng)),
        time_s=float(d.time_s.sample(rng)),
        feedback=float(d.feedback.sample(rng)),
        send_db=float(d.send_db.sample(rng)),
    )
    r = mixing_spec.reverb
    reverb = ReverbParams(
        active=bool(r.active.sample(rng)),
        room_size=float(r.room_size.sample(rng)),
        damping=float(r.damping.sample(rng)),
        width=float(r.width.sample(rng)),
        send_db=float(r.send_db.sample(rng)),
    )
    return TrackMixParams(
        gain_db=gain, eq=eq, compressor=comp, pan=pan, limiter=lim, delay=delay, reverb=reverb
    )


# ----------------------------------------------------------------------------- rendering
def eq_plugins(eq: EQParams) -> list:
    """pedalboard filters for an EQ, low shelf first."""
    plugins = [
        pedalboard.LowShelfFilter(
            cutoff_frequency_hz=eq.low_shelf.freq_hz, gain_db=eq.low_shelf.gain_db, q=eq.low_shelf.q
        )
    ]
    plugins += [
        pedalboard.PeakFilter(cutoff_frequency_hz=b.freq_hz, gain_db=b.gain_db, q=b.q)
        for b in eq.peaks
    ]
    plugins.append(
        pedalboard.HighShelfFilter(
            cutoff_frequency_hz=eq.high_shelf.freq_hz,
            gain_db=eq.high_shelf.gain_db,
            q=eq.high_shelf.q,
        )
    )
    return plugins


def limiter_plugin(params: LimiterParams) -> pedalboard.Compressor:
    """Our peak limiter: a 1000:1 compressor with 0.01 ms attack (see module docstring)."""
    return pedalboard.Compressor(
        threshold_db=params.threshold_db,
        ratio=LIMITER_RATIO,
        attack_ms=LIMITER_ATTACK_MS,
        release_ms=params.release_ms,
    )


def pan_gains(position: float, pan_law_db: float) -> tuple[float, float]:
    """Left and right gains for a pan ``position`` in [-1, 1] (see the module docstring)."""
    p = min(max(float(position), -1.0), 1.0)
    theta = (p + 1.0) * math.pi / 4.0
    k = pan_law_db / -3.0
    return math.cos(theta) ** k, math.sin(theta) ** k


def pan(audio: np.ndarray, position: float, pan_law_db: float) -> np.ndarray:
    """Balance-pan stereo ``[2, n]`` audio (mono ``[1, n]`` is first copied to both channels)."""
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    left, right = pan_gains(position, pan_law_db)
    gains = np.array([[left], [right]], dtype=np.float32)
    return (audio * gains).astype(np.float32)


def _run(plugins: list, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    board = pedalboard.Pedalboard(plugins)
    return board(np.ascontiguousarray(audio, dtype=np.float32), sample_rate)


def process_track(
    audio: np.ndarray, params: TrackMixParams, sample_rate: int, pan_law_db: float
) -> np.ndarray:
    """Run one track ``[2, n]`` through its chain and parallel sends; returns ``[2, n]``."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    c = params.compressor
    pre = [pedalboard.Gain(gain_db=params.gain_db)] + eq_plugins(params.eq)
    pre += [
        pedalboard.Compressor(
            threshold_db=c.threshold_db,
            ratio=c.ratio,
            attack_ms=c.attack_ms,
            release_ms=c.release_ms,
        ),
        pedalboard.Gain(gain_db=c.makeup_db),
    ]
    main = _run(pre, audio, sample_rate)
    main = pan(main, params.pan, pan_law_db)
    out = _run([limiter_plugin(params.limiter)], main, sample_rate)
    if params.delay.active:
        d = params.delay
        wet = _run(
            [pedalboard.Delay(delay_seconds=d.time_s, feedback=d.feedback, mix=1.0)],
            audio,
            sample_rate,
        )
        out = out + np.float32(10.0 ** (d.send_db / 20.0)) * wet
    if params.reverb.active:
        r = params.reverb
        verb = pedalboard.Reverb(
            room_size=r.room_size, damping=r.damping, wet_level=1.0, dry_level=0.0, width=r.width
        )
        wet = _run([verb], audio, sample_rate)
        out = out + np.float32(10.0 ** (r.send_db / 20.0)) * wet
    return out.astype(np.float32, copy=False)
