"""The sample store: decoded audio at the build rate, pitched loops, reads in slices."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import rmod.example.sample_store as store_module
from rmod.audio import AudioFileError, write_audio
from rmod.example.pitch import pitch_shift, pitch_shift_loop
from rmod.example.sample_store import SampleStore
from rmod.library.catalog import Library
from rmod.library.indexing import index_library

SR = 44100


def _wrapped(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    idx = (start + np.arange(length)) % audio.shape[-1]
    return audio[:, idx]


@pytest.fixture()
def store(small_library, tmp_path):
    return SampleStore(small_library, SR, folder=tmp_path / "store")


def test_decoded_audio_equals_the_library_and_is_kept_once(store, small_library):
    kick = small_library.ids("kick", "train")[0]
    direct = small_library.load_audio(kick, SR)
    np.testing.assert_array_equal(store.audio(kick), direct)
    files = list(store.folder.rglob("*.f32"))
    assert len(files) == 1 and files[0].stat().st_size == direct.nbytes
    np.testing.assert_array_equal(store.audio(kick), direct)  # read back from the file
    files[0].write_bytes(b"\0" * 12)  # a damaged store file (wrong size) is made again
    np.testing.assert_array_equal(store.audio(kick), direct)
    assert files[0].stat().st_size == direct.nbytes


@pytest.mark.parametrize("semitones", [0, -6, 5])
@pytest.mark.parametrize(("start", "length"), [(0, 1000), (200_000, 44_100), (1234, 300_000)])
def test_segments_wrap_around_from_memory_and_from_the_file_alike(
    store, small_library, semitones, start, length
):
    """A loop segment equals slicing the (whole, circularly pitched) loop with wrap-around,
    whether the loop was just made or is read back from the store; 300,000 samples is
    longer than the 5 s loop itself."""
    loop = small_library.ids("bass", "train")[0]
    whole = pitch_shift_loop(small_library.load_audio(loop, SR), SR, semitones)
    first = store.loop_segment(loop, semitones, start, length)  # made (and kept)
    kept = [p for p in store.folder.rglob("*.f32") if ("-p" in p.name) == (semitones != 0)]
    assert len(kept) == 1
    second = store.loop_segment(loop, semitones, start, length)  # read from the file
    np.testing.assert_array_equal(first, _wrapped(whole, start, length))
    np.testing.assert_array_equal(second, first)


def test_without_a_folder_nothing_is_kept_and_samples_are_the_same(store, small_library, tmp_path):
    loop = small_library.ids("piano", "valid")[0]
    plain = SampleStore(small_library, SR)
    np.testing.assert_array_equal(
        plain.loop_segment(loop, 7, 100, 5000), store.loop_segment(loop, 7, 100, 5000)
    )
    assert plain.folder is None


def test_loops_are_pitched_as_circles():
    """A pitched loop's ends see its other end as context, so a segment that wraps around
    the end has no edge artefact: on steady noise, the first and last 1,024 samples keep
    the loop's level (the plain shift, with zero padding at the edges, does not)."""
    x = (0.3 * np.random.default_rng(1).standard_normal((1, 5 * SR))).astype(np.float32)

    def edge_levels(y):
        level = 20 * np.log10(np.sqrt(np.mean(y**2)))
        return [20 * np.log10(np.sqrt(np.mean(e**2))) - level for e in (y[:, :1024], y[:, -1024:])]

    assert max(abs(d) for d in edge_levels(pitch_shift_loop(x, SR, 7))) < 1.0
    assert max(abs(d) for d in edge_levels(pitch_shift(x, SR, 7))) > 1.5


def test_a_published_file_is_not_replaced_under_its_readers(small_library, tmp_path):
    store = SampleStore(small_library, SR, folder=tmp_path / "s")
    kick = small_library.ids("kick", "valid")[0]
    audio = store.audio(kick)
    (path,) = list(store.folder.rglob("*.f32"))
    inode = path.stat().st_ino
    store_module._publish(path, audio)  # a second worker that raced the first
    assert path.stat().st_ino == inode and not list(path.parent.glob(".*.tmp"))


def test_stereo_and_mono_sources_and_a_damaged_source_is_named(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    stereo = (0.3 * rng.standard_normal((2, 8000))).astype(np.float32)
    write_audio(src / "kick" / "st.wav", stereo, 48000)
    report = index_library(src, tmp_path / "lib.jsonl")
    lib = Library.load(report.library_path)
    (entry_id,) = [e.id for e in lib.entries]
    store = SampleStore(lib, SR, folder=tmp_path / "store")
    assert store.audio(entry_id).shape == (2, round(8000 * SR / 48000))
    (src / "kick" / "st.wav").write_bytes(b"RIFF broken")
    with pytest.raises(AudioFileError, match="st.wav"):
        store.audio(entry_id)


def test_a_store_that_cannot_be_written_is_only_read_from(small_library, tmp_path, monkeypatch):
    def full_disk(path, array):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_publish", full_disk)
    folder = tmp_path / "full"
    store = SampleStore(small_library, SR, folder=folder)
    loop = small_library.ids("guitar", "test")[0]
    whole = small_library.load_audio(loop, SR)
    np.testing.assert_array_equal(store.loop_segment(loop, 0, 10, 500), whole[:, 10:510])
    direct = pitch_shift_loop(whole, SR, 3)
    np.testing.assert_array_equal(store.loop_segment(loop, 3, 0, 800), direct[:, :800])
    assert folder in store_module._READ_ONLY and not folder.exists()
