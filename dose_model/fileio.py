"""Files of dose_model: atomic writes, and torch files loaded without running their code.

Writes go to a temporary file beside the target, then a rename over it: a reader, or a run
resumed after a kill, sees the old file or the new one, never half of one. New files get the
permissions a plain ``open(path, "w")`` would give them (0o666 minus the umask), not the 0o600
of :func:`tempfile.mkstemp`. :func:`load_weights_only` reads a torch file with
``weights_only=True`` and says in one line why one cannot be read; :func:`sha256_file` is
the package's one file hash.
"""

from __future__ import annotations

import hashlib
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


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_weights_only(
    path: str | os.PathLike, error: Callable[[str], Exception], mmap: bool = False
) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU; ``error(reason)`` when the file
    cannot be read that way, ``reason`` one line (torch's own message runs over many lines
    and advises loading untrusted files with ``weights_only=False``, which we never do).
    ``mmap`` maps the tensors instead of reading them (for a caller that needs only the
    file's plain values)."""
    import torch  # here: the writers above serve modules that do not need torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any unpickling error, reported with the path
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        marker = "WeightsUnpickler error:"
        at = next((i for i, line in enumerate(lines) if marker in line), None)
        if at is None:
            detail = lines[0] if lines else ""
        else:  # the unpickler's own finding, on the marker's line or the next one
            after = lines[at].split(marker, 1)[1].strip() or "".join(lines[at + 1 : at + 2])
            detail = f"unsupported content: {after.split('. ')[0].rstrip('.')}"
        raise error(f"not a readable torch file ({type(exc).__name__}: {detail})") from None
