"""Token cache writer (dose_model.cache.tokenize, dose-tokenize): content, resume after a kill,
bad rows, refusal of a cache of other settings, manifest errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dose_model.cache.index import read_index
from dose_model.cache.options import TokenizeOptions
from dose_model.cache.tokenize import TokenizeError, tokenize_manifest
from dose_model.cli.tokenize import main as tokenize_cli
from dose_model.codec.dac_codec import DacCodec
from dose_model.dataset.audio import load_mono
from dose_model.dataset.manifest import ManifestError, find_manifests, read_rows
from dose_model.train.batches import TokenDataset
from rmod_dose_common import fileio
from tests.dose_fixtures import write_fake_rmod, write_tiny_codec

SHOT_S = 0.5  # one-shot length encoded in these tests: 22050 samples -> 44 frames
SETTINGS = {"batch_size": 2, "shard_size": 1, "oneshot_seconds": SHOT_S, "progress": False}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_fake_rmod(tmp_path_factory.mktemp("rmod"), {"train": 2, "valid": 1}, seed=5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_codec(tmp_path_factory.mktemp("codec") / "tiny.pth", seed=1)


@pytest.fixture(scope="module")
def reference_cache(tmp_path_factory, dataset, weights) -> Path:
    """One uninterrupted run: the files every other run must reproduce."""
    out = tmp_path_factory.mktemp("tok") / "ref"
    summary = tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS))
    assert summary.rows_encoded == 3 and summary.shards_written == 3
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_cache_layout_and_codes(reference_cache, dataset, weights):
    index = read_index(reference_cache)
    assert index["complete"] is True
    config = index["config"]
    assert config["mixture_frames"] == 345 and config["oneshot_frames"] == 44
    assert config["codec"]["sha256"] == DacCodec.load(weights).sha256
    assert {s: v["rows"] for s, v in index["splits"].items()} == {"train": 2, "valid": 1}
    assert [s["rows"] for s in index["splits"]["train"]["shards"]] == [1, 1]
    shard = reference_cache / "train" / "000001"
    meta = json.loads((shard / "meta.json").read_text())
    assert meta["ids"] == ["train-000001"]
    mixture = np.load(shard / "mixture.npy")
    kick = np.load(shard / "kick.npy")
    assert mixture.dtype == np.int16 and mixture.shape == (1, 9, 345)
    assert kick.shape == (1, 9, 44)
    # independent path: read the files, mono mean, crop, encode
    row = read_rows(dataset / "manifests" / "train.jsonl")[1]
    codec = DacCodec.load(weights)
    audio, _ = sf.read(row.mixture, dtype="float32")
    expected = codec.encode(torch.from_numpy(audio.mean(axis=1))[None, None])
    assert np.array_equal(mixture[0], expected[0].numpy())
    shot, _ = sf.read(row.oneshots["kick"], dtype="float32")
    shot = torch.from_numpy(shot.mean(axis=1)[: round(SHOT_S * 44100)])
    assert np.array_equal(kick[0], codec.encode(shot[None, None])[0].numpy())


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import dose_model.cache.tokenize as T
    calls = []
    original = T._write_shard
    def write_then_die(shard_dir, ids, skipped, arrays):
        calls.append(shard_dir)
        if len(calls) == 2:  # die in the middle of writing the second shard
            tmp = shard_dir.with_name(T.TMP_PREFIX + shard_dir.name + ".dead")
            tmp.mkdir()
            (tmp / "mixture.npy").write_bytes(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        return original(shard_dir, ids, skipped, arrays)
    T._write_shard = write_then_die
    T.tokenize_manifest(T.TokenizeOptions(sys.argv[1], sys.argv[2], sys.argv[3], batch_size=2,
                        shard_size=1, oneshot_seconds=float(sys.argv[4]), progress=False))
    """
)


def test_killed_run_resumes_to_identical_files(tmp_path, dataset, weights, reference_cache):
    out = tmp_path / "tok"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(dataset), str(weights), str(out), str(SHOT_S)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert read_index(out)["complete"] is False
    assert (out / "train" / "000000" / "meta.json").is_file()
    assert not (out / "train" / "000001").exists()
    assert any(p.name.startswith(".tmp-") for p in (out / "train").iterdir())
    with pytest.raises(ValueError, match="incomplete"):
        TokenDataset(out, "train", "kick")
    summary = tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS))
    assert summary.shards_kept == 1 and summary.shards_written == 2
    assert summary.rows_encoded == 2
    assert tree_bytes(out) == tree_bytes(reference_cache)


def test_an_unreadable_shard_meta_is_encoded_again(tmp_path, dataset, weights, reference_cache):
    """A finished shard whose meta.json no longer reads (a disk fault, an editor) is not
    trusted and not a crash: the rerun encodes that shard again and the cache is whole."""
    out = tmp_path / "tok"
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS))
    (out / "train" / "000000" / "meta.json").write_text("{half")
    summary = tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS))
    assert summary.shards_written == 1 and summary.rows_encoded == 1
    assert tree_bytes(out) == tree_bytes(reference_cache)


def test_shards_are_synced_before_their_rename_and_the_index(
    tmp_path, dataset, weights, reference_cache, monkeypatch
):
    """Each shard's files are fsync-ed before its folder is renamed into place, the split
    folder after the rename, and all of it before the final index says "complete"."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(fileio, "_syncfs", lambda fd: False)  # one fsync per file, seen here
    out = tmp_path / "tok"
    tokenize_manifest(TokenizeOptions(dataset, weights, out, **SETTINGS))
    assert tree_bytes(out) == tree_bytes(reference_cache)
    renames = [i for i, (kind, dst) in enumerate(events) if kind == "replace"]
    shards = [i for i in renames if Path(events[i][1]).parent.name in ("train", "valid")]
    assert len(shards) == 3
    for i in shards:
        final = Path(events[i][1])
        temp = f".tmp-{final.name}."
        synced = [Path(p) for kind, p in events[:i] if kind == "fsync"]
        files = {p.name for p in synced if p.parent.name.startswith(temp)}
        assert files == {"mixture.npy", "kick.npy", "snare.npy", "hihat.npy", "meta.json"}
        assert synced[-1].name.startswith(temp)  # the folder itself, last
        assert events[i + 1] == ("fsync", str(final.parent))
    assert events[renames[-1]] == ("replace", str(out / "index.json"))
    assert renames[-1] > max(shards)


def test_cli_run_rerun_and_refusal(tmp_path, dataset, weights, reference_cache, capsys):
    out = tmp_path / "tok"
    args = ["--manifest", str(dataset), "--codec-weights", str(weights), "--out", str(out)]
    args += ["--batch-size", "2", "--shard-size", "1", "--oneshot-seconds", str(SHOT_S)]
    assert tokenize_cli([*args, "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("tokenized 3 rows") and "audio-s/s" in line
    assert tree_bytes(out) == tree_bytes(reference_cache)
    assert tokenize_cli([*args, "--no-progress"]) == 0  # all kept, nothing encoded
    assert "tokenized 0 rows" in capsys.readouterr().out  # every shard kept
    other = [*args[:-1], "0.25", "--no-progress"]  # other one-shot length: refused
    assert tokenize_cli(other) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "oneshot_seconds" in err
    with pytest.raises(TokenizeError, match="not empty"):
        junk = tmp_path / "junk"
        junk.mkdir()
        (junk / "x.txt").write_text("x")
        tokenize_manifest(TokenizeOptions(dataset, weights, junk, **SETTINGS))


@pytest.mark.parametrize(
    "option,value",
    [("--mixture-seconds", "nan"), ("--mixture-seconds", "1e12"), ("--oneshot-seconds", "0"),
     ("--batch-size", "0"), ("--shard-size", "-1"), ("--workers", "0")],
)  # fmt: skip
def test_absurd_sizes_are_refused_naming_the_option(
    tmp_path, dataset, weights, capsys, option, value
):
    """NaN, huge or non-positive lengths and counts: status 2, one line naming the option,
    before anything is written (1e12 s would otherwise ask for petabytes)."""
    out = tmp_path / "tok"
    args = ["--manifest", str(dataset), "--codec-weights", str(weights), "--out", str(out)]
    assert tokenize_cli([*args, option, value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dose-tokenize: error: {option} must be"), err
    assert not out.exists()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tokenize_cli(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--manifest", "--codec-weights", "--out", "--device", "--batch-size"):
        assert option in text
    assert "default: 8" in text and "default: cpu" in text


def test_bad_rows_are_skipped_reported_and_indexed(tmp_path, dataset, weights, capsys):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    rows = read_rows(data / "manifests" / "train.jsonl")
    os.remove(rows[0].oneshots["snare"])
    rows[1].mixture.write_bytes(b"RIFF but not really a wav")
    out = tmp_path / "tok"
    args = ["--manifest", str(data / "manifests" / "train.jsonl"), "--out", str(out)]
    args += ["--codec-weights", str(weights), "--oneshot-seconds", str(SHOT_S), "--no-progress"]
    assert tokenize_cli(args) == 1  # cache written, but rows were skipped
    captured = capsys.readouterr()
    assert "train-000000" in captured.err and str(rows[0].oneshots["snare"]) in captured.err
    assert "train-000001" in captured.err and "cannot decode" in captured.err
    index = read_index(out)
    assert index["complete"] is True and index["splits"]["train"]["rows"] == 0
    skipped = {s["id"]: s for s in index["skipped"]}
    assert skipped["train-000000"]["reason"] == "file not found"
    assert skipped["train-000001"]["path"] == str(rows[1].mixture)
    assert np.load(out / "train" / "000000" / "mixture.npy").shape == (0, 9, 345)
    assert tokenize_cli([*args, "--max-skipped", "2"]) == 0


def test_rows_whose_headers_would_exhaust_memory_are_skipped(tmp_path, dataset, weights, capsys):
    """A WAV declaring 2**31 - 1 Hz once asked for 320 GiB (exit 3) and one declaring 1 Hz
    resampled to gigabytes; now each is a skipped row naming the limit."""
    from tests.hostile_audio import wav_bytes

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    rows = read_rows(data / "manifests" / "train.jsonl")
    rows[0].mixture.write_bytes(wav_bytes(2**31 - 1, data=b"\0" * 4000))
    rows[1].oneshots["kick"].write_bytes(wav_bytes(1, data=b"\0" * 10))
    out = tmp_path / "tok"
    args = ["--manifest", str(data / "manifests" / "train.jsonl"), "--out", str(out)]
    args += ["--codec-weights", str(weights), "--oneshot-seconds", str(SHOT_S), "--no-progress"]
    assert tokenize_cli(args) == 1
    err = capsys.readouterr().err
    assert "train-000000" in err and "train-000001" in err and "Traceback" not in err
    skipped = {s["id"]: s for s in read_index(out)["skipped"]}
    assert skipped["train-000000"]["path"] == str(rows[0].mixture)
    assert "is above MAX_SAMPLE_RATE = 384,000 Hz" in skipped["train-000000"]["reason"]
    assert skipped["train-000001"]["path"] == str(rows[1].oneshots["kick"])
    assert "is below MIN_SAMPLE_RATE = 8,000 Hz" in skipped["train-000001"]["reason"]


def test_load_mono_resamples_crops_and_pads(tmp_path):
    sr = 22050
    t = np.arange(sr) / sr  # 1 s of a 1 kHz tone, stereo
    tone = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, axis=1) * 0.5
    path = tmp_path / "tone.wav"
    sf.write(path, tone, sr, subtype="PCM_16")
    padded = load_mono(path, 44100, 2 * 44100)
    assert padded.shape == (88200,) and np.all(padded[44100 + 100 :] == 0)
    spectrum = np.abs(np.fft.rfft(padded[:44100]))
    assert abs(np.argmax(spectrum) * 44100 / 44100 - 1000) <= 1  # 1 Hz bins
    assert load_mono(path, 44100, 1000).shape == (1000,)


def test_manifest_errors_name_file_and_line(tmp_path, dataset):
    folder = tmp_path / "ds" / "manifests"
    folder.mkdir(parents=True)
    good = (dataset / "manifests" / "train.jsonl").read_text().splitlines()
    cases = {
        "json": (good[0] + "\n{not json\n", r"train.jsonl:2: invalid JSON"),
        "dup": (good[0] + "\n" + good[0] + "\n", r":2: duplicate id 'train-000000'"),
        "field": (
            json.dumps({"id": "train-7", "mixture": "m.wav", "oneshots": {}}),
            "oneshots.kick",
        ),
        "type": (
            json.dumps({"id": "train-7", "mixture": "m.wav", "oneshots": {"kick": 1}}),
            r"train.jsonl:1: row train-7.oneshots must be dict\[str, str\], got \{'kick': 1\}",
        ),
        "rate": (
            json.dumps(
                {
                    "id": "train-7",
                    "mixture": "m.wav",
                    "sample_rate": True,
                    "oneshots": {"kick": "k", "snare": "s", "hihat": "h"},
                }
            ),
            r"row train-7.sample_rate must be int \| None, got True",
        ),  # fmt: skip
        "escape": (
            json.dumps(
                {
                    "id": "train-7",
                    "mixture": "../../m.wav",
                    "oneshots": {"kick": "k", "snare": "s", "hihat": "h"},
                }
            ),
            "field 'mixture': path '../../m.wav' leaves the dataset folder",
        ),  # fmt: skip
    }
    for text, pattern in cases.values():
        (folder / "train.jsonl").write_text(text)
        with pytest.raises(ManifestError, match=pattern):
            read_rows(folder / "train.jsonl")
    rows = read_rows(dataset / "manifests" / "valid.jsonl", keep_extra=True)
    first = json.loads((dataset / "manifests" / "valid.jsonl").read_text().splitlines()[0])
    assert rows[0].mixture == (dataset / first["mixture"]).resolve()
    assert rows[0].mixture.is_file() and rows[0].split == "valid"
    assert rows[0].extra["checksums"] == first["checksums"]
    assert read_rows(dataset / "manifests" / "valid.jsonl")[0].extra == {}
    assert list(find_manifests(dataset)) == ["train", "valid"]
    with pytest.raises(ManifestError, match="no manifests"):
        find_manifests(tmp_path / "ds" / "manifests")


def test_end_to_end_on_a_real_rmod_build(small_library, tmp_path, weights):
    """rmod-build (tiny recipe: 1 s mixtures, 0.5 s one-shots) -> dose-tokenize -> dataset.

    The lengths come from the recipe in build.json; a rerun keeps every shard; an interrupted
    run resumes to identical files."""
    from rmod.build.run import BuildOptions, build
    from tests.rmod_fixtures import write_tiny_recipe

    recipe_path = write_tiny_recipe(tmp_path)
    data = tmp_path / "rmod"
    built = build(
        BuildOptions(
            n=1,
            out=data,
            recipe=str(recipe_path),
            library=str(small_library.path),
            seed=3,
            jobs=1,
            shard_size=1,
            progress=False,
        )
    )
    assert built.ok, built.error
    out = tmp_path / "tok"
    summary = tokenize_manifest(TokenizeOptions(data, weights, out, batch_size=2, progress=False))
    counts = {split: len(read_rows(p)) for split, p in find_manifests(data).items()}
    assert summary.rows_encoded == sum(counts.values()) >= 3 and summary.rows_skipped == 0
    config = read_index(out)["config"]
    assert config["mixture_frames"] == 87 and config["oneshot_frames"] == 44
    for split, n in counts.items():
        ds = TokenDataset(out, split, "hihat")
        assert len(ds) == n
        mixture, target = ds[0]
        assert mixture.shape == (87 + 8, 9) and target.shape == (44 + 10, 9)
    again = tokenize_manifest(TokenizeOptions(data, weights, out, batch_size=2, progress=False))
    assert again.rows_encoded == 0 and again.shards_kept == len(counts)
    # Stopped after its first shard, a rerun completes the cache to the same bytes.

    def stop(split: str, i: int) -> None:
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        tokenize_manifest(
            TokenizeOptions(data, weights, cut, batch_size=2, progress=False), on_shard=stop
        )
    assert read_index(cut)["complete"] is False
    resumed = tokenize_manifest(TokenizeOptions(data, weights, cut, batch_size=2, progress=False))
    assert resumed.shards_kept == 1 and resumed.shards_written == len(counts) - 1
    assert tree_bytes(cut) == tree_bytes(out)


def test_cli_falls_back_to_the_reference_cache_file(
    tmp_path, dataset, weights, monkeypatch, capsys
):
    import dose_model.codec.dac_codec as codec_module

    cached = tmp_path / "cache" / "weights_44khz_8kbps_0.0.1.pth"
    monkeypatch.setattr(codec_module, "DAC_CACHE_PATH", cached)
    args = ["--manifest", str(dataset / "manifests" / "valid.jsonl"), "--out", str(tmp_path / "t")]
    args += ["--oneshot-seconds", str(SHOT_S), "--no-progress"]
    assert tokenize_cli(args) == 2
    assert "no --codec-weights" in capsys.readouterr().err
    cached.parent.mkdir()
    shutil.copy(weights, cached)
    assert tokenize_cli(args) == 0
    assert read_index(tmp_path / "t")["config"]["codec"]["sha256"] == DacCodec.load(weights).sha256


def test_moved_dataset_and_cache_still_resume(tmp_path, dataset, weights, reference_cache):
    moved, tok = tmp_path / "moved", tmp_path / "tok"
    shutil.copytree(dataset, moved)
    shutil.copytree(reference_cache, tok)
    summary = tokenize_manifest(TokenizeOptions(moved, weights, tok, **SETTINGS))
    assert summary.rows_encoded == 0 and summary.shards_kept == 3
    index = read_index(tok)
    assert index["complete"] and str(moved) in index["config"]["manifests"]["train"]["path"]
    with pytest.raises(TokenizeError, match="codec"):  # strict FP32 would be other codes
        tokenize_manifest(TokenizeOptions(moved, weights, tok, tf32=False, **SETTINGS))
    (moved / "manifests" / "valid.jsonl").write_text("")  # other content: refused
    with pytest.raises(TokenizeError, match="manifests"):
        tokenize_manifest(TokenizeOptions(moved, weights, tok, **SETTINGS))


def test_the_summary_line_counts_in_words():
    """'1 row', '1 shard', '0 rows': what dose-tokenize prints reads as English."""
    from dose_model.cache.tokenize import TokenizeSummary

    one = TokenizeSummary(out="tok", rows_encoded=1, rows_skipped=1, shards_written=1)
    assert str(one).startswith("tokenized 1 row into tok (1 shard written, 0 kept, 1 row skipped)")
    many = TokenizeSummary(out="tok", rows_encoded=2, shards_written=0)
    assert str(many).startswith("tokenized 2 rows into tok (0 shards written, 0 kept, 0 rows")
