"""Keeping a worker process honest and lean: the build's lease, dying with the build, memory.

- :func:`check_lease`: a worker commits only while its build holds the lock with its token.
- :func:`die_with_build`: loky workers end when the build process is gone.
- :func:`tune_allocator`, :func:`peak_rss_bytes`: glibc's heap reuse, peak memory.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import multiprocessing
import os
import resource
import sys
import threading
import time
from pathlib import Path

from rmod.build.shards import LOCK_NAME
from rmod.build.task import ShardError, ShardTask


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


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``getrusage`` maxrss)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


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
