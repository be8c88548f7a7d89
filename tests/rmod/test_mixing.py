"""Mixing and mastering: pan law, limiter, EQ, send buses, mono path, master ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmod.audio import peak_db, rms_db
from rmod.example.master import MasterParams, apply_master, draw_master
from rmod.example.mixing import (
    BandParams,
    BusParams,
    CompressorParams,
    DelayParams,
    EQParams,
    LimiterParams,
    ReverbParams,
    TrackMixParams,
    draw_buses,
    draw_track_mix,
    eq_plugins,
    limiter_plugin,
    linked_limit,
    pan,
    pan_gains,
    process_buses,
    process_track,
    send,
)
from rmod.recipe.spec import load_recipe

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
        delay_send_db=-12.0,
        reverb_send_db=-12.0,
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


def _buses(delay: bool, reverb: bool) -> BusParams:
    return BusParams(DelayParams(delay, 0.1, 0.0), ReverbParams(reverb, 0.8, 0.3, 1.0))


def test_sends_feed_shared_buses_from_the_track_input():
    x = np.zeros((1, SR // 2), dtype=np.float32)
    x[:, :200] = _tone(440.0, 0.5)[:1, :200]
    quiet = _neutral(gain_db=-60.0, pan=0.6, delay_send_db=-6.0)
    part = send(pan(x, quiet.pan, -3.0), quiet.delay_send_db)
    left, right = pan_gains(0.6, -3.0)
    np.testing.assert_allclose(part[0], x[0] * left * 10 ** (-6 / 20), rtol=1e-6)
    np.testing.assert_allclose(part[1], x[0] * right * 10 ** (-6 / 20), rtol=1e-6)
    # two tracks share one delay bus; the echo arrives 0.1 s later at the send level,
    # whatever the tracks' own (-60 dB) gain
    other = _neutral(gain_db=-60.0, pan=-0.6, delay_send_db=-6.0)
    bus_in = part + send(pan(x, other.pan, -3.0), other.delay_send_db)
    wet = process_buses(bus_in, None, _buses(True, False), SR)
    assert set(wet) == {"delay"} and wet["delay"].shape == (2, SR // 2)
    echo = wet["delay"]
    assert peak_db(echo[:, :4000]) < -100.0
    assert abs(peak_db(echo[:, 4410:4700]) - peak_db(bus_in)) < 0.5
    verb = process_buses(None, bus_in, _buses(False, True), SR)["reverb"]
    assert rms_db(verb[:, 2000:]) > -60.0
    assert process_buses(bus_in, bus_in, _buses(False, False), SR) == {}  # off: not computed


def test_drawn_buses_follow_the_recipe():
    recipe = load_recipe(None)
    rng = np.random.default_rng(0)
    drawn = [draw_buses(recipe.mixing, rng) for _ in range(400)]
    delay_on = np.mean([b.delay.active for b in drawn])
    reverb_on = np.mean([b.reverb.active for b in drawn])
    assert abs(delay_on - 0.2) < 0.06 and abs(reverb_on - 0.5) < 0.08
    lo, hi = recipe.mixing.delay.time_s.bounds
    assert all(lo <= b.delay.time_s <= hi for b in drawn)


@pytest.mark.parametrize("position", [-1.0, -0.4, 0.0, 0.7])
def test_mono_path_equals_the_stereo_chain_on_a_mono_source(position):
    """A mono track runs its chain on one channel; the stereo path on a duplicated copy of
    the same source gives the same output (the linked limiter makes this exact)."""
    recipe = load_recipe(None)
    rng = np.random.default_rng(11)
    n = SR
    mono = (0.6 * rng.standard_normal((1, n)) * np.exp(-np.arange(n) / 6000)).astype(np.float32)
    params = draw_track_mix(recipe.mixing.tracks["snare"], recipe.mixing, rng)
    params = TrackMixParams(**{**params.__dict__, "pan": position})
    params = TrackMixParams(**{**params.__dict__, "limiter": LimiterParams(-9.0, 50.0)})
    out_mono = process_track(mono, params, SR, -3.0)
    out_stereo = process_track(np.repeat(mono, 2, axis=0), params, SR, -3.0)
    assert out_mono.shape == out_stereo.shape == (2, n)
    assert np.max(np.abs(out_mono - out_stereo)) < 1e-6
    assert peak_db(out_mono) < -9.0 + 0.2  # the limiter acted on the louder channel


def test_linked_limiter_keeps_the_pan_image():
    x = _tone(220.0, 1.5)
    x[1] *= 0.25  # right channel 12 dB lower
    out = linked_limit(x, LimiterParams(-6.0, 100.0), SR)
    assert peak_db(out[0]) < -6.0 + 0.2
    ratio = out[1, 2000:] / np.where(out[0, 2000:] == 0, 1, out[0, 2000:])
    np.testing.assert_allclose(ratio[np.abs(out[0, 2000:]) > 1e-3], 0.25, rtol=1e-4)


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


def test_leading_silence_is_skipped_without_changing_the_output():
    """A drum track is processed from its first hit; the result equals running the whole
    chain (pedalboard, directly) over the silent start too."""
    import pedalboard

    recipe = load_recipe(None)
    rng = np.random.default_rng(5)
    hit = (0.7 * rng.standard_normal(6000) * np.exp(-np.arange(6000) / 900)).astype(np.float32)
    x = np.zeros((1, SR), dtype=np.float32)
    x[0, 30000:36000] = hit
    params = draw_track_mix(recipe.mixing.tracks["kick"], recipe.mixing, rng)
    out = process_track(x, params, SR, -3.0)
    left, right = pan_gains(params.pan, -3.0)
    loud = max(left, right)
    c = params.compressor
    chain = [pedalboard.Gain(gain_db=params.gain_db), *eq_plugins(params.eq)]
    chain += [
        pedalboard.Compressor(
            threshold_db=c.threshold_db,
            ratio=c.ratio,
            attack_ms=c.attack_ms,
            release_ms=c.release_ms,
        ),
        pedalboard.Gain(gain_db=c.makeup_db + 20 * math.log10(loud)),
        limiter_plugin(params.limiter),
    ]
    ref = pedalboard.Pedalboard(chain)(x, SR)[0]
    expected = np.stack([ref * (left / loud), ref * (right / loud)])
    assert not out[:, :30000].any()
    assert np.max(np.abs(out - expected)) < 1e-6
    assert not process_track(np.zeros((1, 100), np.float32), params, SR, -3.0).any()


def test_a_threshold_never_reached_skips_the_stage_exactly():
    """Below its threshold a compressor or limiter multiplies by exactly 1: skipping it
    (as process_track does) gives the same samples as running it."""
    import pedalboard

    from rmod.example.mixing import _below

    x = _tone(300.0, 0.2)[:1] * np.exp(-np.arange(SR // 2) / 5000).astype(np.float32)
    assert _below(x, -12.0) and not _below(x, -16.0)  # peak is 0.2 = -14.0 dBFS
    comp = pedalboard.Compressor(threshold_db=-12.0, ratio=4.0, attack_ms=1.0, release_ms=80.0)
    np.testing.assert_array_equal(pedalboard.Pedalboard([comp])(x, SR), x)
    lim = limiter_plugin(LimiterParams(-12.0, 50.0))
    np.testing.assert_array_equal(lim(x, SR), x)
