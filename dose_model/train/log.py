"""``metrics.csv`` of a training run: the running loss sums between rows and the rows."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from dose_model.model.checkpoints import TrainState
from dose_model.train.distributed import DistEnv
from rmod_dose_common.fileio import atomic_write_text

METRIC_FIELDS = tuple(
    "step lr train_loss full_loss onset_loss token_accuracy valid_loss valid_full_loss "
    "valid_onset_loss valid_accuracy examples_per_s".split()
)


def fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


class MetricsLog:
    """Running loss sums since the last row (on the device: no sync per step), the rows of
    ``metrics.csv`` and the examples/s of the last window."""

    NAMES = ("train_loss", "full_loss", "onset_loss", "token_accuracy")

    def __init__(
        self, path: Path, state: TrainState, env: DistEnv, device: torch.device | str
    ) -> None:
        self.path, self.env = path, env
        self.window = torch.tensor(state.window, dtype=torch.float64).to(device)
        self.rows = _read_metrics(path, state.step) if env.main and state.step else []
        self.t_window, self.examples, self.rate = time.perf_counter(), 0, 0.0
        self.last_loss, self.t_written = math.nan, time.perf_counter()

    def add(self, terms: torch.Tensor, examples: int) -> None:
        self.window[:4] += terms  # the four sums, then the count: in place, no new tensors
        self.window[4] += 1
        self.examples += examples

    def train_row(self, step: int, lr: float) -> dict[str, object]:
        """Means of the window (summed over ranks); resets it."""
        sums = self.window.clone()
        if self.env.world > 1:
            dist.all_reduce(sums)
        sums = sums.cpu()
        mean = (sums[:4] / sums[4].clamp_min(1)).tolist()
        now = time.perf_counter()
        self.rate = self.examples / max(now - self.t_window, 1e-9)
        self.t_window, self.examples, self.last_loss = now, 0, mean[0]
        self.window.zero_()
        row = {"step": step, "lr": fmt(lr), "examples_per_s": fmt(self.rate)}
        return row | {name: fmt(v) for name, v in zip(self.NAMES, mean, strict=True)}

    def append(self, row: dict | None, saving: bool) -> None:
        """Keep ``row``; rewrite metrics.csv whole (atomically) with each checkpoint and at
        most every 30 s in between (rows past last.ckpt's step are dropped on resume)."""
        if not self.env.main:
            return
        if row is not None:
            self.rows.append({k: row.get(k, "") for k in METRIC_FIELDS})
        if self.rows and (saving or time.perf_counter() - self.t_written > 30.0):
            _write_metrics(self.path, self.rows)
            self.t_written = time.perf_counter()


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _read_metrics(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if int(row["step"]) <= up_to_step]
