"""The sample store's folder: made by the build, ours or absent, bounded, removed at the end.

``DIR/.rmod-store`` (:data:`STORE_DIR`) is created by :func:`create_store` when a run starts,
as a new real folder with a marker (:data:`MARKER`: the run's token and the size cap), and
removed by :func:`remove_store` when it ends; what is found there first is never trusted (a
link is removed, our own store emptied, anything else refused with :class:`StoreError`). The
usage record (bytes, peak, hits, misses, evictions: :class:`StoreUsage`) lives in
:data:`LOCK`, under one ``flock``. The cap: :func:`parse_size`, :func:`default_store_max`.
What is kept in the folder, and how it is read and evicted: :mod:`rmod.example.sample_store`.
"""

from __future__ import annotations

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

from rmod.errors import RmodError

#: The store of a build, inside its output folder.
log = logging.getLogger(__name__)

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
