"""``dose-tokenize`` on many processes, devices and hosts: which shards a rank encodes, and
who writes the index.

A cache's shards, taken in order over the splits (``train`` 0, 1, ..., then ``valid`` 0, ...),
have ordinals 0, 1, 2, ...; shard ordinal ``g`` belongs to rank ``g % world_size``
(`TokenizeRank.owns`). Every rank encodes only its own shards, with the usual commit (a
temporary folder renamed into place) and the usual resume (a finished shard is kept), so the
shard files are the bytes a single process writes. No rank writes the shard list: ranks
write ``index.json`` only as the incomplete claim every run starts with (``"complete":
false`` and the settings, the same bytes from every rank).

The index comes from one merge, which reads every shard's ``meta.json`` back, checks it
against the manifest and writes the index exactly as a single process does (in fact a
single process runs the same merge after encoding; see
:func:`dose_model.cache.tokenize.assemble_index`), so the cache is byte-identical to a
one-process run. Two ways to run it:

- separate launches (``--rank R --world-size W`` on any scheduler, hosts sharing the output
  folder): when every rank has exited 0, run ``dose-tokenize --merge`` once with the same
  ``--manifest``, ``--codec-weights``, ``--out`` and settings. It encodes nothing and names
  the shards that are missing, if any;
- ``torchrun`` (``WORLD_SIZE`` > 1 in the environment): the ranks join a gloo process group
  (CPU, no device needed) only to wait for each other at the end (`merge_after_barrier`);
  rank 0 then merges. torchrun stops every rank when one fails, so nobody waits forever.

A merge that finds shards missing is an error, never a partial index: rerun the rank that
owns them (or a plain ``dose-tokenize``, which encodes what is missing and keeps the rest).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from dose_model.errors import InputError
from dose_model.train.distributed import DistEnv, dist_env

BARRIER_TIMEOUT = timedelta(days=2)
"""How long a torchrun rank waits at the final barrier for the slowest rank (the group's
timeout; torchrun stops every rank when one fails, so this bounds only a hung one)."""

T = TypeVar("T")


@dataclass(frozen=True)
class TokenizeRank:
    """This process's part of a ``dose-tokenize`` run.

    ``rank`` / ``world_size``: which shards it encodes (ordinal ``g`` when ``g % world_size
    == rank``). ``merge``: encode nothing, require every shard and write the index (the
    merge step). A single process is ``TokenizeRank()``: rank 0 of 1, which encodes every
    shard and writes the index.
    """

    rank: int = 0
    world_size: int = 1
    merge: bool = False

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise InputError(
                f"--rank must be in 0..--world-size - 1 and --world-size at least 1, got "
                f"rank {self.rank} of {self.world_size}"
            )
        if self.merge and self.world_size != 1:
            raise InputError("--merge runs once, alone: no --rank/--world-size with it")

    def owns(self, ordinal: int) -> bool:
        """True when this process encodes the shard of ``ordinal`` (never in a merge)."""
        return not self.merge and ordinal % self.world_size == self.rank

    @property
    def writes_index(self) -> bool:
        """True for a single process and for the merge: they write the shard list."""
        return self.world_size == 1


def rank_from(args: argparse.Namespace, env: DistEnv | None = None) -> tuple[TokenizeRank, bool]:
    """This process's part from ``--rank/--world-size/--merge`` or, when they are not given,
    from the torchrun environment (:func:`dose_model.train.distributed.dist_env`, the one
    place that reads it). Returns the part and whether it runs under torchrun (then the
    ranks meet at a barrier and rank 0 merges: `merge_after_barrier`)."""
    env = env if env is not None else dist_env()
    given = (args.rank is not None, args.world_size is not None)
    if any(given) and not all(given):
        raise InputError("--rank and --world-size go together")
    if all(given):
        return TokenizeRank(args.rank, args.world_size, args.merge), False
    if env.world > 1:
        if args.merge:
            raise InputError("--merge runs once, alone, not under torchrun")
        return TokenizeRank(env.rank, env.world), True
    return TokenizeRank(merge=args.merge), False


def rank_device(device: str, env: DistEnv) -> str:
    """Under torchrun, a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` (one device per process
    on a host); any other device is used as given."""
    return f"cuda:{env.local_rank}" if device == "cuda" and env.world > 1 else device


def merge_after_barrier(part: TokenizeRank, encode: Callable[[], T], merge: Callable[[], T]) -> T:
    """Under torchrun: join a gloo group, ``encode()`` this rank's shards, wait for every
    rank, then ``merge()`` on rank 0. Returns what rank 0's merge returns, and on the other
    ranks what their encoding returned. The group is left when done, also on an error."""
    import torch.distributed as dist

    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        mine = encode()
        dist.barrier()
        return merge() if part.rank == 0 else mine
    finally:
        if joined:
            dist.destroy_process_group()
