"""The token cache's format on disk: its index, and the checks of its shard files.

``TOKDIR/index.json`` (written by `dose_model.cache.tokenize`) holds ``format``, ``version``,
``complete``, ``config`` (codec, lengths, manifests' SHA-256) and, per split, the shards
``{"dir", "rows", "files"}``. ``files`` maps each shard file name to ``{"size", "sha256",
"quick"}``: its size in bytes, the SHA-256 of its bytes and the SHA-256 of its first and last
`QUICK_BYTES` (`quick_hash`). Readers check the sizes when they open a cache and the quick
hash when they first map a shard (`check_shard_files`: cheap); ``dose-tokenize --verify``
checks every byte and every code (`verify_cache`). A mismatch is a `CacheError` naming the
file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dose_model.errors import DoseError
from rmod_dose_common.fileio import sha256_file

FORMAT = "dose-token-cache"
VERSION = 2  # 2: shard files carry sizes and checksums
INDEX_NAME = "index.json"
QUICK_BYTES = 1 << 16
"""Bytes hashed at each end of a shard file by the quick check done when a shard is opened."""


class CacheError(DoseError, ValueError):
    """A token cache whose files do not match its index (corrupted, truncated, replaced) or
    hold codes out of range; ``str(err)`` names the file."""


def read_index(tokdir: str | os.PathLike) -> dict:
    """The ``index.json`` of a token cache (raises FileNotFoundError / ValueError naming it)."""
    path = Path(tokdir) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a token cache (no {INDEX_NAME}); run dose-tokenize")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON, not UTF-8, or an integer too long to parse
        raise CacheError(f"{path}: unreadable index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CacheError(f"{path}: not a {FORMAT} index")
    return index


def file_record(path: Path) -> dict:
    """``{"size", "sha256", "quick"}`` of one shard file (see the module docstring)."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path), "quick": quick_hash(path)}


def quick_hash(path: Path) -> str:
    """SHA-256 of the first and last `QUICK_BYTES` of ``path`` (the whole file if shorter)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        h.update(fh.read(QUICK_BYTES))
        if size > QUICK_BYTES:
            fh.seek(max(QUICK_BYTES, size - QUICK_BYTES))
            h.update(fh.read(QUICK_BYTES))
    return h.hexdigest()


def check_shard_files(tokdir: Path, shard: dict, names: list[str], quick: bool) -> None:
    """Check the files ``names`` of one index shard entry against its records: sizes, and
    with ``quick`` the quick hashes. Raises CacheError naming the file."""
    records = shard.get("files")
    if not isinstance(records, dict):
        raise CacheError(
            f"{tokdir / shard['dir']}: no checksums in {INDEX_NAME} (a cache from an older "
            "dose-tokenize): tokenize again into a new folder"
        )
    for name in names:
        path = tokdir / shard["dir"] / name
        record = records.get(name)
        try:
            size = path.stat().st_size
            if record is None or size != record["size"]:
                raise CacheError(
                    f"{path}: {size} bytes, the index records {record and record['size']}"
                )
            if quick and quick_hash(path) != record["quick"]:
                raise CacheError(f"{path}: content differs from the index (quick checksum)")
        except OSError as err:
            raise CacheError(f"{path}: cannot read ({err.strerror or err})") from None


def verify_cache(tokdir: str | os.PathLike, progress: bool = False) -> int:
    """Check every byte of every shard file of a complete cache against its SHA-256 in the
    index, and every code against the codebook size. Returns the number of files checked;
    raises CacheError naming the first bad file."""
    tokdir = Path(tokdir)
    index = read_index(tokdir)
    if not index.get("complete"):
        raise CacheError(f"{tokdir / INDEX_NAME}: the cache is incomplete; rerun dose-tokenize")
    size = int(index["config"]["codec"]["codebook_size"])
    shards = [s for split in index["splits"].values() for s in split["shards"]]
    checked = 0
    for shard in tqdm(shards, desc="dose-tokenize --verify", disable=not progress):
        names = sorted(shard.get("files") or {"mixture.npy": None})
        check_shard_files(tokdir, shard, names, quick=False)
        for name in names:
            path = tokdir / shard["dir"] / name
            if sha256_file(path) != shard["files"][name]["sha256"]:
                raise CacheError(f"{path}: content differs from the index (sha256)")
            codes = np.load(path, mmap_mode="r", allow_pickle=False)
            check_codes(codes, size, path)
            checked += 1
    return checked


def check_codes(codes: np.ndarray, codebook_size: int, path: Path) -> None:
    """Raise CacheError naming ``path`` when a code lies outside ``[0, codebook_size)``."""
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise CacheError(
            f"{path}: codes outside [0, {codebook_size}) (min {int(codes.min())}, "
            f"max {int(codes.max())}): the cache is corrupted; tokenize again"
        )
