"""Audio as the model sees it: a whole file read as float32 mono at the codec's rate, then
cropped or zero-padded. Used by `dose-tokenize`, `dose-extract` and `dose-eval`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

from dose_model.errors import DoseError


class RowAudioError(DoseError):
    """One row's audio cannot be used; carries the file path and the reason."""

    def __init__(self, path: Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Read a whole audio file as float32 mono: channel mean, resampled to ``sample_rate`` if
    needed (polyphase). Raises `RowAudioError` naming the file if it is missing, undecodable,
    empty or holds non-finite samples."""
    path = Path(path)
    if not path.is_file():
        raise RowAudioError(path, "file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for bad files
        raise RowAudioError(path, f"cannot decode audio ({type(exc).__name__}: {exc})") from None
    if data.shape[0] == 0:
        raise RowAudioError(path, "file holds no samples")
    if not np.isfinite(data).all():
        raise RowAudioError(path, "file holds non-finite samples")
    return mono_at_rate(data, sr, sample_rate)


def mono_at_rate(data: np.ndarray, sr: int, sample_rate: int) -> np.ndarray:
    """Float32 ``[samples, channels]`` at ``sr`` Hz (as a file decodes) -> float32 mono
    ``[samples']`` at ``sample_rate``: the channel mean, resampled (polyphase) if the rates
    differ. The one conversion of `read_mono` and of the token sink
    (:mod:`dose_model.cache.sink`), so both give the codec the same samples."""
    mono = data.mean(axis=1, dtype=np.float32)
    if sr != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), int(sample_rate))
        mono = resample_poly(mono, sample_rate // g, sr // g).astype(np.float32)
    return mono


def clip(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``audio[start : start + length]`` as float32, zero-padded at the end to ``length``."""
    out = np.zeros(length, dtype=np.float32)
    part = audio[start : start + length]
    out[: part.shape[0]] = part
    return out


def load_mono(path: Path, sample_rate: int, samples: int) -> np.ndarray:
    """`read_mono`, then cropped or zero-padded at the end to ``[samples]``."""
    return clip(read_mono(path, sample_rate), 0, samples)
