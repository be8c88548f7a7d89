"""The SoundFont sampler on tiny soundfonts the tests write: envelope, filter, velocity
layers, key ranges, loop points, sample rates, preset-level generators."""

from __future__ import annotations

import numpy as np
import pytest

from rmod.library.builtin.sf2 import SoundFont, SoundFontError, render_note
from tests.sf2_fixture import TPreset, TZone, write_sf2

SR = 44100
ATTACK, HOLD, DECAY, SUSTAIN, RELEASE, FC, ATTEN = 34, 35, 36, 37, 38, 8, 48


def _tc(seconds: float) -> int:
    """Seconds as SoundFont timecents."""
    return int(round(1200 * np.log2(seconds)))


def _db(x: np.ndarray, t: float, width: float = 0.01) -> float:
    """RMS level (dB) of ``x`` around ``t`` seconds, of a full-scale sine = 0 dB."""
    seg = x[int((t - width / 2) * SR) : int((t + width / 2) * SR)]
    return float(20 * np.log10(np.sqrt(2 * np.mean(seg**2)) + 1e-12))


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-20))


@pytest.fixture(scope="module")
def font(tmp_path_factory) -> SoundFont:
    rng = np.random.default_rng(0)
    sine = np.sin(2 * np.pi * np.arange(100) / 100)  # 441 Hz at 44.1 kHz, one period loops
    noise = rng.uniform(-0.5, 0.5, SR)
    env = {ATTACK: _tc(0.1), HOLD: _tc(0.05), DECAY: _tc(0.2), SUSTAIN: 120, RELEASE: _tc(0.3)}
    presets = [
        TPreset("env", 0, 0, [TZone(sine, root=69, loop=(0, 100), gens=env)]),
        TPreset("open", 0, 1, [TZone(noise, loop=(0, SR - 1))]),
        TPreset("lowpass", 0, 2, [TZone(noise, loop=(0, SR - 1), gens={FC: 8321})]),  # 1 kHz
        TPreset(
            "layers",
            128,
            0,
            [
                TZone(
                    0.5 * np.sin(2 * np.pi * np.arange(2000) / 50),
                    root=36,
                    keys=(36, 36),
                    vels=(1, 63),
                ),
                TZone(noise[:4000], keys=(36, 36), vels=(64, 127)),
            ],
        ),
        TPreset(  # a 22.05 kHz sample: 441 Hz = a 50-sample period, root A4
            "rate", 0, 3, [TZone(sine[::2], rate=22050, root=69, loop=(0, 50))], gens={ATTEN: 60}
        ),
    ]
    path = tmp_path_factory.mktemp("sf2") / "tiny.sf2"
    write_sf2(path, presets)
    return SoundFont(path)


def test_volume_envelope(font):
    """Linear attack, hold, 96 dB per decay time down to the sustain level, release."""
    x = render_note(font, 0, 0, 69, 127, 0.6, SR)
    assert _db(x, 0.05) == pytest.approx(-6.0, abs=0.6)  # half-way up a linear attack
    assert _db(x, 0.125) == pytest.approx(0.0, abs=0.3)  # hold
    assert _db(x, 0.4) == pytest.approx(-12.0, abs=0.3)  # sustain (120 cB)
    assert _db(x, 0.65) == pytest.approx(-12.0 - 96 * 0.05 / 0.3, abs=1.0)  # releasing
    assert x.size <= int((0.6 + 0.3) * SR) + 1  # the release ends the note


def test_lowpass_filter_and_velocity(font):
    """initialFilterFc 8321 cents (1 kHz): 2-pole roll-off above; velocity lowers the cutoff."""
    open_ = render_note(font, 0, 1, 60, 127, 0.8, SR)[: int(0.7 * SR)]
    low = render_note(font, 0, 2, 60, 127, 0.8, SR)[: int(0.7 * SR)]
    assert _band_db(low, 50, 400) - _band_db(open_, 50, 400) == pytest.approx(0.0, abs=1.5)
    assert _band_db(low, 4000, 8000) - _band_db(open_, 4000, 8000) < -20.0
    soft = render_note(font, 0, 2, 60, 64, 0.8, SR)[: int(0.7 * SR)]
    gain = 20 * np.log10(127 / 64) * 2  # the velocity gain (v/127)^2, taken out
    assert _band_db(soft, 1500, 3000) + gain < _band_db(low, 1500, 3000) - 6.0
    assert _band_db(soft, 50, 200) + gain == pytest.approx(_band_db(low, 50, 200), abs=1.5)


def test_velocity_layers_and_key_ranges(font):
    assert [z.name for z in font.zones(128, 0, 36, 30)] == ["s3"]
    assert [z.name for z in font.zones(128, 0, 36, 100)] == ["s4"]
    assert font.zones(128, 0, 37, 100) == []
    assert render_note(font, 128, 0, 37, 100, 0.2, SR).size == 0
    soft = render_note(font, 128, 0, 36, 30, 0.05, SR, tail_s=0.0)
    loud = render_note(font, 128, 0, 36, 100, 0.05, SR, tail_s=0.0)
    spec = np.abs(np.fft.rfft(soft))
    assert np.fft.rfftfreq(soft.size, 1 / SR)[np.argmax(spec)] == pytest.approx(882, abs=30)
    assert _band_db(loud, 8000, 16000) > _band_db(soft, 8000, 16000) + 30  # the noise layer


def test_sample_rate_root_key_loop_and_preset_attenuation(font):
    """A looping 22.05 kHz sample plays in tune an octave up and lasts the whole note; the
    preset's 6 dB attenuation adds to the instrument's 0 dB."""
    x = render_note(font, 0, 3, 81, 127, 1.0, SR, tail_s=0.0)
    assert x.size == SR
    seg = x[SR // 4 : SR // 4 + 16384]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    peak = np.fft.rfftfreq(seg.size, 1 / SR)[np.argmax(spec)]
    assert abs(1200 * np.log2(peak / 882.0)) < 10
    assert _db(x, 0.5) == pytest.approx(-6.0, abs=0.3)


def test_unreadable_soundfonts_are_named(tmp_path):
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\0\0\0\0junk")
    with pytest.raises(SoundFontError, match="bad.sf2"):
        SoundFont(bad)
    with pytest.raises(SoundFontError, match="missing.sf2"):
        SoundFont(tmp_path / "missing.sf2")
