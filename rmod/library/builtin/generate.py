"""Generate the built-in library: recorded drums, synthesized drums, instrument loops.

What it makes (counts per class are :class:`BuiltinConfig` fields), from the sources the
machine has (:class:`Sources`: the soundfonts of :func:`rmod.library.builtin.fonts.find_fonts` and
``espeak-ng`` when installed):

* kick / snare / hi-hat one-shots: the first ``n_sf2_oneshots`` are recorded sounds
  (:mod:`rmod.library.builtin.drums`): every velocity layer of every kit of every font, one
  family after another (first layer of each family, then the second...), played as
  recorded; when there are fewer than ``n_sf2_oneshots``, detuned and shortened copies
  follow, each in the family of its recording. The rest are synthesized
  (:mod:`rmod.library.builtin.synth`), each its own family.
* bass / piano / guitar / vocal loops (:mod:`rmod.library.builtin.loops`): random phrases played
  by the best General MIDI font, overdriven guitars, organs and synths among the keys,
  spoken vocals when espeak-ng is installed.

Every item ``i`` of class ``c`` draws from its own generator
``SeedSequence([seed, class index, i])``, so the output does not depend on the number of
workers. Entries record their ``family`` (which decides the split) and ``source``. Files
are mono 16-bit FLAC; the manifest (:mod:`rmod.library.catalog` format, root ``.``) is written last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from rmod import CLASSES, DRUMS
from rmod.audio import encode_audio, to_pcm16
from rmod.library.builtin.drums import DrumBase, UnionFind, drum_bases, sampled_oneshot
from rmod.library.builtin.fonts import Font, espeak_version, find_fonts, sources_tag
from rmod.library.builtin.loops import has_programs, render_loop
from rmod.library.builtin.synth import SYNTHS
from rmod.library.catalog import LibraryEntry, write_library
from rmod.library.hashing import content_hash, make_id, split_for_hash, split_key
from rmod.library.leaks import near_duplicate_groups, onset_window

log = logging.getLogger(__name__)

#: Bump whenever the generated audio changes: the cache folder is named after it, so an
#: older cache is never mistaken for the current library (tests/rmod/test_builtin.py pins a
#: summary of a few items to catch a change that forgot the bump).
BUILTIN_VERSION = 5
MANIFEST_NAME = "library.jsonl"


@dataclass(frozen=True)
class Sources:
    """What the library is made from: soundfonts (kits first) and espeak-ng's version."""

    fonts: tuple[Font, ...]
    espeak: str | None = None

    @classmethod
    def detect(cls) -> Sources:
        """The best sources installed on this machine."""
        return cls(find_fonts(), espeak_version())

    def melodic(self, cls: str) -> str:
        """Path of the General MIDI font whose programs play ``cls`` loops: the lowest
        rank among those holding at least one program of the class."""
        gm = sorted((f for f in self.fonts if f.role == "gm"), key=lambda f: f.rank)
        for font in gm:
            if has_programs(cls, font.path):
                return font.path
        raise RuntimeError(f"no soundfont holds a General MIDI program for {cls} loops")

    def tag(self) -> str:
        """Ten hex digits naming the sources (see :func:`rmod.library.builtin.fonts.sources_tag`)."""
        return sources_tag(self.fonts, self.espeak)

    def record(self) -> dict[str, str]:
        """What ``build.json`` records of the sources (``library_sources``): each font as
        ``"sf2:<file name>": SHA-256`` and ``"espeak-ng": version`` when it is used."""
        out = {f"sf2:{f.name}": f.sha256 or f"{f.size} bytes" for f in self.fonts}
        if self.espeak is not None:
            out["espeak-ng"] = self.espeak
        return out


@dataclass(frozen=True)
class BuiltinConfig:
    """Size and seed of the built-in library; the default is what users get."""

    n_oneshots: int = 330
    n_sf2_oneshots: int = 165
    n_loops: int = 80
    min_loop_s: float = 4.5
    sample_rate: int = 44100
    seed: int = 20240917

    def folder_name(self, sources: Sources | None = None) -> str:
        """``builtin-v<version>-<sources tag>``, plus a config hash for a non-default config."""
        name = f"builtin-v{BUILTIN_VERSION}-{(sources or Sources.detect()).tag()}"
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


def ordered_bases(cls: str, fonts: tuple[Font, ...]) -> tuple[DrumBase, ...]:
    """Recorded bases, one per family in turn (every family's first layer, then seconds)."""
    by_family: dict[str, list[DrumBase]] = {}
    for b in drum_bases(cls, fonts):
        by_family.setdefault(b.family, []).append(b)
    groups = list(by_family.values())
    depth = max((len(g) for g in groups), default=0)
    return tuple(g[k] for k in range(depth) for g in groups if k < len(g))


@dataclass(frozen=True)
class Item:
    """A rendered item: float32 mono audio, its family (``""``: its own) and source."""

    audio: np.ndarray
    family: str
    source: str


def render_item(
    cls: str, index: int, config: BuiltinConfig, sources: Sources | None = None
) -> Item:
    """Item ``index`` of class ``cls``: audio ``[samples]`` at the config rate, family, source."""
    sources = sources or Sources.detect()
    rng = item_rng(config, cls, index)
    sr = config.sample_rate
    if cls in DRUMS:
        bases = ordered_bases(cls, sources.fonts)
        if index < config.n_sf2_oneshots and bases:
            base = bases[index % len(bases)]
            x = sampled_oneshot(cls, base, index // len(bases), rng, sr)
            return Item(_level(x, rng), base.family, base.source)
        return Item(_level(SYNTHS[cls](rng, sr), rng), "", "synth")
    font = sources.melodic(cls)
    x, how = render_loop(cls, rng, font, config.min_loop_s, sr, sources.espeak is not None)
    source = "espeak-ng" if how == "espeak-ng" else "sf2:" + Path(font).name
    return Item(_level(x, rng), "", source)


def _write_items(
    folder: Path, items: list[tuple[str, int]], config: BuiltinConfig, sources: Sources
) -> tuple[list[LibraryEntry], dict[str, np.ndarray]]:
    """Render and write a batch of items (runs in a worker); returns their entries and the
    onset windows (:func:`rmod.library.leaks.onset_window`) of recorded drums by path."""
    entries = []
    windows = {}
    for cls, index in items:
        item = render_item(cls, index, config, sources)
        audio = item.audio[None, :]
        rel = f"{cls}/{cls}_{index:04d}.flac"
        # A plain write: the whole folder is renamed into place once complete, and a
        # file damaged later is caught by its recorded size (see rmod.library.builtin).
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(encode_audio(audio, config.sample_rate, "flac"))
        decoded = to_pcm16(audio).T.astype(np.float32) / np.float32(32768.0)
        if cls in DRUMS and item.family:
            windows[rel] = onset_window(decoded, config.sample_rate).astype(np.float32)
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
                split=split_for_hash(split_key(item.family, digest)),
                size_bytes=(folder / rel).stat().st_size,
                family=item.family,
                source=item.source,
            )
        )
    return entries, windows


def merge_families(
    results: list[list[LibraryEntry]], windows: dict[str, np.ndarray]
) -> list[list[LibraryEntry]]:
    """Join the families of recorded one-shots that sound alike (two fonts may hold the same
    recording): near-duplicates by the leak measure (:func:`rmod.library.leaks.near_duplicate_groups`
    on the items' onset ``windows`` by path) take the family of the first of them, and
    that family's split."""
    flat = [e for r in results for e in r]
    joined = UnionFind()
    for cls in DRUMS:
        recorded = [e for e in flat if e.cls == cls and e.family]
        if not recorded:
            continue
        groups = near_duplicate_groups(np.array([windows[e.path] for e in recorded]))
        for e, g in zip(recorded, groups, strict=True):
            joined.union(e.family, f"{cls} group {g}")  # the family label comes first
    rename = {e.family: joined.find(e.family) for e in flat if e.family}
    out = []
    for r in results:
        batch = []
        for e in r:
            family = rename.get(e.family, e.family)
            if family != e.family:
                split = split_for_hash(split_key(family, e.sha256))
                e = dataclasses.replace(e, family=family, split=split)
            batch.append(e)
        out.append(batch)
    return out


def generate_builtin(
    folder: str | os.PathLike,
    config: BuiltinConfig | None = None,
    *,
    jobs: int = 2,
    progress: bool = True,
    sources: Sources | None = None,
) -> Path:
    """Generate the built-in library into ``folder``; returns the manifest path.

    ``jobs`` worker processes (joblib); the result is identical for any ``jobs``. Items
    with identical content are kept once (the lower index). The manifest is written last.
    """
    config = config or BuiltinConfig()
    sources = sources or Sources.detect()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = [(c, i) for c in CLASSES for i in range(config.count(c))]
    batch = 24
    batches = [items[k : k + batch] for k in range(0, len(items), batch)]
    if jobs <= 1:
        done = (_write_items(folder, b, config, sources) for b in batches)
    else:
        tasks = (delayed(_write_items)(folder, b, config, sources) for b in batches)
        done = Parallel(n_jobs=jobs, return_as="generator")(tasks)
    bar = tqdm(
        done, total=len(batches), desc="built-in library", unit="batch", disable=not progress
    )
    results = list(bar)
    entries: list[LibraryEntry] = []
    seen: set[str] = set()
    windows = {path: w for _, ws in results for path, w in ws.items()}
    results = merge_families([r for r, _ in results], windows)
    for entry in (e for r in results for e in r):
        if entry.sha256 in seen:
            log.warning("built-in %s duplicates an earlier item; dropped", entry.path)
            (folder / entry.path).unlink()
            continue
        seen.add(entry.sha256)
        entries.append(entry)
    manifest = folder / MANIFEST_NAME
    write_library(manifest, ".", entries)
    return manifest
