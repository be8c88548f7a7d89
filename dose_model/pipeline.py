"""`dose-train` end to end: make sure a token cache exists, then train one drum class on it.

The command-line entry point (`dose_model.cli.train`) only parses arguments and calls
`train_from_manifest`; the training loop itself is `dose_model.train.train`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from dose_model import DRUMS
from dose_model.checkpoints import read_checkpoint
from dose_model.codec import sha256_file
from dose_model.config import ModelConfig, TrainConfig
from dose_model.data import TokenDataset
from dose_model.data import collate as default_collate
from dose_model.tokenize import read_index, tokenize_manifest
from dose_model.train import TrainingError, TrainResult, resolve_device, train


def default_token_dir(manifest: str | Path, codec_weights: str | Path) -> Path:
    """Where `train_from_manifest` keeps the token cache when none is given: beside the
    dataset, ``DIR/tokens-<first 12 hex of the codec weights' SHA-256>`` (``DIR`` = the
    dataset folder, or the grandparent of a ``DIR/manifests/*.jsonl`` file). One cache serves
    all three drum classes and every run on that dataset with that codec."""
    manifest = Path(manifest)
    root = manifest if manifest.is_dir() else manifest.parent.parent
    return root / f"tokens-{sha256_file(codec_weights)[:12]}"


def _read_cache_index(tokdir: Path) -> dict:
    """The cache's index.json, or {} when there is none or it cannot be read."""
    try:
        return read_index(tokdir) if (tokdir / "index.json").is_file() else {}
    except Exception:  # noqa: BLE001 - an unreadable index means "not usable as is"
        return {}


def train_from_manifest(
    manifest: str | Path,
    drum: str,
    out: str | Path,
    codec_weights: str | Path | None = None,
    tokens: str | Path | None = None,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    device: str = "auto",
    precision: str = "auto",
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    compile: bool = False,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """`dose-train`: make sure a token cache exists, then `train` one drum class on it.

    Args:
        manifest: RMOD dataset folder ``DIR`` or one of its ``DIR/manifests/*.jsonl`` files
            (the whole dataset is tokenized: training needs train and valid).
        drum: "kick", "snare" or "hihat".
        out: run folder.
        codec_weights: DAC weights file; needed only when the token cache must be (completed).
        tokens: token cache folder; default `default_token_dir`. A complete cache is used as
            is; otherwise it is created or completed with `dose_model.tokenize.tokenize_manifest`.
        model_cfg, train_cfg: configurations (default: `ModelConfig()`, `TrainConfig()`).
        device, precision, resume, max_steps, progress, compile: see `train`.
        log: where one-line notes go (rank 0 only).
    """
    if drum not in DRUMS:
        raise TrainingError(f"--drum must be one of {', '.join(DRUMS)}, got {drum!r}")
    model_cfg, train_cfg = model_cfg or ModelConfig(), train_cfg or TrainConfig()
    main = int(os.environ.get("RANK", "0")) == 0
    if tokens is None:
        if codec_weights is None:
            raise TrainingError("give --tokens TOKDIR or --codec-weights W to tokenize the dataset")
        tokens = default_token_dir(manifest, codec_weights)
    tokens = Path(tokens)
    if not _read_cache_index(tokens).get("complete"):
        if codec_weights is None:
            raise TrainingError(f"{tokens} is not a complete token cache: give --codec-weights")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise TrainingError(
                f"{tokens}: tokenize first (dose-tokenize) before a torchrun launch"
            )
        root = Path(manifest)
        root = root if root.is_dir() else root.parent.parent
        dev = resolve_device(device)
        summary = tokenize_manifest(root, codec_weights, tokens, device=str(dev), progress=progress)
        if main:
            log(str(summary))
    elif main:
        log(f"using token cache {tokens}")
    resume_cfg = None
    if resume and (Path(out) / "last.ckpt").is_file():
        resume_cfg = TrainConfig.from_dict(read_checkpoint(Path(out) / "last.ckpt")["train_config"])
    frames = (resume_cfg or train_cfg).target_frames
    splits = ("train", "valid") if "valid" in _read_cache_index(tokens)["splits"] else ("train",)
    try:
        sets = [TokenDataset(tokens, s, drum, frames) for s in splits]
    except ValueError as err:
        raise TrainingError(f"{err} (train.target_frames is {frames})") from err
    train_set, valid_set = sets[0], (sets[1] if len(sets) > 1 else None)
    try:
        return train(
            model_cfg,
            train_cfg,
            train_set,
            valid_set,
            out,
            device=device,
            precision=precision,
            resume=resume,
            collate=default_collate,
            progress=progress,
            max_steps=max_steps,
            compile=compile,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
