"""Training batches: the data order (a pure function of seed and step) and `BatchLoader`,
which reads each step's batch whole and one step ahead.

Update ``step`` (0-based) uses epoch ``e = step // (n // B)`` and the global batch
``b = step % (n // B)`` of the permutation of the ``n`` training examples drawn from
``numpy.random.SeedSequence([seed, e])`` (the last partial batch of each epoch is dropped).
Under DDP with ``W`` ranks, rank ``r`` takes the ``r``-th contiguous ``B / W`` share of each
global batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from dose_model.errors import DoseError
from dose_model.model.config import TrainConfig
from dose_model.train.batches import Batch
from dose_model.train.batches import collate as default_collate
from dose_model.train.distributed import DistEnv

if TYPE_CHECKING:
    from dose_model.train.batches import ExampleSet


class TrainingError(DoseError, RuntimeError):
    """Training cannot start or continue (bad data sizes, missing checkpoint, ...)."""


def global_batch(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Example indices of update ``step``'s global batch (pure function of its arguments)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise TrainingError(f"{n} training examples cannot fill one batch of {batch_size}")
    epoch, b = divmod(step, per_epoch)
    return _epoch_order(seed, epoch, n)[b * batch_size : (b + 1) * batch_size]


@functools.lru_cache(maxsize=2)  # the current epoch's and the next one's, drawn once each
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)
    order.flags.writeable = False  # shared by every caller
    return order


def rank_share(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s contiguous share of a global batch (its length must divide by world)."""
    per = len(indices) // world
    return indices[rank * per : (rank + 1) * per]


def load_batch(
    dataset: ExampleSet, indices: Sequence[int] | np.ndarray, collate: Callable | None = None
) -> Batch:
    """The batch of ``indices`` on the CPU: ``dataset.batch(indices)`` (one gather, the delay
    pattern for the whole batch) when the dataset has it and no ``collate`` is given, else
    ``collate`` (default `dose_model.train.batches.collate`) of the items."""
    if collate is None and hasattr(dataset, "batch"):
        return dataset.batch(np.asarray(indices))
    batch = (collate or default_collate)([dataset[int(i)] for i in indices])
    return tuple(batch[:3])


class BatchLoader:
    """The training batches of this rank, built one step ahead in a background thread.

    Each epoch's permutation is drawn once (not per step); batches come from `load_batch`,
    are pinned on CUDA and copied to ``device`` without blocking. ``get(step)`` equals
    `load_batch` of ``rank_share(global_batch(seed, step, n, B), rank, world)``.
    """

    def __init__(
        self,
        dataset: ExampleSet,
        cfg: TrainConfig,
        env: DistEnv,
        device: torch.device | str,
        collate: Callable | None = None,
    ) -> None:
        self.dataset, self.cfg, self.env, self.collate = dataset, cfg, env, collate
        self.device = torch.device(device)
        self.n = len(dataset)
        global_batch(cfg.seed, 0, self.n, cfg.batch_size)  # TrainingError if it cannot fill one
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dose-loader")
        self.pending: dict[int, Future] = {}

    def indices(self, step: int) -> np.ndarray:
        """This rank's example indices for ``step``."""
        batch = global_batch(self.cfg.seed, step, self.n, self.cfg.batch_size)
        return rank_share(batch, self.env.rank, self.env.world)

    def _build(self, step: int) -> Batch:
        batch = load_batch(self.dataset, self.indices(step), self.collate)
        if self.device.type == "cuda":
            return cast(Batch, tuple(x.pin_memory() for x in batch))
        return batch

    def get(self, step: int) -> Batch:
        """The batch of ``step`` on the device; starts building ``step + 1``."""
        future = self.pending.pop(step, None)
        batch = future.result() if future is not None else self._build(step)
        if step + 1 < self.cfg.max_steps:
            self.pending[step + 1] = self.pool.submit(self._build, step + 1)
        return tuple(x.to(self.device, non_blocking=True) for x in batch)  # type: ignore[return-value]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
