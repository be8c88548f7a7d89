"""The audio half of LAION-CLAP: the HTSAT Swin-transformer encoder and the projection.

Our own inference code for the network that LAION-CLAP's released checkpoints hold
(``630k-audioset-best.pt``: HTSAT-tiny; ``music_audioset_epoch_15_esc_90.14.pt``: HTSAT-base).
Module names follow the checkpoint's key layout (``layers.{i}.blocks.{j}.attn.qkv``, ...), so the
loader in :mod:`dose_model.fad.clap` only renames the three front-end tensors. Evaluation
only: no dropout, stochastic depth, SpecAugment or mixup.

Data flow for a batch of 10 s clips at 48 kHz, ``wave`` ``[batch, 480000]``:

1. :meth:`HtsatEncoder.log_mel`: STFT as two 1-D convolutions with the stored real/imaginary
   kernels (n_fft 1024, hop 480, input reflect-padded by n_fft/2 on both sides), power
   re^2 + im^2, times the stored mel matrix (64 Slaney bands, 50-14,000 Hz), then
   10 log10(max(x, 1e-10)) dB -> ``[batch, 1, 1001, 64]``.
2. :meth:`HtsatEncoder.normalize`: ``bn0``, a BatchNorm whose channels are the mel bins.
3. :meth:`HtsatEncoder.to_image`: bicubic stretch (align_corners) of the frame axis to
   ``256 * freq_ratio`` = 1024 frames, then the four 256-frame chunks stacked along frequency
   -> ``[batch, 1, 256, 256]`` (rows 0-63 are the mel bins of frames 0-255, rows 64-127 those
   of frames 256-511, ...).
4. :meth:`HtsatEncoder.pool`: 4x4 patch embedding (64 x 64 tokens), four Swin stages
   (window attention with a relative position bias; odd blocks shift the windows by half a
   window unless the stage's grid is no larger than a window; patch merging between stages),
   a final LayerNorm and the mean over all tokens -> ``[batch, num_features]``.
5. :class:`ClapAudioNetwork`: projection Linear-ReLU-Linear to the joint width and L2
   normalization -> ``[batch, joint_dim]``.

Widths, depths, heads, window and patch size come from the weights file
(:class:`HtsatConfig`); the spectrogram size (256), hop (480 samples) and clip length
(480,000 samples) are fixed by LAION-CLAP for every released HTSAT model and are constants here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 48_000
"""Sample rate of the network's input, Hz."""
CLIP_SAMPLES = 480_000
"""Samples in one input clip (10 s at 48 kHz)."""
HOP_LENGTH = 480
"""STFT hop, samples (10 ms): 480,000 samples give 1,001 frames."""
SPEC_SIZE = 256
"""Side of the square image the Swin transformer reads."""
POWER_FLOOR = 1e-10
"""Mel power below this is clamped before the dB conversion (-100 dB)."""
MASK_VALUE = -100.0
"""Added to attention scores between tokens that a shifted window joins but that are not
neighbours in the image (the reference's value, not -inf)."""


@dataclass(frozen=True)
class HtsatConfig:
    """The shape of one HTSAT audio encoder and its projection, as read from a weights file.

    ``n_fft``: STFT length in samples (1024). ``mel_bins``: mel bands (64).
    ``embed_dim``: channels after the patch embedding; stage ``i`` has ``embed_dim * 2**i``.
    ``depths`` / ``num_heads``: blocks and attention heads per stage. ``window_size``: side of
    an attention window in tokens. ``patch_size``: side of a patch in image pixels (the
    stride equals it). ``mlp_ratio``: hidden width of each block's MLP over its width.
    ``qkv_bias``: whether the query/key/value projection has a bias. ``joint_dim``: width of
    the projected, normalized embedding (512 in the released models).
    """

    n_fft: int
    mel_bins: int
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int
    mlp_ratio: float
    qkv_bias: bool
    joint_dim: int

    @property
    def num_features(self) -> int:
        """Channels of the last stage, the width of the pooled embedding."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def freq_ratio(self) -> int:
        """Frame chunks stacked along frequency to make a square image (4 for 64 mel bins)."""
        return SPEC_SIZE // self.mel_bins

    @property
    def grid(self) -> int:
        """Tokens per side after the patch embedding (64)."""
        return SPEC_SIZE // self.patch_size

    def stage_window(self, stage: int) -> tuple[int, int]:
        """``(window, shift)`` of the odd blocks of a stage, in tokens: a stage whose grid is no
        larger than a window attends over the whole grid and never shifts."""
        resolution = self.grid // 2**stage
        if resolution <= self.window_size:
            return resolution, 0
        return self.window_size, self.window_size // 2


def relative_position_index(window: int) -> torch.Tensor:
    """Row of the relative-position bias table for each (query, key) pair of a window.

    Tokens are numbered row-major inside the window; the pair's offset (dh, dw), each in
    ``[-(window-1), window-1]``, maps to ``(dh + window - 1) * (2*window - 1) + dw + window - 1``.
    Returns int64 ``[window**2, window**2]``.
    """
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + window - 1
    d_col = cols[:, None] - cols[None, :] + window - 1
    return d_row * (2 * window - 1) + d_col


def shifted_window_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """Additive attention mask for windows shifted by ``shift`` on a ``resolution`` grid.

    After the cyclic shift, the last row and column of windows join pieces that were not
    adjacent; each axis splits into three bands (before ``resolution - window``, up to
    ``resolution - shift``, the rest) and tokens of different (row band, column band) cells
    must not attend to each other. Returns float32 ``[windows, window**2, window**2]``, 0 where
    allowed and :data:`MASK_VALUE` elsewhere.
    """
    position = torch.arange(resolution)
    band = (position >= resolution - window).long() + (position >= resolution - shift).long()
    cells = (band[:, None] * 3 + band[None, :])[None, :, :, None]
    cells = partition_windows(cells, window).squeeze(-1)
    differ = cells[:, None, :] != cells[:, :, None]
    return torch.where(differ, MASK_VALUE, 0.0).float()


def partition_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[batch, H, W, C]`` -> ``[batch * (H/window) * (W/window), window**2, C]``, windows in
    row-major order per batch item, tokens row-major inside each window."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels)


def merge_windows(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: ``[batch * nW, window**2, C]`` -> ``[batch, H, W, C]``."""
    channels = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    relative_position_index: torch.Tensor  # a buffer (register_buffer in __init__)

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``[batch * nW, N, C]`` (N = window**2); ``mask`` ``[nW, N, N]`` or None."""
        count, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(count, tokens, 3, self.heads, channels // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [count, heads, N, head_dim]
        scores = (query * self.scale) @ key.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        scores = scores + bias.view(tokens, tokens, self.heads).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            scores = (
                scores.view(count // windows, windows, self.heads, tokens, tokens)
                + mask[None, :, None]
            )
            scores = scores.view(count, self.heads, tokens, tokens)
        out = scores.softmax(dim=-1) @ value
        return self.proj(out.transpose(1, 2).reshape(count, tokens, channels))


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with a residual connection."""

    def __init__(
        self, dim: int, resolution: int, heads: int, window: int, shift: int, config: HtsatConfig
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        mask = shifted_window_mask(resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[batch, resolution**2, dim]`` -> same shape."""
        batch, tokens, channels = x.shape
        side = self.resolution
        y = self.norm1(x).view(batch, side, side, channels)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(partition_windows(y, self.window), self.attn_mask)
        y = merge_windows(y, self.window, side, side)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(batch, tokens, channels)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Halves the grid: each 2x2 group of tokens is concatenated (order (0,0), (1,0), (0,1),
    (1,1) as (row, column)), normalized and projected from 4C to 2C channels."""

    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, R**2, C]`` -> ``[batch, (R/2)**2, 2C]``."""
        batch, _, channels = x.shape
        x = x.view(batch, self.resolution, self.resolution, channels)
        groups = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        x = torch.cat(groups, dim=-1).view(batch, -1, 4 * channels)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """The blocks of one stage (even ones unshifted, odd ones shifted), then patch merging
    unless it is the last stage."""

    def __init__(self, stage: int, config: HtsatConfig) -> None:
        super().__init__()
        dim = config.embed_dim * 2**stage
        resolution = config.grid // 2**stage
        window, shift = config.stage_window(stage)
        heads = config.num_heads[stage]
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, shift if j % 2 else 0, config)
            for j in range(config.depths[stage])
        )
        last = stage == len(config.depths) - 1
        self.downsample = None if last else PatchMerging(dim, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution to ``embed_dim`` channels, then LayerNorm."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            1, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.norm = nn.LayerNorm(config.embed_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[batch, 1, 256, 256]`` -> ``[batch, grid**2, embed_dim]`` (tokens row-major)."""
        return self.norm(self.proj(image).flatten(2).transpose(1, 2))


class HtsatEncoder(nn.Module):
    """HTSAT from waveform to pooled embedding; see the module docstring for the stages.

    ``stft_real`` / ``stft_imag`` ``[n_fft/2 + 1, 1, n_fft]`` and ``mel_basis``
    ``[n_fft/2 + 1, mel_bins]`` are buffers filled from the weights file (the window and the
    mel design are whatever the file holds).
    """

    # buffers (register_buffer in __init__)
    stft_real: torch.Tensor
    stft_imag: torch.Tensor
    mel_basis: torch.Tensor

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.config = config
        bins = config.n_fft // 2 + 1
        self.register_buffer("stft_real", torch.zeros(bins, 1, config.n_fft))
        self.register_buffer("stft_imag", torch.zeros(bins, 1, config.n_fft))
        self.register_buffer("mel_basis", torch.zeros(bins, config.mel_bins))
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        self.patch_embed = PatchEmbed(config)
        self.layers = nn.ModuleList(SwinStage(i, config) for i in range(len(config.depths)))
        self.norm = nn.LayerNorm(config.num_features)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` float32 -> log-mel power in dB ``[batch, 1, frames, mel_bins]``,
        frames = samples // 480 + 1."""
        half = self.config.n_fft // 2
        padded = F.pad(wave[:, None, :], (half, half), mode="reflect")
        real = F.conv1d(padded, self.stft_real, stride=HOP_LENGTH)
        imag = F.conv1d(padded, self.stft_imag, stride=HOP_LENGTH)
        power = (real**2 + imag**2).transpose(1, 2)[:, None]  # [batch, 1, frames, bins]
        mel = torch.matmul(power, self.mel_basis)
        return 10.0 * torch.log10(torch.clamp(mel, min=POWER_FLOOR))

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``bn0`` per mel bin (running statistics): ``[batch, 1, frames, mel]`` -> same."""
        return self.bn0(log_mel.transpose(1, 3)).transpose(1, 3)

    def to_image(self, features: torch.Tensor) -> torch.Tensor:
        """``[batch, 1, frames, mel]`` (frames <= 1024) -> ``[batch, 1, 256, 256]``."""
        ratio = self.config.freq_ratio
        frames = SPEC_SIZE * ratio
        if features.shape[2] > frames:
            raise ValueError(
                f"{features.shape[2]} frames do not fit the {frames}-frame input of HTSAT"
            )
        if features.shape[2] < frames:
            features = F.interpolate(
                features, size=(frames, features.shape[3]), mode="bicubic", align_corners=True
            )
        batch, _, _, mel = features.shape
        chunks = features.transpose(2, 3).reshape(batch, 1, mel, ratio, frames // ratio)
        return chunks.permute(0, 1, 3, 2, 4).reshape(batch, 1, ratio * mel, frames // ratio)

    def pool(self, image: torch.Tensor) -> torch.Tensor:
        """``[batch, 1, 256, 256]`` -> mean of the final normalized tokens ``[batch, num_features]``."""
        x = self.patch_embed(image)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x).mean(dim=1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``[batch, 480000]`` float32 at 48 kHz -> ``[batch, num_features]``."""
        return self.pool(self.to_image(self.normalize(self.log_mel(wave))))


class ClapAudioNetwork(nn.Module):
    """``audio_branch`` (HTSAT) and ``audio_projection`` of a CLAP checkpoint."""

    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_branch = HtsatEncoder(config)
        self.audio_projection = nn.Sequential(
            nn.Linear(config.num_features, config.joint_dim),
            nn.ReLU(),
            nn.Linear(config.joint_dim, config.joint_dim),
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``[batch, 480000]`` float32 at 48 kHz -> unit-norm embeddings ``[batch, joint_dim]``."""
        return F.normalize(self.audio_projection(self.audio_branch(wave)), dim=-1)
