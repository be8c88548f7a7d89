"""How a build's shards run: the joblib backends and the loop that feeds them.

``loky`` runs shards in worker processes of this machine; ``dask`` runs them on a
``distributed`` cluster, a ``LocalCluster`` started here or a running one named by
``--scheduler``. :func:`scheduling` configures joblib for one of them, and
:func:`run_shards` sends the shard tasks to it and yields each committed shard's result,
in the order they finish, with a progress bar. What a worker does with a shard is in
:mod:`rmod.build.worker`; which shards to run is decided by :mod:`rmod.build.run`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import joblib
from tqdm import tqdm

from rmod.build.task import ShardResult, ShardTask
from rmod.build.worker import render_shard
from rmod.errors import InputError

BACKENDS = ("loky", "dask")
#: dask settings of the ``LocalCluster`` that ``--backend dask`` starts without ``--scheduler``
#: (the README gives the same for ``dask worker`` on a cluster).
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "60s",
    "distributed.admin.system-monitor.gil.enabled": False,
}


def check_backend(backend: str, scheduler: str | None) -> None:
    """Refuse (:class:`rmod.errors.InputError`) an unknown ``--backend`` or a ``--scheduler``
    without ``--backend dask``; :func:`rmod.build.plan.plan_build` checks this before
    anything is written."""
    if backend not in BACKENDS:
        raise InputError(f"unknown --backend {backend!r} (use one of {', '.join(BACKENDS)})")
    if scheduler and backend != "dask":
        raise InputError(f"--scheduler needs --backend dask, not --backend {backend}")


@contextmanager
def scheduling(backend: str, jobs: int | None, scheduler: str | None) -> Iterator[int]:
    """Configure joblib for ``backend``; yields the number of parallel workers.

    ``dask`` connects a ``distributed.Client`` to ``scheduler`` (a running cluster,
    output on a shared filesystem) or starts a ``LocalCluster`` of ``jobs`` worker
    processes (one thread each) and closes it afterwards.
    """
    check_backend(backend, scheduler)
    if backend == "loky":
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


def run_shards(
    tasks: list[ShardTask], total: int, done: int, progress: bool
) -> Iterator[ShardResult]:
    """Run shard tasks through the configured joblib backend; yields each shard's result
    as it is committed. The progress bar counts examples: ``done`` of ``total`` before the
    first task."""
    bar = tqdm(
        total=total,
        initial=done,
        desc="rmod-build",
        unit="ex",
        disable=not progress,
        smoothing=0.1,
    )
    parallel = joblib.Parallel(return_as="generator_unordered", batch_size=1)
    try:
        results = parallel(joblib.delayed(render_shard)(t) for t in tasks)
        for finished, result in enumerate(results, start=1):
            yield result
            bar.update(result.shard.size)
            bar.set_postfix(shards=f"{finished}/{len(tasks)}", refresh=False)
    finally:
        bar.close()
