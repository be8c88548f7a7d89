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
(:data:`STORE_DIR`, on the dataset's filesystem, so every worker of a cluster shares it).
:func:`create_store` makes it when a run starts, as a new real folder with a marker file
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
import json
import logging
import os
import re
import shutil
import stat
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rmod.audio import AudioFileError
from rmod.errors import RmodError
from rmod.example.pitch import pitch_shift_loop

log = logging.getLogger(__name__)

#: The store of a build, inside its output folder.
STORE_DIR = ".rmod-store"
#: The store's marker file: its format, the run's token and the size cap (JSON).
MARKER = "STORE.json"
#: The lock file (``flock``) that every write takes; it holds the usage record (JSON).
LOCK = ".lock"
STORE_FORMAT = "rmod-sample-store-1"
#: The default cap is this share of the disk space the run leaves free (see
#: :func:`default_store_max`).
DEFAULT_SPARE_SHARE = 0.5
#: A publisher that would pass the cap evicts down to this share of it (fewer scans).
EVICT_TO = 0.9
_ENTRY_SUFFIX = ".f32"
_TMP_SUFFIX = ".tmp"
_MAX_RECORD = 4096  # bytes of a marker or usage record we read
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_ONLY: set[str] = set()  # stores (by marker id) this process found it cannot write
_UNUSABLE: set[tuple[str, str]] = set()  # (folder, reason) already logged by this process


class StoreError(RmodError):
    """A ``DIR/.rmod-store`` that is not ours to use or remove: names the path and why."""


# ---------------------------------------------------------------------------- sizes
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as ``20MB``, ``1.5 GB``, ``512KiB`` or ``0`` (KB/MB/GB/TB are
    powers of 1000, KiB/MiB/GiB/TiB of 1024, case-insensitive). A number other than 0 needs
    a unit. Raises :class:`rmod.errors.InputError` naming the text."""
    from rmod.errors import InputError

    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else ""
    if m is None or (unit and unit not in _UNITS):
        raise InputError(f"bad size {text!r} (use e.g. 20MB, 1.5GB, 512KiB or 0)")
    value = float(m.group(1))
    if not unit:
        if value != 0:
            raise InputError(f"size {text!r} needs a unit (KB, MB, GB, TB or KiB, MiB, ...)")
        return 0
    return int(round(value * _UNITS[unit]))


def format_size(n: int | float) -> str:
    """``n`` bytes for people: ``1.23 GB``, ``456 MB``, ``12 kB``, ``7 B`` (powers of 1000)."""
    n = float(n)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def default_store_max(out: str | os.PathLike, to_write: int = 0) -> int:
    """The cap when ``--store-max`` is not given: half (:data:`DEFAULT_SPARE_SHARE`) of the
    space that ``out``'s filesystem has free now less ``to_write``, the bytes the run will
    still write into the dataset; 0 (no store) when that leaves nothing.

    So the store never fills the disk the dataset needs, on a laptop or a server, and a
    large build on a large disk keeps its whole working set (recomputing a pitched loop
    costs ~37 ms of CPU for 5.5 s of mono audio; see ``docs/store.md``). The cap does not
    change the dataset's bytes.
    """
    path = Path(out)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return 0
    return int(max(0, free - int(to_write)) * DEFAULT_SPARE_SHARE)


# ---------------------------------------------------------------------------- usage
@dataclass(frozen=True)
class StoreUsage:
    """The usage record of a store: ``cap_bytes`` (the cap), ``bytes`` (held now),
    ``peak_bytes`` (most held at once), ``hits``/``misses`` (requests served from a file /
    computed, as workers reported them at the end of their shards), ``evicted`` (entries
    removed to stay under the cap)."""

    cap_bytes: int
    bytes: int = 0
    peak_bytes: int = 0
    hits: int = 0
    misses: int = 0
    evicted: int = 0

    @property
    def hit_rate(self) -> float | None:
        """Share of requests served from the store; ``None`` before any request."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def to_dict(self) -> dict[str, int]:
        """The record as JSON-ready numbers."""
        return {
            "cap_bytes": self.cap_bytes,
            "bytes": self.bytes,
            "peak_bytes": self.peak_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evicted": self.evicted,
        }


def _read_record(fd: int) -> dict:
    """A small JSON record from an open file (``{}`` when empty or not JSON)."""
    raw = os.pread(fd, _MAX_RECORD + 1, 0)
    if not raw or len(raw) > _MAX_RECORD:
        return {}
    try:
        rec = json.loads(raw)
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def _write_record(fd: int, rec: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(rec, sort_keys=True).encode(), 0)


def _int(rec: dict, key: str) -> int:
    value = rec.get(key, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def _usage(rec: dict, cap: int) -> StoreUsage:
    return StoreUsage(
        cap, *(_int(rec, k) for k in ("bytes", "peak_bytes", "hits", "misses", "evicted"))
    )


# ---------------------------------------------------------------------------- the folder
def _read_marker(dir_fd: int) -> dict | None:
    """The store marker in the open folder ``dir_fd``, when it is a regular file of ours
    (not a link) with a token and a cap; else ``None``."""
    try:
        fd = os.open(MARKER, _OPEN_FILE, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        rec = _read_record(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    ok = (
        rec.get("format") == STORE_FORMAT
        and isinstance(rec.get("token"), str)
        and isinstance(rec.get("id"), str)
        and isinstance(rec.get("cap_bytes"), int)
        and rec["cap_bytes"] >= 0
    )
    return rec if ok else None


def remove_store(out: str | os.PathLike) -> None:
    """Remove ``out``'s ``.rmod-store``: a symbolic link is unlinked (never followed), our
    store (a real folder with our marker) removed with everything in it.

    Raises :class:`StoreError` for anything else there (a file, a folder without our
    marker), and when the store cannot be removed whole (a read-only folder): nothing of
    it may then be trusted or written to.
    """
    path = Path(out) / STORE_DIR
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot inspect the sample store ({exc.strerror or exc})"
        ) from None
    if stat.S_ISLNK(st.st_mode):
        try:
            os.unlink(path)
        except OSError as exc:
            raise StoreError(
                f"{path} is a symbolic link where the build keeps its sample store and cannot "
                f"be removed ({exc.strerror or exc}); remove it"
            ) from None
        log.warning("removed %s: a symbolic link, not the build's sample store", path)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(
            f"{path} is not a sample store rmod-build made (a file, not a folder); "
            "remove it or choose another --out"
        )
    try:
        dir_fd = os.open(path, _OPEN_DIR)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the sample store ({exc.strerror or exc})") from None
    try:
        ours = _read_marker(dir_fd) is not None
    finally:
        os.close(dir_fd)
    if not ours:
        raise StoreError(
            f"{path} is not a sample store rmod-build made (no valid {MARKER} in it); "
            "remove it or choose another --out"
        )
    failures: list[str] = []

    def report(failed: str, exc: BaseException) -> None:
        failures.append(f"{failed}: {getattr(exc, 'strerror', None) or exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda func, p, exc: report(p, exc))
    else:
        shutil.rmtree(path, onerror=lambda func, p, info: report(p, info[1]))
    if os.path.lexists(path):
        why = failures[0] if failures else "it came back while being removed"
        raise StoreError(
            f"cannot empty the sample store {path} ({why}); its files cannot be trusted: "
            "make it writable and remove it"
        )


def create_store(out: str | os.PathLike, cap_bytes: int, token: str) -> Path | None:
    """Make ``out``'s ``.rmod-store`` anew, empty, for a run whose workers carry ``token``
    (the build's lease), with a cap of ``cap_bytes``; its path (``None`` for a cap of 0:
    no store). What was there is handled by :func:`remove_store` first (raises
    :class:`StoreError`)."""
    remove_store(out)
    if cap_bytes <= 0:
        return None
    path = Path(out) / STORE_DIR
    try:
        os.mkdir(path, 0o755)
        dir_fd = os.open(path, _OPEN_DIR)
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot create the sample store ({exc.strerror or exc})"
        ) from None
    try:
        marker = {
            "format": STORE_FORMAT,
            "token": str(token),
            "id": uuid.uuid4().hex,
            "cap_bytes": int(cap_bytes),
        }
        for name, rec in ((LOCK, _usage({}, cap_bytes).to_dict()), (MARKER, marker)):
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd
            )
            try:
                _write_record(fd, rec)
            finally:
                os.close(fd)
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot create the sample store ({exc.strerror or exc})"
        ) from None
    finally:
        os.close(dir_fd)
    return path


def read_store_usage(out: str | os.PathLike) -> StoreUsage | None:
    """The usage record of ``out``'s store, when it is ours; else ``None``."""
    try:
        dir_fd = os.open(Path(out) / STORE_DIR, _OPEN_DIR)
    except OSError:
        return None
    try:
        marker = _read_marker(dir_fd)
        if marker is None:
            return None
        fd = os.open(LOCK, _OPEN_FILE, dir_fd=dir_fd)
        try:
            return _usage(_read_record(fd), marker["cap_bytes"])
        finally:
            os.close(fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)


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
        library,
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

    def __exit__(self, *exc) -> None:
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

    def __exit__(self, *exc) -> None:
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
            view = memoryview(data).cast("B")
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
