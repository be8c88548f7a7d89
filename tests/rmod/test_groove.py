"""Groove variant: MIDI windows, the note map, the window rule, refused files, split by
file, and a render whose pattern.mid and audio onsets equal the window's notes."""

from __future__ import annotations

import hashlib
import json

import miditoolkit
import numpy as np
import pytest
import yaml

from rmod import DRUMS
from rmod.cli.render_one import main as render_one_main
from rmod.example.draw import ExampleError, draw_example
from rmod.example.groove import DEFAULT_NOTES, for_recipe, scan_midi_dir
from rmod.example.render import render_example
from rmod.library.hashing import split_for_hash
from rmod.recipe.spec import Recipe, load_recipe

TPB, TEMPO = 480, 100.0


def _tick(t: float) -> int:
    return int(round(t * TEMPO / 60 * TPB))


def _seconds(tick: int) -> float:
    return tick * 60 / (TEMPO * TPB)


def _write_midi(path, notes, drum: bool = True) -> None:
    """``notes``: (seconds, pitch) pairs on one track, 100 BPM, 480 ticks per beat."""
    midi = miditoolkit.MidiFile(ticks_per_beat=TPB)
    midi.tempo_changes = [miditoolkit.TempoChange(TEMPO, 0)]
    inst = miditoolkit.Instrument(program=0, is_drum=drum, name="drums" if drum else "piano")
    for t, pitch in notes:
        inst.notes.append(miditoolkit.Note(90, pitch, _tick(t), _tick(t) + 40))
    midi.instruments = [inst]
    midi.dump(str(path))


# window 0: kick, snare, hi-hat, a tom (dropped), a hi-hat edge hit (26 -> hi-hat);
# window 1: no snare (skipped); window 2: all three, kick and a snare on the same tick.
GOOD = [(0.0, 36), (0.31, 42), (0.5, 38), (0.62, 45), (0.77, 26), (1.2, 36), (1.5, 42)]
GOOD += [(2.05, 35), (2.05, 40), (2.4, 44), (2.93, 36)]


@pytest.fixture
def midi_dir(tmp_path):
    d = tmp_path / "midi"
    (d / "sub").mkdir(parents=True)
    _write_midi(d / "sub" / "good.mid", GOOD)
    _write_midi(d / "piano.mid", [(0.0, 60), (3.0, 62)], drum=False)
    _write_midi(d / "short.mid", [(0.0, 36), (0.2, 38), (0.3, 42)])
    (d / "bad.mid").write_bytes(b"MThd garbage")
    return d


def _expected(start: float, classes: dict[str, list[int]], sr: int) -> dict:
    out = {c: set() for c in DRUMS}
    for t, pitch in GOOD:
        for cls, pitches in classes.items():
            secs = _seconds(_tick(t))
            if pitch in pitches and start <= secs < start + 1.0:
                out[cls].add(int(round((secs - start) * sr)))
    return {c: tuple(sorted(v)) for c, v in out.items()}


def test_windows_mapping_rule_refusals_and_split(midi_dir):
    groove = scan_midi_dir(midi_dir, window_s=1.0, sample_rate=22050)
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in groove.refused}
    assert set(reasons) == {"piano.mid", "short.mid", "bad.mid"}
    assert "no drum track" in reasons["piano.mid"]
    assert "too short" in reasons["short.mid"]
    assert "unreadable" in reasons["bad.mid"]
    digest = hashlib.sha256((midi_dir / "sub" / "good.mid").read_bytes()).hexdigest()
    split = split_for_hash("midi:" + digest)
    assert groove.files == {"sub/good.mid": split}
    windows = [w for ws in groove.windows.values() for w in ws]
    assert all(w in groove.windows[split] for w in windows)  # one file, one split
    assert [w.start_s for w in windows] == [0.0, 2.0]  # window 1 has no snare
    for w in windows:
        assert w.path == "sub/good.mid" and w.sha256 == digest
        assert w.onsets == _expected(w.start_s, DEFAULT_NOTES, 22050)
    assert len(windows[0].onsets["hihat"]) == 2  # 42 and the edge hit 26; the tom is gone


def _groove_recipe(tmp_path) -> str:
    """rmod-groove at 22.05 kHz with 1 s mixtures (one grid point, one tick per sample)."""
    data = load_recipe("rmod-groove").to_dict()
    data["audio"].update(sample_rate=22050, mixture_seconds=1.0, target_seconds=0.5)
    data["drums"]["grid_points"] = 22050
    data["drums"]["midi"]["ticks_per_beat"] = 11025
    data["instruments"]["segment_seconds"] = {"choice": [1.0, 0.5]}
    for eq in (data["mixing"]["eq"], data["master"]["eq"]):
        eq["high_shelf"]["freq_hz"] = {"loguniform": [4000.0, 10000.0]}
    path = tmp_path / "groove-tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def test_groove_render_onsets_equal_the_window(tmp_path, midi_dir, small_library, capsys):
    recipe_path = _groove_recipe(tmp_path)
    recipe = Recipe.from_dict(yaml.safe_load(open(recipe_path)), recipe_path)
    groove = for_recipe(midi_dir, recipe)
    split = groove.files["sub/good.mid"]
    params = draw_example(recipe, small_library, 5, split, 0, groove)
    window = next(w for w in groove.windows[split] if w.start_s == params.groove.start_s)
    out = render_example(params, recipe, small_library)
    for cls in DRUMS:
        assert tuple(out.onsets[cls]) == window.onsets[cls]
        dry = out.stems[f"{cls}_dry"]
        first = window.onsets[cls][0]
        assert not np.any(dry[:, :first]) and np.any(dry[:, first : first + 100])
    assert ExampleParams_roundtrip(params)

    out_dir = tmp_path / "render"
    argv = ["--recipe", recipe_path, "--library", str(small_library.path), "--seed", "5"]
    argv += ["--split", split, "--midi-dir", str(midi_dir), "--out", str(out_dir)]
    assert render_one_main(argv + ["--no-overview"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped ") == 3
    doc = json.loads((out_dir / "example.json").read_text())
    assert doc["params"]["groove"] == {
        "path": "sub/good.mid",
        "sha256": window.sha256,
        "start_s": window.start_s,
    }
    midi = miditoolkit.MidiFile(str(out_dir / "pattern.mid"))
    notes = {getattr(recipe.drums.midi.notes, c): c for c in DRUMS}
    got = {c: [] for c in DRUMS}
    for n in midi.instruments[0].notes:
        got[notes[n.pitch]].append(n.start)  # one tick per sample
    assert {c: tuple(sorted(v)) for c, v in got.items()} == window.onsets


def ExampleParams_roundtrip(params) -> bool:  # noqa: N802
    from rmod.example.draw import ExampleParams

    return ExampleParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params


def test_groove_needs_midi_and_others_do_not_change(tmp_path, small_library):
    recipe_path = _groove_recipe(tmp_path)
    recipe = Recipe.from_dict(yaml.safe_load(open(recipe_path)), recipe_path)
    with pytest.raises(ExampleError, match="--midi-dir"):
        draw_example(recipe, small_library, 0, "train", 0)
    paper = load_recipe("rmod-paper")
    assert "groove" not in paper.to_dict()
    params = draw_example(paper, small_library, 0, "train", 0)
    assert params.groove is None and "groove" not in params.to_dict()
    bad = yaml.safe_load(open(recipe_path))
    bad["groove"]["notes"]["snare"] = [36]
    with pytest.raises(ValueError, match="groove.notes.snare: note 36"):
        Recipe.from_dict(bad, "bad.yaml")
    bad = yaml.safe_load(open(recipe_path))
    bad["drums"]["grid_points"] = 480
    bad["drums"]["midi"]["ticks_per_beat"] = 240
    with pytest.raises(ValueError, match="one grid point per sample"):
        Recipe.from_dict(bad, "bad.yaml")


def test_groove_example_rerenders_from_its_json(tmp_path, midi_dir, small_library, capsys):
    recipe_path = _groove_recipe(tmp_path)
    recipe = Recipe.from_dict(yaml.safe_load(open(recipe_path)), recipe_path)
    split = for_recipe(midi_dir, recipe).files["sub/good.mid"]
    first = tmp_path / "first"
    argv = ["--recipe", recipe_path, "--library", str(small_library.path), "--split", split]
    assert (
        render_one_main(argv + ["--midi-dir", str(midi_dir), "--out", str(first), "--no-overview"])
        == 0
    )
    again = tmp_path / "again"
    assert render_one_main(["--from", str(first / "example.json"), "--out", str(again)]) == 0
    assert (first / "mixture.wav").read_bytes() == (again / "mixture.wav").read_bytes()
    paper = ["--recipe", "rmod-paper", "--library", str(small_library.path)]
    assert render_one_main(paper + ["--midi-dir", str(midi_dir), "--out", str(tmp_path / "x")]) == 2
    assert "needs a Groove recipe" in capsys.readouterr().err


def _midi_in_every_split(folder) -> dict[str, str]:
    """Write variants of GOOD until each split holds one file; returns split -> file name."""
    folder.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}
    for k in range(400):
        path = folder / f"take{k:03d}.mid"
        _write_midi(path, GOOD + [(2.5 + k / 1000, 42)])
        split = split_for_hash("midi:" + hashlib.sha256(path.read_bytes()).hexdigest())
        if split in found:
            path.unlink()
        else:
            found[split] = path.name
        if len(found) == 3:
            return found
    raise AssertionError("no variant landed in every split")


def test_rmod_build_with_midi_dir(tmp_path, small_library, capsys, caplog):
    """Rows record the MIDI window; a file's windows stay in its split; rerun resumes."""
    from rmod.build.manifest import read_manifest
    from rmod.cli.build import main as build_main

    midi = tmp_path / "midi"
    files = _midi_in_every_split(midi)
    (midi / "broken.mid").write_bytes(b"nope")
    recipe_path = _groove_recipe(tmp_path)
    argv = ["--n", "3", "--out", str(tmp_path / "ds"), "--recipe", recipe_path]
    argv += ["--library", str(small_library.path), "--jobs", "1", "--no-progress"]
    with caplog.at_level("WARNING", logger="rmod.build.run"):
        assert build_main(argv + ["--midi-dir", str(midi)]) == 0
    assert "skipped" in caplog.text and "broken.mid: unreadable" in caplog.text
    for split in ("train", "valid", "test"):
        for row in read_manifest(tmp_path / "ds" / "manifests" / f"{split}.jsonl"):
            ref = row.params["groove"]
            assert ref["path"] == files[split], (split, ref)
            digest = hashlib.sha256((midi / ref["path"]).read_bytes()).hexdigest()
            assert ref["sha256"] == digest and ref["start_s"] in (0.0, 2.0)
    assert build_main(argv + ["--midi-dir", str(midi)]) == 0  # resumes: nothing to redo
    assert "0 rendered + " in capsys.readouterr().out
    assert build_main(argv) == 2
    assert "--midi-dir" in capsys.readouterr().err


def test_the_groove_midi_datasets_own_split_wins_over_the_hash(tmp_path):
    """With the Groove MIDI Dataset's info.csv, a file's split is GMD's (validation -> valid);
    files it does not name keep the hash split; the table's hash is part of the inputs."""
    from rmod.errors import InputError

    folder = tmp_path / "gmd"
    (folder / "drummer1").mkdir(parents=True)
    for k in range(3):
        _write_midi(folder / "drummer1" / f"take{k}.mid", GOOD + [(2.5 + k / 1000, 42)])
    _write_midi(folder / "extra.mid", GOOD)
    hashed = {
        name: split_for_hash("midi:" + hashlib.sha256((folder / name).read_bytes()).hexdigest())
        for name in ("drummer1/take0.mid", "drummer1/take1.mid", "drummer1/take2.mid", "extra.mid")
    }
    # give every listed file a split its hash would not give it
    other = {"train": "test", "valid": "train", "test": "validation"}
    rows = [(f"drummer1/take{k}.mid", other[hashed[f"drummer1/take{k}.mid"]]) for k in range(3)]
    table = "drummer,session,id,midi_filename,split\n" + "".join(
        f"drummer1,s,{k},{name},{split}\n" for k, (name, split) in enumerate(rows)
    )
    (folder / "info.csv").write_text(table)
    groove = scan_midi_dir(folder, window_s=1.0, sample_rate=22050)
    ours = {"train": "train", "validation": "valid", "test": "test"}
    for name, split in rows:
        assert groove.files[name] == ours[split] != hashed[name]
        assert all(
            w.path != name for s, ws in groove.windows.items() if s != ours[split] for w in ws
        )
    assert groove.files["extra.mid"] == hashed["extra.mid"]  # not in the table: by hash
    assert groove.hashes["info.csv"] == hashlib.sha256(table.encode()).hexdigest()
    without = tmp_path / "plain"
    (without / "drummer1").mkdir(parents=True)
    for name in ("drummer1/take0.mid", "extra.mid"):
        (without / name).write_bytes((folder / name).read_bytes())
    plain = scan_midi_dir(without, window_s=1.0, sample_rate=22050)
    assert plain.files == {n: hashed[n] for n in ("drummer1/take0.mid", "extra.mid")}
    assert "info.csv" not in plain.hashes
    (folder / "info.csv").write_text(table + "drummer1,s,9,drummer1/take0.mid,holdout\n")
    with pytest.raises(InputError, match=r"info.csv: line 5: split 'holdout'"):
        scan_midi_dir(folder, window_s=1.0, sample_rate=22050)
    (folder / "info.csv").write_text("drummer,filename\nx,y\n")
    with pytest.raises(InputError, match="no midi_filename or split column"):
        scan_midi_dir(folder, window_s=1.0, sample_rate=22050)
