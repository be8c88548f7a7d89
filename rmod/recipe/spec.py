"""Recipes: every setting of an RMOD build, loaded from YAML and validated up front.

A recipe is a tree of frozen dataclasses. Leaves are plain settings (``int``,
``float``, ``str``) or :class:`~rmod.recipe.distributions.Distribution` objects for
anything drawn per example. :func:`load_recipe` reads a YAML file with
``yaml.safe_load`` and checks everything before any work starts; a problem raises
:class:`RecipeError` whose message names the file and the field path, e.g.::

    recipes/x.yaml: mixing.eq.low_shelf.gain_db: low 12 > high -12

The field names and their meaning are documented in ``recipes/rmod-paper.yaml``. Types,
ranges and choices are checked by :mod:`rmod.records` from the field declarations below;
what a distribution may draw and the checks across fields live in :mod:`rmod.recipe.checks`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rmod import INSTRUMENTS
from rmod.errors import RmodError
from rmod.recipe.checks import cross_check, distribution_field
from rmod.recipe.distributions import Distribution, DistributionError
from rmod.records import RecordError, from_plain, to_plain


def _recipes_dir() -> Path:
    """The shipped recipes: ``recipes/`` beside the package in a checkout (editable install),
    else the copy a regular ``pip install .`` puts under ``<prefix>/share/rmod-dose/recipes``."""
    checkout = Path(__file__).resolve().parents[2] / "recipes"
    installed = Path(sys.prefix) / "share" / "rmod-dose" / "recipes"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


RECIPES_DIR = _recipes_dir()
DEFAULT_RECIPE = "rmod-paper"


class RecipeError(RmodError, ValueError):
    """An invalid recipe; the message is ``"<file>: <field path>: <problem>"``."""


def _f(
    lo: float | None = None,
    hi: float | None = None,
    kind: str = "float",
    choices: tuple | None = None,
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with the metadata :mod:`rmod.records` checks (allowed range,
    choices) and, for a distribution, the kind of value it must draw
    (:func:`rmod.recipe.checks.distribution_field`)."""
    meta = {"range": (lo, hi), "kind": kind, "choices": choices}
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class AudioSpec:
    """Output audio settings. Seconds, Hz, milliseconds."""

    sample_rate: int = _f(8000, 192000, kind="int")
    channels: int = _f(kind="int", choices=(2,))
    mixture_seconds: float = _f(0.5, 60.0)
    target_seconds: float = _f(0.05, 10.0)
    target_fade_ms: float = _f(0.0, 1000.0)
    format: str = _f(kind="str", choices=("wav", "flac"))
    bit_depth: int = _f(kind="int", choices=(16,))


@dataclass(frozen=True)
class DrumHits:
    """Number of hits per drum class (integer distributions)."""

    kick: Distribution = _f(1, None, kind="int")
    snare: Distribution = _f(1, None, kind="int")
    hihat: Distribution = _f(1, None, kind="int")


@dataclass(frozen=True)
class DrumNotes:
    """General MIDI note numbers of the drum classes."""

    kick: int = _f(0, 127, kind="int")
    snare: int = _f(0, 127, kind="int")
    hihat: int = _f(0, 127, kind="int")


@dataclass(frozen=True)
class MidiSpec:
    """Tempo and resolution of the written MIDI pattern."""

    tempo_bpm: float = _f(1.0, 1000.0)
    ticks_per_beat: int = _f(1, 65535, kind="int")
    velocity: int = _f(1, 127, kind="int")
    notes: DrumNotes = _f(kind="section")


@dataclass(frozen=True)
class DrumsSpec:
    """Pattern grid, hit counts, layering and drum rendering settings."""

    grid_points: int = _f(1, 1_000_000, kind="int")
    hits: DrumHits = _f(kind="section")
    layer_weights: Distribution = _f(kind="any")
    retrigger_fade_ms: float = _f(0.0, 1000.0)
    source_rms_db: float | None = _f(-80.0, 0.0)
    source_rms_window_ms: float = _f(1.0, 10000.0)
    source_peak_db: float | None = _f(-60.0, 0.0)
    midi: MidiSpec = _f(kind="section")


@dataclass(frozen=True)
class InstrumentSpec:
    """Drop decision and pitch shift of one instrument."""

    drop: Distribution = _f(kind="bool")
    semitones: Distribution = _f(-24, 24, kind="int")


@dataclass(frozen=True)
class InstrumentsSpec:
    """Instrument loops: which instruments, segment length, level normalization."""

    segment_seconds: Distribution = _f(0.01, 60.0)
    loudness_rms_db: float | None = _f(-80.0, 0.0)
    tracks: dict[str, InstrumentSpec] = _f(kind="section")


@dataclass(frozen=True)
class BandSpec:
    """One EQ band: centre/corner frequency (Hz), gain (dB), Q."""

    freq_hz: Distribution = _f(10.0, 24000.0)
    gain_db: Distribution = _f(-48.0, 48.0)
    q: Distribution = _f(0.01, 40.0)


@dataclass(frozen=True)
class EQSpec:
    """Low shelf, peaking bands, high shelf."""

    low_shelf: BandSpec = _f(kind="section")
    peaks: tuple[BandSpec, ...] = _f(kind="section")
    high_shelf: BandSpec = _f(kind="section")


@dataclass(frozen=True)
class CompressorSpec:
    """Downward compressor plus makeup gain."""

    threshold_db: Distribution = _f(-80.0, 0.0)
    ratio: Distribution = _f(1.0, 100.0)
    attack_ms: Distribution = _f(0.01, 1000.0)
    release_ms: Distribution = _f(1.0, 10000.0)
    makeup_db: Distribution = _f(-24.0, 24.0)


@dataclass(frozen=True)
class LimiterSpec:
    """Peak limiter: threshold (dBFS sample peak) and release."""

    threshold_db: Distribution = _f(-40.0, 0.0)
    release_ms: Distribution = _f(1.0, 5000.0)


@dataclass(frozen=True)
class DelaySpec:
    """The example's delay bus: on/off, time, feedback (drawn once per example), and each
    track's send level to it (drawn per track)."""

    active: Distribution = _f(kind="bool")
    time_s: Distribution = _f(0.001, 5.0)
    feedback: Distribution = _f(0.0, 0.99)
    send_db: Distribution = _f(-120.0, 12.0)


@dataclass(frozen=True)
class ReverbSpec:
    """The example's reverb bus (Freeverb): on/off, room size, damping, width (drawn once per
    example), and each track's send level to it (drawn per track)."""

    active: Distribution = _f(kind="bool")
    room_size: Distribution = _f(0.0, 1.0)
    damping: Distribution = _f(0.0, 1.0)
    width: Distribution = _f(0.0, 1.0)
    send_db: Distribution = _f(-120.0, 12.0)


@dataclass(frozen=True)
class TrackSpec:
    """Per-track gain (dB) and pan position (-1 left .. +1 right)."""

    gain_db: Distribution = _f(-60.0, 24.0)
    pan: Distribution = _f(-1.0, 1.0)


@dataclass(frozen=True)
class MixingSpec:
    """Per-track chain Gain -> EQ -> Compressor -> Pan -> Limiter, sends to two shared buses."""

    pan_law_db: float = _f(-6.0, 0.0)
    tracks: dict[str, TrackSpec] = _f(kind="section")
    eq: EQSpec = _f(kind="section")
    compressor: CompressorSpec = _f(kind="section")
    limiter: LimiterSpec = _f(kind="section")
    delay: DelaySpec = _f(kind="section")
    reverb: ReverbSpec = _f(kind="section")


@dataclass(frozen=True)
class MasterSpec:
    """Mastering: EQ -> limiter -> output ceiling (dBFS sample peak)."""

    eq: EQSpec = _f(kind="section")
    limiter: LimiterSpec = _f(kind="section")
    ceiling_dbfs: float = _f(-40.0, -0.01)


@dataclass(frozen=True)
class SplitsSpec:
    """Validation and test set sizes as fractions of N, each at least ``min_per_split``."""

    valid_fraction: float = _f(0.0, 0.5)
    test_fraction: float = _f(0.0, 0.5)
    min_per_split: int = _f(0, None, kind="int")


@dataclass(frozen=True)
class GrooveNotes:
    """General MIDI drum notes mapped to each class (Groove variant); others are dropped."""

    kick: tuple[int, ...] = _f(0, 127, kind="int")
    snare: tuple[int, ...] = _f(0, 127, kind="int")
    hihat: tuple[int, ...] = _f(0, 127, kind="int")


@dataclass(frozen=True)
class GrooveSpec:
    """Groove variant: drum patterns from MIDI files (see :mod:`rmod.example.groove`)."""

    notes: GrooveNotes = _f(kind="section")
    # Set by ``rmod-build --midi-dir`` (absolute path), so workers find the MIDI files.
    midi_dir: str | None = field(default=None, metadata={"kind": "str", "optional": True})
    # Set with midi_dir: (relative path, SHA-256) of the usable files the build was planned
    # with, so workers refuse a folder that changed since (rmod.example.groove.recipe_grooves).
    # Not part of the recipe's plain form (build.json records them as midi_files).
    midi_files: tuple[tuple[str, str], ...] | None = field(
        default=None, compare=False, metadata={"skip": True}
    )


@dataclass(frozen=True)
class Recipe:
    """Every setting of an RMOD build. Build with :func:`load_recipe` or :meth:`from_dict`."""

    name: str = _f(kind="str")
    description: str = _f(kind="str")
    audio: AudioSpec = _f(kind="section")
    drums: DrumsSpec = _f(kind="section")
    instruments: InstrumentsSpec = _f(kind="section")
    mixing: MixingSpec = _f(kind="section")
    master: MasterSpec = _f(kind="section")
    splits: SplitsSpec = _f(kind="section")
    # Optional section (absent: None, and left out of to_dict, so other recipes keep
    # their fingerprints): drum patterns from MIDI files instead of random grids.
    groove: GrooveSpec | None = field(default=None, metadata={"kind": "section", "optional": True})
    source: str = field(default="<dict>", compare=False, metadata={"skip": True})

    # -- derived values (samples) -------------------------------------------------
    @property
    def mixture_samples(self) -> int:
        """Length of the mixture in samples (``round(mixture_seconds * sample_rate)``)."""
        return int(round(self.audio.mixture_seconds * self.audio.sample_rate))

    @property
    def target_samples(self) -> int:
        """Length of each target one-shot in samples."""
        return int(round(self.audio.target_seconds * self.audio.sample_rate))

    @property
    def instrument_names(self) -> tuple[str, ...]:
        """Instruments of this recipe, in the canonical order of ``rmod.INSTRUMENTS``."""
        return tuple(n for n in INSTRUMENTS if n in self.instruments.tracks)

    # -- serialization ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-ready) that :meth:`from_dict` turns back into ``self``."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Recipe:
        """Validate ``data`` and build a recipe; raises :class:`RecipeError` naming ``source``."""
        try:
            recipe = from_plain(cls, data, "", parsers={Distribution: distribution_field})
            recipe = dataclasses.replace(recipe, source=str(source))
            cross_check(recipe)
        except (RecordError, DistributionError) as exc:
            raise RecipeError(f"{source}: {exc.where}: {exc.reason}") from None
        return recipe

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`to_dict` (sorted keys, no spaces)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- loading
def available_recipes() -> list[str]:
    """Names of the RMOD recipes shipped in ``recipes/`` (``rmod-*.yaml``; the ``dose-*``
    files there configure the model, not a dataset)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("rmod-*.yaml"))


def resolve_recipe_path(path_or_name: str | os.PathLike | None) -> Path:
    """``None`` -> the paper recipe; a bare name -> ``recipes/<name>.yaml``; else a path."""
    if path_or_name is None:
        return RECIPES_DIR / f"{DEFAULT_RECIPE}.yaml"
    path = Path(path_or_name)
    if path.exists():
        return path
    text = str(path_or_name)
    if os.sep not in text and "/" not in text:
        name = text[:-5] if text.endswith(".yaml") else text
        shipped = RECIPES_DIR / f"{name}.yaml"
        if shipped.exists():
            return shipped
    raise RecipeError(
        f"{path_or_name}: recipe not found (give a path, or one of: "
        f"{', '.join(available_recipes())})"
    )


def load_recipe(path_or_name: str | os.PathLike | None = None) -> Recipe:
    """Load and validate a recipe YAML file (``None`` -> ``recipes/rmod-paper.yaml``)."""
    path = resolve_recipe_path(path_or_name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer of over 4300 digits
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}"
        )
    return Recipe.from_dict(data, source=str(path))
