"""The sample store: decoded audio at the build rate, pitched loops, reads in slices; the
store is the build's own or absent; a size cap with least-recently-used eviction."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import rmod.example.sample_store as store_module
from rmod.audio import AudioFileError, write_audio
from rmod.errors import InputError
from rmod.example.pitch import pitch_shift, pitch_shift_loop
from rmod.example.sample_store import SampleStore
from rmod.example.store_folder import (
    LOCK,
    MARKER,
    STORE_DIR,
    StoreError,
    create_store,
    parse_size,
    read_store_usage,
    remove_store,
)
from rmod.library.catalog import Library
from rmod.library.indexing import index_library

SR = 44100


def _wrapped(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    idx = (start + np.arange(length)) % audio.shape[-1]
    return audio[:, idx]


TOKEN = "run-token"


def new_store(library, out, cap: int = 10**9) -> SampleStore:
    """A store made as ``rmod-build`` makes it, in ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    create_store(out, cap, TOKEN)
    return SampleStore(library, SR, folder=out / STORE_DIR, token=TOKEN)


def entry_files(folder) -> list:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".f32"))


@pytest.fixture()
def store(small_library, tmp_path):
    return new_store(small_library, tmp_path / "ds")


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
    store = new_store(small_library, tmp_path / "ds")
    kick = small_library.ids("kick", "valid")[0]
    audio = store.audio(kick)
    (path,) = list(store.folder.rglob("*.f32"))
    inode = path.stat().st_ino
    store_module._publish(store._open, path.name, audio)  # a second worker that raced the first
    assert path.stat().st_ino == inode and not list(path.parent.glob(".*.tmp"))


def test_stereo_and_mono_sources_and_a_damaged_source_is_named(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    stereo = (0.3 * rng.standard_normal((2, 8000))).astype(np.float32)
    write_audio(src / "kick" / "st.wav", stereo, 48000)
    report = index_library(src, tmp_path / "lib.jsonl")
    lib = Library.load(report.library_path)
    (entry_id,) = [e.id for e in lib.entries]
    store = new_store(lib, tmp_path / "ds")
    assert store.audio(entry_id).shape == (2, round(8000 * SR / 48000))
    (src / "kick" / "st.wav").write_bytes(b"RIFF broken")
    with pytest.raises(AudioFileError, match="st.wav"):
        store.audio(entry_id)


def test_a_store_that_cannot_be_written_is_only_read_from(small_library, tmp_path, monkeypatch):
    def full_disk(s, name, array):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_publish", full_disk)
    store = new_store(small_library, tmp_path / "ds")
    loop = small_library.ids("guitar", "test")[0]
    whole = small_library.load_audio(loop, SR)
    np.testing.assert_array_equal(store.loop_segment(loop, 0, 10, 500), whole[:, 10:510])
    direct = pitch_shift_loop(whole, SR, 3)
    np.testing.assert_array_equal(store.loop_segment(loop, 3, 0, 800), direct[:, :800])
    assert store._open.id in store_module._READ_ONLY and not entry_files(store.folder)


# ----------------------------------------------------------------------------- ours or absent
def test_a_link_in_place_of_the_store_is_removed_and_its_target_left_alone(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.f32").write_bytes(b"\0" * 8)
    out = tmp_path / "ds"
    out.mkdir()
    (out / STORE_DIR).symlink_to(outside)
    path = create_store(out, 10**6, TOKEN)
    assert path == out / STORE_DIR and not path.is_symlink() and path.is_dir()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.f32"]
    (out / STORE_DIR / MARKER).unlink()  # no longer ours: not removed
    with pytest.raises(StoreError, match="not a sample store rmod-build made"):
        remove_store(out)


@pytest.mark.parametrize("kind", ["file", "foreign folder", "folder with a bad marker"])
def test_anything_else_in_place_of_the_store_is_refused_and_kept(tmp_path, kind):
    out = tmp_path / "ds"
    out.mkdir()
    where = out / STORE_DIR
    if kind == "file":
        where.write_bytes(b"mine")
    else:
        where.mkdir()
        (where / "x.f32").write_bytes(b"\0" * 8)
        if kind == "folder with a bad marker":
            (where / MARKER).write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoreError) as info:
        create_store(out, 10**6, TOKEN)
    assert str(where) in str(info.value) and "\n" not in str(info.value)
    assert where.exists() and (kind == "file" or (where / "x.f32").exists())


def test_a_store_that_cannot_be_emptied_is_refused(small_library, tmp_path):
    """A read-only store (here: a folder the build's user may not write, as root with
    another effective user id) cannot be emptied, so its files cannot be trusted."""
    import tempfile

    from tests.rmod_fixtures import unprivileged

    public = Path(tempfile.mkdtemp())  # outside the 0700 pytest folders
    try:
        public.chmod(0o777)
        create_store(public, 10**6, TOKEN)
        store_dir = public / STORE_DIR
        (store_dir / "poison.f32").write_bytes(b"\0" * 8)
        store_dir.chmod(0o555)
        with unprivileged():
            with pytest.raises(StoreError, match="cannot empty the sample store"):
                remove_store(public)
        assert (store_dir / "poison.f32").exists()
    finally:
        for p in [public, *public.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(public)


def test_a_folder_that_is_not_this_runs_store_is_not_used(small_library, tmp_path):
    """A worker uses only the store its build made: not a link to one, not one without our
    marker, not another run's; the samples are computed instead (the same ones)."""
    loop = small_library.ids("bass", "train")[0]
    want = SampleStore(small_library, SR).loop_segment(loop, 3, 0, 2000)
    real = tmp_path / "a"
    real.mkdir()
    create_store(real, 10**9, "other-run")
    link = tmp_path / "link"
    link.symlink_to(real / STORE_DIR)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for folder, token in ((real / STORE_DIR, TOKEN), (link, None), (foreign, None)):
        s = SampleStore(small_library, SR, folder=folder, token=token)
        assert not s.active
        np.testing.assert_array_equal(s.loop_segment(loop, 3, 0, 2000), want)
    assert not entry_files(real / STORE_DIR) and not list(foreign.iterdir())


def test_an_entry_that_is_a_link_is_not_followed(small_library, tmp_path):
    store = new_store(small_library, tmp_path / "ds")
    kick = small_library.ids("kick", "train")[0]
    want = small_library.load_audio(kick, SR)
    name = store._name(kick, 0, want.shape[0])
    poison = tmp_path / "poison.f32"
    np.full(want.shape, 0.5, np.float32).tofile(poison)  # the right size
    (store.folder / name).symlink_to(poison)
    np.testing.assert_array_equal(store.audio(kick), want)
    assert not (store.folder / name).is_symlink()  # replaced by the real entry
    assert np.all(np.fromfile(poison, np.float32) == 0.5)


# ----------------------------------------------------------------------------- the cap
def test_sizes_parse_with_units_and_bad_ones_are_refused():
    assert parse_size("20MB") == 20 * 10**6
    assert parse_size("1.5 gb") == 1_500_000_000
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("0") == 0
    for bad in ("20", "-1MB", "lots", "3 parsecs", ""):
        with pytest.raises(InputError):
            parse_size(bad)


def _on_disk(folder) -> int:
    return sum(p.stat().st_size for p in entry_files(folder))


def test_a_capped_store_stays_under_its_cap_and_gives_the_same_samples(small_library, tmp_path):
    """With a cap that holds a few loops, every request still returns exactly the uncapped
    samples, the files never pass the cap, and the usage record agrees with the disk."""
    plain = SampleStore(small_library, SR)
    loops = [i for c in ("bass", "piano", "guitar") for i in small_library.ids(c, "train")]
    one = plain.audio(loops[0]).nbytes
    cap = int(3.5 * one)
    store = new_store(small_library, tmp_path / "ds", cap=cap)
    rng = np.random.default_rng(5)
    for _ in range(25):
        loop = loops[int(rng.integers(len(loops)))]
        semitones = int(rng.integers(-3, 4))
        got = store.loop_segment(loop, semitones, 100, 3000)
        np.testing.assert_array_equal(got, plain.loop_segment(loop, semitones, 100, 3000))
        assert _on_disk(store.folder) <= cap
    usage = store.usage()
    assert usage.bytes == _on_disk(store.folder) and 0 < usage.peak_bytes <= cap
    assert usage.evicted > 0
    store.close()
    after = read_store_usage(tmp_path / "ds")
    assert after.hits + after.misses >= 25 and after.hits > 0


def test_eviction_removes_the_least_recently_used_entry(small_library, tmp_path):
    plain = SampleStore(small_library, SR)
    kicks = list(small_library.ids("kick", "train")) + list(small_library.ids("kick", "valid"))
    sizes = {k: plain.audio(k).nbytes for k in kicks}
    a, b, c, d = sorted(kicks, key=sizes.get)[-4:]  # the largest four
    cap = sizes[a] + sizes[b] + sizes[c] + sizes[d] // 3
    store = new_store(small_library, tmp_path / "ds", cap=cap)
    for k in (a, b, c):
        store.audio(k)
    names = {k: store._name(k, 0, plain.audio(k).shape[0]) for k in kicks}
    for age, k in enumerate((a, b, c)):  # a oldest: file times set apart (coarse clocks)
        os.utime(store.folder / names[k], ns=(10**18 + age, 10**18 + age))
    store.audio(a)  # a read makes a the most recently used
    store.audio(d)  # over the cap: b goes
    kept = {p.name for p in entry_files(store.folder)}
    assert names[b] not in kept and {names[a], names[d]} <= kept


def _hammer(out: str, library_path: str, seed: int) -> None:
    lib = Library.load(library_path)
    s = SampleStore(lib, SR, folder=os.path.join(out, STORE_DIR), token=TOKEN)
    rng = np.random.default_rng(seed)
    loops = [i for c in ("bass", "piano") for i in lib.ids(c, "train")]
    for _ in range(12):
        s.loop_segment(loops[int(rng.integers(len(loops)))], int(rng.integers(-2, 3)), 0, 10)
    s.close()


def test_processes_sharing_a_capped_store_keep_it_under_the_cap(small_library, tmp_path):
    """Three processes publish and evict in one store at once: its record stays exact (the
    bytes on disk), its peak at most the cap, and every hit and miss is counted."""
    out = tmp_path / "ds"
    one = SampleStore(small_library, SR).audio(small_library.ids("bass", "train")[0]).nbytes
    cap = int(2.5 * one)
    out.mkdir()
    create_store(out, cap, TOKEN)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_hammer, args=(str(out), str(small_library.path), k)) for k in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    usage = read_store_usage(out)
    assert usage.bytes == _on_disk(out / STORE_DIR) <= cap
    assert 0 < usage.peak_bytes <= cap and usage.evicted > 0
    assert usage.hits + usage.misses >= 3 * 12  # each request at least once
    lock = json.loads((out / STORE_DIR / LOCK).read_text())
    assert lock["bytes"] == usage.bytes


def test_the_default_cap_is_half_the_space_the_dataset_leaves(tmp_path, monkeypatch):
    from collections import namedtuple

    from rmod.example.store_folder import default_store_max

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 100 * 10**9))
    assert default_store_max(tmp_path / "new" / "ds", 30 * 10**9) == 35 * 10**9
    assert default_store_max(tmp_path, 200 * 10**9) == 0  # no room: no store
