"""Read RMOD manifests (JSON Lines) as documented in docs/ARCHITECTURE.md, without `rmod`.

A dataset folder ``DIR`` holds ``DIR/manifests/{train,valid,test}.jsonl`` (optionally
``.jsonl.gz``); each line is one example with at least ``id``, ``mixture`` (a path
relative to ``DIR``) and ``oneshots: {kick, snare, hihat}`` (relative paths). Paths
resolve against the manifest file's grandparent (``DIR``). Other fields are kept in
:attr:`ManifestRow.extra` untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dose_model import DRUMS

SPLITS = ("train", "valid", "test")
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz")


class ManifestError(ValueError):
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

    ``mixture`` and ``oneshots[drum]`` are absolute paths; ``line`` is the 1-based line
    number in ``manifest``.
    """

    id: str
    split: str
    mixture: Path
    oneshots: dict[str, Path]
    manifest: Path
    line: int
    sample_rate: int | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)


def _open_text(path: Path):
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
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _relative_path(root: Path, value: object, where: str, path: Path, line: int) -> Path:
    if not isinstance(value, str) or not value:
        raise ManifestError(path, f"field {where!r} must be a non-empty path string", line)
    return Path(os.path.normpath(root / value))  # no filesystem calls: manifests are big


def parse_row(
    obj: object,
    path: Path,
    line: int,
    split: str,
    root: Path | None = None,
    keep_extra: bool = True,
) -> ManifestRow:
    """Validate one decoded JSON line and resolve its paths against ``root`` (default: the
    absolute grandparent of ``path``). ``keep_extra`` keeps the other fields in ``extra``."""
    if not isinstance(obj, dict):
        raise ManifestError(path, f"line is a JSON {type(obj).__name__}, not an object", line)
    root = root or path.resolve().parent.parent
    row_id = obj.get("id")
    if not isinstance(row_id, str) or not row_id:
        raise ManifestError(path, "field 'id' must be a non-empty string", line)
    mixture = _relative_path(root, obj.get("mixture"), "mixture", path, line)
    oneshots_obj = obj.get("oneshots")
    if not isinstance(oneshots_obj, dict):
        raise ManifestError(path, f"row {row_id}: field 'oneshots' must be an object", line)
    oneshots = {}
    for drum in DRUMS:
        if drum not in oneshots_obj:
            raise ManifestError(path, f"row {row_id}: field 'oneshots.{drum}' is missing", line)
        oneshots[drum] = _relative_path(root, oneshots_obj[drum], f"oneshots.{drum}", path, line)
    sample_rate = obj.get("sample_rate")
    if sample_rate is not None and (not isinstance(sample_rate, int) or sample_rate <= 0):
        raise ManifestError(path, f"row {row_id}: 'sample_rate' must be a positive integer", line)
    row_split = obj.get("split", split)
    if not isinstance(row_split, str):
        raise ManifestError(path, f"row {row_id}: 'split' must be a string", line)
    known = {"id", "split", "mixture", "oneshots", "sample_rate"}
    return ManifestRow(
        id=row_id,
        split=row_split,
        mixture=mixture,
        oneshots=oneshots,
        manifest=path,
        line=line,
        sample_rate=sample_rate,
        extra={k: v for k, v in obj.items() if k not in known} if keep_extra else {},
    )


def read_manifest(path: str | os.PathLike, keep_extra: bool = False) -> list[ManifestRow]:
    """All rows of one manifest file, in file order. Blank lines are skipped.

    Fields other than ``id``, ``split``, ``mixture``, ``oneshots`` and ``sample_rate`` are
    dropped unless ``keep_extra`` (a million rows of ``params`` would not fit in memory).

    Raises ManifestError naming the file and line for invalid JSON, a missing or
    ill-typed field, or a duplicate ``id``.
    """
    path = Path(path)
    split = split_name(path)
    root = path.resolve().parent.parent
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    try:
        with _open_text(path) as fh:
            for line_no, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ManifestError(path, f"invalid JSON ({exc.msg})", line_no) from None
                row = parse_row(obj, path, line_no, split, root, keep_extra)
                if row.id in seen:
                    raise ManifestError(
                        path, f"duplicate id {row.id!r} (first on line {seen[row.id]})", line_no
                    )
                seen[row.id] = line_no
                rows.append(row)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ManifestError(path, f"cannot read manifest ({type(exc).__name__}: {exc})") from None
    return rows


def recipe_seconds(manifest: str | os.PathLike) -> dict[str, float]:
    """Lengths the dataset's recipe asks for, from ``DIR/build.json`` (``recipe.audio``):
    ``{"mixture_seconds": ..., "target_seconds": ...}``, each only when present; empty when
    there is no readable ``build.json`` beside the manifest's folder."""
    path = Path(manifest)
    root = path if path.is_dir() else path.parent.parent
    try:
        info = json.loads((root / "build.json").read_text(encoding="utf-8"))
        audio = info["recipe"]["audio"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out = {}
    for key in ("mixture_seconds", "target_seconds"):
        value = audio.get(key) if isinstance(audio, dict) else None
        if isinstance(value, (int, float)) and value > 0:
            out[key] = float(value)
    return out
