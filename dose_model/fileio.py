"""Atomic file writes: write a temporary file beside the target, then rename it over.

A reader, or a run resumed after a kill, sees the old file or the new one, never half of
one. New files get the permissions a plain ``open(path, "w")`` would give them (0o666
minus the umask), not the 0o600 of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``path`` with what ``write(fh)`` writes to a binary file handle.

    The parent folder is created if needed. On any error (or interruption) the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Create or replace ``path`` with ``text`` (UTF-8), atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
