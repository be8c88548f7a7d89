"""Tar shards (``rmod-build --layout tar``): where a shard's tar goes, how a worker streams it,
how it commits and how a resume tells a whole tar from debris.

A shard of a tar build is ``DIR/{split}/{split}-{shard:06d}.tar`` (WebDataset layout: each
example is one key, its id, with the members ``{id}.mixture.{ext}``, ``{id}.kick.{ext}``,
``{id}.snare.{ext}``, ``{id}.hihat.{ext}``, ``{id}.pattern.mid`` and ``{id}.json``, the row)
and its index ``{split}-{shard:06d}.tar.index.json`` (offset, size and SHA-256 per member).
The format itself (headers, index, row paths ``TAR#MEMBER``) is
:mod:`rmod_dose_common.tar_shards`, shared with the readers.

Commit (the same protocol as a shard folder's, :mod:`rmod.build.shards`): the worker streams
members into ``DIR/{split}/.tmp-{split}-{shard:06d}-{unique}.tar`` as they are rendered (a
shard never sits in memory) and ends the archive; one filesystem flush makes it durable (as
for a shard folder, :func:`rmod_dose_common.fileio.sync_folder`); the index is written
atomically into place, then the tar is renamed into place and the folder fsynced; the
manifest part, written last, is the commit record. A tar without its part is debris of a
killed run and is redone.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from rmod.build.manifest import ManifestRow
from rmod_dose_common.fileio import atomic_write_bytes, replace_durably, sync_folder
from rmod_dose_common.tar_shards import (
    IndexEntry,
    TarIndex,
    TarShardError,
    end_of_archive,
    index_path,
    join_location,
    padding,
    read_index,
    split_location,
    ustar_header,
)

#: Examples per tar when ``--shard-size`` is not given: 1,000 examples make 2 tars, and a tar
#: of the paper's recipe (4 s stereo mixture + three 2 s mono one-shots, WAV) is ~0.6 GB,
#: inside the 0.25-1 GB per shard that WebDataset readers stream well.
DEFAULT_TAR_SHARD_SIZE = 500
TMP_PREFIX = ".tmp-"


def tar_name(split: str, number: int) -> str:
    """``{split}-{number:06d}.tar``."""
    return f"{split}-{number:06d}.tar"


def tar_relpath(split: str, number: int) -> str:
    """The tar's path relative to the dataset: ``{split}/{split}-{number:06d}.tar``."""
    return f"{split}/{tar_name(split, number)}"


def json_member(example_id: str) -> str:
    """The member holding an example's manifest row: ``{id}.json``."""
    return f"{example_id}.json"


def row_json_bytes(row: ManifestRow) -> bytes:
    """The ``{id}.json`` member: the row's manifest line, newline included."""
    return (row.to_json() + "\n").encode("utf-8")


class TarShardWriter:
    """Streams a shard's members into a temporary tar in ``DIR/{split}/`` and publishes it.

    ``location(name)`` is the row path of a member, ``write(name, data)`` appends one (header,
    data, padding), ``add_row(row)`` appends the row as ``{id}.json``; ``publish()`` ends the
    archive, writes and fsyncs the index and renames both into place; ``discard()`` removes
    whatever is left of an unpublished shard. ``OSError`` from the filesystem passes through.
    """

    def __init__(self, root: str | os.PathLike, split: str, number: int):
        self.folder = Path(root) / split
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = tar_name(split, number)
        self.rel = tar_relpath(split, number)
        unique = uuid.uuid4().hex[:12]
        self.tmp = self.folder / f"{TMP_PREFIX}{split}-{number:06d}-{unique}.tar"
        self._fh = open(self.tmp, "xb")  # noqa: SIM115 - closed in publish/discard
        self._hash = hashlib.sha256()
        self._written = 0
        self.members: list[IndexEntry] = []

    def location(self, name: str) -> str:
        """``{split}/{split}-{shard:06d}.tar#{name}``."""
        return join_location(self.rel, name)

    def _put(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self._written += len(data)

    def write(self, name: str, data: bytes, sha256: str | None = None) -> None:
        """Append member ``name``; ``sha256`` (hex of ``data``) when the caller has it."""
        self._put(ustar_header(name, len(data)))
        self.members.append(
            IndexEntry(name, self._written, len(data), sha256 or hashlib.sha256(data).hexdigest())
        )
        self._put(data)
        self._put(padding(len(data)))

    def add_row(self, row: ManifestRow) -> None:
        """Append the example's row as its ``{id}.json`` member (after its files)."""
        self.write(json_member(row.id), row_json_bytes(row))

    def publish(self) -> None:
        """End the archive and make it durable, write the index into place (atomically), then
        rename the tar into place, durably (the caller writes the manifest part afterwards)."""
        self._put(end_of_archive(self._written))
        self._fh.close()
        sync_folder(self.folder)  # one flush, as for a shard folder
        index = TarIndex(self.name, self._written, self._hash.hexdigest(), tuple(self.members))
        final = self.folder / self.name
        atomic_write_bytes(index_path(final), index.to_bytes())
        replace_durably(self.tmp, final)

    def discard(self) -> None:
        """Remove the temporary tar (a shard that was not published)."""
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


def tar_damage(
    root: str | os.PathLike, split: str, number: int, rows: list[ManifestRow]
) -> str | None:
    """Why a committed tar shard cannot be trusted (``None`` when it is whole).

    Cheap, like a folder's check: reads the index and ``stat`` s the tar. The tar must have
    the size its index records, and the index must list exactly the members the part's
    rows name, in order, each followed by its ``{id}.json``, at the sizes the rows record.
    """
    rel = tar_relpath(split, number)
    try:
        index = read_index(Path(root) / rel, rel)
    except TarShardError as exc:
        return exc.reason
    expected: list[tuple[str, int | None]] = []
    for row in rows:
        for role, location in row.files().items():
            try:
                where = split_location(location)
            except ValueError:
                where = None
            if where is None or where[0] != rel:
                return f"{row.id}: {location} is not a member of {rel}"
            expected.append((where[1], (row.sizes or {}).get(role)))
        expected.append((json_member(row.id), len(row_json_bytes(row))))
    names = [m.name for m in index.members]
    if names != [name for name, _ in expected]:
        return f"its index does not list the members its manifest part names ({rel})"
    for member, (name, size) in zip(index.members, expected, strict=True):
        if size is not None and member.size != size:
            return f"{name} is {member.size} bytes in {rel}, its manifest part says {size}"
    return None
