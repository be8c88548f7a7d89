"""What one worker does with one shard: draw, render and write its examples, then commit.

Runs inside a joblib worker (a loky process, a dask.distributed worker, or the main
process for ``--jobs 1``). The task sent to the worker is small: the recipe, the
library's *path* and fingerprint, the seed and the shard bounds. The library itself
(entries only) is loaded once per worker process and cached here; its audio comes
through a :class:`rmod.example.sample_store.SampleStore` (raw files on disk, read in slices through the
page cache that all workers of a machine share), so a worker holds no audio between
examples.

Files of a shard are written plainly into its temporary folder (the folder is published
by one rename, so a half-written file is never visible), then made durable with one
filesystem flush per shard (:func:`rmod.audio.sync_folder`) before the commit.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
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

from threadpoolctl import threadpool_limits

from rmod import DRUMS
from rmod.audio import AudioFileError, encode_audio_file, peak_db, rms_db, sync_folder
from rmod.errors import RmodError
from rmod.library.catalog import Library
from rmod.build.manifest import ManifestRow
from rmod.build.shards import LOCK_NAME, Shard, commit_shard, make_temp_dir
from rmod.example.sample_store import STORE_DIR, SampleStore

#: The modules whose code decides the bytes of a build, given its recipe, library content
#: and seed: :func:`engine_fingerprint` hashes exactly these. A test renders an example
#: and fails if it imported an ``rmod`` module that is neither here nor in
#: :data:`NOT_RENDERING_MODULES`.
RENDERING_MODULES = (
    "rmod", "rmod.audio", "rmod.records",
    "rmod.recipe.spec", "rmod.recipe.checks", "rmod.recipe.distributions",
    "rmod.library.catalog", "rmod.library.hashing",
    "rmod.example.draw", "rmod.example.pattern", "rmod.example.groove", "rmod.example.tracks",
    "rmod.example.mixing", "rmod.example.master", "rmod.example.sample_store", "rmod.example.pitch",
    "rmod.build.manifest", "rmod.build.worker",
)  # fmt: skip
#: ``rmod`` modules a build imports that do not decide its bytes, and why.
NOT_RENDERING_MODULES = {
    "rmod.library.builtin": "makes the built-in library, whose content the library fingerprint covers",
    **{
        f"rmod.library.builtin.{name}": "as rmod.library.builtin"
        for name in (
            "drums",
            "export",
            "fonts",
            "generate",
            "loops",
            "phrases",
            "sf2",
            "synth",
            "voice",
        )
    },
    **{
        f"rmod.{stage}": "a stage package's index: its modules are listed one by one"
        for stage in ("recipe", "library", "example", "build")
    },
    "rmod.errors": "the base classes of rmod's errors",
    "rmod.library.families": "groups a library's files into families for its splits (library content)",
    "rmod.library.leaks": "reports near-duplicates across a library's splits",
    "rmod.build.preflight": "checks a build's numbers and library before any work",
    "rmod.build.shards": "where a shard's files go and how it commits, not what they hold",
}
RENDERING_PACKAGES = (
    "numpy", "scipy", "soxr", "pedalboard", "soundfile", "miditoolkit"
)  # fmt: skip

_LIBRARIES: dict[tuple[str | None, str], Any] = {}
_LIBRARIES_LOCK = threading.Lock()


class ExampleFailed(RmodError):
    """An example that could not be built; names the example and, when known, the file."""

    def __init__(self, example_id: str, reason: str, path: str | None = None):
        self.example_id = example_id
        self.reason = reason
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"example {example_id}{where}: {reason}")

    def __reduce__(self):  # keep the fields when the error crosses a process boundary
        return (type(self), (self.example_id, self.reason, self.path))


class ShardError(RmodError):
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
    lease token into it (:func:`rmod.build.run.build_lock`). A worker that outlives the build
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
            except OSError:  # held by the build, or no flock here: the token decides
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
    for name in RENDERING_MODULES:
        origin = importlib.util.find_spec(name).origin
        h.update(name.encode() + b"\0" + Path(origin).read_bytes() + b"\0")
    for name in RENDERING_PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        h.update(f"{name}=={version}\n".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Let glibc keep freed memory for reuse in this worker process (once per process).

    dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also
    freezes glibc's mmap threshold at 128 KiB: every array of a few seconds of audio is then
    mapped fresh and unmapped on free, and its pages fault in again, zeroed, for the next
    example (measured: 3x the system time and 40 % more user time than a loky worker on
    the same shards). Fixed thresholds of 32 MiB (mmap) and 64 MiB (trim) restore heap
    reuse. Changes no result; False where the C library has no ``mallopt``.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    mmap_ok = mallopt(m_mmap_threshold, 32 << 20)
    trim_ok = mallopt(m_trim_threshold, 64 << 20)
    return bool(mmap_ok) and bool(trim_ok)


def worker_library(path: str | None, fingerprint: str) -> Any:
    """The library at ``path`` (``None`` = built-in), loaded once per process.

    Raises ``RuntimeError`` when the library this worker sees is not the one the build
    was planned with (e.g. a cluster node with a different copy).
    """
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


def worker_store(task: ShardTask) -> Any:
    """The :class:`rmod.example.sample_store.SampleStore` of the task's library at the recipe's rate, in
    the build's folder (``DIR/.rmod-store``)."""
    library = worker_library(task.library_path, task.library_fingerprint)
    rate = int(task.recipe.audio.sample_rate)
    folder = Path(task.root) / STORE_DIR
    return SampleStore(library, rate, folder=folder)


def _level(value: float) -> float | None:
    """dBFS rounded to 1/1000 dB; ``None`` for silence (JSON has no -inf)."""
    return None if value == float("-inf") else round(float(value), 3)


def build_example(task: ShardTask, store: Any, index: int, out_dir: Path) -> ManifestRow:
    """Draw and render example ``index`` of the shard's split into ``out_dir``; its row.

    Files are written plainly: ``out_dir`` is the shard's temporary folder, published as a
    whole (see the module docstring).
    """
    from rmod.example.draw import draw_example, example_id, render_example
    from rmod.example.pattern import midi_bytes

    split, fmt, shard = task.shard.split, task.audio_format, task.shard
    eid = example_id(split, index)
    params = draw_example(task.recipe, store, task.seed, split, index)
    rendered = render_example(params, task.recipe, store)
    sr = int(task.recipe.audio.sample_rate)
    rel_dir = f"{split}/{shard.number:06d}"
    audio = {"mixture": rendered.mixture, **{c: rendered.oneshots[c] for c in DRUMS}}
    paths, frames, checksums, loudness, channels, sizes = {}, {}, {}, {}, {}, {}
    for role, data in audio.items():
        name = f"{eid}.{role}.{fmt}"
        encoded, checksums[role] = encode_audio_file(data, sr, fmt)
        _write(out_dir / name, encoded)
        sizes[role] = len(encoded)
        paths[role] = f"{rel_dir}/{name}"
        frames[role] = int(data.shape[-1])
        channels[role] = int(data.shape[0])
        loudness[f"{role}_peak_db"] = _level(peak_db(data))
        loudness[f"{role}_rms_db"] = _level(rms_db(data))
    midi_name = f"{eid}.pattern.mid"
    midi_data = midi_bytes(rendered.midi)
    _write(out_dir / midi_name, midi_data)
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
        channels=channels["mixture"],
        duration=round(frames["mixture"] / sr, 6),
        frames=frames,
        checksums=checksums,
        sources=sources,
        params=params.to_dict(),
        loudness=loudness,
        midi=f"{rel_dir}/{midi_name}",
        sizes=sizes,
        file_channels=channels,
    )


class OutputError(RmodError, OSError):
    """A file of a shard that could not be written (full disk, lost mount): names the path."""


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in a shard's temporary folder (published with the folder)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def render_shard(task: ShardTask) -> ShardResult:
    """Build every example of ``task.shard`` in a temporary folder and commit it.

    Raises :class:`ExampleFailed` naming the first example that failed (and the file,
    for an unreadable library file), :class:`ShardError` when the library cannot be
    loaded or the output written; nothing of a failed shard becomes visible.
    """
    start = time.perf_counter()
    tune_allocator()
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
        store = worker_store(task)
    except Exception as exc:
        raise ShardError(task.shard.name, f"cannot load the library: {_text(exc)}") from None
    try:
        tmp = make_temp_dir(task.root, task.shard)
    except OSError as exc:
        raise ShardError(task.shard.name, f"cannot write the output: {_text(exc)}") from None
    rows = []
    # One thread per worker in numeric libraries: a worker is one core's worth of work, and
    # idle BLAS/OpenMP threads spinning beside other workers cost system time (loky limits
    # them for its own workers; dask workers otherwise keep one pool per core).
    limits = threadpool_limits(limits=1)
    try:
        for index in task.shard.indices():
            check_lease(task)  # an orphaned worker stops within one example
            try:
                rows.append(build_example(task, store, index, tmp))
            except AudioFileError as exc:
                raise ExampleFailed(_eid(task, index), exc.reason, exc.path) from None
            except OutputError as exc:
                raise ShardError(task.shard.name, str(exc)) from None
            except Exception as exc:
                raise ExampleFailed(_eid(task, index), _text(exc)) from None
        check_lease(task)
        try:
            sync_folder(tmp)
            commit_shard(task.root, task.shard, tmp, rows)
        except OSError as exc:
            raise ShardError(task.shard.name, f"cannot commit: {_text(exc)}") from None
    finally:
        limits.restore_original_limits()
        if tmp.exists():  # not committed: leave nothing half-built behind
            shutil.rmtree(tmp, ignore_errors=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return ShardResult(task.shard, time.perf_counter() - start, peak_rss_bytes(), worker)


def _text(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _eid(task: ShardTask, index: int) -> str:
    from rmod.example.draw import example_id

    return example_id(task.shard.split, index)
