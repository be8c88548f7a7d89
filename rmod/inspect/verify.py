"""Check a built dataset against its manifests and ``build.json`` (``rmod-verify``).

Checks, each reported as a :class:`Problem` naming the file or row:

* ``build.json`` and every split's manifest exist and parse; ``build.json``'s format is
  the one this package writes, its recipe is a valid recipe and has its recorded
  fingerprint;
* row counts per split match ``build.json``; every row's split is its manifest's split;
* ids are unique across the dataset, and every row's file paths stay inside the folder;
* every file a row points to exists, decodes, is 16-bit PCM with the dataset's sample
  rate and channel count, has the length the row records (the mixture also the
  recipe's duration), and its bytes match the recorded SHA-256;
* ids match ``{split}-{index:08d}`` and every path is the one ``rmod-build`` gives that
  row's file (so swapped paths are caught), inside the folder once resolved, with no
  symbolic link on the way;
* splits are source-disjoint: no library id is used by two splits;
* the split folders hold nothing else (no stray files, no temporary or empty shard
  folders), ``manifests/`` nothing but the split manifests and the parts of this build's
  shards; unreadable files and folders are reported as such;
* no sample store is left in the folder (``.rmod-store``: a folder, a file or a link, a
  build's cache that a complete build removes), and no other entry of the top folder is
  a symbolic link.

A ``--tokens`` build (``build.json`` and its rows say ``"stored": false``) has no files:
everything above is checked but the files themselves (their names still must be the ones
``rmod-build`` gives), and every row must say what ``build.json`` says. Its token cache is
the sink's to check (``dose-tokenize --verify TOKDIR`` for the DAC cache).

In a tar build (``build.json`` ``layout: tar``) a row's files are members of its shard's tar,
read through the shard's index: the same checks apply to each member, plus its bytes against
the index's SHA-256 and the ``{id}.json`` member against the row's manifest line; every other
byte of each tar (headers, padding, end, size, the index's member list) is checked by
:mod:`rmod.inspect.tar_check`. A problem in a tar names the shard and the key (example id).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from rmod import SPLITS, limits
from rmod.build.manifest import (
    BUILD_JSON,
    MANIFEST_DIR,
    PARTS_DIR,
    BuildInfo,
    ManifestError,
    ManifestRow,
    check_example_id,
    expected_files,
    iter_manifest,
    manifest_path,
    open_manifest_bytes,
    read_build_info,
)
from rmod.build.tar_layout import json_member, row_json_bytes
from rmod.example.store_folder import STORE_DIR
from rmod.inspect.tar_check import TarMembers, check_tar_shard, check_tar_strays
from rmod.limits import MAX_SLICE_SAMPLES
from rmod.recipe.spec import Recipe, RecipeError
from rmod_dose_common.tar_shards import split_location

PCM16 = "PCM_16"
LOOKAHEAD_PER_JOB = 4
"""With ``jobs`` threads, at most ``max(1, LOOKAHEAD_PER_JOB * jobs)`` rows are in flight."""


@dataclass(frozen=True)
class Problem:
    """One failed check: ``where`` (a path, relative to the dataset when possible) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class VerifyReport:
    """Result of :func:`verify_dataset`: rows and files checked, problems found."""

    root: Path
    rows: int = 0
    files: int = 0
    unstored: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def line(self) -> str:
        """One-line summary."""
        status = "OK" if self.ok else f"FAILED, {len(self.problems)} problem(s)"
        unstored = (
            f" ({self.unstored} rows not stored: a tokens-only build; rmod-render-one renders "
            "any of them again from its row)"
            if self.unstored
            else ""
        )
        return (
            f"rmod-verify {status}: {self.rows} rows, {self.files} files checked in "
            f"{self.root}{unstored}"
        )


def check_audio(
    raw: bytes, sample_rate: int, channels: int, frames: int | None, sha256: str | None
) -> list[str]:
    """Problems of the bytes of one audio file (or tar member) of a row."""
    problems = _checksum_problem(raw, sha256)
    try:
        info = sf.info(io.BytesIO(raw))
    except Exception as exc:  # soundfile raises several types for bad input
        return [*problems, f"does not decode ({type(exc).__name__}: {exc})"]
    # The header's length sizes the decode: one that declares more than the row (or, without
    # a row length, more than MAX_SLICE_SAMPLES) is reported, not decoded.
    limit = frames if frames is not None else MAX_SLICE_SAMPLES
    if info.frames > limit or info.channels > max(channels, 2):
        return [*problems, f"header declares {info.frames} samples x {info.channels} channel(s), "
                f"expected {limit} x {channels} (not decoded)"]  # fmt: skip
    try:  # decode the whole file: a truncated file can have a valid header
        data, _ = sf.read(io.BytesIO(raw), dtype="int16", always_2d=True)
    except Exception as exc:  # soundfile raises several types for bad input
        return [*problems, f"does not decode ({type(exc).__name__}: {exc})"]
    if info.subtype != PCM16:
        problems.append(f"sample format {info.subtype}, expected {PCM16}")
    if info.samplerate != sample_rate:
        problems.append(f"sample rate {info.samplerate} Hz, expected {sample_rate} Hz")
    if info.channels != channels:
        problems.append(f"{info.channels} channel(s), expected {channels}")
    if frames is not None and data.shape[0] != frames:
        problems.append(f"{data.shape[0]} samples, expected {frames}")
    return problems


def _read_bytes(path: Path) -> tuple[bytes | None, str]:
    """A file's bytes, read once for both decoding and hashing (a regular file of at most
    ``MAX_ROW_FILE_BYTES``: :func:`rmod.limits.read_regular`); else None and why (an
    unreadable file is named as such, not as a decoding error)."""
    try:
        return limits.read_regular(path, limits.MAX_ROW_FILE_BYTES, "MAX_ROW_FILE_BYTES"), ""
    except FileNotFoundError:
        return None, "file is missing"
    except limits.FileRefused as exc:  # its message is "<path>: <why>"; the problem names the path
        return None, str(exc).split(": ", 1)[-1]
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"


def _checksum_problem(raw: bytes, sha256: str | None) -> list[str]:
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        return ["checksum mismatch (bytes changed since the build)"]
    return []


def path_problem(root: Path, rel: str, expected: str | None) -> str | None:
    """Why ``rel`` is not a file path a row may hold (``None`` when it is fine).

    The path must be the one ``rmod-build`` gives this row's file (names are tied to ids,
    so swapped paths are caught), stay inside ``root`` lexically and once resolved, and
    pass through no symbolic link (a shard folder or file replaced by a link to a copy
    elsewhere is not the dataset).
    """
    if not isinstance(rel, str) or os.path.isabs(rel) or ".." in rel.split("/"):
        return "path leaves the dataset folder"
    if expected is not None and rel != expected:
        return f"not this row's file name (expected {expected}; paths swapped or edited?)"
    try:
        member = split_location(rel)
    except ValueError as exc:
        return str(exc)
    if member is not None:  # a tar member: the tar is the file on disk
        rel = member[0]
    lexical = os.path.join(os.path.realpath(root), posixpath.normpath(rel))
    if os.path.realpath(root / rel) != lexical:
        return "is or passes through a symbolic link (the dataset must hold its own files)"
    return None


def _expected_files(row: ManifestRow, info: BuildInfo) -> dict[str, str] | None:
    if row.index < 0:  # reported by check_identity
        return None
    return expected_files(row.id, row.index, info.shard_size, info.audio_format, info.layout)


def check_identity(row: ManifestRow, split: str) -> list[Problem]:
    """Problems of a row's id, split and index (the id is ``{split}-{index:08d}``)."""
    try:
        check_example_id(row.id)
    except ValueError as exc:
        return [Problem(split, f"manifest row: {exc}")]
    out = []
    if row.split != split:
        out.append(Problem(row.id, f"row says split {row.split!r} but is in the {split} manifest"))
    if not isinstance(row.index, int) or row.id != f"{row.split}-{row.index:08d}":
        out.append(Problem(row.id, f"id does not match split {row.split!r} and index {row.index}"))
    return out


def check_row(
    root: Path, row: ManifestRow, info: BuildInfo, split: str, members: TarMembers | None = None
) -> list[Problem]:
    """Problems of one row and its files (``members``: how a tar build's members are read)."""
    out = check_identity(row, split)
    if out and out[0].where == split:  # not an id: nothing of the row can be trusted
        return out
    if row.sample_rate != info.sample_rate:
        out.append(Problem(row.id, f"sample_rate {row.sample_rate}, build has {info.sample_rate}"))
    # the recipe parsed before the walk: its audio section is there
    expected_mix = int(round(float(info.recipe["audio"]["mixture_seconds"]) * info.sample_rate))
    expected = _expected_files(row, info)
    if row.stored != info.stored:
        say = {True: "are stored", False: "are not stored"}
        what = f"row says its files {say[row.stored]}, build.json says {say[info.stored][4:]}"
        out.append(Problem(row.id, what))
    for role, rel in row.files().items():
        why = path_problem(root, rel, expected.get(role) if expected else None)
        if why is not None:
            out.append(Problem(str(rel), f"{row.id}: {why}"))
            continue
        if not row.stored:  # a --tokens build: the name is checked, there is no file
            continue
        raw, why = _read_bytes(root / rel) if members is None else members.read(rel)
        if raw is not None and members is not None:
            index_sha = members.index_sha256(rel)
            if index_sha is not None and hashlib.sha256(raw).hexdigest() != index_sha:
                out.append(Problem(rel, f"{row.id}: bytes do not match the shard index's SHA-256"))
        if role == "midi":
            found = [why] if raw is None else _checksum_problem(raw, row.checksums.get(role, ""))
            out += [Problem(rel, f"{row.id}: {what}") for what in found]
            continue
        frames = row.frames.get(role)
        if role == "mixture" and frames is not None and frames != expected_mix:
            out.append(
                Problem(rel, f"{row.id}: mixture is {frames} samples, recipe says {expected_mix}")
            )
        if role not in row.checksums:
            out.append(Problem(rel, f"{row.id}: no checksum recorded"))
        found = [why] if raw is None else check_audio(
            raw,
            info.sample_rate,
            row.file_channels.get(role, info.channels),
            frames,
            row.checksums.get(role),
        )  # fmt: skip
        out += [Problem(rel, f"{row.id}: {what}") for what in found]
    if members is not None and expected is not None:
        out += _json_member_problems(row, expected["mixture"], members)
    return out


def _json_member_problems(row: ManifestRow, mixture: str, members: TarMembers) -> list[Problem]:
    """The ``{id}.json`` member of a tar build must be the row's manifest line."""
    location = f"{mixture.split('#', 1)[0]}#{json_member(row.id)}"
    raw, why = members.read(location)
    if raw is None:
        return [Problem(location, f"{row.id}: {why}")]
    out = []
    index_sha = members.index_sha256(location)
    if index_sha is not None and hashlib.sha256(raw).hexdigest() != index_sha:
        out.append(Problem(location, f"{row.id}: bytes do not match the shard index's SHA-256"))
    if raw != row_json_bytes(row):
        out.append(Problem(location, f"{row.id}: differs from the row in the manifest"))
    return out


def _list(folder: Path, rel: str, out: list[Problem]) -> list[Path]:
    """Entries of ``folder`` sorted by name; an unreadable folder is reported, not skipped."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        out.append(Problem(rel, f"cannot list folder ({exc.strerror or exc})"))
        return []


def check_strays(root: Path, referenced: Counter[str]) -> list[Problem]:
    """Files and folders in the split folders that no manifest row accounts for.

    ``referenced`` counts, per shard folder, the files rows point to. Memory stays
    proportional to the number of shards, not of files.
    """
    out: list[Problem] = []
    for split in SPLITS:
        folder = root / split
        if folder.is_symlink():
            out.append(Problem(split, "is a symbolic link (the dataset must hold its own files)"))
            continue
        if not folder.is_dir():
            continue
        for entry in _list(folder, split, out):
            rel = f"{split}/{entry.name}"
            if entry.is_symlink() or not (entry.is_dir() and entry.name.isdigit()):
                what = "not part of the dataset (debris of an interrupted build?)"
                out.append(Problem(rel, what))
                continue
            extra = len(_list(entry, rel, out)) - referenced.get(rel, 0)
            if referenced.get(rel, 0) == 0 and extra == 0:
                out.append(Problem(rel, "empty shard folder (no manifest row points to it)"))
            elif extra > 0:
                out.append(Problem(rel, f"{extra} file(s) that no manifest row points to"))
    return out


def check_top_folder(root: Path) -> list[Problem]:
    """A sample store left in the dataset (any kind of entry named ``.rmod-store``; a link
    is named with its target) and symbolic links among the top folder's other entries
    (the split folders and ``manifests/`` are checked by their own checks)."""
    out: list[Problem] = []
    for entry in _list(root, ".", out):
        if entry.name == STORE_DIR:
            if entry.is_symlink():
                what = (
                    f"a symbolic link to {os.readlink(entry)} where a build keeps its sample store"
                )
            else:
                what = "a sample store left by a build (a cache, not part of the dataset)"
            out.append(Problem(entry.name, f"{what}; remove it"))
        elif entry.is_symlink() and entry.name not in (*SPLITS, MANIFEST_DIR):
            what = "is a symbolic link (the dataset must hold its own files)"
            out.append(Problem(entry.name, what))
    return out


def check_manifest_folder(root: Path, info: BuildInfo) -> list[Problem]:
    """Strays in ``manifests/``: files other than the split manifests, a ``.jsonl`` that a
    ``.jsonl.gz`` hides, and parts of shards this build does not have (stale parts)."""
    out: list[Problem] = []
    folder = root / MANIFEST_DIR
    if folder.is_symlink():
        return [Problem(MANIFEST_DIR, "is a symbolic link (the dataset must hold its own files)")]
    if not folder.is_dir():
        return out
    for entry in _list(folder, MANIFEST_DIR, out):
        rel = f"{MANIFEST_DIR}/{entry.name}"
        if entry.name == PARTS_DIR and entry.is_dir() and not entry.is_symlink():
            continue
        split = entry.name.split(".", 1)[0]
        if split not in SPLITS or entry.name not in (f"{split}.jsonl", f"{split}.jsonl.gz"):
            out.append(Problem(rel, "not part of the dataset (no reader looks at it)"))
        elif entry.is_symlink() or not entry.is_file():
            out.append(Problem(rel, "not a regular file (the dataset must hold its own files)"))
        elif entry.name.endswith(".jsonl") and (folder / f"{entry.name}.gz").exists():
            out.append(Problem(rel, f"stale: readers use {entry.name}.gz"))
    parts = folder / PARTS_DIR
    if not parts.is_dir():
        return out
    shards = {f"{s}-{n:06d}.jsonl" for s in SPLITS for n in range(_shard_count(info, s))}
    for entry in _list(parts, f"{MANIFEST_DIR}/{PARTS_DIR}", out):
        if entry.name not in shards:
            what = "stale manifest part (this build has no such shard)"
            out.append(Problem(f"{MANIFEST_DIR}/{PARTS_DIR}/{entry.name}", what))
    return out


def _shard_count(info: BuildInfo, split: str) -> int:
    """How many shards ``split`` has in this build."""
    return -(-int(info.counts.get(split, 0)) // info.shard_size)


def _stream_sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with open_manifest_bytes(path) as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def check_parts_agree(root: Path, info: BuildInfo) -> list[Problem]:
    """A split whose parts are all there must be exactly its final manifest: a rerun of
    ``rmod-build`` rewrites the manifest from the parts, so stale parts would replace it."""
    parts = root / MANIFEST_DIR / PARTS_DIR
    if not parts.is_dir():
        return []
    out = []
    for split in SPLITS:
        files = [parts / f"{split}-{k:06d}.jsonl" for k in range(_shard_count(info, split))]
        manifest = manifest_path(root, split)
        if not manifest.is_file() or not all(f.is_file() for f in files):
            continue
        try:
            same = _stream_sha256(files) == _stream_sha256([manifest])
        except (OSError, EOFError) as exc:
            out.append(Problem(f"{MANIFEST_DIR}/{PARTS_DIR}", f"cannot compare ({exc})"))
            continue
        if not same:
            what = (
                f"the {split} parts differ from {manifest.relative_to(root)} (stale parts: a "
                "rerun of rmod-build would rewrite the manifest from them)"
            )
            out.append(Problem(f"{MANIFEST_DIR}/{PARTS_DIR}", what))
    return out


class _RowWalk:
    """The manifests' rows in order: what is checked while reading them (duplicate ids,
    the splits each library source is used by, the files each shard folder should hold),
    and each row's own checks, in ``jobs`` threads when ``jobs > 1``, whose problems are
    added to the report in manifest order."""

    def __init__(
        self, root: Path, info: BuildInfo, report: VerifyReport, jobs: int, progress: bool
    ):
        self.root, self.info, self.report, self.jobs = root, info, report, jobs
        self.seen: dict[str, str] = {}
        self.referenced: Counter[str] = Counter()  # shard folder -> files that rows point to
        self.used_by: dict[str, set[str]] = defaultdict(set)
        total = sum(info.counts.values())
        self.members = TarMembers(root) if info.layout == "tar" else None
        self.bar = tqdm(total=total, desc="rmod-verify", unit="row", disable=not progress)
        self.pool = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None
        self.pending: deque[tuple[Future, list[Problem]]] = deque()

    def note(self, row: ManifestRow, split: str, rel_manifest: str) -> list[Problem]:
        """Count ``row`` and record its id, sources and files; a duplicate id's problem."""
        self.report.rows += 1
        before = []
        if row.id in self.seen:
            what = f"duplicate id {row.id} (also in {self.seen[row.id]})"
            before.append(Problem(rel_manifest, what))
        self.seen.setdefault(row.id, f"{split} manifest")
        for sid in row.source_ids():
            self.used_by[sid].add(split)
        if not row.stored:
            self.report.unstored += 1
            return before
        self.report.files += len(row.files())
        for rel in row.files().values():
            if isinstance(rel, str):
                self.referenced[posixpath.dirname(rel)] += 1
        return before

    def check(self, row: ManifestRow, split: str, before: list[Problem]) -> None:
        """Check ``row``'s files (now, or in a thread); ``before`` are listed ahead of them."""
        if self.pool is None:
            self.report.problems += before + check_row(
                self.root, row, self.info, split, self.members
            )
            self.bar.update(1)
            return
        future = self.pool.submit(check_row, self.root, row, self.info, split, self.members)
        self.pending.append((future, before))
        self.settle(keep=max(1, LOOKAHEAD_PER_JOB * self.jobs))  # memory stays flat

    def settle(self, keep: int) -> None:
        """Collect finished row checks in order until at most ``keep`` are pending."""
        while len(self.pending) > keep:
            future, before = self.pending.popleft()
            self.report.problems += before + future.result()
            self.bar.update(1)

    def close(self) -> None:
        """Stop the threads (pending checks are dropped) and the progress bar."""
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        self.bar.close()


def _walk_manifest(walk: _RowWalk, split: str) -> None:
    """Check every row of ``split``'s manifest, then its row count against ``build.json``."""
    root, problems = walk.root, walk.report.problems
    path = manifest_path(root, split)
    rel_manifest = str(path.relative_to(root))
    if not path.is_file():
        what = "manifest is missing (after an interrupted build: rerun the same rmod-build)"
        problems.append(Problem(rel_manifest, what))
        return
    n = 0
    try:
        for row in iter_manifest(path):
            n += 1
            walk.check(row, split, walk.note(row, split, rel_manifest))
    except ManifestError as exc:
        walk.settle(keep=0)
        problems.append(Problem(rel_manifest, str(exc)))
    walk.settle(keep=0)
    expected = walk.info.counts.get(split, 0)
    if n != expected:
        problems.append(Problem(rel_manifest, f"{n} rows, build.json says {expected}"))


def check_tars(root: Path, info: BuildInfo, jobs: int, progress: bool) -> list[Problem]:
    """Every tar of a tar build, beyond its rows (:func:`rmod.inspect.tar_check.check_tar_shard`),
    in ``jobs`` threads; problems in shard order."""
    shards = [(s, k) for s in SPLITS for k in range(_shard_count(info, s))]
    out: list[Problem] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        found = pool.map(lambda shard: check_tar_shard(root, info, *shard), shards)
        for pairs in tqdm(found, total=len(shards), desc="rmod-verify tars", disable=not progress):
            out += [Problem(where, what) for where, what in pairs]
    return out


def check_disjoint(used_by: dict[str, set[str]]) -> list[Problem]:
    """Library sources used by more than one split (``used_by``: source id -> splits)."""
    out = []
    for sid, splits in sorted(used_by.items()):
        if len(splits) > 1:
            names = ", ".join(s for s in SPLITS if s in splits)
            out.append(Problem(sid, f"library source used by several splits: {names}"))
    return out


def verify_dataset(
    root: str | os.PathLike,
    progress: bool = True,
    jobs: int = 1,
) -> VerifyReport:
    """Run every check on the dataset in ``root``; returns a :class:`VerifyReport`.

    ``jobs`` threads check rows' files at once (decoding and hashing release the GIL); the
    problems come out in manifest order whatever the number of threads.
    """
    root = Path(root)
    report = VerifyReport(root=root)
    try:
        info = read_build_info(root)
        recipe = Recipe.from_dict(info.recipe, source=f"{root / BUILD_JSON}: recipe")
    except (ManifestError, RecipeError) as exc:  # nothing else can be checked against it
        report.problems.append(Problem(str(root), str(exc)))
        return report
    if recipe.fingerprint != info.recipe_fingerprint:
        what = "recipe does not have its recorded recipe_fingerprint (edited since the build?)"
        report.problems.append(Problem(BUILD_JSON, what))
    walk = _RowWalk(root, info, report, jobs, progress)
    try:
        for split in SPLITS:
            _walk_manifest(walk, split)
    finally:  # also on an error or Ctrl-C: no thread keeps checking
        walk.close()
    if info.layout == "tar":
        report.problems += check_tars(root, info, jobs, progress)
        report.problems += [Problem(w, what) for w, what in check_tar_strays(root, info)]
    else:
        report.problems += check_strays(root, walk.referenced)
    report.problems += check_top_folder(root)
    report.problems += check_manifest_folder(root, info)
    report.problems += check_parts_agree(root, info)
    report.problems += check_disjoint(walk.used_by)
    return report
