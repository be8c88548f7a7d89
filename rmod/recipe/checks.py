"""The checks of a recipe that the field types alone do not make (see :mod:`rmod.recipe.spec`).

:func:`distribution_field` parses a distribution-valued field and checks it against the
field's declared kind and range; :func:`cross_check` runs the checks that involve more than
one field (lengths against lengths, hits against grid points, tracks against instruments,
EQ frequencies against Nyquist). Each raises :class:`rmod.records.RecordError` naming the
field path, which :meth:`rmod.recipe.spec.Recipe.from_dict` turns into a ``RecipeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rmod import DRUMS, INSTRUMENTS
from rmod.recipe.distributions import Distribution, parse_distribution
from rmod.records import RecordError

if TYPE_CHECKING:  # annotations only: rmod.recipe.spec imports this module
    from rmod.recipe.spec import Recipe


def distribution_field(value: Any, where: str, meta: Mapping[str, Any]) -> Distribution:
    """Parse a distribution spec and check its value kind (``meta["kind"]``: ``"bool"``,
    ``"int"``, ``"float"`` or ``"any"``) and that its bounds stay in ``meta["range"]``."""
    dist = parse_distribution(value, where)
    kind = meta.get("kind", "float")
    if kind == "bool" and dist.kind != "bool":
        raise RecordError(where, f"expected {{bernoulli: p}} or true/false, got {dist.to_dict()!r}")
    if kind == "int" and dist.kind != "int":
        raise RecordError(
            where, f"expected integer values ({{randint: [lo, hi]}}), got {dist.to_dict()!r}"
        )
    if kind == "float" and dist.kind not in ("int", "float"):
        raise RecordError(where, f"expected numeric values, got {dist.to_dict()!r}")
    if kind in ("int", "float"):
        lo, hi = meta.get("range", (None, None))
        b_lo, b_hi = dist.bounds
        if lo is not None and b_lo < lo:
            raise RecordError(where, f"values can reach {b_lo}, below the allowed minimum {lo}")
        if hi is not None and b_hi > hi:
            raise RecordError(where, f"values can reach {b_hi}, above the allowed maximum {hi}")
    return dist


def cross_check(r: Recipe) -> None:
    """Every check that involves more than one field, in a fixed order."""
    if r.audio.target_fade_ms / 1000.0 > r.audio.target_seconds:
        raise RecordError("audio.target_fade_ms", "longer than audio.target_seconds")
    _check_layer_weights(r)
    _check_grid(r)
    if r.groove is not None:
        _check_groove(r)
    _check_tracks(r)
    _check_eq_frequencies(r)


def _check_layer_weights(r: Recipe) -> None:
    """Layering weight pairs: a choice (or constant) of [w1, w2] pairs of non-negative weights."""
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
            raise RecordError(
                "drums.layer_weights", f"expected a choice of [w1, w2] weight pairs, got {pair!r}"
            )


def _check_grid(r: Recipe) -> None:
    """No more hits than grid points, and a whole number of MIDI ticks per grid point."""
    for cls in DRUMS:
        hi = getattr(r.drums.hits, cls).bounds[1]
        if hi > r.drums.grid_points:
            raise RecordError(
                f"drums.hits.{cls}", f"up to {hi:g} hits but only {r.drums.grid_points} grid points"
            )
    ticks_total = (
        r.audio.mixture_seconds * r.drums.midi.tempo_bpm / 60.0 * r.drums.midi.ticks_per_beat
    )
    per_point = ticks_total / r.drums.grid_points
    if abs(per_point - round(per_point)) > 1e-9 or round(per_point) < 1:
        raise RecordError(
            "drums.midi",
            f"one grid point is {per_point:g} ticks; choose tempo_bpm/ticks_per_beat so it is a whole number",
        )


def _check_groove(r: Recipe) -> None:
    """Groove onsets are sample positions: one grid point per sample, one tick per point."""
    if r.drums.grid_points != r.mixture_samples:
        raise RecordError(
            "drums.grid_points",
            f"the Groove variant needs one grid point per sample ({r.mixture_samples})",
        )
    seen: dict[int, str] = {}
    for cls in DRUMS:
        for note in getattr(r.groove.notes, cls):  # each in 0-127: the field's range
            if note in seen:
                raise RecordError(f"groove.notes.{cls}", f"note {note} is also {seen[note]}'s")
            seen[note] = cls


def _check_tracks(r: Recipe) -> None:
    """Known instruments, segments that fit the mixture, one mixing entry per track."""
    for name in r.instruments.tracks:
        if name not in INSTRUMENTS:
            raise RecordError(
                f"instruments.tracks.{name}",
                f"unknown instrument (expected one of: {', '.join(INSTRUMENTS)})",
            )
    b_hi = r.instruments.segment_seconds.bounds[1]
    if b_hi > r.audio.mixture_seconds:
        raise RecordError("instruments.segment_seconds", f"{b_hi:g} s is longer than the mixture")
    expected = list(DRUMS) + list(r.instrument_names)
    for name in r.mixing.tracks:
        if name not in expected:
            raise RecordError(
                f"mixing.tracks.{name}", f"no such track (tracks are: {', '.join(expected)})"
            )
    for name in expected:
        if name not in r.mixing.tracks:
            raise RecordError(f"mixing.tracks.{name}", "missing field")


def _check_eq_frequencies(r: Recipe) -> None:
    """Every EQ band's frequency stays below Nyquist."""
    nyquist = r.audio.sample_rate / 2.0
    for section in ("mixing", "master"):
        eq = getattr(r, section).eq
        bands = [("low_shelf", eq.low_shelf), ("high_shelf", eq.high_shelf)]
        bands += [(f"peaks[{i}]", b) for i, b in enumerate(eq.peaks)]
        for label, band in bands:
            if band.freq_hz.bounds[1] >= nyquist:
                raise RecordError(
                    f"{section}.eq.{label}.freq_hz", f"reaches the Nyquist frequency {nyquist:g} Hz"
                )
