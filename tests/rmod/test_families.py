"""Families decide splits (user libraries and the built-in one); the near-duplicate leak
report; ``rmod-library soundfont`` and the new ``info`` lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from rmod import DRUMS
from rmod.cli.library import main as library_main
from rmod.library.builtin import BuiltinConfig, generate_builtin
from rmod.library.builtin.fonts import find_fonts
from rmod.library.builtin.generate import Sources
from rmod.library.catalog import Library
from rmod.library.families import families_span_one_split, family_counts
from rmod.library.hashing import split_for_hash
from rmod.library.indexing import IndexLimits, index_library
from rmod.library.leaks import _Spectra, count_distinct, leak_report, onset_window
from tests.sf2_fixture import TPreset, TZone, write_sf2

SR = 44100


def _hit(seed: int, seconds: float = 0.4) -> np.ndarray:
    """A decaying noise burst (a distinct one-shot per seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * rng.standard_normal(t.size) * np.exp(-t * 12)).astype(np.float32)


def _copy(x: np.ndarray, gain: float) -> np.ndarray:
    """A near-duplicate: another level, shifted by 3 samples, a different tail."""
    y = np.concatenate([np.zeros(3, np.float32), gain * x])[: x.size - 2000]
    return y.astype(np.float32)


def _write(path, x) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, SR, subtype="PCM_16")


def _copy_in_another_split(tmp_path) -> tuple[np.ndarray, float]:
    """A hit and a gain for which the hit and its copy split apart when hashed per file."""
    from rmod.audio import read_audio
    from rmod.library.hashing import content_hash

    x = _hit(1)
    for k in range(1, 60):
        gain = 0.3 + 0.01 * k
        probe = tmp_path / "probe"
        _write(probe / "a.wav", x)
        _write(probe / "b.wav", _copy(x, gain))
        ha = content_hash(read_audio(probe / "a.wav")[0])
        hb = content_hash(read_audio(probe / "b.wav")[0])
        if split_for_hash(ha) != split_for_hash(hb) and "train" in {
            split_for_hash(ha),
            split_for_hash(hb),
        }:
            return x, gain
    raise AssertionError("no gain splits the pair apart")


def test_leak_report_and_group_by_folder(tmp_path):
    """Per-file splits put a copy in another split (a leak, reported); --group-by folder
    keeps the kit's files in one split (no leak)."""
    x, gain = _copy_in_another_split(tmp_path)
    src = tmp_path / "samples"
    _write(src / "kick" / "kitA" / "hard.wav", x)
    _write(src / "kick" / "kitA" / "soft.wav", _copy(x, gain))
    for seed in range(2, 8):
        _write(src / "kick" / f"loose{seed}.wav", _hit(seed))
    by_file = index_library(src, tmp_path / "file.jsonl")
    lib = Library.load(by_file.library_path)
    assert all(e.family == "" and e.split == split_for_hash(e.sha256) for e in lib.entries)
    report = {r.cls: r for r in leak_report(lib, ["kick"])}["kick"]
    assert report.n_leaking == 1 and report.worst[0][2] > 0.95
    pair = {lib.entry(i).path.rsplit("/", 1)[-1] for i in report.worst[0][:2]}
    assert pair == {"hard.wav", "soft.wav"}

    limits = IndexLimits(group_by="folder")
    by_folder = index_library(src, tmp_path / "folder.jsonl", limits=limits)
    lib = Library.load(by_folder.library_path)
    kit = [e for e in lib.entries if "/kitA/" in e.path]
    assert {e.family for e in kit} == {"kick/kitA"}
    assert kit[0].split == kit[1].split == split_for_hash("family:kick/kitA")
    loose = [e for e in lib.entries if "/kitA/" not in e.path]
    assert all(e.family == "" and e.split == split_for_hash(e.sha256) for e in loose)
    assert family_counts(lib)["kick"] == 7
    assert leak_report(lib, ["kick"])[0].n_leaking == 0
    assert families_span_one_split(lib) == []


def test_leak_measure(tmp_path):
    """Onset-aligned, level- and polarity-blind; distinct sounds are counted once."""
    x = _hit(3)
    w = onset_window(np.concatenate([np.zeros(500, np.float32), x]), SR)
    assert np.sum(w**2) == pytest.approx(1.0)
    flipped = _Spectra(w[None, :], max_lag=220).similarity(onset_window(-0.2 * x, SR))
    assert flipped[0] > 0.99
    paths = []
    for i, y in enumerate([x, 0.5 * x, _hit(4), _copy(x, 0.8)]):
        p = str(tmp_path / f"{i}.wav")
        sf.write(p, y, SR, subtype="FLOAT")
        paths.append(p)
    assert count_distinct(paths) == 2


@pytest.fixture(scope="module")
def kit_font(tmp_path_factory):
    """A tiny drum-kit soundfont: one kick key with two velocity layers."""
    path = tmp_path_factory.mktemp("kit") / "tiny kit.sf2"
    zones = [
        TZone(_hit(20), root=36, keys=(36, 36), vels=(1, 63)),
        TZone(_hit(21), root=36, keys=(36, 36), vels=(64, 127)),
    ]
    write_sf2(path, [TPreset("Tiny Kit", 0, 0, zones)])
    return path


def test_builtin_copies_and_layers_share_a_split(tmp_path, kit_font, monkeypatch):
    """The kit's two velocity layers and their detuned copies form one family, in one split."""
    monkeypatch.setenv("RMOD_SOUNDFONTS", str(kit_font))
    sources = Sources(find_fonts(), None)
    assert [f.role for f in sources.fonts] == ["kits", "gm"]
    config = BuiltinConfig(n_oneshots=30, n_sf2_oneshots=30, n_loops=1)
    manifest = generate_builtin(tmp_path / "lib", config, jobs=1, progress=False, sources=sources)
    lib = Library.load(manifest)
    kit = [e for e in lib.entries if e.source == "sf2:tiny kit.sf2"]
    assert len(kit) >= 4 and {e.cls for e in kit} == {"kick"}  # 2 layers + detuned copies
    assert len({e.family for e in kit}) == 1 and len({e.split for e in kit}) == 1
    assert families_span_one_split(lib) == []
    assert all(r.n_leaking == 0 for r in leak_report(lib, DRUMS))


def test_cli_soundfont_index_and_info(tmp_path, kit_font, capsys):
    out = tmp_path / "out"
    assert library_main(["soundfont", str(kit_font), "--out", str(out)]) == 0
    assert "wrote 2 files (kick 2," in capsys.readouterr().out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert files == [
        "kick/tiny_kit.sf2_0_0_36/Tiny_Kit-k36-v063.flac",
        "kick/tiny_kit.sf2_0_0_36/Tiny_Kit-k36-v127.flac",
    ]
    lib_path = tmp_path / "lib.jsonl"
    args = ["index", str(out), "--out", str(lib_path), "--group-by", "folder", "--quiet"]
    assert library_main(args) == 0
    capsys.readouterr()
    assert library_main(["info", str(lib_path), "--leaks"]) == 0
    text = capsys.readouterr().out
    assert "leaks kick: 0 of " in text and "source (indexed files): kick 2" in text
    assert library_main(["info", str(lib_path), "--json", "--leaks"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["families"]["kick"] == 1 and data["leaks"]["kick"]["n_leaking"] == 0
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    assert library_main(["soundfont", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.sf2" in err


def test_cli_soundfont_writes_loops_from_a_gm_font(tmp_path, capsys):
    """The General MIDI font pretty_midi ships: kits and one loop per melodic program."""
    from rmod.library.builtin.sf2 import default_sf2_path

    out = tmp_path / "gm"
    args = ["soundfont", str(default_sf2_path()), "--out", str(out), "--loops-per-program", "1"]
    assert library_main(args) == 0
    for cls in ("kick", "snare", "hihat", "bass", "guitar", "vocal", "piano"):
        assert any((out / cls).rglob("*.flac")), cls
    assert len(list((out / "bass").rglob("*.flac"))) == 8  # GM programs 32-39
