"""One RMOD example: draw every random parameter, then render from the drawn records.

``draw_example(recipe, library, seed, split, index)`` is the only place that draws. It
uses :func:`example_rng` (a generator derived from seed, split and index alone, so the
result is independent of workers or shards) and reads only the library's ids and entry
durations, never audio. It returns :class:`ExampleParams`, a tree of frozen records
that serializes to JSON. ``render_example(params, recipe, library)`` draws nothing: the
same params, recipe and library give the same arrays, hence the same bytes.

Draw order (fixed; changing it changes every example): for each drum class in
``rmod.DRUMS`` order, hit count, grid points, two source ids, weight pair; for each
instrument of the recipe in ``rmod.INSTRUMENTS`` order, drop decision, then (if kept and
the split has loops) loop id, segment length, slice start, semitones; then the mixing
parameters of each playing track (drums first, then instruments), with its send levels;
then the two send buses (delay, reverb); then the master.
A Groove recipe draws a MIDI window (:mod:`rmod.example.groove`) first and then no hit counts or
grid points: the window's onsets are the grid (one grid point per sample).

Rendering reads library audio through a :class:`rmod.example.sample_store.SampleStore` (decoded once at
the build rate, loops pitch-shifted whole and sliced); a plain :class:`rmod.library.catalog.Library`
passed instead is wrapped in one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rmod import DRUMS, SPLITS
from rmod.errors import RmodError
from rmod.example.groove import GrooveRef, GrooveSet, GrooveWindow, recipe_grooves
from rmod.example.master import MasterParams, draw_master
from rmod.example.mixing import (
    BusParams,
    TrackMixParams,
    draw_buses,
    draw_track_mix,
)
from rmod.example.pattern import draw_grid
from rmod.recipe.spec import Recipe
from rmod.records import from_plain, to_plain

if TYPE_CHECKING:  # the protocol only types the argument: nothing of it runs
    from rmod.library.source import LibraryIndex

SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}


class ExampleError(RmodError, ValueError):
    """An example that cannot be drawn or rendered (message says why and what to do)."""


def example_id(split: str, index: int) -> str:
    """Stable id of an example, e.g. ``train-00000042``."""
    return f"{split}-{int(index):08d}"


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """``Generator(PCG64(SeedSequence([seed, SPLIT_CODE[split], index])))``."""
    if split not in SPLIT_CODE:
        raise ExampleError(f"unknown split {split!r} (expected one of {SPLITS})")
    if int(seed) < 0 or int(index) < 0:
        raise ExampleError(f"seed and index must be non-negative integers, got {seed} and {index}")
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([int(seed), SPLIT_CODE[split], int(index)]))
    )


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True)
class DrumParams:
    """One drum class: the two layered source ids, their weights, the sorted grid points."""

    sample_ids: tuple[str, str]
    weights: tuple[float, float]
    grid: tuple[int, ...]


@dataclass(frozen=True)
class InstrumentParams:
    """One instrument. ``dropped``: left out by the drop draw; ``available``: the split has
    loops of it. Only a kept and available instrument has a loop and plays."""

    dropped: bool
    available: bool
    loop_id: str | None = None
    segment_seconds: float = 0.0
    start_sample: int = 0
    semitones: int = 0

    @property
    def plays(self) -> bool:
        """True when this instrument is in the mixture."""
        return self.loop_id is not None


@dataclass(frozen=True)
class ExampleParams:
    """Every random draw of one example (see the module docstring for the draw order)."""

    id: str
    seed: int
    split: str
    index: int
    recipe_fingerprint: str
    library_fingerprint: str
    drums: dict[str, DrumParams]
    instruments: dict[str, InstrumentParams]
    mix: dict[str, TrackMixParams]
    buses: BusParams
    master: MasterParams
    # Groove variant: the MIDI window of the drum pattern (absent from to_dict when None).
    groove: GrooveRef | None = field(default=None, metadata={"optional": True})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict; :meth:`from_dict` inverts it exactly."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "params") -> ExampleParams:
        """Rebuild from :meth:`to_dict` output (``RecordError``, a ``ValueError``, naming
        ``where`` and the bad field)."""
        return from_plain(cls, data, where)

    def sources(self) -> dict[str, list[str]]:
        """Library ids used, per drum class and per playing instrument."""
        out = {cls: list(d.sample_ids) for cls, d in self.drums.items()}
        for name, inst in self.instruments.items():
            if inst.loop_id is not None:  # it plays
                out[name] = [inst.loop_id]
        return out

    @property
    def tracks(self) -> tuple[str, ...]:
        """Names of the tracks in the mixture (drums, then playing instruments)."""
        return tuple(self.mix)


# ----------------------------------------------------------------------------- drawing
def draw_example(
    recipe: Recipe,
    library: LibraryIndex,
    seed: int,
    split: str,
    index: int,
    grooves: GrooveSet | None = None,
) -> ExampleParams:
    """Draw every random parameter of example ``(seed, split, index)``; loads no audio.

    Raises :class:`ExampleError` if a drum class has no one-shot in ``split``. An
    instrument without loops in ``split`` is recorded as unavailable and left out.
    A Groove recipe (``recipe.groove``) needs ``grooves`` (:class:`rmod.example.groove.GrooveSet`):
    its first draw picks a window of ``split``, whose onsets replace the hit-count and
    grid draws.

    The draws come in a fixed order from one generator: the groove window, each drum
    class, each instrument, each playing track's mix, the buses, the master.
    """
    rng = example_rng(seed, split, index)
    window = _draw_window(recipe, grooves, split, rng)
    drums = {cls: _draw_drum(cls, recipe, library, split, window, rng) for cls in DRUMS}
    instruments = {
        name: _draw_instrument(name, recipe, library, split, rng)
        for name in recipe.instrument_names
    }
    mix: dict[str, TrackMixParams] = {}
    for name in list(DRUMS) + [n for n, p in instruments.items() if p.plays]:
        mix[name] = draw_track_mix(recipe.mixing.tracks[name], recipe.mixing, rng)
    buses = draw_buses(recipe.mixing, rng)
    master = draw_master(recipe.master, rng)
    return ExampleParams(
        id=example_id(split, index),
        seed=int(seed),
        split=split,
        index=int(index),
        recipe_fingerprint=recipe.fingerprint,
        library_fingerprint=str(library.fingerprint),
        drums=drums,
        instruments=instruments,
        mix=mix,
        buses=buses,
        master=master,
        groove=None if window is None else window.ref,
    )


def _draw_drum(
    cls: str,
    recipe: Recipe,
    library: LibraryIndex,
    split: str,
    window: GrooveWindow | None,
    rng: np.random.Generator,
) -> DrumParams:
    """A drum class's hit grid (from the groove window, or drawn), its two layered sources
    and their weights."""
    ids = library.ids(cls, split)
    if not ids:
        raise ExampleError(
            f"the library has no {cls} one-shots in split {split!r}; "
            f"add some (rmod-library index) or use another library"
        )
    if window is None:
        n_hits = int(getattr(recipe.drums.hits, cls).sample(rng))
        grid = draw_grid(n_hits, recipe.drums.grid_points, rng)
    else:
        grid = window.onsets[cls]
    if len(ids) >= 2:
        picks = rng.choice(len(ids), size=2, replace=False)
    else:
        picks = np.zeros(2, dtype=np.int64)
    weights = recipe.drums.layer_weights.sample(rng)
    return DrumParams(
        sample_ids=(ids[int(picks[0])], ids[int(picks[1])]),
        weights=(float(weights[0]), float(weights[1])),
        grid=grid,
    )


def _draw_instrument(
    name: str, recipe: Recipe, library: LibraryIndex, split: str, rng: np.random.Generator
) -> InstrumentParams:
    """Whether an instrument plays; if it does, its loop, segment (length and start) and
    pitch shift."""
    spec = recipe.instruments.tracks[name]
    dropped = bool(spec.drop.sample(rng))
    ids = library.ids(name, split)
    if dropped or not ids:
        return InstrumentParams(dropped=dropped, available=bool(ids))
    sr = recipe.audio.sample_rate
    loop_id = ids[int(rng.integers(len(ids)))]
    seg_s = float(recipe.instruments.segment_seconds.sample(rng))
    seg_n = int(round(seg_s * sr))
    loop_n = int(math.floor(library.entry(loop_id).duration * sr))
    start = int(rng.integers(0, max(0, loop_n - seg_n) + 1))
    semitones = int(spec.semitones.sample(rng))
    return InstrumentParams(
        dropped=False,
        available=True,
        loop_id=loop_id,
        segment_seconds=seg_s,
        start_sample=start,
        semitones=semitones,
    )


def _draw_window(
    recipe: Recipe, grooves: GrooveSet | None, split: str, rng: np.random.Generator
) -> GrooveWindow | None:
    if recipe.groove is None:
        return None
    if grooves is None:
        grooves = recipe_grooves(recipe)  # set by rmod-build --midi-dir
    if grooves is None:
        raise ExampleError(
            f"recipe {recipe.name} takes its drum patterns from MIDI files: give --midi-dir DIR"
        )
    try:
        return grooves.draw(split, rng)
    except ValueError as exc:
        raise ExampleError(str(exc)) from None
