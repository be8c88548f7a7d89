"""rmod-verify: passes a good dataset, catches every kind of damage and lists it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rmod_fixtures import write_tiny_recipe

from rmod.build import BuildOptions, build
from rmod.cli import BROKEN_PIPE_STATUS
from rmod.cli.verify import main
from rmod.manifest import read_manifest
from rmod.verify import verify_dataset


@pytest.fixture(scope="module")
def good(small_library, tmp_path_factory) -> Path:
    """A tiny drums-only dataset: 2 train + 1 valid + 1 test, 1 s mixtures."""
    folder = tmp_path_factory.mktemp("verify")
    recipe = write_tiny_recipe(folder, "rmod-drums-only")
    out = folder / "ds"
    options = BuildOptions(
        n=2, out=out, recipe=recipe, library=str(small_library.path), jobs=1, shard_size=2,
        progress=False,
    )  # fmt: skip
    assert build(options).ok
    return out


@pytest.fixture
def ds(good, tmp_path) -> Path:
    """A private copy of the good dataset, free to damage."""
    return Path(shutil.copytree(good, tmp_path / "ds"))


def problems(root: Path) -> list[str]:
    report = verify_dataset(root, progress=False)
    assert report.ok == (not report.problems)
    return [str(p) for p in report.problems]


def first_row(root: Path, split: str = "train"):
    return read_manifest(root / "manifests" / f"{split}.jsonl")[0]


def test_good_dataset_passes(good, capsys):
    report = verify_dataset(good, progress=False)
    assert report.ok, report.problems
    assert report.rows == 4 and report.files == 4 * 5
    assert main([str(good), "--no-progress"]) == 0
    assert "rmod-verify OK: 4 rows, 20 files" in capsys.readouterr().out


def test_truncated_file(ds, capsys):
    row = first_row(ds)
    path = ds / row.mixture
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    found = problems(ds)
    assert found and all(row.mixture in p for p in found)
    assert any("samples, expected 44100" in p or "does not decode" in p for p in found)
    assert main([str(ds), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM {row.mixture}" in out and "rmod-verify FAILED" in out


def test_deleted_file(ds):
    row = first_row(ds, "test")
    (ds / row.oneshots["snare"]).unlink()
    assert problems(ds) == [f"{row.oneshots['snare']}: {row.id}: file is missing"]


def test_changed_byte_fails_only_the_checksum(ds):
    row = first_row(ds, "valid")
    path = ds / row.oneshots["hihat"]
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # one bit of the last sample: still a valid, same-length file
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames == row.frames["hihat"]
    assert problems(ds) == [f"{row.oneshots['hihat']}: {row.id}: checksum mismatch "
                            "(bytes changed since the build)"]  # fmt: skip


def test_duplicated_row(ds):
    manifest = ds / "manifests" / "train.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines + lines[:1]))
    found = problems(ds)
    assert any("duplicate id train-00000000" in p for p in found)
    assert any("3 rows, build.json says 2" in p for p in found)


def test_wrong_format_rate_and_channels(ds):
    row = first_row(ds)
    path = ds / row.oneshots["kick"]  # a mono one-shot (the library is mono)
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    sf.write(str(path), np.repeat(audio, 2, axis=1), 22050, subtype="PCM_24")
    found = " | ".join(problems(ds))
    for what in ("PCM_24, expected PCM_16", "22050 Hz, expected 44100 Hz",
                 "2 channel(s), expected 1", "checksum mismatch"):  # fmt: skip
        assert what in found


def test_missing_manifest_and_bad_build_json(ds):
    (ds / "manifests" / "valid.jsonl").unlink()
    found = problems(ds)
    assert any(p.startswith("manifests/valid.jsonl: manifest is missing") for p in found)
    assert "valid/000000: 5 file(s) that no manifest row points to" in found
    (ds / "build.json").write_text("{not json")
    assert any("build.json" in p for p in problems(ds))


def test_shared_source_between_splits_is_caught(ds):
    manifest = ds / "manifests" / "valid.jsonl"
    row = json.loads(manifest.read_text().splitlines()[0])
    train_kick = first_row(ds).sources["kick"][0]
    row["sources"]["kick"][0] = train_kick
    manifest.write_text(json.dumps(row) + "\n")
    assert problems(ds) == [f"{train_kick}: library source used by several splits: train, valid"]


def test_path_escaping_the_dataset_is_refused(ds):
    manifest = ds / "manifests" / "test.jsonl"
    row = json.loads(manifest.read_text())
    row["mixture"] = "../../etc/passwd"
    manifest.write_text(json.dumps(row) + "\n")
    assert any("path leaves the dataset folder" in p for p in problems(ds))


def test_stray_files_and_unfinished_builds_are_reported(ds):
    row = first_row(ds)
    shard = row.mixture.rsplit("/", 1)[0]
    (ds / shard / "extra.wav").write_bytes(b"x")
    (ds / "train" / ".tmp-000009-abc").mkdir()
    assert sorted(problems(ds)) == [
        "train/.tmp-000009-abc: not part of the dataset (debris of an interrupted build?)",
        f"{shard}: 1 file(s) that no manifest row points to",
    ]
    (ds / "manifests" / "test.jsonl").unlink()
    assert (
        "manifests/test.jsonl: manifest is missing (after an interrupted build: rerun the "
        "same rmod-build)" in problems(ds)
    )


@pytest.mark.parametrize(
    "command", [["rmod.cli.verify", "{good}"], ["rmod.cli.library", "info", "{lib}"]]
)
def test_output_into_a_closed_pipe_ends_without_traceback(command, good, small_library):
    argv = [a.format(good=good, lib=small_library.path) for a in command]
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv, *(["--no-progress"] if "verify" in argv[0] else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader went away before the command printed anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == BROKEN_PIPE_STATUS, err
    assert "Traceback" not in err


def test_threads_give_the_same_report_in_the_same_order(ds, monkeypatch):
    """Damage in several rows and splits: 1 thread and 3 threads list the same problems in the
    same (manifest) order, also when results are collected while rows are still being read
    (a look-ahead of one row)."""
    import rmod.verify

    for split, role in (("train", "mixture"), ("valid", "kick"), ("test", "snare")):
        row = first_row(ds, split)
        rel = row.mixture if role == "mixture" else row.oneshots[role]
        path = ds / rel
        path.write_bytes(path.read_bytes()[:100])
    manifest = ds / "manifests" / "train.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines + lines[:1]))  # a duplicate row too
    one = [str(p) for p in verify_dataset(ds, progress=False, jobs=1).problems]
    three = [str(p) for p in verify_dataset(ds, progress=False, jobs=3).problems]
    assert len(one) >= 5 and three == one
    assert [p.split(":")[0].split("/")[0] for p in one[:1]] == ["train"]
    monkeypatch.setattr(rmod.verify, "LOOKAHEAD_PER_JOB", 0)
    assert [str(p) for p in verify_dataset(ds, progress=False, jobs=2).problems] == one


def test_an_unexpected_error_in_a_thread_reaches_the_caller(ds, monkeypatch):
    import rmod.verify

    def boom(root, row, info, split):
        raise PermissionError(f"cannot read {row.id}")

    monkeypatch.setattr(rmod.verify, "check_row", boom)
    with pytest.raises(PermissionError, match="cannot read train-00000000"):
        verify_dataset(ds, progress=False, jobs=2)
