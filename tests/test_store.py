"""The sample store: decoded audio at the build rate, pitched loops, reads in slices."""

from __future__ import annotations

import numpy as np
import pytest

from rmod.audio import AudioFileError, write_audio
from rmod.library import Library, index_library
from rmod.pitch import pitch_shift
from rmod.store import SampleStore, dequantize_pitched, quantize_pitched

SR = 44100


def _wrapped(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    idx = (start + np.arange(length)) % audio.shape[-1]
    return audio[:, idx]


@pytest.fixture()
def store(small_library, tmp_path):
    return SampleStore(small_library, SR, folder=tmp_path / "store", keep_pitched=True)


def test_decoded_audio_equals_the_library_and_is_stored_once(store, small_library):
    kick = small_library.ids("kick", "train")[0]
    direct = small_library.load_audio(kick, SR)
    np.testing.assert_array_equal(store.audio(kick), direct)
    files = list(store.folder.rglob("*.f32"))
    assert len(files) == 1 and files[0].stat().st_size == direct.nbytes
    files[0].write_bytes(b"\0" * 12)  # a damaged store file (wrong size) is made again
    np.testing.assert_array_equal(store.audio(kick), direct)


@pytest.mark.parametrize(("start", "length"), [(0, 1000), (1234, 44100), (200000, 44100)])
def test_loop_segments_wrap_around_like_slicing(store, small_library, start, length):
    loop = small_library.ids("piano", "valid")[0]
    whole = small_library.load_audio(loop, SR)
    got = store.loop_segment(loop, 0, start, length)
    np.testing.assert_array_equal(got, _wrapped(whole, start, length))


@pytest.mark.parametrize("semitones", [-6, 5])
def test_pitch_cache_gives_the_same_samples_as_pitching_directly(
    store, small_library, tmp_path, semitones
):
    loop = small_library.ids("bass", "train")[0]
    whole = small_library.load_audio(loop, SR)
    direct = dequantize_pitched(quantize_pitched(pitch_shift(whole, SR, semitones)))
    start, length = 150_000, 88_200  # runs past the end of the 5 s loop: wraps
    first = store.loop_segment(loop, semitones, start, length)  # computes and stores it
    stored = list(store.folder.rglob(f"*-p{semitones:+d}.s16"))
    assert len(stored) == 1
    second = store.loop_segment(loop, semitones, start, length)  # read from the file
    np.testing.assert_array_equal(first, _wrapped(direct, start, length))
    np.testing.assert_array_equal(second, first)
    # without storing, the same samples
    plain = SampleStore(small_library, SR, folder=tmp_path / "other", keep_pitched=False)
    np.testing.assert_array_equal(plain.loop_segment(loop, semitones, start, length), first)
    assert not list((tmp_path / "other").rglob("*.s16"))


def test_quantization_is_fine_and_saturates():
    x = np.array([[0.0, 0.5, -1.25, 1.99, 5.0, -5.0]], dtype=np.float32)
    y = dequantize_pitched(quantize_pitched(x))
    np.testing.assert_allclose(y[:, :4], x[:, :4], atol=2**-15)
    assert y[0, 4] == pytest.approx(32767 / 16384) and y[0, 5] == -2.0


def test_stereo_sources_stay_stereo_and_a_damaged_source_is_named(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    stereo = (0.3 * rng.standard_normal((2, 8000))).astype(np.float32)
    write_audio(src / "kick" / "st.wav", stereo, 48000)
    report = index_library(src, tmp_path / "lib.jsonl")
    lib = Library.load(report.library_path)
    (entry_id,) = [e.id for e in lib.entries]
    store = SampleStore(lib, SR, folder=tmp_path / "store")
    out = store.audio(entry_id)
    assert out.shape == (2, round(8000 * SR / 48000))
    (src / "kick" / "st.wav").write_bytes(b"RIFF broken")
    with pytest.raises(AudioFileError, match="st.wav"):
        store.audio(entry_id)


def test_a_store_that_cannot_be_written_is_only_read_from(small_library, tmp_path, monkeypatch):
    import errno

    import rmod.store as store_module

    def full_disk(path, array):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_atomic", full_disk)
    store = SampleStore(small_library, SR, folder=tmp_path / "full", keep_pitched=True)
    loop = small_library.ids("guitar", "test")[0]
    whole = small_library.load_audio(loop, SR)
    np.testing.assert_array_equal(store.loop_segment(loop, 0, 10, 500), whole[:, 10:510])
    direct = dequantize_pitched(quantize_pitched(pitch_shift(whole, SR, 3)))
    np.testing.assert_array_equal(store.loop_segment(loop, 3, 0, 800), direct[:, :800])
    assert store._read_only and not (tmp_path / "full").exists()
