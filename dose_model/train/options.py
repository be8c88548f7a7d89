"""`TrainOptions`: what a `dose-train` run is asked to do, in one record.

`dose_model.cli.train` fills it once from argparse (`TrainOptions.from_args`);
`dose_model.train.pipeline.train_from_manifest` reads the data fields (manifest, drum, codec,
token cache) and hands the same record to `dose_model.train.loop.train`, which reads the run
fields (configs, out, device, precision, resume, ...).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dose_model.model.config import ModelConfig, TrainConfig, load_config


@dataclass(frozen=True)
class TrainOptions:
    """Options of one training run (the `dose-train` options).

    The run (`dose_model.train.loop.train`):
        out: run folder (``metrics.csv``, ``last.ckpt``, ``best.ckpt``; created).
        model_cfg, train_cfg: configurations (stored in the checkpoints); None = the
            defaults, or when resuming the stored ones (given ones must equal them).
        device: "auto", "cpu", "cuda", "cuda:1", ... (under torchrun: cuda:LOCAL_RANK).
        precision: "auto" (bf16 autocast on cuda, fp32 elsewhere), "bf16" or "fp32".
        resume: continue from ``out/last.ckpt``. Given configs (but ``max_steps``) and the
            data's identity must equal the stored ones. Without it, an ``out`` that already
            holds ``last.ckpt`` is refused.
        max_steps: override ``train_cfg.max_steps`` (also when resuming; the cosine schedule
            follows it, so an unchanged value is needed to reproduce an uninterrupted run).
        compile: run the training forward and loss through ``torch.compile``; None = on CUDA.
        progress: show a tqdm bar (rank 0).
        stop_after: end after this many updates as if interrupted (last.ckpt written); tests.

    The data (`dose_model.train.pipeline.train_from_manifest` only):
        manifest: RMOD dataset folder ``DIR`` or one of its ``DIR/manifests/*.jsonl`` files.
        drum: "kick", "snare" or "hihat".
        codec_weights: DAC weights file; needed only when the token cache must be made or
            completed.
        tokens: token cache folder; None = ``DIR/tokens-<sha256[:12] of the codec>``.
        overrides: `TrainConfig` fields set on top of ``train_cfg`` (or, resuming, the
            checkpoint's): ``--batch-size``, ``--seed``.
    """

    out: str | Path
    model_cfg: ModelConfig | None = None
    train_cfg: TrainConfig | None = None
    device: str = "auto"
    precision: str = "auto"
    resume: bool = False
    max_steps: int | None = None
    compile: bool | None = None
    progress: bool = True
    stop_after: int | None = None
    manifest: str | Path | None = None
    drum: str | None = None
    codec_weights: str | Path | None = None
    tokens: str | Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        """The options `dose-train`'s parsed arguments ask for: the ``--config`` file read
        (`ConfigError` naming it), ``--codec-weights`` defaulting (when no ``--tokens`` is
        given) to the reference package's cache file where it exists."""
        from dose_model.codec.dac_codec import default_weights_path  # loads torch

        model_cfg, train_cfg = load_config(args.config) if args.config else (None, None)
        overrides = {k: v for k, v in (("batch_size", args.batch_size), ("seed", args.seed))
                     if v is not None}  # fmt: skip
        weights = args.codec_weights or (None if args.tokens else default_weights_path())
        return cls(
            out=args.out,
            model_cfg=model_cfg,
            train_cfg=train_cfg,
            device=args.device,
            precision=args.precision,
            resume=args.resume,
            max_steps=args.max_steps,
            compile=args.compile,
            progress=not args.no_progress,
            manifest=args.manifest,
            drum=args.drum,
            codec_weights=weights,
            tokens=args.tokens,
            overrides=overrides,
        )
