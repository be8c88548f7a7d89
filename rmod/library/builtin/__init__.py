"""The built-in sample library: generated offline on first use, cached, self-healing.

Location: ``$RMOD_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("rmod")``, in a
versioned folder ``builtin-v<N>-<sources tag>`` (the tag names the soundfonts and
espeak-ng found on the machine, see :mod:`rmod.library.builtin.fonts`) holding ``kick/ snare/ hihat/ bass/ piano/ guitar/
vocal/`` FLAC files and ``library.jsonl`` (the manifest, written last as the completion
marker). On every load the manifest must parse and every file must exist with its
recorded size; otherwise the folder is regenerated (and a warning logged). Generation
happens under an exclusive lock file, into a temporary folder renamed into place, so two
processes starting at once generate it once and never see a half-written library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from rmod.library.builtin.generate import MANIFEST_NAME, BuiltinConfig, Sources, generate_builtin
from rmod.library.catalog import LibraryError, read_library

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BuiltinConfig",
    "Sources",
    "builtin_manifest_path",
    "cache_root",
    "check_builtin",
    "generate_builtin",
]

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$RMOD_CACHE_DIR`` if set, else the user cache folder of ``rmod``."""
    env = os.environ.get("RMOD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("rmod"))


def check_builtin(manifest: str | os.PathLike) -> str | None:
    """``None`` if the library at ``manifest`` is intact, else what is wrong (one line)."""
    manifest = Path(manifest)
    if not manifest.exists():
        return "is missing (no manifest)"
    try:
        _, entries, _ = read_library(manifest)
    except LibraryError as exc:
        return f"has a damaged manifest ({exc})"
    for e in entries:
        try:
            size = os.stat(e.path).st_size
        except OSError:
            return f"lacks {e.path}"
        if size != e.size_bytes:
            return f"has a damaged file {e.path} ({size} bytes, expected {e.size_bytes})"
    return None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: no inter-process lock, the rename still protects readers
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def builtin_manifest_path(
    cache_dir: str | os.PathLike | None = None,
    config: BuiltinConfig | None = None,
    *,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Path of the built-in library's manifest, generating the library if needed.

    ``cache_dir`` defaults to :func:`cache_root`; ``config`` to the default library.
    """
    config = config or BuiltinConfig()
    sources = Sources.detect()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = root / config.folder_name(sources)
    manifest = folder / MANIFEST_NAME
    if check_builtin(manifest) is None:
        return manifest
    with _exclusive(root / f"{folder.name}.lock"):
        problem = check_builtin(manifest)  # another process may have made it meanwhile
        if problem is None:
            return manifest
        if manifest.parent.exists():
            log.warning("built-in library %s %s: regenerating it", folder, problem)
        else:
            log.info("generating the built-in library in %s (first use)", folder)
        for stale in root.glob(f".{folder.name}.*"):  # left by a process that died mid-way
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{folder.name}.tmp-{os.getpid()}"
        generate_builtin(tmp, config, jobs=jobs, progress=progress, sources=sources)
        if folder.exists():
            old = root / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
    return manifest
