"""LarsNet drum separation from the released checkpoint folder, plain masks or alpha-Wiener.

LarsNet (Mezza et al., 2024) separates a stereo 44.1 kHz drum mix into five stems with one
U-Net per stem (`dose_model.separate.unet.MaskUNet`). Its released folder
``pretrained_larsnet_models/`` holds ``{stem}/pretrained_{stem}_unet.pth`` for the stems
`STEMS`, each ``{"model_state_dict": ..., "epoch": ...}``; `load_larsnet` reads it (tensors
only, ``weights_only=True``) and takes every width from the weights' shapes.

What `LarsNet.separate` computes, the same as LarsNet's own code up to float rounding:

1. **STFT** of each channel: n_fft 4096, hop 1024, periodic Hann window of 4096, centered
   (reflect padding of 2048 at both ends). Before it, the signal is zero-padded at its end to
   a whole number of hops (LarsNet's ``pad_stft_input``); a signal that would then still be
   too short for the reflect padding (2048 samples or fewer, where LarsNet's own code fails)
   is zero-padded to 3072 samples, the shortest length it accepts.
2. **Masks** from the magnitude: its first 2048 bins (the model's ``input_norm`` size), cut
   into chunks of 512 frames from frame 0 (the last chunk zero-padded to 512), each chunk
   through the stem's U-Net; the mask is 0 for the bins above.
3. **Plain masks** (LarsNet's default): stem = mask x mixture STFT.
   **alpha-Wiener** (``wiener_alpha=a``): every one of the five models gives a magnitude
   estimate ``P_s = (mask_s x |X|) ** a``; stem s = ``P_s / (sum of the five P + 1e-7)`` x
   mixture STFT. So the Wiener variant needs all five stems loaded, even to return three.
4. **Inverse STFT** with the mixture's phase (the same window, overlap-add divided by the
   summed squared window), cut to the input's length.

Memory stays bounded for long songs: the work runs one 512-frame chunk (11.9 s) at a time,
from STFT frames to overlap-added output, which gives the same frames and masks as
LarsNet's whole-song STFT (its U-Net sees the same 512-frame chunks). What grows with the
song is the input and one output waveform per returned stem (float32).

Mono input is duplicated to both channels (as LarsNet does). Input at another sample rate
is resampled to 44.1 kHz with SciPy's polyphase ``resample_poly`` (its default Kaiser window,
beta 5), separated, and resampled back the same way, then cut or zero-padded to the input's
length; LarsNet's own loader uses torchaudio's sinc resampler, so results for other rates
differ slightly from LarsNet's.

On CUDA, PyTorch's default lets cuDNN run the convolutions in TF32, which moves the masks
slightly; turn it off (``torch.backends.cudnn.allow_tf32 = False``) for float32 results.
The released weights are CC BY-NC 4.0; this project ships none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from dose_model.errors import DoseError
from dose_model.fileio import load_weights_only
from dose_model.separate.unet import DEPTH, MaskUNet, widths_from_state_dict

SAMPLE_RATE = 44100
"""Sample rate LarsNet works at (Hz)."""
N_FFT = 4096
"""STFT size and window length (samples)."""
HOP = 1024
"""STFT hop (samples)."""
CHUNK_FRAMES = 512
"""STFT frames the U-Nets see at once (LarsNet's ``T``)."""
WIENER_EPS = 1e-7
"""Added to the sum of the five magnitude estimates in the alpha-Wiener masks."""
STEMS = ("kick", "snare", "toms", "hihat", "cymbals")
"""LarsNet's stems, in its order (the folder names of the released checkpoints)."""
DRUM_STEMS = ("kick", "snare", "hihat")
"""The stems DOSE extracts one-shots of."""


class LarsNetError(DoseError, ValueError):
    """A LarsNet folder or checkpoint cannot be used, or an input cannot be separated; the
    message names the file or the argument."""


def checkpoint_path(folder: str | Path, stem: str) -> Path:
    """Where the released folder layout keeps ``stem``'s weights."""
    return Path(folder) / stem / f"pretrained_{stem}_unet.pth"


def load_unet(path: str | Path, device: str | torch.device = "cpu") -> MaskUNet:
    """One stem's U-Net from a LarsNet checkpoint file, in eval mode on ``device``.

    Raises `LarsNetError` (one line, naming ``path``) for a missing or unreadable file, a file
    without ``model_state_dict``, or weights whose keys or shapes are not LarsNet's layout.
    """
    path = Path(path)
    if not path.is_file():
        raise LarsNetError(f"{path}: no such file (a LarsNet checkpoint was expected there)")
    ckpt = load_weights_only(path, lambda reason: LarsNetError(f"{path}: {reason}"))
    state = ckpt.get("model_state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise LarsNetError(f"{path}: not a LarsNet checkpoint (no 'model_state_dict')")
    bad = next((k for k, v in state.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        raise LarsNetError(f"{path}: not a LarsNet checkpoint ({bad!r} is not a tensor)")
    try:
        widths, bins, channels = widths_from_state_dict(state)
    except KeyError as err:
        raise LarsNetError(f"{path}: not a LarsNet U-Net (no {err.args[0]!r})") from None
    except ValueError as err:
        raise LarsNetError(f"{path}: not a LarsNet U-Net ({err})") from None
    if channels != 2:
        raise LarsNetError(f"{path}: enc1 takes {channels} channels; LarsNet is stereo (2)")
    if bins % 2**DEPTH or not 0 < bins <= N_FFT // 2:
        raise LarsNetError(
            f"{path}: input_norm has {bins} bins; expected a multiple of {2**DEPTH} up to "
            f"{N_FFT // 2}"
        )
    if min(widths) < 1:
        raise LarsNetError(f"{path}: an encoder has no channels (widths {list(widths)})")
    model = MaskUNet(widths, bins, channels)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        more = len(missing) + len(extra) - 1
        raise LarsNetError(
            f"{path}: not LarsNet's U-Net layout ({what}"
            + (f" and {more} more key differences)" if more else ")")
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise LarsNetError(
                f"{path}: {key} has shape {list(state[key].shape)}; encoder widths "
                f"{list(widths)} need {list(value.shape)}"
            )
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)


def load_larsnet(
    folder: str | Path, *, stems: Iterable[str] = STEMS, device: str | torch.device = "cpu"
) -> LarsNet:
    """The U-Nets of ``stems`` from LarsNet's released folder (``{stem}/pretrained_{stem}_unet.pth``
    under ``folder``), in eval mode on ``device``.

    Load all five `STEMS` for the alpha-Wiener variant; plain masks need only the stems they
    return. Raises `LarsNetError` naming the folder or the file that is missing or wrong.
    """
    folder, stems = Path(folder), tuple(stems)
    unknown = [s for s in stems if s not in STEMS]
    if unknown or not stems:
        raise LarsNetError(f"stems {list(stems)}: choose among {', '.join(STEMS)}")
    if not folder.is_dir():
        raise LarsNetError(f"{folder}: not a folder (LarsNet's pretrained_larsnet_models)")
    device = torch.device(device)
    files = {s: checkpoint_path(folder, s) for s in dict.fromkeys(stems)}
    models = {s: load_unet(p, device) for s, p in files.items()}
    return LarsNet(models=models, files=files, device=device)


@dataclass(frozen=True)
class LarsNet:
    """Loaded LarsNet models (see the module text); make it with `load_larsnet`.

    Attributes:
        models: stem -> its U-Net, in eval mode on ``device``.
        files: stem -> the checkpoint file it was loaded from.
        device: where the U-Nets run.
    """

    models: Mapping[str, MaskUNet]
    files: Mapping[str, Path]
    device: torch.device

    @property
    def stems(self) -> tuple[str, ...]:
        """The loaded stems, in the order they were asked for."""
        return tuple(self.models)

    def check(
        self, stems: Iterable[str] | None = None, wiener_alpha: float | None = None
    ) -> tuple[str, ...]:
        """The stems `separate` would return for these arguments (default: every loaded
        one); raises `LarsNetError` when a stem is not loaded, ``wiener_alpha`` is not a
        positive number, or Wiener masks are asked for without all five stems loaded."""
        wanted = self.stems if stems is None else tuple(dict.fromkeys(stems))
        missing = [s for s in wanted if s not in self.models]
        if missing or not wanted:
            what = f"not loaded: {', '.join(missing)}" if missing else "none asked for"
            raise LarsNetError(f"stems {what} (loaded: {', '.join(self.stems)})")
        if wiener_alpha is not None:
            if not (math.isfinite(wiener_alpha) and wiener_alpha > 0):
                raise LarsNetError(f"wiener_alpha {wiener_alpha}: must be a positive number")
            absent = [s for s in STEMS if s not in self.models]
            if absent:
                raise LarsNetError(
                    f"alpha-Wiener masks use all five LarsNet stems; {', '.join(absent)} "
                    "not loaded (load_larsnet(..., stems=STEMS))"
                )
        return wanted

    def separate(
        self,
        mixture: np.ndarray | Tensor,
        *,
        sample_rate: int = SAMPLE_RATE,
        wiener_alpha: float | None = None,
        stems: Iterable[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Separate a drum mix into stems.

        Args:
            mixture: ``[samples]``, ``[1, samples]`` (mono, duplicated to stereo) or
                ``[2, samples]``, float, at ``sample_rate``.
            sample_rate: of ``mixture`` and of the stems returned (Hz); other than 44.1 kHz
                means a resampling round trip (see the module text).
            wiener_alpha: None for LarsNet's plain masks; a positive number for its
                alpha-Wiener masks over all five stems (all of `STEMS` must be loaded).
            stems: which stems to return (default: every loaded one).

        Returns:
            stem -> float32 ``[2, samples]``, the same length and rate as ``mixture``.

        Raises:
            LarsNetError: a bad shape, an empty or non-finite mixture, a bad rate or alpha,
                a stem that is not loaded, or Wiener masks without all five stems.
        """
        wanted = self.check(stems, wiener_alpha)
        if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
            raise LarsNetError(f"sample_rate {sample_rate!r}: must be a positive integer")
        x = _as_stereo(mixture)
        n = x.shape[-1]
        if sample_rate != SAMPLE_RATE:
            x = resample(x, sample_rate, SAMPLE_RATE)
        with torch.inference_mode():
            out = self._separate_44k(torch.tensor(x), wanted, wiener_alpha)
        result = {}
        for stem, separated in out.items():
            y = separated.numpy()
            if sample_rate != SAMPLE_RATE:
                y = _fit(resample(y, SAMPLE_RATE, sample_rate), n)
            result[stem] = np.ascontiguousarray(y, dtype=np.float32)
        return result

    def _separate_44k(
        self, x: Tensor, wanted: tuple[str, ...], alpha: float | None
    ) -> dict[str, Tensor]:
        """Steps 1-4 of the module text on float32 ``[2, n]`` (CPU); stem -> ``[2, n]``."""
        n, half = x.shape[-1], N_FFT // 2
        length = _padded_length(n)
        signal = F.pad(F.pad(x, (0, length - n))[None], (half, half), mode="reflect")[0]
        frames = 1 + length // HOP
        window = torch.hann_window(N_FFT, periodic=True, device=self.device)
        run = STEMS if alpha is not None else wanted
        out = {s: torch.zeros(2, length + N_FFT) for s in wanted}
        envelope = torch.zeros(length + N_FFT)
        for f0 in range(0, frames, CHUNK_FRAMES):
            count = min(frames - f0, CHUNK_FRAMES)
            a, b = f0 * HOP, (f0 + count - 1) * HOP + N_FFT
            seg = signal[:, a:b].to(self.device).unfold(-1, N_FFT, HOP)  # [2, count, N_FFT]
            spec = torch.fft.rfft(seg * window, dim=-1).transpose(1, 2)  # [2, bins, count]
            mag = spec.abs()
            masks = {s: _chunk_mask(self.models[s], mag) for s in run}
            if alpha is not None:
                estimates = {s: (masks[s] * mag) ** alpha for s in run}
                total = sum(estimates.values()) + WIENER_EPS
                masks = {s: estimates[s] / total for s in wanted}
            for s in wanted:
                framed = torch.fft.irfft((spec * masks[s]).transpose(1, 2), n=N_FFT, dim=-1)
                out[s][:, a:b] += _overlap_add(framed * window, b - a).cpu()
            squared = (window**2).expand(1, count, N_FFT)
            envelope[a:b] += _overlap_add(squared, b - a)[0].cpu()
        norm = envelope[half : half + n]
        return {s: y[:, half : half + n] / norm for s, y in out.items()}


def _padded_length(n: int) -> int:
    """Samples after the end padding of step 1: ``n`` rounded up to whole hops (LarsNet's
    ``pad_stft_input`` for a window that is a multiple of the hop), at least 3072."""
    length = -(-n // HOP) * HOP
    return length if length > N_FFT // 2 else N_FFT // 2 + HOP


def _chunk_mask(model: MaskUNet, mag: Tensor) -> Tensor:
    """A stem's mask for one chunk: ``[2, N_FFT // 2 + 1, frames <= 512]`` magnitudes ->
    mask of the same shape (0 above the model's bins)."""
    count, all_bins = mag.shape[-1], mag.shape[-2]
    chunk = F.pad(mag[:, : model.bins], (0, CHUNK_FRAMES - count))[None]
    mask = model(chunk)[0, :, :, :count]
    return F.pad(mask, (0, 0, 0, all_bins - model.bins))


def _overlap_add(framed: Tensor, samples: int) -> Tensor:
    """Sum of frames ``[channels, count, N_FFT]`` placed every `HOP` samples:
    ``[channels, samples]``."""
    channels = framed.shape[0]
    summed = F.fold(
        framed.transpose(1, 2),
        output_size=(1, samples),
        kernel_size=(1, N_FFT),
        stride=(1, HOP),
    )
    return summed.reshape(channels, samples)


def _as_stereo(mixture: np.ndarray | Tensor) -> np.ndarray:
    """float32 ``[2, samples]`` from mono ``[samples]`` / ``[1, samples]`` or stereo input."""
    if isinstance(mixture, Tensor):
        mixture = mixture.detach().cpu().numpy()
    x = np.asarray(mixture, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] not in (1, 2):
        raise LarsNetError(
            f"mixture of shape {list(x.shape)}: expected [samples], [1, samples] or [2, samples]"
        )
    if x.shape[-1] == 0:
        raise LarsNetError("mixture holds no samples")
    if not np.isfinite(x).all():
        raise LarsNetError("mixture holds NaN or infinite samples")
    return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``x`` resampled along its last axis from ``rate_in`` to ``rate_out`` Hz with SciPy's
    polyphase ``resample_poly`` (Kaiser window, beta 5), float32; ``ceil(n * rate_out /
    rate_in)`` samples."""
    from scipy.signal import resample_poly

    g = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x[..., :n]``, zero-padded at the end to ``n`` samples."""
    x = x[..., :n]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
