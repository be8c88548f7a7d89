"""Recipes: shipped files load, round-trip, and bad recipes fail naming file + field path."""

from __future__ import annotations

import copy

import pytest
import yaml

from rmod import DRUMS, INSTRUMENTS
from rmod.recipe.spec import RECIPES_DIR, Recipe, RecipeError, load_recipe


@pytest.fixture(scope="module")
def paper_dict() -> dict:
    return load_recipe(None).to_dict()


def test_default_is_the_paper_recipe():
    r = load_recipe(None)
    assert r.name == "rmod-paper"
    assert r.source.endswith("rmod-paper.yaml")
    assert r.audio.sample_rate == 44100 and r.audio.channels == 2
    assert r.mixture_samples == 176400 and r.target_samples == 88200
    assert r.drums.grid_points == 1920
    assert r.drums.hits.kick.bounds == (2, 4) and r.drums.hits.hihat.bounds == (14, 18)
    assert set(r.drums.layer_weights.options) == {(0.8, 0.2), (0.7, 0.3), (0.6, 0.4)}
    assert r.instrument_names == INSTRUMENTS
    for name in INSTRUMENTS:
        assert r.instruments.tracks[name].drop.p == 0.3
    assert r.instruments.tracks["bass"].semitones.bounds == (-6, 2)
    assert r.instruments.tracks["vocal"].semitones.bounds == (-12, 12)
    assert r.master.ceiling_dbfs == -1.0
    assert r.splits.valid_fraction == 0.01 and r.splits.test_fraction == 0.01


def test_drums_only_by_bare_name():
    r = load_recipe("rmod-drums-only")
    assert r.instrument_names == ()
    assert tuple(r.mixing.tracks) == DRUMS


def test_round_trip_and_fingerprint(paper_dict, tmp_path):
    r = load_recipe(None)
    again = Recipe.from_dict(copy.deepcopy(paper_dict))
    assert again == r and again.fingerprint == r.fingerprint
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(paper_dict))
    assert load_recipe(path).fingerprint == r.fingerprint
    changed = copy.deepcopy(paper_dict)
    changed["drums"]["retrigger_fade_ms"] = 6.0
    assert Recipe.from_dict(changed).fingerprint != r.fingerprint


def _set(d: dict, dotted: str, value) -> dict:
    d = copy.deepcopy(d)
    keys = dotted.split(".")
    node = d
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return d


_DELETE = object()

BAD = [
    (
        "mixing.eq.low_shelf.gain_db",
        {"uniform": [12, -12]},
        "mixing.eq.low_shelf.gain_db: low 12 > high -12",
    ),
    ("drums.colour", "red", "drums.colour: unknown key"),
    ("audio.sample_rate", "44100", "audio.sample_rate: expected an integer"),
    ("audio.mixture_seconds", [4.0], "audio.mixture_seconds: expected a number"),
    (
        "instruments.tracks.bass.drop",
        {"bernoulli": 1.3},
        "instruments.tracks.bass.drop: probability 1.3 outside [0, 1]",
    ),
    ("mixing.delay", _DELETE, "mixing.delay: missing field"),
    (
        "instruments.segment_seconds",
        {"choice": []},
        "instruments.segment_seconds: choice has no options",
    ),
    (
        "mixing.reverb.room_size",
        {"gaussian": [0.5, 0.1]},
        "mixing.reverb.room_size: unknown distribution 'gaussian'",
    ),
    (
        "mixing.reverb.room_size",
        {"uniform": [0.2, 1.5]},
        "mixing.reverb.room_size: values can reach 1.5, above the allowed maximum 1.0",
    ),
    (
        "instruments.tracks.piano.semitones",
        {"uniform": [-12, 12]},
        "instruments.tracks.piano.semitones: expected integer values",
    ),
    ("drums.midi.ticks_per_beat", 479, "drums.midi: one grid point is"),
    (
        "drums.hits.hihat",
        {"randint": [14, 5000]},
        "drums.hits.hihat: up to 5000 hits but only 1920 grid points",
    ),
    ("audio.format", "mp3", "audio.format: 'mp3' not allowed"),
    ("mixing.tracks.bass", _DELETE, "mixing.tracks.bass: missing field"),
    (
        "instruments.tracks.drums",
        {"drop": False, "semitones": 0},
        "instruments.tracks.drums: unknown instrument",
    ),
    (
        "mixing.eq.peaks.1.freq_hz",
        {"loguniform": [500.0, 23000.0]},
        "mixing.eq.peaks[1].freq_hz: reaches the Nyquist frequency",
    ),
    (
        "drums.layer_weights",
        {"choice": [[0.8, 0.2, 0.0]]},
        "drums.layer_weights: expected a choice of [w1, w2]",
    ),
    ("mixing.delay.active", {"uniform": [0, 1]}, "mixing.delay.active: expected {bernoulli: p}"),
]


@pytest.mark.parametrize(
    "dotted,value,message", BAD, ids=[b[0] + "-" + b[2].split(": ")[-1][:20] for b in BAD]
)
def test_bad_recipe_names_file_and_field(paper_dict, tmp_path, dotted, value, message):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_set(paper_dict, dotted, value)))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text


def test_yaml_syntax_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("audio: [1, 2\n")
    with pytest.raises(RecipeError, match="broken.yaml: not valid YAML"):
        load_recipe(path)
    path.write_text("audio: {mixture_seconds: " + "9" * 5000 + "}\n")  # beyond int parsing
    with pytest.raises(RecipeError, match="broken.yaml: not valid YAML"):
        load_recipe(path)
    data = load_recipe("rmod-paper").to_dict()
    data["audio"]["mixture_seconds"] = 10**400  # beyond a float
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match="audio.mixture_seconds: number out of range"):
        load_recipe(path)


def test_binary_recipe_names_file(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00audio")
    with pytest.raises(RecipeError, match=f"{path}: not a UTF-8 text file"):
        load_recipe(path)


def test_missing_recipe_lists_shipped_ones():
    with pytest.raises(RecipeError, match="recipe not found.*rmod-paper") as err:
        load_recipe("no-such-recipe")
    assert "dose-" not in str(err.value)  # model configs are not dataset recipes


def test_shipped_rmod_recipes_all_load():
    names = [p.stem for p in RECIPES_DIR.glob("rmod-*.yaml")]
    assert {"rmod-paper", "rmod-drums-only"} <= set(names)
    for name in names:
        assert load_recipe(name).name == name


@pytest.mark.parametrize(
    "notes,message",
    [
        ([36, 200], "groove.notes.kick[1]: 200 above the allowed maximum 127"),
        ([36, True], "groove.notes.kick[1]: expected an integer, got bool True"),
        ("36", "groove.notes.kick: expected a list, got str"),
    ],
)
def test_groove_notes_are_checked_item_by_item(notes, message):
    data = load_recipe("rmod-groove").to_dict()
    data["groove"]["notes"]["kick"] = notes
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data, "g.yaml")
    assert str(err.value) == f"g.yaml: {message}"


def test_optional_sections_stay_out_of_the_plain_form_and_the_fingerprint(paper_dict):
    assert "groove" not in paper_dict and "source" not in paper_dict
    groove = load_recipe("rmod-groove")
    assert "midi_dir" not in groove.to_dict()["groove"]  # unset: left out
    plain = groove.to_dict()
    with_dir = Recipe.from_dict({**plain, "groove": {**plain["groove"], "midi_dir": "/m"}})
    assert with_dir.to_dict()["groove"]["midi_dir"] == "/m"  # set: written
    assert with_dir.fingerprint != groove.fingerprint
    assert Recipe.from_dict(plain).fingerprint == groove.fingerprint
