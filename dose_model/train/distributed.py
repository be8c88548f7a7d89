"""Where a training process runs: the ``torchrun`` environment (read in one place,
`dist_env`) and the signals that stop a run cleanly (`StopSignals`)."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from types import FrameType


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a ``torchrun`` launch (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """The torchrun environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``): the one place that
    reads it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def join_process_group(env: DistEnv, device_arg: str) -> None:
    """Join the process group when launched by torchrun with more than one process."""
    if env.world > 1 and not dist.is_initialized():
        cuda = device_arg != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")


class StopSignals:
    """While active (main thread only), SIGTERM and SIGINT (Ctrl-C) ask the loop to stop at
    the next step boundary instead of killing it; a second Ctrl-C interrupts at once.
    ``requested(env, check)`` agrees over all ranks (checked at ``check`` steps under DDP)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def requested(self, env: DistEnv, device: torch.device, check: bool) -> bool:
        if env.world == 1:
            return self.signum is not None
        if not check:
            return False
        flag = torch.tensor([float(self.signum or 0)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.signum = self.signum or (int(flag.item()) or None)
        return self.signum is not None
