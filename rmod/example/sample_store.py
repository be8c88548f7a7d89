"""Library audio ready to render: decoded once at the build rate, pitched once, read in slices.

A :class:`SampleStore` sits between a :class:`rmod.library.catalog.Library` and the renderer.
Without a folder it keeps nothing and decodes (and pitches) on every request: what one
example (``rmod-render-one``) needs. With one, it keeps raw float32 sample files there,
channel-major ``[channels, samples]``, named by the source's *content hash* (a changed file,
with a new hash, never reads stale audio):

* ``<sha>-<rate>-<channels>.f32``: the decoded source at the build rate (exactly
  :meth:`Library.load_audio`'s result);
* ``<sha>-<rate>-<channels>-p<+semitones>.f32``: the whole loop shifted by
  :func:`rmod.example.pitch.pitch_shift_loop`.

**The store is the build's own, or absent.** ``rmod-build`` keeps it at ``DIR/.rmod-store``
(:data:`rmod.example.store_folder.STORE_DIR`, on the dataset's filesystem, so every worker of a
cluster shares it). :func:`~rmod.example.store_folder.create_store` makes it when a run starts, as a new real folder with a marker file
(:data:`MARKER`: the run's token and the size cap); :func:`remove_store` removes it when the
run ends. What is found there first is never trusted: a symbolic link is removed (not
followed), our own store is emptied, and anything else (a file, a folder without our
marker, one that cannot be emptied) is refused with a :class:`StoreError`. A worker opens
the folder once, without following links, and reads its marker (the token must be its
build's); every later file operation is relative to that open folder and opens entries
without following links, as regular files of exactly the expected size. So no audio is
read, and nothing written, outside the folder this run made, and every entry was written
by this run's workers. A store that is absent, or not this run's, is not used (the samples
are computed instead: the same bytes).

**A size cap, least recently used out.** The marker's cap bounds the bytes of all entries
together (:func:`parse_size`, ``rmod-build --store-max``). One shared store, one lock: every
change of the store's content is made under an exclusive ``flock`` on :data:`LOCK` in it,
which also holds the store's usage record (bytes, peak bytes, hits, misses, evictions;
:class:`StoreUsage`). A worker that keeps an entry first reserves its bytes in the record,
removing the least recently used entries (file ``mtime``, which each read refreshes) down
to :data:`EVICT_TO` of the cap when the reservation would pass it; it then writes the entry
under a temporary name without the lock, and renames it into place under the lock. Bytes
count from their reservation, so entries and temporary files together never pass the cap,
whatever the number of workers or machines sharing the store, and no worker waits on
another's writing. Reads take no lock: a file is never changed once in place, so a reader
that opened it keeps reading it even if it is evicted, and one that finds it gone computes
it again (the same float32 samples). An entry larger than the whole cap is not kept. Renders are exact, so the dataset's bytes never depend on the
cap, only the time spent pitching again.

A store that cannot be written (full disk) is logged once per process and only read from.
Files are not flushed to disk one by one: the store is a cache that no later run trusts.

Each read first checks that the library file is still there at its indexed size, so a
file damaged after indexing stops a build by path even when its audio is stored.

Disk without a cap: the decoded library at the build rate (4 bytes per sample and channel)
plus every (loop, semitone) pair the build has drawn so far: for the built-in library about
0.4 GB plus up to ~6.5 GB; for a library of the paper's size (~61 k pairs) about 61 GB with
5.5 s mono loops, roughly 130-260 GB at the paper's loop lengths. See ``docs/store.md``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rmod.audio import AudioFileError
from rmod.example.pitch import pitch_shift_loop
from rmod.example.store_folder import (
    _ENTRY_SUFFIX,
    _OPEN_DIR,
    _OPEN_FILE,
    _READ_ONLY,
    _TMP_SUFFIX,
    _UNUSABLE,
    EVICT_TO,
    LOCK,
    MARKER,
    StoreUsage,
    _int,
    _read_marker,
    _read_record,
    _usage,
    _write_record,
)

if TYPE_CHECKING:  # annotations only: nothing of these runs here
    from rmod.library.catalog import LibraryEntry
    from rmod.library.source import LibrarySource

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- the store
@dataclass
class _Open:
    """A store folder in use: its open descriptor, marker id and cap."""

    fd: int
    id: str
    cap: int
    hits: int = 0
    misses: int = 0


class SampleStore:
    """Library audio at one sample rate, kept on disk and read in slices.

    ``library`` supplies ids, entries, the fingerprint and :meth:`Library.load_audio` (the
    decoder that checks each file against its manifest entry). ``folder``: a store made by
    :func:`create_store` (``None``: keep nothing); ``token``: the token it must carry
    (``None``: any of ours). A folder that is not such a store is not used (logged once).
    :meth:`close` reports this store's hits and misses to the usage record and closes the
    folder.
    """

    def __init__(
        self,
        library: LibrarySource,
        sample_rate: int,
        folder: str | os.PathLike | None = None,
        token: str | None = None,
    ):
        self.library = library
        self.sample_rate = int(sample_rate)
        self.folder = Path(folder) if folder is not None else None
        self._open: _Open | None = None
        if self.folder is not None:
            self._open = _open_store(self.folder, token)

    @property
    def fingerprint(self) -> str:
        """The library's fingerprint."""
        return self.library.fingerprint

    @property
    def active(self) -> bool:
        """True while the store keeps files (a store of ours is open)."""
        return self._open is not None

    def ids(self, cls: str, split: str) -> tuple[str, ...]:
        """The library's ids of ``cls`` in ``split``."""
        return self.library.ids(cls, split)

    def entry(self, entry_id: str) -> LibraryEntry:
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
        name = self._name(entry_id, semitones, shape[0])
        kept = self._read(name, shape, whole=False)
        if kept is not None:  # only the pages of the slice are read
            return np.asarray(_slice_wrapped(kept, start, length))
        if not semitones:
            loop = self._decoded(entry_id, shape, looked_up=True)
        else:
            loop = pitch_shift_loop(self._decoded(entry_id, shape), self.sample_rate, semitones)
            if loop.shape == shape:
                self._keep(name, loop)
        return _slice_wrapped(loop, start, length)

    def _decoded(
        self, entry_id: str, shape: tuple[int, int], looked_up: bool = False
    ) -> np.ndarray:
        """The entry decoded at the store's rate: from its file when kept, else decoded (and
        kept when its length is the manifest's). ``looked_up``: the caller already missed
        this entry's file."""
        name = self._name(entry_id, 0, shape[0])
        if not looked_up:
            kept = self._read(name, shape, whole=True)
            if kept is not None:
                return kept
        audio = np.ascontiguousarray(self.library.load_audio(entry_id, self.sample_rate))
        if audio.shape == shape:  # else the manifest's rounded duration misleads: don't keep
            self._keep(name, audio)
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

    def _name(self, entry_id: str, semitones: int, channels: int) -> str:
        """The file name of the entry's audio (``channels``, shifted by ``semitones``)."""
        e = self.library.entry(entry_id)
        pitch = f"-p{int(semitones):+d}" if semitones else ""
        return f"{e.sha256}-{self.sample_rate}-{channels}{pitch}{_ENTRY_SUFFIX}"

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

    def _read(self, name: str, shape: tuple[int, int], whole: bool) -> np.ndarray | None:
        """The kept entry ``name`` (a regular file of exactly ``shape``'s float32 bytes in
        this store), its read refreshing its recency: all of it (``whole``) or mapped for
        slicing; ``None`` (a miss) otherwise or without a store."""
        s = self._open
        if s is None:
            return None
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=s.fd)
        except OSError:
            s.misses += 1
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != shape[0] * shape[1] * 4:
                s.misses += 1
                return None
            try:
                os.utime(fd)  # least recently used goes first
            except OSError:
                pass
            with os.fdopen(os.dup(fd), "rb") as fh:
                if whole:
                    data = np.fromfile(fh, dtype=np.float32, count=shape[0] * shape[1])
                    if data.size != shape[0] * shape[1]:
                        s.misses += 1
                        return None
                    data = data.reshape(shape)
                else:
                    data = np.memmap(fh, dtype=np.float32, mode="r", shape=shape)
        except OSError:
            s.misses += 1
            return None
        finally:
            os.close(fd)
        s.hits += 1
        return data

    def _keep(self, name: str, array: np.ndarray) -> None:
        """Keep ``array`` as entry ``name``, unless this process found the store unwritable."""
        s = self._open
        if s is None or s.id in _READ_ONLY:
            return
        try:
            _publish(s, name, array)
        except OSError as exc:
            _READ_ONLY.add(s.id)
            log.warning(
                "sample store %s cannot be written (%s): going on without it", self.folder, exc
            )

    def usage(self) -> StoreUsage | None:
        """The store's usage record (this store's own hits and misses not yet added);
        ``None`` without a store."""
        s = self._open
        if s is None:
            return None
        try:
            with _locked(s) as lock_fd:
                return _usage(_read_record(lock_fd), s.cap)
        except OSError:
            return None

    def close(self) -> None:
        """Add this store's hits and misses to the usage record, and close the folder."""
        s, self._open = self._open, None
        if s is None:
            return
        try:
            if s.hits or s.misses:
                with _locked(s) as lock_fd:
                    rec = _read_record(lock_fd)
                    rec["hits"] = _int(rec, "hits") + s.hits
                    rec["misses"] = _int(rec, "misses") + s.misses
                    _write_record(lock_fd, rec)
        except OSError as exc:
            log.warning("sample store %s: cannot record its hits (%s)", self.folder, exc)
        finally:
            os.close(s.fd)

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        s = getattr(self, "_open", None)
        if s is not None:
            try:
                os.close(s.fd)
            except OSError:
                pass


def _open_store(folder: Path, token: str | None) -> _Open | None:
    """Open ``folder`` as a store of ours (not through a link; with our marker, carrying
    ``token`` when given, and a cap above 0); ``None`` (logged once) when it is not one."""
    try:
        fd = os.open(folder, _OPEN_DIR)
    except FileNotFoundError:
        return None  # no store for this run (a cap of 0): quietly without
    except OSError as exc:
        _unusable(folder, f"cannot open it as a folder ({exc.strerror or exc})")
        return None
    marker = _read_marker(fd)
    why = None
    if marker is None:
        why = f"no valid {MARKER} in it: not a store rmod-build made"
    elif token is not None and marker["token"] != token:
        why = "it belongs to another run"
    elif marker["cap_bytes"] <= 0:
        why = "its cap is 0"
    if why is not None:
        os.close(fd)
        _unusable(folder, why)
        return None
    assert marker is not None  # a missing marker has set why above
    return _Open(fd, marker["id"], marker["cap_bytes"])


def _unusable(folder: Path, why: str) -> None:
    if (str(folder), why) not in _UNUSABLE:
        _UNUSABLE.add((str(folder), why))
        log.warning("not using the sample store %s (%s): computing samples instead", folder, why)


class _locked:
    """``with _locked(store) as lock_fd``: the store's lock file, open and ``flock``-ed
    exclusively (the usage record is its content)."""

    def __init__(self, store: _Open):
        self.store = store
        self.fd = -1

    def __enter__(self) -> int:
        self.fd = os.open(LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.store.fd)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            os.close(self.fd)
            raise
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the flock


def _entry_size(s: _Open, name: str) -> tuple[bool, int]:
    """(whether ``name`` exists in the store, its size when it is a regular file, else 0)."""
    try:
        st = os.stat(name, dir_fd=s.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False, 0
    return True, st.st_size if stat.S_ISREG(st.st_mode) else 0


def _publish(s: _Open, name: str, array: np.ndarray) -> None:
    """Keep ``array``'s float32 bytes as entry ``name`` of the open store ``s``.

    Three steps, so that the lock is never held while data is written: under the lock,
    reserve the entry's bytes in the usage record (evicting least recently used entries
    first when the cap needs it; nothing is kept when even that leaves no room); write the
    bytes under a temporary name; under the lock, rename it into place. Reserved bytes
    count from the reservation on, so the entries and the temporary files together never
    pass the cap. An entry already there at its size (another worker's, equal) is kept.
    """
    data = np.ascontiguousarray(array, dtype=np.float32)
    size = data.nbytes
    exists, old = _entry_size(s, name)
    if size > s.cap or (exists and old == size):
        return
    with _locked(s) as lock_fd:
        rec = _read_record(lock_fd)
        total = _int(rec, "bytes")
        if total + size > s.cap:
            total, evicted = _evict(s, total, target=max(0, int(s.cap * EVICT_TO) - size))
            rec["evicted"] = _int(rec, "evicted") + evicted
        if total + size > s.cap:  # what fills the cap is being written by others
            rec["bytes"] = total
            _write_record(lock_fd, rec)
            return
        rec["bytes"] = total + size
        rec["peak_bytes"] = max(_int(rec, "peak_bytes"), total + size)
        _write_record(lock_fd, rec)
    tmp = f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}"
    published = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=s.fd)  # fmt: skip
        try:
            # the array's own memoryview (numpy's stubs type ndarray as a Buffer on 3.12+ only)
            view = data.data.cast("B")
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        with _locked(s) as lock_fd:
            rec = _read_record(lock_fd)
            exists, old = _entry_size(s, name)
            if exists and old == size:  # another worker's, equal: keep it, drop ours
                os.unlink(tmp, dir_fd=s.fd)
                rec["bytes"] = max(0, _int(rec, "bytes") - size)
            else:  # a wrong-size file (or something else) is replaced
                if exists:
                    os.unlink(name, dir_fd=s.fd)
                    rec["bytes"] = max(0, _int(rec, "bytes") - old)
                os.rename(tmp, name, src_dir_fd=s.fd, dst_dir_fd=s.fd)
            published = True
            _write_record(lock_fd, rec)
    finally:
        if not published:  # give the reservation back
            try:
                os.unlink(tmp, dir_fd=s.fd)
            except OSError:
                pass
            with _locked(s) as lock_fd:
                rec = _read_record(lock_fd)
                rec["bytes"] = max(0, _int(rec, "bytes") - size)
                _write_record(lock_fd, rec)


def _evict(s: _Open, total: int, target: int) -> tuple[int, int]:
    """Under the lock: remove least recently used entries (oldest ``mtime`` first) until at
    most ``target`` of the ``total`` bytes the usage record counts remain, or no entry is
    left (bytes reserved by writers in flight stay counted); the bytes that remain and the
    number of entries removed."""
    entries = []
    with os.scandir(s.fd) as it:
        for e in it:
            if e.name.endswith(_ENTRY_SUFFIX) and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                entries.append((st.st_mtime_ns, e.name, st.st_size))
    entries.sort()
    evicted = 0
    for _, name, size in entries:
        if total <= target:
            break
        try:
            os.unlink(name, dir_fd=s.fd)
        except FileNotFoundError:
            continue
        total = max(0, total - size)
        evicted += 1
    return total, evicted


def _slice_wrapped(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """``length`` samples of ``[channels, n]`` from ``start``, wrapping around the end."""
    n = audio.shape[-1]
    if n == 0:
        raise ValueError("cannot slice an empty loop")
    idx = (int(start) % n + np.arange(length)) % n
    return audio[:, idx]
