"""Audio as the model sees it: a whole file read as float32 mono at the codec's rate, then
cropped or zero-padded. Used by `dose-tokenize`, `dose-extract` and `dose-eval`.

A source is a file path or a member of a tar shard (:class:`~dose_model.dataset.members.TarMember`,
what the manifest reader gives for a ``--layout tar`` build): the member's bytes are read
through its shard's index and decoded from memory; a member that cannot be trusted is a
`RowAudioError` naming the shard and key."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf

from dose_model.dataset.members import MemberError, TarMember
from dose_model.errors import DoseError


class RowAudioError(DoseError):
    """One row's audio cannot be used; carries the file path and the reason."""

    def __init__(self, path: Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _source(path: Path | TarMember) -> str | io.BytesIO:
    """What ``soundfile`` reads for ``path``: the file's name, or a tar member's bytes."""
    if isinstance(path, TarMember):
        try:
            return path.open()
        except MemberError as exc:
            raise RowAudioError(path, str(exc)) from None
    if not Path(path).is_file():
        raise RowAudioError(path, "file not found")
    return str(path)


def read_mono(path: Path | TarMember, sample_rate: int) -> np.ndarray:
    """Read a whole audio file (or tar member) as float32 mono: channel mean, resampled to
    ``sample_rate`` if needed (polyphase). Raises `RowAudioError` naming the file if it is
    missing, undecodable, empty or holds non-finite samples (a tar member: also when its
    shard or bytes cannot be trusted, naming the shard and key)."""
    path = path if isinstance(path, TarMember) else Path(path)
    source = _source(path)
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for bad files
        raise RowAudioError(path, f"cannot decode audio ({type(exc).__name__}: {exc})") from None
    if data.shape[0] == 0:
        raise RowAudioError(path, "file holds no samples")
    if not np.isfinite(data).all():
        raise RowAudioError(path, "file holds non-finite samples")
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


def load_mono(path: Path | TarMember, sample_rate: int, samples: int) -> np.ndarray:
    """`read_mono`, then cropped or zero-padded at the end to ``[samples]``."""
    return clip(read_mono(path, sample_rate), 0, samples)
