"""Build a whole RMOD dataset: plan shards, schedule them through joblib, resume, finish.

``build(BuildOptions(...))`` is what ``rmod-build`` runs:

1. load the recipe and the library; derive split sizes (valid/test are recipe
   fractions of the training size, at least 1 each), refuse sizes past the format's
   limits and a library that lacks a drum class in a split to be built, before any
   work (:func:`rmod.build.plan.plan_build`);
2. write ``DIR/build.json`` first, or, when it exists, refuse unless it describes the
   same build (recipe, library, seed, sizes, shard size, format, rendering code);
3. rebuild deleted manifest parts from the final manifests, remove debris of
   interrupted runs and damaged shards, and skip shards that were already committed
   (see :mod:`rmod.build.shards`);
4. run the remaining shards through joblib (``loky`` processes on this machine, or
   ``dask`` on a ``distributed`` cluster: a ``LocalCluster`` or ``--scheduler``; see
   :mod:`rmod.build.backends`);
5. concatenate the manifest parts, in order, into ``DIR/manifests/{split}.jsonl``.

Each run that renders makes a new, empty sample store for its workers (``DIR/.rmod-store``,
capped at ``--store-max``; see :mod:`rmod.example.sample_store`) after step 3, and removes it
when it ends, however it ends (a store is never trusted by a later run).

With ``--tokens`` (``BuildOptions.tokens``) the workers write no files: each example goes
to a token sink (:mod:`rmod.build.sink`), which is opened after step 3, says which shards
it already holds, and is closed after step 5.

Every example's randomness comes from (seed, split, index) alone, so the dataset is the
same bytes whatever the number of workers, the backend or the number of resumes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rmod import SPLITS
from rmod.build.backends import BACKENDS, run_shards, scheduling
from rmod.build.manifest import (
    BUILD_JSON,
    BuildInfo,
    ManifestError,
    read_build_info,
    write_build_info,
)
from rmod.build.plan import (
    BuildOptions,
    BuildPlan,
    BuildRefused,
    default_shard_size,
    make_build_info,
    plan_build,
    split_counts,
)
from rmod.build.shards import (
    LOCK_NAME,
    Shard,
    clean_incomplete,
    concatenate_parts,
    is_complete,
    part_path,
    parts_dir,
    restore_parts,
    shard_output,
    shard_present,
)
from rmod.build.task import ExampleFailed, ShardError, ShardTask
from rmod.errors import InputError
from rmod.example.store_folder import (
    StoreError,
    StoreUsage,
    create_store,
    default_store_max,
    format_size,
    read_store_usage,
    remove_store,
)
from rmod.recipe.spec import Recipe

log = logging.getLogger(__name__)


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
    tokens: str | None = None
    cleaned: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    error: str | None = None
    #: The traceback of an unexpected exception that stopped the build (``--debug`` prints it).
    error_traceback: str | None = None
    #: The sample store's cap in bytes (0: no store); ``None`` when nothing was rendered.
    store_cap_bytes: int | None = None
    #: The sample store's usage record at the end of the run (hits, misses, peak bytes).
    store: StoreUsage | None = None

    @property
    def ok(self) -> bool:
        """True when every shard is committed and the manifests are written."""
        return self.error is None

    @property
    def rate(self) -> float:
        """Examples rendered per second of wall time."""
        return self.rendered / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One-line summary: examples, time, rate, workers, peak worker memory, the sample
        store's hit rate and peak size."""
        total = sum(self.counts.values())
        split_text = ", ".join(f"{self.counts[s]} {s}" for s in SPLITS)
        status = "done" if self.ok else "FAILED"
        return (
            f"rmod-build {status}: {self.rendered} rendered + {self.reused} reused of"
            f" {total} examples ({split_text}) in {self.seconds:.1f} s,"
            f" {self.rate:.2f} examples/s, {self.workers} worker(s),"
            f" peak worker RSS {self.peak_rss_bytes / 2**20:.0f} MiB{self.store_text()}"
            f" -> {self.out}"
            + (f" (no audio stored; tokens in {self.tokens})" if self.tokens else "")
        )

    def store_text(self) -> str:
        """``, store hit rate H % (peak P of C)`` for :meth:`line`; ``, no sample store`` for
        a cap of 0, nothing when the run rendered nothing."""
        if self.store_cap_bytes is None:
            return ""
        if self.store_cap_bytes == 0:
            return ", no sample store"
        u = self.store or StoreUsage(self.store_cap_bytes)
        rate = "n/a" if u.hit_rate is None else f"{100 * u.hit_rate:.1f} %"
        peak, cap = format_size(u.peak_bytes), format_size(self.store_cap_bytes)
        return f", store hit rate {rate} (peak {peak} of {cap})"


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
def build_lock(out: Path) -> Iterator[str]:
    """Hold an exclusive lock on ``DIR/.rmod-build.lock`` while building; yields the lease.

    A second ``rmod-build`` on the same folder is refused instead of racing the first
    (it would remove the first one's temporary shards). The lock is released by the
    kernel when the process ends, even on SIGKILL. The lease, a fresh token written into
    the file while the lock is held, goes with every shard task: a worker commits only
    while the file is still locked and holds its token (see
    :func:`rmod.build.upkeep.check_lease`), so workers that outlive a killed build commit
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


def recover_parts(out: Path, shards: list[Shard]) -> list[str]:
    """Rebuild deleted manifest parts from the final manifests (see
    :func:`rmod.build.shards.restore_parts`); returns the parts written.

    Raises :class:`BuildRefused` when ``manifests/parts/`` itself is gone and shard
    folders remain that no final manifest lists: they are finished work (a build creates
    that folder before its first shard), which only the user may decide to throw away.
    """
    parts_gone = not parts_dir(out).is_dir()
    restored = restore_parts(out, shards)
    orphans = [s for s in shards if shard_present(out, s) and not part_path(out, s).is_file()]
    if parts_gone and orphans:
        first = shard_output(out, orphans[0]).relative_to(out)
        raise BuildRefused(
            f"{parts_dir(out)} is missing and {len(orphans)} shard folder(s) (e.g. {first}) "
            "are listed by no final manifest: they are finished work whose commit records "
            "were deleted. Restore manifests/parts/, or delete those folders to render them "
            "again."
        )
    parts_dir(out).mkdir(parents=True, exist_ok=True)
    return restored


def resume_point(plan: BuildPlan, summary: BuildSummary) -> list[Shard]:
    """Steps 2-3 of the module docstring, under the build's lock: write or check
    ``build.json``, repair and clean what earlier runs left; the shards still to render.
    Records what was restored, cleaned and reused in ``summary``. A token sink is opened
    here, and a shard is done only when the sink holds it too."""
    out, shards, stored = plan.out, plan.shards, plan.info.stored
    prepare_output(out, plan.info)
    summary.restored = recover_parts(out, shards)
    summary.cleaned = clean_incomplete(out, shards, stored)
    if plan.sink is not None:
        try:
            plan.sink.open()
        except (ValueError, OSError, RuntimeError) as exc:
            raise BuildRefused(f"--tokens: {exc}") from None
    todo = [
        s
        for s in shards
        if not is_complete(out, s, stored)
        or (plan.sink is not None and not plan.sink.has_shard(s.split, s.number, s.size))
    ]
    summary.shards_reused = len(shards) - len(todo)
    summary.reused = sum(s.size for s in shards) - sum(s.size for s in todo)
    return todo


def shard_tasks(plan: BuildPlan, todo: list[Shard], seed: int, lease: str) -> list[ShardTask]:
    """The worker tasks of the shards in ``todo`` (small and picklable)."""
    return [
        ShardTask(
            str(plan.out),
            s,
            plan.recipe,
            plan.library_path,
            plan.library.fingerprint,
            seed,
            plan.audio_format,
            plan.info.engine_fingerprint,
            lease,
            plan.sink_spec,
        )
        for s in todo
    ]


def build(options: BuildOptions) -> BuildSummary:
    """Build (or resume) the dataset described by ``options`` into ``options.out``.

    Returns a :class:`BuildSummary`; a failing example (or shard, or cluster) stops the
    build cleanly (finished shards are kept) and is reported in ``summary.error``.
    Raises :class:`BuildRefused` when ``out`` holds a different build or another build
    is running on it, ``ValueError`` for bad options.
    """
    start = time.perf_counter()
    if options.store_max is not None and options.store_max < 0:
        raise InputError(f"--store-max must be at least 0, got {options.store_max}")
    plan = plan_build(options)
    out = plan.out
    check_new_output(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = BuildSummary(out=out, counts=dict(plan.info.counts))
    summary.tokens = plan.sink_spec.out if plan.sink_spec is not None else None
    with build_lock(out) as lease:
        todo = resume_point(plan, summary)
        tasks = shard_tasks(plan, todo, options.seed, lease)
        cap = options.store_max
        if cap is None:
            # a --tokens build writes no audio into the dataset (its token cache is tiny)
            examples = sum(s.size for s in todo) if plan.info.stored else 0
            cap = default_store_max(out, _dataset_bytes(plan.recipe, examples))
        # what an earlier run left at DIR/.rmod-store is removed, or refused (StoreError)
        create_store(out, cap if tasks else 0, lease)
        summary.store_cap_bytes = cap if tasks else None
        try:
            if tasks:
                with scheduling(options.backend, options.jobs, options.scheduler) as workers:
                    summary.workers = workers
                    _run(tasks, summary, options.progress)
            manifests = concatenate_parts(out, plan.shards)
            if plan.sink is not None:
                plan.sink.close({split: str(path) for split, path in manifests.items()})
        except (ExampleFailed, ShardError) as exc:
            summary.error = str(exc)
        except KeyboardInterrupt:
            summary.error = "interrupted; rerun the same command to resume"
        except Exception as exc:  # scheduler/cluster failures (e.g. a worker that died)
            summary.error = f"the build stopped: {type(exc).__name__}: {exc}"
            summary.error_traceback = traceback.format_exc()
        finally:
            summary.store = read_store_usage(out)
            _remove_store(out)  # a cache of this run only
    summary.seconds = time.perf_counter() - start
    return summary


def _run(tasks: list[ShardTask], summary: BuildSummary, progress: bool) -> None:
    """Run shard tasks (step 4), counting what they render in ``summary``."""
    total = sum(summary.counts.values())
    for result in run_shards(tasks, total, summary.reused, progress):
        summary.rendered += result.shard.size
        summary.shards_rendered += 1
        if result.peak_rss_bytes > summary.peak_rss_bytes:
            summary.peak_rss_bytes = result.peak_rss_bytes
            summary.peak_rss_worker = result.worker


def _dataset_bytes(recipe: Recipe, examples: int) -> int:
    """An upper bound of the bytes ``examples`` examples add to a dataset: 16-bit WAV of the
    mixture and the three one-shot targets, all at the recipe's channel count (FLAC and mono
    targets write less; MIDI and manifests are small)."""
    a = recipe.audio
    seconds = float(a.mixture_seconds) + 3 * float(a.target_seconds)
    return int(examples * seconds * int(a.sample_rate) * int(a.channels) * 2)


def _remove_store(out: Path) -> None:
    """Remove the run's sample store (``DIR/.rmod-store``); log it when it cannot be (the
    next run refuses to start until it is gone)."""
    try:
        remove_store(out)
    except StoreError as exc:
        log.warning("%s", exc)


__all__ = [
    "BACKENDS",
    "BuildOptions",
    "BuildRefused",
    "BuildPlan",
    "BuildSummary",
    "Shard",
    "build",
    "default_shard_size",
    "make_build_info",
    "plan_build",
    "prepare_output",
    "scheduling",
    "split_counts",
]
