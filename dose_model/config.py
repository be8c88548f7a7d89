"""Model and training configuration: dataclasses, YAML loading and validation.

A config file is YAML with two optional sections, each a mapping of field names::

    model: {num_layers: 2, d_model: 64, ...}   # fields of ModelConfig
    train: {lr: 3.0e-4, batch_size: 8, ...}    # fields of TrainConfig

Unknown fields and values of the wrong type raise `ConfigError` naming the file and the field
path (``model.d_model``). Checkpoints store both sections as plain dicts (`to_dict`), so they
load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

POSITION_KINDS = ("learned", "none")


class ConfigError(ValueError):
    """A config file or dict has an unknown field or an invalid value."""


@dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer over ``[mixture tokens ; target tokens]``.

    Defaults are the published DOSE sizes (10 layers, 16 heads, d_model 1024, 9 DAC codebooks of
    1024 codes + the reserved 0 token). ``published=True`` reproduces the published code's
    computation (codebook 0 embedded twice, no position information, logits at every position);
    ``published=False`` is our default (each codebook once, learned positions, logits only at the
    positions that predict target tokens).
    """

    num_layers: int = 10
    num_heads: int = 16
    d_model: int = 1024
    num_codebooks: int = 9
    vocab_size: int = 1025
    mlp_ratio: int = 4
    dropout: float = 0.1
    mixture_len: int = 353
    max_target_len: int = 183
    published: bool = False
    positions: str = "learned"

    def __post_init__(self) -> None:
        _validate(self, "model")
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})"
            )
        if self.positions not in POSITION_KINDS:
            raise ConfigError(
                f"model.positions must be one of {POSITION_KINDS}, got {self.positions!r}"
            )
        if self.published and self.positions != "none":
            raise ConfigError(
                "model.published=true computes without positions: set model.positions: none"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def max_len(self) -> int:
        """Longest input sequence (mixture + target) the position table covers."""
        return self.mixture_len + self.max_target_len

    @classmethod
    def published_config(cls, **overrides: Any) -> ModelConfig:
        """The published architecture (quirks included); sizes overridable."""
        return cls(**{"published": True, "positions": "none", **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML/weights_only-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model") -> ModelConfig:
        """Build from a dict, rejecting unknown fields (error names ``where.field``)."""
        return cls(**_checked_fields(cls, data, where))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data and bookkeeping settings of `dose_model.train.train`.

    Steps count optimizer updates of one global batch (``batch_size`` examples, split over the
    data-parallel ranks). The learning rate warms up linearly for ``warmup_steps`` and then
    follows a cosine down to ``lr * min_lr_ratio`` at ``max_steps``.
    """

    lr: float = 3.0e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 1000
    max_steps: int = 100_000
    min_lr_ratio: float = 0.1
    batch_size: int = 16
    grad_clip: float = 1.0
    full_weight: float = 1.0
    onset_weight: float = 1.0
    onset_positions: int = 10
    mask_padding: bool = True
    target_frames: int | None = 173
    eval_every: int = 1000
    eval_max_batches: int | None = None
    patience: int = 10
    log_every: int = 10
    save_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self, "train")
        positive = ("lr", "max_steps", "batch_size", "eval_every", "log_every", "save_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "full_weight", "onset_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.patience < 1:
            raise ConfigError(f"train.patience must be >= 1, got {self.patience}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer update number ``step`` (0-based): warmup then cosine."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML/weights_only-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train") -> TrainConfig:
        """Build from a dict, rejecting unknown fields (error names ``where.field``)."""
        return cls(**_checked_fields(cls, data, where))


def load_config(path: str | Path | None) -> tuple[ModelConfig, TrainConfig]:
    """Read a YAML config (sections ``model`` and ``train``); None gives the defaults.

    Raises:
        ConfigError: the file is unreadable, not a mapping, or has an unknown/invalid field;
            the message starts with the file path.
    """
    if path is None:
        return ModelConfig(), TrainConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with 'model' and/or 'train'")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; expected 'model' and 'train'")
    try:
        model = ModelConfig.from_dict(data.get("model") or {})
        train = TrainConfig.from_dict(data.get("train") or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return model, train


def _checked_fields(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(f'{where}.{u}' for u in unknown)}")
    return dict(data)


def _validate(obj: Any, where: str) -> None:
    """Type-check dataclass fields (ints accepted where floats are expected; bools are not ints)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        optional = kind.endswith("| None")
        base = kind.replace("| None", "").strip()
        if value is None and optional:
            continue
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(base, True)
        if not ok:
            raise ConfigError(f"{where}.{f.name} must be {kind}, got {value!r}")
