"""`DacCodec`: load DAC weights from a local file, encode audio to codes, decode back.

The weights file is the released format (``weights_44khz_8kbps_0.0.1.pth``):
``{"state_dict": {...}, "metadata": {"kwargs": {...}}}`` with weight-normed
convolutions stored as ``weight_g`` / ``weight_v``. Nothing is ever downloaded:
:func:`default_weights_path` only looks for the file that the reference package
keeps in its cache folder.

    codec = DacCodec.load("weights_44khz_8kbps_0.0.1.pth", device="cuda")
    codes = codec.encode(audio)   # float [batch, 1, samples] at 44.1 kHz -> long [batch, 9, frames]
    audio = codec.decode(codes)   # long [batch, 9, frames] -> float [batch, 1, frames * 512]
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F

from dose_model.codec.dac_network import DAC, DacConfig, VectorQuantize, skip_init
from dose_model.errors import DoseError
from dose_model.fileio import load_weights_only
from rmod_dose_common.fileio import atomic_write_bytes, sha256_file

DAC_CACHE_PATH = Path.home() / ".cache" / "descript" / "dac" / "weights_44khz_8kbps_0.0.1.pth"
"""Where the reference package (descript-audio-codec >= 1.0) caches the 44 kHz weights."""

_MAX_LISTED = 8


class CodecLoadError(DoseError, ValueError):
    """A weights file that cannot be used. ``str(err)`` names the file and the problem."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def default_weights_path() -> Path | None:
    """The reference package's cached 44 kHz weights file if it exists here, else None."""
    return DAC_CACHE_PATH if DAC_CACHE_PATH.is_file() else None


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def check_state_dict(model: DAC, state_dict: dict, source: str) -> None:
    """Raise :class:`CodecLoadError` unless ``state_dict`` has exactly the keys and shapes
    of ``model``; the message lists missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    bad_shape = [
        f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict
        and (not torch.is_tensor(state_dict[k]) or state_dict[k].shape != v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} wrong shapes: {_listing(bad_shape)}")
    if problems:
        raise CodecLoadError(
            source,
            "state dict does not match the DAC architecture of its kwargs: " + "; ".join(problems),
        )


@contextmanager
def _tf32(allow: bool | None) -> Iterator[None]:
    """Set cuDNN and CUDA-matmul TF32 for a block (None: leave them as they are)."""
    if allow is None:
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class DacCodec:
    """A DAC model in eval mode on one device, with batched ``encode`` / ``decode``.

    Attributes: ``sample_rate`` (Hz), ``hop_length`` (samples per frame), ``n_codebooks``,
    ``codebook_size``, ``kwargs`` (the released-format constructor arguments), ``source``
    (file path or a description) and ``sha256`` (of the weights file, None if not loaded
    from a file).
    """

    def __init__(
        self,
        model: DAC,
        device: str | torch.device = "cpu",
        source: str = "<memory>",
        sha256: str | None = None,
    ):
        self.tf32: bool | None = None
        """TF32 for CUDA convolutions/matmuls during encode/decode: None = torch's global
        setting (PyTorch enables it for cuDNN convolutions by default), False = strict
        FP32 (codes as on the CPU, slower), True = TF32."""
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.source = source
        self.sha256 = sha256
        cfg = model.config
        self.config = cfg
        self.sample_rate = int(cfg.sample_rate)
        self.hop_length = int(cfg.hop_length)
        self.n_codebooks = int(cfg.n_codebooks)
        self.codebook_size = int(cfg.codebook_size)

    # ----------------------------------------------------------------- construction
    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> DacCodec:
        """Load a weights file in the released format from a local path.

        Raises FileNotFoundError for a missing file and :class:`CodecLoadError` (naming
        the file) for another format, unknown kwargs, missing or unexpected keys, or
        wrong shapes. Loads with ``weights_only=True``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: DAC weights file not found")
        blob = load_weights_only(path, lambda reason: CodecLoadError(path, reason))
        if (
            not isinstance(blob, dict)
            or not isinstance(blob.get("state_dict"), dict)
            or not isinstance(blob.get("metadata"), dict)
            or "kwargs" not in blob["metadata"]
        ):
            keys = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
            raise CodecLoadError(
                path,
                "not a DAC weights file in the released format "
                f'{{"state_dict", "metadata": {{"kwargs"}}}} (found {keys})',
            )
        return cls.from_state_dict(
            blob["state_dict"],
            blob["metadata"]["kwargs"],
            device=device,
            source=str(path),
            sha256=sha256_file(path),
        )

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict,
        kwargs: dict,
        device: str | torch.device = "cpu",
        source: str = "<state dict>",
        sha256: str | None = None,
    ) -> DacCodec:
        """Build from a released-layout state dict and its kwargs (checked strictly)."""
        try:
            config = DacConfig.from_kwargs(kwargs)
        except (TypeError, ValueError) as exc:
            raise CodecLoadError(source, f"bad metadata kwargs: {exc}") from None
        with skip_init():  # the weights come from the dict
            model = DAC(config)
        check_state_dict(model, state_dict, source)
        model.load_state_dict(state_dict, strict=True)
        return cls(model, device=device, source=source, sha256=sha256)

    @classmethod
    def random(
        cls, kwargs: dict | None = None, seed: int = 0, device: str | torch.device = "cpu"
    ) -> DacCodec:
        """A codec with random weights (deterministic for a seed), for tests and benchmarks.

        ``kwargs`` default to the full 44 kHz model; tests use small ones, e.g.
        ``{"encoder_dim": 8, "decoder_dim": 32}``. The global RNG is left untouched.
        """
        config = DacConfig.from_kwargs(kwargs or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DAC(config)
            with torch.no_grad():
                for quantizer in model.quantizer.quantizers:  # a ModuleList's items: Modules
                    cast(VectorQuantize, quantizer).codebook.weight.normal_()
        return cls(model, device=device, source=f"<random seed={seed}>")

    def save(self, path: str | os.PathLike) -> str:
        """Write the weights in the released format, atomically; returns the file's SHA-256."""
        buf = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        torch.save({"state_dict": state, "metadata": {"kwargs": self.kwargs}}, buf)
        data = buf.getvalue()
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    # ----------------------------------------------------------------- properties
    @property
    def kwargs(self) -> dict:
        """Constructor arguments in the released ``metadata["kwargs"]`` form."""
        return self.config.to_kwargs()

    def frames(self, samples: int) -> int:
        """Code frames for ``samples`` audio samples (after padding to a multiple of the hop)."""
        return math.ceil(samples / self.hop_length)

    # ----------------------------------------------------------------- coding
    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio float [batch, 1, samples] at ``sample_rate`` -> codes long [batch, n_codebooks,
        ceil(samples / hop_length)] on the codec's device.

        Like the reference ``preprocess``, the audio is zero-padded on the right to a
        multiple of the hop length first.
        """
        if not torch.is_tensor(audio) or audio.ndim != 3 or audio.shape[1] != 1:
            shape = tuple(audio.shape) if torch.is_tensor(audio) else type(audio).__name__
            raise ValueError(f"encode expects float audio [batch, 1, samples], got {shape}")
        if not audio.is_floating_point():
            raise ValueError(f"encode expects float audio, got dtype {audio.dtype}")
        if audio.shape[-1] == 0 or audio.shape[0] == 0:
            raise ValueError(f"encode got an empty batch or signal {tuple(audio.shape)}")
        audio = audio.to(self.device, torch.float32)
        right = self.frames(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        if right:
            audio = F.pad(audio, (0, right))
        with _tf32(self.tf32 if self.device.type == "cuda" else None):
            return self.model.encode(audio)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes integer [batch, n_codebooks, frames] with values in [0, codebook_size) ->
        audio float [batch, 1, frames * hop_length] in [-1, 1] on the codec's device."""
        if not torch.is_tensor(codes) or codes.ndim != 3 or codes.shape[1] != self.n_codebooks:
            shape = tuple(codes.shape) if torch.is_tensor(codes) else type(codes).__name__
            raise ValueError(
                f"decode expects integer codes [batch, {self.n_codebooks}, frames], got {shape}"
            )
        if codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"decode expects integer codes, got dtype {codes.dtype}")
        codes = codes.to(self.device, torch.long)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); got "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        with _tf32(self.tf32 if self.device.type == "cuda" else None):
            return self.model.decode(codes)
