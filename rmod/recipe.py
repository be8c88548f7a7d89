"""Recipes: every setting of an RMOD build, loaded from YAML and validated up front.

A recipe is a tree of frozen dataclasses. Leaves are plain settings (``int``,
``float``, ``str``) or :class:`~rmod.distributions.Distribution` objects for
anything drawn per example. :func:`load_recipe` reads a YAML file with
``yaml.safe_load`` and checks everything before any work starts; a problem raises
:class:`RecipeError` whose message names the file and the field path, e.g.::

    recipes/x.yaml: mixing.eq.low_shelf.gain_db: low 12 > high -12

The field names and their meaning are documented in ``recipes/rmod-paper.yaml``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rmod import DRUMS, INSTRUMENTS
from rmod.distributions import Distribution, DistributionError, parse_distribution
from rmod.errors import RmodError


def _recipes_dir() -> Path:
    """The shipped recipes: ``recipes/`` beside the package in a checkout (editable install),
    else the copy a regular ``pip install .`` puts under ``<prefix>/share/rmod-dose/recipes``."""
    checkout = Path(__file__).resolve().parent.parent / "recipes"
    installed = Path(sys.prefix) / "share" / "rmod-dose" / "recipes"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


RECIPES_DIR = _recipes_dir()
DEFAULT_RECIPE = "rmod-paper"


class RecipeError(RmodError, ValueError):
    """An invalid recipe; the message is ``"<file>: <field path>: <problem>"``."""


class _FieldError(ValueError):
    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


def _f(
    lo: float | None = None,
    hi: float | None = None,
    kind: str = "float",
    choices: tuple | None = None,
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with validation metadata: allowed range, value kind, choices."""
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
    """Groove variant: drum patterns from MIDI files (see :mod:`rmod.groove`)."""

    notes: GrooveNotes = _f(kind="section")
    # Set by ``rmod-build --midi-dir`` (absolute path), so workers find the MIDI files.
    midi_dir: str | None = field(default=None, metadata={"kind": "str", "optional": True})


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
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Recipe:
        """Validate ``data`` and build a recipe; raises :class:`RecipeError` naming ``source``."""
        try:
            recipe = _build(cls, data, "")
            recipe = dataclasses.replace(recipe, source=str(source))
            _cross_check(recipe)
        except (_FieldError, DistributionError) as exc:
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
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}"
        )
    return Recipe.from_dict(data, source=str(path))


# ----------------------------------------------------------------------------- generic validation
def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys, types and ranges."""
    if not isinstance(data, dict):
        raise _FieldError(where or "<top>", f"expected a mapping, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("skip")]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            raise _FieldError(
                _join(where, str(key)), f"unknown key (expected one of: {', '.join(names)})"
            )
    values = {}
    for f in fields:
        path = _join(where, f.name)
        if f.name not in data and f.metadata.get("optional"):
            values[f.name] = f.default
            continue
        if f.name not in data:
            raise _FieldError(path, "missing field")
        values[f.name] = _convert(hints[f.name], data[f.name], path, f.metadata)
    return cls(**values)


def _convert(tp: Any, value: Any, where: str, meta: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        (tp,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Distribution:
        dist = parse_distribution(value, where)
        _check_distribution(dist, where, meta)
        return dist
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise _FieldError(where, f"expected a mapping, got {_type_name(value)}")
        return {str(k): _convert(args[1], v, _join(where, str(k)), {}) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise _FieldError(where, f"expected a list, got {_type_name(value)}")
        return tuple(_convert(args[0], v, f"{where}[{i}]", {}) for i, v in enumerate(value))
    return _check_scalar(tp, value, where, meta)


def _check_scalar(tp: type, value: Any, where: str, meta: Any) -> Any:
    if tp is str:
        if not isinstance(value, str):
            raise _FieldError(where, f"expected a string, got {_type_name(value)}")
    elif tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _FieldError(where, f"expected an integer, got {_type_name(value)} {value!r}")
    elif tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _FieldError(where, f"expected a number, got {_type_name(value)} {value!r}")
        if not math.isfinite(value):
            raise _FieldError(where, f"expected a finite number, got {value!r}")
        value = float(value)
    choices = meta.get("choices") if meta else None
    if choices is not None and value not in choices:
        raise _FieldError(where, f"{value!r} not allowed (expected one of: {list(choices)})")
    lo, hi = meta.get("range", (None, None)) if meta else (None, None)
    if lo is not None and value < lo:
        raise _FieldError(where, f"{value} below the allowed minimum {lo}")
    if hi is not None and value > hi:
        raise _FieldError(where, f"{value} above the allowed maximum {hi}")
    return value


def _check_distribution(dist: Distribution, where: str, meta: Any) -> None:
    kind = meta.get("kind", "float")
    if kind == "bool" and dist.kind != "bool":
        raise _FieldError(where, f"expected {{bernoulli: p}} or true/false, got {dist.to_dict()!r}")
    if kind == "int" and dist.kind != "int":
        raise _FieldError(
            where, f"expected integer values ({{randint: [lo, hi]}}), got {dist.to_dict()!r}"
        )
    if kind == "float" and dist.kind not in ("int", "float"):
        raise _FieldError(where, f"expected numeric values, got {dist.to_dict()!r}")
    if kind in ("int", "float"):
        lo, hi = meta.get("range", (None, None))
        b_lo, b_hi = dist.bounds
        if lo is not None and b_lo < lo:
            raise _FieldError(where, f"values can reach {b_lo}, below the allowed minimum {lo}")
        if hi is not None and b_hi > hi:
            raise _FieldError(where, f"values can reach {b_hi}, above the allowed maximum {hi}")


def _cross_check(r: Recipe) -> None:
    """Checks that involve more than one field."""
    if r.audio.target_fade_ms / 1000.0 > r.audio.target_seconds:
        raise _FieldError("audio.target_fade_ms", "longer than audio.target_seconds")
    # Layering weight pairs: a choice (or constant) of [w1, w2] pairs of non-negative weights.
    lw = r.drums.layer_weights
    pairs = lw.options if hasattr(lw, "options") else (getattr(lw, "value", None),)
    for pair in pairs:
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in pair
            )
        ):
            raise _FieldError(
                "drums.layer_weights", f"expected a choice of [w1, w2] weight pairs, got {pair!r}"
            )
    for cls in DRUMS:
        hi = getattr(r.drums.hits, cls).bounds[1]
        if hi > r.drums.grid_points:
            raise _FieldError(
                f"drums.hits.{cls}", f"up to {hi:g} hits but only {r.drums.grid_points} grid points"
            )
    ticks_total = (
        r.audio.mixture_seconds * r.drums.midi.tempo_bpm / 60.0 * r.drums.midi.ticks_per_beat
    )
    per_point = ticks_total / r.drums.grid_points
    if abs(per_point - round(per_point)) > 1e-9 or round(per_point) < 1:
        raise _FieldError(
            "drums.midi",
            f"one grid point is {per_point:g} ticks; choose tempo_bpm/ticks_per_beat so it is a whole number",
        )
    if r.groove is not None:
        _check_groove(r)
    for name in r.instruments.tracks:
        if name not in INSTRUMENTS:
            raise _FieldError(
                f"instruments.tracks.{name}",
                f"unknown instrument (expected one of: {', '.join(INSTRUMENTS)})",
            )
    b_lo, b_hi = r.instruments.segment_seconds.bounds
    if b_hi > r.audio.mixture_seconds:
        raise _FieldError("instruments.segment_seconds", f"{b_hi:g} s is longer than the mixture")
    expected = list(DRUMS) + list(r.instrument_names)
    for name in r.mixing.tracks:
        if name not in expected:
            raise _FieldError(
                f"mixing.tracks.{name}", f"no such track (tracks are: {', '.join(expected)})"
            )
    for name in expected:
        if name not in r.mixing.tracks:
            raise _FieldError(f"mixing.tracks.{name}", "missing field")
    nyquist = r.audio.sample_rate / 2.0
    for section in ("mixing", "master"):
        eq = getattr(r, section).eq
        bands = [("low_shelf", eq.low_shelf), ("high_shelf", eq.high_shelf)]
        bands += [(f"peaks[{i}]", b) for i, b in enumerate(eq.peaks)]
        for label, band in bands:
            if band.freq_hz.bounds[1] >= nyquist:
                raise _FieldError(
                    f"{section}.eq.{label}.freq_hz", f"reaches the Nyquist frequency {nyquist:g} Hz"
                )


def _check_groove(r: Recipe) -> None:
    """Groove onsets are sample positions: one grid point per sample, one tick per point."""
    if r.drums.grid_points != r.mixture_samples:
        raise _FieldError(
            "drums.grid_points",
            f"the Groove variant needs one grid point per sample ({r.mixture_samples})",
        )
    seen: dict[int, str] = {}
    for cls in DRUMS:
        for note in getattr(r.groove.notes, cls):
            if not 0 <= note <= 127:
                raise _FieldError(f"groove.notes.{cls}", f"{note} is not a MIDI note (0-127)")
            if note in seen:
                raise _FieldError(f"groove.notes.{cls}", f"note {note} is also {seen[note]}'s")
            seen[note] = cls


# ----------------------------------------------------------------------------- serialization
def _to_plain(value: Any) -> Any:
    if isinstance(value, Distribution):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return {
            f.name: _to_plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("skip")
            and not (f.metadata.get("optional") and getattr(value, f.name) is None)
        }
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value
