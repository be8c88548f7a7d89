"""Library audio ready to render: decoded once at the build rate, pitched once, read in slices.

A :class:`SampleStore` sits between a :class:`rmod.library.Library` and the renderer. With a
``folder`` (``rmod-build`` uses ``DIR/.rmod-store``, see :data:`STORE_DIR`, on the same
filesystem as the dataset, so every worker of a cluster shares it, and removes it when the
build is complete) it keeps raw sample files there, named by the source's *content hash*
(a changed file, with a new hash, never reads stale audio):

* ``<sha>-<rate>-<channels>.f32``: the decoded source at the build rate, float32,
  channel-major ``[channels, samples]`` (exactly :meth:`Library.load_audio`'s result);
* ``<sha>-<rate>-<channels>-p<+semitones>.s16``: a whole loop pitch-shifted by
  :func:`rmod.pitch.pitch_shift`, stored as 16-bit integers at :data:`PITCHED_SCALE`
  (range ±2, steps of 2^-14: -90 dB below full scale).

Without a folder it stores nothing and decodes (and pitches) on every request, which is what
one example (``rmod-render-one``) needs.

Renderers read only what they need: a one-shot whole (:meth:`SampleStore.audio`), a loop as the segment the example
slices from it (``numpy.fromfile`` at an offset: the bytes come from the operating
system's page cache, which every worker on the machine shares, so a worker's memory does
not grow with the library). A missing file is made on first use and written atomically;
two workers that race write identical bytes. A file of the wrong size is remade. A store
folder that cannot be written (read-only, full disk) is logged once and only read from.

Each read first checks that the library file is still there at its indexed size, so a
file damaged after indexing stops a build by path even when its audio is stored.

Pitched loops are quantized with :func:`quantize_pitched` whether or not they are
stored, so a build gives the same bytes with the cache on or off: storing them is a
matter of speed only (``keep_pitched``; worth it when each pitched loop is used more
than once, i.e. in large builds).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from rmod.audio import AudioFileError
from rmod.pitch import pitch_shift

log = logging.getLogger(__name__)

#: The store of a build, inside its output folder.
STORE_DIR = ".rmod-store"
#: Integer steps per unit of a stored pitched loop (2 ** 14: values in [-2, 2)).
PITCHED_SCALE = 16384.0


def quantize_pitched(audio: np.ndarray) -> np.ndarray:
    """int16 codes of a pitched loop: ``round(x * PITCHED_SCALE)``, saturating."""
    codes = np.rint(audio.astype(np.float64) * PITCHED_SCALE)
    return np.clip(codes, -32768, 32767).astype(np.int16)


def dequantize_pitched(codes: np.ndarray) -> np.ndarray:
    """float32 samples of :func:`quantize_pitched` codes."""
    return codes.astype(np.float32) * np.float32(1.0 / PITCHED_SCALE)


class SampleStore:
    """Library audio at one sample rate, cached on disk and read in slices.

    ``library`` supplies ids, entries, the fingerprint and :meth:`Library.load_audio` (the
    decoder that checks each file against its manifest entry). ``folder``: where to keep
    files (``None``: keep nothing). ``keep_pitched``: also keep whole pitched loops.
    """

    def __init__(
        self,
        library,
        sample_rate: int,
        folder: str | os.PathLike | None = None,
        keep_pitched: bool = False,
    ):
        self.library = library
        self.sample_rate = int(sample_rate)
        self.folder = Path(folder) if folder is not None else None
        self.keep_pitched = keep_pitched
        self._read_only = False

    @property
    def fingerprint(self) -> str:
        """The library's fingerprint."""
        return self.library.fingerprint

    def ids(self, cls: str, split: str) -> tuple[str, ...]:
        """The library's ids of ``cls`` in ``split``."""
        return self.library.ids(cls, split)

    def entry(self, entry_id: str):
        """The library's entry ``entry_id``."""
        return self.library.entry(entry_id)

    # ------------------------------------------------------------------ reading
    def audio(self, entry_id: str) -> np.ndarray:
        """The whole decoded sound, float32 ``[channels, samples]`` at the store's rate."""
        self._check_source(entry_id)
        path, shape = self._decoded_path(entry_id), self._shape(entry_id)
        if path is not None and _has_size(path, shape[0] * shape[1] * 4):
            return np.fromfile(path, dtype=np.float32).reshape(shape)
        audio = np.ascontiguousarray(self.library.load_audio(entry_id, self.sample_rate))
        if audio.shape == shape:  # else the manifest's rounded duration misleads: don't store
            self._save(path, audio)
        return audio

    def loop_segment(self, entry_id: str, semitones: int, start: int, length: int) -> np.ndarray:
        """``length`` samples from ``start`` of the loop shifted by ``semitones`` (the loop
        wraps around), float32 ``[channels, length]``."""
        self._check_source(entry_id)
        channels, n = self._shape(entry_id)
        if semitones == 0:
            path = self._decoded_path(entry_id)
            if path is not None and _has_size(path, channels * n * 4):
                return _read_wrapped(path, np.float32, channels, n, start, length)
            return _slice_wrapped(self.audio(entry_id), start, length)
        path = self._pitched_path(entry_id, semitones)
        if path is not None and _has_size(path, channels * n * 2):
            codes = _read_wrapped(path, np.int16, channels, n, start, length)
            return dequantize_pitched(codes)
        codes = quantize_pitched(pitch_shift(self.audio(entry_id), self.sample_rate, semitones))
        if self.keep_pitched and codes.shape == (channels, n):
            self._save(path, codes)
        return dequantize_pitched(_slice_wrapped(codes, start, length))

    # ------------------------------------------------------------------ files
    def _shape(self, entry_id: str) -> tuple[int, int]:
        """(channels, samples at the store's rate) of an entry, from its manifest entry."""
        e = self.library.entry(entry_id)
        channels = e.channels if e.channels <= 2 else 1
        n = int(round(e.duration * e.sample_rate))
        if e.sample_rate != self.sample_rate:
            n = int(round(n * self.sample_rate / e.sample_rate))
        return channels, n

    def _stem(self, entry_id: str) -> str:
        e = self.library.entry(entry_id)
        channels, _ = self._shape(entry_id)
        return f"{e.sha256[:2]}/{e.sha256}-{self.sample_rate}-{channels}"

    def _decoded_path(self, entry_id: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{self._stem(entry_id)}.f32"

    def _pitched_path(self, entry_id: str, semitones: int) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{self._stem(entry_id)}-p{int(semitones):+d}.s16"

    def _check_source(self, entry_id: str) -> None:
        """The library file must still be there at its indexed size (one ``stat``): a file
        damaged after indexing is reported even when its audio is already stored."""
        e = self.library.entry(entry_id)
        try:
            size = os.stat(e.path).st_size
        except OSError as exc:
            raise AudioFileError(e.path, f"cannot read ({exc.strerror or exc})") from None
        if e.size_bytes and size != e.size_bytes:
            raise AudioFileError(
                e.path,
                f"file changed since indexing ({size} bytes, the manifest says "
                f"{e.size_bytes}); re-index it",
            )

    def _save(self, path: Path, array: np.ndarray) -> None:
        """Store ``array`` at ``path``; a store that cannot be written (read-only, full) is
        reported once and then only read from: the build goes on, computing what it needs."""
        if self._read_only or path is None:
            return
        try:
            _write_atomic(path, array)
        except OSError as exc:
            self._read_only = True
            log.warning(
                "sample store %s is not writable (%s): going on without storing", self.folder, exc
            )


def _has_size(path: Path, nbytes: int) -> bool:
    try:
        return path.stat().st_size == nbytes
    except OSError:
        return False


def _write_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array``'s raw bytes to ``path`` durably under a temporary name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(np.ascontiguousarray(array).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _slice_wrapped(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``[channels, n]`` from ``start``, wrapping around the end."""
    n = audio.shape[-1]
    idx = (int(start) % n + np.arange(length)) % n
    return audio[:, idx]


def _read_wrapped(path: Path, dtype, channels: int, n: int, start: int, length: int) -> np.ndarray:
    """``_slice_wrapped`` of the ``[channels, n]`` array in ``path``, reading only what is needed."""
    if n == 0:
        raise ValueError(f"{path}: cannot slice an empty loop")
    size = np.dtype(dtype).itemsize
    out = np.empty((channels, length), dtype=dtype)
    with open(path, "rb") as fh:
        for c in range(channels):
            pos, done = int(start) % n, 0
            while done < length:
                take = min(length - done, n - pos)
                fh.seek((c * n + pos) * size)
                out[c, done : done + take] = np.fromfile(fh, dtype=dtype, count=take)
                done += take
                pos = 0
    return out
