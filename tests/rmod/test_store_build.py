"""The sample store inside builds: the same bytes with any cap, the peak under the cap, a
store that is the build's own or absent (a link is removed, anything else refused, poison
never read), and ``rmod-verify`` naming a store left in a dataset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rmod.build.manifest import read_manifest
from rmod.example.draw import ExampleParams
from rmod.example.sample_store import SampleStore
from rmod.example.store_folder import MARKER, STORE_DIR, StoreError, create_store
from tests.rmod_fixtures import write_tiny_recipe

SR = 22050
LAST = "train/000003"  # the shard a resume renders again in these tests


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def build_kwargs(small_library, tmp_path_factory):
    recipe = write_tiny_recipe(tmp_path_factory.mktemp("recipe"), sample_rate=SR)
    return dict(
        n=4, recipe=recipe, library=str(small_library.path), seed=11, shard_size=1, progress=False
    )


@pytest.fixture(scope="module")
def reference(build_kwargs, tmp_path_factory):
    """An uncapped ``--jobs 1`` build: the bytes every other build must equal."""
    from rmod.build.run import BuildOptions, build

    out = tmp_path_factory.mktemp("reference") / "ds"
    summary = build(BuildOptions(out=out, jobs=1, store_max=10**12, **build_kwargs))
    assert summary.ok, summary.error
    return out


def interrupted(reference: Path, tmp_path: Path) -> Path:
    """A copy of the reference whose last train shard was lost (a resume renders it)."""
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    (out / "manifests" / "parts" / "train-000003.jsonl").unlink()
    shutil.rmtree(out / LAST)
    return out


def poison(folder: Path, library, reference: Path) -> list[Path]:
    """Files of the right names and sizes, full of 0.25, for every source (and pitched
    loop) of the example of :data:`LAST`, in the store's layout and in the layout of the
    store before it was bounded (``<sha[:2]>/<name>``), so either engine would read them."""
    row = next(r for r in read_manifest(reference / "manifests" / "train.jsonl") if r.index == 3)
    params = ExampleParams.from_dict(row.params)
    names = SampleStore(library, SR)
    wanted = [(i, 0) for ids in params.sources().values() for i in ids]
    wanted += [(p.loop_id, p.semitones) for p in params.instruments.values() if p.plays]
    assert any(s for _, s in wanted), "the example should play a pitched loop"
    written = []
    for entry_id, semitones in wanted:
        shape = names._shape(entry_id)
        name = names._name(entry_id, semitones, shape[0])
        for path in (folder / name, folder / name[:2] / name):
            path.parent.mkdir(parents=True, exist_ok=True)
            np.full(shape, 0.25, np.float32).tofile(path)
            written.append(path)
    return written


def test_a_tiny_cap_gives_the_same_bytes_with_the_peak_under_it(reference, build_kwargs, tmp_path):
    """Two workers share a store that holds about two loops: entries are evicted and made
    again, and every file of the dataset equals the uncapped build's."""
    from rmod.build.run import BuildOptions, build

    cap = 1_000_000
    summary = build(BuildOptions(out=tmp_path / "ds", jobs=2, store_max=cap, **build_kwargs))
    assert summary.ok, summary.error
    assert tree_bytes(tmp_path / "ds") == tree_bytes(reference)
    store = summary.store
    assert store.evicted > 0 and 0 < store.peak_bytes <= cap
    assert store.misses > 0 and store.hit_rate is not None
    assert f"store hit rate {100 * store.hit_rate:.1f} %" in summary.line()
    assert not (tmp_path / "ds" / STORE_DIR).exists()


def test_a_resume_may_use_another_cap_or_none(reference, build_kwargs, tmp_path):
    from rmod.build.run import BuildOptions, build

    out = interrupted(reference, tmp_path)
    summary = build(BuildOptions(out=out, jobs=1, store_max=0, **build_kwargs))
    assert summary.ok, summary.error
    assert summary.rendered == 1 and "no sample store" in summary.line()
    assert tree_bytes(out) == tree_bytes(reference)


def test_a_link_in_place_of_the_store_is_removed_and_nothing_is_read_or_written_there(
    reference, build_kwargs, small_library, tmp_path
):
    from rmod.build.run import BuildOptions, build

    out = interrupted(reference, tmp_path)
    outside = tmp_path / "outside"
    poison(outside, small_library, reference)
    before = tree_bytes(outside)
    (out / STORE_DIR).symlink_to(outside)
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert summary.ok, summary.error
    assert tree_bytes(outside) == before  # nothing written (or removed) outside --out
    assert tree_bytes(out) == tree_bytes(reference)  # the poison never reached the audio
    assert not (out / STORE_DIR).exists()


@pytest.mark.parametrize("ours", [True, False], ids=["our store", "a foreign folder"])
def test_a_store_that_cannot_be_emptied_is_refused_and_never_read(
    reference, build_kwargs, small_library, tmp_path, monkeypatch, ours
):
    """A store left behind that cannot be emptied (read-only: simulated, the tests run as
    root) holds files the build did not write: the build is refused before any work, in
    one line naming the store, and the poison stays where it is."""
    from rmod.build.run import BuildOptions, build

    out = interrupted(reference, tmp_path)
    if ours:
        create_store(out, 10**9, "an-earlier-run")
    written = poison(out / STORE_DIR, small_library, reference)
    rmtree = shutil.rmtree

    def read_only(path, *args, **kwargs):  # as shutil.rmtree on a read-only folder
        if STORE_DIR not in str(path):
            return rmtree(path, *args, **kwargs)
        exc = PermissionError(13, "Permission denied", str(path))
        if kwargs.get("onexc"):
            return kwargs["onexc"](os.rmdir, str(path), exc)
        if kwargs.get("onerror"):
            return kwargs["onerror"](os.rmdir, str(path), (type(exc), exc, None))
        raise exc

    monkeypatch.setattr(shutil, "rmtree", read_only)
    with pytest.raises(StoreError) as info:
        build(BuildOptions(out=out, jobs=1, **build_kwargs))
    message = str(info.value)
    assert str(out / STORE_DIR) in message and "\n" not in message
    assert ("cannot empty" in message) == ours and (MARKER in message) != ours
    assert not (out / LAST).exists()  # nothing rendered
    assert all(np.all(np.fromfile(p, np.float32) == 0.25) for p in written)


def test_cli_refuses_a_file_in_place_of_the_store_and_bad_sizes(
    reference, build_kwargs, tmp_path, capsys
):
    from rmod.cli.build import main

    out = interrupted(reference, tmp_path)
    (out / STORE_DIR).write_text("not a store")
    kw = build_kwargs
    args = ["--n", str(kw["n"]), "--out", str(out), "--recipe", kw["recipe"], "--library",
            kw["library"], "--seed", str(kw["seed"]), "--shard-size", "1", "--jobs", "1",
            "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rmod-build: error: {out / STORE_DIR} is not a sample store rmod-build "
                   "made (a file, not a folder); remove it or choose another --out"]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main([*args, "--store-max", "20"])
    assert stop.value.code == 2 and "needs a unit" in capsys.readouterr().err
    (out / STORE_DIR).unlink()
    assert main([*args, "--store-max", "2MB"]) == 0
    assert "store hit rate" in capsys.readouterr().out
    assert tree_bytes(out) == tree_bytes(reference)


@pytest.mark.parametrize("left", ["link to /etc", "store folder", "file", "other link"])
def test_verify_reports_a_store_or_link_left_in_a_dataset(reference, tmp_path, capsys, left):
    from rmod.cli.verify import main

    ds = Path(shutil.copytree(reference, tmp_path / "ds"))
    where = ds / (STORE_DIR if left != "other link" else "extra")
    if left in ("link to /etc", "other link"):
        where.symlink_to("/etc")
    elif left == "store folder":
        create_store(ds, 10**6, "a-killed-run")
    else:
        where.write_text("x")
    assert main([str(ds), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{where.name}: " in out and "FAILED" in out
    if left == "link to /etc":
        assert "symbolic link to /etc" in out
    where.unlink() if left != "store folder" else shutil.rmtree(where)
    assert main([str(ds), "--no-progress"]) == 0
