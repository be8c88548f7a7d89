"""Where a training run starts: a fresh :class:`~dose_model.model.checkpoints.TrainState`, or
the one in ``last.ckpt`` when resuming, refused when the given settings or data differ
from what it recorded; the run's configuration; the checks of the training data's shapes;
torch's generator states, which the checkpoint carries for an exact resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dose_model.model.checkpoints import CheckpointError, TrainState, read_state
from dose_model.model.config import ModelConfig, TrainConfig
from dose_model.train.loader import TrainingError

if TYPE_CHECKING:
    from dose_model.train.batches import ExampleSet


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch's generator states (CPU, and ``device``'s on CUDA), as a checkpoint records them."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _differences(stored: dict, given: dict, prefix: str, ignore: tuple = ()) -> list[str]:
    keys = sorted((set(stored) | set(given)) - set(ignore))
    return [
        f"{prefix}.{k}: checkpoint {stored.get(k)!r}, now {given.get(k)!r}"
        for k in keys
        if stored.get(k) != given.get(k)
    ]


def initial_state(
    model_cfg: ModelConfig | None,
    train_cfg: TrainConfig | None,
    data: dict,
    last_path: Path,
    resume: bool,
) -> TrainState:
    """A fresh state, or with ``resume`` the one in ``last_path``, refused (TrainingError
    naming every difference) when the given configs or data differ from what it recorded."""
    if not resume:
        if last_path.is_file():
            raise TrainingError(
                f"{last_path.parent} already holds a run ({last_path.name}): pass --resume to "
                "continue it, or choose another --out"
            )
        model_cfg, train_cfg = model_cfg or ModelConfig(), train_cfg or TrainConfig()
        return TrainState(model_cfg.to_dict(), train_cfg.to_dict(), dict(data))
    if not last_path.is_file():
        raise TrainingError(f"--resume: {last_path} does not exist")
    state = read_state(last_path)
    try:
        stored_model = ModelConfig.from_dict(state.model_config).to_dict()
        TrainConfig.from_dict(state.train_config)
    except ValueError as err:
        raise CheckpointError(f"{last_path}: {err}") from None
    diffs = _differences(state.data, data, "data")
    if model_cfg is not None:
        diffs += _differences(stored_model, model_cfg.to_dict(), "model")
    if train_cfg is not None:
        ignore = ("max_steps",)
        diffs += _differences(state.train_config, train_cfg.to_dict(), "train", ignore)
    if diffs:
        raise TrainingError(
            f"--resume: {last_path} was trained with other settings ({'; '.join(diffs)}): "
            "resume with the same ones, or choose another --out"
        )
    return state


def run_config(state: TrainState, max_steps: int | None, world: int) -> TrainConfig:
    """The run's training configuration: the state's, with ``max_steps`` (when given)
    recorded in the state; its batch must split evenly over ``world`` ranks."""
    if max_steps is not None:
        state.train_config = TrainConfig.from_dict(
            {**state.train_config, "max_steps": max_steps}
        ).to_dict()
    cfg = TrainConfig.from_dict(state.train_config)
    if cfg.batch_size % world:
        raise TrainingError(f"batch_size {cfg.batch_size} must divide by {world} ranks")
    return cfg


def check_shapes(dataset: ExampleSet, cfg: ModelConfig) -> None:
    """Refuse (TrainingError) an empty training set or one whose token shapes ``cfg``
    cannot take."""
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
