"""Level and shape audio around extraction: the input clip's level, the one-shot's tail, fade
and peak, and the 16-bit WAV bytes written. All functions take and return float32 mono
``[samples]`` and never modify their input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

MIXTURE_PEAK_DBFS = -1.0
"""Sample peak of the RMOD training mixtures (the recipes' ``master.ceiling_dbfs``): a clip is
scaled to this peak before it is encoded, so the model hears the level it was trained on."""


def peak_dbfs(audio: np.ndarray) -> float | None:
    """Sample peak in dBFS (None for silence or empty audio)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * float(np.log10(peak)) if peak > 0 else None


def normalize_peak(audio: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scale ``audio`` so its sample peak is ``target_dbfs`` (silence is returned as is)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return audio.astype(np.float32, copy=True)
    gain = 10.0 ** (target_dbfs / 20.0) / peak
    return (audio.astype(np.float64) * gain).astype(np.float32)


def trim_tail(audio: np.ndarray, threshold_db: float) -> np.ndarray:
    """Cut ``audio`` after the last sample whose magnitude is at least ``threshold_db`` dB
    relative to the peak (e.g. -60): the tail that has decayed below it is dropped."""
    if not audio.size:
        return audio.astype(np.float32, copy=True)
    mag = np.abs(audio)
    peak = float(mag.max())
    if peak == 0.0:
        return np.zeros(0, dtype=np.float32)
    loud = np.flatnonzero(mag >= peak * 10.0 ** (threshold_db / 20.0))
    return audio[: int(loud[-1]) + 1].astype(np.float32, copy=True)


def fade_out(audio: np.ndarray, samples: int) -> np.ndarray:
    """A raised-cosine fade over the last ``samples`` samples (all of them when shorter), so
    the one-shot ends at exactly 0."""
    out = audio.astype(np.float32, copy=True)
    n = min(samples, out.shape[0])
    if n > 0:
        ramp = 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n + 1) / n))
        out[-n:] *= ramp.astype(np.float32)
    return out


@dataclass(frozen=True)
class Finish:
    """How an extracted one-shot is finished before it is written; None turns a stage off.

    trim_db: dB below the peak under which the tail is cut (`trim_tail`), e.g. -60.
    fade_ms: fade-out length in milliseconds (`fade_out`), applied after the trim.
    peak_db: sample peak in dBFS after the fade (`normalize_peak`), e.g. -1.
    """

    trim_db: float | None = -60.0
    fade_ms: float | None = 10.0
    peak_db: float | None = -1.0

    def __post_init__(self) -> None:
        for name in ("trim_db", "fade_ms", "peak_db"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number or None, got {value!r}")
        if self.trim_db is not None and self.trim_db > 0:  # nothing is above the peak
            raise ValueError(f"trim_db must be <= 0 (dB re peak), got {self.trim_db}")
        if self.fade_ms is not None and self.fade_ms < 0:
            raise ValueError(f"fade_ms must be >= 0, got {self.fade_ms}")

    def apply(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Trim, then fade, then peak-normalize ``audio`` (the stages that are on)."""
        out = audio.astype(np.float32, copy=True)
        if self.trim_db is not None:
            out = trim_tail(out, self.trim_db)
        if self.fade_ms is not None:
            out = fade_out(out, int(round(self.fade_ms * 1e-3 * sample_rate)))
        if self.peak_db is not None:
            out = normalize_peak(out, self.peak_db)
        return out


DEFAULT_FINISH = Finish()
"""Trim below -60 dB, 10 ms fade, peak -1 dBFS."""
RAW = Finish(trim_db=None, fade_ms=None, peak_db=None)
"""No finishing: the codec's output as it is."""


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio -> 16-bit PCM WAV file bytes (clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
