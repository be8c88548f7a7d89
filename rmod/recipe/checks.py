"""The checks of a recipe that the field types alone do not make (see :mod:`rmod.recipe.spec`).

:func:`distribution_field` parses a distribution-valued field and checks it against the
field's declared kind and range; :func:`cross_check` runs the checks that involve more than
one field (lengths against lengths, hits against grid points, tracks against instruments,
EQ frequencies against Nyquist). Each raises :class:`rmod.records.RecordError` naming the
field path, which :meth:`rmod.recipe.spec.Recipe.from_dict` turns into a ``RecipeError``.

Drawn parameters against their recipe: :func:`drawn_values` pairs each value an example
holds with the recipe spec it was drawn from (what ``rmod-stats`` plots);
:func:`params_outside_recipe` names the values no draw of their spec could give (what
``rmod-render-one --from`` refuses, through
:func:`rmod.inspect.example_folder.params_problems`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rmod import DRUMS, INSTRUMENTS
from rmod.recipe.distributions import NAMES, Distribution, parse_distribution
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
        bounds = dist.bounds
        assert bounds is not None  # an int or float distribution has numeric bounds
        b_lo, b_hi = bounds
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
    assert r.groove is not None  # cross_check calls this for a Groove recipe only
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
    bounds = r.instruments.segment_seconds.bounds
    assert bounds is not None  # a float field (distribution_field has checked its kind)
    b_hi = bounds[1]
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


# ----------------------------------------------------------------------------- drawn values
#: The figure group of each mixing section's drawn values (``rmod-stats``).
MIXING_GROUP = {
    "eq": "mixing_eq",
    "compressor": "mixing_dynamics",
    "limiter": "mixing_dynamics",
    "delay": "mixing_sends",
    "reverb": "mixing_sends",
}


@dataclass(frozen=True)
class Drawn:
    """One value an example's parameters hold, beside the recipe spec it was drawn from.

    ``name``: where (``mixing.gain_db.kick``, ``hits.snare``); ``group``: its family in
    ``rmod-stats``' figures; ``spec``: the recipe's plain distribution spec (``None``: the
    recipe has none there); ``value``: what the parameters hold; ``transform``: how one
    draw of ``spec`` becomes such a value (e.g. the first weight of a pair), ``None`` when
    it is the draw itself.
    """

    name: str
    group: str
    spec: Any
    value: float
    transform: Callable[[Any], float] | None = None


def is_spec(node: Any) -> bool:
    """True when a plain recipe node is a distribution spec (or a numeric/bool constant)."""
    if isinstance(node, (bool, int, float)):
        return True
    return isinstance(node, dict) and any(k in NAMES for k in node)


def first_of(value: Any) -> float:
    """The first item of a drawn pair (the first layer's weight)."""
    return float(value[0])


def present(value: Any) -> float:
    """1.0 when a drop draw keeps the track, 0.0 when it drops it."""
    return 0.0 if value else 1.0


def drawn_values(params: Mapping[str, Any], recipe: Mapping[str, Any]) -> Iterator[Drawn]:
    """Every value of ``params`` (``ExampleParams.to_dict()``) that ``recipe`` (its plain
    dict) draws, in a fixed order: per drum its hit count and first weight, per instrument
    its presence, segment length and semitones, per track its mix settings and sends, the
    buses, the master."""
    drums = recipe["drums"]
    for cls, d in params.get("drums", {}).items():
        yield Drawn(f"hits.{cls}", "hits", drums["hits"][cls], len(d["grid"]))
        weight = Drawn("layering.weight_first", "layering", drums["layer_weights"],
                       d["weights"][0], transform=first_of)  # fmt: skip
        yield weight
    inst_spec = recipe["instruments"]
    for name, inst in params.get("instruments", {}).items():
        track = inst_spec["tracks"].get(name, {})
        plays = inst.get("loop_id") is not None
        if "drop" in track:
            yield Drawn(f"instruments.present.{name}", "instruments", track["drop"],
                        1.0 if plays else 0.0, transform=present)  # fmt: skip
        if plays:
            yield Drawn("instruments.segment_seconds", "instruments",
                        inst_spec["segment_seconds"], inst["segment_seconds"])  # fmt: skip
            yield Drawn(f"semitones.{name}", "semitones", track.get("semitones"), inst["semitones"])
    mixing = recipe["mixing"]
    for track, mix in params.get("mix", {}).items():
        per_track = mixing["tracks"].get(track, {})
        for key in ("gain_db", "pan"):
            if key in mix and key in per_track:
                yield Drawn(f"mixing.{key}.{track}", "mixing_tracks", per_track[key], mix[key])
        for key, value in mix.items():
            if key in MIXING_GROUP and key in mixing:
                yield from _walk(value, mixing[key], f"mixing.{key}", MIXING_GROUP[key])
        for bus in ("delay", "reverb"):  # per-track send levels to the shared buses
            if f"{bus}_send_db" in mix and bus in mixing:
                spec = mixing[bus].get("send_db")
                yield Drawn(f"mixing.{bus}.send_db", "mixing_sends", spec, mix[f"{bus}_send_db"])
    for bus, value in params.get("buses", {}).items():  # the example's bus settings
        if bus in mixing:
            yield from _walk(value, mixing[bus], f"mixing.{bus}", "mixing_sends")
    if "master" in params:
        yield from _walk(params["master"], recipe["master"], "master", "master")


def _walk(params: Any, spec: Any, name: str, group: str) -> Iterator[Drawn]:
    """Every numeric/bool leaf of ``params`` whose recipe node is a spec."""
    if isinstance(params, dict) and isinstance(spec, dict) and not is_spec(spec):
        for key, value in params.items():
            if key in spec:
                yield from _walk(value, spec[key], f"{name}.{key}", group)
    elif isinstance(params, list) and isinstance(spec, list):
        for i, (value, sub) in enumerate(zip(params, spec, strict=False)):
            yield from _walk(value, sub, f"{name}[{i}]", group)
    elif isinstance(params, (bool, int, float)) and is_spec(spec):
        yield Drawn(name, group, spec, float(params))


def params_outside_recipe(params: Mapping[str, Any], recipe: Mapping[str, Any]) -> list[str]:
    """What in ``params`` (``ExampleParams.to_dict()``) the recipe (its plain dict) could
    not have drawn.

    Each drawn value (:func:`drawn_values`) is checked against the bounds of the recipe
    distribution it comes from, and each drum grid must hold distinct sorted points of the
    recipe's grid (a Groove recipe's hit counts come from MIDI windows and are not
    checked). Returns one ``'name: why'`` line per problem, by name (e.g. for a hand-edited
    ``example.json``, before rendering it).
    """
    first: dict[str, Drawn] = {}  # a name's spec and transform: those of its first value
    values: dict[str, list[float]] = {}
    for d in drawn_values(params, recipe):
        first.setdefault(d.name, d)
        values.setdefault(d.name, []).append(float(d.value))
    problems = []
    for name in sorted(values):
        spec, transform = first[name].spec, first[name].transform
        if spec is None or transform is not None:
            continue  # nothing to check, or a value no bound of the spec applies to
        if "groove" in recipe and name.startswith("hits."):
            continue  # a Groove window decides the hit counts
        bounds = parse_distribution(spec, name).bounds
        if bounds is None:
            continue
        tol = 1e-9 * max(1.0, abs(bounds[0]), abs(bounds[1]))
        for v in values[name]:
            if not bounds[0] - tol <= v <= bounds[1] + tol:
                problems.append(
                    f"{name}: {v:g} outside the recipe's [{bounds[0]:g}, {bounds[1]:g}]"
                )
    points = int(recipe["drums"]["grid_points"])
    for cls, drum in params.get("drums", {}).items():
        grid = list(drum.get("grid", ()))
        if grid != sorted(set(grid)) or not all(0 <= g < points for g in grid):
            problems.append(f"drums.{cls}.grid: expected distinct sorted points in [0, {points})")
    return problems
