"""Read RMOD manifests (JSON Lines) as documented in manifests/README.md, without `rmod`.

A dataset folder ``DIR`` holds ``DIR/manifests/{train,valid,test}.jsonl`` (optionally
``.jsonl.gz``); each line is one example with at least ``id``, ``mixture`` (a path
relative to ``DIR``) and ``oneshots: {kick, snare, hihat}`` (relative paths). Paths
resolve against the manifest file's grandparent (``DIR``). Other fields are kept in
:attr:`ManifestRow.extra` untouched.

Rows are untrusted input: an ``id`` must match `ID_PATTERN` (``{split}-{index}``, e.g.
``train-00000042``: safe as a file name), and every audio path must stay inside ``DIR``
once resolved, symbolic links included (absolute paths, ``..`` and links that lead out are
refused with a `ManifestError` naming the file, line, row and path).

Both layouts of ``rmod-build`` are read. In a folder build a path names a file and becomes a
``Path``. In a tar build (``--layout tar``) it names a member of a tar shard,
``{split}/{split}-{shard:06d}.tar#{member}``, and becomes a
:class:`~dose_model.dataset.members.TarMember` (the tar must stay inside ``DIR`` as a file
would): ``read_bytes()`` reads it through the shard's index, and the audio readers of
:mod:`dose_model.dataset.audio` take either type.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

from dose_model import DRUMS
from dose_model.dataset.members import MemberError, TarMember
from dose_model.errors import DoseError
from rmod_dose_common.fileio import sha256_file
from rmod_dose_common.records import plain_problem
from rmod_dose_common.tar_shards import split_location

__all__ = ["ManifestError", "ManifestRow", "MemberError", "TarMember", "find_manifests",
           "parse_row", "read_rows", "row_seconds", "split_name"]  # fmt: skip

SPLITS = ("train", "valid", "test")
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz")
ID_PATTERN = re.compile(r"(train|valid|test)-[0-9]{1,12}")
"""What a row ``id`` must match in full: the split, a hyphen, the index in decimal digits
(rmod writes 8: ``train-00000042``)."""


class ManifestError(DoseError, ValueError):
    """A manifest that cannot be used; ``str(err)`` names the file, line and field."""

    def __init__(self, path: str | os.PathLike, reason: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class ManifestRow:
    """One example: absolute audio paths plus the raw JSON fields.

    ``mixture`` and ``oneshots[drum]`` are absolute paths, or :class:`TarMember` s in a tar
    build; ``line`` is the 1-based line number in ``manifest``.
    """

    id: str
    split: str
    mixture: Path | TarMember
    oneshots: dict[str, Path | TarMember]
    manifest: Path
    line: int
    sample_rate: int | None = None
    frames: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    extra: dict = field(default_factory=dict, compare=False, repr=False)


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def split_name(path: str | os.PathLike) -> str:
    """The split a manifest file is named after (``train.jsonl.gz`` -> ``train``)."""
    name = Path(path).name
    for suffix in MANIFEST_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def find_manifests(path: str | os.PathLike) -> dict[str, Path]:
    """Manifests to read, by split.

    ``path`` is a manifest file (its split comes from its name) or a dataset folder (all of
    ``DIR/manifests/{train,valid,test}.jsonl[.gz]`` that exist, in that order; the gzipped
    one when both exist). Raises
    ManifestError when there is nothing to read.
    """
    path = Path(path)
    if path.is_file():
        return {split_name(path): path}
    if not path.is_dir():
        raise ManifestError(path, "no such manifest file or dataset folder")
    found: dict[str, Path] = {}
    for split in SPLITS:
        for suffix in (".jsonl.gz", ".jsonl"):  # as rmod's readers: gzipped first
            candidate = path / "manifests" / f"{split}{suffix}"
            if candidate.is_file():
                found[split] = candidate
                break
    if not found:
        raise ManifestError(
            path, "dataset folder holds no manifests/{train,valid,test}.jsonl (is it an RMOD DIR?)"
        )
    return found


def manifest_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the manifest file's bytes (recorded so a cache knows its source)."""
    return sha256_file(path)


class _Containment:
    """Proves that audio paths stay inside ``root`` once resolved, symlinks included. Each
    folder is resolved once (a manifest's rows share a few shard folders); a file is resolved
    only when it is a symbolic link."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self.folders: dict[Path, Path] = {}

    def inside(self, path: Path) -> bool:
        folder = self.folders.get(path.parent)
        if folder is None:
            folder = self.folders[path.parent] = Path(os.path.realpath(path.parent))
        real = Path(os.path.realpath(path)) if os.path.islink(path) else folder / path.name
        return real.is_relative_to(self.root)


def _relative_path(
    root: Path,
    value: object,
    where: str,
    path: Path,
    line: int,
    inside: _Containment,
    verify_members: bool = True,
) -> Path | TarMember:
    """``where`` is ``"row ID: field 'NAME'"``. A ``TAR#MEMBER`` value gives a
    :class:`TarMember` (the tar proven inside ``root`` as a file would be)."""
    if not isinstance(value, str) or not value:
        raise ManifestError(path, f"{where} must be a non-empty path string", line)
    try:
        member = split_location(value)
    except ValueError as exc:
        raise ManifestError(path, f"{where}: {exc}", line) from None
    rel = value if member is None else member[0]
    joined = Path(os.path.normpath(root / rel))
    if os.path.isabs(rel) or not joined.is_relative_to(root) or not inside.inside(joined):
        raise ManifestError(path, f"{where}: path {value!r} leaves the dataset folder", line)
    if member is not None:
        return TarMember(joined, member[1], member[0], verify_members)
    return joined


def parse_row(
    obj: object,
    path: Path,
    line: int,
    split: str,
    root: Path | None = None,
    keep_extra: bool = True,
    inside: _Containment | None = None,
    verify_members: bool = True,
) -> ManifestRow:
    """Validate one decoded JSON line and resolve its paths against ``root`` (default: the
    absolute grandparent of ``path``), proving they stay inside it. ``keep_extra`` keeps the
    other fields in ``extra``; ``verify_members``: tar members check their SHA-256 when read."""
    if not isinstance(obj, dict):
        raise ManifestError(path, f"line is a JSON {type(obj).__name__}, not an object", line)
    raw = _row_fields(obj, path, line)
    root = root or path.resolve().parent.parent
    inside = inside or _Containment(root)
    where = f"row {raw.id}: field"
    mixture = _relative_path(
        root, raw.mixture, f"{where} 'mixture'", path, line, inside, verify_members
    )
    oneshots = {
        drum: _relative_path(
            root,
            raw.oneshots[drum],
            f"{where} 'oneshots.{drum}'",
            path,
            line,
            inside,
            verify_members,
        )
        for drum in DRUMS
    }
    known = {f.name for f in fields(_RowFields)}
    return ManifestRow(
        id=raw.id,
        split=split if raw.split is None else raw.split,
        mixture=mixture,
        oneshots=oneshots,
        manifest=path,
        line=line,
        sample_rate=raw.sample_rate,
        frames=raw.frames,
        extra={k: v for k, v in obj.items() if k not in known} if keep_extra else {},
    )


@dataclass(frozen=True)
class _RowFields:
    """The fields of a row this reader uses, as the JSON line holds them (relative paths)."""

    id: str
    mixture: str
    oneshots: dict[str, str]
    split: str | None = None
    sample_rate: int | None = None
    frames: dict[str, int] = field(default_factory=dict)


def _row_fields(obj: dict, path: Path, line: int) -> _RowFields:
    """The typed fields of one row (:mod:`rmod_dose_common.records`), then what types cannot say:
    the id's form, a one-shot per drum, a positive rate, no negative frame count."""
    row_id = obj.get("id")
    if not isinstance(row_id, str) or not ID_PATTERN.fullmatch(row_id):
        raise ManifestError(
            path, f"field 'id' {row_id!r} does not match {ID_PATTERN.pattern} (split-index)", line
        )
    names = {f.name for f in fields(_RowFields)}
    values = {k: v for k, v in obj.items() if k in names}
    problem = plain_problem(_RowFields, values, f"row {row_id}")
    if problem is not None:
        raise ManifestError(path, problem, line)
    raw = _RowFields(**values)
    missing = [d for d in DRUMS if d not in raw.oneshots]
    if missing:
        raise ManifestError(path, f"row {row_id}: field 'oneshots.{missing[0]}' is missing", line)
    if raw.sample_rate is not None and raw.sample_rate <= 0:
        raise ManifestError(path, f"row {row_id}: 'sample_rate' must be a positive integer", line)
    if any(v < 0 for v in raw.frames.values()):
        raise ManifestError(path, f"row {row_id}: 'frames' must map roles to sample counts", line)
    return raw


def read_rows(
    path: str | os.PathLike, keep_extra: bool = False, verify_members: bool = True
) -> list[ManifestRow]:
    """All rows of one manifest file, in file order. Blank lines are skipped.

    Fields other than ``id``, ``split``, ``mixture``, ``oneshots`` and ``sample_rate`` are
    dropped unless ``keep_extra`` (a million rows of ``params`` would not fit in memory).
    In a tar build the audio paths are :class:`TarMember` s; ``verify_members`` makes every
    read of one check its bytes against the shard index's SHA-256.

    Raises ManifestError naming the file and line for invalid JSON, a missing or
    ill-typed field, or a duplicate ``id``.
    """
    path = Path(path)
    split = split_name(path)
    root = path.resolve().parent.parent
    inside = _Containment(root)
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    try:
        with _open_text(path) as fh:
            for line_no, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer too
                    # long to parse, or arrays nested too deep for the decoder
                    reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                    raise ManifestError(path, f"invalid JSON ({reason})", line_no) from None
                row = parse_row(obj, path, line_no, split, root, keep_extra, inside, verify_members)
                if row.id in seen:
                    raise ManifestError(
                        path, f"duplicate id {row.id!r} (first on line {seen[row.id]})", line_no
                    )
                seen[row.id] = line_no
                rows.append(row)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ManifestError(path, f"cannot read manifest ({type(exc).__name__}: {exc})") from None
    return rows


def row_seconds(row: ManifestRow | None) -> dict[str, float]:
    """Lengths of a row's files from its documented ``frames`` and ``sample_rate`` fields:
    ``{"mixture_seconds": ..., "target_seconds": ...}`` (the longest one-shot), each only
    when the row records it; empty for None."""
    if row is None or not row.sample_rate:
        return {}
    out = {}
    if row.frames.get("mixture"):
        out["mixture_seconds"] = row.frames["mixture"] / row.sample_rate
    shots = [row.frames[d] for d in DRUMS if row.frames.get(d)]
    if shots:
        out["target_seconds"] = max(shots) / row.sample_rate
    return out
