"""Build a whole RMOD dataset: plan shards, schedule them through joblib, resume, finish.

``build(BuildOptions(...))`` is what ``rmod-build`` runs:

1. load the recipe and the library; derive split sizes (valid/test are recipe
   fractions of the training size, at least 1 each), refuse sizes past the format's
   limits and a library that lacks a drum class in a split to be built, before any
   work;
2. write ``DIR/build.json`` first, or, when it exists, refuse unless it describes the
   same build (recipe, library, seed, sizes, shard size, format, rendering code);
3. rebuild deleted manifest parts from the final manifests, remove debris of
   interrupted runs and damaged shards, and skip shards that were already committed
   (see :mod:`rmod.shards`);
4. run the remaining shards through joblib (``loky`` processes on this machine, or
   ``dask`` on a ``distributed`` cluster: a ``LocalCluster`` or ``--scheduler``);
5. concatenate the manifest parts, in order, into ``DIR/manifests/{split}.jsonl``, and
   remove the sample store the workers shared (``DIR/.rmod-store``, see :mod:`rmod.store`).

Every example's randomness comes from (seed, split, index) alone, so the dataset is the
same bytes whatever the number of workers, the backend or the number of resumes.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
from tqdm import tqdm

import rmod
from rmod import SPLITS
from rmod.errors import InputError, RmodError
from rmod.manifest import (
    BUILD_JSON,
    BuildInfo,
    ManifestError,
    read_build_info,
    write_build_info,
)
from rmod.preflight import check_library_covers, check_numbers, check_sizes
from rmod.shards import (
    LOCK_NAME,
    Shard,
    clean_incomplete,
    concatenate_parts,
    is_complete,
    part_path,
    parts_dir,
    plan_shards,
    restore_parts,
    shard_dir,
)
from rmod.store import STORE_DIR
from rmod.worker import (
    ExampleFailed,
    ShardError,
    ShardResult,
    ShardTask,
    engine_fingerprint,
    render_shard,
)

log = logging.getLogger(__name__)

BACKENDS = ("loky", "dask")
#: dask settings of the ``LocalCluster`` that ``--backend dask`` starts without ``--scheduler``
#: (the README gives the same for ``dask worker`` on a cluster).
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "60s",
    "distributed.admin.system-monitor.gil.enabled": False,
}
MAX_DEFAULT_SHARD_SIZE = 100


class BuildRefused(RmodError):
    """The output folder holds a different build (the message lists what differs), or
    another build is running on it."""


@dataclass(frozen=True)
class BuildOptions:
    """Arguments of :func:`build` (the ``rmod-build`` options).

    ``n``: training examples. ``recipe``/``library``: paths, ``None`` for the paper
    recipe / built-in library. ``jobs``: parallel workers (``None``: all cores for
    loky and a ``LocalCluster``; every worker thread of a ``--scheduler`` cluster).
    ``audio_format``: ``wav``/``flac``, ``None`` for the recipe's. ``shard_size``:
    examples per shard, ``None`` for :func:`default_shard_size`. ``midi_dir``: MIDI
    files of a Groove recipe (recorded in the recipe as ``groove.midi_dir``).
    """

    n: int
    out: str | os.PathLike
    recipe: str | os.PathLike | None = None
    library: str | os.PathLike | None = None
    seed: int = 0
    jobs: int | None = None
    backend: str = "loky"
    scheduler: str | None = None
    shard_size: int | None = None
    audio_format: str | None = None
    progress: bool = True
    midi_dir: str | os.PathLike | None = None


@dataclass
class BuildSummary:
    """Outcome of a build; :meth:`line` is the one-line summary printed at the end."""

    out: Path
    counts: dict[str, int]
    rendered: int = 0
    reused: int = 0
    shards_rendered: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    workers: int = 1
    peak_rss_bytes: int = 0
    peak_rss_worker: str = ""
    cleaned: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every shard is committed and the manifests are written."""
        return self.error is None

    @property
    def rate(self) -> float:
        """Examples rendered per second of wall time."""
        return self.rendered / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One-line summary: examples, time, rate, workers, peak worker memory."""
        total = sum(self.counts.values())
        split_text = ", ".join(f"{self.counts[s]} {s}" for s in SPLITS)
        status = "done" if self.ok else "FAILED"
        return (
            f"rmod-build {status}: {self.rendered} rendered + {self.reused} reused of"
            f" {total} examples ({split_text}) in {self.seconds:.1f} s,"
            f" {self.rate:.2f} examples/s, {self.workers} worker(s),"
            f" peak worker RSS {self.peak_rss_bytes / 2**20:.0f} MiB -> {self.out}"
        )


def split_counts(recipe: Any, n: int) -> dict[str, int]:
    """Examples per split: ``n`` training; valid/test are the recipe's fractions of ``n``,
    rounded half up, at least ``max(1, recipe.splits.min_per_split)`` each."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    floor = max(1, int(recipe.splits.min_per_split))
    spec = recipe.splits
    return {
        "train": n,
        "valid": max(floor, math.floor(n * float(spec.valid_fraction) + 0.5)),
        "test": max(floor, math.floor(n * float(spec.test_fraction) + 0.5)),
    }


def default_shard_size(n: int) -> int:
    """``n // 50`` clamped to 1..100: about 50 training shards for small builds (fine
    progress, balanced workers), 100-example shards from 5,000 examples up. Depends on
    ``n`` only, so rerunning the same command finds the same layout."""
    return max(1, min(MAX_DEFAULT_SHARD_SIZE, n // 50))


def make_build_info(
    recipe: Any,
    library: Any,
    library_path: str | None,
    seed: int,
    counts: dict[str, int],
    shard_size: int,
    audio_format: str,
) -> BuildInfo:
    """The ``build.json`` record of a build (nothing about how it is run)."""
    return BuildInfo(
        recipe=recipe.to_dict(),
        recipe_fingerprint=recipe.fingerprint,
        library_path=library_path,
        library_fingerprint=library.fingerprint,
        seed=int(seed),
        counts=dict(counts),
        shard_size=int(shard_size),
        audio_format=audio_format,
        sample_rate=int(recipe.audio.sample_rate),
        channels=int(recipe.audio.channels),
        rmod_version=rmod.__version__,
        engine_fingerprint=engine_fingerprint(),
    )


def prepare_output(out: Path, info: BuildInfo) -> None:
    """Write ``build.json`` into a new folder, or check that an existing one matches.

    Raises :class:`BuildRefused` listing every difference with the existing build.
    """
    if (out / BUILD_JSON).exists():
        try:
            existing = read_build_info(out)
        except ManifestError as exc:
            raise BuildRefused(f"{exc}; remove it or choose another --out") from None
        diffs = info.differences(existing)
        if diffs:
            raise BuildRefused(
                f"{out} already holds a different build; refusing to mix them.\n  "
                + "\n  ".join(diffs)
                + "\nRerun with the original options to resume, or choose another --out."
            )
        return
    check_new_output(out)
    out.mkdir(parents=True, exist_ok=True)
    write_build_info(out, info)


def check_new_output(out: Path) -> None:
    """Refuse a folder that exists, is not empty and holds no ``build.json``."""
    if (out / BUILD_JSON).exists() or not out.exists():
        return
    if any(p.name not in (LOCK_NAME, ".DS_Store") for p in out.iterdir()):
        raise BuildRefused(f"{out} exists, is not empty and holds no {BUILD_JSON}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (what batch schedulers and ``kill`` send) into ``KeyboardInterrupt``
    while building, so the build stops the same clean way as on Ctrl-C. Main thread only."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def build_lock(out: Path) -> Iterator[str]:
    """Hold an exclusive lock on ``DIR/.rmod-build.lock`` while building; yields the lease.

    A second ``rmod-build`` on the same folder is refused instead of racing the first
    (it would remove the first one's temporary shards). The lock is released by the
    kernel when the process ends, even on SIGKILL. The lease, a fresh token written into
    the file while the lock is held, goes with every shard task: a worker commits only
    while the file is still locked and holds its token (see
    :func:`rmod.worker.check_lease`), so workers that outlive a killed build commit
    nothing. The file is emptied again when the build ends.
    """
    path = out / LOCK_NAME
    fh = open(path, "a+b")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildRefused(
                f"another rmod-build is running on {out} ({path} is locked)"
            ) from None
        lease = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        try:
            fh.truncate(0)
            fh.write(lease.encode())
            fh.flush()
            os.fsync(fh.fileno())
            yield lease
        finally:
            fh.truncate(0)
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


@contextmanager
def scheduling(backend: str, jobs: int | None, scheduler: str | None) -> Iterator[int]:
    """Configure joblib for ``backend``; yields the number of parallel workers.

    ``dask`` connects a ``distributed.Client`` to ``scheduler`` (a running cluster,
    output on a shared filesystem) or starts a ``LocalCluster`` of ``jobs`` worker
    processes (one thread each) and closes it afterwards.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
    if backend == "loky":
        if scheduler:
            raise InputError("--scheduler needs --backend dask")
        n = jobs or joblib.cpu_count()
        with joblib.parallel_config(backend="loky", n_jobs=n):
            yield n
        return
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        import dask

        n = jobs or joblib.cpu_count()
        # Workers that only render: no statistical profiler sampling the task every 10 ms,
        # no system monitor (dask's defaults cost a LocalCluster ~30 % more CPU than loky).
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
        client = Client(cluster)
    try:
        workers = sum(client.nthreads().values())
        n_jobs = jobs if (scheduler and jobs) else -1
        with joblib.parallel_config(backend="dask", n_jobs=n_jobs):
            yield min(workers, jobs) if (scheduler and jobs) else workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def recover_parts(out: Path, shards: list[Shard]) -> list[str]:
    """Rebuild deleted manifest parts from the final manifests (see
    :func:`rmod.shards.restore_parts`); returns the parts written.

    Raises :class:`BuildRefused` when ``manifests/parts/`` itself is gone and shard
    folders remain that no final manifest lists: they are finished work (a build creates
    that folder before its first shard), which only the user may decide to throw away.
    """
    parts_gone = not parts_dir(out).is_dir()
    restored = restore_parts(out, shards)
    orphans = [s for s in shards if shard_dir(out, s).is_dir() and not part_path(out, s).is_file()]
    if parts_gone and orphans:
        first = shard_dir(out, orphans[0]).relative_to(out)
        raise BuildRefused(
            f"{parts_dir(out)} is missing and {len(orphans)} shard folder(s) (e.g. {first}) "
            "are listed by no final manifest: they are finished work whose commit records "
            "were deleted. Restore manifests/parts/, or delete those folders to render them "
            "again."
        )
    parts_dir(out).mkdir(parents=True, exist_ok=True)
    return restored


def _load(options: BuildOptions) -> tuple[Any, Any, str | None]:
    from rmod.library import Library
    from rmod.recipe import load_recipe

    recipe = load_recipe(options.recipe)
    if options.midi_dir is not None:  # Groove variant: workers read the folder (rmod.groove)
        from rmod.groove import recipe_grooves, with_midi_dir

        recipe = with_midi_dir(recipe, options.midi_dir)
        for path, reason in recipe_grooves(recipe).refused:
            log.warning("skipped %s: %s", path, reason)
    elif recipe.groove is not None and recipe.groove.midi_dir is None:
        raise InputError(
            f"recipe {recipe.name} takes its drum patterns from MIDI files: --midi-dir"
        )
    library_path = str(Path(options.library).resolve()) if options.library else None
    return recipe, Library.load(library_path), library_path


def _check_grooves(recipe: Any, counts: dict[str, int]) -> None:
    """A Groove build needs MIDI windows in every split it renders (ValueError if not)."""
    from rmod.groove import recipe_grooves

    grooves = recipe_grooves(recipe)
    if grooves is None:
        return
    empty = [s for s in SPLITS if counts.get(s, 0) and not grooves.windows.get(s)]
    if empty:
        raise InputError(
            f"{recipe.groove.midi_dir}: no usable MIDI window in split(s) {', '.join(empty)} "
            f"({len(grooves.files)} usable files; files are split 80/10/10 by their sha256)"
        )


def build(options: BuildOptions) -> BuildSummary:
    """Build (or resume) the dataset described by ``options`` into ``options.out``.

    Returns a :class:`BuildSummary`; a failing example (or shard, or cluster) stops the
    build cleanly (finished shards are kept) and is reported in ``summary.error``.
    Raises :class:`BuildRefused` when ``out`` holds a different build or another build
    is running on it, ``ValueError`` for bad options.
    """
    start = time.perf_counter()
    check_numbers(options.n, options.seed, options.jobs)
    out = Path(options.out).resolve()
    recipe, library, library_path = _load(options)
    fmt = (options.audio_format or recipe.audio.format).lower()
    if fmt not in ("wav", "flac"):
        raise InputError(f"unsupported --format {fmt!r} (use wav or flac)")
    counts = split_counts(recipe, options.n)
    _check_grooves(recipe, counts)
    shard_size = default_shard_size(options.n) if options.shard_size is None else options.shard_size
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, got {shard_size}")
    check_sizes(counts, shard_size)
    check_library_covers(library, counts)
    info = make_build_info(recipe, library, library_path, options.seed, counts, shard_size, fmt)
    check_new_output(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(counts, shard_size)
    summary = BuildSummary(out=out, counts=counts)
    with build_lock(out) as lease:
        prepare_output(out, info)
        summary.restored = recover_parts(out, shards)
        summary.cleaned = clean_incomplete(out, shards)
        todo = [s for s in shards if not is_complete(out, s)]
        summary.shards_reused = len(shards) - len(todo)
        summary.reused = sum(s.size for s in shards) - sum(s.size for s in todo)
        _remove_store(out)  # a store left by an interrupted run is not trusted
        tasks = [
            ShardTask(
                str(out),
                s,
                recipe,
                library_path,
                library.fingerprint,
                options.seed,
                fmt,
                info.engine_fingerprint,
                lease,
            )
            for s in todo
        ]
        try:
            if tasks:
                with scheduling(options.backend, options.jobs, options.scheduler) as workers:
                    summary.workers = workers
                    _run(tasks, summary, options.progress)
            concatenate_parts(out, shards)
            _remove_store(out)  # a cache: the build is complete
        except (ExampleFailed, ShardError) as exc:
            summary.error = str(exc)
        except KeyboardInterrupt:
            summary.error = "interrupted; rerun the same command to resume"
        except Exception as exc:  # scheduler/cluster failures (e.g. a worker that died)
            summary.error = f"the build stopped: {type(exc).__name__}: {exc}"
    summary.seconds = time.perf_counter() - start
    return summary


def _remove_store(out: Path) -> None:
    """Remove the build's sample store (``DIR/.rmod-store``); log what could not be removed."""

    def report(path: str, exc: BaseException) -> None:
        log.warning("could not remove %s from the sample store: %s", path, exc)

    if sys.version_info >= (3, 12):
        handler = {"onexc": lambda func, path, exc: report(path, exc)}
    else:
        handler = {"onerror": lambda func, path, info: report(path, info[1])}
    if (out / STORE_DIR).exists():
        shutil.rmtree(out / STORE_DIR, **handler)


def _run(tasks: list[ShardTask], summary: BuildSummary, progress: bool) -> None:
    """Run shard tasks through the configured joblib backend, updating ``summary``."""
    total = sum(summary.counts.values())
    bar = tqdm(
        total=total,
        initial=summary.reused,
        desc="rmod-build",
        unit="ex",
        disable=not progress,
        smoothing=0.1,
    )
    parallel = joblib.Parallel(return_as="generator_unordered", batch_size=1)
    try:
        result: ShardResult
        for result in parallel(joblib.delayed(render_shard)(t) for t in tasks):
            summary.rendered += result.shard.size
            summary.shards_rendered += 1
            if result.peak_rss_bytes > summary.peak_rss_bytes:
                summary.peak_rss_bytes = result.peak_rss_bytes
                summary.peak_rss_worker = result.worker
            bar.update(result.shard.size)
            bar.set_postfix(shards=f"{summary.shards_rendered}/{len(tasks)}", refresh=False)
    finally:
        bar.close()


__all__ = [
    "BACKENDS",
    "BuildOptions",
    "BuildRefused",
    "BuildSummary",
    "Shard",
    "build",
    "check_library_covers",
    "check_sizes",
    "default_shard_size",
    "make_build_info",
    "prepare_output",
    "scheduling",
    "split_counts",
]
