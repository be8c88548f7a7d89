"""Recorded drum one-shots of the built-in library: every velocity layer of every kit.

A *base* is one distinct sound a soundfont's kit plays for a General MIDI drum key of a
class (:data:`DRUM_KEYS`): one per velocity layer (the zones that sound at the layer's
top velocity), kept once when two kits or keys play identical zones. Bases are listed
font by font (:func:`rmod.library.builtin.fonts.find_fonts` order), kit by kit, key by key,
softest layer first.

A base's *family* groups what comes from the same recording: every layer of a key, and
every key or kit that shares a sample with it (union-find over sample offsets), so
velocity layers and the detuned copies made from a base (:func:`sampled_oneshot`) always
share a split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rmod.library.builtin.fonts import Font
from rmod.library.builtin.sf2 import SoundFontError, load_soundfont, render_note

if TYPE_CHECKING:
    from rmod.library.builtin.sf2 import SoundFont

DRUM_KEYS = {"kick": (35, 36), "snare": (38, 39, 40), "hihat": (42, 44, 46)}
#: (font file, kit, key) whose sound is not of the class: TimGM6mb's timpani, ocean wave.
DRUM_EXCLUDE = {("TimGM6mb.sf2", 48, 36), ("TimGM6mb.sf2", 40, 40)}
OPEN_HATS = (46,)


@dataclass(frozen=True)
class DrumBase:
    """One recorded sound: which font, preset, key and velocity play it, its family."""

    font: str
    bank: int
    program: int
    key: int
    velocity: int
    family: str

    @property
    def source(self) -> str:
        """``"sf2:<font file name>"``."""
        return "sf2:" + self.font.rsplit("/", 1)[-1]


def _kits(font: Font, sf: SoundFont) -> list[tuple[int, int]]:
    if font.role == "kits":
        return sorted(sf.names)
    return sorted(k for k in sf.names if k[0] == 128)


def _layers(sf: SoundFont, bank: int, program: int, key: int) -> list[int]:
    """Top velocity of each velocity layer of a key (ascending)."""
    tops = sorted({z.vel_range[1] for z in sf.zones(bank, program, key, None)})
    return [v for v in tops if v >= 1]


class UnionFind:
    """Union-find over labels (the first label seen names the family)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.order: dict[str, int] = {}

    def find(self, a: str) -> str:
        if a not in self.parent:
            self.parent[a] = a
            self.order[a] = len(self.order)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            first, last = sorted((ra, rb), key=self.order.__getitem__)
            self.parent[last] = first


@functools.lru_cache(maxsize=16)
def drum_bases(cls: str, fonts: tuple[Font, ...]) -> tuple[DrumBase, ...]:
    """Every distinct recorded sound of drum class ``cls`` in ``fonts`` (module docstring)."""
    raw: list[tuple[Font, int, int, int, int]] = []
    families = UnionFind()
    seen: set[tuple] = set()
    for font in fonts:
        sf = load_soundfont(font.path)
        for bank, program in _kits(font, sf):
            for key in DRUM_KEYS[cls]:
                if (font.name, program, key) in DRUM_EXCLUDE:
                    continue
                label = f"{cls}/{font.name}:{bank}:{program}:{key}"
                for vel in _layers(sf, bank, program, key):
                    zones = tuple(sf.zones(bank, program, key, vel))
                    if not zones or (font.name, zones) in seen:
                        continue
                    seen.add((font.name, zones))
                    families.find(label)
                    for z in zones:
                        families.union(label, f"{font.name}@{z.start}")
                    raw.append((font, bank, program, key, vel))
    return tuple(
        DrumBase(f.path, b, p, k, v, families.find(f"{cls}/{f.name}:{b}:{p}:{k}"))
        for f, b, p, k, v in raw
    )


def trim_oneshot(x: np.ndarray, sr: int) -> np.ndarray:
    """Start 0.5 ms before the first sample above -40 dB re peak (at most 5 ms before the
    first above -20 dB: a soft lead-in, such as a pedal hi-hat's, is cut); end at -60 dB;
    5 ms fade."""
    a = np.abs(x)
    peak = float(a.max())
    first = max(int(np.argmax(a > peak * 0.01)), int(np.argmax(a > peak * 0.1)) - int(0.005 * sr))
    start = max(0, first - int(0.0005 * sr))
    end = int(np.flatnonzero(a > peak * 0.001)[-1]) + 1
    x = x[start:end].copy()
    fade = min(x.size, int(0.005 * sr))
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return x


def sampled_oneshot(
    cls: str, base: DrumBase, variant: int, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """A base as recorded (``variant`` 0), or a copy detuned by up to +-5 semitones with an
    extra decay (``variant`` > 0). Float mono at ``sr`` Hz, trimmed to the onset."""
    sf = load_soundfont(base.font)
    cents = 0.0 if variant == 0 else float(rng.uniform(-500, 500))
    closed_hat = cls == "hihat" and base.key not in OPEN_HATS
    note_s = 0.25 if closed_hat else float(rng.uniform(0.4, 1.2))
    x = render_note(
        sf, base.bank, base.program, base.key, base.velocity, note_s, sr, cents=cents, tail_s=0.3
    )
    x = x[: int(2.0 * sr)]
    if not np.any(x) or not np.all(np.isfinite(x)):
        raise SoundFontError(
            f"{base.font}: kit {base.bank}:{base.program} key {base.key} velocity "
            f"{base.velocity} renders silence"
        )
    if variant > 0:
        t = np.arange(x.size) / sr
        x = x * np.exp(-t * rng.uniform(0.0, 12.0))
    return trim_oneshot(x, sr)
