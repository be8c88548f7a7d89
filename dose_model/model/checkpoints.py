"""Checkpoints: the published Lightning files and our own training checkpoints.

Published DOSE checkpoints are ``{"state_dict": {"inst_decoder.<name>": tensor, ...}, ...}``.
Besides the weights the model uses they hold parameters it never uses
(``positional_encoder.pe``, ``dac_projection_layer``, ``midi_embedding_layer``) and a causal
``attn.mask`` buffer per block; `load_published` checks that they are there and drops them.
Attention is stored as separate ``query``/``key``/``value`` projections, which we fuse into one
``qkv`` projection (rows q, k, v).

Our checkpoints (``last.ckpt``/``best.ckpt``) are a plain dict, loadable with
``torch.load(path, weights_only=True)``, whose layout is `TrainState` (one definition):
``{"format": "dose-train-v1", **TrainState.to_dict()}``. Models load through `load_any_model`;
a checkpoint without ``model_config``, with sizes past `dose_model.model.config.SIZE_LIMITS` or
with tensors of other shapes is refused with a `CheckpointError` naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from dose_model.errors import DoseError
from dose_model.fileio import load_weights_only
from dose_model.model.config import ConfigError, ModelConfig
from dose_model.model.transformer import DoseTransformer
from rmod_dose_common.fileio import atomic_write
from rmod_dose_common.records import plain_problem, to_plain

FORMAT = "dose-train-v1"
PREFIX = "inst_decoder."
UNUSED_PREFIXES = ("positional_encoder.", "dac_projection_layer.", "midi_embedding_layer.")
_ATTN_MASK = re.compile(r"blocks\.\d+\.attn\.mask")


class CheckpointError(DoseError, ValueError):
    """A checkpoint file is missing, unreadable or does not have the expected layout."""


def _read(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = load_weights_only(path, lambda reason: CheckpointError(f"{path}: {reason}"), mmap)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(data).__name__}")
    return data


def published_config_from_state(state: dict[str, torch.Tensor], num_heads: int) -> ModelConfig:
    """Infer the published architecture's sizes from an ``inst_decoder.*`` state dict."""
    try:
        vocab, d_model = state["audio_embedding_layer.0.weight"].shape
        n_out = state["fc.weight"].shape[0]
        d_ff = state["blocks.0.ff.0.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"missing key {PREFIX}{err.args[0]}") from err
    num_codebooks = sum(1 for k in state if k.startswith("audio_embedding_layer."))
    num_layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if n_out != num_codebooks * vocab:
        raise CheckpointError(f"fc has {n_out} outputs, expected {num_codebooks} x {vocab}")
    return ModelConfig.published_config(
        num_layers=num_layers,
        num_heads=num_heads,
        d_model=int(d_model),
        num_codebooks=num_codebooks,
        vocab_size=int(vocab),
        mlp_ratio=int(d_ff) // int(d_model),
        dropout=0.1,
    )


def convert_published_state(
    state: dict[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """Map published ``inst_decoder.*``-stripped keys to `DoseTransformer` keys.

    Unused published parameters and the ``attn.mask`` buffers are dropped; a missing unused
    parameter, or any key that is neither used nor one of those, is an error (the file is then
    not a published DOSE checkpoint of ``config``'s sizes).
    """
    for prefix in UNUSED_PREFIXES:
        if not any(k.startswith(prefix) for k in state):
            raise CheckpointError(f"missing {PREFIX}{prefix}* (not a published DOSE checkpoint?)")
    state = _ReadKeys(state)
    out: dict[str, torch.Tensor] = {}
    for k in range(config.num_codebooks):
        out[f"embeddings.{k}.weight"] = state[f"audio_embedding_layer.{k}.weight"]
    for i in range(config.num_layers):
        src, dst = f"blocks.{i}.", f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            for p in ("weight", "bias"):
                out[f"{dst}{ln}.{p}"] = state[f"{src}{ln}.{p}"]
        for p in ("weight", "bias"):
            out[f"{dst}attn.qkv.{p}"] = torch.cat(
                [state[f"{src}attn.{name}.{p}"] for name in ("query", "key", "value")], dim=0
            )
            out[f"{dst}attn.proj.{p}"] = state[f"{src}attn.proj.{p}"]
            out[f"{dst}fc1.{p}"] = state[f"{src}ff.0.{p}"]
            out[f"{dst}fc2.{p}"] = state[f"{src}ff.2.{p}"]
    for p in ("weight", "bias"):
        out[f"ln_f.{p}"] = state[f"ln.{p}"]
        out[f"head.{p}"] = state[f"fc.{p}"]
    unknown = sorted(
        k
        for k in set(state) - state.read
        if not k.startswith(UNUSED_PREFIXES) and not _ATTN_MASK.fullmatch(k)
    )
    if unknown:
        shown = ", ".join(PREFIX + k for k in unknown[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise CheckpointError(f"{len(unknown)} unexpected keys: {shown}{more}")
    return out


class _ReadKeys(dict):
    """A published state dict that records which keys were read (``read``); a missing key
    raises CheckpointError naming it."""

    def __init__(self, data: dict) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self:
            raise CheckpointError(f"missing key {PREFIX}{key}")
        self.read.add(key)
        return super().__getitem__(key)


def load_published(
    path: str | Path, num_heads: int = 16, device: str | torch.device = "cpu"
) -> DoseTransformer:
    """Load a published DOSE Lightning checkpoint as a published-mode model in eval mode.

    Args:
        path: ``.ckpt`` file holding ``{"state_dict": {"inst_decoder.…": tensor}}``.
        num_heads: attention heads (not recoverable from shapes; the released models use 16).
        device: where to put the model.

    Returns:
        `DoseTransformer` with ``config.published=True``; ``model(mixture, target[:, :-1])``
        gives ``[B, 353 + L - 1, 9, 1025]`` logits as the published code.
    """
    return _published_model(_read(path), path, num_heads, device)


def _published_model(
    data: dict[str, Any], path: str | Path, num_heads: int, device: str | torch.device
) -> DoseTransformer:
    raw = data.get("state_dict")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: no 'state_dict' mapping (not a Lightning checkpoint?)")
    state = {k[len(PREFIX) :]: v for k, v in raw.items() if k.startswith(PREFIX)}
    if not state:
        raise CheckpointError(f"{path}: no '{PREFIX}*' keys in state_dict")
    try:
        config = published_config_from_state(state, num_heads)
        converted = convert_published_state(state, config)
    except (CheckpointError, ConfigError, KeyError) as err:
        raise CheckpointError(f"{path}: {err}") from err
    model = DoseTransformer(config)
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as err:  # shapes that do not fit the sizes read from the file
        raise CheckpointError(f"{path}: {' '.join(str(err).split())}") from None
    return model.to(device).eval()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read one of our training checkpoints (weights_only) and check its format tag."""
    return _checked_format(_read(path), path)


@dataclass
class TrainState:
    """Everything `dose_model.train.loop.train` carries from one step to the next; ``to_dict()``
    (with the ``format`` tag) is the checkpoint file, field for field.

    Fields: ``model_config``/``train_config`` (`ModelConfig`/`TrainConfig` as dicts),
    ``data`` (what was trained on: ``drum``, ``token_cache`` identity, ``mixture_seconds``,
    ``mixture_frames``, ``target_frames``, ``sample_rate`` where known; see
    `dose_model.train.batches.TokenDataset.identity`), ``model`` and ``optimizer`` (state dicts),
    ``rng`` (``{"torch": uint8 tensor, "cuda": ... on a GPU}``), ``step`` (updates done),
    ``best_valid``/``best_step`` (lowest validation loss and its step, -1 = none yet),
    ``bad_evals`` (validations since the best), ``stopped`` (early stopping ended the run),
    ``window`` (sums of loss, full, onset, accuracy and a count since the last metrics row),
    ``world_size`` (data-parallel ranks).
    """

    model_config: dict[str, Any]
    train_config: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    best_valid: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped: bool = False
    window: list[float] = field(default_factory=lambda: [0.0] * 5)
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint dict (plain types and tensors: weights_only-safe)."""
        return {"format": FORMAT, **to_plain(self, deep=False)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | Path) -> TrainState:
        """Check the format tag, that every field is there with a value of its type and that
        ``window`` has its 5 sums; raises CheckpointError naming ``path`` and the field."""
        known = {f.name for f in fields(cls)}  # the format tag and older keys are not state
        fields_only = {k: v for k, v in _checked_format(data, path).items() if k in known}
        problem = plain_problem(cls, fields_only, f"{path}: checkpoint", require_all=True)
        if problem is None:
            problem = _state_problem(fields_only, f"{path}: checkpoint")
        if problem is not None:
            raise CheckpointError(f"{problem} (not resumable)")
        return cls(**fields_only)

    def save(self, path: str | Path) -> None:
        """Write the checkpoint atomically."""
        atomic_torch_save(self.to_dict(), path)


def _state_problem(state: dict[str, Any], where: str) -> str | None:
    """A value of a well-typed checkpoint that no training run writes (None if none)."""
    least = {"step": 0, "best_step": -1, "bad_evals": 0, "world_size": 1}
    for name, floor in least.items():
        if state[name] < floor:
            return f"{where}.{name} is {state[name]}, below {floor}"
    if len(state["window"]) != 5:
        return f"{where}.window has {len(state['window'])} sums, not 5"
    if state["best_step"] > state["step"]:
        return f"{where}.best_step {state['best_step']} is after step {state['step']}"
    return None


def read_state(path: str | Path, mmap: bool = False) -> TrainState:
    """Read a `dose-train` checkpoint as a `TrainState` (weights_only; with ``mmap`` its
    tensors are mapped, not read: for a caller that needs only its settings)."""
    return TrainState.from_dict(_read(path, mmap), path)


def _checked_format(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a dose-train checkpoint (format {data.get('format')!r})"
        )
    return data


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DoseTransformer:
    """Load the model of one of our checkpoints (``last.ckpt``/``best.ckpt``) in eval mode."""
    return _our_model(read_checkpoint(path), device, path)


def model_from_state(
    config: Any, state: Any, path: str | Path, model: DoseTransformer | None = None
) -> DoseTransformer:
    """A `DoseTransformer` of ``config`` (a `ModelConfig` dict) holding the weights ``state``;
    or ``model`` given, load ``state`` into it. Every failure is a CheckpointError naming
    ``path``: a missing or invalid config (sizes past the limits are refused before anything
    is allocated), missing or unexpected keys, tensors of other shapes."""
    if model is None:
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: no 'model_config' mapping in the checkpoint")
        try:
            model = DoseTransformer(ModelConfig.from_dict(config))
        except ConfigError as err:
            raise CheckpointError(f"{path}: {err}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no 'model' weights mapping in the checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        reason = " ".join(str(err).split())
        raise CheckpointError(f"{path}: weights do not fit model_config: {reason[:300]}") from None
    return model


def _our_model(
    data: dict[str, Any], device: str | torch.device, path: str | Path = "checkpoint"
) -> DoseTransformer:
    model = model_from_state(data.get("model_config"), data.get("model"), path)
    return model.to(device).eval()


def load_any_model(
    path: str | Path, num_heads: int = 16, device: str | torch.device = "cpu"
) -> DoseTransformer:
    """A `dose-train` checkpoint (``format`` tag) or a published DOSE Lightning checkpoint
    (``state_dict`` with ``inst_decoder.*`` keys, ``num_heads`` heads), in eval mode."""
    data = _read(path)
    if "format" in data:
        return _our_model(_checked_format(data, path), device, path)
    if "state_dict" in data:
        return _published_model(data, path, num_heads, device)
    raise CheckpointError(
        f"{path}: neither a dose-train checkpoint nor a published DOSE checkpoint "
        f"(top-level keys: {sorted(map(str, data))[:8]})"
    )
