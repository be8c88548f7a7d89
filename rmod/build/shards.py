"""Shards: the unit of work, of commit and of resume in ``rmod-build``.

A shard is ``shard_size`` consecutive examples of one split. Its audio lives in
``DIR/{split}/{number:06d}/`` (the folder layout) or in one tar,
``DIR/{split}/{split}-{number:06d}.tar`` with its index (the tar layout,
:mod:`rmod.build.tar_layout`), and its manifest rows in
``DIR/manifests/parts/{split}-{number:06d}.jsonl``. Below, "folder" is the folder layout's; a
tar shard follows the same protocol with its tar and index in place of the folder (a
temporary tar renamed into place, checked by :func:`rmod.build.tar_layout.tar_damage`).

Commit protocol (what makes a build resumable after a kill at any moment):

1. a worker renders the shard into a fresh temporary folder
   ``DIR/{split}/.tmp-{number:06d}-{unique}/``;
2. the folder is renamed to ``DIR/{split}/{number:06d}/`` (one atomic rename);
3. the manifest part is written atomically (temporary file + rename).

The part is the commit record: a shard is *complete* exactly when its part exists, its
folder exists and the folder holds every file the part lists, at the recorded sizes (a
cheap check: one listing and one ``stat`` per file, no decoding). A build that stores no
files (``--tokens``: its token sink commits the shard instead, then the part is written)
has no shard folders: there the part alone is the record, and the sink says whether it
holds the shard (:mod:`rmod.build.sink`). A folder whose part is
gone but whose rows the final manifest ``DIR/manifests/{split}.jsonl`` still holds gets
its part back from those lines (:func:`restore_parts`), so deleting ``manifests/parts/``
never costs finished work. Anything else found at start-up (temporary folders, a folder
without its part, a part without its folder, a damaged shard, half-written temporary
files) is debris of an interrupted run and is removed before work resumes, so finished
shards are never redone and unfinished ones are redone from scratch.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from rmod import SPLITS
from rmod.build import tar_layout
from rmod.build.manifest import (
    LAYOUTS,
    MANIFEST_DIR,
    PARTS_DIR,
    ManifestError,
    ManifestRow,
    manifest_path,
    open_manifest_bytes,
    read_manifest,
    write_manifest,
)
from rmod.limits import bounded_lines
from rmod_dose_common.fileio import atomic_write_bytes, atomic_writer, replace_durably, sync_folder
from rmod_dose_common.tar_shards import index_path

TMP_PREFIX = ".tmp-"
#: Lock file of a dataset folder (see :func:`rmod.build.run.build_lock`).
LOCK_NAME = ".rmod-build.lock"


@dataclass(frozen=True)
class Shard:
    """Examples ``start`` (inclusive) to ``stop`` (exclusive) of ``split``."""

    split: str
    number: int
    start: int
    stop: int
    #: ``folder`` (a shard folder of files) or ``tar`` (one tar and its index).
    layout: str = "folder"

    @property
    def name(self) -> str:
        """``{split}-{number:06d}``, e.g. ``train-000003``."""
        return f"{self.split}-{self.number:06d}"

    @property
    def size(self) -> int:
        """Number of examples in the shard."""
        return self.stop - self.start

    def indices(self) -> range:
        """Example indices (within the split) held by this shard."""
        return range(self.start, self.stop)


def plan_shards(counts: dict[str, int], shard_size: int, layout: str = "folder") -> list[Shard]:
    """Cut every split into shards of ``shard_size`` examples (the last may be shorter), in
    ``layout`` (``folder`` or ``tar``).

    Splits come in :data:`rmod.SPLITS` order, shards in index order: this is also the
    order in which manifest parts are concatenated.
    """
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, got {shard_size}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (use {' or '.join(LAYOUTS)})")
    shards = []
    for split in SPLITS:
        n = counts.get(split, 0)
        for number, start in enumerate(range(0, n, shard_size)):
            shards.append(Shard(split, number, start, min(start + shard_size, n), layout))
    return shards


def shard_dir(root: str | os.PathLike, shard: Shard) -> Path:
    """Final audio folder of a shard: ``DIR/{split}/{number:06d}`` (folder layout)."""
    return Path(root) / shard.split / f"{shard.number:06d}"


def shard_output(root: str | os.PathLike, shard: Shard) -> Path:
    """Where a shard's audio is once committed: its folder, or its tar (tar layout)."""
    if shard.layout == "tar":
        return Path(root) / tar_layout.tar_relpath(shard.split, shard.number)
    return shard_dir(root, shard)


def shard_present(root: str | os.PathLike, shard: Shard) -> bool:
    """True when the shard's folder (or tar) exists, whether or not it was committed."""
    out = shard_output(root, shard)
    return out.is_file() if shard.layout == "tar" else out.is_dir()


def parts_dir(root: str | os.PathLike) -> Path:
    """Folder of the per-shard manifest parts: ``DIR/manifests/parts``."""
    return Path(root) / MANIFEST_DIR / PARTS_DIR


def part_path(root: str | os.PathLike, shard: Shard) -> Path:
    """Manifest part of a shard: ``DIR/manifests/parts/{split}-{number:06d}.jsonl``."""
    return parts_dir(root) / f"{shard.name}.jsonl"


def is_complete(root: str | os.PathLike, shard: Shard, stored: bool = True) -> bool:
    """True when the shard was committed (its part and, with ``stored``, its folder, or
    tar, both exist)."""
    return part_path(root, shard).is_file() and (not stored or shard_present(root, shard))


def make_temp_dir(root: str | os.PathLike, shard: Shard) -> Path:
    """A fresh, unique temporary folder next to the shard's final folder."""
    parent = Path(root) / shard.split
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f"{TMP_PREFIX}{shard.number:06d}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return tmp


class FolderShardWriter:
    """Writes a shard's files plainly into a temporary folder (see the module docstring);
    the same methods as :class:`rmod.build.tar_layout.TarShardWriter`. ``folder`` is where
    files go, ``rel_dir`` the shard folder's path relative to the dataset."""

    def __init__(
        self, folder: Path, rel_dir: str, root: Path | None = None, shard: Shard | None = None
    ):
        self.folder, self.rel_dir, self.root, self.shard = Path(folder), rel_dir, root, shard

    @classmethod
    def open(cls, root: str | os.PathLike, shard: Shard) -> FolderShardWriter:
        """A writer into a fresh temporary folder of ``shard``."""
        rel = f"{shard.split}/{shard.number:06d}"
        return cls(make_temp_dir(root, shard), rel, Path(root), shard)

    def location(self, name: str) -> str:
        """``{split}/{number:06d}/{name}``."""
        return f"{self.rel_dir}/{name}"

    def write(self, name: str, data: bytes, sha256: str | None = None) -> None:
        """Write file ``name`` (published with the folder)."""
        (self.folder / name).write_bytes(data)

    #: The files are written (a row's ``stored``).
    stored = True

    def add_row(self, row: ManifestRow) -> None:
        """Nothing: a folder shard's rows live in its manifest part only."""

    def commit(self, rows: Sequence[ManifestRow]) -> None:
        """Flush the folder once, publish it and write the part (:func:`commit_shard`)."""
        # a writer from open() commits; one for a single example (rmod.build.worker) does not
        assert self.root is not None and self.shard is not None
        sync_folder(self.folder)
        commit_shard(self.root, self.shard, self.folder, rows)

    def discard(self) -> None:
        """Remove the temporary folder of a shard that was not committed."""
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)


class TarWriterCommit(tar_layout.TarShardWriter):
    """:class:`rmod.build.tar_layout.TarShardWriter` with the commit of this module."""

    def __init__(self, root: str | os.PathLike, shard: Shard):
        super().__init__(root, shard.split, shard.number)
        self.root, self.shard = Path(root), shard

    #: The files are written (a row's ``stored``).
    stored = True

    def commit(self, rows: Sequence[ManifestRow]) -> None:
        """Publish the tar and its index, then write the part (the commit record)."""
        self.publish()
        write_manifest(part_path(self.root, self.shard), rows)


class UnstoredShardWriter:
    """The writer of a shard of a build that stores no files (``--tokens``, folder layout
    only): rows name the paths the folder layout would write, nothing is written, and the
    commit writes the part alone (:func:`commit_shard` without a folder)."""

    #: The files are not written (a row's ``stored``).
    stored = False

    def __init__(self, root: str | os.PathLike, shard: Shard):
        self.root, self.shard = Path(root), shard

    def location(self, name: str) -> str:
        """``{split}/{number:06d}/{name}``, as in the folder layout."""
        return f"{self.shard.split}/{self.shard.number:06d}/{name}"

    def write(self, name: str, data: bytes, sha256: str | None = None) -> None:
        """Nothing: the file is not stored."""

    def add_row(self, row: ManifestRow) -> None:
        """Nothing: the rows live in the shard's manifest part only."""

    def commit(self, rows: Sequence[ManifestRow]) -> None:
        """Write the part (the commit record)."""
        commit_shard(self.root, self.shard, None, rows)

    def discard(self) -> None:
        """Nothing to remove."""


#: A shard's writer, in either layout or storing nothing (:func:`open_shard_writer`).
ShardWriter = FolderShardWriter | TarWriterCommit | UnstoredShardWriter


def open_shard_writer(root: str | os.PathLike, shard: Shard, stored: bool = True) -> ShardWriter:
    """The writer of a shard in its layout (with ``stored`` False, one that writes no
    files): ``location``, ``write``, ``add_row``, ``commit`` and ``discard`` (``OSError``
    when the output cannot be written)."""
    if not stored:
        if shard.layout != "folder":
            raise ValueError(f"a build that stores no files has no {shard.layout} shards")
        return UnstoredShardWriter(root, shard)
    if shard.layout == "tar":
        return TarWriterCommit(root, shard)
    return FolderShardWriter.open(root, shard)


def commit_shard(
    root: str | os.PathLike, shard: Shard, tmp_dir: Path | None, rows: Sequence[ManifestRow]
) -> None:
    """Publish a fully written temporary folder as the shard, then write its part (with
    ``tmp_dir`` None, a build that stores no files: the part only).

    ``tmp_dir`` must already be durable (:func:`rmod_dose_common.fileio.sync_folder`); the
    rename is made durable here, before the part that records it. A leftover final folder
    without a part (from an interrupted run) is replaced.
    """
    if tmp_dir is not None:
        final = shard_dir(root, shard)
        if final.exists():
            shutil.rmtree(final)
        replace_durably(tmp_dir, final)
    write_manifest(part_path(root, shard), rows)


def shard_damage(root: str | os.PathLike, shard: Shard) -> str | None:
    """Why a committed shard cannot be trusted, or ``None`` when it is whole.

    Cheap: reads the shard's part, lists its folder and ``stat`` s each file; the folder
    must hold every file the rows name, at the size the rows record (rows of older builds
    record no sizes: then presence only).
    """
    rel_folder = f"{shard.split}/{shard.number:06d}"
    try:
        rows = read_manifest(part_path(root, shard))
    except (ManifestError, OSError) as exc:
        return f"its manifest part cannot be read ({exc})"
    if [r.index for r in rows] != list(shard.indices()):
        return "its manifest part does not list the shard's examples"
    rows = [r for r in rows if r.stored]  # a row of a --tokens build has no files
    if not rows:
        return None
    if shard.layout == "tar":
        return tar_layout.tar_damage(root, shard.split, shard.number, rows)
    try:
        present = {e.name: e for e in os.scandir(shard_dir(root, shard))}
    except OSError as exc:
        return f"its folder cannot be listed ({exc.strerror or exc})"
    for row in rows:
        for role, rel in row.files().items():
            name = posixpath.basename(rel)
            if posixpath.dirname(rel) != rel_folder:
                return f"{row.id}: {rel} is not inside the shard folder"
            if name not in present:
                return f"{name} is missing"
            size = (row.sizes or {}).get(role)
            actual = present[name].stat(follow_symlinks=False).st_size
            if size is not None and actual != size:
                return f"{name} is {actual} bytes, its manifest part says {size}"
    return None


def restore_parts(root: str | os.PathLike, shards: Sequence[Shard]) -> list[str]:
    """Rebuild the missing part of every shard folder from the final manifest's lines.

    A shard folder without its part is finished work whose part was deleted when the
    final manifest of its split still lists its examples: the part is rewritten from
    those lines (the same bytes: the manifest is the concatenation of the parts). Returns
    the parts written (relative paths); :func:`clean_incomplete` then checks the folders.
    """
    root = Path(root)
    wanted: dict[str, dict[int, Shard]] = {}
    for shard in shards:
        if shard_present(root, shard) and not part_path(root, shard).is_file():
            for index in shard.indices():
                wanted.setdefault(shard.split, {})[index] = shard
    restored = []
    for split, by_index in wanted.items():
        lines = _manifest_lines(manifest_path(root, split), by_index)
        for shard in sorted(set(by_index.values()), key=lambda s: s.number):
            got = [lines.get(i) for i in shard.indices()]
            if all(line is not None for line in got):
                # all lines are there (checked just above)
                atomic_write_bytes(part_path(root, shard), b"".join(cast("list[bytes]", got)))
                restored.append(str(part_path(root, shard).relative_to(root)))
    return restored


def _manifest_lines(path: Path, by_index: dict[int, Shard]) -> dict[int, bytes]:
    """Index -> raw line of the rows of ``path`` whose index is in ``by_index`` (nothing
    when the manifest is absent or unreadable: it vouches for nothing then)."""
    found: dict[int, bytes] = {}
    if not path.is_file():
        return found
    try:
        with open_manifest_bytes(path) as fh:
            for _, raw in bounded_lines(fh, str(path)):  # one bounded line at a time
                row = json.loads(raw)
                index = row.get("index") if isinstance(row, dict) else None
                if isinstance(index, int) and index in by_index and index not in found:
                    found[index] = raw if raw.endswith(b"\n") else raw + b"\n"
    except (OSError, EOFError, ValueError, RecursionError, zlib.error):
        return {}
    return found


def clean_incomplete(
    root: str | os.PathLike, shards: Iterable[Shard], stored: bool = True
) -> list[str]:
    """Remove the debris of interrupted runs; return what was removed (relative paths,
    with the reason for a damaged shard).

    Removes temporary shard folders (and tars), final folders (tars) without a part, parts
    without a folder (tar; with ``stored``: a build that stores no files has no folders),
    shards that fail :func:`shard_damage` (part and folder, so they are redone) and
    half-written temporary files in the manifests folders.
    """
    root = Path(root)
    removed: list[str] = []
    for split in SPLITS:
        split_dir = root / split
        if split_dir.is_dir():
            debris = {*split_dir.glob(f"{TMP_PREFIX}*"), *split_dir.glob(".*.tmp")}
            for tmp in sorted(debris):  # shard folders and tars; a tar index's atomic write
                _remove(tmp)
                removed.append(str(tmp.relative_to(root)))
    for folder in (root / MANIFEST_DIR, parts_dir(root)):
        if folder.is_dir():
            for tmp in sorted(folder.glob(".*.tmp")):
                tmp.unlink(missing_ok=True)
                removed.append(str(tmp.relative_to(root)))
    for shard in shards:
        part, folder = part_path(root, shard), shard_output(root, shard)
        present = shard_present(root, shard)
        if shard.layout == "tar" and not present and index_path(folder).is_file():
            index_path(folder).unlink()  # an index renamed in before a kill, without its tar
            removed.append(str(index_path(folder).relative_to(root)))
        if stored and part.is_file() and not present:
            part.unlink()
            removed.append(str(part.relative_to(root)))
        elif present and not part.is_file():
            _remove_output(root, shard)
            removed.append(str(folder.relative_to(root)))
        elif (
            part.is_file()
            and (present or not stored)
            and (why := shard_damage(root, shard)) is not None
        ):
            part.unlink(missing_ok=True)
            if present:
                _remove_output(root, shard)
            removed.append(f"{folder.relative_to(root)} ({why}; redone)")
    return removed


def _remove(path: Path) -> None:
    """Remove a file or a folder tree (debris: errors ignored)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_output(root: Path, shard: Shard) -> None:
    """Remove a shard's folder, or its tar and index."""
    out = shard_output(root, shard)
    if shard.layout == "tar":
        index_path(out).unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    else:
        shutil.rmtree(out)


def concatenate_parts(root: str | os.PathLike, shards: Sequence[Shard]) -> dict[str, Path]:
    """Join the parts of every split, in shard order, into ``DIR/manifests/{split}.jsonl``.

    Each manifest is streamed into a temporary file and renamed into place, so it is
    either absent, the previous version, or complete. Returns split -> manifest path.
    """
    root = Path(root)
    out_dir = root / MANIFEST_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in SPLITS:
        split_shards = [s for s in shards if s.split == split]
        if not split_shards:
            continue
        target = out_dir / f"{split}.jsonl"
        with atomic_writer(target) as dst:
            for shard in sorted(split_shards, key=lambda s: s.number):
                with open(part_path(root, shard), "rb") as src:
                    shutil.copyfileobj(src, dst)
        written[split] = target
    return written
