"""Generate the built-in library: soundfont drums, synthesized drums, soundfont loops.

What it makes (counts per class are :class:`BuiltinConfig` fields):

* kick / snare / hi-hat one-shots: the first ``n_sf2_oneshots`` come from the General MIDI
  drum kits of the soundfont pretty_midi ships (8 kits in bank 128; kick keys 35/36, snare
  38/40 and hand clap 39, hi-hat 42/44/46; the kit's layers summed as a sampler plays
  them). The distinct kit sounds are played first as they are, then again with a random
  detune of +-5 semitones, an extra decay and a random level. The rest are synthesized
  (:mod:`rmod.builtin.synth`).
* bass / piano / guitar / vocal loops: random phrases (:mod:`rmod.builtin.phrases`)
  played by the soundfont's melodic programs through the sampler of
  :mod:`rmod.builtin.sf2`; note tails past the loop end wrap to its start so the loop
  repeats seamlessly.

Every item ``i`` of class ``c`` draws from its own generator
``SeedSequence([seed, class index, i])``, so the output does not depend on the number of
workers. Files are mono 16-bit FLAC; the manifest (:mod:`rmod.library` format, root ``.``)
is written last.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rmod import CLASSES, DRUMS
from rmod.audio import encode_audio, to_pcm16
from rmod.builtin.phrases import random_phrase
from rmod.builtin.sf2 import load_soundfont, render_note
from rmod.builtin.synth import SYNTHS
from rmod.library import LibraryEntry, content_hash, make_id, split_for_hash, write_manifest

log = logging.getLogger(__name__)

#: Bump whenever the generated audio changes: the cache folder is named after it, so an
#: older cache is never mistaken for the current library (tests/test_builtin.py pins a
#: summary of a few items to catch a change that forgot the bump).
BUILTIN_VERSION = 2
MANIFEST_NAME = "library.jsonl"

DRUM_KITS = (
    0,
    8,
    16,
    24,
    25,
    32,
    40,
    48,
)  # Standard, Room, Power, Electronic, TR-808, Jazz, Brush, Orchestra
DRUM_KEYS = {"kick": (35, 36), "snare": (38, 39, 40), "hihat": (42, 44, 46)}
# (kit, key) pairs whose sound is not of the class in this soundfont: timpani, ocean wave.
DRUM_EXCLUDE = {(48, 36), (40, 40)}
PROGRAMS = {
    "bass": tuple(range(32, 40)),
    "piano": tuple(range(0, 8)),
    "guitar": tuple(range(24, 32)),
    "vocal": (52, 53, 54, 85),  # choir aahs, voice oohs, synth voice, solo vox lead
}


@dataclass(frozen=True)
class BuiltinConfig:
    """Size and seed of the built-in library; the default is what users get."""

    n_oneshots: int = 330
    n_sf2_oneshots: int = 110
    n_loops: int = 80
    min_loop_s: float = 4.5
    sample_rate: int = 44100
    seed: int = 20240917

    def folder_name(self) -> str:
        """``builtin-v<version>`` for the default config, plus a config hash otherwise."""
        name = f"builtin-v{BUILTIN_VERSION}"
        if self != BuiltinConfig():
            digest = hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()
            name += f"-{digest[:10]}"
        return name

    def count(self, cls: str) -> int:
        """How many items of class ``cls`` are generated."""
        return self.n_oneshots if cls in DRUMS else self.n_loops


def item_rng(config: BuiltinConfig, cls: str, index: int) -> np.random.Generator:
    """The generator of item ``index`` of class ``cls``."""
    seq = np.random.SeedSequence([config.seed, CLASSES.index(cls), index])
    return np.random.Generator(np.random.PCG64(seq))


def _level(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Peak-normalize to a random level between -6 and -1 dBFS."""
    peak = float(np.max(np.abs(x)))
    return (x * (10 ** (rng.uniform(-6, -1) / 20) / peak)).astype(np.float32)


def _trim_oneshot(x: np.ndarray, sr: int) -> np.ndarray:
    """Start 0.5 ms before the first sample above -40 dB re peak; end at -60 dB; 5 ms fade."""
    a = np.abs(x)
    peak = float(a.max())
    above = np.flatnonzero(a > peak * 0.01)
    start = max(0, int(above[0]) - int(0.0005 * sr))
    end = int(np.flatnonzero(a > peak * 0.001)[-1]) + 1
    x = x[start:end].copy()
    fade = min(x.size, int(0.005 * sr))
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return x


@functools.lru_cache(maxsize=8)
def drum_bases(cls: str, sr: int) -> tuple[tuple[int, int], ...]:
    """Distinct (kit, key) sounds of a drum class in the soundfont (first by kit order)."""
    sf = load_soundfont()
    seen: set[str] = set()
    bases = []
    for kit in DRUM_KITS:
        for key in DRUM_KEYS[cls]:
            if (kit, key) in DRUM_EXCLUDE or not sf.has_preset(128, kit):
                continue
            x = render_note(sf, 128, kit, key, 100, 0.5, sr)
            if x.size == 0 or not np.any(x):
                continue
            digest = hashlib.sha256(np.round(x, 5).tobytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                bases.append((kit, key))
    return tuple(bases)


def sf2_oneshot(cls: str, index: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Soundfont drum ``index`` of a class: a kit sound, detuned/shortened after the first pass."""
    bases = drum_bases(cls, sr)
    kit, key = bases[index % len(bases)]
    variant = index // len(bases)
    cents = 0.0 if variant == 0 else float(rng.uniform(-500, 500))
    velocity = 100 if variant == 0 else int(rng.integers(70, 128))
    note_s = 0.25 if cls == "hihat" and key != 46 else float(rng.uniform(0.4, 1.2))
    x = render_note(load_soundfont(), 128, kit, key, velocity, note_s, sr, cents=cents, tail_s=0.3)
    x = x[: int(2.0 * sr)]
    if variant > 0:
        t = np.arange(x.size) / sr
        x = x * np.exp(-t * rng.uniform(0.0, 12.0))
    return _trim_oneshot(x, sr)


def render_loop(cls: str, rng: np.random.Generator, config: BuiltinConfig) -> np.ndarray:
    """A seamless loop of instrument ``cls``: a random phrase on a random GM program."""
    sf = load_soundfont()
    sr = config.sample_rate
    programs = [p for p in PROGRAMS[cls] if sf.has_preset(0, p)]
    program = int(rng.choice(programs))
    phrase = random_phrase(cls, rng, config.min_loop_s)
    n = int(round(phrase.duration * sr))
    out = np.zeros(n, dtype=np.float64)
    for note in phrase.notes:
        vib = None
        if cls == "vocal":
            vib = (float(rng.uniform(4.5, 6.5)), float(rng.uniform(15, 45)), 0.15)
        x = render_note(sf, 0, program, note.key, note.velocity, note.length, sr, vibrato=vib)
        start = int(round(note.start * sr)) % n
        x = x[:n]  # a tail longer than the loop would overlap itself
        first = min(x.size, n - start)
        out[start : start + first] += x[:first]
        out[: x.size - first] += x[first:]
    if not np.any(out):
        raise RuntimeError(f"program {program} rendered silence for {cls}")
    return _level(out, rng)


def render_item(cls: str, index: int, config: BuiltinConfig) -> np.ndarray:
    """Audio of item ``index`` of class ``cls``: float32 mono ``[samples]`` at the config rate."""
    rng = item_rng(config, cls, index)
    sr = config.sample_rate
    if cls in DRUMS:
        if index < config.n_sf2_oneshots:
            return _level(sf2_oneshot(cls, index, rng, sr), rng)
        return _level(SYNTHS[cls](rng, sr), rng)
    return render_loop(cls, rng, config)


def _write_items(
    folder: Path, items: list[tuple[str, int]], config: BuiltinConfig
) -> list[LibraryEntry]:
    """Render and write a batch of items (runs in a worker); returns their entries."""
    entries = []
    for cls, index in items:
        audio = render_item(cls, index, config)[None, :]
        rel = f"{cls}/{cls}_{index:04d}.flac"
        # A plain write: the whole folder is renamed into place once complete, and a
        # file damaged later is caught by its recorded size (see rmod.builtin).
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(encode_audio(audio, config.sample_rate, "flac"))
        decoded = to_pcm16(audio).T.astype(np.float32) / np.float32(32768.0)
        digest = content_hash(decoded)
        entries.append(
            LibraryEntry(
                id=make_id(cls, digest),
                path=rel,
                cls=cls,
                duration=round(audio.shape[1] / config.sample_rate, 6),
                sample_rate=config.sample_rate,
                channels=1,
                sha256=digest,
                split=split_for_hash(digest),
                size_bytes=(folder / rel).stat().st_size,
            )
        )
    return entries


def generate_builtin(
    folder: str | os.PathLike,
    config: BuiltinConfig | None = None,
    *,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Generate the built-in library into ``folder``; returns the manifest path.

    ``jobs`` worker processes (joblib); the result is identical for any ``jobs``. Items
    with identical content are kept once (the lower index). The manifest is written last.
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    config = config or BuiltinConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = [(c, i) for c in CLASSES for i in range(config.count(c))]
    batch = 24
    batches = [items[k : k + batch] for k in range(0, len(items), batch)]
    if jobs <= 1:
        done = (_write_items(folder, b, config) for b in batches)
    else:
        tasks = (delayed(_write_items)(folder, b, config) for b in batches)
        done = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    bar = tqdm(
        done, total=len(batches), desc="built-in library", unit="batch", disable=not progress
    )
    results = list(bar)
    entries: list[LibraryEntry] = []
    seen: set[str] = set()
    for entry in (e for r in results for e in r):
        if entry.sha256 in seen:
            log.warning("built-in %s duplicates an earlier item; dropped", entry.path)
            (folder / entry.path).unlink()
            continue
        seen.add(entry.sha256)
        entries.append(entry)
    manifest = folder / MANIFEST_NAME
    write_manifest(manifest, ".", entries)
    return manifest
