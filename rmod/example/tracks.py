"""Dry tracks: layered drum one-shots placed on the pattern, and instrument loops.

All audio is float32 ``[channels, samples]``; lengths are in samples, levels in dB.

Drums
    :func:`layer` sums two one-shots with a weight pair; :func:`render_drum_track`
    places the layered one-shot at each onset. A new onset of the same class cuts the
    sound still playing: the earlier sound fades out linearly over the ``fade`` samples
    just before the new onset and is silent from the onset on ("slice on retrigger").
    The last hit is cut at the end of the mixture (no wrap-around).
    :func:`fit_target` makes the fixed-length target one-shot.

Instruments
    :func:`loop_to_length` repeats a segment (sliced from the pitch-shifted loop by
    :class:`rmod.example.sample_store.SampleStore`) to fill the mixture, :func:`normalize_rms` sets
    its level.
"""

from __future__ import annotations

import numpy as np

from rmod.audio import mean_square


def normalize_rms(audio: np.ndarray, rms_db: float | None) -> np.ndarray:
    """Scale so the RMS over all channels and samples is ``rms_db`` dBFS (silence unchanged)."""
    if rms_db is None:
        return audio
    rms = float(np.sqrt(mean_square(audio))) if audio.size else 0.0
    if rms == 0.0:
        return audio
    return audio * np.float32(10.0 ** (rms_db / 20.0) / rms)


def normalize_oneshot(
    audio: np.ndarray,
    sample_rate: int,
    rms_db: float | None,
    window_ms: float,
    peak_db: float | None,
) -> np.ndarray:
    """Level a drum one-shot by its attack loudness, with a peak cap.

    The gain brings the RMS of the first ``window_ms`` milliseconds to ``rms_db`` dBFS,
    but never lets the sample peak exceed ``peak_db`` dBFS (so a peaky snare is set by its
    peak and a long, dense kick by its attack RMS). ``rms_db`` ``None``: peak-normalize
    to ``peak_db``; both ``None``: unchanged. Silence is returned unchanged.
    """
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0 or (rms_db is None and peak_db is None):
        return audio
    gains = []
    if rms_db is not None:
        head = audio[:, : max(1, ms_to_samples(window_ms, sample_rate))]
        rms = float(np.sqrt(mean_square(head)))
        if rms > 0.0:
            gains.append(10.0 ** (rms_db / 20.0) / rms)
    if peak_db is not None:
        gains.append(10.0 ** (peak_db / 20.0) / peak)
    if not gains:
        return audio
    return (audio * np.float32(min(gains))).astype(np.float32)


def layer(a: np.ndarray, b: np.ndarray, weights: tuple[float, float]) -> np.ndarray:
    """Weighted sum ``w1 * a + w2 * b`` of two ``[channels, n]`` one-shots.

    The shorter one is zero-padded at its end; the result has the longer length. Mono
    layered with mono stays mono; with a stereo one-shot, the mono one sounds in both
    channels (the result is stereo).
    """
    n = max(a.shape[-1], b.shape[-1])
    out = np.zeros((max(a.shape[0], b.shape[0]), n), dtype=np.float32)
    out[:, : a.shape[-1]] += np.float32(weights[0]) * a
    out[:, : b.shape[-1]] += np.float32(weights[1]) * b
    return out


def fade_out_gains(n: int) -> np.ndarray:
    """``n`` linearly falling gains strictly between 1 and 0 (the next sample is silent)."""
    return np.linspace(1.0, 0.0, n + 2, dtype=np.float32)[1:-1]


def ms_to_samples(ms: float, sample_rate: int) -> int:
    """Milliseconds to a whole number of samples (rounded)."""
    return int(round(ms * sample_rate / 1000.0))


def render_drum_track(
    oneshot: np.ndarray, positions: np.ndarray, n_samples: int, fade: int
) -> np.ndarray:
    """Place ``oneshot`` ``[channels, m]`` at each sample position; ``[channels, n_samples]``.

    ``positions`` must be sorted and distinct. Each hit sounds until the next onset of
    this track, fading out over its last ``fade`` samples before that onset (all of them
    if the gap is shorter), or until ``n_samples``.
    """
    out = np.zeros((oneshot.shape[0], n_samples), dtype=np.float32)
    starts = [int(p) for p in positions]
    for k, start in enumerate(starts):
        if start >= n_samples:
            continue
        stop = starts[k + 1] if k + 1 < len(starts) else n_samples
        stop = min(stop, n_samples)
        length = min(stop - start, oneshot.shape[-1])
        piece = oneshot[:, :length].copy()
        cut = k + 1 < len(starts) and oneshot.shape[-1] > stop - start
        if cut and fade > 0:
            f = min(fade, length)
            piece[:, length - f :] *= fade_out_gains(f)
        out[:, start : start + length] = piece
    return out


def fit_target(oneshot: np.ndarray, n: int, fade: int) -> np.ndarray:
    """The target one-shot: exactly ``n`` samples, zero-padded, or cut with a linear fade.

    A cut one-shot's last ``fade`` samples ramp down so that its final sample is 0.
    """
    m = oneshot.shape[-1]
    if m <= n:
        out = np.zeros((oneshot.shape[0], n), dtype=np.float32)
        out[:, :m] = oneshot
        return out
    out = oneshot[:, :n].astype(np.float32, copy=True)
    f = min(fade, n)
    if f > 0:
        out[:, n - f :] *= np.linspace(1.0, 0.0, f, dtype=np.float32)
    return out


def loop_to_length(segment: np.ndarray, n: int) -> np.ndarray:
    """Repeat ``segment`` back to back until it is exactly ``n`` samples long."""
    reps = -(-n // segment.shape[-1])
    return np.tile(segment, (1, reps))[:, :n].copy()
