"""The separation-based baseline: hits found where they are, in the right band, beating silence."""

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from dose_model.baseline import BANDS, baseline_oneshot, detect_onsets, pick_hit, separate
from dose_model.metrics import mss_distance

SR = 44100
KICKS = (0.2, 1.2, 2.2, 3.2)
SNARES = (0.7, 2.7)
HATS = tuple(np.round(np.arange(0.45, 3.8, 0.5), 2))


def _kick():
    t = np.arange(int(0.4 * SR)) / SR
    return (np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 8)).astype(np.float32)


def _snare(rng):
    t = np.arange(int(0.25 * SR)) / SR
    tone = 0.5 * np.sin(2 * np.pi * 200 * t) * np.exp(-t * 25)
    return (tone + 0.4 * rng.standard_normal(t.size) * np.exp(-t * 20)).astype(np.float32)


def _hat(rng):
    noise = sosfilt(butter(4, 8000, "highpass", fs=SR, output="sos"), rng.standard_normal(4410))
    return (0.5 * noise * np.exp(-np.arange(4410) / SR * 60)).astype(np.float32)


@pytest.fixture(scope="module")
def song():
    """4 s: kicks, snares, hi-hats at known onsets over a 220 Hz pad."""
    rng = np.random.default_rng(0)
    shots = {"kick": _kick(), "snare": _snare(rng), "hihat": _hat(rng)}
    mix = 0.1 * np.sin(2 * np.pi * 220 * np.arange(4 * SR) / SR).astype(np.float32)
    for drum, times in (("kick", KICKS), ("snare", SNARES), ("hihat", HATS)):
        for t in times:
            start = int(t * SR)
            mix[start : start + shots[drum].size] += shots[drum]
    return mix, shots


@pytest.mark.parametrize("drum", ["kick", "snare", "hihat"])
def test_picks_a_real_hit_in_band_and_beats_silence(song, drum):
    mix, shots = song
    times = {"kick": KICKS, "snare": SNARES, "hihat": HATS}[drum]
    est = baseline_oneshot(mix, SR, drum, 2 * SR)
    assert est.shape == (2 * SR,) and est.dtype == np.float32 and np.abs(est).max() > 0.05
    # the picked hit starts at one of this drum's onsets (within 10 ms)
    stem = separate(mix, SR, drum)
    onsets = detect_onsets(stem, SR)
    start = next(o for o in onsets if np.allclose(stem[o : o + 200], est[:200]))
    assert min(abs(start / SR - t) for t in times) < 0.010
    # its spectrum sits in the drum's band
    spectrum = np.abs(np.fft.rfft(est))
    freqs = np.fft.rfftfreq(est.size, 1 / SR)
    low, high = BANDS[drum]
    assert spectrum[(freqs >= low) & (freqs <= high)].sum() > 0.8 * spectrum.sum()
    ref = np.zeros(2 * SR, dtype=np.float32)
    ref[: shots[drum].size] = shots[drum]
    assert mss_distance(est, ref) < mss_distance(np.zeros_like(ref), ref)


def test_onsets_found_where_the_kicks_are(song):
    mix, _ = song
    onsets = detect_onsets(separate(mix, SR, "kick"), SR) / SR
    for t in KICKS:
        assert np.min(np.abs(onsets - t)) < 0.010, f"no onset near the kick at {t} s"


def test_no_onsets_gives_silence_and_bad_drum_is_refused():
    quiet = np.zeros(SR, dtype=np.float32)
    assert not pick_hit(quiet, quiet, SR, 1000).any()
    with pytest.raises(ValueError, match="unknown drum 'tom'"):
        separate(quiet, SR, "tom")
