"""rmod-render-one: files, summary, byte-identical re-render from example.json or a manifest row."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
import yaml

from rmod.cli.render_one import main
from rmod.recipe import load_recipe

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


def test_rerender_into_a_used_folder_leaves_no_stale_file(first, tmp_path):
    used = tmp_path / "used"
    shutil.copytree(first, used)
    stale = ["stems/not_playing.wav", "mixture.flac", "stems/kick.flac"]
    for name in stale:
        (used / name).write_bytes(b"from an earlier render")
    (used / "notes.txt").write_text("mine")
    assert main(["--from", str(first / "example.json"), "--out", str(used), "--no-overview"]) == 0
    assert _files(used) == sorted([n for n in _files(first) if n != "overview.png"] + ["notes.txt"])
    for name in AUDIO:
        assert (used / name).read_bytes() == (first / name).read_bytes()


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
def test_from_manifest_row(first, tmp_path, small_library, audio_format):
    import soundfile as sf

    doc = json.loads((first / "example.json").read_text())
    build = tmp_path / "build"
    (build / "manifests").mkdir(parents=True)
    info = {"recipe": doc["recipe"], "library_path": str(small_library.path)}
    (build / "build.json").write_text(json.dumps({**info, "audio_format": audio_format}))
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
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: mixing.limiter.threshold_db: low 0.0 > high -6.0" in err
    assert main(["--from", str(tmp_path / "missing.json"), "--out", str(tmp_path / "y")]) == 1
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
    ],
    ids=["grid", "eq", "sample"],
)
def test_from_a_hand_edited_file_names_what_is_wrong(first, tmp_path, capsys, edit, message):
    doc = json.loads((first / "example.json").read_text())
    edit(doc["params"])
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    argv = ["--from", str(tmp_path / "edited.json"), "--out", str(tmp_path / "o"), "--no-overview"]
    assert main(argv) == 1
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
