"""Pitch shifting by whole semitones: phase-vocoder time stretch, then resampling.

The algorithm is librosa's ``effects.pitch_shift`` (the paper's tool), written as whole-
array numpy so that it costs a fraction of the original (no per-frame Python loop, no
numba, mono input stays mono):

1. STFT: Hann window of :data:`N_FFT` samples, hop :data:`HOP`, signal centred by
   ``N_FFT // 2`` zeros on each side;
2. phase vocoder at ``rate = 2 ** (-semitones / 12)``: output frame ``t`` reads the input
   at fractional frame ``t * rate``; its magnitude is interpolated linearly between the
   two neighbouring frames, its phase is the running sum of the neighbours' phase advance
   (the same float32 additions, in the same order, as librosa's frame loop);
3. inverse STFT (overlap-add with window-square normalization) to
   ``round(n / rate)`` samples;
4. resampling from ``sr / rate`` to ``sr`` Hz with soxr (``HQ``, as librosa's
   ``soxr_hq``), then trimming or zero-padding to the input length.

``tests/test_pitch.py`` checks the result against ``librosa.effects.pitch_shift``.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

N_FFT = 2048
HOP = 512


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """Periodic Hann window of ``N_FFT`` samples (float32)."""
    k = np.arange(N_FFT, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / N_FFT)).astype(np.float32)


def _stft(x: np.ndarray) -> np.ndarray:
    """Centred STFT of ``[channels, n]`` float32: complex64 ``[channels, frames, bins]``."""
    pad = N_FFT // 2
    padded = np.pad(x, ((0, 0), (pad, pad)))
    n_frames = 1 + (padded.shape[-1] - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=-1)[:, ::HOP]
    frames = frames[:, :n_frames] * _window()
    return scipy.fft.rfft(frames, axis=-1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Inverse of :func:`_stft` for ``[channels, frames, bins]``; ``[channels, length]``."""
    n_frames = spec.shape[1]
    frames = scipy.fft.irfft(spec, n=N_FFT, axis=-1)
    frames *= _window()
    total = N_FFT + HOP * (n_frames - 1)
    out = np.zeros((spec.shape[0], total), dtype=np.float32)
    norm = np.zeros(total, dtype=np.float32)
    wsq = _window() ** 2
    # hop = N_FFT / 4: four interleaved groups of frames that do not overlap within a group
    for g in range(N_FFT // HOP):
        group = frames[:, g::4]
        if group.shape[1] == 0:
            continue
        start = g * HOP
        span = group.shape[1] * N_FFT
        out[:, start : start + span] += group.reshape(spec.shape[0], -1)
        norm[start : start + span] += np.tile(wsq, group.shape[1])
    out = out[:, N_FFT // 2 :]
    norm = norm[N_FFT // 2 :]
    out = out[:, :length]
    norm = norm[:length]
    nonzero = norm > np.finfo(np.float32).tiny
    out[:, nonzero] /= norm[nonzero]
    if out.shape[-1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[-1])))
    return out


def _phase_vocoder(spec: np.ndarray, rate: float) -> np.ndarray:
    """Time-stretch ``[channels, frames, bins]`` by ``rate`` (> 1: shorter)."""
    steps = np.arange(0, spec.shape[1], rate, dtype=np.float64)
    padded = np.pad(spec, ((0, 0), (0, 2), (0, 0)))
    k = steps.astype(np.int64)
    alpha = np.mod(steps, 1.0).astype(np.float32)[:, None]
    mag = np.abs(padded)
    angle = np.angle(padded)
    out_mag = (1.0 - alpha) * mag[:, k] + alpha * mag[:, k + 1]
    phi = (HOP * np.linspace(0, np.pi, spec.shape[2], dtype=np.float64)).astype(np.float32)
    dphase = angle[:, k + 1] - angle[:, k] - phi
    dphase -= np.float32(2.0 * np.pi) * np.round(dphase * np.float32(0.5 / np.pi))
    dphase += phi
    phase = np.concatenate([angle[:, :1], dphase[:, :-1]], axis=1)
    phase = np.cumsum(phase, axis=1, dtype=np.float32)
    out = np.empty(phase.shape, dtype=np.complex64)
    out.real = out_mag * np.cos(phase)
    out.imag = out_mag * np.sin(phase)
    return out


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: int) -> np.ndarray:
    """Shift ``[channels, n]`` float32 audio by whole ``semitones``, keeping its length.

    ``semitones == 0`` returns the input unchanged.
    """
    if semitones == 0:
        return audio
    import soxr

    x = np.ascontiguousarray(audio, dtype=np.float32)
    n = x.shape[-1]
    rate = 2.0 ** (-float(semitones) / 12.0)
    stretched = _istft(_phase_vocoder(_stft(x), rate), int(round(n / rate)))
    shifted = soxr.resample(stretched.T, float(sample_rate) / rate, sample_rate, quality="HQ").T
    out = np.zeros_like(x)
    m = min(n, shifted.shape[-1])
    out[:, :m] = shifted[:, :m]
    return out
