"""Drum pattern: distinct grid points, exact sample positions, a standard MIDI drum file."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rmod.example.pattern import (
    build_midi,
    draw_grid,
    grid_to_samples,
    midi_bytes,
    read_midi_grid,
    ticks_per_point,
)

NOTES = {"kick": 36, "snare": 38, "hihat": 42}


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 40), points=st.integers(40, 3000), seed=st.integers(0, 10_000))
def test_draw_grid_distinct_sorted_in_range(n, points, seed):
    grid = draw_grid(n, points, np.random.default_rng(seed))
    assert len(grid) == n == len(set(grid))
    assert list(grid) == sorted(grid)
    assert all(0 <= g < points for g in grid)


@settings(max_examples=50, deadline=None)
@given(g=st.integers(0, 1919), n_samples=st.integers(1000, 400_000))
def test_grid_to_samples_rounds_exactly(g, n_samples):
    exact = Fraction(g * n_samples, 1920)
    expected = math.floor(exact + Fraction(1, 2))  # round half up
    assert int(grid_to_samples([g], 1920, n_samples)[0]) == expected


def test_paper_grid_positions():
    pos = grid_to_samples(np.arange(1920), 1920, 176400)
    assert pos[0] == 0 and pos[1] == 92 and pos[2] == 184 and pos[1919] == 176308
    assert np.all(np.diff(pos) >= 91) and np.all(np.diff(pos) <= 92)


def test_midi_file_holds_the_pattern(tmp_path):
    grids = {"kick": (0, 480, 960), "snare": (479, 1439), "hihat": tuple(range(0, 1920, 120))}
    midi = build_midi(grids, NOTES, 1920, 4.0, 120.0, 480, velocity=100)
    data = midi_bytes(midi)
    assert data[:4] == b"MThd"
    tpp = ticks_per_point(4.0, 120.0, 480, 1920)
    assert tpp == 2
    assert read_midi_grid(data, NOTES, tpp) == grids
    path = tmp_path / "p.mid"
    path.write_bytes(data)
    import miditoolkit

    back = miditoolkit.MidiFile(str(path))
    (track,) = back.instruments
    assert track.is_drum
    assert {n.pitch for n in track.notes} == {36, 38, 42}
    assert back.tempo_changes[0].tempo == 120.0
    # each note lasts until the next onset of its class (or the end of the loop)
    kicks = sorted((n.start, n.end) for n in track.notes if n.pitch == 36)
    assert kicks == [(0, 960), (960, 1920), (1920, 3840)]
