"""Audio file I/O shared by every stage: decode (bounded), write 16-bit atomically.

Arrays are float32 ``[channels, samples]`` in the range [-1, 1]. Files are written
under a temporary name in the destination folder and renamed into place, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from rmod.errors import RmodError
from rmod_dose_common import audio as common_audio
from rmod_dose_common.audio import AudioReadError
from rmod_dose_common.fileio import atomic_write_bytes

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg")
PCM16_SCALE = 32767.0


class AudioFileError(RmodError, AudioReadError):
    """A file that cannot be used as audio. ``str(err)`` names the path and the reason."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32 ``[channels, samples]`` and its sample rate (Hz).

    The bounded reader of `rmod_dose_common.audio` (regular files only; rate, channels and
    length checked from the header before anything is allocated). Raises
    :class:`AudioFileError` (naming the path) for unreadable, undecodable, empty, over-long
    or non-finite files instead of a library-specific traceback.
    """
    return common_audio.read_audio(path, AudioFileError)


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` from the file's header, without decoding it;
    :class:`AudioFileError` naming the path when it cannot be read, parsed or is out of
    bounds (`rmod_dose_common.audio.check_header`)."""
    header = common_audio.read_header(path, AudioFileError)
    return header.frames, header.sample_rate, header.channels


def native_channels(audio: np.ndarray) -> np.ndarray:
    """Mono stays mono, stereo stays stereo, more channels are averaged down to mono."""
    if audio.ndim == 1:
        return audio[None, :]
    if audio.shape[0] <= 2:
        return audio
    return audio.mean(axis=0, keepdims=True, dtype=np.float32)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[channels, samples]`` from ``sr_in`` to ``sr_out`` Hz (soxr ``HQ``, each
    channel on its own, as librosa's ``soxr_hq``; deterministic).

    The output length is exactly ``round(samples * sr_out / sr_in)``.
    """
    if sr_in == sr_out:
        return audio
    n_out = int(round(audio.shape[-1] * sr_out / sr_in))
    out = np.stack(
        [soxr.resample(ch, sr_in, sr_out, quality="soxr_hq") for ch in audio.astype(np.float32)]
    )
    return fit_length(out.astype(np.float32, copy=False), n_out)


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to exactly ``n`` samples."""
    have = audio.shape[-1]
    if have == n:
        return audio
    if have > n:
        return audio[..., :n]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, n - have)]
    return np.pad(audio, pad)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Quantize float ``[channels, samples]`` to int16 ``[samples, channels]``.

    Scale is 32767 with round-half-to-even; values beyond [-1, 1] saturate. This is
    the one place where float audio becomes 16-bit, so equal floats give equal bytes.
    """
    scaled = np.round(np.asarray(audio, dtype=np.float64) * PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16).T.copy()


def encode_audio(audio: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Encode float ``[channels, samples]`` as a 16-bit ``wav`` or ``flac`` file in memory."""
    fmt = fmt.lower()
    if fmt not in ("wav", "flac"):
        raise ValueError(f"unsupported output format {fmt!r} (use 'wav' or 'flac')")
    buf = io.BytesIO()
    sf.write(buf, to_pcm16(audio), sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, fmt: str | None = None
) -> str:
    """Write float ``[channels, samples]`` as 16-bit audio, atomically.

    ``fmt`` defaults to the file's extension (``.wav`` or ``.flac``). Returns the
    SHA-256 hex digest of the bytes written, for manifests.
    """
    path = Path(path)
    data, digest = encode_audio_file(audio, sample_rate, fmt or path.suffix.lstrip("."))
    atomic_write_bytes(path, data)
    return digest


def encode_audio_file(audio: np.ndarray, sample_rate: int, fmt: str) -> tuple[bytes, str]:
    """Encoded 16-bit bytes of ``audio`` (see :func:`encode_audio`) and their SHA-256."""
    data = encode_audio(audio, sample_rate, fmt)
    return data, hashlib.sha256(data).hexdigest()


def peak_db(audio: np.ndarray) -> float:
    """Sample peak in dBFS (``-inf`` for silence)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def mean_square(audio: np.ndarray) -> float:
    """Mean of the squared samples over all channels (numpy's float64 pairwise sum: the
    same on every CPU, unlike a BLAS dot product, whose kernel depends on the processor)."""
    return float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0


def rms_db(audio: np.ndarray) -> float:
    """RMS level in dBFS over all channels and samples (``-inf`` for silence)."""
    rms = float(np.sqrt(mean_square(audio))) if audio.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
