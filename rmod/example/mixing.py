"""Mixing like a console: per-track chains, two shared send buses.

For every track (kick, snare, hi-hat, each instrument)::

    x --Gain--EQ--Compressor(+makeup)--Pan--Limiter(linked)-----------> track output
    |
    +--pan * delay send --> delay bus input   (one per example)
    +--pan * reverb send --> reverb bus input  (one per example)

    mix = sum of track outputs + Delay(delay bus input) + Reverb(reverb bus input)

As on a mixing console (and in pymixconsole, which the paper used), every track feeds
one shared delay bus and one shared reverb bus through its own send levels; the send is
taken from the track input and panned like the track. A bus that is switched off for
the example is not computed. Gain, EQ (low shelf, peaking bands, high shelf),
compressor, delay and reverb are pedalboard plugins. Our own parts:

* **Pan** (pedalboard has none): position ``p`` in [-1, 1], angle
  ``theta = (p + 1) * pi / 4``, gains ``L = cos(theta) ** k``, ``R = sin(theta) ** k`` with
  ``k = pan_law_db / -3``. The nominal laws: -3 dB is constant power (k = 1, a centred
  source at -3.01 dB in each channel), -6 dB constant amplitude (k = 2, -6.02 dB), -4.5 dB
  the compromise used by pymixconsole (k = 1.5, -4.52 dB). Stereo input is balance-panned (L and R
  channels scaled by their gains).
* **Limiter**: a pedalboard ``Compressor`` with ratio 1000:1 and 0.01 ms attack, so the
  sample peak stays at the threshold (within ~0.1 dB) and levels below it pass unchanged.
  It is *stereo-linked*, like hardware bus limiters: both channels get the gain reduction
  that the louder one needs, so limiting never moves a track's pan position.
  pedalboard's own ``Limiter`` adds a fixed make-up gain of ``3.75 - threshold`` dB and
  hard-clips at 0 dBFS, which clips loud tracks; we do not use it.

**Mono until the pan.** A mono source (every drum one-shot and loop of the built-in
library) runs its whole chain on one channel: Gain, EQ and compressor treat the two
channels of a centred copy identically, and a linked limiter after the pan equals one
limiter before it, at the louder channel's gain. ``tests/rmod/test_mixing.py`` checks that
the mono path equals the stereo path on a duplicated mono source (within 1e-6) at half
the cost.

Parameters are drawn into frozen records (:class:`TrackMixParams`, :class:`BusParams`)
by :func:`draw_track_mix` and :func:`draw_buses`; rendering draws nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pedalboard

if TYPE_CHECKING:  # annotations only: nothing of the recipe runs here
    from rmod.recipe.spec import BandSpec, EQSpec, LimiterSpec, MixingSpec, TrackSpec

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
    """The example's delay bus: on/off, delay time (s), feedback (0..1)."""

    active: bool
    time_s: float
    feedback: float


@dataclass(frozen=True)
class ReverbParams:
    """The example's reverb bus (Freeverb): on/off, room size, damping, width (0..1)."""

    active: bool
    room_size: float
    damping: float
    width: float


@dataclass(frozen=True)
class BusParams:
    """The two shared send buses of an example."""

    delay: DelayParams
    reverb: ReverbParams


@dataclass(frozen=True)
class TrackMixParams:
    """Every drawn mixing parameter of one track, with its send levels (dB) to the buses."""

    gain_db: float
    eq: EQParams
    compressor: CompressorParams
    pan: float
    limiter: LimiterParams
    delay_send_db: float
    reverb_send_db: float


# ----------------------------------------------------------------------------- drawing
def _band(spec: BandSpec, rng: np.random.Generator) -> BandParams:
    return BandParams(
        freq_hz=float(spec.freq_hz.sample(rng)),
        gain_db=float(spec.gain_db.sample(rng)),
        q=float(spec.q.sample(rng)),
    )


def draw_eq(spec: EQSpec, rng: np.random.Generator) -> EQParams:
    """Draw an EQ from a recipe ``EQSpec``: low shelf, each peak, high shelf (in that order)."""
    low = _band(spec.low_shelf, rng)
    peaks = tuple(_band(p, rng) for p in spec.peaks)
    high = _band(spec.high_shelf, rng)
    return EQParams(low_shelf=low, peaks=peaks, high_shelf=high)


def draw_limiter(spec: LimiterSpec, rng: np.random.Generator) -> LimiterParams:
    """Draw limiter settings from a recipe ``LimiterSpec``."""
    return LimiterParams(
        threshold_db=float(spec.threshold_db.sample(rng)),
        release_ms=float(spec.release_ms.sample(rng)),
    )


def draw_track_mix(
    track_spec: TrackSpec, mixing_spec: MixingSpec, rng: np.random.Generator
) -> TrackMixParams:
    """Draw every parameter of one track's chain and its two send levels (recipe
    ``TrackSpec`` + ``MixingSpec``), in a fixed order: gain, pan, EQ, compressor, limiter,
    delay send, reverb send. Sends are drawn even when a bus is off, so switching a bus
    never shifts the other draws."""
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
    return TrackMixParams(
        gain_db=gain,
        eq=eq,
        compressor=comp,
        pan=pan,
        limiter=lim,
        delay_send_db=float(mixing_spec.delay.send_db.sample(rng)),
        reverb_send_db=float(mixing_spec.reverb.send_db.sample(rng)),
    )


def draw_buses(mixing_spec: MixingSpec, rng: np.random.Generator) -> BusParams:
    """Draw the example's delay bus, then its reverb bus (recipe ``MixingSpec``)."""
    d, r = mixing_spec.delay, mixing_spec.reverb
    delay = DelayParams(
        active=bool(d.active.sample(rng)),
        time_s=float(d.time_s.sample(rng)),
        feedback=float(d.feedback.sample(rng)),
    )
    reverb = ReverbParams(
        active=bool(r.active.sample(rng)),
        room_size=float(r.room_size.sample(rng)),
        damping=float(r.damping.sample(rng)),
        width=float(r.width.sample(rng)),
    )
    return BusParams(delay=delay, reverb=reverb)


# ----------------------------------------------------------------------------- rendering
def eq_plugins(eq: EQParams) -> list[pedalboard.Plugin]:
    """pedalboard filters for an EQ, low shelf first."""
    plugins: list[pedalboard.Plugin] = [
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
    """Balance-pan ``[2, n]`` audio; mono ``[1, n]`` is panned to ``[2, n]``."""
    left, right = pan_gains(position, pan_law_db)
    gains = np.array([[left], [right]], dtype=np.float32)
    return audio * gains


def _run(plugins: list, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    board = pedalboard.Pedalboard(plugins)
    return board(np.ascontiguousarray(audio, dtype=np.float32), sample_rate)


def linked_limit(audio: np.ndarray, params: LimiterParams, sample_rate: int) -> np.ndarray:
    """Stereo-linked peak limiting of ``[2, n]``: the limiter runs on the louder channel's
    magnitude and its gain reduction is applied to both channels."""
    side = np.max(np.abs(audio), axis=0, keepdims=True)
    if _below(side, params.threshold_db):
        return audio
    limited = _run([limiter_plugin(params)], side, sample_rate)
    gain = np.divide(limited, side, out=np.ones_like(side), where=side > 0)
    return audio * gain


def _below(audio: np.ndarray, threshold_db: float) -> bool:
    """True when every sample stays 0.01 dB or more below ``threshold_db``: a compressor or
    limiter (whose envelope never exceeds the signal's peak) then multiplies every sample
    by exactly 1, so it can be skipped."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return peak < 10.0 ** ((threshold_db - 0.01) / 20.0)


def _compress(audio: np.ndarray, c: CompressorParams, sample_rate: int) -> np.ndarray:
    if _below(audio, c.threshold_db):
        return audio
    fx = pedalboard.Compressor(
        threshold_db=c.threshold_db, ratio=c.ratio, attack_ms=c.attack_ms, release_ms=c.release_ms
    )
    return _run([fx], audio, sample_rate)


def _limit(audio: np.ndarray, params: LimiterParams, sample_rate: int) -> np.ndarray:
    if _below(audio, params.threshold_db):
        return audio
    return _run([limiter_plugin(params)], audio, sample_rate)


def process_track(
    audio: np.ndarray, params: TrackMixParams, sample_rate: int, pan_law_db: float
) -> np.ndarray:
    """Run one track ``[1 or 2, n]`` through its chain (no sends); returns ``[2, n]``.

    A mono track stays mono until the pan: the linked limiter then runs once, on the
    louder channel's signal, and the pan splits it. Work that cannot change a sample is
    skipped: leading digital silence (a drum track before its first hit; every stage maps
    silence to silence) and a compressor or limiter whose threshold the signal never
    reaches (both multiply by exactly 1 below it).
    """
    n = audio.shape[-1]
    first = int(np.argmax(np.any(audio != 0, axis=0))) if n else 0
    out = np.zeros((2, n), dtype=np.float32)
    if n == 0 or not audio[:, first].any():
        return out
    chain = [pedalboard.Gain(gain_db=params.gain_db), *eq_plugins(params.eq)]
    shaped = _compress(_run(chain, audio[:, first:], sample_rate), params.compressor, sample_rate)
    makeup = 10.0 ** (params.compressor.makeup_db / 20.0)
    left, right = pan_gains(params.pan, pan_law_db)
    if shaped.shape[0] == 2:
        panned = pan(shaped * np.float32(makeup), params.pan, pan_law_db)
        out[:, first:] = linked_limit(panned, params.limiter, sample_rate)
        return out
    loud = max(left, right)
    if loud == 0.0:
        return out
    limited = _limit(shaped * np.float32(makeup * loud), params.limiter, sample_rate)
    out[:, first:] = limited * np.array([[left / loud], [right / loud]], dtype=np.float32)
    return out


def send(panned: np.ndarray, send_db: float) -> np.ndarray:
    """What a track sends to a bus: its input panned like the track (:func:`pan`, computed
    once for both buses), at ``send_db``."""
    return panned * np.float32(10.0 ** (send_db / 20.0))


def process_buses(
    delay_in: np.ndarray | None,
    reverb_in: np.ndarray | None,
    buses: BusParams,
    sample_rate: int,
) -> dict[str, np.ndarray]:
    """The active buses' outputs (fully wet, ``[2, n]``), by name ``delay``/``reverb``."""
    out: dict[str, np.ndarray] = {}
    fx: pedalboard.Plugin
    if buses.delay.active and delay_in is not None:
        d = buses.delay
        fx = pedalboard.Delay(delay_seconds=d.time_s, feedback=d.feedback, mix=1.0)
        out["delay"] = _run([fx], delay_in, sample_rate)
    if buses.reverb.active and reverb_in is not None:
        r = buses.reverb
        fx = pedalboard.Reverb(
            room_size=r.room_size, damping=r.damping, wet_level=1.0, dry_level=0.0, width=r.width
        )
        out["reverb"] = _run([fx], reverb_in, sample_rate)
    return out
