"""The DAC token sink (dose_model.cache.sink) sees what dose-tokenize would read from the
files a build writes: the writer's 16-bit quantization, libsndfile's read-back, the
channel mean, the resampler and the crop or pad. Its options are checked before any work."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from dose_model.cache.sink import DacTokenSink, as_read
from dose_model.dataset.audio import load_mono
from rmod_dose_common.pcm import to_pcm16
from tests.dose_fixtures import write_tiny_codec

BUILD = {
    "sample_rate": 22050, "mixture_samples": 22050, "target_samples": 11025, "shard_size": 2,
    "counts": {"train": 2}, "identity": {"seed": 1, "counts": {"train": 2}},
}  # fmt: skip


def signal(channels: int, samples: int, seed: int) -> np.ndarray:
    """Noise with full-scale, clipped and half-step values: the edges of quantization."""
    rng = np.random.default_rng(seed)
    audio = rng.uniform(-1.2, 1.2, (channels, samples)).astype(np.float32)
    audio[:, :6] = [1.0, -1.0, 0.5 / 32767, 1.5 / 32767, -2.5 / 32767, 1.01]
    return audio


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate,samples", [(44100, 5000), (22050, 3000), (22050, 300)])
def test_as_read_equals_reading_the_written_file(tmp_path, fmt, channels, rate, samples):
    """Written as rmod writes (to_pcm16, 16-bit) and read as dose-tokenize reads (load_mono
    at 44.1 kHz, cropped or padded to 4000 samples): the same float32 samples, exactly."""
    audio = signal(channels, samples, seed=channels * rate + samples)
    path = tmp_path / f"a.{fmt.lower()}"
    buf = io.BytesIO()
    sf.write(buf, to_pcm16(audio), rate, format=fmt, subtype="PCM_16")
    path.write_bytes(buf.getvalue())
    expected = load_mono(path, 44100, 4000)
    got = as_read(audio, rate, 44100, 4000)
    assert got.dtype == np.float32 and got.shape == (4000,)
    assert np.array_equal(got, expected)


def test_rmod_writes_through_the_shared_quantizer():
    import rmod.audio
    import rmod_dose_common.pcm

    assert rmod.audio.to_pcm16 is rmod_dose_common.pcm.to_pcm16


def test_options_and_folder_are_checked_before_any_work(tmp_path):
    weights = write_tiny_codec(tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="unknown option.*colour"):
        DacTokenSink(str(tmp_path / "t"), {"codec_weights": str(weights), "colour": 1}, BUILD)
    with pytest.raises(ValueError, match="missing.pth: DAC weights file not found"):
        DacTokenSink(str(tmp_path / "t"), {"codec_weights": str(tmp_path / "missing.pth")}, BUILD)
    with pytest.raises(ValueError, match="option tf32: expected true, false or none"):
        DacTokenSink(str(tmp_path / "t"), {"codec_weights": str(weights), "tf32": "maybe"}, BUILD)
    sink = DacTokenSink(
        str(tmp_path / "t"), {"codec_weights": str(weights), "tf32": "False"}, BUILD
    )
    assert sink.tf32 is False and sink.batch_size == 8
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no index.json"):
        DacTokenSink(str(tmp_path / "full"), {"codec_weights": str(weights)}, BUILD)
    sink = DacTokenSink(str(tmp_path / "t"), {"codec_weights": str(weights)}, BUILD)
    assert not (tmp_path / "t").exists()  # made, checked, nothing written
    sink.open()
    assert not sink.has_shard("train", 0, 2)
    other = dict(BUILD, identity={"seed": 2, "counts": {"train": 2}})
    with pytest.raises(ValueError, match="another build or other settings .*source"):
        DacTokenSink(str(tmp_path / "t"), {"codec_weights": str(weights)}, other)


def test_as_read_equals_a_file_the_reader_decodes_in_several_blocks(tmp_path):
    """A render longer than one of the bounded reader's blocks (here 3 blocks of stereo at
    48 kHz, resampled to 44.1 kHz as a whole): the sink's samples equal load_mono's from the
    written file, every one of them (the conversion is `mono_blocks`' own, fed in the
    reader's blocks)."""
    frames = 300_000  # BLOCK_SAMPLES = 2**18 samples = 131,072 stereo frames per block
    audio = signal(2, frames, seed=11)
    path = tmp_path / "long.wav"
    sf.write(path, to_pcm16(audio), 48000, subtype="PCM_16")
    n = -(-frames * 44100 // 48000)  # the whole file at 44.1 kHz
    expected = load_mono(path, 44100, n)
    got = as_read(audio, 48000, 44100, n)
    assert got.shape == (n,) and np.array_equal(got, expected)
