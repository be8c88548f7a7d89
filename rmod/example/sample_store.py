"""Library audio ready to render: decoded once at the build rate, pitched once, read in slices.

A :class:`SampleStore` sits between a :class:`rmod.library.catalog.Library` and the renderer. With a
``folder`` (``rmod-build`` uses ``DIR/.rmod-store``, :data:`STORE_DIR`: on the dataset's own
filesystem, so every worker of a cluster shares it; the build empties it when it starts and
removes it when it is complete) it keeps raw float32 sample files there, channel-major
``[channels, samples]``, named by the source's *content hash* (a changed file, with a new
hash, never reads stale audio):

* ``<sha>-<rate>-<channels>.f32``: the decoded source at the build rate (exactly
  :meth:`Library.load_audio`'s result);
* ``<sha>-<rate>-<channels>-p<+semitones>.f32``: the whole loop shifted by
  :func:`rmod.example.pitch.pitch_shift_loop`.

Renderers read only what they need: a one-shot whole (:meth:`SampleStore.audio`), a loop as
the segment the example slices from it (``numpy.fromfile`` at an offset: the bytes come from
the operating system's page cache, which every worker on the machine shares, so a worker's
memory does not grow with the library). A missing file is made on first use; it is written
under a temporary name and published with a hard link, so a file that another worker
already published is never replaced under its readers (the two are equal anyway). A file of
the wrong size is made again. A store that cannot be written (read-only, full disk) is
logged once per process and only read from. Files are not flushed to disk one by one: a
store left by an interrupted build is emptied by the next run rather than trusted.

Without a folder it keeps nothing and decodes (and pitches) on every request: what one
example (``rmod-render-one``) needs.

Each read first checks that the library file is still there at its indexed size, so a
file damaged after indexing stops a build by path even when its audio is stored.

Disk: the decoded library at the build rate (4 bytes per sample and channel) plus every
(loop, semitone) pair the build has drawn so far, at the same rate: for the built-in
library at most ~0.4 GB plus ~6.5 GB; for a library of 3,600 six-second mono loops and the
paper's semitone ranges, up to ~90 GB, held only while the build runs.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from rmod.audio import AudioFileError
from rmod.example.pitch import pitch_shift_loop

log = logging.getLogger(__name__)

#: The store of a build, inside its output folder.
STORE_DIR = ".rmod-store"
_READ_ONLY: set[Path] = set()  # store folders this process found it cannot write


class SampleStore:
    """Library audio at one sample rate, kept on disk and read in slices.

    ``library`` supplies ids, entries, the fingerprint and :meth:`Library.load_audio` (the
    decoder that checks each file against its manifest entry). ``folder``: where to keep
    files (``None``: keep nothing).
    """

    def __init__(self, library, sample_rate: int, folder: str | os.PathLike | None = None):
        self.library = library
        self.sample_rate = int(sample_rate)
        self.folder = Path(folder) if folder is not None else None

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
        return self._decoded(entry_id, self._shape(entry_id))

    def loop_segment(self, entry_id: str, semitones: int, start: int, length: int) -> np.ndarray:
        """``length`` samples from ``start`` of the loop shifted by ``semitones`` (the loop
        wraps around), float32 ``[channels, length]``."""
        self._check_source(entry_id)
        shape = self._shape(entry_id)
        path = self._path(entry_id, semitones, shape[0])
        if _has_size(path, shape):  # only the pages of the slice are read
            return np.asarray(
                _slice_wrapped(np.memmap(path, np.float32, "r", shape=shape), start, length)
            )
        loop = self._decoded(entry_id, shape)
        if semitones:
            loop = pitch_shift_loop(loop, self.sample_rate, semitones)
            if loop.shape == shape:
                self._keep(path, loop)
        return _slice_wrapped(loop, start, length)

    def _decoded(self, entry_id: str, shape: tuple[int, int]) -> np.ndarray:
        """The entry decoded at the store's rate: from its file when kept, else decoded (and
        kept when its length is the manifest's)."""
        path = self._path(entry_id, 0, shape[0])
        if _has_size(path, shape):
            return np.fromfile(path, dtype=np.float32).reshape(shape)
        audio = np.ascontiguousarray(self.library.load_audio(entry_id, self.sample_rate))
        if audio.shape == shape:  # else the manifest's rounded duration misleads: don't keep
            self._keep(path, audio)
        return audio

    # ------------------------------------------------------------------ files
    def _shape(self, entry_id: str) -> tuple[int, int]:
        """(channels, samples at the store's rate) of an entry, from its manifest entry."""
        e = self.library.entry(entry_id)
        channels = e.channels if e.channels <= 2 else 1
        n = int(round(e.duration * e.sample_rate))
        if e.sample_rate != self.sample_rate:
            n = int(round(n * self.sample_rate / e.sample_rate))
        return channels, n

    def _path(self, entry_id: str, semitones: int, channels: int) -> Path | None:
        """Where the entry's audio (``channels``, shifted by ``semitones``) is kept; None
        without a folder."""
        if self.folder is None:
            return None
        e = self.library.entry(entry_id)
        pitch = f"-p{int(semitones):+d}" if semitones else ""
        return self.folder / e.sha256[:2] / f"{e.sha256}-{self.sample_rate}-{channels}{pitch}.f32"

    def _check_source(self, entry_id: str) -> None:
        """The library file must still be there at its indexed size (one ``stat``; what is
        not a regular file is left to the decoder, as without a store)."""
        e = self.library.entry(entry_id)
        try:
            st = os.stat(e.path)
        except OSError as exc:
            raise AudioFileError(e.path, f"cannot read ({exc.strerror or exc})") from None
        size = st.st_size
        if e.size_bytes and stat.S_ISREG(st.st_mode) and size != e.size_bytes:
            raise AudioFileError(
                e.path,
                f"file changed since indexing ({size} bytes, the manifest says "
                f"{e.size_bytes}); re-index it",
            )

    def _keep(self, path: Path | None, array: np.ndarray) -> None:
        """Keep ``array`` at ``path``, unless this process found the store unwritable."""
        if path is None or self.folder in _READ_ONLY:
            return
        try:
            _publish(path, array)
        except OSError as exc:
            _READ_ONLY.add(self.folder)
            log.warning(
                "sample store %s cannot be written (%s): going on without it", self.folder, exc
            )


def _has_size(path: Path | None, shape: tuple[int, int]) -> bool:
    if path is None:
        return False
    try:
        return path.stat().st_size == shape[0] * shape[1] * 4
    except OSError:
        return False


def _publish(path: Path, array: np.ndarray) -> None:
    """Write ``array``'s float32 bytes under a temporary name, then link it to ``path``.

    A file already at ``path`` (another worker's, equal) is kept unless its size is wrong.
    """
    data = np.ascontiguousarray(array, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.tobytes())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if not _has_size(path, (1, data.size)):
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _slice_wrapped(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``[channels, n]`` from ``start``, wrapping around the end."""
    n = audio.shape[-1]
    if n == 0:
        raise ValueError("cannot slice an empty loop")
    idx = (int(start) % n + np.arange(length)) % n
    return audio[:, idx]
