"""Small helpers for the `dose_model` tests: reference fixture paths, a tiny RMOD-format
dataset writer and a tiny random DAC weights file. No `rmod` import: the dataset follows
the documented manifest format (docs/ARCHITECTURE.md) on its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dose_model import DRUMS

REFERENCE_DIR = Path(__file__).parent / "fixtures" / "reference"
DAC_TINY_PTH = REFERENCE_DIR / "dac_tiny.pth"
DAC_TINY_JSON = REFERENCE_DIR / "dac_tiny.json"
DAC_TINY_REFERENCE = REFERENCE_DIR / "dac_tiny_reference.npz"
DAC_44KHZ_SHAPES = REFERENCE_DIR / "dac_44khz_state_dict_shapes.json"

TINY_CODEC_KWARGS = {"encoder_dim": 1, "decoder_dim": 16}
#: A tiny random DOSE model over 12 mixture positions (generation tests).
TINY_MODEL = dict(num_layers=2, num_heads=2, d_model=32, mixture_len=12, max_target_len=16)
"""A random codec small enough for fast tests: still hop 512, 9 codebooks x 1024, 44.1 kHz."""

SAMPLE_RATE = 44100


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in the model tests (imported there): tiny models run faster on one
    thread, and much faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tiny_codec(
    path: Path, seed: int = 0, kwargs: dict | None = None, loud: bool = False
) -> Path:
    """Write a random-weight DAC in the released file format to ``path``; returns it.

    Random weights decode to near-silence (peaks ~1e-7); ``loud`` scales the decoder's last
    convolution so that decoded audio reaches about -6 dBFS, for tests that compare sounds.
    """
    from dose_model.codec.dac_codec import DacCodec

    codec = DacCodec.random(kwargs or TINY_CODEC_KWARGS, seed=seed)
    if loud:
        with torch.no_grad():
            codec.model.decoder.model[-2].weight_g.mul_(3e6)  # the conv before the tanh
    codec.save(path)
    return path


def write_tiny_dose_checkpoint(path: Path, max_target_len: int = 14, seed: int = 0) -> Path:
    """Write a random-weight our-mode model (1 layer, d_model 32, the published 353 mixture
    positions) as a dose-train checkpoint to ``path``; returns it."""
    from dose_model.model.checkpoints import FORMAT
    from dose_model.model.config import ModelConfig
    from dose_model.model.transformer import DoseTransformer

    torch.manual_seed(seed)
    cfg = ModelConfig(num_layers=1, num_heads=2, d_model=32, max_target_len=max_target_len)
    state = DoseTransformer(cfg).state_dict()
    torch.save({"format": FORMAT, "model_config": cfg.to_dict(), "model": state}, path)
    return path


def _burst(rng: np.random.Generator, samples: int, sr: int) -> np.ndarray:
    """A decaying tone + noise burst, float32 [2, samples] (a stand-in for a drum hit)."""
    t = np.arange(samples) / sr
    f0 = rng.uniform(60.0, 4000.0)
    env = np.exp(-t * rng.uniform(4.0, 30.0))
    mono = env * (0.6 * np.sin(2 * np.pi * f0 * t) + 0.2 * rng.standard_normal(samples))
    pan = rng.uniform(0.3, 0.7)
    return (np.stack([mono * (1 - pan), mono * pan]) * 0.8).astype(np.float32)


def _write_wav(path: Path, audio: np.ndarray, sr: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(audio.T * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(str(path), pcm, sr, subtype="PCM_16")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_fake_rmod(
    root: Path,
    counts: dict[str, int] | None = None,
    seed: int = 0,
    mixture_seconds: float = 4.0,
    oneshot_seconds: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
    shard_size: int = 4,
) -> Path:
    """Write a tiny dataset in the RMOD manifest format and return its folder ``root``.

    ``root/manifests/{split}.jsonl`` rows with ``id``, ``split``, ``index``, ``seed``,
    ``mixture``, ``oneshots`` (relative paths), ``sample_rate``, ``checksums``, ``sources``,
    ``params``; audio: 16-bit stereo WAVs in ``root/{split}/{shard:06d}/``. The mixture is
    the three one-shots placed at a few random onsets (``mixture_seconds`` long), the
    one-shots are ``oneshot_seconds`` long. Deterministic for ``seed``.
    """
    counts = counts or {"train": 4, "valid": 2}
    rng = np.random.default_rng(seed)
    n_mix = round(mixture_seconds * sample_rate)
    n_shot = round(oneshot_seconds * sample_rate)
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    for split, n_rows in counts.items():
        lines = []
        for index in range(n_rows):
            row_id = f"{split}-{index:06d}"
            rel_dir = Path(split) / f"{index // shard_size:06d}"
            shots = {d: _burst(rng, n_shot, sample_rate) for d in DRUMS}
            mix = np.zeros((2, n_mix), dtype=np.float32)
            for shot in shots.values():
                for onset in rng.integers(0, n_mix - 1, size=3):
                    end = min(n_mix, onset + n_shot)
                    mix[:, onset:end] += shot[:, : end - onset]
            mix *= 0.5
            rels = {"mixture": str(rel_dir / f"{row_id}_mix.wav")}
            rels |= {d: str(rel_dir / f"{row_id}_{d}.wav") for d in DRUMS}
            checksums = {"mixture": _write_wav(root / rels["mixture"], mix, sample_rate)}
            for d in DRUMS:
                checksums[d] = _write_wav(root / rels[d], shots[d], sample_rate)
            row = {
                "id": row_id,
                "split": split,
                "index": index,
                "seed": seed,
                "mixture": rels["mixture"],
                "oneshots": {d: rels[d] for d in DRUMS},
                "sample_rate": sample_rate,
                "checksums": checksums,
                "sources": {d: [f"fake-{d}"] for d in DRUMS},
                "params": {},
            }
            lines.append(json.dumps(row))
        (root / "manifests" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "build.json").write_text(json.dumps({"format": "fake-rmod", "counts": counts}))
    return root


def tiny_model(published: bool = False, seed: int = 0):
    """A :data:`TINY_MODEL` DOSE transformer with seeded random weights, in eval mode."""
    from dose_model.model.config import ModelConfig
    from dose_model.model.transformer import DoseTransformer

    torch.manual_seed(seed)
    extra = {"published": True, "positions": "none"} if published else {}
    return DoseTransformer(ModelConfig(**TINY_MODEL, **extra)).eval()


def tiny_mixture(b: int = 3, seed: int = 1) -> torch.Tensor:
    """Random mixture tokens ``[b, 12, 9]`` for :func:`tiny_model`."""
    return torch.randint(1, 1025, (b, 12, 9), generator=torch.Generator().manual_seed(seed))
