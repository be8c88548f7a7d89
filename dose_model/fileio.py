"""Torch files of dose_model, loaded without running their code.

:func:`load_weights_only` reads a torch file with ``weights_only=True`` and says in one line
why one cannot be read. Atomic, durable writes and file hashes are shared with rmod:
:mod:`rmod_dose_common.fileio`.
"""

from __future__ import annotations

import os
from collections.abc import Callable


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
