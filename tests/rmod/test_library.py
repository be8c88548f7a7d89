"""Library manifests: indexing good and bad files, splits, loading, the rmod-library CLI."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf

from rmod import CLASSES, SPLITS
from rmod.audio import AudioFileError
from rmod.cli.library import main as library_main
from rmod.library.catalog import Library, LibraryEntry, LibraryError, read_library
from rmod.library.hashing import split_for_hash
from rmod.library.indexing import IndexLimits, index_library


def _tone(rng: np.random.Generator, seconds: float, sr: int, channels: int, decay: float = 8.0):
    """A decaying noisy tone, float ``[samples, channels]`` (soundfile layout)."""
    t = np.arange(int(seconds * sr)) / sr
    f = rng.uniform(80, 2000)
    x = np.sin(2 * np.pi * f * t) + 0.3 * rng.standard_normal(t.size)
    x = 0.5 * x * np.exp(-t * decay) / np.max(np.abs(x))
    return np.stack([x * (0.6 + 0.4 * c) for c in range(channels)], axis=1)


# (relative path, seconds, rate, channels, soundfile format, subtype)
GOOD = [
    ("kick/a_kick.wav", 0.4, 44100, 1, "WAV", "PCM_16"),
    ("kick/deep/nested/b_kick.wav", 0.5, 48000, 2, "WAV", "PCM_24"),
    ("snare/c_snare.flac", 0.3, 22050, 1, "FLAC", "PCM_16"),
    ("hihat/d_hat.aiff", 0.2, 48000, 2, "AIFF", "PCM_16"),
    ("snare/e_snare.ogg", 0.6, 44100, 2, "OGG", "VORBIS"),
    ("bass/groove/loop1.flac", 5.0, 22050, 2, "FLAC", "PCM_24"),
    ("piano/loop2.wav", 4.5, 44100, 1, "WAV", "PCM_16"),
]


@pytest.fixture()
def sample_dir(tmp_path):
    """Good files in several formats/rates/channel counts plus one file of every bad kind.

    Returns (src folder, {relative path: expected reason fragment} of bad files).
    """
    rng = np.random.default_rng(7)
    src = tmp_path / "samples"
    for rel, sec, sr, ch, fmt, sub in GOOD:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(
            src / rel,
            _tone(rng, sec, sr, ch, decay=0.2 if sec > 4 else 8.0),
            sr,
            subtype=sub,
            format=fmt,
        )
    bad = {}
    (src / "guitar").mkdir()
    (src / "kick/garbage.wav").write_bytes(b"RIFF\x00\x01junk" + rng.bytes(200))
    bad["kick/garbage.wav"] = "cannot decode"
    sf.write(src / "snare/empty.wav", np.zeros((0, 1)), 44100, subtype="PCM_16")
    bad["snare/empty.wav"] = "no samples"
    sf.write(src / "hihat/silent.wav", np.full((4410, 1), 1e-4), 44100, subtype="PCM_16")
    bad["hihat/silent.wav"] = "silent"
    nan = _tone(rng, 0.3, 44100, 1)
    nan[100] = np.nan
    sf.write(src / "kick/nan.wav", nan, 44100, subtype="FLOAT")
    bad["kick/nan.wav"] = "non-finite"
    sf.write(src / "hihat/short.wav", _tone(rng, 0.01, 44100, 1), 44100, subtype="PCM_16")
    bad["hihat/short.wav"] = "too short for hihat"
    sf.write(src / "snare/long.wav", _tone(rng, 10.5, 8000, 1, decay=0.1), 8000, subtype="PCM_16")
    bad["snare/long.wav"] = "too long for snare"
    sf.write(src / "guitar/short_loop.wav", _tone(rng, 2.0, 22050, 1, 0.2), 22050, subtype="PCM_16")
    bad["guitar/short_loop.wav"] = "too short for guitar"
    # The same 16-bit sound as kick/a_kick.wav, stored as FLAC under another name.
    data, sr = sf.read(src / "kick/a_kick.wav", dtype="int16")
    sf.write(src / "kick/z_copy.flac", data, sr, subtype="PCM_16")
    bad["kick/z_copy.flac"] = "duplicate content of kick/a_kick.wav"
    sf.write(src / "stray.wav", _tone(rng, 0.3, 44100, 1), 44100, subtype="PCM_16")
    bad["stray.wav"] = "not inside a class folder"
    (src / "kick/notes.txt").write_text("not audio, ignored")
    return src, bad


def test_index_reports_every_bad_kind_by_path(sample_dir, tmp_path):
    src, bad = sample_dir
    report = index_library(src, tmp_path / "lib.jsonl")
    refused = {str(p): reason for p, reason in report.refused}
    assert set(refused) == {str(src / rel) for rel in bad}
    for rel, fragment in bad.items():
        assert fragment in refused[str(src / rel)], (rel, refused[str(src / rel)])
    assert report.n_indexed == len(GOOD)

    lib = Library.load(report.library_path)
    by_path = {e.path: e for e in lib.entries}
    assert set(by_path) == {str(src / g[0]) for g in GOOD}
    for rel, sec, sr, ch, _, _ in GOOD:
        e = by_path[str(src / rel)]
        assert e.cls == rel.split("/")[0]
        assert (e.sample_rate, e.channels) == (sr, ch)
        assert e.duration == pytest.approx(sec, abs=1.0 / sr)
        assert e.id == f"{e.cls}/{e.sha256[:16]}"
        assert e.split == split_for_hash(e.sha256)
        assert e.size_bytes == (src / rel).stat().st_size
    assert sum(sum(v.values()) for v in report.counts.values()) == len(GOOD)


def test_index_limits_are_configurable(sample_dir, tmp_path):
    src, bad = sample_dir
    durations = dict(IndexLimits().durations, guitar=(1.5, 300.0), hihat=(0.005, 10.0))
    report = index_library(src, tmp_path / "lib.jsonl", limits=IndexLimits(durations))
    refused = {p for p, _ in report.refused}
    assert str(src / "guitar/short_loop.wav") not in refused
    assert str(src / "hihat/short.wav") not in refused
    assert str(src / "snare/long.wav") in refused
    with pytest.raises(ValueError, match="sum"):
        index_library(
            src, tmp_path / "x.jsonl", limits=IndexLimits(split_fractions=(0.5, 0.1, 0.1))
        )


def test_reindex_gives_identical_bytes_and_renames_keep_splits(sample_dir, tmp_path):
    src, _ = sample_dir
    a = index_library(src, tmp_path / "a.jsonl")
    b = index_library(src, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert a.fingerprint == b.fingerprint == Library.load(tmp_path / "a.jsonl").fingerprint
    # Moving a file elsewhere in its class folder keeps its id and split (content-based).
    shutil.move(src / "piano/loop2.wav", src / "piano/renamed_loop.wav")
    c = Library.load(index_library(src, tmp_path / "c.jsonl").library_path)
    old = Library.load(a.library_path)
    assert {(e.id, e.split) for e in c.entries} == {(e.id, e.split) for e in old.entries}
    assert c.fingerprint != old.fingerprint  # the path is part of the content of the manifest


def test_splits_are_disjoint_and_follow_the_fractions(small_library):
    seen: dict[str, str] = {}
    for cls in CLASSES:
        for split in SPLITS:
            ids = small_library.ids(cls, split)
            assert ids == tuple(sorted(ids)) and len(ids) >= 2
            for i in ids:
                assert i not in seen, f"{i} in {seen.get(i)} and {split}"
                seen[i] = split
                assert small_library.entry(i).split == split
    assert len(seen) == len(small_library)
    hashes = [hashlib.sha256(str(k).encode()).hexdigest() for k in range(4000)]
    share = {s: sum(split_for_hash(h) == s for h in hashes) / len(hashes) for s in SPLITS}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["valid"] == pytest.approx(0.1, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)
    assert {split_for_hash(h, (0.0, 0.0, 1.0)) for h in hashes[:50]} == {"test"}


def test_library_api_and_cheap_pickling(small_library):
    lib = small_library
    assert lib.classes == CLASSES
    assert lib.counts() == {c: {s: 2 for s in SPLITS} for c in CLASSES}
    e = lib.entry(lib.ids("kick", "valid")[0])
    assert LibraryEntry.from_dict(e.to_dict()) == e
    with pytest.raises(KeyError):
        lib.entry("kick/0000000000000000")
    with pytest.raises(KeyError):
        lib.ids("cowbell", "train")
    before = len(pickle.dumps(lib))
    for i in lib.ids("bass", "train"):
        lib.load_audio(i)
    after = pickle.dumps(lib)
    assert len(after) == before < 50_000  # entries only, never decoded audio
    clone = pickle.loads(after)
    assert clone.ids("bass", "train") == lib.ids("bass", "train")
    assert clone.fingerprint == lib.fingerprint
    assert clone == lib and hash(clone) == hash(lib)  # usable as a cache key in workers


def test_load_audio_shape_rate_and_copy(small_library):
    lib = small_library
    e = lib.entry(lib.ids("snare", "train")[0])
    assert (e.sample_rate, e.channels) == (22050, 1)
    a = lib.load_audio(e.id)
    assert a.dtype == np.float32 and a.shape == (1, round(e.duration * 44100))  # mono stays mono
    b = lib.load_audio(e.id, sample_rate=48000)
    assert b.shape == (1, round(e.duration * 48000))
    a[:] = 0  # the caller's own array
    assert np.abs(lib.load_audio(e.id)).max() > 0.1
    # The spectral peak of a resampled kick stays where it was (in Hz).
    k = lib.entry(lib.ids("kick", "test")[0])
    raw, sr = sf.read(k.path, dtype="float32")
    up = lib.load_audio(k.id, 44100)[0]
    peak = [
        np.fft.rfftfreq(x.size, 1 / r)[np.argmax(np.abs(np.fft.rfft(x)))]
        for x, r in ((raw, sr), (up, 44100))
    ]
    assert peak[1] == pytest.approx(peak[0], abs=3.0)


def test_load_audio_names_a_damaged_file(small_library, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(small_library.root, src)
    lib = Library.load(index_library(src, tmp_path / "lib.jsonl").library_path)
    victim, shorter, gone = (
        lib.ids("piano", "train")[0],
        lib.ids("kick", "train")[0],
        lib.ids("vocal", "test")[0],
    )
    with open(lib.entry(victim).path, "wb") as fh:
        fh.write(b"not audio any more")
    with pytest.raises(AudioFileError, match="cannot decode") as err:
        lib.load_audio(victim)
    assert lib.entry(victim).path in str(err.value)
    data, sr = sf.read(lib.entry(shorter).path)
    sf.write(lib.entry(shorter).path, data[: len(data) // 2], sr, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="changed since indexing"):
        lib.load_audio(shorter)
    same_length = lib.ids("snare", "valid")[0]
    data, sr = sf.read(lib.entry(same_length).path)
    sf.write(lib.entry(same_length).path, 0.5 * data, sr, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="content hash") as err:
        lib.load_audio(same_length)
    assert lib.entry(same_length).path in str(err.value)
    (src / lib.entry(gone).path).unlink()
    with pytest.raises(AudioFileError, match=lib.entry(gone).path.split("/")[-1]):
        lib.load_audio(gone)


def test_bad_manifests_are_named_with_line(tmp_path, small_library):
    good = small_library.path.read_text().splitlines()
    cases = {
        "notjson": "{oops",
        "other": json.dumps({"format": "something-else"}),
        "badentry": "\n".join([good[0], good[1], '{"id": "x"}']),
        "badsplit": "\n".join([good[0], good[1].replace('"split": "', '"split": "x')]),
        "dup": "\n".join([good[0], good[1], good[1]]),
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(text + "\n")
        with pytest.raises(LibraryError, match=str(path)):
            read_library(path)
    with pytest.raises(LibraryError, match="cannot read"):
        Library.load(tmp_path / "missing.jsonl")


def test_cli_index_exit_status_and_report(sample_dir, tmp_path, capsys):
    src, bad = sample_dir
    out = tmp_path / "cli.jsonl"
    assert library_main(["index", str(src), "--out", str(out), "--quiet"]) == 1
    text = capsys.readouterr().out
    for rel, fragment in bad.items():
        assert f"refused {src / rel}: " in text and fragment in text
    summary = text.strip().splitlines()[-1]
    assert summary.startswith(f"indexed {len(GOOD)} files") and f"refused {len(bad)}" in summary
    for rel in bad:
        (src / rel).unlink()
    assert library_main(["index", str(src), "--out", str(out), "--quiet"]) == 0
    assert "refused 0" in capsys.readouterr().out
    assert library_main(["index", str(tmp_path / "nope"), "--out", str(out)]) == 2
    (tmp_path / "wrong_folder").mkdir()  # no class folders: an empty library is an error
    assert library_main(["index", str(tmp_path / "wrong_folder"), "--out", str(out)]) == 1
    assert "the library is empty" in capsys.readouterr().err
    assert (
        library_main(["index", str(src), "--out", str(out), "--splits", "0.5", "0.5", "0.5"]) == 2
    )
    with pytest.raises(SystemExit) as exc:
        library_main(["index", str(src)])  # --out is required
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["index", "SRC", "--oneshot-min", "nan"], "argument --oneshot-min: 'nan' is not a finite"),
        (["index", "SRC", "--loop-max", "inf"], "argument --loop-max: 'inf' is not a finite"),
        (["index", "SRC", "--loop-min", "0"], "argument --loop-min: 0 is out of range (must be > 0)"),
        (["index", "SRC", "--silence-db", "nan"], "argument --silence-db: 'nan' is not a finite"),
        (["index", "SRC", "--silence-db", "6"], "argument --silence-db: 6 is out of range"),
        (["index", "SRC", "--splits", "0.8", "nan", "0.1"], "argument --splits: 'nan' is not"),
        (["soundfont", "x.sf2", "--min-loop-s", "nan"], "argument --min-loop-s: 'nan' is not"),
    ],
)  # fmt: skip
def test_cli_float_options_refuse_non_finite_and_absurd_values(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [str(tmp_path) if a == "SRC" else a for a in argv] + ["--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        library_main(argv)
    assert exc.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith(f"rmod-library {argv[0]}: error: {message}")
    )
    assert not out.exists()


def test_cli_info(small_library, capsys):
    assert library_main(["info", str(small_library.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == small_library.counts()
    assert data["fingerprint"] == small_library.fingerprint
    assert library_main(["info", str(small_library.path)]) == 0
    table = capsys.readouterr().out
    assert "kick" in table and f"{len(small_library)} entries in 7 classes" in table
    with pytest.raises(SystemExit):
        library_main(["info", "--help"])
    assert (
        "LIB         library manifest; if not given: the built-in library\n"
        in capsys.readouterr().out
    )


# ----------------------------------------------------------------------------- hostile input


def test_length_and_size_are_checked_from_the_header_before_decoding(
    sample_dir, tmp_path, monkeypatch
):
    """A file too long for its class (or with too many samples) is refused from its header:
    it is never decoded, so a huge file costs no memory."""
    import rmod.library.indexing

    src, _ = sample_dir
    decoded = []
    real = rmod.library.indexing.read_audio
    monkeypatch.setattr(
        rmod.library.indexing, "read_audio", lambda p: (decoded.append(p), real(p))[1]
    )
    report = index_library(src, tmp_path / "lib.jsonl")
    assert (
        "too long for snare: 10.500 s > 10.0 s" in dict(report.refused)[str(src / "snare/long.wav")]
    )
    assert src / "snare/long.wav" not in decoded and src / "kick/a_kick.wav" in decoded
    monkeypatch.setattr(rmod.library.indexing, "MAX_DECODED_SAMPLES", 1000)
    decoded.clear()
    report = index_library(src, tmp_path / "lib2.jsonl")
    assert report.n_indexed == 0  # only the file of under 1000 samples was decoded (the empty
    assert set(decoded) == {src / "hihat/short.wav"}  # one is refused from its header)
    assert "samples; at most 1000 are decoded" in dict(report.refused)[str(src / "kick/a_kick.wav")]


def test_unreadable_files_and_folders_are_reported_with_the_reason(sample_dir, capsys):
    import os
    import tempfile
    from pathlib import Path

    from tests.rmod_fixtures import unprivileged

    src, _ = sample_dir
    public = Path(tempfile.mkdtemp())  # outside the 0700 pytest folders
    try:
        copy = Path(shutil.copytree(src, public / "samples"))
        for p in [public, *public.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        public.chmod(0o777)  # the manifest is written there
        (copy / "kick/a_kick.wav").chmod(0)
        (copy / "bass/groove").chmod(0)
        with unprivileged():
            report = index_library(copy, public / "lib.jsonl")
        refused = dict(report.refused)
        assert refused[str(copy / "kick/a_kick.wav")] == "cannot read (Permission denied)"
        assert refused[str(copy / "bass/groove")] == "cannot read folder (Permission denied)"
        assert not any("System error" in why for why in refused.values())
    finally:
        for p in [public, *public.rglob("*")]:
            os.chmod(p, 0o755) if p.is_dir() else None
        shutil.rmtree(public)


def test_cli_index_output_problems_are_one_line_errors(sample_dir, tmp_path, monkeypatch, capsys):
    import errno
    import tempfile
    from pathlib import Path

    import rmod.library.catalog
    import rmod.library.indexing
    from tests.rmod_fixtures import unprivileged

    src, _ = sample_dir
    decoded = []
    monkeypatch.setattr(rmod.library.indexing, "read_audio", lambda p: decoded.append(p))
    (tmp_path / "a_folder").mkdir()
    assert library_main(["index", str(src), "--out", str(tmp_path / "a_folder"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a_folder: exists and is not a file" in err and len(err.strip().splitlines()) == 1
    public = Path(tempfile.mkdtemp())  # outside the 0700 pytest folders
    try:
        copy = Path(shutil.copytree(src, public / "samples"))
        for p in [public, *public.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)  # others may read, not write
        out = public / "lib.jsonl"
        with unprivileged():
            code = library_main(["index", str(copy), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "cannot write there (Permission denied)" in err, err
    finally:
        shutil.rmtree(public)
    assert not decoded, "output problems are found before any file is decoded"
    monkeypatch.undo()

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(rmod.library.catalog, "atomic_write_text", full)
    out = tmp_path / "lib.jsonl"
    assert library_main(["index", str(src), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"rmod-library: error: {out}: No space left on device\n"
    assert not out.exists()


def test_nothing_outside_the_library_folder_is_read(small_library, tmp_path):
    """A manifest entry whose path is absolute, climbs with '..' or is a symbolic link out
    of the library folder is refused by line before any file is read; indexing lists a link
    out of SRC_DIR as refused and does not decode what it points to."""
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"not yours")
    lines = small_library.path.read_text().splitlines()
    header, first = json.loads(lines[0]), json.loads(lines[1])
    root = (small_library.path.parent / header.get("root", ".")).resolve()
    link = root / first["cls"] / "link-out.wav"
    link.symlink_to(outside)
    try:
        for bad in (
            str(outside),
            "../" * 12 + str(outside).lstrip("/"),
            str(link.relative_to(root)),
        ):
            path = tmp_path / "lib.jsonl"
            path.write_text("\n".join([lines[0], json.dumps({**first, "path": bad})]) + "\n")
            with pytest.raises(LibraryError, match=f"{path}:2: .* leaves the library folder"):
                read_library(path)
    finally:
        link.unlink()
    src = tmp_path / "src"
    (src / "kick").mkdir(parents=True)
    (src / "kick" / "out.wav").symlink_to(outside)
    report = index_library(src, tmp_path / "idx.jsonl")
    assert report.refused == [
        (str(src / "kick" / "out.wav"), "a symbolic link out of the folder: not read")
    ]
