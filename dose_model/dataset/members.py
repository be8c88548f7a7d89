"""Audio files that are members of a tar shard (an RMOD build made with ``--layout tar``).

A manifest row of a tar build names each file as ``{tar}#{member}``, e.g.
``train/train-000000.tar#train-00000012.mixture.wav``, the tar relative to the dataset folder.
The manifest reader (:mod:`dose_model.dataset.manifest`) turns such a path into a
:class:`TarMember`; :meth:`TarMember.read_bytes` reads the member through the tar's sidecar
index (``{tar}.index.json``: offset, size and SHA-256 of every member): one seek, one read, no
unpacking. Indexes are read once per tar and kept for the last :data:`CACHED_INDEXES` tars
(keyed by the index's and the tar's size and modification time, so a rewritten shard is read
again).

A reader refuses, with a :class:`MemberError` naming the shard and the key (example id):
a tar whose size is not the one its index records (truncated or replaced), a missing or
malformed index, a member the index does not list, and, with ``verify`` (the default), a
member whose bytes no longer match the index's SHA-256. The format is
:mod:`rmod_dose_common.tar_shards` (``docs/formats.md``).
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path

from dose_model.errors import DoseError
from rmod_dose_common.tar_shards import (
    TarIndex,
    TarShardError,
    index_path,
    member_key,
    read_index,
    read_member,
)

#: Tar indexes kept in memory at once (one per tar; 500 examples are ~400 KB of index).
CACHED_INDEXES = 64


class MemberError(DoseError, TarShardError):
    """A tar member that cannot be read or trusted; ``str(err)`` names the shard and key (a
    :class:`~rmod_dose_common.tar_shards.TarShardError`, which the audio reader refuses as a
    bad file)."""


@dataclass(frozen=True)
class TarMember:
    """Member ``name`` of the tar shard at ``tar`` (an absolute path). ``shard`` is the tar's
    path relative to the dataset folder, used in messages; ``verify`` checks the member's bytes
    against the index's SHA-256 on every read."""

    tar: Path
    name: str
    shard: str = ""
    verify: bool = True

    @property
    def key(self) -> str:
        """The example id the member belongs to (its WebDataset key)."""
        return member_key(self.name)

    def __str__(self) -> str:
        return f"{self.shard or self.tar}#{self.name}"

    def is_file(self) -> bool:
        """True when the tar exists (as ``Path.is_file`` for a folder build's files)."""
        return self.tar.is_file()

    def tar_member(self) -> tuple[str, str]:
        """(the tar as named in messages, the member's name): marks a
        :class:`~rmod_dose_common.tar_shards.MemberSource` for the audio reader."""
        return self.shard or str(self.tar), self.name

    def read_bytes(self) -> bytes:
        """The member's bytes; :class:`MemberError` naming the shard and key when the tar,
        its index or the member cannot be trusted (see the module docstring)."""
        shard = self.shard or str(self.tar)
        try:
            entry = tar_index(self.tar, shard).entry(self.name)
            if entry is None:
                raise TarShardError(shard, f"{self.name} is not in its index", self.key)
            return read_member(self.tar, entry, self.verify, shard)
        except TarShardError as exc:
            raise MemberError(exc.shard, exc.reason, exc.key or self.key) from None

    def sha256(self) -> str:
        """The SHA-256 its shard's index records for the member (what a file hash of an
        unchanged member gives; read without reading the member)."""
        shard = self.shard or str(self.tar)
        try:
            entry = tar_index(self.tar, shard).entry(self.name)
        except TarShardError as exc:
            raise MemberError(exc.shard, exc.reason, exc.key or self.key) from None
        if entry is None:
            raise MemberError(shard, f"{self.name} is not in its index", self.key)
        return entry.sha256

    def open(self) -> io.BytesIO:
        """The member's bytes as a binary file object (what ``soundfile`` reads)."""
        return io.BytesIO(self.read_bytes())


def tar_index(tar: Path, shard: str | None = None) -> TarIndex:
    """The index of ``tar``, checked against the tar's size (cached, see the module
    docstring); :class:`rmod_dose_common.tar_shards.TarShardError` when it cannot be used."""
    try:
        idx, data = os.stat(index_path(tar)), os.stat(tar)
        stamp = (idx.st_size, idx.st_mtime_ns, idx.st_ino, data.st_size, data.st_mtime_ns)
    except OSError:
        stamp = None  # let read_index name what is missing
    if stamp is None:
        return read_index(tar, shard)
    return _cached_index(str(tar), shard, stamp)


@functools.lru_cache(maxsize=CACHED_INDEXES)
def _cached_index(tar: str, shard: str | None, stamp: tuple[int, ...]) -> TarIndex:
    return read_index(tar, shard)
