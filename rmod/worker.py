"""What one worker does with one shard: draw, render and write its examples, then commit.

Runs inside a joblib worker (a loky process, a dask.distributed worker, or the main
process for ``--jobs 1``). The task sent to the worker is small: the recipe, the
library's *path* and fingerprint, the seed and the shard bounds. The library itself
(entries only) is loaded once per worker process and cached here; its audio is loaded
lazily, per file, through the library's own LRU cache.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import multiprocessing
import os
import resource
import shutil
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmod import DRUMS
from rmod.audio import AudioFileError, atomic_write_bytes, peak_db, rms_db, write_audio
from rmod.manifest import ManifestRow
from rmod.shards import LOCK_NAME, Shard, commit_shard, make_temp_dir

#: Modules of the ``rmod`` package that do not change what a build writes; every other
#: top-level module (and the packages below) feeds :func:`engine_fingerprint`.
NON_RENDERING_MODULES = frozenset({
    "build.py", "shards.py", "verify.py", "stats.py", "overview.py", "render_folder.py",
    "preflight.py",
})  # fmt: skip
RENDERING_PACKAGES = (
    "numpy", "scipy", "librosa", "soxr", "pedalboard", "soundfile", "miditoolkit"
)  # fmt: skip

_LIBRARIES: dict[tuple[str | None, str], Any] = {}
_LIBRARIES_LOCK = threading.Lock()


class ExampleError(Exception):
    """An example that could not be built; names the example and, when known, the file."""

    def __init__(self, example_id: str, reason: str, path: str | None = None):
        self.example_id = example_id
        self.reason = reason
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"example {example_id}{where}: {reason}")

    def __reduce__(self):  # keep the fields when the error crosses a process boundary
        return (type(self), (self.example_id, self.reason, self.path))


class ShardError(Exception):
    """A shard that could not be built for a reason outside its examples (the library
    cannot be loaded on this worker, the output folder cannot be written)."""

    def __init__(self, shard: str, reason: str):
        self.shard = shard
        self.reason = reason
        super().__init__(f"shard {shard}: {reason}")

    def __reduce__(self):
        return (type(self), (self.shard, self.reason))


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to build one shard (small and picklable)."""

    root: str
    shard: Shard
    recipe: Any
    library_path: str | None
    library_fingerprint: str
    seed: int
    audio_format: str
    engine_fingerprint: str
    lease: str | None = None


def check_lease(task: ShardTask) -> None:
    """Raise :class:`ShardError` unless the build that sent ``task`` still runs.

    The build holds an exclusive ``flock`` on ``DIR/.rmod-build.lock`` and wrote its
    lease token into it (:func:`rmod.build.build_lock`). A worker that outlives the build
    (SIGKILL of the parent leaves loky workers and queued tasks behind) finds the lock
    free or another build's token there, and stops without committing. On a filesystem
    without ``flock`` the token alone decides. ``lease=None`` (a task made by hand) skips
    the check.
    """
    if task.lease is None:
        return
    path = Path(task.root) / LOCK_NAME
    try:
        with open(path, "rb") as fh:
            token = fh.read()
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                locked = True
            except OSError:  # no flock here: rely on the token
                locked = True
            else:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                locked = False
    except OSError as exc:
        raise ShardError(task.shard.name, f"cannot read the build's lock ({exc})") from None
    if not locked or token != task.lease.encode():
        raise ShardError(
            task.shard.name,
            "the rmod-build that started this shard is gone (its lock was released or taken "
            "over); nothing was committed",
        )


_WATCHED_PARENT: list[int] = []
PARENT_POLL_SECONDS = 0.2


def die_with_build(task: ShardTask) -> None:
    """In a loky worker that the build process started, watch the parent: a daemon thread
    ends this process as soon as the build process is gone (its parent pid changes), so
    no worker lives on after a SIGKILL of ``rmod-build``. Polling the parent pid (not
    ``PR_SET_PDEATHSIG``, which fires when the *thread* that spawned the worker ends)
    keeps reused workers alive across builds of one long-lived process. Other workers
    (dask, the build's own process) are left alone; :func:`check_lease` still keeps them
    from committing."""
    if task.lease is None or _WATCHED_PARENT:
        return
    if not multiprocessing.current_process().name.startswith("LokyProcess"):
        return
    parent = int(task.lease.split(":")[-2])
    if os.getppid() != parent:
        return
    _WATCHED_PARENT.append(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="rmod-parent-watch", daemon=True).start()


@dataclass(frozen=True)
class ShardResult:
    """What a worker reports back about a committed shard."""

    shard: Shard
    seconds: float
    peak_rss_bytes: int
    worker: str


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``getrusage`` maxrss)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


@functools.lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """SHA-256 of the code that decides the bytes of a build: the rendering modules of
    ``rmod`` (source text) and the versions of the audio packages they use.

    Recorded in ``build.json``: resuming with changed code is refused, and a worker
    whose code differs from the planner's refuses to render (mixed renders would break
    byte-identity silently).
    """
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        if path.name not in NON_RENDERING_MODULES:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in RENDERING_PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        h.update(f"{name}=={version}\n".encode())
    return h.hexdigest()


def worker_library(path: str | None, fingerprint: str) -> Any:
    """The library at ``path`` (``None`` = built-in), loaded once per process.

    Raises ``RuntimeError`` when the library this worker sees is not the one the build
    was planned with (e.g. a cluster node with a different copy).
    """
    from rmod.library import Library

    key = (path, fingerprint)
    with _LIBRARIES_LOCK:
        lib = _LIBRARIES.get(key)
        if lib is None:
            lib = Library.load(path)
            if lib.fingerprint != fingerprint:
                raise RuntimeError(
                    f"library {path or '<built-in>'} on worker {socket.gethostname()} has "
                    f"fingerprint {lib.fingerprint[:12]}, the build expects {fingerprint[:12]}"
                )
            _LIBRARIES[key] = lib
    return lib


def _level(value: float) -> float | None:
    """dBFS rounded to 1/1000 dB; ``None`` for silence (JSON has no -inf)."""
    return None if value == float("-inf") else round(float(value), 3)


def build_example(task: ShardTask, library: Any, index: int, out_dir: Path) -> ManifestRow:
    """Draw and render example ``index`` of the shard's split into ``out_dir``; its row."""
    from rmod.example import draw_example, example_id, render_example
    from rmod.pattern import midi_bytes

    split, fmt, shard = task.shard.split, task.audio_format, task.shard
    eid = example_id(split, index)
    params = draw_example(task.recipe, library, task.seed, split, index)
    rendered = render_example(params, task.recipe, library)
    sr = int(task.recipe.audio.sample_rate)
    rel_dir = f"{split}/{shard.number:06d}"
    audio = {"mixture": rendered.mixture, **{c: rendered.oneshots[c] for c in DRUMS}}
    paths, frames, checksums, loudness, sizes = {}, {}, {}, {}, {}
    for role, data in audio.items():
        name = f"{eid}.{role}.{fmt}"
        checksums[role] = write_audio(out_dir / name, data, sr, fmt)
        sizes[role] = (out_dir / name).stat().st_size
        paths[role] = f"{rel_dir}/{name}"
        frames[role] = int(data.shape[-1])
        loudness[f"{role}_peak_db"] = _level(peak_db(data))
        loudness[f"{role}_rms_db"] = _level(rms_db(data))
    midi_name = f"{eid}.pattern.mid"
    midi_data = midi_bytes(rendered.midi)
    atomic_write_bytes(out_dir / midi_name, midi_data)
    checksums["midi"] = hashlib.sha256(midi_data).hexdigest()
    sizes["midi"] = len(midi_data)
    sources = {cls: list(ids) for cls, ids in params.sources().items()}
    return ManifestRow(
        id=eid,
        split=split,
        index=index,
        seed=task.seed,
        mixture=paths["mixture"],
        oneshots={c: paths[c] for c in DRUMS},
        sample_rate=sr,
        channels=int(rendered.mixture.shape[0]),
        duration=round(frames["mixture"] / sr, 6),
        frames=frames,
        checksums=checksums,
        sources=sources,
        params=params.to_dict(),
        loudness=loudness,
        midi=f"{rel_dir}/{midi_name}",
        sizes=sizes,
    )


def render_shard(task: ShardTask) -> ShardResult:
    """Build every example of ``task.shard`` in a temporary folder and commit it.

    Raises :class:`ExampleError` naming the first example that failed (and the file,
    for an unreadable library file), :class:`ShardError` when the library cannot be
    loaded or the output written; nothing of a failed shard becomes visible.
    """
    start = time.perf_counter()
    if engine_fingerprint() != task.engine_fingerprint:
        raise ShardError(
            task.shard.name,
            f"worker {socket.gethostname()} runs other rmod code or audio package versions "
            f"(engine {engine_fingerprint()[:12]}, the build has {task.engine_fingerprint[:12]}); "
            "install the same version everywhere",
        )
    die_with_build(task)
    check_lease(task)
    try:
        library = worker_library(task.library_path, task.library_fingerprint)
    except Exception as exc:
        raise ShardError(task.shard.name, f"cannot load the library: {_text(exc)}") from None
    try:
        tmp = make_temp_dir(task.root, task.shard)
    except OSError as exc:
        raise ShardError(task.shard.name, f"cannot write the output: {_text(exc)}") from None
    rows = []
    try:
        for index in task.shard.indices():
            check_lease(task)  # an orphaned worker stops within one example
            try:
                rows.append(build_example(task, library, index, tmp))
            except AudioFileError as exc:
                raise ExampleError(_eid(task, index), exc.reason, exc.path) from None
            except Exception as exc:
                raise ExampleError(_eid(task, index), _text(exc)) from None
        check_lease(task)
        try:
            commit_shard(task.root, task.shard, tmp, rows)
        except OSError as exc:
            raise ShardError(task.shard.name, f"cannot commit: {_text(exc)}") from None
    finally:
        if tmp.exists():  # not committed: leave nothing half-built behind
            shutil.rmtree(tmp, ignore_errors=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return ShardResult(task.shard, time.perf_counter() - start, peak_rss_bytes(), worker)


def _text(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _eid(task: ShardTask, index: int) -> str:
    from rmod.example import example_id

    return example_id(task.shard.split, index)
