"""Audio file I/O shared by every stage: decode (bounded), write 16-bit atomically.

Arrays are float32 ``[channels, samples]`` in the range [-1, 1]. Files are written
under a temporary name in the destination folder and renamed into place, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from rmod.errors import RmodError
from rmod_dose_common import audio as common_audio
from rmod_dose_common.audio import AudioReadError

AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg")
PCM16_SCALE = 32767.0


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


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


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``path`` only once the ``with`` block succeeds.

    It is written under a temporary name in the same folder, flushed to disk, then
    renamed into place; on an error the temporary file is removed and ``path`` is left as
    it was. The file gets the usual umask-based mode (``mkstemp`` alone makes it 0600,
    unreadable to the other users of a shared filesystem).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


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


def sync_folder(folder: str | os.PathLike) -> None:
    """Make every file written in ``folder`` durable, with one flush instead of one per file.

    On Linux one ``syncfs`` flushes the folder's filesystem (an error, e.g. EIO, is raised,
    not ignored); where it does not exist each file is ``fsync``-ed. The folder itself is
    ``fsync``-ed last, so the names are durable too. Used before a folder of plainly written
    files is published by one rename. (Linux before 5.8 does not report write-back errors
    through ``syncfs``, and FUSE before 5.15 ignores it: there, prefer a local disk.)
    """
    folder = Path(folder)
    fd = os.open(folder, os.O_RDONLY)
    try:
        if not _syncfs(fd):
            for path in folder.iterdir():
                if path.is_file():
                    with open(path, "rb") as fh:
                        os.fsync(fh.fileno())
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(fd: int) -> bool:
    """``syncfs(fd)`` through libc: True when done, False where the call does not exist;
    raises ``OSError`` when it fails."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    if fn(fd) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return False
    raise OSError(err, f"syncfs failed: {os.strerror(err)}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


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
