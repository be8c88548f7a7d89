"""What ``rmod-verify`` checks in a tar build (``rmod-build --layout tar``) beyond its rows.

:class:`TarMembers` reads a row's members through their shard's index, for the row checks
of :mod:`rmod.inspect.verify` (checksums, decoding, the ``{id}.json`` member). The checks here
cover the rest of every byte of a tar, so a flipped byte anywhere is found and named:

* :func:`check_tar_shard`: the tar exists and has the size its index records (a truncated
  tar is refused, naming it), the index lists exactly the members ``rmod-build`` writes for
  the shard's examples, in order and back to back; every header is the one ``rmod-build``
  writes (rebuilt from name and size, :func:`rmod_dose_common.tar_shards.ustar_header`),
  every padding and the end of the archive are zeros, and the whole tar has the index's
  SHA-256. Problems name the shard and, for a member, its key (the example id).
* :func:`check_tar_strays`: the split folders hold nothing but this build's tars and indexes.

Each function returns ``(where, what)`` pairs; :mod:`rmod.inspect.verify` turns them into
problems.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rmod import SPLITS
from rmod.build.manifest import AUDIO_ROLES, BuildInfo
from rmod.build.tar_layout import json_member, tar_name, tar_relpath
from rmod_dose_common.tar_shards import (
    BLOCK,
    INDEX_SUFFIX,
    IndexEntry,
    TarIndex,
    TarShardError,
    end_of_archive,
    padding,
    read_index,
    read_member,
    split_location,
    ustar_header,
)

if TYPE_CHECKING:
    from collections.abc import Callable

#: Indexes kept in memory at once by :class:`TarMembers` (rows come in shard order).
CACHED_INDEXES = 8


def shard_members(info: BuildInfo, split: str, number: int) -> list[str]:
    """Member names of a shard, in the order ``rmod-build`` writes them."""
    start = number * info.shard_size
    stop = min(start + info.shard_size, int(info.counts.get(split, 0)))
    out = []
    for index in range(start, stop):
        eid = f"{split}-{index:08d}"
        out += [f"{eid}.{role}.{info.audio_format}" for role in AUDIO_ROLES]
        out += [f"{eid}.pattern.mid", json_member(eid)]
    return out


class TarMembers:
    """Reads members of a tar build by row path (``TAR#MEMBER``), through each tar's index,
    read once and kept for the last :data:`CACHED_INDEXES` tars; safe across threads."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._indexes: OrderedDict[str, TarIndex | TarShardError] = OrderedDict()

    def index(self, tar_rel: str) -> TarIndex:
        """The index of ``tar_rel`` (checked against the tar's size); raises the
        :class:`TarShardError` that reading it raised, once per tar."""
        with self._lock:
            got = self._indexes.get(tar_rel)
            if got is None:
                try:
                    got = read_index(self.root / tar_rel, tar_rel)
                except TarShardError as exc:
                    got = exc
                self._indexes[tar_rel] = got
                while len(self._indexes) > CACHED_INDEXES:
                    self._indexes.popitem(last=False)
        if isinstance(got, TarShardError):
            raise got
        return got

    def read(self, location: str) -> tuple[bytes | None, str]:
        """The bytes of the member at ``location`` (not checked against the index: the
        caller compares them with the row), or ``None`` and why not."""
        where = split_location(location)
        if where is None:
            return None, "not a tar member (TAR#MEMBER) in a tar build"
        tar_rel, name = where
        try:
            entry = self.index(tar_rel).entry(name)
        except TarShardError as exc:
            return None, exc.reason
        if entry is None:
            return None, f"not in the index of {tar_rel}"
        try:
            return read_member(self.root / tar_rel, entry, verify=False, shard=tar_rel), ""
        except TarShardError as exc:
            return None, exc.reason

    def index_sha256(self, location: str) -> str | None:
        """The SHA-256 the index records for the member at ``location`` (None if unknown)."""
        try:
            tar_rel, name = split_location(location) or ("", "")
            entry = self.index(tar_rel).entry(name) if tar_rel else None
        except (TarShardError, ValueError):
            return None
        return entry.sha256 if entry else None


def check_tar_shard(root: Path, info: BuildInfo, split: str, number: int) -> list[tuple[str, str]]:
    """Every byte of one tar that the rows do not cover (see the module docstring)."""
    rel = tar_relpath(split, number)
    try:
        index = read_index(root / rel, rel)
    except TarShardError as exc:
        return [(rel, exc.reason)]
    expected = shard_members(info, split, number)
    names = [m.name for m in index.members]
    if names != expected:
        missing = [n for n in expected if n not in set(names)]
        extra = [n for n in names if n not in set(expected)]
        what = "its index does not list the shard's members in order"
        if missing or extra:
            what += f" (missing {missing[:3]}, not of this shard {extra[:3]})"
        return [(rel, what)]
    try:
        return _check_framing(root / rel, rel, index)
    except OSError as exc:
        return [(rel, f"cannot read ({exc.strerror or exc})")]


def _check_framing(path: Path, rel: str, index: TarIndex) -> list[tuple[str, str]]:
    """Headers, padding, contiguity and end of the archive; the whole tar's SHA-256."""
    out: list[tuple[str, str]] = []
    h = hashlib.sha256()
    pos = 0
    with open(path, "rb") as fh:

        def take(n: int) -> bytes:
            nonlocal pos
            data = fh.read(n)
            h.update(data)
            pos += len(data)
            return data

        for m in index.members:
            if m.offset != pos + BLOCK:
                out.append((rel, f"key {m.key}: {m.name} is not where the previous member ends"))
                return out
            if take(BLOCK) != ustar_header(m.name, m.size):
                out.append((rel, f"key {m.key}: the tar header of {m.name} was changed"))
            _stream(fh, m, take)
            if take(len(padding(m.size))) != padding(m.size):
                out.append((rel, f"key {m.key}: the padding after {m.name} is not zeros"))
        tail = end_of_archive(pos)
        if take(index.size - pos) != tail:
            out.append((rel, "the end of the archive is not zeros (or the tar's size is wrong)"))
    if h.hexdigest() != index.sha256:
        if not out:  # member data changed: the row checks name the member and its key
            out.append((rel, "the tar's SHA-256 is not its index's (see the member problems)"))
    return out


def _stream(fh: IO[bytes], entry: IndexEntry, take: Callable[[int], bytes]) -> None:
    """Read past a member's data (hashed by ``take``) in blocks of 1 MiB."""
    left = entry.size
    while left > 0:
        got = take(min(left, 1 << 20))
        if not got:
            return
        left -= len(got)


def check_tar_strays(root: Path, info: BuildInfo) -> list[tuple[str, str]]:
    """Entries of the split folders that are not this build's tars and indexes (temporary
    tars of an interrupted build, other files, folders, links)."""
    out: list[tuple[str, str]] = []
    for split in SPLITS:
        folder = root / split
        if folder.is_symlink():
            out.append((split, "is a symbolic link (the dataset must hold its own files)"))
            continue
        if not folder.is_dir():
            continue
        shards = -(-int(info.counts.get(split, 0)) // info.shard_size)
        wanted = {tar_name(split, k) for k in range(shards)}
        wanted |= {f"{name}{INDEX_SUFFIX}" for name in list(wanted)}
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.append((split, f"cannot list folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            rel = f"{split}/{entry.name}"
            if entry.name not in wanted:
                out.append((rel, "not part of the dataset (debris of an interrupted build?)"))
            elif entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                out.append((rel, "not a regular file (the dataset must hold its own files)"))
    return out
