"""CLAP audio embeddings from a LAION-CLAP checkpoint file, offline.

:func:`load_clap` reads a released checkpoint (``630k-audioset-best.pt``,
``music_audioset_epoch_15_esc_90.14.pt``: ``{"state_dict": ...}`` with every key prefixed
``module.``) with ``torch.load(weights_only=True)`` and keeps ``audio_branch.*`` and
``audio_projection.*`` only: the text branch, ``audio_transform``/``text_transform`` (used by
CLAP's training loss, not by its audio embedding), the logit scales and ``position_ids`` are
ignored, as are the classifier head (``tscam_conv``, ``head``) that does not feed the embedding.
The network's widths, depths, heads, window and patch size are read from the tensor shapes
(:func:`config_from_shapes`); the network is :mod:`dose_model.fad.htsat`.

:meth:`ClapEmbedder.embed` turns audio ``[channels, samples]`` at any rate into one unit-norm
embedding per 10 s window, in this order:

1. mono: the mean of the channels;
2. resampling to 48 kHz, when the rate differs, with soxr "HQ" (``librosa.resample(...,
   res_type="soxr_hq")``, the resampler ``librosa.load(path, sr=48000)`` applies, which is how
   LAION-CLAP's own file loader reads audio), to exactly ceil(samples * 48000 / rate) samples
   (librosa's float arithmetic makes 10 s at 44.1 kHz 480,001 samples; we trim that one);
3. with ``int16=True``, fadtk's 16-bit round trip: clip to [-1, 1], times 32767, truncated
   toward zero to int16, divided by 32767 (:func:`int16_round_trip`);
4. windows of 480,000 samples (10 s): a clip under 10 s is one window, brought to 480,000
   samples by the pad rule, ``"repeat"`` (LAION-CLAP's default ``repeatpad``: the clip tiled
   ``480000 // samples`` times, then zeros at the end) or ``"zero"`` (zeros at the end, fadtk's
   choice); a longer clip gives ceil(samples / 480000) windows of real audio, starting at
   0 s, 10 s, 20 s, ..., except the last, which is the clip's final 10 s (overlapping the one
   before when the length is not a multiple of 10 s, as LAION-CLAP's ``audio_infer`` does).

So a drum one-shot gives one (padded) window, a clip of exactly k x 10 s k windows, and no window
of a clip of 10 s or more is padded: a tail of a few samples is never tiled into a window of its
own. The first window is LAION-CLAP's embedding of the first 10 s (LAION-CLAP's file API embeds
one random 10 s crop of a longer clip; fadtk embeds 10 s windows every 1 s, zero-padded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dose_model.errors import DoseError
from dose_model.fad.embedder import EmbedderInfo
from dose_model.fad.htsat import CLIP_SAMPLES, SAMPLE_RATE, ClapAudioNetwork, HtsatConfig
from dose_model.fileio import load_weights_only
from rmod_dose_common.fileio import sha256_file

PAD_RULES = ("repeat", "zero")
"""How a window shorter than 10 s is filled: LAION-CLAP's tiling or fadtk's zeros."""
RESAMPLER = "soxr_hq"
"""librosa ``res_type`` used to bring other rates to 48 kHz."""
BATCH_WINDOWS = 8
"""Windows per forward pass in :meth:`ClapEmbedder.embed`."""

_PREFIX = "module."
_KEPT = ("audio_branch.", "audio_projection.")
_RENAMED = {
    "audio_branch.spectrogram_extractor.stft.conv_real.weight": "audio_branch.stft_real",
    "audio_branch.spectrogram_extractor.stft.conv_imag.weight": "audio_branch.stft_imag",
    "audio_branch.logmel_extractor.melW": "audio_branch.mel_basis",
}
_UNUSED = ("audio_branch.tscam_conv.", "audio_branch.head.")
_FUSION = ("mel_conv1d", "mel_conv2d", "fusion_model")


class ClapWeightsError(DoseError, ValueError):
    """A CLAP weights file that cannot be used; the message names the file and the key."""


def audio_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The audio tensors of a checkpoint state dict, under :class:`ClapAudioNetwork`'s names.

    ``state``: the ``state_dict`` of a LAION-CLAP checkpoint (keys with or without the
    ``module.`` prefix). Keeps ``audio_branch.*`` and ``audio_projection.*``, renames the STFT
    and mel tensors, drops the classifier head. ``source`` names the file in errors.
    """
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        if not name.startswith(_KEPT) or name.startswith(_UNUSED):
            continue
        if any(part in name for part in _FUSION):
            raise ClapWeightsError(
                f"{source}: {key} belongs to a feature-fusion CLAP model, which is not supported; "
                "use a checkpoint without fusion (630k-audioset-best.pt or music_audioset_epoch_15_esc_90.14.pt)"
            )
        kept[_RENAMED.get(name, name)] = value
    if not any(k.startswith("audio_branch.") for k in kept) or not any(
        k.startswith("audio_projection.") for k in kept
    ):
        raise ClapWeightsError(
            f"{source}: no audio_branch.* / audio_projection.* tensors: not a LAION-CLAP checkpoint with an audio encoder"
        )
    return kept


def _shape(shapes: Mapping[str, tuple[int, ...]], key: str, source: str) -> tuple[int, ...]:
    if key not in shapes:
        raise ClapWeightsError(f"{source}: missing {key}: not the HTSAT layout of LAION-CLAP")
    return tuple(shapes[key])


def config_from_shapes(shapes: Mapping[str, tuple[int, ...]], source: str) -> HtsatConfig:
    """Derive the network's shape from the shapes of :func:`audio_state`'s tensors.

    Stages and blocks are counted from ``audio_branch.layers.{i}.blocks.{j}``; heads are the
    second dimension of each stage's ``relative_position_bias_table`` ``[(2W-1)**2, heads]``
    and the window W its first (of stage 0, whose grid is wider than any window).
    """
    fft = _shape(shapes, "audio_branch.stft_real", source)
    mel = _shape(shapes, "audio_branch.mel_basis", source)
    patch = _shape(shapes, "audio_branch.patch_embed.proj.weight", source)
    depths: list[int] = []
    while any(k.startswith(f"audio_branch.layers.{len(depths)}.blocks.") for k in shapes):
        stage = len(depths)
        blocks = 0
        while f"audio_branch.layers.{stage}.blocks.{blocks}.norm1.weight" in shapes:
            blocks += 1
        depths.append(blocks)
    if not depths or 0 in depths:
        raise ClapWeightsError(f"{source}: no Swin blocks found under audio_branch.layers.*")
    heads = []
    for stage in range(len(depths)):
        table = _shape(
            shapes,
            f"audio_branch.layers.{stage}.blocks.0.attn.relative_position_bias_table",
            source,
        )
        heads.append(table[1])
    table_rows = _shape(
        shapes, "audio_branch.layers.0.blocks.0.attn.relative_position_bias_table", source
    )[0]
    window = (math.isqrt(table_rows) + 1) // 2
    if (2 * window - 1) ** 2 != table_rows:
        raise ClapWeightsError(
            f"{source}: relative_position_bias_table has {table_rows} rows, not (2W-1)^2"
        )
    embed_dim = patch[0]
    hidden = _shape(shapes, "audio_branch.layers.0.blocks.0.mlp.fc1.weight", source)[0]
    joint = _shape(shapes, "audio_projection.2.weight", source)[0]
    if (
        len(fft) != 3
        or fft[0] != fft[2] // 2 + 1
        or mel[0] != fft[0]
        or patch[1] != 1
        or patch[2] != patch[3]
    ):
        raise ClapWeightsError(
            f"{source}: STFT {fft}, mel {mel} or patch {patch} shapes are not HTSAT's"
        )
    return HtsatConfig(
        n_fft=fft[2],
        mel_bins=mel[1],
        embed_dim=embed_dim,
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=window,
        patch_size=patch[2],
        mlp_ratio=hidden / embed_dim,
        qkv_bias="audio_branch.layers.0.blocks.0.attn.qkv.bias" in shapes,
        joint_dim=joint,
    )


def build_network(state: Mapping[str, torch.Tensor], source: str) -> ClapAudioNetwork:
    """A :class:`ClapAudioNetwork` in eval mode holding the tensors of ``state``
    (:func:`audio_state`'s output). The file's copies of the index and mask buffers that the
    network computes itself must equal them, proving the derived layout is the file's."""
    config = config_from_shapes({k: tuple(v.shape) for k, v in state.items()}, source)
    network = ClapAudioNetwork(config)
    stored = set(network.state_dict())
    derived = {k: v for k, v in network.named_buffers() if k not in stored}
    weights = {}
    for key, value in state.items():
        if key in derived:
            if value.shape != derived[key].shape or not torch.equal(
                value.to(derived[key].dtype), derived[key]
            ):
                raise ClapWeightsError(
                    f"{source}: {key} differs from the HTSAT layout derived from the shapes"
                )
        elif key.endswith((".attn_mask", ".relative_position_index")):
            raise ClapWeightsError(
                f"{source}: unexpected buffer {key} for the derived HTSAT layout"
            )
        else:
            weights[key] = value
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ClapWeightsError(
            f"{source}: tensors do not fit the derived HTSAT network: {' '.join(first[:3])}"
        ) from error
    return network.eval()


def load_clap(
    path: str | Path, *, pad: str = "repeat", int16: bool = False, device: str = "cpu"
) -> ClapEmbedder:
    """Load a LAION-CLAP checkpoint's audio encoder as a :class:`ClapEmbedder`.

    ``pad``: ``"repeat"`` or ``"zero"``, the rule for windows under 10 s. ``int16``: apply the
    16-bit round trip first (fadtk). ``device``: a torch device name. Raises
    :class:`ClapWeightsError` (naming ``path``) for a file that is not such a checkpoint.
    """
    path = Path(path)
    if pad not in PAD_RULES:
        raise ClapWeightsError(f"pad rule {pad!r} is not one of {', '.join(PAD_RULES)}")
    if not path.is_file():
        raise ClapWeightsError(f"{path}: no such CLAP weights file")
    checkpoint = load_weights_only(
        path, lambda reason: ClapWeightsError(f"{path}: cannot be read as weights: {reason}")
    )
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise ClapWeightsError(f"{path}: holds no state dict")
    network = build_network(audio_state(state, str(path)), str(path)).to(torch.device(device))
    info = EmbedderInfo(
        name="clap",
        sample_rate=SAMPLE_RATE,
        dim=network.config.joint_dim,
        weights_sha256=sha256_file(path),
        pad_rule=f"{pad}+int16" if int16 else pad,
        options={
            "pad": pad,
            "int16": int16,
            "window_samples": CLIP_SAMPLES,
            "long_clips": "10 s windows every 10 s, the last one the final 10 s",
            "resampler": RESAMPLER,
            "mono": "mean of channels",
        },
    )
    return ClapEmbedder(info=info, network=network, pad=pad, int16=int16)


def int16_round_trip(audio: np.ndarray) -> np.ndarray:
    """fadtk's and LAION-CLAP's 16-bit quantization: ``clip(x, -1, 1) * 32767`` truncated toward
    zero to int16, then divided by 32767. float32 in, float32 out, same shape."""
    quantized = (np.clip(audio, -1.0, 1.0) * np.float32(32767.0)).astype(np.int16)
    return (quantized / 32767.0).astype(np.float32)


def pad_window(window: np.ndarray, rule: str, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Fill a mono window of 1..``length`` samples to ``length``: ``"repeat"`` tiles it
    ``length // len(window)`` times and then zero-pads, ``"zero"`` only zero-pads (at the end)."""
    if rule not in PAD_RULES:
        raise ValueError(f"pad rule {rule!r} is not one of {', '.join(PAD_RULES)}")
    if rule == "repeat":
        window = np.tile(window, length // len(window))
    return np.pad(window, (0, length - len(window)))


def split_windows(mono: np.ndarray, rule: str, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Mono audio ``[samples]`` (at least one) -> ``[ceil(samples / length), length]``.

    Under ``length`` samples: one window padded by ``rule``. Otherwise windows start at
    ``0, length, 2 * length, ...`` and the last one is the final ``length`` samples."""
    if len(mono) < length:
        return pad_window(mono, rule, length)[None].astype(np.float32, copy=False)
    count = -(-len(mono) // length)
    starts = [i * length for i in range(count - 1)] + [len(mono) - length]
    return np.stack([mono[start : start + length] for start in starts]).astype(
        np.float32, copy=False
    )


def resample_to(mono: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 ``[samples]`` at ``sample_rate`` Hz -> float32 at ``target_rate`` Hz with soxr
    HQ, exactly ``ceil(samples * target_rate / sample_rate)`` samples long."""
    import librosa  # imported here: slow to import and only needed for other rates

    length = -(-len(mono) * target_rate // sample_rate)
    out = librosa.resample(
        mono, orig_sr=sample_rate, target_sr=target_rate, res_type=RESAMPLER, fix=False
    )
    out = out[:length] if len(out) >= length else np.pad(out, (0, length - len(out)))
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True)
class ClapEmbedder:
    """A loaded CLAP audio encoder with its pad rule; see the module docstring for the steps."""

    info: EmbedderInfo
    network: ClapAudioNetwork
    pad: str
    int16: bool

    def windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Steps 1-4: audio ``[channels, samples]`` (or ``[samples]``) at ``sample_rate`` Hz ->
        float32 windows ``[n, 480000]`` at 48 kHz, ready for the network."""
        audio = np.asarray(audio, dtype=np.float32)
        if (
            audio.ndim not in (1, 2)
            or audio.shape[-1] == 0
            or (audio.ndim == 2 and audio.shape[0] == 0)
        ):
            raise ValueError(
                f"audio must be [channels, samples] with samples > 0, got shape {audio.shape}"
            )
        if not np.isfinite(audio).all():
            raise ValueError("audio contains NaN or infinite samples")
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample rate must be a positive integer (Hz), got {sample_rate}")
        mono = audio if audio.ndim == 1 else audio.mean(axis=0)
        if sample_rate != SAMPLE_RATE:
            mono = resample_to(mono, int(sample_rate))
        if self.int16:
            mono = int16_round_trip(mono)
        return split_windows(mono, self.pad)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """float32 ``[n, 480000]`` at 48 kHz -> unit-norm float32 ``[n, dim]``, all ``n`` in one
        forward pass."""
        device = next(self.network.parameters()).device
        with torch.inference_mode():
            batch = torch.as_tensor(np.ascontiguousarray(windows, dtype=np.float32), device=device)
            return self.network(batch).cpu().numpy()

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """float32 audio ``[channels, samples]`` at any rate -> float32 ``[windows, dim]``, one
        unit-norm row per 10 s window (a clip under 10 s gives one row)."""
        windows = self.windows(audio, sample_rate)
        rows = [
            self.embed_windows(windows[i : i + BATCH_WINDOWS])
            for i in range(0, len(windows), BATCH_WINDOWS)
        ]
        return np.concatenate(rows, axis=0)
