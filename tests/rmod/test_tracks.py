"""Dry tracks on small synthetic signals: onsets, retrigger cuts, layering, targets, loops."""

from __future__ import annotations

import numpy as np
import pytest

from rmod.audio import rms_db
from rmod.example.tracks import (
    fit_target,
    layer,
    loop_to_length,
    normalize_oneshot,
    normalize_rms,
    render_drum_track,
)


def _shot(n: int = 300, seed: int = 0) -> np.ndarray:
    """A click-like one-shot whose first sample is non-zero, ``[2, n]``."""
    rng = np.random.default_rng(seed)
    x = (0.5 + 0.5 * rng.random(n)) * np.exp(-np.arange(n) / 80.0)
    return np.stack([x, 0.5 * x]).astype(np.float32)


def test_onsets_exact_to_the_sample():
    shot = _shot(50)
    positions = np.array([7, 100, 333, 901])
    track = render_drum_track(shot, positions, 1000, fade=0)
    nz = np.flatnonzero(np.abs(track[0]) > 0)
    starts = [int(nz[0])] + [int(b) for a, b in zip(nz[:-1], nz[1:], strict=True) if b != a + 1]
    assert starts == positions.tolist()
    for p in positions[:-1]:
        np.testing.assert_array_equal(track[:, p : p + 50], shot)


def test_retrigger_cuts_earlier_sound_with_fade():
    shot = _shot(400)
    fade = 20
    track = render_drum_track(shot, np.array([100, 250]), 1000, fade=fade)
    # from the new onset on, only the new hit sounds (exactly the one-shot)
    np.testing.assert_array_equal(track[:, 250:650], shot)
    # before the cut the earlier hit is untouched ...
    np.testing.assert_array_equal(track[:, 100 : 250 - fade], shot[:, : 150 - fade])
    # ... and fades out over the last `fade` samples, monotonically, to near zero
    ratio = track[0, 250 - fade : 250] / shot[0, 150 - fade : 150]
    assert np.all(np.diff(ratio) < 0) and ratio[0] < 1.0 and 0.0 < ratio[-1] < 0.06


def test_last_hit_cut_at_end_and_gap_shorter_than_fade():
    shot = _shot(400)
    track = render_drum_track(shot, np.array([0, 5, 900]), 1000, fade=20)
    assert track.shape == (2, 1000)
    np.testing.assert_array_equal(track[:, 900:], shot[:, :100])
    assert np.all(np.abs(track[0, :5]) < np.abs(shot[0, :5]))  # whole 5-sample gap fades


@pytest.mark.parametrize("weights", [(0.8, 0.2), (0.7, 0.3), (0.6, 0.4)])
def test_layering_weights_applied_exactly(weights):
    a, b = _shot(300, 1), _shot(120, 2)
    out = layer(a, b, weights)
    assert out.shape == (2, 300)
    w1, w2 = np.float32(weights[0]), np.float32(weights[1])
    np.testing.assert_array_equal(out[:, :120], w1 * a[:, :120] + w2 * b)
    np.testing.assert_array_equal(out[:, 120:], w1 * a[:, 120:])


def test_fit_target_pads_or_cuts_with_fade():
    shot = _shot(300)
    padded = fit_target(shot, 500, fade=10)
    assert padded.shape == (2, 500)
    np.testing.assert_array_equal(padded[:, :300], shot)
    assert not padded[:, 300:].any()
    cut = fit_target(shot, 200, fade=10)
    assert cut.shape == (2, 200)
    np.testing.assert_array_equal(cut[:, :190], shot[:, :190])
    assert cut[0, -1] == 0.0 and np.all(np.abs(cut[0, 190:]) <= np.abs(shot[0, 190:200]))


def test_loop_fills_the_mixture():
    seg = np.arange(300, 500, dtype=np.float32)[None]
    full = loop_to_length(seg, 450)
    np.testing.assert_array_equal(full[0], np.concatenate([seg[0], seg[0], seg[0, :50]]))


def test_oneshot_leveling_by_attack_rms_with_peak_cap():
    sr = 1000
    dense = np.full((2, 400), 0.5, dtype=np.float32)  # crest factor 1: RMS rule decides
    out = normalize_oneshot(dense, sr, rms_db=-12.0, window_ms=100.0, peak_db=-1.0)
    assert abs(rms_db(out[:, :100]) - (-12.0)) < 1e-3
    spiky = np.zeros((2, 400), dtype=np.float32)
    spiky[:, 0] = 0.3  # huge crest factor: the peak cap decides
    out = normalize_oneshot(spiky, sr, rms_db=-12.0, window_ms=100.0, peak_db=-1.0)
    assert abs(20 * np.log10(np.abs(out).max()) - (-1.0)) < 1e-3
    quiet = normalize_rms(dense, -30.0)
    assert abs(rms_db(quiet) - (-30.0)) < 1e-3
