"""The dose manifest reader and the tools on it (dose-tokenize, dose-eval, dose-fad) read a
``rmod-build --layout tar`` build as they read a folder build: tar and folder builds of one
recipe and seed side by side. A member whose bytes changed, a truncated tar, a missing index
and rows pointing out of the dataset are refused, naming the shard and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dose_model.dataset.audio import RowAudioError, load_mono, read_mono
from dose_model.dataset.manifest import ManifestError, MemberError, TarMember, read_rows
from tests.dose_fixtures import REFERENCE_DIR, write_tiny_codec, write_tiny_dose_checkpoint

SHARD = "train/train-000000.tar"


@pytest.fixture(scope="module")
def builds(small_library, tmp_path_factory) -> tuple[Path, Path]:
    """(folder build, tar build) of the tiny paper recipe (1 s mixtures, 0.5 s one-shots),
    2 train + 1 valid + 1 test, 2 examples per shard, the same seed."""
    from rmod.build.run import BuildOptions, build
    from tests.rmod_fixtures import write_tiny_recipe

    root = tmp_path_factory.mktemp("builds")
    recipe = write_tiny_recipe(root)
    out = []
    for layout in ("folder", "tar"):
        options = BuildOptions(
            n=2, out=root / layout, recipe=recipe, library=str(small_library.path), seed=4,
            jobs=1, shard_size=2, progress=False, layout=layout,
        )  # fmt: skip
        assert build(options).ok
        out.append(root / layout)
    return out[0], out[1]


@pytest.fixture
def tar_copy(builds, tmp_path) -> Path:
    """A private copy of the tar build, free to damage."""
    return Path(shutil.copytree(builds[1], tmp_path / "tar"))


def member_offset(root: Path, shard: str, name: str) -> tuple[int, int]:
    index = json.loads((root / f"{shard}.index.json").read_text())
    entry = next(m for m in index["members"] if m["name"] == name)
    return entry["offset"], entry["size"]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_tar_rows_are_members_that_decode_like_the_folder_files(builds):
    folder, tar = builds
    for split in ("train", "valid", "test"):
        f_rows = read_rows(folder / "manifests" / f"{split}.jsonl")
        t_rows = read_rows(tar / "manifests" / f"{split}.jsonl")
        assert [r.id for r in f_rows] == [r.id for r in t_rows] and t_rows
        for f_row, t_row in zip(f_rows, t_rows, strict=True):
            assert isinstance(f_row.mixture, Path) and isinstance(t_row.mixture, TarMember)
            assert t_row.mixture.tar == (tar / split / f"{split}-000000.tar").resolve()
            assert str(t_row.mixture) == f"{split}/{split}-000000.tar#{t_row.id}.mixture.wav"
            assert t_row.mixture.key == t_row.id and t_row.frames == f_row.frames
            for drum in ("kick", "snare", "hihat"):
                assert t_row.oneshots[drum].read_bytes() == f_row.oneshots[drum].read_bytes()
            np.testing.assert_array_equal(
                read_mono(t_row.mixture, 44100), read_mono(f_row.mixture, 44100)
            )
            np.testing.assert_array_equal(
                load_mono(t_row.oneshots["kick"], 44100, 30000),
                load_mono(f_row.oneshots["kick"], 44100, 30000),
            )


def test_a_changed_member_is_refused_naming_shard_and_key_unless_not_verified(tar_copy):
    offset, size = member_offset(tar_copy, SHARD, "train-00000001.kick.wav")
    flip(tar_copy / SHARD, offset + size - 10)  # a sample: the file still decodes
    rows = read_rows(tar_copy / "manifests" / "train.jsonl")
    with pytest.raises(RowAudioError) as err:
        read_mono(rows[1].oneshots["kick"], 44100)
    message = str(err.value)
    assert f"shard {SHARD}, key train-00000001" in message and "SHA-256" in message
    assert err.value.path == f"{SHARD}#train-00000001.kick.wav"
    read_mono(rows[1].oneshots["snare"], 44100)  # the other members are fine
    read_mono(rows[0].oneshots["kick"], 44100)
    unchecked = read_rows(tar_copy / "manifests" / "train.jsonl", verify_members=False)
    assert read_mono(unchecked[1].oneshots["kick"], 44100).shape == (22050,)


@pytest.mark.parametrize("damage", ["truncate", "grow", "no index", "not listed"])
def test_a_truncated_tar_or_broken_index_is_refused_naming_the_shard(tar_copy, damage):
    tar = tar_copy / SHARD
    index = Path(f"{tar}.index.json")
    if damage == "truncate":
        tar.write_bytes(tar.read_bytes()[:-3000])
    elif damage == "grow":
        tar.write_bytes(tar.read_bytes() + b"\0" * 512)
    elif damage == "no index":
        index.unlink()
    else:
        doc = json.loads(index.read_text())
        doc["members"] = [m for m in doc["members"] if m["name"] != "train-00000000.mixture.wav"]
        index.write_text(json.dumps(doc))
    row = read_rows(tar_copy / "manifests" / "train.jsonl")[0]
    with pytest.raises(MemberError) as err:
        row.mixture.read_bytes()
    expected = {
        "truncate": "its index says",
        "grow": "longer than it was written",
        "no index": "index train-000000.tar.index.json is missing",
        "not listed": "train-00000000.mixture.wav is not in its index",
    }[damage]
    assert str(err.value).startswith(f"shard {SHARD}") and expected in str(err.value)
    with pytest.raises(RowAudioError, match="shard train/train-000000.tar"):
        read_mono(row.mixture, 44100)


def test_a_rewritten_shard_is_read_again_not_from_the_index_cache(tar_copy):
    row = read_rows(tar_copy / "manifests" / "train.jsonl")[0]
    before = row.mixture.read_bytes()
    tar = tar_copy / SHARD
    tar.write_bytes(tar.read_bytes()[:-512])  # a new size: the cached index must not be used
    with pytest.raises(MemberError, match="truncated"):
        row.mixture.read_bytes()
    assert len(before) > 0


@pytest.mark.parametrize(
    "value, reason",
    [
        ("../x/train-000000.tar#a.wav", "leaves the dataset folder"),
        ("/abs/train-000000.tar#a.wav", "leaves the dataset folder"),
        ("train/train-000000.tar#a/b.wav", "is not TAR#MEMBER"),
        ("train/train-000000.zip#a.wav", "is not TAR#MEMBER"),
        ("train/train-000000.tar#", "is not TAR#MEMBER"),
    ],
)
def test_rows_naming_members_out_of_the_dataset_are_refused(tar_copy, value, reason):
    manifest = tar_copy / "manifests" / "valid.jsonl"
    row = json.loads(manifest.read_text())
    row["oneshots"]["snare"] = value
    manifest.write_text(json.dumps(row) + "\n")
    with pytest.raises(ManifestError) as err:
        read_rows(manifest)
    assert "'oneshots.snare'" in str(err.value) and reason in str(err.value)


def test_a_tar_linked_from_outside_the_dataset_is_refused(tar_copy, tmp_path):
    outside = tmp_path / "elsewhere.tar"
    shutil.move(tar_copy / SHARD, outside)
    (tar_copy / SHARD).symlink_to(outside)
    with pytest.raises(ManifestError, match="leaves the dataset folder"):
        read_rows(tar_copy / "manifests" / "train.jsonl")


# ----------------------------------------------------------------------------- the tools


@pytest.fixture(scope="module")
def codec(tmp_path_factory) -> Path:
    return write_tiny_codec(tmp_path_factory.mktemp("codec") / "tiny.pth", seed=1, loud=True)


def npy_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.npy"))}


@pytest.mark.slow
def test_dose_tokenize_gives_the_same_tokens_from_tars_and_folders(builds, codec, tmp_path):
    from dose_model.cli.tokenize import main

    caches = []
    for root in builds:
        out = tmp_path / root.name
        argv = ["--manifest", str(root), "--codec-weights", str(codec), "--out", str(out)]
        argv += ["--mixture-seconds", "0.5", "--oneshot-seconds", "0.25", "--batch-size", "4"]
        assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
        caches.append(out)
    folder, tar = (npy_files(c) for c in caches)
    assert folder == tar and len(folder) == 3 * 4  # 3 splits, mixture + 3 one-shots


def test_dose_tokenize_skips_a_changed_member_naming_shard_and_key(
    tar_copy, codec, tmp_path, capsys
):
    from dose_model.cli.tokenize import main

    offset, size = member_offset(tar_copy, SHARD, "train-00000001.mixture.wav")
    flip(tar_copy / SHARD, offset + size // 2)
    manifest = tar_copy / "manifests" / "train.jsonl"
    argv = ["--manifest", str(manifest), "--codec-weights", str(codec)]
    argv += ["--out", str(tmp_path / "t"), "--mixture-seconds", "0.5", "--oneshot-seconds", "0.25"]
    code = main([*argv, "--no-progress", "--device", "cpu"])
    text = capsys.readouterr().err + json.dumps(
        json.loads((tmp_path / "t" / "index.json").read_text()).get("skipped", [])
    )
    assert code in (0, 1) and "train-00000001" in text
    assert f"shard {SHARD}, key train-00000001" in text


def test_larsnet_reads_the_stereo_mixture_of_a_member(builds, tar_copy):
    from dose_model.separate.songs import SongAudioError, read_stereo

    f_row = read_rows(builds[0] / "manifests" / "test.jsonl")[0]
    t_row = read_rows(builds[1] / "manifests" / "test.jsonl")[0]
    stereo = read_stereo(t_row.mixture)
    assert stereo.shape == (2, 44100)
    np.testing.assert_array_equal(stereo, read_stereo(f_row.mixture))
    offset, _ = member_offset(tar_copy, "test/test-000000.tar", "test-00000000.mixture.wav")
    flip(tar_copy / "test" / "test-000000.tar", offset + 100)
    bad = read_rows(tar_copy / "manifests" / "test.jsonl")[0]
    with pytest.raises(SongAudioError, match="shard test/test-000000.tar, key test-00000000"):
        read_stereo(bad.mixture)


@pytest.mark.slow
def test_dose_eval_scores_a_tar_build_as_its_folder_build(builds, codec, tmp_path):
    """MSS of every system (LarsNet too, which reads the stereo mixture) on the test row."""
    from dose_model.cli.evaluate import main

    ckpt = write_tiny_dose_checkpoint(tmp_path / "kick.ckpt", max_target_len=14)
    rows = []
    for root in builds:
        out = tmp_path / f"eval-{root.name}"
        argv = ["--data", f"rmod={root}", "--codec-weights", str(codec), "--kick", str(ckpt)]
        argv += ["--larsnet", str(REFERENCE_DIR / "larsnet_narrow"), "--examples", "0"]
        argv += ["--no-progress", "--device", "cpu", "--out", str(out)]
        assert main(argv) == 0
        rows.append((out / "rmod" / "rows.csv").read_text())
    assert rows[0] == rows[1] and "test-00000000" in rows[0] and "LarsNet" in rows[0]


def test_dose_fad_reads_rmod_sources_of_a_tar_build(builds, tmp_path):
    from dose_model.fad.score import list_audio, read_audio

    folder, tar = builds
    f_items, t_items = list_audio(f"rmod:{folder}:train:kick"), list_audio(f"rmod:{tar}:train:kick")
    assert [i.rel for i in t_items] == [f"{SHARD}#train-0000000{k}.kick.wav" for k in (0, 1)]
    for f, t in zip(f_items, t_items, strict=True):
        np.testing.assert_array_equal(read_audio(f.path)[0], read_audio(t.path)[0])


def test_an_index_that_is_a_fifo_or_too_big_is_refused(tmp_path, monkeypatch):
    """The sidecar index is untrusted: a FIFO in its place is refused without blocking, and one
    over MAX_INDEX_BYTES is refused by name before it is read."""
    import os

    import rmod_dose_common.tar_shards as shards
    from rmod_dose_common.tar_shards import TarShardError, index_path, read_index

    tar = tmp_path / "train-000000.tar"
    tar.write_bytes(b"\0" * 1024)
    os.mkfifo(index_path(tar))
    with pytest.raises(TarShardError, match="not a regular file"):
        read_index(tar)
    os.unlink(index_path(tar))
    index_path(tar).write_bytes(b"{" + b" " * 100 + b"}")
    monkeypatch.setattr(shards, "MAX_INDEX_BYTES", 10)
    with pytest.raises(TarShardError, match="MAX_INDEX_BYTES"):
        read_index(tar)


def test_a_member_over_max_member_bytes_is_refused_before_it_is_read(builds, monkeypatch):
    """An index may describe a member as large as its (sparse, hostile) tar: over the limit
    it is refused by name, naming the shard and key, and no byte of it is read."""
    import builtins

    import rmod_dose_common.tar_shards as shards

    rows = read_rows(builds[1] / "manifests" / "train.jsonl")
    monkeypatch.setattr(shards, "MAX_MEMBER_BYTES", 1000)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(
        builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k)
    )
    with pytest.raises(RowAudioError) as err:
        read_mono(rows[1].oneshots["kick"], 44100)
    assert f"shard {SHARD}, key train-00000001" in str(err.value)
    assert "train-00000001.kick.wav is" in str(err.value) and "MAX_MEMBER_BYTES = 1,000" in str(
        err.value
    )
    assert not any(f.endswith(".tar") for f in opened)
