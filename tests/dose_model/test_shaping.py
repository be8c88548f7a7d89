"""Finishing of extracted one-shots: tail trim, fade-out, peak; the input clip's level."""

import numpy as np
import pytest

from dose_model.extract.shaping import (
    MIXTURE_PEAK_DBFS,
    RAW,
    Finish,
    fade_out,
    normalize_peak,
    peak_dbfs,
    trim_tail,
)

SR = 1000


def decay(seconds=1.0, rate=6.0):
    """A 100 Hz tone decaying by ``rate`` nepers per second, float32 [samples]."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.exp(-rate * t) * np.sin(2 * np.pi * 100 * t + 0.3)).astype(np.float32)


def test_trim_cuts_after_the_last_sample_above_the_threshold():
    x = decay()
    cut = trim_tail(x, -20.0)
    above = np.flatnonzero(np.abs(x) >= np.abs(x).max() * 0.1)
    assert cut.shape == (above[-1] + 1,)
    assert np.array_equal(cut, x[: cut.size])
    # -20 dB of a 6 Np/s decay: about ln(10) / 6 = 0.38 s
    assert cut.size / SR == pytest.approx(np.log(10) / 6, abs=0.01)
    assert trim_tail(np.zeros(10, np.float32), -60).size == 0
    assert trim_tail(x, 0.0).size <= np.argmax(np.abs(x)) + 1


def test_fade_ends_at_zero_and_leaves_the_start():
    x = np.ones(100, dtype=np.float32)
    y = fade_out(x, 20)
    assert np.array_equal(y[:80], x[:80]) and y[-1] == 0.0
    assert np.all(np.diff(y[80:]) <= 0)  # monotonic
    assert fade_out(x[:5], 20)[-1] == 0.0  # shorter than the fade: all of it
    assert np.array_equal(fade_out(x, 0), x)
    assert x[-1] == 1.0  # input untouched


def test_peak_and_finish_order():
    x = decay()
    y = normalize_peak(x, -1.0)
    assert peak_dbfs(y) == pytest.approx(-1.0, abs=1e-4)
    assert peak_dbfs(np.zeros(4)) is None and normalize_peak(np.zeros(4), -1).max() == 0
    done = Finish(trim_db=-20.0, fade_ms=10.0, peak_db=-3.0).apply(x, SR)
    assert done.size == trim_tail(x, -20.0).size and done[-1] == 0.0
    assert peak_dbfs(done) == pytest.approx(-3.0, abs=1e-4)
    assert np.array_equal(RAW.apply(x, SR), x)
    assert MIXTURE_PEAK_DBFS == -1.0  # the RMOD recipes' master.ceiling_dbfs


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"peak_db": float("nan")}, "peak_db must be a finite number"),
        ({"trim_db": float("-inf")}, "trim_db must be a finite number"),
        ({"trim_db": 3.0}, "trim_db must be <= 0"),
        ({"fade_ms": -1.0}, "fade_ms must be >= 0"),
    ],
)
def test_finish_refuses_settings_that_would_crash_or_write_garbage(settings, message):
    with pytest.raises(ValueError, match=message):
        Finish(**settings)
