"""VGGish's front end: audio at any rate -> log-mel examples ``[n, 96, 64]``, as released.

The steps and constants of the released model (SPEC §2b; torchvggish's ``vggish_input``):

1. mono: the mean over channels (float32, as the reference averages its float32 input);
2. resample to 16 kHz with resampy's ``kaiser_best`` filter (:mod:`dose_model.fad.resample`):
   float64 sums by default (resampy's result for float64 input: what fadtk's int16 / 32768
   loading feeds it); ``float32_sums`` gives resampy's result for float32 input (what
   frechet-audio-distance feeds it); the two differ by up to ~1e-4 in a log-mel value;
3. the one-shot rule (:data:`PAD_RULE`): a clip under 1 s at 16 kHz is zero-padded at its end to
   16,000 samples, so it gives exactly one example (fadtk's rule; torchvggish alone gives none
   under 15,600 samples and fails);
4. frames of 400 samples (25 ms) every 160 (10 ms), no centring or padding; a periodic Hann
   window; magnitude of the 512-point real FFT (257 bins);
5. 64 triangular mel bands between 125 and 7500 Hz on the HTK scale
   (mel = 1127 ln(1 + f / 700)), the band edges evenly spaced in mel, the DC bin weighted 0;
6. ``log(mel + 0.01)``;
7. examples of 96 frames (0.96 s) without overlap; frames past the last whole example are
   dropped.
"""

from __future__ import annotations

import functools

import numpy as np

from dose_model.fad.resample import resample

SAMPLE_RATE = 16000
"""Hz; the rate the network's front end works at."""
WINDOW_SAMPLES = 400
HOP_SAMPLES = 160
FFT_SIZE = 512
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
MIN_SAMPLES = 16000
"""A clip shorter than this (at 16 kHz) is zero-padded at its end to this length."""
PAD_RULE = "zero-pad at the end to 16000 samples (1 s) at 16 kHz when shorter (fadtk's rule)"
"""The one-shot convention, as recorded in every result."""


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``[channels, samples]`` (or ``[samples]``) -> float32 ``[samples]``, the channel mean."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"audio must be [channels, samples] or [samples], got shape {audio.shape}")
    return audio.mean(axis=0, dtype=np.float32)


def prepare(audio: np.ndarray, sample_rate: int, float32_sums: bool = False) -> np.ndarray:
    """Steps 1-3: float64 ``[samples]`` at 16 kHz, at least :data:`MIN_SAMPLES` long."""
    mono = to_mono(audio)
    if mono.shape[0] == 0:
        raise ValueError("audio holds no samples")
    x = resample(mono, sample_rate, SAMPLE_RATE, float32_sums=float32_sums).astype(np.float64)
    if x.shape[0] < MIN_SAMPLES:
        x = np.concatenate([x, np.zeros(MIN_SAMPLES - x.shape[0])])
    return x


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """float64 ``[257, 64]``: weight of each FFT bin (0 Hz .. 8 kHz) in each mel band."""
    bins = FFT_SIZE // 2 + 1
    bin_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins))
    edges = np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ), MEL_BANDS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bin_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def log_mel(x: np.ndarray) -> np.ndarray:
    """Steps 4-6 on float ``[samples]`` at 16 kHz -> float64 ``[frames, 64]`` with
    ``frames = 1 + (samples - 400) // 160`` (0 when ``samples < 400``)."""
    x = np.asarray(x, dtype=np.float64)
    frames = 1 + (x.shape[0] - WINDOW_SAMPLES) // HOP_SAMPLES if x.shape[0] >= WINDOW_SAMPLES else 0
    if frames == 0:
        return np.zeros((0, MEL_BANDS))
    view = np.lib.stride_tricks.sliding_window_view(x, WINDOW_SAMPLES)[::HOP_SAMPLES][:frames]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW_SAMPLES) / WINDOW_SAMPLES)
    magnitude = np.abs(np.fft.rfft(view * hann, FFT_SIZE))
    return np.log(magnitude @ mel_matrix() + LOG_OFFSET)


def examples(audio: np.ndarray, sample_rate: int, float32_sums: bool = False) -> np.ndarray:
    """Steps 1-7: float32 ``[n, 96, 64]`` log-mel examples of ``[channels, samples]`` audio at
    ``sample_rate`` Hz; ``n = frames // 96`` and at least 1 (the pad rule)."""
    mel = log_mel(prepare(audio, sample_rate, float32_sums))
    n = mel.shape[0] // EXAMPLE_FRAMES
    return mel[: n * EXAMPLE_FRAMES].reshape(n, EXAMPLE_FRAMES, MEL_BANDS).astype(np.float32)
