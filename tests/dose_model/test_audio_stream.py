"""dose_model.dataset.audio: the streaming resampler gives resample_poly's samples bit for bit,
mono blocks join to the whole file as it was read before, and a prefix read stops early."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from dose_model.dataset.audio import (
    FAST_MEAN_CHANNELS,
    Resampler,
    RowAudioError,
    channel_mean,
    load_mono,
    mono_blocks,
    read_clips,
    read_mono,
)
from rmod_dose_common import audio as common
from tests.hostile_audio import wav_bytes


def whole_file_mono(path, sample_rate: int) -> np.ndarray:
    """The reading of every file before the stream: one ``sf.read``, the channel mean, one
    ``resample_poly`` over the whole signal."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    if sr == sample_rate:
        return mono
    g = math.gcd(sr, sample_rate)
    return resample_poly(mono, sample_rate // g, sr // g).astype(np.float32)


@pytest.mark.parametrize("channels", range(1, FAST_MEAN_CHANNELS + 3))
@pytest.mark.parametrize("order", ["C", "F"])
def test_channel_mean_is_numpys_mean_bit_for_bit(channels, order):
    """Every bit, signed zeros, subnormals and overflow to inf included: the tokens of caches
    written before the fast path depend on it."""
    rng = np.random.default_rng(channels)
    for scale in (1e-40, 1e-3, 1.0, 1e30):
        x = (rng.standard_normal((4099, channels)) * scale).astype(np.float32)
        for value, share in ((-0.0, 0.2), (0.0, 0.05), (3e38, 0.02), (-3e38, 0.02), (1e-45, 0.02)):
            x[rng.random(x.shape) < share] = value
        x = np.asarray(x, order=order)
        with np.errstate(over="ignore"):
            expected = x.mean(axis=1, dtype=np.float32)
            got = channel_mean(x)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000, 44101, 96000])
def test_the_resampler_is_resample_poly_over_the_whole_signal(sr_in):
    rng = np.random.default_rng(sr_in)
    x = rng.standard_normal(30_011).astype(np.float32)
    g = math.gcd(sr_in, 44100)
    whole = x if sr_in == 44100 else resample_poly(x, 44100 // g, sr_in // g)
    for block in (1, 97, 4096, 40_000):
        if block < 4096 and sr_in == 44101:
            continue  # many calls of an 882 k-tap filter: slow, and the same code path
        r = Resampler(sr_in, 44100)
        n = len(x) if block > 1 else 3000
        got = np.concatenate([r.push(x[i : i + block]) for i in range(0, n, block)] + [r.finish()])
        ref = whole if n == len(x) else resample_poly(x[:n], 44100 // g, sr_in // g)
        assert got.dtype == np.float32 and np.array_equal(got, ref), (sr_in, block)


@pytest.mark.parametrize(
    "rate,channels,subtype", [(48000, 2, "PCM_16"), (22050, 1, "FLOAT"), (44100, 3, "PCM_24")]
)
def test_mono_blocks_join_to_the_whole_file_read(tmp_path, monkeypatch, rate, channels, subtype):
    monkeypatch.setattr(common, "BLOCK_SAMPLES", 5000)  # many blocks
    rng = np.random.default_rng(1)
    path = tmp_path / "a.wav"
    sf.write(path, 0.4 * rng.standard_normal((rate, channels)), rate, subtype=subtype)
    blocks = list(mono_blocks(path, 44100))
    assert len(blocks) > 3
    assert np.array_equal(np.concatenate(blocks), whole_file_mono(path, 44100))
    assert np.array_equal(read_mono(path, 44100), whole_file_mono(path, 44100))
    starts = [0, 7000, 14000]
    clips, decoded, whole = read_clips(path, 44100, starts, 4410)
    reference = whole_file_mono(path, 44100)
    assert not whole and decoded < reference.size
    for row, start in zip(clips, starts, strict=True):
        assert np.array_equal(row, reference[start : start + 4410])
    tail, decoded, whole = read_clips(path, 44100, [reference.size - 10], 100)
    assert whole and decoded == reference.size and np.all(tail[0, 10:] == 0)


def test_load_mono_decodes_only_what_it_keeps(tmp_path, monkeypatch):
    """A row of an hour would once be decoded whole to keep its first 4 s."""
    path = tmp_path / "long.wav"
    sf.write(path, np.full(60 * 8000, 0.25), 8000, subtype="PCM_16")
    decoded = []
    real = common.AudioReader.blocks

    def counting(self, block_samples=None):
        for block in real(self, 4000):
            decoded.append(block.shape[0])
            yield block

    monkeypatch.setattr(common.AudioReader, "blocks", counting)
    got = load_mono(path, 44100, 44100)
    assert np.array_equal(got, whole_file_mono(path, 44100)[:44100])
    assert sum(decoded) <= 8000 + 2 * 4000  # 1 s and a block or two of context, of 60 s


def test_rows_with_bogus_headers_are_row_errors(tmp_path):
    for rate, limit in ((1, "MIN_SAMPLE_RATE"), (2**31 - 1, "MAX_SAMPLE_RATE")):
        path = tmp_path / f"{rate}.wav"
        path.write_bytes(wav_bytes(rate, data=b"\0" * 10))
        with pytest.raises(RowAudioError, match=limit):
            load_mono(path, 44100, 44100)
