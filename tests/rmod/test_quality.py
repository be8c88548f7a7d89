"""rmod.inspect.quality: the high-band share and the drum-audibility check on known signals."""

from __future__ import annotations

import numpy as np
import pytest

from rmod.inspect.quality import (
    HIGH_BAND_TARGET,
    high_band_energy,
    high_band_fraction,
    high_band_share,
    share_summary,
)

SR = 44100


def tone(freq: float, amp: float, n: int = SR) -> np.ndarray:
    """A stereo sine of ``n`` samples (whole periods, so its energy sits in one bin)."""
    t = np.arange(n) / SR
    return np.stack([amp * np.sin(2 * np.pi * freq * t)] * 2)


def test_high_band_energy_and_fraction():
    low, high = tone(1000.0, 0.5), tone(8000.0, 0.25)
    assert high_band_energy(low, SR) == pytest.approx(0.0, abs=1e-12 * high_band_energy(high, SR))
    # energy goes with amplitude squared: the 8 kHz tone holds 1/5 of (0.5^2 + 0.25^2)
    assert high_band_fraction(low + high, SR) == pytest.approx(0.2, rel=1e-9)
    assert high_band_fraction(low + high, SR, cutoff_hz=500.0) == pytest.approx(1.0)
    assert high_band_fraction(np.zeros((2, 100)), SR) == 0.0


def test_high_band_share_counts_instruments_against_drums():
    stems = {
        "hihat": tone(9000.0, 0.3),
        "kick": tone(60.0, 0.9),  # nothing above 5 kHz: does not count
        "guitar": tone(6000.0, 0.1),
        "piano": tone(400.0, 0.5),
        "reverb_bus": tone(7000.0, 0.9),  # the shared returns count on neither side
        "hihat_dry": tone(9000.0, 0.9),  # dry targets are not part of the mix
    }
    assert high_band_share(stems, SR) == pytest.approx(0.1**2 / (0.1**2 + 0.3**2), rel=1e-9)
    no_instruments = {k: v for k, v in stems.items() if k not in ("guitar", "piano")}
    assert high_band_share(no_instruments, SR) == 0.0


def test_share_summary():
    s = share_summary([0.0, 0.1, 0.2, 0.3, 0.4])
    assert s == {
        "examples": 5,
        "median": pytest.approx(0.2),
        "p10": pytest.approx(0.04),
        "p90": pytest.approx(0.36),
        "target_median": HIGH_BAND_TARGET,
    }
    assert share_summary([])["examples"] == 0
