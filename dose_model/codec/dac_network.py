"""The DAC ("Descript Audio Codec", improved RVQGAN) network, written for inference.

Our own module of the published architecture. It keeps the released state-dict layout
(``encoder.block.*``, ``quantizer.quantizers.*``, ``decoder.model.*``; weight-normed
convolutions stored as ``weight_g`` / ``weight_v``) so the released weights file loads
as is, and reproduces the reference package's codes bit for bit on CPU (see
``tests/dose_model/test_dac_codec.py``).

Architecture, for ``encoder_dim`` = d and ``encoder_rates`` = (r1..r4):

- encoder: Conv(1 -> d, k7) -> 4 x EncoderBlock(stride r_i, channels doubling) ->
  Snake -> Conv(-> latent_dim, k3). An EncoderBlock is three residual units
  (dilations 1, 3, 9: Snake -> Conv k7 -> Snake -> Conv k1, plus the input) then
  Snake -> strided Conv (kernel 2*r, padding ceil(r/2)).
- quantizer: residual vector quantization with ``n_codebooks`` stages. Each stage
  projects to ``codebook_dim`` (1x1 conv), picks the nearest codebook entry by
  L2-normalized (cosine) distance, projects back (1x1 conv) and subtracts.
- decoder: Conv(latent -> decoder_dim, k7) -> DecoderBlocks (Snake -> transposed
  conv upsampling, channels halving -> three residual units) -> Snake -> Conv(-> 1, k7)
  -> tanh.

Shapes: audio ``[batch, 1, samples]`` (samples a multiple of the hop length),
latents ``[batch, latent_dim, frames]``, codes ``[batch, n_codebooks, frames]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from rmod_dose_common.records import check_plain, to_plain


@dataclass(frozen=True)
class DacConfig:
    """Constructor arguments of a DAC model, named as in the released ``metadata.kwargs``.

    ``latent_dim`` None means ``encoder_dim * 2 ** len(encoder_rates)``. The defaults
    are the 44.1 kHz, 8 kbps model (hop 512, 9 codebooks x 1024 entries).
    ``quantizer_dropout`` is a training setting, kept only so released kwargs parse.
    """

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float | bool = False
    sample_rate: int = 44100

    @classmethod
    def from_kwargs(cls, kwargs: dict) -> DacConfig:
        """Build from a released ``metadata["kwargs"]`` dict (rates as lists or tuples);
        an unknown key or a value of the wrong type raises ValueError naming it."""
        if isinstance(kwargs, dict):
            if isinstance(kwargs.get("codebook_dim"), Sequence):
                raise ValueError("per-codebook codebook_dim lists are not supported")
            rates = {
                k: tuple(v)
                for k, v in kwargs.items()
                if k.endswith("_rates") and isinstance(v, list)
            }
            kwargs = {**kwargs, **rates}
        return check_plain(cls, kwargs, "DAC kwargs")

    def to_kwargs(self) -> dict:
        """The kwargs dict as the released file stores it (lists, not tuples)."""
        out = to_plain(self)
        out["encoder_rates"] = list(self.encoder_rates)
        out["decoder_rates"] = list(self.decoder_rates)
        return out

    @property
    def latent(self) -> int:
        """Latent channels between encoder, quantizer and decoder."""
        if self.latent_dim is not None:
            return int(self.latent_dim)
        return self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def hop_length(self) -> int:
        """Audio samples per code frame (product of the encoder strides; 512 for 44 kHz)."""
        return math.prod(self.encoder_rates)


_INIT = [True]


@contextmanager
def skip_init() -> Iterator[None]:
    """Build modules without random initialization (their weights are loaded next)."""
    _INIT[0] = False
    try:
        yield
    finally:
        _INIT[0] = True


class WNConv1d(nn.Module):
    """Weight-normed Conv1d (or ConvTranspose1d): ``weight = g * v / ||v||`` per output
    slice along dim 0, computed with ``torch._weight_norm`` exactly as the reference's
    ``torch.nn.utils.weight_norm`` hook does."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        transpose: bool = False,
    ):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.transpose = transpose
        shape = (c_in, c_out, kernel_size) if transpose else (c_out, c_in, kernel_size)
        self.weight_g = nn.Parameter(torch.ones(shape[0], 1, 1))
        self.weight_v = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(c_out))
        if _INIT[0]:
            nn.init.trunc_normal_(self.weight_v, std=0.02)
            with torch.no_grad():  # as weight_norm initializes: effective weight == v
                self.weight_g.copy_(self.weight_v.norm(dim=(1, 2), keepdim=True))

        self._cached: tuple[tuple, torch.Tensor] | None = None

    def weight(self) -> torch.Tensor:
        """The effective convolution weight.

        Without autograd (inference) it is computed once and reused until ``weight_g`` or
        ``weight_v`` change (in place, or replaced, e.g. by ``.to(device)``)."""
        v, g = self.weight_v, self.weight_g
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return torch._weight_norm(v, g, 0)
        key = (v._version, g._version, v.data_ptr(), g.data_ptr(), v.device, v.dtype)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, torch._weight_norm(v, g, 0))
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [batch, c_in, time] -> [batch, c_out, time']."""
        if self.transpose:
            return F.conv_transpose1d(
                x, self.weight(), self.bias, self.stride, self.padding, 0, 1, self.dilation
            )
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Snake activation ``x + sin(alpha x)^2 / (alpha + 1e-9)``, per channel.

    ``x`` [batch, channels, time], ``alpha`` [1, channels, 1]. The operation order follows
    the reference so that results agree to the last bit on CPU. Without autograd it
    works in one temporary, in place (IEEE products and sums commute exactly, so the
    bits are the same): that halves the memory traffic of the full-rate layers."""
    inv = (alpha + 1e-9).reciprocal()
    if torch.is_grad_enabled():
        return x + inv * torch.sin(alpha * x).pow(2)
    return torch.mul(alpha, x).sin_().pow_(2).mul_(inv).add_(x)


class Snake1d(nn.Module):
    """Snake activation with a learned ``alpha`` [1, channels, 1]."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake(x, self.alpha)


class ResidualUnit(nn.Module):
    """Snake -> dilated Conv k7 -> Snake -> Conv k1, added to the input (same length)."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim),
            WNConv1d(dim, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        trim = (x.shape[-1] - y.shape[-1]) // 2
        if trim > 0:
            x = x[..., trim:-trim]
        return x + y if torch.is_grad_enabled() else y.add_(x)


class EncoderBlock(nn.Module):
    """Three residual units at ``dim // 2`` channels, then a strided conv to ``dim``."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        half = dim // 2
        self.block = nn.Sequential(
            ResidualUnit(half, 1),
            ResidualUnit(half, 3),
            ResidualUnit(half, 9),
            Snake1d(half),
            WNConv1d(half, dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, dim // 2, time] -> [batch, dim, time / stride]."""
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake, transposed conv upsampling by ``stride``, then three residual units."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        pad = math.ceil(stride / 2)
        self.block = nn.Sequential(
            Snake1d(c_in),
            WNConv1d(c_in, c_out, 2 * stride, stride=stride, padding=pad, transpose=True),
            ResidualUnit(c_out, 1),
            ResidualUnit(c_out, 3),
            ResidualUnit(c_out, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, c_in, time] -> [batch, c_out, time * stride]."""
        return self.block(x)


class Encoder(nn.Module):
    """Audio [batch, 1, samples] -> latents [batch, latent, samples / hop]."""

    def __init__(self, dim: int, rates: Sequence[int], latent: int):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, dim, 7, padding=3)]
        for stride in rates:
            dim *= 2
            layers.append(EncoderBlock(dim, stride))
        layers += [Snake1d(dim), WNConv1d(dim, latent, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Decoder(nn.Module):
    """Latents [batch, latent, frames] -> audio [batch, 1, frames * hop] in [-1, 1]."""

    def __init__(self, latent: int, channels: int, rates: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(latent, channels, 7, padding=3)]
        c_out = channels
        for i, stride in enumerate(rates):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            layers.append(DecoderBlock(c_in, c_out, stride))
        layers += [Snake1d(c_out), WNConv1d(c_out, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


class VectorQuantize(nn.Module):
    """One residual-VQ stage with factorized (low-dimensional) L2-normalized codes."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = WNConv1d(dim, codebook_dim, 1)
        self.out_proj = WNConv1d(codebook_dim, dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Projected latents [batch, codebook_dim, frames] -> indices long [batch, frames].

        Nearest entry by squared distance between L2-normalized vectors, computed in the
        reference's expanded form ``|e|^2 - 2 e.c + |c|^2`` (ties: the lowest index)."""
        b, d, t = z_e.shape
        enc = F.normalize(z_e.transpose(1, 2).reshape(b * t, d))
        book = F.normalize(self.codebook.weight)
        dist = (
            enc.pow(2).sum(1, keepdim=True)
            - 2 * enc @ book.t()
            + book.pow(2).sum(1, keepdim=True).t()
        )
        return (-dist).max(1)[1].reshape(b, t)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices [batch, frames] -> codebook vectors [batch, codebook_dim, frames]."""
        return F.embedding(indices, self.codebook.weight).transpose(1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual [batch, dim, frames] -> (quantized [batch, dim, frames], indices)."""
        z_e = self.in_proj(z)
        indices = self.nearest(z_e)
        z_q = self.lookup(indices)
        # The reference forms z_e + (z_q - z_e) (its straight-through estimator); the
        # rounding of that sum feeds the next stage's residual, so keep it for exactness.
        z_q = z_e + (z_q - z_e)
        return self.out_proj(z_q), indices


class ResidualVectorQuantize(nn.Module):
    """``n_codebooks`` VQ stages applied to successive residuals."""

    def __init__(self, dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.quantizers = nn.ModuleList(
            VectorQuantize(dim, codebook_size, codebook_dim) for _ in range(n_codebooks)
        )

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [batch, dim, frames] -> codes long [batch, n_codebooks, frames]."""
        residual = z
        codes = []
        for quantizer in self.quantizers:
            z_q_i, idx = quantizer(residual)
            residual = residual - z_q_i
            codes.append(idx)
        return torch.stack(codes, dim=1)

    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [batch, n, frames] (n <= n_codebooks) -> quantized latents [batch, dim, frames]."""
        z_q: torch.Tensor | float = 0.0
        for i in range(codes.shape[1]):
            quantizer = cast(VectorQuantize, self.quantizers[i])  # a ModuleList's item: a Module
            z_q = z_q + quantizer.out_proj(quantizer.lookup(codes[:, i, :]))
        assert isinstance(z_q, torch.Tensor)
        return z_q


class DAC(nn.Module):
    """The full codec network. Inputs must already be padded to a multiple of the hop."""

    def __init__(self, config: DacConfig | None = None):
        super().__init__()
        self.config = config or DacConfig()
        cfg = self.config
        self.encoder = Encoder(cfg.encoder_dim, cfg.encoder_rates, cfg.latent)
        self.quantizer = ResidualVectorQuantize(
            cfg.latent, cfg.n_codebooks, cfg.codebook_size, cfg.codebook_dim
        )
        self.decoder = Decoder(cfg.latent, cfg.decoder_dim, cfg.decoder_rates)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio [batch, 1, samples] -> codes long [batch, n_codebooks, samples / hop]."""
        return self.quantizer.encode(self.encoder(audio))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes long [batch, n_codebooks, frames] -> audio [batch, 1, frames * hop]."""
        return self.decoder(self.quantizer.from_codes(codes))
