"""Model and training configuration: dataclasses, YAML loading and validation.

A config file is YAML with two optional sections, each a mapping of field names (an empty
section is the defaults; ``model: 0`` or ``train: []`` is refused)::

    model: {num_layers: 2, d_model: 64, ...}   # fields of ModelConfig
    train: {lr: 3.0e-4, batch_size: 8, ...}    # fields of TrainConfig

Unknown fields and values of the wrong type raise `ConfigError` naming the file and the field
path (``model.d_model``). Checkpoints store both sections as plain dicts (`to_dict`), so they
load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # typing.Self is Python 3.11+; the package supports 3.10
    from typing_extensions import Self

import yaml

from dose_model.errors import DoseError
from rmod_dose_common.records import check_plain, to_plain, type_problem

POSITION_KINDS = ("learned", "none")
SIZE_LIMITS = {
    "num_layers": 256,
    "num_heads": 1024,
    "d_model": 65536,
    "num_codebooks": 64,
    "vocab_size": 1 << 20,
    "mlp_ratio": 64,
    "mixture_len": 1 << 16,
    "max_target_len": 1 << 16,
}
"""Largest value of each `ModelConfig` size field: a config or checkpoint asking for more is
refused before anything is allocated (``num_layers: 10**8`` would allocate until the machine
runs out of memory)."""
MAX_PARAMETERS = 20_000_000_000
"""Largest parameter count a `ModelConfig` may describe (20 G, 80 GB of fp32 weights)."""


class ConfigError(DoseError, ValueError):
    """A config file or dict has an unknown field or an invalid value."""


class _Section:
    """A config section: its plain dict and back through `rmod_dose_common.records`."""

    SECTION: ClassVar[str]  # the section's name in a config file, and in error messages

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML/weights_only-safe)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> Self:
        """Build from a dict, rejecting unknown fields and wrong types (`ConfigError` naming
        ``where.field``, ``where`` defaulting to the section); absent fields keep their
        defaults."""
        return check_plain(cls, data, where or cls.SECTION, ConfigError)


@dataclass(frozen=True)
class ModelConfig(_Section):
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
    num_codebooks: int = 9  # DAC 44 kHz codebooks
    vocab_size: int = 1025  # 1024 codes (stored + 1) and token 0 (start / end / pad)
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * d_model
    dropout: float = 0.1  # on embeddings, attention output and MLP output
    mixture_len: int = 353  # mixture positions (345 frames + 8 delay rows)
    max_target_len: int = 183  # longest target sequence (173 frames + 10)
    published: bool = False  # compute as the published code (quirks included)
    positions: str = "learned"  # "learned" absolute positions or "none"

    SECTION: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        _check_types(self, self.SECTION)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and value < 1:
                raise ConfigError(f"model.{f.name} must be >= 1, got {value}")
            limit = SIZE_LIMITS.get(f.name)
            if limit is not None and value > limit:
                raise ConfigError(f"model.{f.name} is {value}, above the limit {limit}")
        if self.parameter_estimate() > MAX_PARAMETERS:
            raise ConfigError(
                f"model sizes describe ~{self.parameter_estimate():.3g} parameters, above the "
                f"limit {MAX_PARAMETERS:.3g} (model.num_layers x model.d_model^2)"
            )
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

    def parameter_estimate(self) -> int:
        """Parameters of the network these sizes describe (weights and biases, approximately:
        the published mode's extra embedding is not counted)."""
        d, hidden = self.d_model, self.mlp_ratio * self.d_model
        block = 4 * d * d + 2 * d * hidden + 9 * d + hidden
        table = self.num_codebooks * self.vocab_size * d
        positions = (self.mixture_len + self.max_target_len) * d
        return self.num_layers * block + 2 * table + positions

    @property
    def max_len(self) -> int:
        """Longest input sequence (mixture + target) the position table covers."""
        return self.mixture_len + self.max_target_len

    @classmethod
    def published_config(cls, **overrides: Any) -> ModelConfig:
        """The published architecture (quirks included); sizes overridable."""
        return cls(**{"published": True, "positions": "none", **overrides})


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Optimisation, data and bookkeeping settings of `dose_model.train.loop.train`.

    Steps count optimizer updates of one global batch (``batch_size`` examples, split over the
    data-parallel ranks). The learning rate warms up linearly for ``warmup_steps`` and then
    follows a cosine down to ``lr * min_lr_ratio`` at ``max_steps``.
    """

    lr: float = 3.0e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW decay on weight matrices and embeddings only
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 1000  # linear warmup from lr / warmup_steps to lr
    max_steps: int = 100_000  # updates; the cosine reaches lr * min_lr_ratio here
    min_lr_ratio: float = 0.1
    batch_size: int = 16  # global batch (examples per update, over all ranks)
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    full_weight: float = 1.0  # weight of the full-length cross-entropy
    onset_weight: float = 1.0  # weight of the onset cross-entropy; 0 = ablation
    onset_positions: int = 10  # target rows j < this form the onset window (K + 1)
    mask_padding: bool = True  # score no padding rows (the published code scores them)
    target_frames: int | None = 173  # one-shot frames kept (2 s); None = all cached
    eval_every: int = 1000  # validate every N updates (and at max_steps)
    eval_max_batches: int | None = None  # validation batches per evaluation; None = all
    patience: int = 10  # stop after this many evaluations without a new best
    log_every: int = 10  # metrics.csv row every N updates
    save_every: int = 1000  # last.ckpt every N updates (also after each validation)
    seed: int = 0  # model init, data order, dropout

    SECTION: ClassVar[str] = "train"

    def __post_init__(self) -> None:
        _check_types(self, self.SECTION)
        positive = ("lr", "max_steps", "batch_size", "eval_every", "log_every", "save_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "full_weight", "onset_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.onset_positions < 0:
            raise ConfigError(f"train.onset_positions must be >= 0, got {self.onset_positions}")
        for name in ("target_frames", "eval_max_batches"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be >= 1 or null, got {value}")
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
    except (OSError, yaml.YAMLError, ValueError) as err:  # ValueError: not UTF-8, or an
        # integer too long to parse
        raise ConfigError(f"{path}: cannot read config: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with 'model' and/or 'train'")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; expected 'model' and 'train'")
    try:  # an absent or empty (null) section is the defaults; any other non-mapping is refused
        model = ModelConfig.from_dict({} if data.get("model") is None else data["model"])
        train = TrainConfig.from_dict({} if data.get("train") is None else data["train"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return model, train


def _check_types(record: Any, where: str) -> None:
    """ConfigError naming the first field whose value does not fit its type (ints are
    accepted where floats are expected; bools are not ints)."""
    problem = type_problem(type(record), to_plain(record, deep=False), where)
    if problem is not None:
        raise ConfigError(problem)
