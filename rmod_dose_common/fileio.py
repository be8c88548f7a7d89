"""Durable file writes and file hashes: the one copy that `rmod` and `dose_model` both use.

A file is written under a temporary name in its own folder, flushed and ``fsync``-ed, renamed
over the target, and then the folder is ``fsync``-ed too, so that after a crash or a power cut
a reader finds the old file or the whole new one, and a rename that was reported done stays
done. A folder of files is published the same way (:func:`sync_folder`, then
:func:`replace_durably`): rmod's shards and dose_model's token shards.

New files get the mode a plain ``open(path, "w")`` would give them (0o666 minus the umask
at the time of the write), not the 0o600 of :func:`tempfile.mkstemp`, which the other users
of a shared filesystem could not read.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

#: Bytes read at a time by :func:`sha256_file` (1 MiB).
HASH_CHUNK = 1 << 20


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc``);
    elsewhere by setting and restoring it (a moment in which another thread could create a
    file with umask 0)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sync_parent(path: str | os.PathLike) -> None:
    """``fsync`` the folder holding ``path``, so that a name created, replaced or removed in
    it survives a crash."""
    fd = os.open(Path(path).parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` (a file, or a folder already made durable with :func:`sync_folder`)
    over ``dst`` and ``fsync`` the folder of ``dst`` (and of ``src`` when it differs)."""
    os.replace(src, dst)
    sync_parent(dst)
    if Path(src).parent.resolve() != Path(dst).parent.resolve():
        sync_parent(src)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears at ``path`` only once the ``with`` block
    succeeds (see the module docstring); the parent folder is created if needed.

    On any error or interruption the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        replace_durably(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write(fh)`` writes to a binary file handle
    (e.g. ``lambda fh: torch.save(obj, fh)``), atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as fh:
        write(fh)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Create or replace ``path`` with ``text`` encoded as UTF-8, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sync_folder(folder: str | os.PathLike) -> None:
    """Make every file written in ``folder`` durable, with one flush instead of one per file.

    On Linux one ``syncfs`` flushes the folder's filesystem (an error, e.g. EIO, is raised,
    not ignored); where it does not exist each file is ``fsync``-ed. The folder itself is
    ``fsync``-ed last, so the names are durable too. Used before a folder of plainly written
    files is published by one rename (:func:`replace_durably`). (Linux before 5.8 does not
    report write-back errors through ``syncfs``, and FUSE before 5.15 ignores it: there,
    prefer a local disk.)
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


def sha256_file(path: str | os.PathLike, chunk: int = HASH_CHUNK) -> str:
    """SHA-256 hex digest of a file's bytes, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
