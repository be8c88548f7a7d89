"""Shared test fixtures: the built-in library and a small synthetic on-disk library.

``builtin_library``: ``Library.load(None)``, generated once per session (CI points
``RMOD_CACHE_DIR`` at a fresh folder, so it is built from scratch there).

``small_library``: a tiny library indexed from synthetic files written to a temporary
folder: percussive one-shots (kick/snare/hihat, 0.3-0.8 s) and harmonic loops
(bass/piano/guitar/vocal, 5 s), all 22.05 kHz mono 16-bit WAV, with exactly
``SMALL_PER_SPLIT`` entries of every class in every split. Splits follow content
hashes, so variants are drawn until every (class, split) cell is filled.
"""

from __future__ import annotations

import numpy as np
import pytest

from rmod import CLASSES, DRUMS, SPLITS
from rmod.audio import to_pcm16, write_audio
from rmod.library.catalog import Library
from rmod.library.hashing import content_hash, split_for_hash
from rmod.library.indexing import index_library

SMALL_SR = 22050
SMALL_PER_SPLIT = 2
SMALL_LOOP_S = 5.0


def synth_oneshot(cls: str, rng: np.random.Generator, sr: int = SMALL_SR) -> np.ndarray:
    """A short percussive sound of a drum class, float32 ``[1, samples]``.

    kick: pitch-swept sine (~50-70 Hz), snare: 180-220 Hz tone + noise, hihat:
    differentiated (high-passed) noise; each with an exponential decay from sample 0.
    """
    dur = rng.uniform(0.3, 0.8)
    t = np.arange(int(dur * sr)) / sr
    if cls == "kick":
        f0 = rng.uniform(50, 70)
        phase = 2 * np.pi * (f0 * t + rng.uniform(60, 120) * (1 - np.exp(-t * 30)) / 30)
        x = np.sin(phase) * np.exp(-t * rng.uniform(6, 12))
    elif cls == "snare":
        tone = np.sin(2 * np.pi * rng.uniform(180, 220) * t)
        noise = rng.standard_normal(t.size)
        x = (0.5 * tone + 0.5 * noise) * np.exp(-t * rng.uniform(12, 20))
    else:
        noise = np.diff(rng.standard_normal(t.size + 1))
        x = noise * np.exp(-t * rng.uniform(20, 40))
    x = 0.8 * x / np.max(np.abs(x))
    return x[None, :].astype(np.float32)


def synth_loop(cls: str, rng: np.random.Generator, sr: int = SMALL_SR) -> np.ndarray:
    """A 5 s loop of notes with a few harmonics, float32 ``[1, samples]``."""
    n = int(SMALL_LOOP_S * sr)
    base = {"bass": 40, "piano": 60, "guitar": 55, "vocal": 64}[cls]
    n_notes = int(rng.integers(4, 9))
    out = np.zeros(n)
    edges = np.linspace(0, n, n_notes + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        f = 440.0 * 2 ** ((base + int(rng.integers(0, 12)) - 69) / 12)
        t = np.arange(b - a) / sr
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 4))
        out[a:b] = note * np.exp(-t * 2.0)
    out = 0.7 * out / np.max(np.abs(out))
    return out[None, :].astype(np.float32)


def write_small_library(folder, seed: int = 1234, per_split: int = SMALL_PER_SPLIT):
    """Write the synthetic class folders under ``folder`` and index them.

    Returns the :class:`rmod.library.indexing.IndexReport`. The split of each candidate is
    predicted from the hash of the audio as it will decode (16-bit), so only the
    needed files are written.
    """
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        need = {s: per_split for s in SPLITS}
        k = 0
        while any(need.values()):
            audio = synth_oneshot(cls, rng) if cls in DRUMS else synth_loop(cls, rng)
            decoded = (to_pcm16(audio).T.astype(np.float32) / 32768.0).astype(np.float32)
            split = split_for_hash(content_hash(decoded))
            if need[split] > 0:
                need[split] -= 1
                write_audio(folder / "src" / cls / f"{cls}_{k:03d}.wav", audio, SMALL_SR)
            k += 1
    return index_library(folder / "src", folder / "small.rmodlib.jsonl")


@pytest.fixture(scope="session")
def small_library(tmp_path_factory) -> Library:
    """A small synthetic library: every class has ``SMALL_PER_SPLIT`` entries per split."""
    folder = tmp_path_factory.mktemp("small_library")
    report = write_small_library(folder)
    assert not report.refused, report.refused
    return Library.load(report.library_path)


@pytest.fixture(scope="session")
def builtin_library() -> Library:
    """The built-in library (generated into the cache on first use in this session)."""
    return Library.load(None)
