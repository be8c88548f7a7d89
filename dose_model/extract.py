"""One-shot extraction from a song: the inference half of DOSE.

For each song::

    audio file --read_mono--> mono at the codec's rate --window--> 4 s clip
      --DacCodec.encode--> codes [9, 345] --mixture_sequence--> tokens [353, 9]
      --generate (one model per drum)--> target tokens --revert_target--> codes [9, F]
      --DacCodec.decode--> one-shot audio [F * hop] --> 16-bit mono WAV

The models see one 4 s clip (``model.config.mixture_len`` = 345 frames + 8 delay rows). A song
is longer, so a clip is chosen: by default the loudest window on a 0.5 s grid (intros and
fade-outs are often drum-less); ``start_s`` picks one by hand. A song shorter than the window
is zero-padded at the end, as the training mixtures are.

Models come from our checkpoints (``dose-train``'s ``best.ckpt``) or from the published
Lightning checkpoints; `dose_model.checkpoints.load_any_model` tells them apart.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dose_model.codec import DacCodec, sha256_file
from dose_model.fileio import atomic_write_bytes, atomic_write_text
from dose_model.generate import generate
from dose_model.model import DoseTransformer
from dose_model.tokenize import read_mono
from dose_model.tokens import mixture_sequence, revert_target, target_lengths

WINDOW_S = 4.0
"""Length of the mixture clip the models were trained on (RMOD mixtures)."""
GRID_S = 0.5
"""Step between the candidate clip starts of the loudest-window search."""


class ExtractError(ValueError):
    """A song or a model cannot be used; the message names the file."""


def loudest_window(audio: np.ndarray, window: int, grid: int) -> int:
    """Start sample of the ``window``-sample stretch of ``audio`` with the most energy, among
    starts ``0, grid, 2 grid, ...`` (and the last full window); 0 when the audio is shorter."""
    if audio.shape[0] <= window:
        return 0
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    last = audio.shape[0] - window
    starts = np.unique(np.append(np.arange(0, last + 1, grid), last))
    return int(starts[np.argmax(energy[starts + window] - energy[starts])])


def clip(audio: np.ndarray, start: int, window: int) -> np.ndarray:
    """``audio[start : start + window]``, zero-padded at the end to ``window`` samples."""
    out = np.zeros(window, dtype=np.float32)
    part = audio[start : start + window]
    out[: part.shape[0]] = part
    return out


@dataclass
class OneShot:
    """One extracted one-shot: mono float32 ``audio`` at ``sample_rate``, the ``frames`` of
    codes it was decoded from, and whether the model ended it (``ended``) or it ran into the
    length limit."""

    drum: str
    audio: np.ndarray
    sample_rate: int
    frames: int
    ended: bool


def extract_clips(
    mixtures: np.ndarray,
    codec: DacCodec,
    models: dict[str, DoseTransformer],
    strategy: str = "greedy",
    top_p: float = 0.9,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[dict[str, OneShot]]:
    """Generate each drum's one-shot from a batch of mixture clips.

    Args:
        mixtures: float32 mono ``[B, samples]`` at ``codec.sample_rate`` (``WINDOW_S`` long).
        codec: the DAC codec the models' tokens were made with.
        models: drum name -> model (eval mode, on ``codec.device``).
        strategy, top_p, temperature: sampling (see `dose_model.generate.sample_tokens`).
        seed: seed of the sampling generator (each drum starts from it; greedy ignores it).

    Returns:
        Per clip, drum -> `OneShot`; a model that ends at once gives an empty ``audio``.
    """
    codes = codec.encode(torch.from_numpy(np.ascontiguousarray(mixtures))[:, None])  # [B, 9, T]
    tokens = mixture_sequence(codes.cpu())
    out: list[dict[str, OneShot]] = [{} for _ in range(mixtures.shape[0])]
    for drum, model in models.items():
        want = model.config.mixture_len
        if tokens.shape[1] != want:
            raise ExtractError(
                f"{drum} model takes {want} mixture positions, but a {mixtures.shape[1]}-sample "
                f"clip gives {tokens.shape[1]} with this codec (hop {codec.hop_length})"
            )
        device = next(model.parameters()).device
        gen_device = device if device.type == "cuda" else torch.device("cpu")
        generator = torch.Generator(device=gen_device).manual_seed(seed)
        g = generate(
            model,
            tokens.to(device),
            strategy=strategy,
            top_p=top_p,
            temperature=temperature,
            generator=generator,
        )
        lengths = target_lengths(g.tokens).tolist()
        shot_codes = revert_target(g.tokens)
        for b, frames in enumerate(lengths):
            if frames:  # decoded alone: the codec's context never sees another clip's fill
                decoded = codec.decode(shot_codes[b : b + 1, :, :frames])
                audio = decoded.cpu().numpy()[0, 0].astype(np.float32)
            else:
                audio = np.zeros(0, dtype=np.float32)
            out[b][drum] = OneShot(drum, audio, codec.sample_rate, frames, bool(g.ended[b]))
    return out


def extract_clip(
    mixture: np.ndarray, codec: DacCodec, models: dict[str, DoseTransformer], **sampling
) -> dict[str, OneShot]:
    """`extract_clips` for one mixture clip ``[samples]``."""
    return extract_clips(mixture[None], codec, models, **sampling)[0]


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio -> 16-bit PCM WAV file bytes (clipped to [-1, 1])."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


@dataclass
class SongResult:
    """What `extract_song` wrote for one song (also its JSON sidecar's content)."""

    song: str
    song_sha256: str
    start_s: float
    window_s: float
    chosen: str  # "loudest" or "given"
    oneshots: dict[str, dict]


def extract_song(
    song: str | Path,
    codec: DacCodec,
    models: dict[str, DoseTransformer],
    out_dir: str | Path,
    start_s: float | None = None,
    checkpoints: dict[str, str] | None = None,
    **sampling,
) -> SongResult:
    """Extract every drum of ``models`` from one song and write, atomically,
    ``out_dir/<stem>.<drum>.wav`` (16-bit mono at the codec's rate) and
    ``out_dir/<stem>.extract.json`` (the clip, the settings and each file's frames and peak).

    Args:
        song: any audio file soundfile reads (WAV, FLAC, AIFF, OGG, MP3 ...), any rate.
        codec, models: as `extract_clip`.
        out_dir: created if missing.
        start_s: clip start in seconds; None = the loudest window.
        checkpoints: drum -> checkpoint path, recorded in the sidecar.
        **sampling: strategy, top_p, temperature, seed for `extract_clip`.

    Raises:
        ExtractError: the song cannot be read, or ``start_s`` lies outside it.
    """
    from dose_model.tokenize import RowAudioError

    song = Path(song)
    sr = codec.sample_rate
    try:
        audio = read_mono(song, sr)
    except RowAudioError as err:
        raise ExtractError(str(err)) from None
    window = int(round(WINDOW_S * sr))
    if start_s is None:
        start, chosen = loudest_window(audio, window, int(round(GRID_S * sr))), "loudest"
    else:
        duration = audio.shape[0] / sr
        if not 0.0 <= start_s < duration:
            raise ExtractError(
                f"{song}: --start {start_s} s is outside the song (0..{duration:.2f} s)"
            )
        start, chosen = int(round(start_s * sr)), "given"
    shots = extract_clip(clip(audio, start, window), codec, models, **sampling)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, dict] = {}
    for drum, shot in shots.items():
        path = out_dir / f"{song.stem}.{drum}.wav"
        if shot.frames:
            atomic_write_bytes(path, wav_bytes(shot.audio, shot.sample_rate))
        peak = float(np.abs(shot.audio).max()) if shot.audio.size else 0.0
        record[drum] = {
            "file": path.name if shot.frames else None,
            "frames": shot.frames,
            "seconds": shot.audio.shape[0] / shot.sample_rate,
            "ended": shot.ended,
            "peak_dbfs": 20 * math.log10(peak) if peak > 0 else None,
            "checkpoint": (checkpoints or {}).get(drum),
        }
    result = SongResult(
        song=str(song),
        song_sha256=sha256_file(song),
        start_s=start / sr,
        window_s=WINDOW_S,
        chosen=chosen,
        oneshots=record,
    )
    sidecar = {**asdict(result), "sampling": sampling, "codec_sha256": codec.sha256}
    atomic_write_text(out_dir / f"{song.stem}.extract.json", json.dumps(sidecar, indent=2) + "\n")
    return result
