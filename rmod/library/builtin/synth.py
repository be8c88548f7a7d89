"""Parametric drum synthesis: kicks, snares and hi-hats with randomized parameters.

Every function takes an explicit ``numpy.random.Generator`` and returns float32 mono
audio ``[samples]`` at ``sr`` Hz, peak-normalized to 0.9, starting at sample 0 (the
onset) with a decaying envelope.

* kick: sine whose pitch sweeps exponentially from 90-280 Hz down to 38-75 Hz, an
  exponential amplitude decay, an optional second "body" partial, a short filtered-noise
  click and optional tanh saturation.
* snare: two damped drum-head partials (140-260 Hz and 1.4-1.8x) plus band-passed
  noise (the snare wires), each with its own decay.
* hi-hat: a cluster of six square waves at inharmonic ratios (as in analog hat
  circuits) mixed with white noise, band-passed / high-passed around 6-12 kHz; closed
  (short decay) or open (long decay) with equal probability.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

# Inharmonic ratios of the six oscillators of a classic analog hi-hat, relative to the lowest.
HAT_RATIOS = np.array([1.0, 1.483, 1.800, 2.546, 2.630, 3.897])


def _time(duration_s: float, sr: int) -> np.ndarray:
    return np.arange(int(round(duration_s * sr))) / sr


def _length(rate: float, lo: float, hi: float) -> float:
    """Seconds for an ``exp(-rate * t)`` envelope to fall by 50 dB, clipped to [lo, hi]."""
    return float(np.clip(np.log(10**2.5) / rate, lo, hi))


def _normalize(x: np.ndarray, fade_s: float, sr: int) -> np.ndarray:
    n_fade = min(x.size, max(1, int(fade_s * sr)))
    x = x.copy()
    x[-n_fade:] *= np.linspace(1.0, 0.0, n_fade)
    peak = float(np.max(np.abs(x)))
    return (0.9 * x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def _filter(
    x: np.ndarray, kind: str, freq: float | tuple[float, float], sr: int, order: int = 2
) -> np.ndarray:
    sos = butter(order, freq, btype=kind, fs=sr, output="sos")
    return sosfilt(sos, x)


def synth_kick(rng: np.random.Generator, sr: int = 44100) -> np.ndarray:
    """A synthesized kick drum, 0.35-1.2 s."""
    rate = rng.uniform(5.0, 14.0)  # amplitude decay, 1/s
    t = _time(_length(rate, 0.35, 1.2), sr)
    f_end = rng.uniform(38, 75)
    f_start = rng.uniform(90, 280)
    sweep = rng.uniform(18, 60)  # 1/s
    freq = f_end + (f_start - f_end) * np.exp(-t * sweep)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    amp = np.exp(-t * rate)
    x = np.sin(phase) * amp
    if rng.random() < 0.5:  # a second, faster-decaying body partial
        x += rng.uniform(0.1, 0.4) * np.sin(phase * rng.uniform(1.5, 2.7)) * amp**2
    click_n = int(rng.uniform(0.002, 0.008) * sr)
    click = rng.standard_normal(click_n) * np.exp(-np.arange(click_n) / (click_n / 4))
    click = _filter(click, "bandpass", (rng.uniform(1000, 2500), rng.uniform(4000, 9000)), sr)
    x[:click_n] += rng.uniform(0.05, 0.5) * click / (np.max(np.abs(click)) + 1e-9)
    if rng.random() < 0.5:
        drive = rng.uniform(1.5, 5.0)
        x = np.tanh(drive * x) / np.tanh(drive)
    return _normalize(x, 0.01, sr)


def synth_snare(rng: np.random.Generator, sr: int = 44100) -> np.ndarray:
    """A synthesized snare drum, 0.25-0.75 s."""
    head_rate, wire_rate = rng.uniform(15, 40), rng.uniform(8, 25)
    t = _time(_length(min(head_rate, wire_rate), 0.25, 0.75), sr)
    f1 = rng.uniform(140, 260)
    head = np.sin(2 * np.pi * f1 * t) + rng.uniform(0.3, 0.8) * np.sin(
        2 * np.pi * f1 * rng.uniform(1.4, 1.8) * t
    )
    head *= np.exp(-t * head_rate)
    lo = rng.uniform(800, 2500)
    hi = min(rng.uniform(7000, 14000), 0.45 * sr)
    wires = _filter(rng.standard_normal(t.size), "bandpass", (lo, hi), sr)
    wires /= np.max(np.abs(wires)) + 1e-9
    wires *= np.exp(-t * wire_rate)
    mix = rng.uniform(0.45, 0.8)  # share of the wires
    x = (1 - mix) * head + mix * wires
    if rng.random() < 0.3:
        drive = rng.uniform(1.5, 3.0)
        x = np.tanh(drive * x) / np.tanh(drive)
    return _normalize(x, 0.01, sr)


def synth_hihat(rng: np.random.Generator, sr: int = 44100) -> np.ndarray:
    """A synthesized closed (0.1-0.35 s) or open (0.5-1.5 s) hi-hat."""
    closed = rng.random() < 0.5
    rate = rng.uniform(18, 45) if closed else rng.uniform(3.5, 9)
    t = _time(_length(rate, 0.1, 0.35) if closed else _length(rate, 0.5, 1.5), sr)
    base = rng.uniform(300, 560)
    ratios = HAT_RATIOS * rng.uniform(0.97, 1.03, size=HAT_RATIOS.size)
    phases = rng.uniform(0, 2 * np.pi, size=ratios.size)
    metal = sum(
        np.sign(np.sin(2 * np.pi * base * r * t + p)) for r, p in zip(ratios, phases, strict=True)
    )
    noise = rng.standard_normal(t.size)
    x = rng.uniform(0.2, 0.7) * metal / ratios.size + rng.uniform(0.3, 1.0) * noise
    low = rng.uniform(5500, 9000)
    x = _filter(x, "highpass", low, sr, order=4)
    if rng.random() < 0.5:
        x = _filter(x, "lowpass", min(rng.uniform(12000, 18000), 0.45 * sr), sr)
    x *= np.exp(-t * rate)
    return _normalize(x, 0.005, sr)


SYNTHS = {"kick": synth_kick, "snare": synth_snare, "hihat": synth_hihat}
