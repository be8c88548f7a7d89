"""rmod-build: manifests, shard commit/resume protocol, parallel identity, refusal, failures.

End-to-end builds use the ``small_library`` fixture and the paper recipe (drums and
instrument loops) shortened to 1 s mixtures, with tiny sizes, so each build takes seconds.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmod import SPLITS
from rmod.build.manifest import BuildInfo, ManifestError, ManifestRow, read_manifest, write_manifest
from rmod.build.shards import (
    Shard,
    clean_incomplete,
    commit_shard,
    concatenate_parts,
    is_complete,
    make_temp_dir,
    part_path,
    plan_shards,
    shard_dir,
)
from tests.rmod_fixtures import write_tiny_recipe

SCHEMA = Path(__file__).resolve().parents[2] / "manifests" / "rmod-manifest.schema.json"


# ----------------------------------------------------------------------------- helpers


def fake_row(split: str, index: int, rel_dir: str = "x") -> ManifestRow:
    """A syntactically complete row (no audio behind it) for format tests."""
    roles = ("mixture", "kick", "snare", "hihat")
    return ManifestRow(
        id=f"{split}-{index:08d}",
        split=split,
        index=index,
        seed=3,
        mixture=f"{rel_dir}/{split}-{index:08d}.mixture.wav",
        oneshots={c: f"{rel_dir}/{split}-{index:08d}.{c}.wav" for c in roles[1:]},
        sample_rate=44100,
        channels=2,
        duration=4.0,
        frames={r: 100 + i for i, r in enumerate(roles)},
        checksums={r: f"{i:064x}" for i, r in enumerate(roles)},
        sources={"kick": ["kick-aa", "kick-bb"], "bass": []},
        params={"nested": {"a": [1, 2.5, None]}, "ü": "unicode"},
        loudness={"mixture_peak_db": -1.0, "kick_rms_db": None},
    )


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def validate(instance, schema, root=None, where="$"):
    """A small JSON-Schema checker for the keywords our schema uses; returns errors."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return validate(instance, root["$defs"][name], root, where)
    errors = []
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        py = {
            "object": dict,
            "array": list,
            "string": str,
            "integer": int,
            "number": (int, float),
            "null": type(None),
        }
        if not any(isinstance(instance, py[t]) for t in types) or (
            isinstance(instance, bool) and "boolean" not in types
        ):
            return [f"{where}: {instance!r} is not {types}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{where}: {instance!r} not in {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{where}: {instance!r} != {schema['const']!r}")
    if "pattern" in schema and not re.search(schema["pattern"], instance):
        errors.append(f"{where}: {instance!r} does not match {schema['pattern']}")
    if "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{where}: {instance} < {schema['minimum']}")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{where}: missing {key}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                errors += validate(value, props[key], root, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected key {key}")
            elif isinstance(extra, dict):
                errors += validate(value, extra, root, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            errors += validate(value, schema["items"], root, f"{where}[{i}]")
    return errors


# ----------------------------------------------------------------------------- manifest format


def test_row_round_trip_plain_and_gzip(tmp_path):
    rows = [fake_row("train", i) for i in range(3)]
    for name in ("m.jsonl", "m.jsonl.gz"):
        write_manifest(tmp_path / name, rows)
        assert read_manifest(tmp_path / name) == rows
    assert (
        gzip.decompress((tmp_path / "m.jsonl.gz").read_bytes())
        == (tmp_path / "m.jsonl").read_bytes()
    )
    # gzip bytes do not depend on the time of writing
    first = (tmp_path / "m.jsonl.gz").read_bytes()
    time.sleep(1.1)
    write_manifest(tmp_path / "m.jsonl.gz", rows)
    assert (tmp_path / "m.jsonl.gz").read_bytes() == first


def test_damaged_manifest_bytes_are_named_by_file_and_line(tmp_path):
    rows = [fake_row("train", i) for i in range(3)]
    write_manifest(tmp_path / "m.jsonl", rows)
    text = (tmp_path / "m.jsonl").read_bytes()
    (tmp_path / "bin.jsonl").write_bytes(text + b"\xff\xfe\n")
    with pytest.raises(ManifestError, match=r"bin.jsonl:4: not UTF-8"):
        read_manifest(tmp_path / "bin.jsonl")
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(text)[:-30])
    with pytest.raises(ManifestError, match=r"cut.jsonl.gz:\d+: cannot read"):
        read_manifest(tmp_path / "cut.jsonl.gz")


def test_row_rejects_missing_keys_and_nan(tmp_path):
    data = fake_row("train", 0).to_dict()
    del data["checksums"]
    with pytest.raises(ValueError, match="checksums"):
        ManifestRow.from_dict(data)
    bad = fake_row("train", 0)
    object.__setattr__(bad, "duration", float("nan"))
    with pytest.raises(ValueError):
        bad.to_json()


#: The fields of a small build.json record.
BUILD_INFO = dict(
    recipe={"mix": {"gain": 1}},
    recipe_fingerprint="aaa",
    library_path=None,
    library_fingerprint="bbb",
    seed=0,
    counts={"train": 4, "valid": 1, "test": 1},
    shard_size=2,
    audio_format="wav",
    sample_rate=44100,
    channels=2,
    rmod_version="0.1.0",
    engine_fingerprint="e" * 64,
)


def test_schema_accepts_rows_and_build_info():
    schema = json.loads(SCHEMA.read_text())
    row = fake_row("valid", 7).to_dict()
    assert validate(row, schema["$defs"]["row"], schema) == []
    broken = dict(row, checksums={"mixture": "not-a-sha"}, extra=1)
    errors = validate(broken, schema["$defs"]["row"], schema)
    assert any("unexpected key extra" in e for e in errors)
    assert any("does not match" in e for e in errors)
    escaping = dict(row, mixture="../outside.wav")
    assert validate(escaping, schema["$defs"]["row"], schema)
    info = BuildInfo(**BUILD_INFO)
    assert validate(info.to_dict(), schema["$defs"]["build"], schema) == []
    assert validate(dict(info.to_dict(), seed=-1), schema["$defs"]["build"], schema)


def test_build_info_differences_name_the_field():
    base = dict(BUILD_INFO, library_path="/lib")
    a = BuildInfo(**base)
    assert a.differences(BuildInfo(**dict(base, rmod_version="9.9", library_path="/x"))) == []
    b = BuildInfo(**dict(base, seed=5, recipe={"mix": {"gain": 2}}, recipe_fingerprint="ccc"))
    diffs = b.differences(a)
    assert any("seed" in d and "0" in d and "5" in d for d in diffs)
    assert any("recipe" in d and "mix.gain" in d for d in diffs)
    c = BuildInfo(**dict(base, engine_fingerprint="f" * 64))
    assert c.differences(a) == [
        "the rmod rendering code or an audio package version changed since this build "
        "started (engine eeeeeeeeeeee -> ffffffffffff); finish it with the original version"
    ]


# ----------------------------------------------------------------------------- shards


def test_plan_shards_covers_every_index_once():
    counts = {"train": 10, "valid": 3, "test": 1}
    shards = plan_shards(counts, 4)
    assert [s.name for s in shards][:3] == ["train-000000", "train-000001", "train-000002"]
    for split in SPLITS:
        got = [i for s in shards if s.split == split for i in s.indices()]
        assert got == list(range(counts[split]))
    assert max(s.size for s in shards) == 4
    with pytest.raises(ValueError):
        plan_shards(counts, 0)


def _commit(root: Path, shard: Shard) -> list[ManifestRow]:
    """Commit a shard of fake rows, each file the rows name holding a few bytes."""
    tmp = make_temp_dir(root, shard)
    (tmp / "a.bin").write_bytes(shard.name.encode())
    rel_dir = f"{shard.split}/{shard.number:06d}"
    rows = [fake_row(shard.split, i, rel_dir) for i in shard.indices()]
    for row in rows:
        for rel in row.files().values():
            (tmp / Path(rel).name).write_bytes(rel.encode())
    commit_shard(root, shard, tmp, rows)
    return rows


def test_commit_clean_and_concatenate(tmp_path):
    shards = plan_shards({"train": 5, "valid": 1, "test": 1}, 2)
    for shard in shards[:2]:
        _commit(tmp_path, shard)
    # debris of an interrupted run: a temp folder, a folder without part, a part
    # without folder, a half-written temporary file
    stale = make_temp_dir(tmp_path, shards[2])
    (stale / "half.wav").write_bytes(b"xx")
    shard_dir(tmp_path, shards[3]).mkdir(parents=True)
    write_manifest(part_path(tmp_path, shards[4]), [fake_row("valid", 0)])
    (part_path(tmp_path, shards[0]).parent / ".train.jsonl.abc.tmp").write_bytes(b"{")
    assert [is_complete(tmp_path, s) for s in shards] == [True, True, False, False, False]
    removed = clean_incomplete(tmp_path, shards)
    assert len(removed) == 4
    assert not stale.exists() and not shard_dir(tmp_path, shards[3]).exists()
    assert not part_path(tmp_path, shards[4]).exists()
    assert is_complete(tmp_path, shards[0]) and is_complete(tmp_path, shards[1])
    for shard in shards[2:]:
        _commit(tmp_path, shard)
    # parts are concatenated in shard order whatever order they were committed in
    written = concatenate_parts(tmp_path, shards)
    rows = read_manifest(written["train"])
    assert [r.index for r in rows] == [0, 1, 2, 3, 4]
    assert [r.split for r in read_manifest(written["test"])] == ["test"]
    assert (shard_dir(tmp_path, shards[1]) / "a.bin").read_bytes() == b"train-000001"


# ----------------------------------------------------------------------------- end to end


SR = 22050
N_TRAIN = 4  # -> 4 train + 1 valid + 1 test, one example per shard


@pytest.fixture(scope="module")
def build_kwargs(small_library, tmp_path_factory):
    recipe = write_tiny_recipe(tmp_path_factory.mktemp("recipe"), sample_rate=SR)
    return dict(
        n=N_TRAIN,
        recipe=recipe,
        library=str(small_library.path),
        seed=11,
        shard_size=1,
        progress=False,
    )


def cli_args(kw: dict, out: Path, *extra: str) -> list[str]:
    return [
        "--n", str(kw["n"]), "--out", str(out), "--recipe", kw["recipe"],
        "--library", kw["library"], "--seed", str(kw["seed"]),
        "--shard-size", str(kw["shard_size"]), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(build_kwargs, tmp_path_factory):
    """An uninterrupted ``--jobs 1`` build: the bytes every other build must equal."""
    from rmod.build.run import BuildOptions, build

    out = tmp_path_factory.mktemp("reference") / "ds"
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert summary.ok, summary.error
    return out, summary


def test_reference_build_layout_rows_and_disjoint_splits(reference, small_library):
    from rmod.build.manifest import read_build_info
    from rmod.inspect.verify import verify_dataset

    out, summary = reference
    assert summary.counts == {"train": 4, "valid": 1, "test": 1}
    assert (summary.rendered, summary.reused, summary.shards_rendered) == (6, 0, 6)
    assert summary.peak_rss_bytes > 10 * 2**20
    assert re.search(
        r"6 rendered \+ 0 reused of 6 examples .* examples/s, 1 worker\(s\), peak worker RSS \d+ MiB",
        summary.line(),
    )
    info = read_build_info(out)
    assert info.counts == summary.counts and info.seed == 11 and info.shard_size == 1
    assert info.library_fingerprint == small_library.fingerprint
    schema = json.loads(SCHEMA.read_text())
    assert (
        validate(json.loads((out / "build.json").read_text()), schema["$defs"]["build"], schema)
        == []
    )
    seen = set()
    for split in SPLITS:
        rows = read_manifest(out / "manifests" / f"{split}.jsonl")
        assert [r.index for r in rows] == list(range(summary.counts[split]))
        for row in rows:
            assert validate(row.to_dict(), schema["$defs"]["row"], schema) == []
            assert row.id not in seen
            seen.add(row.id)
            assert row.mixture.startswith(f"{split}/{row.index:06d}/")
            assert row.frames["mixture"] == SR and row.frames["kick"] == SR // 2
            # every source comes from the row's own split of the library
            assert row.source_ids()
            assert {small_library.entry(s).split for s in row.source_ids()} == {split}
    assert [p.name for p in out.rglob(".*")] == [".rmod-build.lock"]
    assert verify_dataset(out, progress=False).ok


def test_dataset_files_get_the_umask_mode_not_private(reference):
    """Every file of a build is readable by the cluster's other users as the umask allows
    (a bare mkstemp + rename leaves 0600 files behind)."""
    import stat

    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    root = reference[0]
    files = [p for p in root.rglob("*") if p.is_file() and p.name != ".rmod-build.lock"]
    assert any(p.name == "train.jsonl" for p in files) and len(files) > 10
    modes = {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert {k: oct(v) for k, v in modes.items() if v != expected} == {}


def test_row_params_re_render_to_the_same_bytes(reference, build_kwargs, small_library):
    from rmod.audio import encode_audio
    from rmod.example.draw import ExampleParams
    from rmod.example.render import render_example
    from rmod.recipe.spec import load_recipe

    out, _ = reference
    row = read_manifest(out / "manifests" / "valid.jsonl")[0]
    recipe = load_recipe(build_kwargs["recipe"])
    rendered = render_example(ExampleParams.from_dict(row.params), recipe, small_library)
    data = encode_audio(rendered.mixture, row.sample_rate, "wav")
    assert data == (out / row.mixture).read_bytes()


def test_jobs2_loky_is_byte_identical(reference, build_kwargs, tmp_path):
    from rmod.build.run import BuildOptions, build

    summary = build(BuildOptions(out=tmp_path / "ds", jobs=2, backend="loky", **build_kwargs))
    assert summary.ok, summary.error
    assert summary.workers == 2
    assert tree_bytes(tmp_path / "ds") == tree_bytes(reference[0])


def test_the_sample_store_is_emptied_at_start_and_removed_at_the_end(
    reference, build_kwargs, tmp_path, monkeypatch
):
    """A store left by an interrupted run is not trusted (made anew before work), the workers
    keep pitched loops in the build's own store, and it is gone once the build is complete;
    the bytes are the reference's."""
    from rmod.build.run import BuildOptions, build
    from rmod.example.sample_store import SampleStore
    from rmod.example.store_folder import STORE_DIR, create_store

    out = tmp_path / "ds"
    shutil.copytree(reference[0], out)  # a finished build, then its last train shard lost
    (out / "manifests" / "parts" / "train-000003.jsonl").unlink()
    shutil.rmtree(out / "train" / "000003")
    create_store(out, 10**9, "an-earlier-run")
    stale = out / STORE_DIR / "stale.f32"
    stale.write_bytes(b"junk")
    kept = []
    keep = SampleStore._keep
    monkeypatch.setattr(
        SampleStore, "_keep", lambda self, n, a: kept.append((self.folder, n)) or keep(self, n, a)
    )
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert summary.ok, summary.error
    assert tree_bytes(out) == tree_bytes(reference[0])
    assert any("-p" in n and folder == out / STORE_DIR for folder, n in kept)
    assert summary.store.misses > 0 and summary.store.peak_bytes > 0
    assert not (out / STORE_DIR).exists() and not stale.exists()


def test_dask_local_cluster_is_byte_identical(reference, build_kwargs, tmp_path):
    from rmod.build.run import BuildOptions, build

    summary = build(BuildOptions(out=tmp_path / "ds", jobs=2, backend="dask", **build_kwargs))
    assert summary.ok, summary.error
    assert summary.workers == 2
    assert tree_bytes(tmp_path / "ds") == tree_bytes(reference[0])


def test_dask_scheduler_address_is_byte_identical(reference, build_kwargs, tmp_path):
    from distributed import LocalCluster

    from rmod.build.run import BuildOptions, build

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster:
        kw = dict(build_kwargs, shard_size=2)  # other shard size, other folder layout
        summary = build(
            BuildOptions(
                out=tmp_path / "ds", backend="dask", scheduler=cluster.scheduler_address, **kw
            )
        )
    assert summary.ok, summary.error
    assert summary.workers == 2
    ref = reference[0]
    for split in SPLITS:
        mine = read_manifest(tmp_path / "ds" / "manifests" / f"{split}.jsonl")
        theirs = read_manifest(ref / "manifests" / f"{split}.jsonl")
        assert [r.checksums for r in mine] == [r.checksums for r in theirs]
        assert [r.params for r in mine] == [r.params for r in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert (tmp_path / "ds" / a.mixture).read_bytes() == (ref / b.mixture).read_bytes()


def test_rerun_of_a_finished_build_renders_nothing_and_changes_nothing(reference, build_kwargs):
    from rmod.build.run import BuildOptions, build

    out = reference[0]
    before = tree_bytes(out)
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert summary.ok and summary.rendered == 0 and summary.reused == 6
    assert tree_bytes(out) == before


def test_mismatched_rerun_is_refused_naming_the_difference(reference, build_kwargs, capsys):
    from rmod.build.run import BuildOptions, BuildRefused, build
    from rmod.cli.build import main

    out = reference[0]
    before = tree_bytes(out)
    for change, word in [
        ({"seed": 12}, "seed"),
        ({"n": 5}, "counts"),
        ({"shard_size": 2}, "shard_size"),
        ({"audio_format": "flac"}, "audio_format"),
        ({"recipe": "rmod-drums-only"}, "recipe differs"),
    ]:
        with pytest.raises(BuildRefused, match=word):
            build(BuildOptions(out=out, jobs=1, **dict(build_kwargs, **change)))
    assert main(cli_args(dict(build_kwargs, seed=99), out)) == 2
    err = capsys.readouterr().err
    assert "refusing to mix them" in err and "seed: existing 11, requested 99" in err
    assert tree_bytes(out) == before
    # a build started by other rendering code is refused
    other = out.parent / "other-engine"
    other.mkdir()
    info = json.loads((out / "build.json").read_text())
    (other / "build.json").write_text(json.dumps(dict(info, engine_fingerprint="0" * 64)))
    with pytest.raises(BuildRefused, match="rendering code"):
        build(BuildOptions(out=other, jobs=1, **build_kwargs))
    # a worker running other code refuses its shard
    from rmod.build.plan import load_inputs
    from rmod.build.shards import plan_shards as plan
    from rmod.build.task import ShardError, ShardTask
    from rmod.build.worker import render_shard

    recipe, library, library_path = load_inputs(BuildOptions(out=other, **build_kwargs))
    task = ShardTask(str(other), plan({"train": 1}, 1)[0], recipe, library_path,
                     library.fingerprint, 11, "wav", "0" * 64)  # fmt: skip
    with pytest.raises(ShardError, match="other rmod code"):
        render_shard(task)
    # a second build while one runs on the folder is refused
    from rmod.build.run import build_lock

    with build_lock(out):
        with pytest.raises(BuildRefused, match="another rmod-build is running"):
            build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert tree_bytes(out) == before
    # a non-empty folder that is not a dataset is refused too
    (out.parent / "other").mkdir()
    (out.parent / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BuildRefused, match="not empty"):
        build(BuildOptions(out=out.parent / "other", jobs=1, **build_kwargs))


def copy_library(small_library, folder: Path) -> Path:
    """A private copy of the small library (header root pointed at the copied files, same
    fingerprint); returns the manifest path."""
    import shutil

    shutil.copytree(small_library.root, folder / "src")
    header, *entries = small_library.path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.dumps(dict(json.loads(header), root=str(folder / "src"))) + "\n"
    lib_path = folder / "copy.rmodlib.jsonl"
    lib_path.write_text(header + "".join(entries), encoding="utf-8")
    return lib_path


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if (
                d.name.isdigit()
                and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            ):
                out.append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


#: A ``sitecustomize`` for a build's processes: the audio reader's open of the file named by
#: ``RMOD_TEST_BLOCKED_PATH`` waits forever (as a FIFO that nobody writes once did).
BLOCKING_OPEN = """
import os
import time

import rmod_dose_common.audio as _audio

_real_open = _audio.open_regular


def _open_or_wait(path, *args, **kwargs):
    if os.fspath(path) == os.environ.get("RMOD_TEST_BLOCKED_PATH"):
        while True:
            time.sleep(60)
    return _real_open(path, *args, **kwargs)


_audio.open_regular = _open_or_wait
"""


def start_blocked_build(
    small_library, tmp_path: Path, kw: dict, *extra: str
) -> tuple[subprocess.Popen, Path, dict]:
    """Start ``rmod-build --jobs 2 EXTRA`` (``kw``, output ``tmp_path/ds``) in a session of its
    own, on a copy of the small library whose first valid-split kick blocks forever when the
    audio reader opens it (:data:`BLOCKING_OPEN`): the valid shard never finishes, every other
    one does. Returns the process (stdout and stderr piped), the output folder and ``kw`` with
    the copy's library (the one a resume must use)."""
    from rmod.library.catalog import Library

    lib_path = copy_library(small_library, tmp_path / "lib")
    copy = Library.load(lib_path)
    blocked = Path(copy.entry(copy.ids("kick", "valid")[0]).path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKING_OPEN, encoding="utf-8")
    env = dict(os.environ, RMOD_TEST_BLOCKED_PATH=str(blocked))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    kw = dict(kw, library=str(lib_path))
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "rmod.cli.build", *cli_args(kw, out, "--jobs", "2", *extra)]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    return proc, out, kw


def wait_until(proc: subprocess.Popen, done, seconds: float = 120) -> None:
    """Poll ``done()`` until it holds; fail with the process's stderr if it exits first, or
    after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not done():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "build made no progress"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["SIGKILL to the process group", "SIGTERM to the parent"])
def test_kill_during_build_then_resume_gives_identical_dataset(
    how, reference, build_kwargs, small_library, tmp_path
):
    """The build is stopped at a known point whatever the machine's speed: opening a
    valid-split kick of a library copy blocks forever (a ``sitecustomize`` on the build's
    ``PYTHONPATH`` makes the audio reader's open wait on that one path: a FIFO, which did
    this before, is now refused as not a regular file), so the valid shard blocks while the
    train and test shards finish; the kill lands with exactly 5 of 6 shards committed and the
    valid shard half-built."""
    from rmod.cli.build import main

    proc, out, kw = start_blocked_build(small_library, tmp_path, build_kwargs)
    parts = out / "manifests" / "parts"
    try:
        wait_until(
            proc,
            lambda: len(list(parts.glob("*.jsonl"))) >= 5 and bool(list(out.glob("valid/.tmp-*"))),
        )
    finally:
        if how.startswith("SIGKILL"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    if how.startswith("SIGTERM"):  # a clean stop: summary, reason, non-zero exit
        assert proc.returncode == 1, stderr.decode()
        assert "interrupted; rerun the same command to resume" in stderr.decode()
        assert "rmod-build FAILED" in stdout.decode()
    assert sorted(p.name for p in parts.glob("*.jsonl")) == sorted(
        [*(f"train-{i:06d}.jsonl" for i in range(4)), "test-000000.jsonl"]
    )
    assert not (out / "manifests" / "train.jsonl").exists()
    assert main(cli_args(kw, out, "--jobs", "1")) == 0  # in this process: nothing blocks
    mine, ref = tree_bytes(out), tree_bytes(reference[0])
    mine.pop("build.json"), ref.pop("build.json")  # only the library path differs
    assert mine == ref
    assert [p.name for p in out.rglob(".*")] == [".rmod-build.lock"]


def test_sigkill_of_the_build_leaves_no_worker_committing(build_kwargs, tmp_path):
    """SIGKILL of the rmod-build process alone (not its group): its loky workers die with it
    and commit nothing more. A commit already past its last lease check when the parent died
    may still land (at most one per worker); without the lease the workers would go on and
    commit every remaining shard."""
    out = tmp_path / "ds"
    kw = dict(build_kwargs, n=8, shard_size=2)  # 4 + 1 + 1 shards of up to 2 examples
    cmd = [sys.executable, "-m", "rmod.cli.build", *cli_args(kw, out, "--jobs", "2")]
    with (tmp_path / "log.txt").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    parts = out / "manifests" / "parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("*.jsonl")):
        assert proc.poll() is None, (tmp_path / "log.txt").read_text()
        assert time.monotonic() < deadline, "build made no progress"
        time.sleep(0.01)
    workers = child_pids(proc.pid)
    assert workers
    os.kill(proc.pid, signal.SIGKILL)
    at_kill = {p.name for p in parts.glob("*.jsonl")}
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while [w for w in workers if Path(f"/proc/{w}").exists()]:
        assert time.monotonic() < deadline, "workers outlived the killed build"
        time.sleep(0.05)
    after = {p.name for p in parts.glob("*.jsonl")}
    assert at_kill <= after and len(after - at_kill) <= 2, (at_kill, after)
    assert len(after) < 6


def test_bad_library_file_stops_cleanly_then_resume_finishes(
    reference, build_kwargs, small_library, tmp_path, capsys
):

    from rmod.cli.build import main
    from rmod.library.catalog import Library

    lib_dir = tmp_path / "lib"
    lib_path = copy_library(small_library, lib_dir)
    copy = Library.load(lib_path)
    assert str(lib_dir) in copy.entry(copy.ids("kick", "valid")[0]).path
    assert copy.fingerprint == small_library.fingerprint
    # a valid-split kick goes bad: every train shard is done before valid is reached
    bad = Path(copy.entry(copy.ids("kick", "valid")[0]).path)
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"RIFF this is no longer audio")
    kw = dict(build_kwargs, library=str(lib_path))
    out = tmp_path / "ds"
    assert main(cli_args(kw, out, "--jobs", "1")) == 1
    captured = capsys.readouterr()
    assert "valid-00000000" in captured.err and str(bad) in captured.err
    assert "FAILED" in captured.out
    parts = sorted(p.name for p in (out / "manifests" / "parts").glob("*.jsonl"))
    assert parts == [f"train-{i:06d}.jsonl" for i in range(4)]
    assert not (out / "valid" / "000000").exists()
    bad.write_bytes(good_bytes)
    assert main(cli_args(kw, out, "--jobs", "1")) == 0
    assert "2 rendered + 4 reused of 6 examples" in capsys.readouterr().out
    mine, ref = tree_bytes(out), tree_bytes(reference[0])
    mine.pop("build.json"), ref.pop("build.json")  # only the library path differs
    assert mine == ref


@pytest.mark.parametrize(
    "module, options",
    [
        ("rmod.cli.build", ["--n", "--out", "--recipe", "--library", "--seed", "--jobs",
                            "--backend", "--scheduler", "--shard-size", "--format"]),
        ("rmod.cli.verify", ["--max-problems", "--no-progress"]),
        ("rmod.cli.stats", ["--out", "--splits", "--no-plots", "--no-progress"]),
    ],
)  # fmt: skip
def test_cli_help_explains_every_option_and_default(module, options, capsys):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in options:
        assert option in text
    assert text.count("default") + text.count("if not given") >= len(options) - 2


def test_split_sizes_and_default_shard_size_follow_the_paper_recipe():
    from rmod.build.run import default_shard_size, split_counts
    from rmod.recipe.spec import load_recipe

    recipe = load_recipe("rmod-paper")
    assert split_counts(recipe, 1_000_000) == {"train": 1_000_000, "valid": 10_000, "test": 10_000}
    assert split_counts(recipe, 100) == {"train": 100, "valid": 1, "test": 1}
    assert split_counts(recipe, 3) == {"train": 3, "valid": 1, "test": 1}
    with pytest.raises(ValueError, match="--n"):
        split_counts(recipe, 0)
    assert [default_shard_size(n) for n in (1, 100, 1000, 5000, 1_000_000)] == [1, 2, 20, 100, 100]


def test_task_sent_to_workers_is_small(build_kwargs, tmp_path):
    """The task holds the library's path and fingerprint, never entries or audio."""
    import pickle

    from rmod.build.fingerprint import engine_fingerprint
    from rmod.build.plan import load_inputs
    from rmod.build.run import BuildOptions
    from rmod.build.task import ShardTask

    recipe, library, library_path = load_inputs(BuildOptions(out=tmp_path, **build_kwargs))
    shard = plan_shards({"train": 1000}, 100)[0]
    task = ShardTask(str(tmp_path), shard, recipe, library_path, library.fingerprint, 0, "wav",
                     engine_fingerprint())  # fmt: skip
    size = len(pickle.dumps(task))
    assert size < 20_000, size
    assert library.entry(library.ids("kick", "train")[0]).id.encode() not in pickle.dumps(task)


def test_cli_reports_bad_inputs_without_traceback(tmp_path, capsys):
    from rmod.cli.build import main

    out = tmp_path / "ds"
    missing = tmp_path / "missing.rmodlib.jsonl"
    assert main(["--n", "2", "--out", str(out), "--library", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["--n", "2", "--out", str(out), "--recipe", "no-such-recipe"]) == 2
    assert "no-such-recipe" in capsys.readouterr().err
    assert main(["--n", "0", "--out", str(out)]) == 2
    assert "--n must be at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_a_scheduler_without_dask_or_an_unknown_backend_is_refused_before_writing(
    build_kwargs, tmp_path, capsys
):
    from rmod.build.run import BuildOptions, build
    from rmod.cli.build import main

    out = tmp_path / "ds"
    argv = cli_args(build_kwargs, out, "--backend", "loky", "--scheduler", "tcp://nowhere:1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "rmod-build: error: --scheduler needs --backend dask, not --backend loky\n"
    with pytest.raises(ValueError, match="unknown --backend 'ray'"):
        build(BuildOptions(out=out, backend="ray", **build_kwargs))
    assert not out.exists()


# ----------------------------------------------------------------------------- resume safety


def test_rerun_after_parts_were_deleted_keeps_every_finished_shard(
    reference, build_kwargs, tmp_path
):
    """Deleting manifests/parts/ of a finished build: the rerun rebuilds the parts from the
    final manifests (same bytes) and renders nothing; nothing is removed."""
    import shutil

    from rmod.build.run import BuildOptions, build

    out = Path(shutil.copytree(reference[0], tmp_path / "ds"))
    shutil.rmtree(out / "manifests" / "parts")
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert summary.ok, summary.error
    assert (summary.rendered, summary.reused) == (0, 6)
    assert len(summary.restored) == 6 and summary.cleaned == []
    assert tree_bytes(out) == tree_bytes(reference[0])
    # one part deleted and its split's final manifest too: nothing vouches for that folder;
    # with the parts folder there, it is debris of an interrupted commit and is redone
    (out / "manifests" / "parts" / "valid-000000.jsonl").unlink()
    (out / "manifests" / "valid.jsonl").unlink()
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert (summary.rendered, summary.reused, summary.cleaned) == (1, 5, ["valid/000000"])
    assert tree_bytes(out) == tree_bytes(reference[0])


def test_deleted_parts_of_an_unfinished_build_are_refused_not_redone(
    reference, build_kwargs, tmp_path, capsys
):
    """The parts folder deleted while no final manifest lists the shards (a build stopped
    before its end): the rerun refuses, naming what to do, and deletes nothing."""
    import shutil

    from rmod.cli.build import main

    out = Path(shutil.copytree(reference[0], tmp_path / "ds"))
    shutil.rmtree(out / "manifests")
    before = tree_bytes(out)
    assert main(cli_args(build_kwargs, out, "--jobs", "1")) == 2
    err = capsys.readouterr().err
    assert "manifests/parts is missing and 6 shard folder(s)" in err
    assert "Restore manifests/parts/, or delete those folders" in err
    assert tree_bytes(out) == before


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_resume_redoes_a_committed_shard_with_a_missing_or_truncated_file(
    reference, build_kwargs, tmp_path, damage
):
    import shutil

    from rmod.build.run import BuildOptions, build

    out = Path(shutil.copytree(reference[0], tmp_path / "ds"))
    row = read_manifest(out / "manifests" / "train.jsonl")[2]
    victim = out / (row.oneshots["kick"] if damage == "truncate" else row.midi)
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-100])
    else:
        victim.unlink()
    summary = build(BuildOptions(out=out, jobs=1, **build_kwargs))
    assert summary.ok, summary.error
    assert (summary.rendered, summary.reused) == (1, 5)
    (cleaned,) = summary.cleaned
    assert cleaned.startswith("train/000002 (") and victim.name in cleaned
    assert ("bytes, its manifest part says" if damage == "truncate" else "missing") in cleaned
    assert tree_bytes(out) == tree_bytes(reference[0])


def test_library_without_a_class_in_a_split_is_refused_before_any_work(
    build_kwargs, small_library, tmp_path, capsys
):
    from rmod.cli.build import main

    lines = copy_library(small_library, tmp_path).read_text(encoding="utf-8").splitlines(True)
    kept = [ln for ln in lines[1:] if not ('"cls": "snare"' in ln and '"split": "test"' in ln)]
    lib = tmp_path / "no-test-snare.rmodlib.jsonl"
    lib.write_text(lines[0] + "".join(kept), encoding="utf-8")
    out = tmp_path / "ds"
    assert main(cli_args(dict(build_kwargs, library=str(lib)), out)) == 2
    err = capsys.readouterr().err
    assert "no one-shots of snare in test" in err and str(lib) in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_sizes_past_the_format_limits_are_refused_before_planning(build_kwargs, tmp_path, capsys):
    import yaml

    from rmod.build.run import BuildOptions, build
    from rmod.cli.build import main

    out = tmp_path / "ds"
    assert main(cli_args(dict(build_kwargs, n=10**12), out)) == 2
    err = capsys.readouterr().err
    assert "at most 100000000 examples per split" in err and len(err.strip().splitlines()) == 1
    data = yaml.safe_load(Path(build_kwargs["recipe"]).read_text())
    data["splits"]["min_per_split"] = 10**9
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="valid would hold 1000000000 examples.*splits"):
        build(BuildOptions(out=out, **dict(build_kwargs, recipe=str(big))))
    with pytest.raises(ValueError, match="at most 1000000 per split.*--shard-size"):
        build(BuildOptions(out=out, **dict(build_kwargs, n=2 * 10**6, shard_size=1)))
    assert not out.exists()


def test_a_worker_commits_only_under_the_lease_of_the_build_that_sent_it(build_kwargs, tmp_path):
    """The lease: the lock held with the task's token lets a shard commit; a released lock
    (the build died) or another build's token (a new build took over) stops it first."""
    import dataclasses

    from rmod.build.fingerprint import engine_fingerprint
    from rmod.build.plan import load_inputs
    from rmod.build.run import BuildOptions, build_lock
    from rmod.build.task import ShardError, ShardTask
    from rmod.build.upkeep import check_lease
    from rmod.build.worker import render_shard

    out = tmp_path / "ds"
    out.mkdir()
    recipe, library, library_path = load_inputs(BuildOptions(out=out, **build_kwargs))
    task = ShardTask(str(out), plan_shards({"train": 1}, 1)[0], recipe, library_path,
                     library.fingerprint, 11, "wav", engine_fingerprint())  # fmt: skip
    with build_lock(out) as lease:
        mine = dataclasses.replace(task, lease=lease)
        check_lease(mine)  # held, with this token
        with pytest.raises(ShardError, match="is gone"):
            check_lease(dataclasses.replace(task, lease=lease + "-other-build"))
    assert (out / ".rmod-build.lock").read_bytes() == b""  # emptied when the build ends
    with pytest.raises(ShardError, match="is gone.*nothing was committed"):
        render_shard(mine)  # the lock was released: the build is gone
    assert not list(out.glob("train/*")) and not (out / "manifests").exists()
