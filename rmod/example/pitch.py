"""Pitch shifting by whole semitones: phase-vocoder time stretch, then resampling.

The algorithm is librosa's ``effects.pitch_shift`` (the paper's tool), written as whole-
array numpy over blocks of frames, so that it costs a fraction of the original (no
per-frame Python loop, no numba) and its memory does not grow with the length of the
sound (each channel is shifted on its own, :data:`BLOCK` frames at a time):

1. STFT: Hann window of :data:`N_FFT` samples, hop :data:`HOP`, signal centred by
   ``N_FFT // 2`` zeros on each side;
2. phase vocoder at ``rate = 2 ** (-semitones / 12)``: output frame ``t`` reads the input
   at fractional frame ``t * rate``; its magnitude is interpolated linearly between the
   two neighbouring frames, its phase is the running float32 sum of their phase advance
   (carried from block to block, so blocks change no sample);
3. inverse STFT (overlap-add with window-square normalization) to ``round(n / rate)``
   samples, handed on as soon as each sample is complete;
4. resampling from ``sr / rate`` to ``sr`` Hz with soxr (``soxr_hq``, as librosa), streamed,
   then trimming or zero-padding to the input length.

Differences from librosa are of float rounding only (librosa accumulates a float64 phase
advance into a float32 sum; we add in float32): ``tests/rmod/test_pitch.py`` compares the two
waveforms and their band energies. :func:`pitch_shift_loop` shifts a loop as the circle it
is: both ends see the other end as context, so a segment that wraps around the loop's end
carries no edge artefact.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
import soxr

if TYPE_CHECKING:
    from collections.abc import Callable

N_FFT = 2048
HOP = 512
#: Output frames per block (a multiple of ``N_FFT // HOP``): ~3 s of audio at 44.1 kHz.
BLOCK = 256
#: Samples of wrap-around context on each side of a loop in :func:`pitch_shift_loop`.
LOOP_CONTEXT = 4 * N_FFT


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """Periodic Hann window of ``N_FFT`` samples (float32)."""
    k = np.arange(N_FFT, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / N_FFT)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _phase_advance() -> np.ndarray:
    """Expected phase advance per hop of each FFT bin (float32)."""
    return (HOP * np.linspace(0, np.pi, N_FFT // 2 + 1, dtype=np.float64)).astype(np.float32)


def _frames_spectrum(padded: np.ndarray, first: int, last: int, n_frames: int) -> np.ndarray:
    """Windowed spectra of input frames ``first..last`` (inclusive), complex64
    ``[frames, bins]``; frames past the signal's last are silent."""
    count = last - first + 1
    spec = np.zeros((count, N_FFT // 2 + 1), dtype=np.complex64)
    real = min(last, n_frames - 1) - first + 1
    if real > 0:
        view = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
        spec[:real] = scipy.fft.rfft(view[first : first + real] * _window(), axis=-1)
    return spec


def _norm(start: int, stop: int, n_out_frames: int) -> np.ndarray:
    """Sum of squared windows over output samples ``start..stop-1`` of the overlap-add."""
    i = np.arange(start, stop)
    wsq = _window() ** 2
    norm = np.zeros(i.size, dtype=np.float32)
    for j in range(N_FFT // HOP):
        t = i // HOP - j
        ok = (t >= 0) & (t < n_out_frames)
        norm[ok] += wsq[i[ok] - t[ok] * HOP]
    return norm


def _stretch(x: np.ndarray, rate: float, length: int, sink: Callable[[np.ndarray], object]) -> None:
    """Time-stretch mono float32 ``x`` by ``rate`` (> 1: shorter) to ``length`` samples,
    passing the output to ``sink`` in order, block by block."""
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2))
    n_frames = 1 + (padded.size - N_FFT) // HOP
    steps = np.arange(0, n_frames, rate, dtype=np.float64)
    n_out = steps.size
    phi = _phase_advance()
    phase = np.angle(_frames_spectrum(padded, 0, 0, n_frames)[0])
    tail = np.zeros(N_FFT - HOP, dtype=np.float32)
    emitted, skip = 0, N_FFT // 2  # the first N_FFT // 2 samples are the centring padding
    for t0 in range(0, n_out, BLOCK):
        k = steps[t0 : t0 + BLOCK].astype(np.int64)
        alpha = np.mod(steps[t0 : t0 + BLOCK], 1.0).astype(np.float32)[:, None]
        spec = _frames_spectrum(padded, int(k[0]), int(k[-1]) + 1, n_frames)
        k = k - k[0]
        mag, angle = np.abs(spec), np.angle(spec)
        out_mag = (1.0 - alpha) * mag[k] + alpha * mag[k + 1]
        advance = angle[k + 1] - angle[k] - phi
        advance -= np.float32(2.0 * np.pi) * np.round(advance * np.float32(0.5 / np.pi))
        advance += phi
        phases = np.cumsum(np.concatenate([phase[None], advance[:-1]]), axis=0, dtype=np.float32)
        phase = phases[-1] + advance[-1]
        frames = np.empty(phases.shape, dtype=np.complex64)
        frames.real = out_mag * np.cos(phases)
        frames.imag = out_mag * np.sin(phases)
        frames = scipy.fft.irfft(frames, n=N_FFT, axis=-1) * _window()
        b = frames.shape[0]
        seg = np.zeros(b * HOP + N_FFT - HOP, dtype=np.float32)
        seg[: tail.size] += tail
        for g in range(N_FFT // HOP):  # frames g, g+4, ... do not overlap each other
            group = frames[g :: N_FFT // HOP]
            seg[g * HOP : g * HOP + group.size] += group.reshape(-1)
        last = t0 + b >= n_out
        done, tail = (seg, tail[:0]) if last else (seg[: b * HOP], seg[b * HOP :])
        norm = _norm(t0 * HOP, t0 * HOP + done.size, n_out)
        nonzero = norm > np.finfo(np.float32).tiny
        done[nonzero] /= norm[nonzero]
        done = done[skip:]
        skip = max(0, skip - (seg.size if last else b * HOP))
        take = min(done.size, length - emitted)
        if take > 0:
            sink(done[:take])
            emitted += take
    if emitted < length:
        sink(np.zeros(length - emitted, dtype=np.float32))


def _shift_channel(x: np.ndarray, sample_rate: int, semitones: int) -> np.ndarray:
    rate = 2.0 ** (-float(semitones) / 12.0)
    stream = soxr.ResampleStream(float(sample_rate) / rate, sample_rate, 1, quality="soxr_hq")
    out = np.zeros(x.size, dtype=np.float32)
    filled = 0

    def put(chunk: np.ndarray, last: bool = False) -> None:
        nonlocal filled
        y = stream.resample_chunk(np.ascontiguousarray(chunk, dtype=np.float32), last=last)
        take = min(y.size, x.size - filled)
        out[filled : filled + take] = y[:take]
        filled += take

    _stretch(x, rate, int(round(x.size / rate)), put)
    put(np.zeros(0, dtype=np.float32), last=True)
    return out


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: int) -> np.ndarray:
    """Shift ``[channels, n]`` float32 audio by whole ``semitones``, keeping its length.

    ``semitones == 0`` returns the input unchanged.
    """
    if semitones == 0:
        return audio
    x = np.ascontiguousarray(audio, dtype=np.float32)
    return np.stack([_shift_channel(ch, sample_rate, semitones) for ch in x])


def pitch_shift_loop(audio: np.ndarray, sample_rate: int, semitones: int) -> np.ndarray:
    """:func:`pitch_shift` of a loop: shifted with :data:`LOOP_CONTEXT` samples of its own
    other end on each side (as it sounds when repeated), then cut back to its length."""
    if semitones == 0:
        return audio
    n, c = audio.shape[-1], LOOP_CONTEXT
    if n >= c:
        ext = np.concatenate([audio[:, n - c :], audio, audio[:, :c]], axis=1)
    else:  # a loop shorter than the context repeats around itself
        reps = -(-c // n)
        ext = np.tile(audio, (1, 2 * reps + 1))[:, reps * n - c : (reps + 1) * n + c]
    return pitch_shift(ext, sample_rate, semitones)[:, c : c + n]
