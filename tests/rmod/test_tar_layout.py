"""rmod-build --layout tar: WebDataset tars beside a folder build of the same recipe and seed.

Each test holds a tar build against the folder build of the same recipe, library and seed
(``pair``): same bytes per member, deterministic tars, resume after a kill, the readers
(rmod-verify, rmod-stats, rmod-render-one --from) on both, and a read with ``webdataset``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from rmod import SPLITS
from rmod.build.manifest import read_manifest
from rmod.inspect.verify import verify_dataset
from rmod_dose_common.tar_shards import (
    TarIndex,
    TarShardError,
    end_of_archive,
    index_path,
    padding,
    read_index,
    read_member,
    ustar_header,
)
from tests import skip_unless_ci
from tests.rmod.test_build import (
    SCHEMA,
    cli_args,
    start_blocked_build,
    tree_bytes,
    validate,
    wait_until,
)
from tests.rmod_fixtures import write_tiny_recipe

SR = 22050
SEED = 11


@pytest.fixture(scope="module")
def kwargs(small_library, tmp_path_factory):
    """4 train + 1 valid + 1 test examples of the tiny paper recipe, 2 per shard."""
    recipe = write_tiny_recipe(tmp_path_factory.mktemp("recipe"), sample_rate=SR)
    return dict(
        n=4, recipe=recipe, library=str(small_library.path), seed=SEED, shard_size=2,
        progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pair(kwargs, tmp_path_factory):
    """(folder build, tar build) of the same recipe, library and seed, one worker each."""
    from rmod.build.run import BuildOptions, build

    root = tmp_path_factory.mktemp("pair")
    out = {}
    for layout in ("folder", "tar"):
        summary = build(BuildOptions(out=root / layout, jobs=1, layout=layout, **kwargs))
        assert summary.ok, summary.error
        out[layout] = root / layout
    return out["folder"], out["tar"]


def tars(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.tar"))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def problems(root: Path) -> list[str]:
    return [str(p) for p in verify_dataset(root, progress=False).problems]


# ----------------------------------------------------------------------------- the format


def test_headers_are_the_bytes_tarfile_writes_for_a_plain_ustar_member():
    items = [("train-00000001.mixture.wav", b"x" * 1000), ("train-00000001.json", b"{}\n")]
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uname, info.gname = len(data), 0o644, 0, "", ""
            tf.addfile(info, io.BytesIO(data))
    ours = b"".join(ustar_header(n, len(d)) + d + padding(len(d)) for n, d in items)
    ours += end_of_archive(len(ours))
    assert ours == ref.getvalue() and len(ours) % 10240 == 0
    for bad in ("a/b.wav", "x#y.wav", "é.wav", "n" * 101, ""):
        with pytest.raises(ValueError):
            ustar_header(bad, 1)


def test_index_parser_refuses_overlaps_duplicates_and_other_formats():
    member = {"name": "train-00000000.json", "offset": 512, "size": 3, "sha256": "0" * 64}
    doc = {"format": "rmod-tar-index/1", "tar": "train-000000.tar", "size": 10240}
    doc |= {"sha256": "0" * 64, "members": [member]}
    assert TarIndex.from_bytes(json.dumps(doc).encode(), "s").entry(member["name"]).size == 3
    bad = [
        dict(doc, format="other"),
        dict(doc, tar="../x.tar"),
        dict(doc, members=[member, member]),
        dict(doc, members=[dict(member, offset=0)]),
        dict(doc, members=[dict(member, size=10**6)]),
        dict(doc, members=[dict(member, name="a/b")]),
    ]
    for broken in bad:
        with pytest.raises(TarShardError, match="shard s: its index"):
            TarIndex.from_bytes(json.dumps(broken).encode(), "s")


# ----------------------------------------------------------------------------- the build


def test_every_member_is_the_folder_builds_file_grouped_by_key(pair):
    """Same bytes per member as the folder layout, six members per key in order, plain
    ustar headers (no PAX), mode 0644, owner 0, mtime 0, and the index says where each is."""
    folder, tar = pair
    names_per_tar = {}
    for path in tars(tar):
        index = read_index(path)
        with tarfile.open(path) as tf:
            members = tf.getmembers()
            assert [m.name for m in members] == [m.name for m in index.members]
            for m, entry in zip(members, index.members, strict=True):
                assert (m.mode, m.uid, m.gid, m.mtime, m.uname, m.gname) == (0o644, 0, 0, 0, "", "")
                assert m.isreg() and m.pax_headers == {} and m.offset_data == entry.offset
                data = tf.extractfile(m).read()
                assert data == read_member(path, entry)
                if m.name.endswith(".json"):
                    continue
                key, _ = m.name.split(".", 1)
                split, index_in_split = key.split("-")
                shard = int(index_in_split) // 2
                assert data == (folder / split / f"{shard:06d}" / m.name).read_bytes()
        names_per_tar[path.name] = [m.name for m in members]
    assert names_per_tar["train-000001.tar"] == [
        f"train-0000000{i}.{part}"
        for i in (2, 3)
        for part in ("mixture.wav", "kick.wav", "snare.wav", "hihat.wav", "pattern.mid", "json")
    ]
    # the folder build has every file the tars hold, and no other
    folder_files = {p.name for p in folder.glob("*/0*/*")}
    tar_files = {n for names in names_per_tar.values() for n in names if not n.endswith(".json")}
    assert folder_files == tar_files and len(tar_files) == 6 * 5


def test_json_members_are_the_manifest_rows_and_rows_name_shard_and_member(pair):
    folder, tar = pair
    schema = json.loads(SCHEMA.read_text())
    for split in SPLITS:
        lines = (tar / "manifests" / f"{split}.jsonl").read_bytes().splitlines(keepends=True)
        rows = read_manifest(tar / "manifests" / f"{split}.jsonl")
        folder_rows = read_manifest(folder / "manifests" / f"{split}.jsonl")
        for line, row, frow in zip(lines, rows, folder_rows, strict=True):
            shard = f"{split}/{split}-{row.index // 2:06d}.tar"
            assert row.mixture == f"{shard}#{row.id}.mixture.wav"
            assert row.midi == f"{shard}#{row.id}.pattern.mid"
            assert validate(row.to_dict(), schema["$defs"]["row"], schema) == []
            entry = read_index(tar / shard).entry(f"{row.id}.json")
            assert read_member(tar / shard, entry) == line
            # everything but the paths is the folder build's row
            same = {"mixture", "oneshots", "midi"}
            assert {k: v for k, v in row.to_dict().items() if k not in same} == {
                k: v for k, v in frow.to_dict().items() if k not in same
            }
    for path in tars(tar):
        doc = json.loads(index_path(path).read_text())
        assert validate(doc, schema["$defs"]["tar_index"], schema) == []
    info = json.loads((tar / "build.json").read_text())
    assert info["layout"] == "tar" and "layout" not in json.loads(
        (folder / "build.json").read_text()
    )
    assert validate(info, schema["$defs"]["build"], schema) == []


def test_tars_and_indexes_hold_no_local_path_and_few_files(pair, tmp_path_factory):
    folder, tar = pair
    local = [str(tar).encode(), str(tar.parent).encode(), str(Path.home()).encode()]
    local += [os.uname().nodename.encode()]
    for path in tars(tar):
        for blob in (path.read_bytes(), index_path(path).read_bytes()):
            assert not any(s in blob for s in local)
        assert json.loads(index_path(path).read_text())["tar"] == path.name
    files = {p.relative_to(tar).as_posix() for p in tar.rglob("*") if p.is_file()}
    shard_files = {f for f in files if f.split("/")[0] in SPLITS}
    assert shard_files == {
        f"{s}/{s}-{k:06d}.tar{ext}"
        for s, n in (("train", 2), ("valid", 1), ("test", 1))
        for k in range(n)
        for ext in ("", ".index.json")
    }
    assert len([p for p in folder.rglob("*") if p.is_file() and p.parent.name.isdigit()]) == 30


def test_tar_bytes_do_not_depend_on_the_workers(pair, kwargs, tmp_path):
    from rmod.cli.build import main

    out = tmp_path / "ds"
    assert main([*cli_args(kwargs, out, "--jobs", "2", "--layout", "tar")]) == 0
    assert tree_bytes(out) == tree_bytes(pair[1])


def test_default_tar_shard_size_makes_at_most_two_tars_per_split_at_1000(small_library):
    from rmod.build.plan import BuildOptions, plan_build

    plan = plan_build(BuildOptions(n=1000, out="unused", library=str(small_library.path),
                                   layout="tar"))  # fmt: skip
    per_split = defaultdict(int)
    for shard in plan.shards:
        assert shard.layout == "tar"
        per_split[shard.split] += 1
    assert plan.info.shard_size == 500 and dict(per_split) == {"train": 2, "valid": 1, "test": 1}
    folder = plan_build(BuildOptions(n=1000, out="unused", library=str(small_library.path)))
    assert folder.info.shard_size == 20 and folder.info.layout == "folder"


def test_a_different_layout_on_an_existing_build_is_refused(pair, kwargs, tmp_path, capsys):
    from rmod.cli.build import main

    out = Path(shutil.copytree(pair[1], tmp_path / "ds"))
    assert main(cli_args(kwargs, out)) == 2
    assert "layout: existing 'tar', requested 'folder'" in capsys.readouterr().err


def test_flac_tar_build_verifies_and_matches_a_flac_folder_build(kwargs, tmp_path):
    from rmod.build.run import BuildOptions, build

    kw = dict(kwargs, n=1, shard_size=1)
    for layout in ("folder", "tar"):
        out = tmp_path / layout
        assert build(BuildOptions(out=out, jobs=1, layout=layout, audio_format="flac", **kw)).ok
        assert verify_dataset(out, progress=False).ok
    row = read_manifest(tmp_path / "tar" / "manifests" / "train.jsonl")[0]
    assert row.oneshots["snare"].endswith("#train-00000000.snare.flac")
    tar = tmp_path / "tar" / "train" / "train-000000.tar"
    entry = read_index(tar).entry("train-00000000.snare.flac")
    flac = tmp_path / "folder" / "train" / "000000" / "train-00000000.snare.flac"
    assert read_member(tar, entry) == flac.read_bytes()


# ----------------------------------------------------------------------------- resume


def test_killed_tar_build_resumes_to_identical_bytes(pair, kwargs, small_library, tmp_path):
    """The valid shard blocks on one library file (test_build's ``sitecustomize`` hook makes
    the audio reader's open of that path wait forever); the build is killed with the train
    and test tars committed and the valid tar half written under its temporary name; a rerun
    gives the uninterrupted tar build's bytes."""
    from rmod.cli.build import main

    proc, out, kw = start_blocked_build(small_library, tmp_path, kwargs, "--layout", "tar")
    parts = out / "manifests" / "parts"
    try:
        wait_until(
            proc,
            lambda: (
                len(list(parts.glob("*.jsonl"))) >= 3 and bool(list(out.glob("valid/.tmp-*.tar")))
            ),
        )
    finally:
        os.killpg(proc.pid, 9)
        proc.communicate(timeout=60)
    assert sorted(p.name for p in out.glob("*/[!.]*.tar")) == [
        "test-000000.tar", "train-000000.tar", "train-000001.tar",
    ]  # fmt: skip
    assert not (out / "valid" / "valid-000000.tar").exists()
    assert main(cli_args(kw, out, "--jobs", "1", "--layout", "tar")) == 0
    mine, ref = tree_bytes(out), tree_bytes(pair[1])
    mine.pop("build.json"), ref.pop("build.json")  # only the library path differs
    assert mine == ref
    assert [p.name for p in out.rglob(".*")] == [".rmod-build.lock"]


@pytest.mark.parametrize("damage", ["truncate", "no index", "no part", "index only"])
def test_resume_redoes_a_damaged_or_uncommitted_tar(pair, kwargs, tmp_path, damage):
    from rmod.build.run import BuildOptions, build

    out = Path(shutil.copytree(pair[1], tmp_path / "ds"))
    tar = out / "train" / "train-000001.tar"
    if damage == "truncate":
        tar.write_bytes(tar.read_bytes()[:-700])
    elif damage == "no index":
        index_path(tar).unlink()
    elif damage == "no part":
        (out / "manifests" / "parts" / "train-000001.jsonl").unlink()
        (out / "manifests" / "train.jsonl").unlink()  # or its lines would restore the part
    else:  # killed between the two renames: the index is in place, the tar is not
        tar.unlink()
    summary = build(BuildOptions(out=out, jobs=1, layout="tar", **kwargs))
    assert summary.ok, summary.error
    assert (summary.rendered, summary.reused) == (2, 4)
    assert any("train/train-000001.tar" in c or "train-000001" in c for c in summary.cleaned)
    assert tree_bytes(out) == tree_bytes(pair[1])


# ----------------------------------------------------------------------------- readers


def test_verify_passes_both_layouts(pair):
    for root in pair:
        report = verify_dataset(root, progress=False, jobs=2)
        assert report.ok, report.problems
        assert (report.rows, report.files) == (6, 30)


MEMBER_KINDS = ("mixture.wav", "kick.wav", "snare.wav", "hihat.wav", "pattern.mid", "json")


@pytest.mark.parametrize("kind", [*MEMBER_KINDS, "header", "padding", "end"])
def test_verify_catches_a_flipped_byte_anywhere_naming_shard_and_key(pair, tmp_path, kind):
    out = Path(shutil.copytree(pair[1], tmp_path / "ds"))
    tar = out / "train" / "train-000001.tar"
    index = read_index(tar)
    name = f"train-00000003.{'mixture.wav' if kind in ('header', 'padding', 'end') else kind}"
    entry = index.entry(name)
    if kind == "header":
        flip(tar, entry.offset - 512 + 5)  # a byte of the member's name
    elif kind == "padding":
        flip(tar, entry.offset + entry.size + 1)
    elif kind == "end":
        flip(tar, index.size - 3)
    else:
        flip(tar, entry.offset + entry.size // 2)
    found = problems(out)
    assert found
    shard = "train/train-000001.tar"
    assert all(p.startswith(shard) for p in found), found
    if kind != "end":
        assert any("train-00000003" in p for p in found), found
    if kind in MEMBER_KINDS:
        assert any(p.startswith(f"{shard}#{name}: train-00000003:") for p in found), found


def test_verify_refuses_a_truncated_tar_and_names_strays(pair, tmp_path):
    out = Path(shutil.copytree(pair[1], tmp_path / "ds"))
    tar = out / "train" / "train-000000.tar"
    tar.write_bytes(tar.read_bytes()[:50000])
    (out / "valid" / ".tmp-valid-000000-abc.tar").write_bytes(b"half")
    (out / "test" / "notes.txt").write_text("mine")
    found = problems(out)
    assert any(
        p.startswith("train/train-000000.tar: the tar is 50000 bytes") and "truncated" in p
        for p in found
    ), found
    assert any(
        p.startswith("valid/.tmp-valid-000000-abc.tar: not part of the dataset") for p in found
    )
    assert any(p.startswith("test/notes.txt: not part of the dataset") for p in found)
    assert not any("train-000001" in p for p in found)


def test_stats_are_the_same_for_both_layouts(pair, tmp_path):
    from rmod.inspect.stats import compute_stats

    stats = [
        compute_stats(root, out_dir=tmp_path / root.name, plots=False, progress=False, high_band=2)
        for root in pair
    ]
    for s in stats:
        s.pop("dataset")
    assert stats[0] == stats[1] and stats[0]["rows"] == {"train": 4, "valid": 1, "test": 1}


@pytest.mark.parametrize("source", ["manifest", "tar"])
def test_render_one_from_a_tar_build_gives_the_members_bytes(pair, tmp_path, source):
    from rmod.cli.render_one import main

    tar_root = pair[1]
    shard = tar_root / "train" / "train-000001.tar"
    given = tar_root / "manifests" / "train.jsonl" if source == "manifest" else shard
    out = tmp_path / "one"
    argv = ["--from", str(given), "--id", "train-00000003", "--out", str(out), "--no-overview"]
    assert main(argv) == 0
    index = read_index(shard)
    for name in ("mixture.wav", "kick.wav", "snare.wav", "hihat.wav", "pattern.mid"):
        assert (out / name).read_bytes() == read_member(
            shard, index.entry(f"train-00000003.{name}")
        )


def test_render_one_refuses_a_changed_row_member_naming_shard_and_key(pair, tmp_path, capsys):
    from rmod.cli.render_one import main

    out = Path(shutil.copytree(pair[1], tmp_path / "ds"))
    shard = out / "train" / "train-000001.tar"
    flip(shard, read_index(shard).entry("train-00000003.json").offset + 10)
    argv = ["--from", str(shard), "--id", "train-00000003", "--out", str(tmp_path / "one")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "key train-00000003" in err and "train-000001.tar" in err and "SHA-256" in err


# ----------------------------------------------------------------------------- other readers


ROLES = ("mixture", "kick", "snare", "hihat")


def extra_package(name: str):
    """Import ``name``, a package of the ``test`` extra; skip without it, but fail when ``CI``
    is set (``.ci/run`` installs the extra, so a missing one is a broken install there)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_unless_ci(f"{name} is not installed ({exc}); pip install -e '.[test]'")


def same_within(got, want, tolerance: float) -> bool:
    """``got == want``, but floats may differ by ``tolerance``."""
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same_within(got[k], want[k], tolerance) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same_within(g, w, tolerance) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, float):
        return isinstance(got, (int, float)) and abs(got - want) <= tolerance
    return type(got) is type(want) and got == want


def group_by_key(path: Path) -> dict[str, dict[str, bytes]]:
    """What a WebDataset reader makes of a tar: key -> {extension: bytes}, the key being the
    member's name up to its first dot (read with the standard library)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tf:
        for m in tf:
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return samples


def test_a_shard_reads_as_webdataset_samples(pair):
    """Each key is one example with its six members; with the ``webdataset`` package when it
    is installed (the read the docs show), else the standard library grouped the same way."""
    folder, tar = pair
    shard = tar / "train" / "train-000001.tar"
    expected = group_by_key(shard)
    assert list(expected) == ["train-00000002", "train-00000003"]
    assert all(
        set(s) == {"mixture.wav", "kick.wav", "snare.wav", "hihat.wav", "pattern.mid", "json"}
        for s in expected.values()
    )
    assert json.loads(expected["train-00000003"]["json"])["id"] == "train-00000003"
    assert (
        expected["train-00000002"]["kick.wav"]
        == (folder / "train" / "000001" / "train-00000002.kick.wav").read_bytes()
    )
    wds = extra_package("webdataset")
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert [s["__key__"] for s in samples] == list(expected)
    for sample in samples:
        assert {k: v for k, v in sample.items() if not k.startswith("__")} == expected[
            sample["__key__"]
        ]


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "arrow"])
def test_a_shard_loads_with_hugging_face_datasets(pair, tmp_path, monkeypatch, streaming):
    """The read docs/dataset.md shows: ``datasets``' ``webdataset`` builder, offline, with the
    audio kept as bytes (its ``Audio`` feature would need torchcodec). Every sample is one
    example: its row, and members byte-equal to the folder build's files."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    datasets = extra_package("datasets")
    folder, tar = pair
    fields = {"__key__": datasets.Value("string"), "__url__": datasets.Value("string")}
    fields["json"] = datasets.Json()
    fields["pattern.mid"] = datasets.Value("binary")
    fields |= {f"{role}.wav": datasets.Value("binary") for role in ROLES}
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": str(tar / "train" / "*.tar")},
        split="train",
        streaming=streaming,
        features=datasets.Features(fields),
        cache_dir=str(tmp_path / "hf-cache"),
    )
    lines = (tar / "manifests" / "train.jsonl").read_bytes().splitlines()
    frows = read_manifest(folder / "manifests" / "train.jsonl")
    samples = list(ds)
    assert [s["__key__"] for s in samples] == [r.id for r in frows]
    for sample, line, frow in zip(samples, lines, frows, strict=True):
        # the tar build's manifest row; datasets' Json type stores floats with 10 decimals
        # (pandas' ujson), so a float is the row's within 1e-10 and everything else exact
        assert same_within(sample["json"], json.loads(line), 1e-10), sample["__key__"]
        files = {role: folder / frow.oneshots.get(role, frow.mixture) for role in ROLES}
        for role, path in files.items():
            assert sample[f"{role}.wav"] == path.read_bytes(), (sample["__key__"], role)
        assert sample["pattern.mid"] == (folder / frow.midi).read_bytes()


def test_verify_reads_no_file_or_member_over_its_limit(pair, monkeypatch):
    """rmod-verify reads a row's file whole to decode and hash it: one over
    MAX_ROW_FILE_BYTES (a folder build) or MAX_MEMBER_BYTES (a tar build) is reported by name
    instead of being read."""
    import rmod.limits
    import rmod_dose_common.tar_shards as shards

    folder, tar = pair
    monkeypatch.setattr(rmod.limits, "MAX_ROW_FILE_BYTES", 1000)
    monkeypatch.setattr(shards, "MAX_MEMBER_BYTES", 1000)
    found = problems(folder)
    assert any(
        "train-00000000.mixture.wav: train-00000000: 88244 bytes" in p
        and "more than MAX_ROW_FILE_BYTES = 1000" in p
        for p in found
    ), found[:3]
    found = problems(tar)
    assert any(
        "train-00000000.mixture.wav is" in p and "over MAX_MEMBER_BYTES = 1,000" in p for p in found
    ), found[:3]
