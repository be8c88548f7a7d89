"""`dose-train` end to end: make sure a token cache exists, then train one drum class on it.

The command-line entry point (`dose_model.cli.train`) only parses arguments and calls
`train_from_manifest`; the training loop itself is `dose_model.train.loop.train`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from dose_model import DRUMS
from dose_model.cache.index import CacheError, read_index
from dose_model.cache.options import TokenizeOptions
from dose_model.cache.tokenize import tokenize_manifest
from dose_model.dataset.manifest import ManifestError, find_manifests, manifest_sha256
from dose_model.device import resolve_device
from dose_model.model.checkpoints import CheckpointError, read_state
from dose_model.model.config import ConfigError, TrainConfig
from dose_model.train.batches import TokenDataset
from dose_model.train.distributed import dist_env
from dose_model.train.loader import TrainingError
from dose_model.train.loop import TrainResult, train
from dose_model.train.options import TrainOptions
from rmod_dose_common.fileio import sha256_file


def dataset_root(manifest: str | Path) -> Path:
    """The RMOD dataset folder ``DIR`` of ``manifest`` (``DIR`` itself or a
    ``DIR/manifests/*.jsonl`` file); raises ManifestError naming a path that does not exist."""
    manifest = Path(manifest)
    if not manifest.exists():
        raise ManifestError(manifest, "no such manifest file or dataset folder")
    return manifest if manifest.is_dir() else manifest.parent.parent


def _weights_sha256(codec_weights: str | Path) -> str:
    if not Path(codec_weights).is_file():
        raise TrainingError(f"{codec_weights}: DAC weights file not found")
    return sha256_file(codec_weights)


def default_token_dir(manifest: str | Path, codec_sha256: str) -> Path:
    """Where `train_from_manifest` keeps the token cache when none is given: beside the
    dataset, ``DIR/tokens-<first 12 hex of the codec weights' SHA-256>`` (``DIR`` = the
    dataset folder, or the grandparent of a ``DIR/manifests/*.jsonl`` file). One cache serves
    all three drum classes and every run on that dataset with that codec."""
    return dataset_root(manifest) / f"tokens-{codec_sha256[:12]}"


def check_cache_matches(
    tokens: Path, index: dict, root: Path, codec_weights: str | Path | None, codec_sha256: str
) -> None:
    """Raise TrainingError when the complete cache ``tokens`` was not made from this
    dataset's current manifests (every split it holds) or, when ``codec_weights`` is given,
    with that codec (``codec_sha256``, its hash): a cache is reused only for the data and
    codec it was made from."""
    config = index.get("config", {})
    if codec_weights is not None:
        made_with = config.get("codec", {}).get("sha256")
        if made_with != codec_sha256:
            raise TrainingError(
                f"{tokens} was tokenized with another DAC codec (sha256 {str(made_with)[:12]}), "
                f"not {codec_weights}: give another --tokens or delete that folder"
            )
    found = find_manifests(root)
    for split, recorded in config.get("manifests", {}).items():
        if split not in found or manifest_sha256(found[split]) != recorded.get("sha256"):
            raise TrainingError(
                f"{tokens} was tokenized from other {split} data than {root}/manifests "
                "(changed, rebuilt or missing since): give another --tokens or delete that folder"
            )


def _read_cache_index(tokdir: Path) -> dict:
    """The cache's index.json, or {} when there is none or it cannot be read."""
    try:
        return read_index(tokdir) if (tokdir / "index.json").is_file() else {}
    except Exception:  # noqa: BLE001 - an unreadable index means "not usable as is"
        return {}


def _ensure_cache(
    options: TrainOptions, dev: torch.device, log: Callable[[str], None]
) -> tuple[Path, dict]:
    """The token cache folder and its index: a complete cache of this dataset (and codec),
    or one made or completed now with `tokenize_manifest`."""
    manifest, tokens, codec_weights = options.manifest, options.tokens, options.codec_weights
    if manifest is None:
        raise TrainingError("give --manifest: the RMOD dataset to train on")
    env = dist_env()
    root = dataset_root(manifest)  # a wrong path is named first
    if tokens is None and codec_weights is None:
        raise TrainingError("give --tokens TOKDIR or --codec-weights W to tokenize the dataset")
    codec_sha256 = _weights_sha256(codec_weights) if codec_weights is not None else ""
    tokens = Path(tokens or default_token_dir(manifest, codec_sha256))
    index = _read_cache_index(tokens)
    if index.get("complete"):
        check_cache_matches(tokens, index, root, codec_weights, codec_sha256)
        if env.main:
            log(f"using token cache {tokens}")
        return tokens, index
    if codec_weights is None:
        raise TrainingError(f"{tokens} is not a complete token cache: give --codec-weights")
    if env.world > 1:
        raise TrainingError(f"{tokens}: tokenize first (dose-tokenize) before a torchrun launch")
    summary = tokenize_manifest(
        TokenizeOptions(root, codec_weights, tokens, device=str(dev), progress=options.progress)
    )
    if env.main:
        log(str(summary))
    return tokens, read_index(tokens)


def _with_overrides(
    train_cfg: TrainConfig | None, overrides: dict | None, last: Path, resume: bool
) -> TrainConfig | None:
    """``train_cfg`` (or, resuming without one, the checkpoint's) with ``overrides`` set;
    None when neither is given (train then uses the defaults or the stored config)."""
    if not overrides:
        if train_cfg is None and resume and last.is_file():
            return _stored_train_config(last)
        return train_cfg
    base = train_cfg
    if base is None and resume and last.is_file():
        base = _stored_train_config(last)
    return replace(base or TrainConfig(), **overrides)


def _stored_train_config(last: Path) -> TrainConfig:
    stored = read_state(last, mmap=True).train_config  # the settings only: weights not read
    try:
        return TrainConfig.from_dict(stored)
    except ConfigError as err:
        raise CheckpointError(f"{last}: {err}") from None


def _datasets(
    tokens: Path, index: dict, drum: str, frames: int | None
) -> tuple[TokenDataset, TokenDataset | None]:
    """The drum's training set and, when the cache has that split, its validation set;
    targets ``frames`` long. A cache that cannot serve them raises CacheError or
    TrainingError."""
    splits = ("train", "valid") if "valid" in index["splits"] else ("train",)
    try:
        sets = [TokenDataset(tokens, s, drum, frames) for s in splits]
    except CacheError:
        raise
    except ValueError as err:
        raise TrainingError(f"{err} (train.target_frames is {frames})") from err
    return sets[0], (sets[1] if len(sets) > 1 else None)


def train_from_manifest(options: TrainOptions, log: Callable[[str], None] = print) -> TrainResult:
    """`dose-train`: make sure a token cache exists, then `train` one drum class on it.

    ``options.manifest`` is an RMOD dataset folder ``DIR`` or one of its
    ``DIR/manifests/*.jsonl`` files (the whole dataset is tokenized: training needs train
    and valid). ``options.tokens`` (default `default_token_dir`) is used when it is a
    complete cache made from the dataset's current manifests (and with
    ``options.codec_weights``, when given; see `check_cache_matches`); otherwise it is
    created or completed with `dose_model.cache.tokenize.tokenize_manifest`. The configs
    are ``options.train_cfg`` (or, resuming, the checkpoint's) with ``options.overrides``
    set; the rest of ``options`` goes to `train`. ``log`` takes one-line notes (rank 0).
    """
    if options.drum not in DRUMS:
        raise TrainingError(f"--drum must be one of {', '.join(DRUMS)}, got {options.drum!r}")
    dev = resolve_device(options.device, dist_env().local_rank)  # fails early
    tokens, index = _ensure_cache(options, dev, log)
    last = Path(options.out) / "last.ckpt"
    train_cfg = _with_overrides(options.train_cfg, dict(options.overrides), last, options.resume)
    frames = (train_cfg or TrainConfig()).target_frames
    train_set, valid_set = _datasets(tokens, index, options.drum, frames)
    try:
        return train(train_set, valid_set, replace(options, train_cfg=train_cfg))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
