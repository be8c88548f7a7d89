"""Render one RMOD example from its drawn records; nothing here draws.

``render_example(params, recipe, library)``: the same params, recipe and library give the same
arrays, hence the same bytes. Library audio comes through a
:class:`rmod.example.sample_store.SampleStore` (decoded once at the build rate, loops
pitch-shifted whole and sliced); a plain :class:`rmod.library.catalog.Library` passed instead is
wrapped in one. Dry tracks (:mod:`rmod.example.tracks`) -> per-track chains and the two buses
(:mod:`rmod.example.mixing`) -> master (:mod:`rmod.example.master`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import miditoolkit
import numpy as np

from rmod.example.draw import DrumParams, ExampleError, ExampleParams, InstrumentParams
from rmod.example.master import apply_master
from rmod.example.mixing import (
    pan,
    process_buses,
    process_track,
    send,
)
from rmod.example.pattern import build_midi, grid_to_samples
from rmod.example.sample_store import SampleStore
from rmod.example.tracks import (
    fit_target,
    layer,
    loop_to_length,
    ms_to_samples,
    normalize_oneshot,
    normalize_rms,
    render_drum_track,
)
from rmod.recipe.spec import Recipe

if TYPE_CHECKING:  # the protocol only types the argument: nothing of it runs
    from rmod.library.source import LibrarySource


@dataclass
class Rendered:
    """Rendered audio of one example (float32 arrays ``[channels, samples]``).

    ``mixture``: stereo, exactly ``mixture_seconds * sample_rate`` samples. ``oneshots``:
    the dry layered one-shot per drum class, ``target_seconds`` long, mono when both of
    its sources are mono (stereo otherwise). ``stems``: each track after its chain
    (stereo, pre-master level, may exceed full scale), each active bus's return
    (``delay_bus``, ``reverb_bus``) and ``<drum>_dry`` dry drum tracks. ``onsets``: sample
    positions per drum class. ``midi``: the drum pattern.
    """

    mixture: np.ndarray
    oneshots: dict[str, np.ndarray]
    stems: dict[str, np.ndarray]
    onsets: dict[str, np.ndarray]
    midi: miditoolkit.MidiFile
    sample_rate: int


def layered_oneshot(drum: DrumParams, recipe: Recipe, store: SampleStore) -> np.ndarray:
    """The layered one-shot of a drum class: leveled sources (see
    :func:`rmod.example.tracks.normalize_oneshot`), weighted sum (mono if both sources are)."""
    sr = recipe.audio.sample_rate
    d = recipe.drums
    a, b = (
        normalize_oneshot(
            store.audio(i), sr, d.source_rms_db, d.source_rms_window_ms, d.source_peak_db
        )
        for i in drum.sample_ids
    )
    return layer(a, b, drum.weights)


def instrument_track(inst: InstrumentParams, recipe: Recipe, store: SampleStore) -> np.ndarray:
    """Dry instrument track: the loop pitch-shifted whole, the segment sliced from it,
    repeated to the mixture length (a short segment repeats exactly), RMS-normalized."""
    assert inst.loop_id is not None  # only a playing instrument (one with a loop) gets a track
    sr = recipe.audio.sample_rate
    length = int(round(inst.segment_seconds * sr))
    segment = store.loop_segment(inst.loop_id, inst.semitones, inst.start_sample, length)
    track = loop_to_length(segment, recipe.mixture_samples)
    return normalize_rms(track, recipe.instruments.loudness_rms_db)


def _sample_store(library: LibrarySource | SampleStore, sample_rate: int) -> SampleStore:
    if isinstance(library, SampleStore):
        if library.sample_rate != sample_rate:
            raise ExampleError(
                f"the sample store holds {library.sample_rate} Hz audio, the recipe needs "
                f"{sample_rate} Hz"
            )
        return library
    return SampleStore(library, sample_rate)


def render_example(
    params: ExampleParams, recipe: Recipe, library: LibrarySource | SampleStore
) -> Rendered:
    """Render an example from its drawn parameters (draws nothing).

    ``library``: a :class:`rmod.example.sample_store.SampleStore` or a library (then wrapped in a store
    at the recipe's rate). Raises :class:`ExampleError` if ``recipe`` or ``library`` is not
    the one the parameters were drawn with (fingerprints differ).
    """
    if params.recipe_fingerprint != recipe.fingerprint:
        raise ExampleError(
            f"{params.id}: drawn with recipe {params.recipe_fingerprint[:12]}, "
            f"got {recipe.fingerprint[:12]} ({recipe.source}); use the recipe it was drawn with"
        )
    if params.library_fingerprint != str(library.fingerprint):
        raise ExampleError(
            f"{params.id}: drawn with library {params.library_fingerprint[:12]}, "
            f"got {str(library.fingerprint)[:12]}; use the library it was drawn with"
        )
    sr = recipe.audio.sample_rate
    store = _sample_store(library, sr)
    n = recipe.mixture_samples
    dry, oneshots, onsets = _dry_tracks(params, recipe, store)
    stems = _mix_tracks(params, recipe, dry)
    mix = np.zeros((2, n), dtype=np.float32)
    for stem in stems.values():
        mix += stem
    for cls in params.drums:
        stems[f"{cls}_dry"] = dry[cls]
    mixture = apply_master(mix, params.master, sr, recipe.master.ceiling_dbfs)
    midi = build_midi(
        {cls: d.grid for cls, d in params.drums.items()},
        {cls: getattr(recipe.drums.midi.notes, cls) for cls in params.drums},
        recipe.drums.grid_points,
        recipe.audio.mixture_seconds,
        recipe.drums.midi.tempo_bpm,
        recipe.drums.midi.ticks_per_beat,
        recipe.drums.midi.velocity,
    )
    return Rendered(
        mixture=mixture, oneshots=oneshots, stems=stems, onsets=onsets, midi=midi, sample_rate=sr
    )


def _dry_tracks(
    params: ExampleParams, recipe: Recipe, store: SampleStore
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Dry tracks (drums placed on their onsets, instruments), target one-shots, onsets."""
    sr, n = recipe.audio.sample_rate, recipe.mixture_samples
    retrigger = ms_to_samples(recipe.drums.retrigger_fade_ms, sr)
    target_fade = ms_to_samples(recipe.audio.target_fade_ms, sr)
    dry: dict[str, np.ndarray] = {}
    oneshots: dict[str, np.ndarray] = {}
    onsets: dict[str, np.ndarray] = {}
    for cls, drum in params.drums.items():
        shot = layered_oneshot(drum, recipe, store)
        onsets[cls] = grid_to_samples(drum.grid, recipe.drums.grid_points, n)
        dry[cls] = render_drum_track(shot, onsets[cls], n, retrigger)
        oneshots[cls] = fit_target(shot, recipe.target_samples, target_fade)
    for name, inst in params.instruments.items():
        if inst.plays:
            dry[name] = instrument_track(inst, recipe, store)
    return dry, oneshots, onsets


def _mix_tracks(
    params: ExampleParams, recipe: Recipe, dry: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Each track through its chain, plus the returns of the active send buses (stereo)."""
    sr, law = recipe.audio.sample_rate, recipe.mixing.pan_law_db
    stems: dict[str, np.ndarray] = {}
    bus_in: dict[str, np.ndarray | None] = {"delay": None, "reverb": None}
    active = {"delay": params.buses.delay.active, "reverb": params.buses.reverb.active}
    for name, track in params.mix.items():
        stems[name] = process_track(dry[name], track, sr, law)
        if not any(active.values()):
            continue
        panned = pan(dry[name], track.pan, law)
        for bus, send_db in (("delay", track.delay_send_db), ("reverb", track.reverb_send_db)):
            if active[bus]:
                part = send(panned, send_db)
                bus_in[bus] = part if bus_in[bus] is None else bus_in[bus] + part
    for bus, wet in process_buses(bus_in["delay"], bus_in["reverb"], params.buses, sr).items():
        stems[f"{bus}_bus"] = wet
    return stems
