"""The mask network of one LarsNet stem: a U-Net over a magnitude spectrogram chunk.

Layout and parameter names are those of LarsNet's released checkpoints
(``input_norm``, ``enc1..6.conv/bn``, ``dec1..6.conv_trans/bn``, ``mask_layer.0``), so a
released ``model_state_dict`` loads as it is. Channel widths are not fixed here: they are read
from the weights (`widths_from_state_dict`), so the released models (16, 32, 64, 128, 256, 512)
and narrow test models load through the same code.

Data flow, for a chunk ``[batch, 2, bins, frames]`` of stereo STFT magnitudes (bins 2048,
frames 512 in LarsNet; both must be multiples of 64 for the six halvings to come back even):

- ``input_norm``: BatchNorm with one (mean, var, weight, bias) per frequency bin;
- six encoders, each a 5x5 convolution with stride 2 (padding 2) followed by BatchNorm and
  LeakyReLU(0.2); the skip connection taken from each is the convolution's output *before*
  its BatchNorm, and the deepest encoder's activation is not used at all (only its skip);
- six decoders, each a 5x5 transposed convolution with stride 2 (padding 2, output padding 1)
  followed by ReLU and then BatchNorm; decoders 2..6 take the previous decoder's output
  concatenated after the matching encoder's skip (skip first, along channels);
- ``mask_layer``: a 4x4 convolution with dilation 2 and padding 3 (size-preserving), then a
  sigmoid: a mask in (0, 1) of the input's shape.

Inference only: BatchNorm uses its running statistics (the module is put in eval mode) and
the training-time dropout of decoders 1-3 is left out (it is the identity in eval mode).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

DEPTH = 6
"""Encoders (and decoders) of the U-Net."""
LEAKY_SLOPE = 0.2
"""Negative slope of the encoders' LeakyReLU."""


class _Encoder(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=5, stride=2, padding=2)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(activation for the next encoder, pre-BatchNorm skip for the decoder)."""
        skip = self.conv(x)
        return nn.functional.leaky_relu(self.bn(skip), LEAKY_SLOPE), skip


class _Decoder(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_trans = nn.ConvTranspose2d(
            c_in, c_out, kernel_size=5, stride=2, padding=2, output_padding=1
        )
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(torch.relu(self.conv_trans(x)))


class MaskUNet(nn.Module):
    """One stem's mask network (see the module text).

    Args:
        widths: output channels of encoders 1..6 (released LarsNet: 16, 32, 64, 128, 256, 512).
        bins: frequency bins of the input (released: 2048), the size of ``input_norm``.
        channels: audio channels (2: LarsNet is stereo).
    """

    dec1: _Decoder  # a submodule (add_module in __init__)

    def __init__(self, widths: tuple[int, ...], bins: int = 2048, channels: int = 2):
        super().__init__()
        if len(widths) != DEPTH:
            raise ValueError(f"expected {DEPTH} encoder widths, got {len(widths)}")
        self.widths, self.bins, self.channels = tuple(widths), bins, channels
        self.input_norm = nn.BatchNorm2d(bins)
        ins = (channels, *widths[:-1])
        for i in range(DEPTH):
            self.add_module(f"enc{i + 1}", _Encoder(ins[i], widths[i]))
        # Decoder i (1-based) maps to the width of encoder DEPTH - i (the audio channels for
        # the last); all but the first also read the matching encoder's skip.
        outs = (*widths[-2::-1], channels)
        for i in range(DEPTH):
            c_in = widths[-1] if i == 0 else 2 * widths[DEPTH - 1 - i]
            self.add_module(f"dec{i + 1}", _Decoder(c_in, outs[i]))
        self.mask_layer = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=4, dilation=2, padding=3), nn.Sigmoid()
        )

    def forward(self, mag: Tensor) -> Tensor:
        """The mask of a magnitude chunk: ``[batch, channels, bins, frames]`` -> same shape,
        values in (0, 1)."""
        # BatchNorm over frequency: bins take the place of BatchNorm2d's channel axis.
        x = self.input_norm(mag.transpose(1, 2)).transpose(1, 2)
        skips = []
        for i in range(DEPTH):
            x, skip = getattr(self, f"enc{i + 1}")(x)
            skips.append(skip)
        u = self.dec1(skips[-1])
        for i in range(1, DEPTH):
            u = getattr(self, f"dec{i + 1}")(torch.cat([skips[DEPTH - 1 - i], u], dim=1))
        return self.mask_layer(u)


def widths_from_state_dict(state: Mapping[str, Tensor]) -> tuple[tuple[int, ...], int, int]:
    """(encoder widths, bins, audio channels) read from the shapes of a LarsNet U-Net state
    dict: ``enc{i}.conv.weight`` is ``[width_i, in_i, 5, 5]`` and ``input_norm.weight`` is
    ``[bins]``. Raises KeyError for a missing key and ValueError for a weight that is not a
    4-D convolution kernel; the full layout is checked when the state dict is loaded."""
    widths = []
    for i in range(DEPTH):
        shape = tuple(state[f"enc{i + 1}.conv.weight"].shape)
        if len(shape) != 4:
            raise ValueError(f"enc{i + 1}.conv.weight has shape {list(shape)}, not 4-D")
        widths.append(int(shape[0]))
    channels = int(state["enc1.conv.weight"].shape[1])
    bins = int(state["input_norm.weight"].shape[0])
    return tuple(widths), bins, channels
