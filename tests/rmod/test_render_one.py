"""rmod-render-one: files, summary, byte-identical re-render from example.json or a manifest row."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
import yaml

from rmod.build.manifest import BuildInfo
from rmod.cli.render_one import main
from rmod.recipe.spec import load_recipe

AUDIO = ["mixture.wav", "kick.wav", "snare.wav", "hihat.wav"]


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    """The paper recipe shortened to a 2 s mixture, as a YAML file."""
    d = load_recipe(None).to_dict()
    d["audio"]["mixture_seconds"] = 2.0
    d["audio"]["target_seconds"] = 1.0
    d["instruments"]["segment_seconds"] = {"choice": [2.0, 1.0]}
    path = tmp_path_factory.mktemp("recipe") / "short.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory, recipe_file, small_library):
    out = tmp_path_factory.mktemp("render") / "one"
    argv = ["--seed", "42", "--out", str(out), "--recipe", str(recipe_file)]
    argv += ["--library", str(small_library.path), "--index", "3"]
    assert main(argv) == 0
    return out


def _build_json(doc: dict, library, **changes) -> str:
    """A dataset's build.json for the example of ``doc`` (fingerprints are placeholders:
    only the recipe, the library path and the audio format are read back)."""
    info = BuildInfo(
        recipe=doc["recipe"], recipe_fingerprint="r" * 64, library_path=str(library),
        library_fingerprint=doc["library"]["fingerprint"], seed=doc["params"]["seed"],
        counts={"train": 4, "valid": 1, "test": 1}, shard_size=4, audio_format="wav",
        sample_rate=doc["recipe"]["audio"]["sample_rate"], channels=2, rmod_version="0",
        engine_fingerprint="e" * 64,
    )  # fmt: skip
    return json.dumps({**info.to_dict(), **changes})


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_writes_every_file(first, capsys):
    names = _files(first)
    for name in AUDIO + ["pattern.mid", "example.json", "overview.png", "stems/kick_dry.wav"]:
        assert name in names
    doc = json.loads((first / "example.json").read_text())
    assert doc["id"] == "train-00000003" and doc["params"]["seed"] == 42
    assert doc["recipe"]["audio"]["mixture_seconds"] == 2.0
    assert doc["library"]["fingerprint"] and doc["library"]["path"].endswith(".jsonl")
    assert set(doc["files"]) == {n for n in names if n.endswith((".wav", ".mid"))}
    assert (first / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import soundfile as sf

    info = sf.info(str(first / "mixture.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        44100,
        2,
        88200,
        "PCM_16",
    )
    assert sf.info(str(first / "kick.wav")).frames == 44100


def test_from_example_json_is_byte_identical(first, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["--from", str(first / "example.json"), "--out", str(again), "--no-overview"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert summary[-1].startswith("wrote ") and str(again) in summary[-1]
    for name in _files(first):
        if name != "overview.png":
            assert (again / name).read_bytes() == (first / name).read_bytes(), name


def _render(out, recipe_file, small_library, index):
    argv = ["--seed", "42", "--out", str(out), "--recipe", str(recipe_file), "--no-overview"]
    return main(argv + ["--library", str(small_library.path), "--index", str(index)])


def test_rerender_into_a_used_folder_removes_only_what_the_earlier_render_recorded(
    first, tmp_path, recipe_file, small_library
):
    """Another example into a render folder: the earlier render's files that the new one does
    not write (stems of instruments that no longer play, overview.png) go; the user's files,
    even with names a render uses, stay byte for byte."""
    fresh = tmp_path / "fresh"
    assert _render(fresh, recipe_file, small_library, 0) == 0
    old_stems = {n for n in _files(first) if n.startswith("stems/")}
    assert old_stems - set(_files(fresh)), "the two examples must differ in their stems"
    used = tmp_path / "used"
    shutil.copytree(first, used)
    foreign = {"notes.txt": b"mine", "mixture.flac": b"my mixture", "stems/kick.flac": b"x"}
    for name, data in foreign.items():
        (used / name).write_bytes(data)
    assert _render(used, recipe_file, small_library, 0) == 0
    assert _files(used) == sorted(_files(fresh) + list(foreign))
    for name, data in foreign.items():
        assert (used / name).read_bytes() == data
    for name in _files(fresh):
        if name != "example.json":
            assert (used / name).read_bytes() == (fresh / name).read_bytes(), name


def test_files_that_are_not_the_earlier_renders_are_never_overwritten_or_deleted(
    first, tmp_path, recipe_file, small_library, capsys
):
    # a non-empty folder that holds no render is refused whole
    mine = tmp_path / "mine"
    (mine / "stems").mkdir(parents=True)
    (mine / "stems" / "kick.wav").write_bytes(b"my kick")
    assert _render(mine, recipe_file, small_library, 0) == 2
    assert "holds no earlier render" in capsys.readouterr().err
    assert _files(mine) == ["stems/kick.wav"]
    # a render folder where the user replaced a file the render writes
    used = tmp_path / "used"
    shutil.copytree(first, used)
    (used / "kick.wav").write_bytes(b"my own kick")
    before = {n: (used / n).read_bytes() for n in _files(used)}
    assert _render(used, recipe_file, small_library, 0) == 2
    err = capsys.readouterr().err
    assert "kick.wav: exists and is not a file the earlier render recorded" in err
    assert {n: (used / n).read_bytes() for n in _files(used)} == before
    # example.json that lists files outside the folder (with their true hashes): untouched
    from rmod_dose_common.fileio import sha256_file

    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"not yours")
    used2 = tmp_path / "used2"
    shutil.copytree(first, used2)
    doc = json.loads((used2 / "example.json").read_text())
    doc["files"]["../outside.wav"] = sha256_file(outside)
    doc["files"][str(outside)] = sha256_file(outside)
    (used2 / "example.json").write_text(json.dumps(doc))
    assert _render(used2, recipe_file, small_library, 0) == 0
    assert outside.read_bytes() == b"not yours"
    # a stems folder that is a link to a folder elsewhere is not written through
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    used3 = tmp_path / "used3"
    shutil.copytree(first, used3)
    shutil.rmtree(used3 / "stems")
    (used3 / "stems").symlink_to(elsewhere, target_is_directory=True)
    assert _render(used3, recipe_file, small_library, 0) == 2
    assert "outside" in capsys.readouterr().err and not list(elsewhere.iterdir())


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_from_manifest_row(first, tmp_path, small_library, audio_format):
    import soundfile as sf

    doc = json.loads((first / "example.json").read_text())
    build = tmp_path / "build"
    (build / "manifests").mkdir(parents=True)
    (build / "build.json").write_text(
        _build_json(doc, small_library.path, audio_format=audio_format)
    )
    rows = [{"id": "train-00000001", "params": {}}, {"id": doc["id"], "params": doc["params"]}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (build / "manifests" / "train.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    out = tmp_path / "row"
    argv = ["--from", str(build / "manifests" / "train.jsonl.gz"), "--id", doc["id"]]
    assert main(argv + ["--out", str(out), "--no-overview"]) == 0
    for name in AUDIO:  # written in the dataset's format, with the same samples
        again = out / name.replace(".wav", f".{audio_format}")
        assert sf.info(str(again)).format == audio_format.upper()
        if audio_format == "wav":
            assert again.read_bytes() == (first / name).read_bytes()
        else:
            a, b = (sf.read(str(p), dtype="int16")[0] for p in (again, first / name))
            assert (a == b).all()


def test_errors_exit_nonzero_with_a_clear_message(tmp_path, recipe_file, small_library, capsys):
    bad = yaml.safe_load(recipe_file.read_text())
    bad["mixing"]["limiter"]["threshold_db"] = {"uniform": [0.0, -6.0]}
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(yaml.safe_dump(bad))
    argv = [
        "--out",
        str(tmp_path / "x"),
        "--recipe",
        str(bad_path),
        "--library",
        str(small_library.path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: mixing.limiter.threshold_db: low 0.0 > high -6.0" in err
    assert main(["--from", str(tmp_path / "missing.json"), "--out", str(tmp_path / "y")]) == 2
    assert "missing.json: cannot read" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["drums"]["kick"].update(grid=[3, 1, 5000]), "drums.kick.grid: expected"),
        (lambda p: p["mix"]["kick"]["eq"]["low_shelf"].update(freq_hz=-5.0), "freq_hz: -5 outside"),
        (
            lambda p: p["drums"]["snare"].update(sample_ids=["snare/gone", "snare/gone"]),
            "snare/gone",
        ),
        (lambda p: p["drums"]["kick"].update(weights=[1e300, 0.2]), "drums.kick.weights"),
        (lambda p: p["drums"]["kick"].update(weights=[-0.8, 0.2]), "drums.kick.weights"),
        (
            lambda p: p["drums"]["kick"].update(sample_ids=p["drums"]["snare"]["sample_ids"]),
            "is a snare sample, not a kick one",
        ),
        (lambda p: p.update(id="../../escape"), "is not an example id"),
        (lambda p: p.update(index=7), "does not match split"),
        (
            lambda p: p["instruments"].update({"../../x": p["instruments"]["piano"]}),
            "instruments: expected",
        ),
        (lambda p: p["instruments"]["piano"].update(start_sample=10**9), "start_sample"),
        (lambda p: p.update(seed=-1), "seed: -1 is negative"),
        (lambda p: p["mix"]["kick"].update(gain_db=9.0), "mixing.gain_db.kick: 9 outside"),
    ],
    ids=["grid", "eq", "sample", "huge-weight", "negative-weight", "snare-as-kick", "id",
         "index", "track-name", "slice", "seed", "gain"],
)  # fmt: skip
def test_from_a_hand_edited_file_names_what_is_wrong(first, tmp_path, capsys, edit, message):
    doc = json.loads((first / "example.json").read_text())
    edit(doc["params"])
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    argv = ["--from", str(tmp_path / "edited.json"), "--out", str(tmp_path / "o"), "--no-overview"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rmod-render-one: error: ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--seed",
        "--split",
        "--index",
        "--recipe",
        "--library",
        "--out",
        "--from",
        "--id",
        "--no-overview",
    ):
        assert option in text
    assert "default: 0" in text and "default: train" in text


def test_from_a_manifest_with_an_id_that_is_not_an_example_id(
    first, tmp_path, small_library, capsys
):
    doc = json.loads((first / "example.json").read_text())
    build = tmp_path / "build"
    (build / "manifests").mkdir(parents=True)
    (build / "build.json").write_text(_build_json(doc, small_library.path))
    row = {"id": "../../x", "params": doc["params"]}
    (build / "manifests" / "train.jsonl").write_text(json.dumps(row) + "\n")
    argv = ["--from", str(build / "manifests" / "train.jsonl"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--id", "../../x"]) == 2
    assert "--id: id '../../x' is not an example id" in capsys.readouterr().err
    row["id"] = "train-00000009"  # a row whose params are another example's
    (build / "manifests" / "train.jsonl").write_text(json.dumps(row) + "\n")
    assert main([*argv, "--id", "train-00000009"]) == 2
    assert "the row's parameters are of train-00000003, not train-00000009" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--index", "1000000000"], "--index must be in 0..99999999, got 1000000000"),
        (["--index", "100000000"], "--index must be in 0..99999999, got 100000000"),
        (["--index", "-1"], "--index must be in 0..99999999, got -1"),
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    ],
    ids=["index-1e9", "index-1e8", "index-negative", "seed-negative"],
)
def test_an_index_or_seed_rmod_build_would_not_use_is_refused_before_any_work(
    tmp_path, small_library, capsys, monkeypatch, option, message
):
    import rmod.cli.render_one as cli

    monkeypatch.setattr(cli, "load_recipe", lambda *a: pytest.fail("work started"))
    argv = ["--out", str(tmp_path / "o"), "--library", str(small_library.path), *option]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rmod-render-one: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        (None, "expected a mapping, got list"),
        ({"audio_format": 5}, "build.json: audio_format: expected a string, got int"),
        ({"audio_format": "../x"}, "build.json: audio_format: '../x' not allowed"),
        ({"library_path": 5}, "build.json: library_path: expected a string"),
        ({"format": "rmod-manifest/9"}, "build.json: format: 'rmod-manifest/9' not allowed"),
    ],
    ids=["not-a-mapping", "format-int", "format-path", "library-int", "unknown-format"],
)
def test_from_a_manifest_whose_build_json_is_bad_names_the_key(
    first, tmp_path, small_library, capsys, changes, message
):
    doc = json.loads((first / "example.json").read_text())
    build = tmp_path / "build"
    (build / "manifests").mkdir(parents=True)
    text = "[]" if changes is None else _build_json(doc, small_library.path, **changes)
    (build / "build.json").write_text(text)
    row = {"id": doc["id"], "params": doc["params"]}
    (build / "manifests" / "train.jsonl").write_text(json.dumps(row) + "\n")
    argv = ["--from", str(build / "manifests" / "train.jsonl"), "--id", doc["id"]]
    assert main([*argv, "--out", str(tmp_path / "o"), "--no-overview"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rmod-render-one: error: ") and err.count("\n") == 1, err
    assert f"{build / 'build.json'}: " in err and message in err, err
    assert not (tmp_path / "o").exists()


def test_from_an_example_json_whose_library_path_is_not_a_string(first, tmp_path, capsys):
    doc = json.loads((first / "example.json").read_text())
    doc["library"]["path"] = 5
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    argv = ["--from", str(tmp_path / "edited.json"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == f"rmod-render-one: error: {tmp_path / 'edited.json'}: library.path: "
        "expected a string or null, got int\n"
    )
    assert not (tmp_path / "o").exists()


def test_params_problems_checks_drawn_values_against_the_recipe(small_library):
    """Every caller of params_problems (rmod-render-one --from) gets the recipe's bounds:
    a gain the recipe's uniform [-1, 2] dB cannot draw is named with those bounds."""
    from rmod.example.draw import ExampleParams, draw_example
    from rmod.inspect.example_folder import params_problems

    recipe = load_recipe(None)
    params = draw_example(recipe, small_library, 3, "train", 0)
    assert params_problems(params, recipe, small_library) == []
    plain = params.to_dict()
    plain["mix"]["kick"]["gain_db"] = 9.0
    problems = params_problems(ExampleParams.from_dict(plain), recipe, small_library)
    assert problems == ["mixing.gain_db.kick: 9 outside the recipe's [-1, 2]"]
