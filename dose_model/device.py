"""Turn a ``--device`` argument into a `torch.device`, or say why it cannot be used."""

from __future__ import annotations

import torch

from dose_model.errors import InputError


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """ "auto" -> cuda[:local_rank] when available, else cpu; "cuda" -> cuda:local_rank;
    anything else as given.

    Raises InputError (a ValueError) for a malformed name or a CUDA device this machine does not have (torch
    itself would fail later, deep inside, with a bare AssertionError or RuntimeError).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"device {str(device)!r}: {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {str(device)!r}: CUDA is not available here (torch "
                f"{torch.__version__}); use --device cpu"
            )
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s)"
            )
    return dev
