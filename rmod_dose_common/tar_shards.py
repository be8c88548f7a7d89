"""The tar shard format that ``rmod`` writes and both packages read (``rmod-build --layout tar``).

One shard of a split is one POSIX ustar file, ``DIR/{split}/{split}-{shard:06d}.tar``, in the
WebDataset layout (an example is one *key*, its id; its files are members ``{id}.{role}.{ext}``),
and a sidecar index ``{split}-{shard:06d}.tar.index.json`` that records where each member's
data lies (offset, size) and its SHA-256, so one example is read with one seek and no
unpacking. Manifest rows name a member as ``{tar path relative to DIR}#{member name}``.

The headers are fully determined by (name, size): ustar, no PAX or GNU records, mode 0644,
uid/gid 0, empty owner names, mtime 0, a regular file (the bytes ``tarfile`` writes for such a
``TarInfo`` in ``USTAR_FORMAT``). So the same members give the same tar
bytes on any machine, and a checker can rebuild every header it expects
(:func:`ustar_header`). The archive ends with two zero blocks, padded to a multiple of
:data:`RECORD` bytes, as ``tarfile`` and GNU tar write it.

This module knows the format only; writing shards is :mod:`rmod.build.tar_layout`, reading
rows is each package's manifest reader. Full description: ``docs/formats.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

INDEX_FORMAT = "rmod-tar-index/1"
#: Bytes of a tar block: every header is one block, every member's data is padded to blocks.
BLOCK = 512
#: The archive's total size is a multiple of this (20 blocks, tar's default record).
RECORD = 20 * BLOCK
#: What separates the tar's path from the member's name in a manifest row's path.
SEPARATOR = "#"
INDEX_SUFFIX = ".index.json"
#: Longest member name a plain ustar header holds (no prefix field used, no PAX record).
NAME_MAX = 100
#: Largest member a ustar size field holds (11 octal digits).
SIZE_MAX = 8**11 - 1
#: A tar file name as ``rmod-build`` writes it: ``{split}-{shard:06d}.tar``.
TAR_NAME = re.compile(r"(train|valid|test)-[0-9]{6}\.tar")


class TarShardError(ValueError):
    """A tar shard, its index or one of its members that cannot be trusted; the message
    names the shard (its path as the caller gave it) and, when known, the key (example id)."""

    def __init__(self, shard: str, reason: str, key: str | None = None):
        self.shard = str(shard)
        self.key = key
        self.reason = reason
        where = f"shard {self.shard}" + (f", key {key}" if key else "")
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:  # across processes
        return (type(self), (self.shard, self.reason, self.key))


@runtime_checkable
class MemberSource(Protocol):
    """A member of a tar shard that a reader can decode (e.g.
    ``dose_model.dataset.members.TarMember``): ``read_bytes()`` returns its bytes, read through
    the shard's index, or raises :class:`TarShardError`; ``str()`` is ``{shard}#{member}``."""

    def read_bytes(self) -> bytes: ...

    def tar_member(self) -> tuple[str, str]: ...


def member_key(name: str) -> str:
    """The WebDataset key of a member: its name up to the first dot (the example id)."""
    return name.split(".", 1)[0]


@dataclass(frozen=True)
class IndexEntry:
    """One member of a tar: its ``name``, where its data starts (``offset``, bytes from the
    start of the tar; its header is the :data:`BLOCK` bytes before), its ``size`` in bytes
    and the SHA-256 (hex) of its data."""

    name: str
    offset: int
    size: int
    sha256: str

    @property
    def key(self) -> str:
        """The example id the member belongs to."""
        return member_key(self.name)


@dataclass(frozen=True)
class TarIndex:
    """Content of ``{split}-{shard:06d}.tar.index.json``: the tar's file name (in the index's
    own folder), its size and SHA-256 in bytes, and its members in tar order."""

    tar: str
    size: int
    sha256: str
    members: tuple[IndexEntry, ...]
    _by_name: dict[str, IndexEntry] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update((m.name, m) for m in self.members)

    def entry(self, name: str) -> IndexEntry | None:
        """The member called ``name``, or ``None``."""
        return self._by_name.get(name)

    def to_bytes(self) -> bytes:
        """The index file's bytes: one compact JSON object, keys in a fixed order, a newline."""
        doc = {
            "format": INDEX_FORMAT,
            "tar": self.tar,
            "size": self.size,
            "sha256": self.sha256,
            "members": [
                {"name": m.name, "offset": m.offset, "size": m.size, "sha256": m.sha256}
                for m in self.members
            ],
        }
        return (json.dumps(doc, separators=(",", ":"), ensure_ascii=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, shard: str) -> TarIndex:
        """Parse and check an index; :class:`TarShardError` naming ``shard`` and the field."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise TarShardError(shard, f"its index is not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise TarShardError(shard, f"its index has format {got!r}, not {INDEX_FORMAT!r}")
        tar, size, sha = doc.get("tar"), doc.get("size"), doc.get("sha256")
        if not isinstance(tar, str) or not TAR_NAME.fullmatch(tar):
            raise TarShardError(shard, f"its index names the tar {tar!r}, not a shard file name")
        if (
            not isinstance(size, int)
            or not _count(size)
            or not isinstance(sha, str)
            or not _hex64(sha)
        ):
            raise TarShardError(shard, "its index's 'size' or 'sha256' is not valid")
        raw = doc.get("members")
        if not isinstance(raw, list):
            raise TarShardError(shard, "its index's 'members' is not a list")
        members, end = [], 0
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or set(m) != {"name", "offset", "size", "sha256"}:
                raise TarShardError(shard, f"its index's members[{i}] is not a member record")
            name, offset, msize = m["name"], m["offset"], m["size"]
            if not _member_name(name) or not _count(offset) or not _count(msize):
                raise TarShardError(shard, f"its index's members[{i}] has a bad name or number")
            if not _hex64(m["sha256"]) or offset < end + BLOCK or offset + msize > size:
                raise TarShardError(
                    shard, f"its index's member {name!r} overlaps another or leaves the tar"
                )
            end = offset + msize
            members.append(IndexEntry(name, offset, msize, m["sha256"]))
        if len({m.name for m in members}) != len(members):
            raise TarShardError(shard, "its index lists a member name twice")
        return cls(tar, size, sha, tuple(members))


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hex64(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _member_name(name: object) -> bool:
    """A member name a row may point to: non-empty ASCII, no ``/`` or ``#``, not ``.``/``..``,
    short enough for a plain ustar header."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= NAME_MAX
        and name.isascii()
        and name.isprintable()
        and "/" not in name
        and SEPARATOR not in name
        and name not in (".", "..")
    )


def split_location(location: str) -> tuple[str, str] | None:
    """``(tar path, member name)`` of a row path ``TAR#MEMBER``; ``None`` for a plain file
    path (no ``#``). ``ValueError`` when the part after ``#`` is not a member name or the
    part before does not end in ``.tar``."""
    if SEPARATOR not in location:
        return None
    tar, name = location.split(SEPARATOR, 1)
    if not tar.endswith(".tar") or not _member_name(name):
        raise ValueError(f"{location!r} is not TAR#MEMBER (a .tar path, '#', a member name)")
    return tar, name


def join_location(tar: str, name: str) -> str:
    """The row path of member ``name`` of ``tar`` (a POSIX path relative to the dataset)."""
    return f"{tar}{SEPARATOR}{name}"


def index_path(tar: str | os.PathLike) -> Path:
    """The sidecar index of a tar: ``{tar}.index.json``."""
    return Path(f"{os.fspath(tar)}{INDEX_SUFFIX}")


def _octal(value: int, width: int) -> bytes:
    """``value`` as ``width - 1`` octal digits and a NUL (ustar's number fields)."""
    return b"%0*o\0" % (width - 1, value)


def ustar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` of ``size`` bytes, with every
    other field fixed (mode 0644, uid/gid 0, no owner names, mtime 0); ``ValueError`` for a
    name or size a plain ustar header cannot hold."""
    if not _member_name(name):
        raise ValueError(f"member name {name!r} is not a plain ASCII name of 1..{NAME_MAX} bytes")
    if not 0 <= size <= SIZE_MAX:
        raise ValueError(f"member {name} is {size} bytes; a ustar header holds {SIZE_MAX}")
    head = (
        name.encode("ascii").ljust(100, b"\0")
        + _octal(0o644, 8)  # mode
        + _octal(0, 8)  # uid
        + _octal(0, 8)  # gid
        + _octal(size, 12)
        + _octal(0, 12)  # mtime
        + b" " * 8  # checksum, counted as spaces
        + b"0"  # typeflag: regular file
        + b"\0" * 100  # linkname
        + b"ustar\x0000"  # magic, version
        + b"\0" * 32  # uname
        + b"\0" * 32  # gname
        + b"\0" * 16  # devmajor, devminor: empty for a regular file (as tarfile writes them)
        + b"\0" * 155  # prefix
    ).ljust(BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def padding(size: int) -> bytes:
    """Zeros that fill a member of ``size`` bytes up to a whole block."""
    return b"\0" * (-size % BLOCK)


def end_of_archive(written: int) -> bytes:
    """What ends a tar of ``written`` bytes so far: two zero blocks, then zeros up to a
    multiple of :data:`RECORD`."""
    end = written + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-end % RECORD))


#: Bytes of one tar's index (500 examples' index is about 0.5 MB).
MAX_INDEX_BYTES = 64 << 20


def read_index(tar: str | os.PathLike, shard: str | None = None) -> TarIndex:
    """Read the index of ``tar`` and check it against the tar on disk: the index must name
    this tar and record its current size (a truncated, grown or replaced tar is refused).
    :class:`TarShardError` names ``shard`` (default: the tar's path)."""
    tar = Path(tar)
    shard = shard or str(tar)
    try:
        # O_NONBLOCK: a FIFO put in the index's place is refused, not waited on
        fd = os.open(index_path(tar), os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise TarShardError(
                    shard, f"its index {index_path(tar).name} is not a regular file"
                )
            if info.st_size > MAX_INDEX_BYTES:
                raise TarShardError(
                    shard,
                    f"its index is {info.st_size} bytes, over MAX_INDEX_BYTES = {MAX_INDEX_BYTES}",
                )
            data = fh.read(MAX_INDEX_BYTES + 1)
    except FileNotFoundError:
        raise TarShardError(shard, f"its index {index_path(tar).name} is missing") from None
    except OSError as exc:
        raise TarShardError(shard, f"cannot read its index ({exc.strerror or exc})") from None
    index = TarIndex.from_bytes(data, shard)
    if index.tar != tar.name:
        raise TarShardError(shard, f"its index describes {index.tar}, not {tar.name}")
    try:
        actual = tar.stat().st_size
    except FileNotFoundError:
        raise TarShardError(shard, "the tar is missing") from None
    except OSError as exc:
        raise TarShardError(shard, f"cannot stat the tar ({exc.strerror or exc})") from None
    if actual != index.size:
        what = "truncated" if actual < index.size else "longer than it was written"
        raise TarShardError(
            shard, f"the tar is {actual} bytes, its index says {index.size} ({what}); refused"
        )
    return index


#: Bytes of one member read into memory (a row's 4 s stereo 16-bit mixture is 1.4 MB). An index
#: may describe a member as large as its tar; a bigger one is refused before a byte is read.
MAX_MEMBER_BYTES = 1 << 30


def read_member(
    tar: str | os.PathLike, entry: IndexEntry, verify: bool = True, shard: str | None = None
) -> bytes:
    """The data of member ``entry`` of ``tar``: ``entry.size`` bytes at ``entry.offset``.

    With ``verify``, the bytes' SHA-256 must be the index's. :class:`TarShardError` names
    ``shard`` (default: the tar's path) and the member's key for a member over
    ``MAX_MEMBER_BYTES`` (not read), a short read (a truncated tar) or a mismatch.
    """
    shard = shard or str(tar)
    if entry.size > MAX_MEMBER_BYTES:
        raise TarShardError(
            shard,
            f"{entry.name} is {entry.size:,} bytes, over MAX_MEMBER_BYTES = {MAX_MEMBER_BYTES:,}",
            entry.key,
        )
    try:
        with open(tar, "rb") as fh:
            fh.seek(entry.offset)
            data = fh.read(entry.size)
    except OSError as exc:
        raise TarShardError(shard, f"cannot read {entry.name} ({exc.strerror or exc})") from None
    if len(data) != entry.size:
        raise TarShardError(
            shard,
            f"{entry.name} ends at byte {entry.offset + entry.size}, past the end of the tar "
            "(truncated)",
            entry.key,
        )
    if verify and hashlib.sha256(data).hexdigest() != entry.sha256:
        raise TarShardError(
            shard, f"{entry.name} does not match its index's SHA-256 (bytes changed)", entry.key
        )
    return data
