"""Training loop: AdamW, warmup + cosine, clipping, bf16 autocast on GPU, validation with early
stopping, exact resume, data-parallel under ``torchrun`` (DDP).

Data order is a pure function of (seed, step): update ``step`` (0-based) uses epoch
``e = step // (n // B)`` and the global batch ``b = step % (n // B)`` of the permutation of the
``n`` training examples drawn from ``numpy.random.SeedSequence([seed, e])`` (the last partial
batch of each epoch is dropped). Under DDP with ``W`` ranks, rank ``r`` takes the ``r``-th
contiguous ``B / W`` share of each global batch, so W ranks compute the same update as one
process with the whole batch (the loss is a mean of per-example means; `dose_model.losses`).

Files under ``out`` (rank 0 writes, each atomically):
``metrics.csv`` (one row per log or validation step, see `METRIC_FIELDS`), ``last.ckpt``
(every ``save_every`` steps, after each validation and at the end) and ``best.ckpt`` (the
lowest validation loss); checkpoint layout in `dose_model.checkpoints`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from dose_model.checkpoints import FORMAT, atomic_torch_save, read_checkpoint
from dose_model.config import ModelConfig, TrainConfig
from dose_model.data import collate as default_collate
from dose_model.device import resolve_device
from dose_model.fileio import atomic_write_text
from dose_model.losses import LossOutput, dose_loss
from dose_model.model import DoseTransformer

METRIC_FIELDS = tuple(
    "step lr train_loss full_loss onset_loss token_accuracy valid_loss valid_full_loss "
    "valid_onset_loss valid_accuracy examples_per_s".split()
)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(mixture [B, M, K] long, target [B, L, K] long, target_mask [B, L] bool)."""


class TrainingError(RuntimeError):
    """Training cannot start or continue (bad data sizes, missing checkpoint, ...)."""


@dataclass
class TrainResult:
    """Summary of a `train` call."""

    step: int
    best_valid: float
    best_step: int
    last_train_loss: float
    examples_per_s: float
    stopped_early: bool
    out: Path


def global_batch(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Example indices of update ``step``'s global batch (pure function of its arguments)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise TrainingError(f"{n} training examples cannot fill one batch of {batch_size}")
    epoch, b = divmod(step, per_epoch)
    order = np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)
    return order[b * batch_size : (b + 1) * batch_size]


def rank_share(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s contiguous share of a global batch (its length must divide by world)."""
    per = len(indices) // world
    return indices[rank * per : (rank + 1) * per]


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_arg: str) -> _Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = device_arg != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return _Dist(rank=rank, world=world, local_rank=local)


class _TrainStep(nn.Module):
    """The training computation, logits and loss, as one ``forward``: what DDP wraps and what
    ``torch.compile`` fuses (the loss's cast and softmax included)."""

    def __init__(self, model: DoseTransformer, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(
        self, mixture: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Returns (loss, full, onset, accuracy) scalars; only loss carries gradients."""
        logits = self.model.target_logits(mixture, target[:, :-1])
        out = _loss(self.model, self.cfg, logits, (mixture, target, mask))
        return out.loss, out.full, out.onset, out.accuracy


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, LayerNorms)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda"
    )


def _autocast(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def _loss(
    model: DoseTransformer, cfg: TrainConfig, logits: torch.Tensor, batch: Batch
) -> LossOutput:
    _, target, mask = batch
    return dose_loss(
        logits,
        target,
        mask,
        first=model.first_predicted,
        full_weight=cfg.full_weight,
        onset_weight=cfg.onset_weight,
        onset_positions=cfg.onset_positions,
        mask_padding=cfg.mask_padding,
    )


def _fetch(dataset, indices: Sequence[int], collate: Callable, device: torch.device) -> Batch:
    batch = collate([dataset[int(i)] for i in indices])
    return tuple(x.to(device, non_blocking=True) for x in batch[:3])  # type: ignore[return-value]


class _Prefetcher:
    """Builds the (pure-function) batch of the next step in a background thread."""

    def __init__(self, dataset, collate: Callable, cfg: TrainConfig, ddp: _Dist) -> None:
        self.dataset, self.collate, self.cfg, self.ddp = dataset, collate, cfg, ddp
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: dict[int, Future] = {}

    def _load(self, step: int) -> Batch:
        n, cfg = len(self.dataset), self.cfg
        idx = rank_share(
            global_batch(cfg.seed, step, n, cfg.batch_size), self.ddp.rank, self.ddp.world
        )
        return _fetch(self.dataset, idx, self.collate, torch.device("cpu"))

    def get(self, step: int, device: torch.device) -> Batch:
        """The batch of ``step`` on ``device``; starts loading ``step + 1``."""
        future = self.pending.pop(step, None)
        batch = future.result() if future is not None else self._load(step)
        if step + 1 < self.cfg.max_steps:
            self.pending[step + 1] = self.pool.submit(self._load, step + 1)
        return tuple(x.to(device, non_blocking=True) for x in batch)  # type: ignore[return-value]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@torch.no_grad()
def evaluate(
    model: DoseTransformer,
    dataset,
    cfg: TrainConfig,
    device: torch.device,
    precision: str = "auto",
    collate: Callable = default_collate,
    ddp: _Dist | None = None,
) -> dict[str, float]:
    """Mean validation loss terms and token accuracy over (the first ``eval_max_batches``
    global batches of) ``dataset``, in order; ranks evaluate shares and sum."""
    ddp = ddp or _Dist()
    was_training = model.training
    model.eval()
    n = len(dataset)
    batches = math.ceil(n / cfg.batch_size)
    if cfg.eval_max_batches is not None:
        batches = min(batches, cfg.eval_max_batches)
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    step = _TrainStep(model, cfg)
    for b in range(batches):
        idx = np.arange(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size))
        share = np.array_split(idx, ddp.world)[ddp.rank]
        if len(share) == 0:
            continue
        batch = _fetch(dataset, share, collate, device)
        with _autocast(device, precision):
            terms = step(*batch)  # loss, full, onset, accuracy
        k = len(share)
        sums += torch.tensor(
            [t.item() * k for t in terms] + [k], dtype=torch.float64, device=device
        )
    if ddp.world > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    count = max(sums[4].item(), 1.0)
    loss, full, onset, acc = (sums[:4] / count).tolist()
    return {"loss": loss, "full": full, "onset": onset, "accuracy": acc}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _check_shapes(dataset, cfg: ModelConfig) -> None:
    if len(dataset) == 0:
        raise TrainingError("the training set is empty")
    mixture, target = dataset[0][:2]
    if tuple(mixture.shape) != (cfg.mixture_len, cfg.num_codebooks):
        raise TrainingError(
            f"mixture tokens are {tuple(mixture.shape)}, model expects "
            f"({cfg.mixture_len}, {cfg.num_codebooks}) (model.mixture_len, model.num_codebooks)"
        )
    if target.shape[0] > cfg.max_target_len:
        raise TrainingError(
            f"targets have {target.shape[0]} positions > model.max_target_len "
            f"{cfg.max_target_len}: lower train.target_frames or raise model.max_target_len"
        )


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_set,
    valid_set,
    out: str | Path,
    device: str = "auto",
    precision: str = "auto",
    resume: bool = False,
    collate: Callable = default_collate,
    progress: bool = True,
    stop_after: int | None = None,
    max_steps: int | None = None,
    compile: bool = False,
) -> TrainResult:
    """Train a `DoseTransformer` and write ``metrics.csv``, ``last.ckpt``, ``best.ckpt``.

    Args:
        model_cfg, train_cfg: configurations (stored in the checkpoints).
        train_set, valid_set: indexable datasets of ``(mixture [M, K], target [L, K])`` long
            tensors; ``valid_set`` may be None or empty (no validation, no early stopping).
        out: run folder (created).
        device: "auto", "cpu", "cuda", "cuda:1", ... (under torchrun: cuda:LOCAL_RANK).
        precision: "auto" (bf16 autocast on cuda, fp32 elsewhere), "bf16" or "fp32".
        resume: continue from ``out/last.ckpt``; the configs stored there replace the given
            ones (only ``max_steps`` can still be overridden). Without it, an ``out`` that
            already holds ``last.ckpt`` is refused (TrainingError) rather than overwritten.
        max_steps: override ``train_cfg.max_steps`` (also when resuming; the cosine schedule
            follows it, so an unchanged value is needed to reproduce an uninterrupted run).
        collate: batch builder, ``list[(mixture, target)] -> (mixture, target, target_mask)``.
        progress: show a tqdm bar (rank 0).
        stop_after: end after this many updates as if interrupted (last.ckpt written); tests.
        compile: run the training forward and loss through `torch.compile` (off by default).

    Returns:
        `TrainResult`.
    """
    ddp = _init_distributed(device)
    dev = resolve_device(device, ddp.local_rank)
    out = Path(out)
    last_path, best_path, metrics_path = out / "last.ckpt", out / "best.ckpt", out / "metrics.csv"

    state: dict[str, Any] | None = None
    if not resume and last_path.is_file():
        raise TrainingError(
            f"{out} already holds a run ({last_path.name}): pass --resume to continue it, or "
            "choose another --out"
        )
    if resume:
        if not last_path.is_file():
            raise TrainingError(f"--resume: {last_path} does not exist")
        state = read_checkpoint(last_path)
        model_cfg = ModelConfig.from_dict(state["model_config"])
        train_cfg = TrainConfig.from_dict(state["train_config"])
    if max_steps is not None:
        train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "max_steps": max_steps})
    cfg = train_cfg
    if cfg.batch_size % ddp.world:
        raise TrainingError(f"batch_size {cfg.batch_size} must divide by {ddp.world} ranks")
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)

    _check_shapes(train_set, model_cfg)
    torch.manual_seed(cfg.seed)
    model = DoseTransformer(model_cfg).to(dev)
    optimizer = make_optimizer(model, cfg, dev)
    step, best_valid, best_step, bad_evals, stopped = 0, math.inf, -1, 0, False
    window = torch.zeros(5, dtype=torch.float64)  # sums of loss, full, onset, accuracy; count
    rows: list[dict[str, Any]] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best_valid, best_step = state["step"], state["best_valid"], state["best_step"]
        bad_evals, stopped = state["bad_evals"], state["stopped"]
        window = torch.tensor(state["window"], dtype=torch.float64)
        _set_rng_state(state["rng"], dev)
        rows = _read_metrics(metrics_path, step) if ddp.main else []
    # Different ranks must draw different dropout masks; rank 0 keeps the single-process stream.
    if ddp.rank:
        torch.manual_seed(cfg.seed * 1009 + ddp.rank + step)
    window = window.to(dev)
    net: nn.Module = _TrainStep(model, cfg)
    if ddp.world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if compile:
        net = torch.compile(net)

    def checkpoint(path: Path) -> None:
        if not ddp.main:
            return
        atomic_torch_save(
            {
                "format": FORMAT,
                "model_config": model_cfg.to_dict(),
                "train_config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {"step": step, "lr": cfg.lr_at(step)},
                "step": step,
                "epoch": step // max(1, len(train_set) // cfg.batch_size),
                "batch_in_epoch": step % max(1, len(train_set) // cfg.batch_size),
                "best_valid": best_valid,
                "best_step": best_step,
                "bad_evals": bad_evals,
                "stopped": stopped,
                "window": window.tolist(),
                "rng": _rng_state(dev),
                "world_size": ddp.world,
            },
            path,
        )

    has_valid = valid_set is not None and len(valid_set) > 0
    global_batch(cfg.seed, 0, len(train_set), cfg.batch_size)  # fails early if too few examples
    loader = _Prefetcher(train_set, collate, cfg, ddp)
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        desc="dose-train",
        disable=not (progress and ddp.main),
        dynamic_ncols=True,
    )
    model.train()
    t_window, ex_window, last_rate, last_loss = time.perf_counter(), 0, 0.0, math.nan
    start_step, t_written = step, time.perf_counter()
    while not stopped and step < cfg.max_steps:
        batch = loader.get(step, dev)
        lr = cfg.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _autocast(dev, precision):
            loss, full, onset, accuracy = net(*batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        ex_window += cfg.batch_size
        terms = (loss.detach(), full, onset, accuracy)
        window += torch.stack([*terms, torch.ones_like(terms[0])]).double()

        row: dict[str, Any] | None = None
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            sums = window.clone()
            if ddp.world > 1:
                dist.all_reduce(sums)
            sums = sums.cpu()
            mean = (sums[:4] / sums[4].clamp_min(1)).tolist()
            now = time.perf_counter()
            last_rate = ex_window / max(now - t_window, 1e-9)
            t_window, ex_window = now, 0
            last_loss = mean[0]
            names = ("train_loss", "full_loss", "onset_loss", "token_accuracy")
            row = {"step": step, "lr": _fmt(lr), "examples_per_s": _fmt(last_rate)}
            row |= {name: _fmt(value) for name, value in zip(names, mean, strict=True)}
            window.zero_()
            bar.set_postfix(loss=f"{mean[0]:.4f}", ex_s=f"{last_rate:.1f}")
        evaluated = False
        if has_valid and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            ev = evaluate(model, valid_set, cfg, dev, precision, collate, ddp)
            evaluated = True
            row = row or {"step": step, "lr": _fmt(lr)}
            row |= {"valid_loss": _fmt(ev["loss"]), "valid_full_loss": _fmt(ev["full"])}
            row |= {"valid_onset_loss": _fmt(ev["onset"]), "valid_accuracy": _fmt(ev["accuracy"])}
            if ev["loss"] < best_valid:
                best_valid, best_step, bad_evals = ev["loss"], step, 0
                checkpoint(best_path)
            else:
                bad_evals += 1
                stopped = bad_evals >= cfg.patience
        bar.update(1)
        interrupted = stop_after is not None and step - start_step >= stop_after
        save = evaluated or stopped or interrupted or step % cfg.save_every == 0
        save = save or step == cfg.max_steps
        if row is not None and ddp.main:
            rows.append({k: row.get(k, "") for k in METRIC_FIELDS})
        # metrics.csv is rewritten whole (atomically) with each checkpoint and at most every
        # 30 s in between; rows past last.ckpt's step are dropped on resume.
        if ddp.main and rows and (save or time.perf_counter() - t_written > 30.0):
            _write_metrics(metrics_path, rows)
            t_written = time.perf_counter()
        if save:
            checkpoint(last_path)
        if interrupted:
            break
    bar.close()
    loader.close()
    if math.isnan(last_loss) and rows:  # nothing trained in this call: report the last row
        last_loss = float(rows[-1]["train_loss"] or "nan")
    if not has_valid and ddp.main and step > 0:
        checkpoint(best_path)  # without validation, the best model is the last one
    if ddp.world > 1:
        dist.barrier()
    return TrainResult(
        step=step,
        best_valid=best_valid,
        best_step=best_step,
        last_train_loss=last_loss,
        examples_per_s=last_rate,
        stopped_early=stopped,
        out=out,
    )
