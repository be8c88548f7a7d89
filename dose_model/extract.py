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

import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dose_model.codec import DacCodec, sha256_file
from dose_model.fileio import atomic_write_bytes, atomic_write_text
from dose_model.generate import generate
from dose_model.model import DoseTransformer
from dose_model.tokenize import RowAudioError, clip, read_mono
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


def element_seed(seed: int, key: str, drum: str) -> int:
    """Seed of one clip's sampling: a function of (seed, clip key, drum) only, so a clip's
    one-shot does not depend on which other clips share its batch."""
    digest = hashlib.sha256(f"{seed}:{key}:{drum}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def extract_clips(
    mixtures: np.ndarray,
    codec: DacCodec,
    models: dict[str, DoseTransformer],
    keys: Sequence[str] | None = None,
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
        keys: one name per clip (e.g. the row id); with top-p each clip samples from its own
            generator seeded by ``element_seed(seed, key, drum)``. Default: "" for every clip.
        strategy, top_p, temperature: sampling (see `dose_model.generate.sample_tokens`).
            Greedy clips are generated as one batch; top-p clips one at a time.
        seed: the sampling seed (greedy ignores it).

    Returns:
        Per clip, drum -> `OneShot` of at most ``max_target_len - 10`` frames (the longest
        training target); a model that ends at once gives an empty ``audio``.
    """
    n = mixtures.shape[0]
    keys = list(keys) if keys is not None else [""] * n
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} clips")
    codes = codec.encode(torch.from_numpy(np.ascontiguousarray(mixtures))[:, None])  # [B, 9, T]
    tokens = mixture_sequence(codes.cpu())
    out: list[dict[str, OneShot]] = [{} for _ in range(n)]
    for drum, model in models.items():
        check_model_fits(model, codec, f"{drum} model")
        device = next(model.parameters()).device
        gen_device = device if device.type == "cuda" else torch.device("cpu")
        groups = [list(range(n))] if strategy == "greedy" else [[b] for b in range(n)]
        for group in groups:
            generator = None
            if strategy != "greedy":
                generator = torch.Generator(device=gen_device)
                generator.manual_seed(element_seed(seed, keys[group[0]], drum))
            g = generate(
                model,
                tokens[group].to(device),
                strategy=strategy,
                top_p=top_p,
                temperature=temperature,
                generator=generator,
            )
            limit = model.config.max_target_len - 10
            lengths = target_lengths(g.tokens).clamp(max=limit).tolist()
            shot_codes = revert_target(g.tokens)
            for row, b in enumerate(group):
                frames = lengths[row]
                if frames:  # decoded alone: the codec's context never sees another clip's fill
                    decoded = codec.decode(shot_codes[row : row + 1, :, :frames])
                    audio = decoded.cpu().numpy()[0, 0].astype(np.float32)
                else:
                    audio = np.zeros(0, dtype=np.float32)
                ended = bool(g.ended[row])
                out[b][drum] = OneShot(drum, audio, codec.sample_rate, frames, ended)
    return out


def extract_clip(
    mixture: np.ndarray, codec: DacCodec, models: dict[str, DoseTransformer], **sampling
) -> dict[str, OneShot]:
    """`extract_clips` for one mixture clip ``[samples]`` (key "")."""
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
        else:  # no one-shot this time: leave no file of an earlier run behind
            path.unlink(missing_ok=True)
        peak = float(np.abs(np.clip(shot.audio, -1.0, 1.0)).max()) if shot.audio.size else 0.0
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
