"""rmod.records: every rmod record goes to plain values, through JSON and back unchanged, and
a value that does not fit is refused with an error naming its field path."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmod.build.manifest import BuildInfo, ManifestRow
from rmod.example.draw import ExampleParams, draw_example
from rmod.example.groove import GrooveRef
from rmod.library.catalog import LibraryEntry
from rmod.recipe.spec import Recipe, available_recipes, load_recipe
from rmod.records import RecordError, from_plain, to_plain


def _through_json(record):
    return json.loads(json.dumps(to_plain(record), allow_nan=False))


def _entry(**changes) -> LibraryEntry:
    base = LibraryEntry(
        id="kick/0123456789abcdef",
        path="kick/a.wav",
        cls="kick",
        duration=0.5,
        sample_rate=44100,
        channels=1,
        sha256="0123456789abcdef" * 4,
        split="valid",
        size_bytes=123,
    )
    return dataclasses.replace(base, **changes)


# A row and a build.json as rmod-build writes them (keys in the documented order).
ROW_LINE = (
    '{"id":"test-00000005","split":"test","index":5,"seed":1,'
    '"mixture":"test/000000/test-00000005.mixture.wav","oneshots":{'
    '"kick":"test/000000/test-00000005.kick.wav","snare":"test/000000/test-00000005.snare.wav",'
    '"hihat":"test/000000/test-00000005.hihat.wav"},"sample_rate":44100,"channels":2,'
    '"duration":4.0,"frames":{"mixture":176400,"kick":176400},"checksums":{"mixture":"'
    + "0"
    * 64
    + '"},"sources":{"kick":["kick/aa","kick/bb"]},"params":{"nested":{"a":[1,2.5,null]}},'
    '"loudness":{"mixture_peak_db":-1.0,"kick_rms_db":null},'
    '"midi":"test/000000/test-00000005.pattern.mid","file_channels":{"mixture":2,"kick":1}}'
)
BUILD_JSON = {
    "audio_format": "flac", "channels": 2, "counts": {"test": 0, "train": 4, "valid": 1},
    "engine_fingerprint": "e" * 64, "format": "rmod-manifest/1", "library_fingerprint": "l" * 64,
    "library_path": None, "recipe": {"name": "x"}, "recipe_fingerprint": "r" * 64,
    "rmod_version": "0.1.0", "sample_rate": 44100, "seed": 0, "shard_size": 2,
}  # fmt: skip


def _row(**changes) -> ManifestRow:
    row = ManifestRow.from_dict(json.loads(ROW_LINE))
    assert row.to_json() == ROW_LINE  # the same bytes back
    return dataclasses.replace(row, **changes)


def _build_info(**changes) -> BuildInfo:
    return dataclasses.replace(BuildInfo.from_dict(BUILD_JSON), **changes)


@pytest.mark.parametrize("name", available_recipes())
def test_every_shipped_recipe_round_trips_through_json(name):
    recipe = load_recipe(name)
    back = Recipe.from_dict(_through_json(recipe))
    assert back == recipe and back.fingerprint == recipe.fingerprint
    assert "source" not in recipe.to_dict()  # skipped: where it was loaded from


def test_example_params_round_trip_with_and_without_groove(small_library):
    params = draw_example(load_recipe(None), small_library, 5, "train", 3)
    assert from_plain(ExampleParams, _through_json(params), "params") == params
    assert "groove" not in to_plain(params)  # optional, at its default
    grooved = dataclasses.replace(params, groove=GrooveRef("a/b.mid", "f" * 64, 1.5))
    plain = _through_json(grooved)
    assert plain["groove"] == {"path": "a/b.mid", "sha256": "f" * 64, "start_s": 1.5}
    back = ExampleParams.from_dict(plain)
    assert back == grooved and isinstance(back.drums["kick"].sample_ids, tuple)
    assert isinstance(back.buses, type(params.buses)) and back.mix == params.mix


@pytest.mark.parametrize(
    "record",
    [
        _entry(),
        _entry(family="kick/kitA", source="sf2:x.sf2"),
        _row(),
        _row(sizes={"mixture": 1000}, midi=None),
        _build_info(),
        _build_info(library_path="/lib.jsonl", format="rmod-manifest/1"),
    ],
    ids=["entry", "entry-family", "row", "row-sizes", "build", "build-path"],
)
def test_library_manifest_and_build_records_round_trip_through_json(record):
    assert type(record).from_dict(_through_json(record)) == record
    assert type(record).from_dict(record.to_dict()).to_dict() == record.to_dict()


def test_optional_fields_are_left_out_at_their_default_only():
    assert "family" not in _entry().to_dict() and "source" not in _entry().to_dict()
    assert _entry(family="f").to_dict()["family"] == "f"
    row = _row().to_dict()
    assert "sizes" not in row and row["midi"] and list(row)[:3] == ["id", "split", "index"]
    assert _row(sizes={"kick": 5}).to_dict()["sizes"] == {"kick": 5}


@dataclass(frozen=True)
class _Inner:
    level: float = field(metadata={"range": (-1.0, 1.0)})
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Outer:
    name: str
    pair: tuple[int, int]
    inner: dict[str, _Inner]
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    note: str | None = None


GOOD = {"name": "x", "pair": [1, 2], "inner": {"k": {"level": 0, "tags": ["t"]}}}


@pytest.mark.parametrize(
    "change,where,reason",
    [
        ({"name": 3}, "top.name", "expected a string, got int"),
        ({"pair": [1, 2, 3]}, "top.pair", "expected 2 items, got 3"),
        ({"pair": [1, True]}, "top.pair[1]", "expected an integer, got bool True"),
        ({"pair": "12"}, "top.pair", "expected a list, got str"),
        ({"inner": {"k": {"level": "loud"}}}, "top.inner.k.level", "expected a number"),
        ({"inner": {"k": {"level": 2}}}, "top.inner.k.level", "above the allowed maximum 1.0"),
        ({"inner": {"k": {"level": float("nan")}}}, "top.inner.k.level", "finite"),
        ({"inner": {"k": {"level": 10**400}}}, "top.inner.k.level", "number out of range"),
        ({"inner": {"k": {}}}, "top.inner.k.level", "missing field"),
        ({"inner": {"k": {"level": 0, "extra": 1}}}, "top.inner.k.extra", "unknown key"),
        ({"inner": []}, "top.inner", "expected a mapping, got list"),
        ({"mode": "c"}, "top.mode", "'c' not allowed (expected one of: ['a', 'b'])"),
        ({"note": 1.5}, "top.note", "expected a string, got float"),
    ],
)
def test_errors_name_the_field_path(change, where, reason):
    with pytest.raises(RecordError) as err:
        from_plain(_Outer, {**GOOD, **change}, "top")
    assert err.value.where == where and reason in err.value.reason, str(err.value)
    assert isinstance(err.value, ValueError)


def test_defaults_fill_absent_fields_and_numbers_become_floats():
    out = from_plain(_Outer, GOOD)
    assert out == _Outer("x", (1, 2), {"k": _Inner(0.0, ("t",))})
    assert isinstance(out.inner["k"].level, float) and out.note is None
    with pytest.raises(RecordError, match="^name: missing field"):
        from_plain(_Outer, {k: v for k, v in GOOD.items() if k != "name"})


def test_record_classes_keep_their_error_types_and_messages():
    bad_entry = _entry().to_dict() | {"cls": "cowbell"}
    with pytest.raises(ValueError, match="cls: 'cowbell' not allowed"):
        LibraryEntry.from_dict(bad_entry)
    with pytest.raises(ValueError, match="manifest row: oneshots.kick: expected a string"):
        ManifestRow.from_dict(_row().to_dict() | {"oneshots": {"kick": 3}})
    with pytest.raises(ValueError, match="manifest row: id 'x' is not an example id"):
        ManifestRow.from_dict(_row().to_dict() | {"id": "x"})
    with pytest.raises(ValueError, match=r"build.json: counts.test: -1 below the allowed minimum"):
        BuildInfo.from_dict(_build_info().to_dict() | {"counts": {"test": -1}})
    with pytest.raises(ValueError, match="build.json: shard_size: 0 below the allowed minimum 1"):
        BuildInfo.from_dict(_build_info().to_dict() | {"shard_size": 0})
    with pytest.raises(ValueError, match="build.json: audio_format: 'mp3' not allowed"):
        BuildInfo.from_dict(_build_info().to_dict() | {"audio_format": "mp3"})
    with pytest.raises(ValueError, match="layout: tar with stored: false, which no build"):
        BuildInfo.from_dict(_build_info().to_dict() | {"layout": "tar", "stored": False})
    assert BuildInfo.from_dict(_build_info().to_dict() | {"layout": "tar"}).layout == "tar"


_LEVELS = st.floats(-1.0, 1.0, allow_nan=False)
_OUTERS = st.builds(
    _Outer,
    name=st.text(max_size=5),
    pair=st.tuples(st.integers(), st.integers()),
    inner=st.dictionaries(
        st.text(max_size=3),
        st.builds(_Inner, level=_LEVELS, tags=st.lists(st.text(max_size=3)).map(tuple)),
        max_size=3,
    ),
    mode=st.sampled_from(("a", "b")),
    note=st.none() | st.text(max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(_OUTERS)
def test_any_record_value_round_trips_through_json(record):
    plain = _through_json(record)
    assert from_plain(_Outer, plain) == record
    assert ("note" in plain) and ("mode" in plain)  # not optional: always written
