"""The one audio decoder of the toolkit: bounded before it allocates, block by block after.

Every audio file either package reads (library samples, dataset rows, songs) is untrusted, and
a header is a few bytes that decide how much memory and time a decode takes. So a file is read
in three steps, each refusing with an error that names the path, the reason and the limit:

1. **Open**: only a regular file (``os.stat`` then ``S_ISREG``; a FIFO, device, socket or folder
   is refused without being opened). It is opened ``O_NONBLOCK`` (a FIFO swapped in after the
   check cannot block the open) and checked again on the open descriptor (``fstat``: still a
   regular file, still the same inode), and libsndfile decodes that descriptor, never the name.
   A member of a tar shard (:class:`rmod_dose_common.tar_shards.MemberSource`, e.g. a
   ``--layout tar`` row's file) is read through its shard's index instead, and decoded from
   memory; a shard or member that cannot be trusted is refused like a bad file. A member that
   is a plain 16-bit PCM WAV (what rmod writes: :func:`plain_pcm16_wav`) is decoded from its
   bytes by numpy, with libsndfile's scaling; any other is given to libsndfile.
2. **Header**: the declared sample rate must lie within ``MIN_SAMPLE_RATE .. MAX_SAMPLE_RATE``,
   the channels within ``1 .. MAX_CHANNELS``, the frames above 0, and frames x channels within
   the caller's cap (``MAX_SAMPLES`` for a whole-file read, ``MAX_STREAM_SAMPLES`` for a
   stream), all before a single sample is decoded.
3. **Decode**: in blocks of about ``BLOCK_SAMPLES`` samples (float32, libsndfile's scaling: a
   16-bit value v becomes v / 32768); a block holding NaN or Inf is refused. A whole-file read
   fills one array allocated from the checked header; a stream (:meth:`AudioReader.blocks`)
   keeps one block in memory at a time, so a long song costs no more than a short one.

Errors are :class:`AudioReadError` or the subclass the caller passes as ``error`` (each
package keeps its own type: ``rmod.audio.AudioFileError``,
``dose_model.dataset.audio.RowAudioError``); ``str(err)`` is one line ``<path>: <reason>``.
Imports neither ``rmod`` nor ``dose_model``.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import soundfile as sf

from rmod_dose_common.pcm import pcm16_as_float
from rmod_dose_common.tar_shards import MemberSource, TarShardError


@dataclass(frozen=True)
class Limit:
    """A named bound, shown in refusals as ``NAME = value unit``."""

    name: str
    value: int
    unit: str = ""

    def __str__(self) -> str:
        return f"{self.name} = {self.value:,}{' ' + self.unit if self.unit else ''}"


MIN_SAMPLE_RATE = Limit("MIN_SAMPLE_RATE", 8_000, "Hz")
"""Lowest declared sample rate decoded (telephone speech; below it a header is taken as bogus:
a 4 KB file declaring 1 Hz would resample to gigabytes)."""
MAX_SAMPLE_RATE = Limit("MAX_SAMPLE_RATE", 384_000, "Hz")
"""Highest declared sample rate decoded (the highest rate of studio converters)."""
MAX_CHANNELS = Limit("MAX_CHANNELS", 64, "channels")
"""Most channels decoded (third-order ambisonics needs 16, large immersive beds 24-32)."""
MAX_SAMPLES = Limit("MAX_SAMPLES", 1 << 28, "samples")
"""Most samples (frames x channels) of a whole-file read: 1 GiB of float32, 50 minutes of
stereo at 44.1 kHz. Longer files must be streamed."""
MAX_STREAM_SAMPLES = Limit("MAX_STREAM_SAMPLES", 1 << 32, "samples")
"""Most samples (frames x channels) a stream decodes: about 13.5 hours of stereo at 44.1 kHz.
Memory does not grow with it; decoding time does."""
UNKNOWN_FRAMES = 2**63 - 1
"""What libsndfile reports as the frames of a file that does not declare its length (a FLAC
whose STREAMINFO says 0); above every cap, so such a file is refused by it."""
BLOCK_SAMPLES = 1 << 18
"""Samples (frames x channels) per decoded block: 1 MiB of float32."""


class AudioReadError(Exception):
    """A file that cannot be used as audio. ``str(err)`` is one line naming the path and the
    reason; ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the decoder said
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class AudioHeader:
    """What a file's header declares: ``frames`` per channel, ``sample_rate`` in Hz,
    ``channels``, and libsndfile's ``format`` / ``subtype`` names (e.g. "WAV", "PCM_16")."""

    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str

    @property
    def samples(self) -> int:
        """frames x channels."""
        return self.frames * self.channels

    @property
    def seconds(self) -> float:
        """Declared duration in seconds."""
        return self.frames / self.sample_rate


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, error: type[AudioReadError] = AudioReadError) -> int:
    """A read-only descriptor of ``path``, which must be a regular file (links are followed
    to one); ``error(path, reason)`` for a missing or unreadable path or any other kind of
    file (which is then not opened at all). The caller closes the descriptor."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise error(path, "file not found") from None
    except OSError as exc:
        raise error(path, f"cannot read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL byte in the name
        raise error(repr(os.fspath(path)), "not a file name (it holds a NUL byte)") from None
    if not stat.S_ISREG(before.st_mode):
        raise error(path, f"not a regular file ({_kind(before.st_mode)})")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(path, f"cannot read ({exc.strerror or exc})") from None
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise error(path, "file was replaced while being opened")
    os.set_blocking(fd, True)
    return fd


def check_header(
    path: str | os.PathLike,
    header: AudioHeader,
    error: type[AudioReadError] = AudioReadError,
    max_samples: Limit | None = None,
) -> None:
    """``error`` naming the limit when ``header`` breaks one (rate, channels, no frames, and
    frames x channels above ``max_samples`` when given)."""
    rate, channels = header.sample_rate, header.channels
    if not MIN_SAMPLE_RATE.value <= rate <= MAX_SAMPLE_RATE.value:
        bound = MIN_SAMPLE_RATE if rate < MIN_SAMPLE_RATE.value else MAX_SAMPLE_RATE
        side = "below" if bound is MIN_SAMPLE_RATE else "above"
        raise error(path, f"declared sample rate {rate:,} Hz is {side} {bound}")
    if not 1 <= channels <= MAX_CHANNELS.value:
        raise error(path, f"declared {channels:,} channels; allowed 1 to {MAX_CHANNELS}")
    if header.frames <= 0:
        raise error(path, "file holds no samples")
    if max_samples is not None and header.samples > max_samples.value:
        raise error(
            path,
            f"declared {header.frames:,} frames x {channels} channels = {header.samples:,} "
            f"samples ({header.seconds:,.0f} s) is above {max_samples}",
        )


def plain_pcm16_wav(data: bytes) -> tuple[int, int, int, int] | None:
    """``(channels, sample_rate, data_offset, frames)`` when ``data`` is a whole plain 16-bit
    PCM WAV, else None (libsndfile then decodes it).

    Plain: ``RIFF``/``WAVE`` whose RIFF size is the bytes' length; chunks that each fit; one
    ``fmt `` chunk before ``data`` with format tag 1 (PCM, not EXTENSIBLE), 16 bits, block
    align ``2 x channels`` and byte rate ``rate x align``; a ``data`` chunk of whole frames.
    That is what soundfile writes for 16-bit WAV (every rmod row's file); for such bytes
    libsndfile reads ``frames`` frames from ``data_offset`` and scales them by 1/32768, which
    is what :class:`_Pcm16Wav` does."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    if int.from_bytes(data[4:8], "little") + 8 != len(data):
        return None
    at, fmt = 12, None
    while at + 8 <= len(data):
        chunk, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        body = at + 8
        if body + size > len(data):
            return None
        if chunk == b"fmt ":
            if fmt is not None or size < 16:
                return None
            tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag != 1 or bits != 16 or channels < 1 or align != 2 * channels:
                return None
            if byte_rate != rate * align:
                return None
            fmt = (channels, rate)
        elif chunk == b"data":
            if fmt is None or size % (2 * fmt[0]):
                return None
            return fmt[0], fmt[1], body, size // (2 * fmt[0])
        at = body + size + (size & 1)
    return None


class _Pcm16Wav:
    """What :class:`AudioReader` uses of ``soundfile.SoundFile``, over the bytes of a plain
    16-bit PCM WAV (:func:`plain_pcm16_wav`): the samples are read by numpy straight from the
    bytes and scaled as libsndfile scales them (:func:`rmod_dose_common.pcm.pcm16_as_float`),
    so a tar member costs no copy into libsndfile and no Python callback per read."""

    format, subtype = "WAV", "PCM_16"

    def __init__(self, data: bytes, channels: int, rate: int, offset: int, frames: int):
        self.frames, self.samplerate, self.channels = frames, rate, channels
        count = frames * channels
        pcm = np.frombuffer(data, dtype="<i2", count=count, offset=offset)
        self._pcm: np.ndarray | None = pcm.reshape(frames, channels)
        self._at = 0

    def tell(self) -> int:
        return self._at

    def seek(self, frame: int) -> int:
        self._at = frame
        return frame

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        assert self._pcm is not None and dtype == "float32" and always_2d
        block = self._pcm[self._at : self._at + frames]
        self._at += block.shape[0]
        return pcm16_as_float(block)

    def close(self) -> None:
        self._pcm = None


def _open_source(
    path: str | os.PathLike | MemberSource, error: type[AudioReadError]
) -> int | io.BytesIO | _Pcm16Wav:
    """What is decoded: a descriptor of a regular file (:func:`open_regular`), or a tar
    member's bytes (a :class:`~rmod_dose_common.tar_shards.MemberSource`; its
    ``TarShardError`` becomes ``error``, naming the shard and key), as a :class:`_Pcm16Wav`
    when they are a plain 16-bit PCM WAV."""
    if isinstance(path, MemberSource):
        try:
            data = path.read_bytes()
        except TarShardError as exc:
            raise error(str(path), str(exc)) from None
        plain = plain_pcm16_wav(data)
        return _Pcm16Wav(data, *plain) if plain is not None else io.BytesIO(data)
    return open_regular(path, error)


class AudioReader:
    """An open audio file whose header passed :func:`check_header`; a context manager.

    Args:
        path: the file, or a tar member (see the module text for what is refused).
        error: the error class raised, :class:`AudioReadError` or a subclass.
        max_samples: the cap on declared frames x channels (None: the header alone is read,
            e.g. to report a length; nothing may then be decoded through this reader).
    """

    def __init__(
        self,
        path: str | os.PathLike | MemberSource,
        error: type[AudioReadError] = AudioReadError,
        max_samples: Limit | None = MAX_STREAM_SAMPLES,
    ) -> None:
        #: How errors name the file: its path, or ``{shard}#{member}`` for a tar member.
        self.path: str | os.PathLike = str(path) if isinstance(path, MemberSource) else path
        self.error, self.max_samples = error, max_samples
        source = _open_source(path, error)
        fd = source if isinstance(source, int) else None
        self._file: Any  # a soundfile.SoundFile or a _Pcm16Wav; None once closed
        try:
            if isinstance(source, _Pcm16Wav):
                self._file = source
            else:
                self._file = sf.SoundFile(source, closefd=False)
        except Exception as exc:  # soundfile raises several types for bad input
            if fd is not None:
                os.close(fd)
            raise self._decode_error(exc) from None
        self._fd = fd
        info = self._file
        self.header = AudioHeader(
            int(info.frames), int(info.samplerate), int(info.channels), info.format, info.subtype
        )
        try:
            check_header(self.path, self.header, error, max_samples)
        except BaseException:
            self.close()
            raise

    def _decode_error(self, exc: Exception) -> AudioReadError:
        detail = getattr(exc, "error_string", None) or str(exc)
        return self.error(self.path, f"cannot decode audio ({type(exc).__name__}: {detail})")

    def blocks(self, block_samples: int | None = None) -> Iterator[np.ndarray]:
        """The file from its start, as float32 ``[frames, channels]`` blocks of about
        ``block_samples`` samples (default `BLOCK_SAMPLES`; the last block may be shorter; a
        file that decodes to fewer frames than it declares ends early). ``error`` when
        decoding fails or a block holds NaN/Inf."""
        if self.max_samples is None:
            raise ValueError("a reader opened without max_samples reads headers only")
        per_block = max(1, (block_samples or BLOCK_SAMPLES) // self.header.channels)
        left, decoded = self.header.frames, 0
        try:
            if self._file.tell() != 0:
                self._file.seek(0)
        except Exception as exc:  # soundfile raises several types for bad input
            raise self._decode_error(exc) from None
        while left > 0:
            try:
                block = self._file.read(min(per_block, left), dtype="float32", always_2d=True)
            except Exception as exc:  # soundfile raises several types for bad input
                raise self._decode_error(exc) from None
            if block.shape[0] == 0:
                break
            if not np.isfinite(block).all():
                raise self.error(self.path, "file holds non-finite samples (NaN or Inf)")
            left -= block.shape[0]
            decoded += block.shape[0]
            yield block
        if decoded == 0:
            raise self.error(self.path, "file holds no samples")

    def read(self) -> np.ndarray:
        """The whole file as float32 ``[channels, frames]``, one array allocated from the
        checked header and filled block by block."""
        out = np.empty((self.header.channels, self.header.frames), dtype=np.float32)
        at = 0
        for block in self.blocks():
            out[:, at : at + block.shape[0]] = block.T
            at += block.shape[0]
        return out if at == out.shape[1] else np.ascontiguousarray(out[:, :at])

    def close(self) -> None:
        """Close the file (again is harmless)."""
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None
            if self._fd is not None:
                os.close(self._fd)

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_header(
    path: str | os.PathLike | MemberSource, error: type[AudioReadError] = AudioReadError
) -> AudioHeader:
    """The checked header of ``path`` (rate, channels, frames > 0; no cap on the length),
    without decoding a sample."""
    with AudioReader(path, error, None) as reader:
        return reader.header


def read_audio(
    path: str | os.PathLike | MemberSource,
    error: type[AudioReadError] = AudioReadError,
    max_samples: Limit = MAX_SAMPLES,
) -> tuple[np.ndarray, int]:
    """Decode a whole file: float32 ``[channels, frames]`` and its sample rate in Hz. Refuses
    (``error``) what the module text lists, and a file above ``max_samples``."""
    with AudioReader(path, error, max_samples) as reader:
        return reader.read(), reader.header.sample_rate
