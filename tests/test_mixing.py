"""Mixing and mastering: pan law, limiter, EQ, parallel sends, master ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmod.audio import peak_db, rms_db
from rmod.master import MasterParams, apply_master, draw_master
from rmod.mixing import (
    BandParams,
    CompressorParams,
    DelayParams,
    EQParams,
    LimiterParams,
    ReverbParams,
    TrackMixParams,
    draw_track_mix,
    eq_plugins,
    limiter_plugin,
    pan,
    pan_gains,
    process_track,
)
from rmod.recipe import load_recipe

SR = 44100


def _tone(freq: float, amp: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None].repeat(2, 0)


def _flat_eq() -> EQParams:
    flat = BandParams(1000.0, 0.0, 0.7)
    return EQParams(
        low_shelf=BandParams(100.0, 0.0, 0.7),
        peaks=(flat,),
        high_shelf=BandParams(8000.0, 0.0, 0.7),
    )


def _neutral(**kw) -> TrackMixParams:
    base = dict(
        gain_db=0.0,
        eq=_flat_eq(),
        compressor=CompressorParams(0.0, 1.0, 1.0, 100.0, 0.0),
        pan=0.0,
        limiter=LimiterParams(0.0, 100.0),
        delay=DelayParams(False, 0.2, 0.0, -12.0),
        reverb=ReverbParams(False, 0.5, 0.5, 1.0, -12.0),
    )
    base.update(kw)
    return TrackMixParams(**base)


@pytest.mark.parametrize("law", [-3.0, -4.5, -6.0])
def test_pan_law(law):
    left, right = pan_gains(0.0, law)
    assert abs(20 * math.log10(left) - law) < 0.03 and abs(left - right) < 1e-12
    assert pan_gains(-1.0, law)[1] < 1e-12 and abs(pan_gains(-1.0, law)[0] - 1.0) < 1e-12
    if law == -3.0:  # constant power everywhere
        for p in np.linspace(-1, 1, 9):
            lg, rg = pan_gains(p, law)
            assert abs(lg**2 + rg**2 - 1.0) < 1e-9
    x = np.ones((2, 10), dtype=np.float32)
    out = pan(x, 0.5, law)
    assert out[1, 0] > out[0, 0]


def test_limiter_caps_the_peak_at_its_threshold():
    loud = _tone(220.0, 1.5) * np.exp(-np.arange(SR // 2) / SR * 3).astype(np.float32)
    out = limiter_plugin(LimiterParams(-6.0, 100.0))(loud, SR)
    assert peak_db(out) < -6.0 + 0.2
    quiet = _tone(220.0, 0.05)
    out = limiter_plugin(LimiterParams(-6.0, 100.0))(quiet, SR)
    np.testing.assert_allclose(out, quiet, atol=1e-5)  # below threshold: unchanged


def test_eq_low_shelf_boosts_lows_not_highs():
    eq = EQParams(BandParams(300.0, 6.0, 0.7), (), BandParams(16000.0, 0.0, 0.7))
    import pedalboard

    board = pedalboard.Pedalboard(eq_plugins(eq))
    low, high = _tone(60.0, 0.1), _tone(5000.0, 0.1)
    assert abs(rms_db(board(low, SR)[:, 4410:]) - rms_db(low[:, 4410:]) - 6.0) < 0.5
    assert abs(rms_db(board(high, SR)[:, 4410:]) - rms_db(high[:, 4410:])) < 0.5


def test_neutral_chain_is_centre_pan_only_and_gain_applies():
    x = _tone(440.0, 0.1)
    out = process_track(x, _neutral(), SR, -3.0)
    np.testing.assert_allclose(out, x * np.float32(10 ** (-3 / 20)), atol=2e-3)
    louder = process_track(x, _neutral(gain_db=6.0), SR, -3.0)
    assert abs(rms_db(louder) - rms_db(out) - 6.0) < 0.05


def test_parallel_sends_come_from_the_track_input():
    x = np.zeros((2, SR // 2), dtype=np.float32)
    x[:, :200] = _tone(440.0, 0.5)[:, :200]
    dry = process_track(x, _neutral(gain_db=-60.0), SR, -3.0)
    delayed = process_track(
        x, _neutral(gain_db=-60.0, delay=DelayParams(True, 0.1, 0.0, -6.0)), SR, -3.0
    )
    echo = delayed - dry
    # the echo arrives 0.1 s later, at the send level, independent of the track's -60 dB gain
    assert peak_db(echo[:, :4000]) < -60.0
    assert abs(peak_db(echo[:, 4410:4700]) - (peak_db(x) - 6.0)) < 0.5
    verb = process_track(
        x, _neutral(gain_db=-60.0, reverb=ReverbParams(True, 0.8, 0.3, 1.0, -12.0)), SR, -3.0
    )
    assert rms_db((verb - dry)[:, 2000:]) > -60.0


def test_drawn_chains_stay_finite_and_master_hits_the_ceiling():
    recipe = load_recipe(None)
    rng = np.random.default_rng(3)
    noise = (0.3 * rng.standard_normal((2, SR))).astype(np.float32)
    total = np.zeros_like(noise)
    for name in ("kick", "bass", "vocal"):
        params = draw_track_mix(recipe.mixing.tracks[name], recipe.mixing, rng)
        out = process_track(noise, params, SR, recipe.mixing.pan_law_db)
        assert out.shape == noise.shape and out.dtype == np.float32 and np.isfinite(out).all()
        total += out
    master = draw_master(recipe.master, rng)
    assert isinstance(master, MasterParams)
    mastered = apply_master(10.0 * total, master, SR, -1.0)  # way over full scale going in
    assert mastered.shape == total.shape and np.isfinite(mastered).all()
    assert -1.01 < peak_db(mastered) <= -1.0
    silent = apply_master(np.zeros_like(total), master, SR, -1.0)
    assert not silent.any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), level=st.floats(0.001, 20.0), n=st.integers(64, 4410))
def test_invariants_finite_length_and_ceiling(seed, level, n):
    recipe = load_recipe(None)
    rng = np.random.default_rng(seed)
    x = (level * rng.standard_normal((2, n))).astype(np.float32)
    params = draw_track_mix(recipe.mixing.tracks["snare"], recipe.mixing, rng)
    track = process_track(x, params, SR, recipe.mixing.pan_law_db)
    assert track.shape == (2, n) and np.isfinite(track).all()
    out = apply_master(track, draw_master(recipe.master, rng), SR, recipe.master.ceiling_dbfs)
    assert out.shape == (2, n) and np.isfinite(out).all()
    assert peak_db(out) <= recipe.master.ceiling_dbfs
