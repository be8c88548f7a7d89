"""What `dose-tokenize` is asked to do: `TokenizeOptions`, filled once from its arguments
(:meth:`TokenizeOptions.from_args`) or built by a caller such as `dose-train`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from dose_model.cache.ranks import TokenizeRank, rank_device, rank_from
from dose_model.codec.dac_codec import default_weights_path
from dose_model.errors import InputError
from dose_model.train.distributed import DistEnv, dist_env


@dataclass(frozen=True)
class TokenizeOptions:
    """What `tokenize_manifest` encodes, and how (the `dose-tokenize` options).

    ``manifest``: a ``.jsonl`` file or a dataset DIR (all its splits); ``codec_weights``:
    the DAC weights file; ``out``: the token cache folder. ``device``: where to encode.
    ``batch_size`` rows are encoded at once (their mixtures, then their 3 x batch_size
    one-shots); ``shard_size`` rows form a shard (the unit of resume). ``mixture_seconds``
    / ``oneshot_seconds`` None take the lengths of the first row's files (its documented
    ``frames`` / ``sample_rate``; the longest one-shot), else 4.0 s / 2.0 s (the paper).
    ``workers`` threads read audio ahead. ``tf32`` sets :attr:`DacCodec.tf32` (None:
    torch's setting; False: strict FP32 on CUDA, codes as on the CPU).

    ``rank`` of ``world_size``: this process encodes only the shards of ordinal ``g`` with
    ``g % world_size == rank`` and writes no index; ``merge``: encode nothing, check every
    shard and write the index (:mod:`dose_model.cache.ranks`; `part` is the three as a
    `TokenizeRank`, checked on construction). ``torchrun``: the ranks were started by
    torchrun, so `dose-tokenize` makes them wait for each other and rank 0 merge.
    """

    manifest: str | os.PathLike
    codec_weights: str | os.PathLike
    out: str | os.PathLike
    device: str = "cpu"
    batch_size: int = 8
    shard_size: int = 1024
    mixture_seconds: float | None = None
    oneshot_seconds: float | None = None
    workers: int = 4
    progress: bool = True
    tf32: bool | None = None
    rank: int = 0
    world_size: int = 1
    merge: bool = False
    torchrun: bool = False

    def __post_init__(self) -> None:
        """InputError for a rank outside ``0 .. world_size - 1`` or a merge among ranks."""
        TokenizeRank(self.rank, self.world_size, self.merge)

    @property
    def part(self) -> TokenizeRank:
        """``rank``, ``world_size`` and ``merge`` as this process's part of the run."""
        return TokenizeRank(self.rank, self.world_size, self.merge)

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: DistEnv | None = None) -> TokenizeOptions:
        """The options `dose-tokenize`'s parsed arguments ask for; ``--codec-weights``
        defaults to the reference package's cache file (InputError when there is none, or
        when the file named is not there: before any work). The part comes from ``--rank
        --world-size --merge`` or else from the torchrun environment ``env`` (default: this
        process's, :func:`dose_model.train.distributed.dist_env`), where a bare ``--device
        cuda`` becomes ``cuda:LOCAL_RANK``; a merge loads the codec on the CPU."""
        weights = args.codec_weights or default_weights_path()
        if weights is None:
            raise InputError(
                "no --codec-weights given and no cached DAC weights found "
                "(~/.cache/descript/dac/weights_44khz_8kbps_0.0.1.pth)"
            )
        if not os.path.isfile(weights):
            raise InputError(f"{weights}: DAC weights file not found")
        env = env if env is not None else dist_env()
        part, torchrun = rank_from(args, env)
        return cls(
            manifest=args.manifest,
            codec_weights=weights,
            out=args.out,
            device="cpu" if part.merge else rank_device(args.device, env),
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            mixture_seconds=args.mixture_seconds,
            oneshot_seconds=args.oneshot_seconds,
            workers=args.workers,
            progress=not args.no_progress,
            tf32=False if args.no_tf32 else None,
            rank=part.rank,
            world_size=part.world_size,
            merge=part.merge,
            torchrun=torchrun,
        )
