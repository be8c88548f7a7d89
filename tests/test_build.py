"""rmod-build: manifests, shard commit/resume protocol, parallel identity, refusal, failures.

End-to-end builds use the ``small_library`` fixture and the ``drums-only`` variant of
the recipe with tiny sizes, so each build takes seconds.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmod import SPLITS
from rmod.manifest import BuildInfo, ManifestRow, read_manifest, write_manifest
from rmod.shards import (
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

SCHEMA = Path(__file__).resolve().parents[1] / "manifests" / "rmod-manifest.schema.json"


# ----------------------------------------------------------------------------- helpers


def fake_row(split: str, index: int, rel_dir: str = "x") -> ManifestRow:
    """A syntactically complete row (no audio behind it) for format tests."""
    roles = ("mixture", "kick", "snare", "hihat")
    return ManifestRow(
        id=f"{split}-{index:07d}",
        split=split,
        index=index,
        seed=3,
        mixture=f"{rel_dir}/{split}-{index:07d}.mixture.wav",
        oneshots={c: f"{rel_dir}/{split}-{index:07d}.{c}.wav" for c in roles[1:]},
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
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


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
    assert gzip.decompress((tmp_path / "m.jsonl.gz").read_bytes()) == (
        tmp_path / "m.jsonl"
    ).read_bytes()
    # gzip bytes do not depend on the time of writing
    first = (tmp_path / "m.jsonl.gz").read_bytes()
    time.sleep(1.1)
    write_manifest(tmp_path / "m.jsonl.gz", rows)
    assert (tmp_path / "m.jsonl.gz").read_bytes() == first


def test_row_rejects_missing_keys_and_nan(tmp_path):
    data = fake_row("train", 0).to_dict()
    del data["checksums"]
    with pytest.raises(ValueError, match="checksums"):
        ManifestRow.from_dict(data)
    bad = fake_row("train", 0)
    object.__setattr__(bad, "duration", float("nan"))
    with pytest.raises(ValueError):
        bad.to_json()


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
    info = BuildInfo(
        recipe={"a": 1},
        recipe_fingerprint="r" * 8,
        library_path=None,
        library_fingerprint="l" * 8,
        seed=0,
        counts={"train": 4, "valid": 1, "test": 1},
        shard_size=2,
        audio_format="wav",
        sample_rate=44100,
        channels=2,
        rmod_version="0.1.0",
    )
    assert validate(info.to_dict(), schema["$defs"]["build"], schema) == []
    assert validate(dict(info.to_dict(), seed=-1), schema["$defs"]["build"], schema)


def test_build_info_differences_name_the_field():
    base = dict(
        recipe={"mix": {"gain": 1}},
        recipe_fingerprint="aaa",
        library_path="/lib",
        library_fingerprint="bbb",
        seed=0,
        counts={"train": 4, "valid": 1, "test": 1},
        shard_size=2,
        audio_format="wav",
        sample_rate=44100,
        channels=2,
        rmod_version="0.1.0",
    )
    a = BuildInfo(**base)
    assert a.differences(BuildInfo(**dict(base, rmod_version="9.9", library_path="/x"))) == []
    b = BuildInfo(**dict(base, seed=5, recipe={"mix": {"gain": 2}}, recipe_fingerprint="ccc"))
    diffs = b.differences(a)
    assert any("seed" in d and "0" in d and "5" in d for d in diffs)
    assert any("recipe" in d and "mix.gain" in d for d in diffs)


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


def _commit(root: Path, shard: Shard) -> None:
    tmp = make_temp_dir(root, shard)
    (tmp / "a.bin").write_bytes(shard.name.encode())
    commit_shard(root, shard, tmp, [fake_row(shard.split, i) for i in shard.indices()])


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
