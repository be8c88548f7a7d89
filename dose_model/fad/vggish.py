"""VGGish from torchvggish's release file, for FAD: log-mel examples -> 128-d embeddings.

The weight file is a plain state dict (``vggish-10086976.pth``): six 3x3 convolutions
``features.{0,3,6,8,11,13}`` (released widths 64, 128, 256, 256, 512, 512; a 2x2 max-pool after
the 1st, 2nd, 4th and 6th) and three fully connected layers ``embeddings.{0,2,4}`` (released:
12288 -> 4096 -> 4096 -> 128), ReLU after each. Every width is read from the file's shapes, so
narrower files of the same layout load too. The last convolution's output ``[C, 6, 4]`` is
flattened in (height, width, channel) order, as the TensorFlow original did.

Outputs (``output=``):

- ``"pre_relu"`` (default): the last layer before its ReLU, what fadtk and
  frechet-audio-distance use for FAD;
- ``"relu"``: the released module's output (final ReLU included);
- ``"postprocessed"``: the released module's output through the PCA file
  (``vggish_pca_params-970ea276.pth``: numpy float64 ``pca_eigen_vectors [128, 128]`` and
  ``pca_means [128]``), clipped to [-2, 2] and quantized to 8 bits (values 0..255, as float32),
  computed in float32 as torchvggish does.

The PCA file holds numpy arrays, which ``torch.load(weights_only=True)`` refuses by default; it
is read with exactly the numpy globals a float array needs (its reconstructor, ``ndarray``,
``dtype`` and the float dtype classes) allowed for that one load, never with
``weights_only=False``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dose_model.fad import logmel
from dose_model.fad.embedder import EmbedderInfo, FadError
from dose_model.fileio import load_weights_only
from rmod_dose_common.fileio import sha256_file

CONV_KEYS = (0, 3, 6, 8, 11, 13)
"""Indices of the convolutions in ``features``; a max-pool follows those at 0, 3, 8 and 13."""
POOLED_AFTER = frozenset((0, 3, 8, 13))
LINEAR_KEYS = (0, 2, 4)
"""Indices of the fully connected layers in ``embeddings``."""
FINAL_SHAPE = (6, 4)
"""(frames, bands) after four 2x2 pools of a 96 x 64 example."""
OUTPUTS = ("pre_relu", "relu", "postprocessed")


class VGGishNetwork(nn.Module):
    """The network, with modules indexed as in the release file. ``forward`` takes
    ``[n, 96, 64]`` log-mel examples and returns the pre-ReLU embeddings ``[n, dim]``."""

    def __init__(self, widths: tuple[int, ...], hidden: int, dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for index, width in zip(CONV_KEYS, widths, strict=True):
            assert len(layers) == index
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            if index in POOLED_AFTER:
                layers.append(nn.MaxPool2d(2, 2))
            channels = width
        self.features = nn.Sequential(*layers)
        flat = channels * FINAL_SHAPE[0] * FINAL_SHAPE[1]
        self.embeddings = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, dim),
        )  # fmt: skip

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples[:, None])  # [n, C, 6, 4]
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (height, width, channel) order
        return self.embeddings(x)


def _load_torch(path: Path, what: str, safe: list | None = None) -> object:
    """`dose_model.fileio.load_weights_only` (``safe``: further globals the file may hold);
    FadError naming the file and what it should have been otherwise."""
    prefix = "not a readable torch file ("

    def error(reason: str) -> FadError:
        detail = reason[len(prefix) : -1] if reason.startswith(prefix) else reason
        return FadError(f"{path}: not a readable {what} ({detail})")

    if safe is None:
        return load_weights_only(path, error)
    with torch.serialization.safe_globals(safe):
        return load_weights_only(path, error)


def read_architecture(state: object, path: Path) -> tuple[tuple[int, ...], int, int]:
    """(conv widths, hidden width, embedding dim) read from a release-layout state dict;
    FadError naming the file and key when a key is missing or extra or a shape does not fit."""
    expected = {f"features.{i}.{p}" for i in CONV_KEYS for p in ("weight", "bias")}
    expected |= {f"embeddings.{i}.{p}" for i in LINEAR_KEYS for p in ("weight", "bias")}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FadError(f"{path}: not a VGGish state dict (expected a dict of tensors)")
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise FadError(
            f"{path}: not torchvggish's layout: missing {missing[:4]}, unexpected {extra[:4]}"
        )

    def shape(key: str, want: tuple[int | None, ...]) -> tuple[int, ...]:
        got = tuple(state[key].shape)
        if len(got) != len(want) or any(
            w is not None and g != w for g, w in zip(got, want, strict=True)
        ):
            raise FadError(
                f"{path}: {key} has shape {list(got)}, expected {list(want)} (None: any)"
            )
        return got

    widths, channels = [], 1
    for i in CONV_KEYS:
        width = shape(f"features.{i}.weight", (None, channels, 3, 3))[0]
        shape(f"features.{i}.bias", (width,))
        widths.append(width)
        channels = width
    hidden = shape("embeddings.0.weight", (None, channels * FINAL_SHAPE[0] * FINAL_SHAPE[1]))[0]
    shape("embeddings.0.bias", (hidden,))
    shape("embeddings.2.weight", (hidden, hidden))
    shape("embeddings.2.bias", (hidden,))
    dim = shape("embeddings.4.weight", (None, hidden))[0]
    shape("embeddings.4.bias", (dim,))
    return tuple(widths), hidden, dim


def _numpy_array_globals() -> list:
    """The globals a pickled float numpy array names (its reconstructor under numpy 2's and
    numpy 1's module paths, ``ndarray``, ``dtype`` and the float dtypes' classes)."""
    core = getattr(np, "_core", None) or np.core
    rebuild = core.multiarray._reconstruct
    return [
        (rebuild, "numpy._core.multiarray._reconstruct"),
        (rebuild, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *(type(np.dtype(t)) for t in (np.float64, np.float32)),
    ]


def load_pca(path: str | os.PathLike, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvectors float32 ``[dim, dim]``, means float32 ``[dim]``) from torchvggish's PCA
    file; FadError naming the file for another layout or shape."""
    path = Path(path)
    data = _load_torch(path, "VGGish PCA file", safe=_numpy_array_globals())
    if not isinstance(data, dict) or not {"pca_eigen_vectors", "pca_means"} <= set(data):
        raise FadError(f"{path}: not a VGGish PCA file (needs pca_eigen_vectors and pca_means)")
    vectors = np.asarray(data["pca_eigen_vectors"], dtype=np.float32)
    means = np.asarray(data["pca_means"], dtype=np.float32).reshape(-1)
    if vectors.shape != (dim, dim) or means.shape != (dim,):
        raise FadError(
            f"{path}: PCA shapes {list(vectors.shape)} and {list(means.shape)} do not fit a "
            f"{dim}-d model (expected [{dim}, {dim}] and [{dim}])"
        )
    return vectors, means


def postprocess(relu: np.ndarray, vectors: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The release's postprocessing of float32 ``[n, dim]`` ReLU embeddings: PCA, clip to
    [-2, 2], quantize to 0..255 (float32 ``[n, dim]``), in float32."""
    projected = (vectors @ (relu.T - means[:, None])).T
    clipped = np.clip(projected, np.float32(-2.0), np.float32(2.0))
    return np.round((clipped + np.float32(2.0)) * np.float32(255.0 / 4.0)).astype(np.float32)


@dataclass
class VGGish:
    """A loaded VGGish embedder (see :class:`dose_model.fad.embedder.Embedder`)."""

    network: VGGishNetwork
    info: EmbedderInfo
    pca: tuple[np.ndarray, np.ndarray] | None = None

    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """float32 ``[n, 96, 64]`` log-mel examples -> float32 ``[n, dim]`` (the chosen output)."""
        with torch.no_grad():
            pre = self.network(torch.from_numpy(np.ascontiguousarray(examples, np.float32)))
        out = pre.numpy()
        if self.info.options["output"] == "pre_relu":
            return out
        out = np.maximum(out, 0.0)
        if self.info.options["output"] == "relu":
            return out
        assert self.pca is not None  # load_vggish requires the PCA for output 'postprocessed'
        return postprocess(out, *self.pca)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """float32 ``[channels, samples]`` (or ``[samples]``) at ``sample_rate`` Hz -> float32
        ``[windows, dim]``, one row per 0.96 s example; a clip under 1 s gives one row."""
        sums = self.info.options["float32_sums"]
        return self.embed_examples(logmel.examples(audio, sample_rate, float32_sums=sums))


def load_vggish(
    path: str | os.PathLike,
    *,
    output: str = "pre_relu",
    pca: str | os.PathLike | None = None,
    float32_sums: bool = False,
) -> VGGish:
    """VGGish from a state dict in torchvggish's release layout.

    Args:
        path: the weight file (``vggish-10086976.pth`` or one of its layout).
        output: ``"pre_relu"``, ``"relu"`` or ``"postprocessed"`` (see the module docstring).
        pca: the PCA file; required for (and only used by) ``"postprocessed"``.
        float32_sums: resample in float32 sums, as resampy does for float32 input
            (:mod:`dose_model.fad.resample`); default float64.

    Raises:
        FadError: an unknown output, a missing PCA file, or a file of another layout.
        OSError: a file cannot be opened.
    """
    path = Path(path)
    if output not in OUTPUTS:
        raise FadError(f"vggish output {output!r}: expected one of {', '.join(OUTPUTS)}")
    if (output == "postprocessed") != (pca is not None):
        raise FadError(
            "vggish: the PCA file is needed for, and only used by, output 'postprocessed'"
        )
    state = _load_torch(path, "VGGish weight file")
    widths, hidden, dim = read_architecture(state, path)
    network = VGGishNetwork(widths, hidden, dim)
    assert isinstance(state, dict)  # read_architecture has refused anything else
    network.load_state_dict(state)
    network.eval()
    options = {
        "output": output,
        "float32_sums": bool(float32_sums),
        "resampler": "kaiser_best (resampy 0.4 table), own numpy code",
        "pca_sha256": None if pca is None else sha256_file(pca),
        "widths": list(widths),
        "hidden": hidden,
    }
    info = EmbedderInfo(
        name="vggish",
        sample_rate=logmel.SAMPLE_RATE,
        dim=dim,
        weights_sha256=sha256_file(path),
        pad_rule=logmel.PAD_RULE,
        options=options,
    )
    return VGGish(network, info, None if pca is None else load_pca(pca, dim))
