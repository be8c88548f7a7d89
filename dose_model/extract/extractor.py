"""One-shot extraction from mixture clips: the inference half of DOSE.

For a batch of clips (from one song or many)::

    4 s mono clips [B, samples] --DacCodec.encode--> codes [B, 9, 345]
      --mixture_sequence--> tokens [B, 353, 9] --StaticDecoder (one per drum, K samples per
      clip)--> target tokens + confidence --revert_target--> codes [9, F] --DacCodec.decode-->
      one-shot audio [F * hop]

Confidence score: a candidate's mean token log-probability under its model (natural log, over
the 9 tokens of every generated row, end row included; `dose_model.model.decode`). Higher is more
confident; 0 would be certainty. Candidates of one drum are ranked by it.

Models come from our checkpoints (``dose-train``'s ``best.ckpt``) or from the published
Lightning checkpoints; `dose_model.model.checkpoints.load_any_model` tells them apart. Songs, clip
choice and files are `dose_model.extract.songs`.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dose_model import DRUMS
from dose_model.codec.dac_codec import DacCodec
from dose_model.codec.tokens import mixture_sequence, revert_target, target_lengths
from dose_model.device import resolve_device
from dose_model.errors import DoseError
from dose_model.extract.shaping import DEFAULT_FINISH, Finish
from dose_model.model.checkpoints import load_any_model
from dose_model.model.config import ModelConfig
from dose_model.model.decode import StaticDecoder
from dose_model.model.generate import Generation
from dose_model.model.transformer import DoseTransformer

WINDOW_S = 4.0
"""Length of the mixture clip the models were trained on (RMOD mixtures)."""
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


class ExtractError(DoseError, ValueError):
    """A song or a model cannot be used; the message names the file."""


def oneshot_frames(config: ModelConfig) -> int:
    """Frames of the longest one-shot a model was trained to produce: its target sequence
    less the start row, the end row and the 8 delay rows (``max_target_len - 10``; 173
    frames = 2 s at the published sizes). Extraction and evaluation cut one-shots to it."""
    return config.max_target_len - 2 - (config.num_codebooks - 1)


@dataclass
class OneShot:
    """One extracted one-shot: mono float32 ``audio`` at ``sample_rate`` (as decoded), the
    ``frames`` of codes it was decoded from, whether the model ended it (``ended``) or it ran
    into the length limit, its confidence ``score`` (mean token log-probability) and which
    ``candidate`` (0..K-1) of its clip it is."""

    drum: str
    audio: np.ndarray
    sample_rate: int
    frames: int
    ended: bool
    score: float = 0.0
    candidate: int = 0


def mixture_positions(codec: DacCodec) -> int:
    """Mixture token positions a ``WINDOW_S`` clip gives with ``codec`` (353 for the 44 kHz
    DAC: 345 frames + 8 delay rows)."""
    return codec.frames(int(round(WINDOW_S * codec.sample_rate))) + codec.n_codebooks - 1


def check_model_fits(model: DoseTransformer, codec: DacCodec, source: str) -> None:
    """Raise `ExtractError` naming ``source`` (the checkpoint) unless the model takes the
    mixture that a ``WINDOW_S`` clip gives with ``codec``."""
    want, have = model.config.mixture_len, mixture_positions(codec)
    if want != have:
        raise ExtractError(
            f"{source}: the model takes {want} mixture positions, but a {WINDOW_S:g} s clip "
            f"gives {have} with this codec (hop {codec.hop_length}, {codec.n_codebooks} "
            "codebooks)"
        )


def element_seed(seed: int, key: str, drum: str, candidate: int = 0) -> int:
    """Seed of one sample: a function of (seed, clip key, drum, candidate) only, so a clip's
    one-shots do not depend on which other clips share its batch."""
    digest = hashlib.sha256(f"{seed}:{key}:{drum}:{candidate}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def load_codec_and_models(
    checkpoints: Mapping[str, str | Path],
    codec_weights: str | Path,
    num_heads: int = 16,
    device: str | torch.device = "auto",
) -> tuple[DacCodec, dict[str, DoseTransformer]]:
    """Load the codec and one model per drum (``checkpoints``: drum -> path) onto ``device``
    ("auto": cuda when available). Raises CheckpointError, CodecLoadError, ExtractError,
    ValueError or OSError naming the file or device."""
    dev = resolve_device(device)
    codec = DacCodec.load(codec_weights, device=dev)
    models = {}
    for drum, path in checkpoints.items():
        models[drum] = load_any_model(path, num_heads, dev)
        check_model_fits(models[drum], codec, str(path))
    return codec, models


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen: ``strategy`` "greedy" or "top-p" (``top_p``, ``temperature``),
    the ``seed`` of top-p, and ``candidates`` samples per clip and drum (top-p only when > 1).
    """

    strategy: str = "greedy"
    top_p: float = 0.9
    temperature: float = 1.0
    seed: int = 0
    candidates: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in ("greedy", "top-p"):
            raise ValueError(f"strategy must be 'greedy' or 'top-p', got {self.strategy!r}")
        if not 0 < self.temperature < float("inf") or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be finite and > 0, top_p in (0, 1]")
        if self.candidates < 1:
            raise ValueError("candidates must be >= 1")
        if self.candidates > 1 and self.strategy == "greedy":
            raise ValueError("several candidates need top-p sampling (greedy gives one)")


GREEDY = Sampling()
"""The default: greedy tokens, one candidate."""


@dataclass(frozen=True)
class ExtractOptions:
    """What `dose-extract` is asked to do, in one record (`dose-eval` uses its model fields).

    The models (:func:`load_extractor`): ``checkpoints`` (drum -> a ``dose-train`` checkpoint
    or a published DOSE ``.ckpt``), ``codec_weights`` (the DAC weights the models' tokens
    were made with), ``heads`` (attention heads of published checkpoints, which do not store
    it), ``device`` ("auto": cuda when available), ``precision`` ("auto": bf16 on cuda, fp32
    on the CPU), ``batch_size`` (clips x candidates generated together; None: 64 on cuda, 8
    on the CPU), ``concurrent`` (the drums of a batch at the same time; None: on cuda only).
    The tokens: ``sampling``. The songs (`dose_model.extract.songs.extract_songs`):
    ``windows`` (4 s clips per song, the most active), ``start_s`` (the one clip's start in
    seconds instead), ``normalize_input`` (clips to the training mixtures' peak), ``finish``
    (trim, fade and level of each one-shot).
    """

    checkpoints: Mapping[str, str | Path]
    codec_weights: str | Path
    heads: int = 16
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    concurrent: bool | None = None
    sampling: Sampling = GREEDY
    windows: int = 1
    start_s: float | None = None
    normalize_input: bool = True
    finish: Finish = DEFAULT_FINISH

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExtractOptions:
        """The options parsed arguments ask for: the model options `dose-extract` and
        `dose-eval` share, and `dose-extract`'s song options where the namespace has them
        (else their defaults)."""
        songs = {}
        if hasattr(args, "windows"):  # dose-extract
            finish = Finish(
                trim_db=None if args.no_trim else args.trim_db,
                fade_ms=None if args.no_fade or args.fade_ms == 0 else args.fade_ms,
                peak_db=None if args.no_normalize else args.peak_db,
            )
            songs = {
                "windows": args.windows,
                "start_s": args.start,
                "normalize_input": not args.no_input_normalize,
                "finish": finish,
            }
        return cls(
            checkpoints={d: getattr(args, d) for d in DRUMS if getattr(args, d)},
            codec_weights=args.codec_weights,
            heads=args.heads,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
            concurrent={"auto": None, "on": True, "off": False}[args.concurrent_drums],
            sampling=Sampling(
                args.strategy, args.top_p, args.temperature, args.seed, args.candidates
            ),
            **songs,
        )


def _on_own_stream(fn: Callable[[str], Generation], arg: str, device: torch.device) -> Generation:
    """``fn(arg)`` in a worker thread; on CUDA on a fresh stream that first waits for the
    default stream's work, and that the default stream then waits for."""
    if device.type != "cuda":
        return fn(arg)
    main = torch.cuda.default_stream(device)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(main)
    with torch.cuda.stream(stream):
        result = fn(arg)
    main.wait_stream(stream)
    return result


class Extractor:
    """The codec and one `StaticDecoder` per drum, kept across calls (on CUDA each decoder
    captures its graphs once).

    Args:
        codec: the DAC codec the models' tokens were made with.
        models: drum name -> model (eval mode, on ``codec.device``).
        precision: "fp32" or "bf16" (the decoders' weights, activations and cache).
        batch_size: rows (clips x candidates) per decode. A clip's one-shots are the same
            bytes whatever other clips share its batch; another ``batch_size`` changes the
            shapes of the matrix products and so, at the level of float rounding, the logits
            (a top-p pick that lies on a rounding edge can then differ).
        concurrent: generate the drums of a batch at the same time, one thread per drum (on
            CUDA, one stream each); default: on CUDA only (on the CPU the threads only
            compete for the same cores). The one-shots are the same bytes either way.
    """

    def __init__(
        self,
        codec: DacCodec,
        models: dict[str, DoseTransformer],
        precision: str = "fp32",
        batch_size: int = 16,
        concurrent: bool | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        for drum, model in models.items():
            check_model_fits(model, codec, f"{drum} model")
        self.codec, self.models = codec, models
        self.precision, self.batch_size = precision, batch_size
        self.concurrent = codec.device.type == "cuda" if concurrent is None else concurrent
        self._decoders: dict[str, StaticDecoder] = {}

    def _decoder(self, drum: str) -> StaticDecoder:
        """The drum's decoder, always ``batch_size`` rows (fewer are padded): one fixed shape,
        so a clip's tokens never depend on which clips share its batch or on its place in it.
        """
        if drum not in self._decoders:
            dtype = PRECISIONS[self.precision]
            self._decoders[drum] = StaticDecoder(self.models[drum], self.batch_size, dtype=dtype)
        return self._decoders[drum]

    def clips(
        self, mixtures: np.ndarray, keys: Sequence[str], sampling: Sampling = GREEDY
    ) -> list[dict[str, list[OneShot]]]:
        """Every drum's candidates for each clip of ``mixtures`` float32 mono ``[B, samples]``
        (``WINDOW_S`` at the codec's rate). ``keys`` name the clips (one per clip): with top-p,
        candidate c of clip b samples from ``element_seed(seed, keys[b], drum, c)``.

        Returns, per clip, drum -> its ``sampling.candidates`` one-shots, best score first
        (ties: lower candidate index first), each at most `oneshot_frames` frames; a
        candidate that ends at once has empty ``audio``.
        """
        n, k = mixtures.shape[0], sampling.candidates
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} clips")
        codec = self.codec
        codes = codec.encode(torch.from_numpy(np.ascontiguousarray(mixtures))[:, None])
        tokens = mixture_sequence(codes)  # [B, 353, 9], on the codec's device
        jobs = [(b, c) for b in range(n) for c in range(k)]
        shots: list[dict[str, list[OneShot]]] = [{d: [] for d in self.models} for _ in range(n)]
        for first in range(0, len(jobs), self.batch_size):
            part = jobs[first : first + self.batch_size]
            mix = tokens[[b for b, _ in part]]
            gens = self._generate_drums(mix, part, keys, sampling)
            for drum, g in gens.items():  # drum order: the bytes never depend on the threads
                limit = oneshot_frames(self.models[drum].config)
                lengths = target_lengths(g.tokens).clamp(max=limit).tolist()
                shot_codes = revert_target(g.tokens)
                assert g.mean_log_prob is not None  # StaticDecoder._result always sets it
                ended, scores = g.ended.tolist(), g.mean_log_prob.tolist()  # one sync each
                for row, (b, c) in enumerate(part):
                    audio = self._decode(shot_codes[row : row + 1, :, : lengths[row]])
                    shots[b][drum].append(
                        OneShot(
                            drum, audio, codec.sample_rate, lengths[row], ended[row], scores[row], c
                        )
                    )
        return [
            {d: sorted(s, key=lambda s: (-s.score, s.candidate)) for d, s in clip.items()}
            for clip in shots
        ]

    def _generate_drums(
        self,
        mix: torch.Tensor,
        part: list[tuple[int, int]],
        keys: Sequence[str],
        sampling: Sampling,
    ) -> dict[str, Generation]:
        """Every drum's generation for the rows ``part`` (clip, candidate) of ``mix``: one
        after another, or with ``concurrent`` one thread per drum (on CUDA each on its own
        stream, so the three models' steps overlap on the device)."""

        def run(drum: str) -> Generation:
            seeds = [element_seed(sampling.seed, keys[b], drum, c) for b, c in part]
            return self._decoder(drum).generate(
                mix,
                strategy=sampling.strategy,
                top_p=sampling.top_p,
                temperature=sampling.temperature,
                seeds=seeds,
            )

        drums = list(self.models)
        for drum in drums:  # build and capture (CUDA) here, in drum order, one at a time
            self._decoder(drum).prepare(sampling.strategy)
        if not self.concurrent or len(drums) < 2:
            return {drum: run(drum) for drum in drums}
        with ThreadPoolExecutor(len(drums), thread_name_prefix="dose-drum") as pool:
            futures = {d: pool.submit(_on_own_stream, run, d, self.codec.device) for d in drums}
            return {d: futures[d].result() for d in drums}

    def _decode(self, codes: torch.Tensor) -> np.ndarray:
        """codes [1, 9, F] -> float32 audio [F * hop]; decoded alone, so the codec's context
        never sees another clip's fill."""
        if codes.shape[-1] == 0:
            return np.zeros(0, dtype=np.float32)
        return self.codec.decode(codes).cpu().numpy()[0, 0].astype(np.float32)


def load_extractor(options: ExtractOptions) -> Extractor:
    """The codec and the models that ``options`` name, loaded once, in an `Extractor` with
    its precision and batch size resolved for the device. Raises a DoseError or OSError
    naming the file or device."""
    codec, models = load_codec_and_models(
        options.checkpoints, options.codec_weights, options.heads, options.device
    )
    cuda = codec.device.type == "cuda"
    precision = options.precision
    if precision == "auto":
        precision = "bf16" if cuda else "fp32"
    batch = options.batch_size or (64 if cuda else 8)
    return Extractor(codec, models, precision, batch, options.concurrent)


def extract_clips(
    mixtures: np.ndarray,
    codec: DacCodec,
    models: dict[str, DoseTransformer],
    keys: Sequence[str] | None = None,
    precision: str = "fp32",
    **sampling: Any,
) -> list[dict[str, OneShot]]:
    """The best one-shot of every drum for each clip of ``mixtures`` [B, samples] (one
    `Extractor` call; ``sampling``: the fields of `Sampling`; ``keys`` default "")."""
    keys = list(keys) if keys is not None else [""] * mixtures.shape[0]
    rows = mixtures.shape[0] * sampling.get("candidates", 1)
    extractor = Extractor(codec, models, precision, batch_size=max(1, rows))
    ranked = extractor.clips(mixtures, keys, Sampling(**sampling))
    return [{drum: shots[0] for drum, shots in clip.items()} for clip in ranked]


def extract_clip(
    mixture: np.ndarray, codec: DacCodec, models: dict[str, DoseTransformer], **sampling: Any
) -> dict[str, OneShot]:
    """`extract_clips` for one mixture clip ``[samples]`` (key "")."""
    return extract_clips(mixture[None], codec, models, **sampling)[0]
