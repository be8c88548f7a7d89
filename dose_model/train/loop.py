"""Training loop: AdamW, warmup + cosine, clipping, bf16 autocast on GPU, validation with early
stopping, exact resume, data-parallel under ``torchrun`` (DDP), a clean stop on SIGTERM/Ctrl-C.

Data order is a pure function of (seed, step): update ``step`` (0-based) uses epoch
``e = step // (n // B)`` and the global batch ``b = step % (n // B)`` of the permutation of the
``n`` training examples drawn from ``numpy.random.SeedSequence([seed, e])`` (the last partial
batch of each epoch is dropped). Under DDP with ``W`` ranks, rank ``r`` takes the ``r``-th
contiguous ``B / W`` share of each global batch, so W ranks compute the same update as one
process with the whole batch (the loss is a mean of per-example means; `dose_model.model.losses`).
`BatchLoader` draws each epoch's permutation once and builds the next batch in a background
thread (pinned memory on CUDA).

Files under ``out`` (rank 0 writes, each atomically):
``metrics.csv`` (one row per log or validation step, see `METRIC_FIELDS`), ``last.ckpt``
(every ``save_every`` steps, after each validation, on SIGTERM/Ctrl-C and at the end) and
``best.ckpt`` (the lowest validation loss); the checkpoint layout is
`dose_model.model.checkpoints.TrainState`.

The loop (`train`) reads as: get the batch, set the learning rate, one optimizer step
(`_optimize`), log (`MetricsLog`), validate (`_validate`), save (`_save`).
Where a run starts (fresh, or resumed with its settings checked) is `dose_model.train.state`.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from dose_model.device import resolve_device
from dose_model.model.checkpoints import TrainState, model_from_state
from dose_model.model.config import ModelConfig, TrainConfig
from dose_model.model.losses import LossOutput, dose_loss
from dose_model.model.transformer import DoseTransformer
from dose_model.train.batches import Batch
from dose_model.train.distributed import DistEnv, StopSignals, dist_env, join_process_group
from dose_model.train.loader import (
    BatchLoader,
    load_batch,
)
from dose_model.train.log import MetricsLog, fmt
from dose_model.train.options import TrainOptions
from dose_model.train.state import (
    check_shapes,
    initial_state,
    rng_state,
    run_config,
    set_rng_state,
)

if TYPE_CHECKING:
    from dose_model.train.batches import ExampleSet


@dataclass
class TrainResult:
    """Summary of a `train` call. ``interrupted`` names the signal (``SIGTERM``,
    ``SIGINT``) that ended it early, after ``last.ckpt`` was written; None otherwise."""

    step: int
    best_valid: float
    best_step: int
    last_train_loss: float
    examples_per_s: float
    stopped_early: bool
    out: Path
    interrupted: str | None = None


# ----------------------------------------------------------------------------- computation
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


def _autocast(device: torch.device, precision: str) -> torch.autocast:
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


@torch.no_grad()
def evaluate(
    model: DoseTransformer,
    dataset: ExampleSet,
    cfg: TrainConfig,
    device: torch.device,
    precision: str = "auto",
    collate: Callable | None = None,
    env: DistEnv | None = None,
) -> dict[str, float]:
    """Mean validation loss terms and token accuracy over (the first ``eval_max_batches``
    global batches of) ``dataset``, in order; ranks evaluate shares and sum."""
    env = env or DistEnv()
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
        share = np.array_split(idx, env.world)[env.rank]
        if len(share) == 0:
            continue
        batch = [x.to(device) for x in load_batch(dataset, share, collate)]
        with _autocast(device, precision):
            terms = step(*batch)  # loss, full, onset, accuracy
        k = len(share)
        sums += torch.stack([*(t.double() * k for t in terms), sums.new_tensor(float(k))])
    if env.world > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    count = max(sums[4].item(), 1.0)
    loss, full, onset, acc = (sums[:4] / count).tolist()
    return {"loss": loss, "full": full, "onset": onset, "accuracy": acc}


@dataclass
class _Run:
    """The live objects of one `train` call."""

    state: TrainState
    cfg: TrainConfig
    model: DoseTransformer
    optimizer: torch.optim.Optimizer
    net: nn.Module
    env: DistEnv
    device: torch.device
    precision: str
    out: Path


def _build(state: TrainState, env: DistEnv, dev: torch.device, compile: bool, **kw: Any) -> _Run:
    """Model, optimizer and the (DDP-wrapped, compiled) step, restored from ``state``."""
    cfg = TrainConfig.from_dict(state.train_config)
    torch.manual_seed(cfg.seed)
    model_cfg = ModelConfig.from_dict(state.model_config)
    model = DoseTransformer(model_cfg).to(dev)
    optimizer = make_optimizer(model, cfg, dev)
    if state.model:
        model_from_state(None, state.model, kw["out"] / "last.ckpt", model)
        optimizer.load_state_dict(state.optimizer)
        set_rng_state(state.rng, dev)
    # Different ranks must draw different dropout masks; rank 0 keeps the single-process stream.
    if env.rank:
        torch.manual_seed(cfg.seed * 1009 + env.rank + state.step)
    net: nn.Module = _TrainStep(model, cfg)
    if env.world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if compile:
        net = cast(nn.Module, torch.compile(net))  # an OptimizedModule
    return _Run(state, cfg, model, optimizer, net, env, dev, **kw)


def _optimize(run: _Run, batch: Batch, lr: float) -> torch.Tensor:
    """One update; returns the detached (loss, full, onset, accuracy) as one tensor."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with _autocast(run.device, run.precision):
        loss, full, onset, accuracy = run.net(*batch)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    return torch.stack([loss.detach(), full, onset, accuracy])


def _save(run: _Run, path: Path, window: torch.Tensor) -> None:
    """Write ``run.state`` (with the live weights, optimizer, RNG) to ``path`` (rank 0)."""
    if not run.env.main:
        return
    state = run.state
    state.model, state.optimizer = run.model.state_dict(), run.optimizer.state_dict()
    state.rng, state.window, state.world_size = (
        rng_state(run.device),
        window.tolist(),
        run.env.world,
    )
    state.save(path)


def _validate(
    run: _Run,
    valid_set: ExampleSet,
    collate: Callable | None,
    best_path: Path,
    window: torch.Tensor,
) -> dict[str, str]:
    """Evaluate, update best/early-stopping state, save ``best.ckpt`` on a new best; returns
    the metrics row's validation columns."""
    ev = evaluate(run.model, valid_set, run.cfg, run.device, run.precision, collate, run.env)
    state = run.state
    if ev["loss"] < state.best_valid:
        state.best_valid, state.best_step, state.bad_evals = ev["loss"], state.step, 0
        _save(run, best_path, window)
    else:
        state.bad_evals += 1
        state.stopped = state.bad_evals >= run.cfg.patience
    return {
        "valid_loss": fmt(ev["loss"]),
        "valid_full_loss": fmt(ev["full"]),
        "valid_onset_loss": fmt(ev["onset"]),
        "valid_accuracy": fmt(ev["accuracy"]),
    }


# ----------------------------------------------------------------------------- the loop
def train(
    train_set: ExampleSet,
    valid_set: ExampleSet | None,
    options: TrainOptions,
    collate: Callable | None = None,
) -> TrainResult:
    """Train a `DoseTransformer` and write ``metrics.csv``, ``last.ckpt``, ``best.ckpt``.

    Args:
        train_set, valid_set: indexable datasets of ``(mixture [M, K], target [L, K])`` long
            tensors (with a ``batch(indices)`` method, as `TokenDataset`, batches are read
            whole; an ``identity`` dict is recorded as the checkpoint's ``data``);
            ``valid_set`` may be None or empty (no validation, no early stopping).
        options: the run's fields of `TrainOptions` (out, configs, device, precision, resume,
            max_steps, compile, progress, stop_after); a resume whose given configs or data
            differ from the stored ones raises TrainingError naming each difference.
        collate: batch builder, ``list[(mixture, target)] -> (mixture, target, target_mask)``
            (None: the dataset's ``batch``, else `dose_model.train.batches.collate`).

    Returns:
        `TrainResult`; on SIGTERM or Ctrl-C, ``last.ckpt`` is written and ``interrupted``
        names the signal.
    """
    env = dist_env()
    join_process_group(env, options.device)
    dev = resolve_device(options.device, env.local_rank)
    out = Path(options.out)
    data = dict(getattr(train_set, "identity", {}) or {})
    state = initial_state(
        options.model_cfg, options.train_cfg, data, out / "last.ckpt", options.resume
    )
    cfg = run_config(state, options.max_steps, env.world)
    check_shapes(train_set, ModelConfig.from_dict(state.model_config))
    loader = BatchLoader(train_set, cfg, env, dev, collate)  # fails early if too few examples
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    compile = dev.type == "cuda" if options.compile is None else options.compile
    run = _build(state, env, dev, compile, precision=options.precision, out=out)
    try:
        return _loop(run, loader, valid_set, collate, options.progress, options.stop_after)
    finally:
        loader.close()


def _loop(
    run: _Run,
    loader: BatchLoader,
    valid_set: ExampleSet | None,
    collate: Callable | None,
    progress: bool,
    stop_after: int | None,
) -> TrainResult:
    state, cfg, env, out = run.state, run.cfg, run.env, run.out
    log = MetricsLog(out / "metrics.csv", state, env, run.device)
    has_valid = valid_set is not None and len(valid_set) > 0
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="dose-train",
               disable=not (progress and env.main), dynamic_ncols=True)  # fmt: skip
    start, interrupted = state.step, None
    run.model.train()
    with StopSignals() as stop:
        while not state.stopped and state.step < cfg.max_steps:
            batch = loader.get(state.step)
            lr = cfg.lr_at(state.step)
            terms = _optimize(run, batch, lr)
            state.step += 1
            log.add(terms, cfg.batch_size)
            logging = state.step % cfg.log_every == 0 or state.step == cfg.max_steps
            row = log.train_row(state.step, lr) if logging else None
            validating = has_valid and (
                state.step % cfg.eval_every == 0 or state.step == cfg.max_steps
            )
            if validating:
                assert valid_set is not None  # has_valid: valid_set is a non-empty set
                row = (row or {"step": state.step, "lr": fmt(lr)}) | _validate(
                    run, valid_set, collate, out / "best.ckpt", log.window
                )
            bar.update(1)
            if row is not None:
                bar.set_postfix(loss=f"{log.last_loss:.4f}", ex_s=f"{log.rate:.1f}")
            if stop.requested(env, run.device, logging) and stop.signum is not None:
                interrupted = signal.Signals(stop.signum).name
            ending = interrupted or (stop_after is not None and state.step - start >= stop_after)
            saving = validating or state.stopped or bool(ending) or state.step == cfg.max_steps
            saving = saving or state.step % cfg.save_every == 0
            log.append(row, saving)
            if saving:
                _save(run, out / "last.ckpt", log.window)
            if ending:
                break
    bar.close()
    if math.isnan(log.last_loss) and log.rows:  # nothing trained in this call: the last row
        log.last_loss = float(log.rows[-1]["train_loss"] or "nan")
    if not has_valid and state.step > 0:
        _save(run, out / "best.ckpt", log.window)  # without validation the best is the last
    if env.world > 1:
        dist.barrier()
    return TrainResult(
        step=state.step,
        best_valid=state.best_valid,
        best_step=state.best_step,
        last_train_loss=log.last_loss,
        examples_per_s=log.rate,
        stopped_early=state.stopped,
        out=out,
        interrupted=interrupted,
    )
