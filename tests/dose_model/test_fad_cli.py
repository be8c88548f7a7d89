"""`dose-fad` end to end with the narrow VGGish: the printed FAD is the library's on every
window of every file, embeddings are saved and cached (a second run calls no model), bad
inputs end with one line naming the file, and RMOD splits work as sets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dose_model.cli.fad import main
from dose_model.fad.cache import EmbeddingCache, cache_key
from dose_model.fad.frechet import RankDeficiencyWarning, fad
from dose_model.fad.score import list_audio
from dose_model.fad.vggish import VGGish, load_vggish
from tests.dose_fixtures import REFERENCE_DIR

WEIGHTS = REFERENCE_DIR / "vggish_narrow.pth"
MODEL = f"vggish={WEIGHTS}"


def _write(path: Path, seconds: float, rate: int, channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * rng.uniform(60, 3000) * t) * np.exp(-t * rng.uniform(3, 20))
    audio = 0.5 * tone[:, None] + 0.05 * rng.standard_normal((t.size, channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), rate)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    """ref: 6 files (wav and flac, nested, mono and stereo, 22.05-48 kHz, 0.3-2.5 s);
    eval: 5 files; both with a non-audio file that must be ignored."""
    root = tmp_path_factory.mktemp("sets")
    specs = [(0.3, 44100, 2), (2.5, 48000, 1), (0.8, 22050, 1), (1.2, 44100, 2), (0.5, 16000, 1)]
    for i, (seconds, rate, channels) in enumerate(specs):
        _write(root / "ref" / f"k{i}.wav", seconds, rate, channels, seed=i)
        _write(root / "eval" / "sub" / f"e{i}.flac", seconds * 0.8, rate, channels, seed=50 + i)
    _write(root / "ref" / "deeper" / "x" / "k9.WAV", 0.4, 44100, 1, seed=9)
    (root / "ref" / "notes.txt").write_text("not audio")
    return root / "ref", root / "eval"


def _value(out: str, label: str) -> float:
    return float(re.search(rf"^{label}\s+(-?[0-9.]+)", out, flags=re.M).group(1))


def test_prints_the_library_values_and_saves_every_files_embeddings(sets, tmp_path, capsys):
    ref, ev = sets
    saved = tmp_path / "emb"
    args = [MODEL, str(ref), str(ev), "--save-embeddings", str(saved), "--no-progress"]
    assert main([*args, "--bootstrap", "20", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    model = load_vggish(WEIGHTS)
    rows, windows = {}, {}
    for name, folder in (("ref", ref), ("eval", ev)):
        items = list_audio(str(folder))
        rows[name] = []
        for item in items:
            data, rate = sf.read(item.path, dtype="float32", always_2d=True)
            want = model.embed(data.T, rate)
            got = np.load(saved / name / f"{item.rel}.npy")
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            rows[name].append(want)
            windows[item.rel] = want.shape[0]
    assert len(rows["ref"]) == 6 and (saved / "ref" / "deeper" / "x" / "k9.WAV.npy").is_file()
    assert (saved / "eval" / "sub" / "e1.flac.npy").is_file()
    assert windows["k1.wav"] == 2 and windows["k0.wav"] == 1  # 2.5 s: two 0.96 s windows
    with pytest.warns(RankDeficiencyWarning):
        result = fad(
            np.concatenate(rows["ref"]), np.concatenate(rows["eval"]), bootstrap=20, seed=3
        )
    assert _value(captured.out, "FAD") == pytest.approx(result.fad, rel=1e-4)
    assert _value(captured.out, "FAD-inf") == pytest.approx(result.fad_inf, rel=1e-4, abs=1e-4)
    assert f"{result.ci_low:.4f} .. {result.ci_high:.4f}" in captured.out
    assert "7 windows from 6 files" in captured.out and "6 windows from 5 files" in captured.out
    assert "zero-pad" in captured.out and "weights sha256" in captured.out
    assert "rank-deficient" in captured.err  # 6 windows for 128 dimensions
    assert captured.err.count("warning") == 1


def test_a_second_scoring_reads_the_cache_and_calls_no_model(sets, tmp_path, capsys, monkeypatch):
    ref, ev = sets
    args = [MODEL, str(ref), str(ev), "--cache", str(tmp_path / "cache"), "--bootstrap", "0"]
    assert main([*args, "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "0 of them from the cache" in first
    assert len(list((tmp_path / "cache").glob("*/*.npy"))) == 11

    def refuse(self, audio, sample_rate):
        raise AssertionError("the model was called although every file is cached")

    monkeypatch.setattr(VGGish, "embed", refuse)
    assert main([*args, "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "11 of them from the cache" in second
    assert _value(second, "FAD") == _value(first, "FAD")
    # other options are other entries: the relu output is not served from the pre-ReLU cache
    assert main([*args, "--vggish-output", "relu", "--no-progress"]) == 3  # refuse() ran
    assert "the model was called" in capsys.readouterr().err


def test_cache_entries_are_keyed_by_content_and_model_and_survive_a_bad_entry(tmp_path):
    info = load_vggish(WEIGHTS).info
    relu = load_vggish(WEIGHTS, output="relu").info
    assert cache_key("a" * 64, info) != cache_key("b" * 64, info)
    assert cache_key("a" * 64, info) != cache_key("a" * 64, relu)
    cache = EmbeddingCache(tmp_path, info)
    rows = np.arange(256, dtype=np.float32).reshape(2, 128)
    np.testing.assert_array_equal(cache.get_or_compute("a" * 64, lambda: rows), rows)
    assert (cache.hits, cache.misses) == (0, 1)
    np.testing.assert_array_equal(cache.load("a" * 64), rows)
    cache.path("a" * 64).write_bytes(b"truncated")  # unreadable: computed again
    again = cache.get_or_compute("a" * 64, lambda: rows + 1)
    np.testing.assert_array_equal(again, rows + 1)
    assert (cache.hits, cache.misses) == (0, 2)
    np.testing.assert_array_equal(cache.get_or_compute("a" * 64, lambda: None), rows + 1)
    assert (cache.hits, cache.misses) == (1, 2)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_bad_audio_is_one_line_naming_the_file(sets, tmp_path, capsys):
    ref, _ = sets
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    assert main([MODEL, str(ref), str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dose-fad: error: ") and "broken.wav: cannot decode audio" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["openl3=x.pth"], "unknown model 'openl3'"),
        ([f"vggish={WEIGHTS.parent / 'missing.pth'}"], "missing.pth"),
        ([MODEL, "--pad", "repeat"], "--pad: vggish has one rule"),
        ([MODEL, "--vggish-output", "postprocessed"], "PCA file"),
        (["clap=x.pt", "--vggish-pca", "p.pth"], "apply to vggish only"),
    ],
)
def test_bad_options_end_with_status_2(sets, argv, message, capsys):
    ref, ev = sets
    model, *options = argv
    assert main([model, str(ref), str(ev), *options, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_folder_and_a_missing_one_are_named(sets, tmp_path, capsys):
    ref, _ = sets
    assert main([MODEL, str(ref), str(tmp_path), "--no-progress"]) == 2
    assert f"{tmp_path}: no .wav or .flac files" in capsys.readouterr().err
    assert main([MODEL, str(ref), str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "nope: no such folder" in capsys.readouterr().err


def test_bootstrap_must_not_be_negative(sets, capsys):
    with pytest.raises(SystemExit) as exc:
        main([MODEL, *map(str, sets), "--bootstrap", "-1"])
    assert exc.value.code == 2


def _rmod_dataset(root: Path) -> None:
    """A minimal RMOD folder: manifests/{train,test}.jsonl, one-shots under oneshots/."""
    (root / "manifests").mkdir(parents=True)
    for split, count in (("train", 3), ("test", 2)):
        lines = []
        for i in range(count):
            row_id = f"{split}-{i:08d}"
            shots = {d: f"oneshots/{row_id}.{d}.wav" for d in ("kick", "snare", "hihat")}
            for k, (drum, rel) in enumerate(shots.items()):
                _write(root / rel, 0.3 + 0.1 * k, 44100, 1, seed=hash((split, i, drum)) % 1000)
            row = {"id": row_id, "mixture": f"mix/{row_id}.wav", "oneshots": shots}
            lines.append(json.dumps(row))
        (root / "manifests" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def test_rmod_splits_and_drums_are_sets(tmp_path, capsys):
    data = tmp_path / "data"
    _rmod_dataset(data)
    items = list_audio(f"rmod:{data}:train:snare")
    assert [item.rel for item in items] == [f"oneshots/train-{i:08d}.snare.wav" for i in range(3)]
    saved = tmp_path / "emb"
    argv = [MODEL, f"rmod:{data}:train:kick", f"rmod:{data}:test:kick", "--bootstrap", "0"]
    assert main([*argv, "--save-embeddings", str(saved), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 windows from 3 files" in out and "2 windows from 2 files" in out
    assert (saved / "eval" / "oneshots" / "test-00000001.kick.wav.npy").is_file()
    for source, message in [
        (f"rmod:{data}:valid:kick", "has no valid manifest"),
        (f"rmod:{data}:test:tom", "DRUM one of kick, snare, hihat"),
    ]:
        assert main([MODEL, source, f"rmod:{data}:test:kick", "--no-progress"]) == 2
        assert message in capsys.readouterr().err
