"""Hostile and broken soundfonts (issue 20, faults 5, 7 and 11): bounded parsing, one-line
errors through every path that reads a font (the sampler, ``$RMOD_SOUNDFONTS``, the
``rmod-library`` commands), fonts parsed once per version, and a built-in library without
silent stretches whatever sources are installed."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from rmod import INSTRUMENTS
from rmod.library.builtin import sf2 as sf2_module
from rmod.library.builtin.fonts import SEARCH_DIRS, find_fonts
from rmod.library.builtin.generate import BuiltinConfig, Sources, render_item
from rmod.library.builtin.loops import QUIET_WINDOW_DB, quietest_window_db
from rmod.library.builtin.sf2 import SoundFont, SoundFontError, load_soundfont, render_note
from rmod.limits import MAX_SF2_ZONES
from tests.rmod.hostile import run_capped
from tests.sf2_fixture import TPreset, TZone, _chunk, _gen, _list, _name, write_sf2

SR = 44100
COARSE_TUNE = 51


def _hit(n: int = 2000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, n) * np.exp(-np.arange(n) / (n / 6))


def _kit(path: Path, zone: TZone | None = None) -> Path:
    """A one-kit font: kick, snare and closed hat keys (bank 0: a drum-kit font)."""
    zones = [
        zone or TZone(_hit(seed=1), root=36, keys=(36, 36)),
        TZone(_hit(seed=2), root=38, keys=(38, 38)),
        TZone(_hit(seed=3), root=42, keys=(42, 42)),
    ]
    write_sf2(path, [TPreset("kit", 0, 0, zones)])
    return path


def _patch_sample(path: Path, index: int, **fields: int) -> None:
    """Rewrite fields of sample header ``index`` (``start``, ``end``, ``rate``) in place."""
    data = bytearray(path.read_bytes())
    at = data.index(b"shdr") + 8 + 46 * index
    offsets = {"start": 20, "end": 24, "rate": 36}
    for name, value in fields.items():
        struct.pack_into("<I", data, at + offsets[name], value)
    path.write_bytes(bytes(data))


def bomb(path: Path, n_zones: int = 1000, n_bags: int = 1000, distinct: bool = False) -> Path:
    """One instrument of ``n_zones`` zones and one preset of ``n_bags`` zones naming it
    (equal preset zones, or each with its own attenuation when ``distinct``): 21 kB."""
    pcm = (_hit(200) * 32767).astype("<i2")
    pool = np.concatenate([pcm, np.zeros(46, "<i2")])
    shdr = [
        _name("s0") + struct.pack("<IIIIIBbHH", 0, 200, 0, 199, SR, 36, 0, 0, 1),
        _name("EOS") + bytes(26),
    ]
    ibag, igen = [], []
    for z in range(n_zones):
        ibag.append(struct.pack("<HH", len(igen), 0))
        igen += [_gen(43, (z % 128, z % 128)), _gen(53, 0)]
    ibag.append(struct.pack("<HH", len(igen), 0))
    igen.append(bytes(4))
    pbag, pgen = [], []
    for b in range(n_bags):
        pbag.append(struct.pack("<HH", len(pgen), 0))
        pgen += ([_gen(48, b)] if distinct else []) + [_gen(41, 0)]
    pbag.append(struct.pack("<HH", len(pgen), 0))
    pgen.append(bytes(4))
    phdr = [
        _name("p0") + struct.pack("<HHHIII", 0, 0, 0, 0, 0, 0),
        _name("EOP") + struct.pack("<HHHIII", 0, 0, n_bags, 0, 0, 0),
    ]
    inst = [_name("i0") + struct.pack("<H", 0), _name("EOI") + struct.pack("<H", n_zones)]
    info = _list(b"INFO", [_chunk(b"ifil", struct.pack("<HH", 2, 1)), _chunk(b"INAM", b"b\0")])
    sdta = _list(b"sdta", [_chunk(b"smpl", pool.tobytes())])
    parts = [(b"phdr", phdr), (b"pbag", pbag), (b"pmod", [bytes(10)]), (b"pgen", pgen)]
    parts += [(b"inst", inst), (b"ibag", ibag), (b"imod", [bytes(10)]), (b"igen", igen)]
    pdta = _list(
        b"pdta", [_chunk(tag, b"".join(items)) for tag, items in parts + [(b"shdr", shdr)]]
    )
    body = b"sfbk" + info + sdta + pdta
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


# ----------------------------------------------------------------------------- fault 5


@pytest.mark.parametrize("distinct", [False, True])
def test_zone_bomb_is_refused_in_bounded_time_and_memory(tmp_path, distinct):
    """The 21 kB font of 1,000 preset zones over a 1,000-zone instrument (10^6 zone pairs;
    94 s and 4.2 GB before) is refused by MAX_SF2_ZONES in a second or two, under 1.5 GB of
    address space, from the sampler and from ``rmod-library soundfont``."""
    path = bomb(tmp_path / "bomb.sf2", distinct=distinct)
    assert path.stat().st_size < 25_000
    code = f"""
import sys
from rmod.cli.library import main
sys.exit(main(["soundfont", {str(path)!r}, "--out", {str(tmp_path / "out")!r}]))
"""
    start = time.perf_counter()
    proc = run_capped(code, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"MAX_SF2_ZONES = {MAX_SF2_ZONES}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert time.perf_counter() - start < 30


def test_equal_preset_zones_are_built_once(tmp_path, monkeypatch):
    """A preset repeating an instrument under equal generators builds its zones once: the
    work is that of the distinct zones (the quadratic cost is gone), while every zone
    still plays."""
    path = bomb(tmp_path / "small.sf2", n_zones=50, n_bags=40)
    built = []
    original = SoundFont._zone
    monkeypatch.setattr(SoundFont, "_zone", lambda self, *a: built.append(1) or original(self, *a))
    sf = SoundFont(path)
    assert len(built) == 50
    assert len(sf.zones(0, 0, 7, 100)) == 40  # key 7: zone 7 of each of the 40 preset zones


def test_a_font_named_by_the_environment_is_parsed_once_per_version(tmp_path, monkeypatch):
    """$RMOD_SOUNDFONTS fonts are hashed and parsed when first seen (a new process, as every
    rmod command and build worker is, finds them in the cache folder), again only when the
    file changes."""
    (tmp_path / "fonts").mkdir()
    kit = _kit(tmp_path / "fonts" / "my kit.sf2")
    monkeypatch.setenv("RMOD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RMOD_SOUNDFONTS", str(kit))
    parsed = []
    original = sf2_module.SoundFont
    monkeypatch.setattr(sf2_module, "SoundFont", lambda p=None: parsed.append(p) or original(p))
    for _ in range(3):
        load_soundfont.cache_clear()  # what a new process starts with
        fonts = find_fonts()
    assert [f.name for f in fonts] == ["my kit.sf2", "TimGM6mb.sf2"]
    assert parsed == [str(kit)]
    assert len(fonts[0].sha256) == 64
    _kit(kit, TZone(_hit(seed=9), root=36, keys=(36, 36)))  # a new version of the file
    os.utime(kit, ns=(time.time_ns(), time.time_ns() + 10**9))
    load_soundfont.cache_clear()
    changed = find_fonts()
    assert parsed == [str(kit), str(kit)] and changed[0].sha256 != fonts[0].sha256
    assert Sources(changed).tag() != Sources(fonts).tag()


# ----------------------------------------------------------------------------- fault 7


def test_malformed_samples_are_one_line_errors_or_left_out(tmp_path):
    """Sample rate 0, a sample past the end of the data: SoundFontError naming the sample
    and the limit. A silent or empty sample never sounds (its zone is passed over)."""
    rate0 = _kit(tmp_path / "rate0.sf2")
    _patch_sample(rate0, 0, rate=0)
    with pytest.raises(SoundFontError, match=r"rate0.sf2: sample 's0' declares 0 Hz.*SAMPLE_RATE"):
        SoundFont(rate0)
    past = _kit(tmp_path / "past.sf2")
    _patch_sample(past, 2, end=10**9)
    with pytest.raises(SoundFontError, match=r"past.sf2: sample 's2' .* outside the sample data"):
        SoundFont(past)
    empty = _kit(tmp_path / "empty.sf2")
    _patch_sample(empty, 1, end=2046)  # sample 1 starts at 2046: zero samples long
    silent = _kit(tmp_path / "silent.sf2", TZone(np.zeros(2000), root=36, keys=(36, 36)))
    for path, key in ((empty, 38), (silent, 36)):
        sf = SoundFont(path)
        assert sf.zones(0, 0, key, 100) == []
        assert render_note(sf, 0, 0, key, 100, 0.5, SR).size == 0
        assert sf.zones(0, 0, 42, 100)  # the other keys still play


@pytest.mark.parametrize("tune", [32767, -32767, -32768])
def test_out_of_range_tuning_is_clamped(tmp_path, tune):
    """A coarse tune of +-32767 semitones (an OverflowError traceback before) is clamped to
    the specification's +-120 semitones: the note renders, finite."""
    path = _kit(tmp_path / "tune.sf2", TZone(_hit(), root=36, keys=(36, 36), gens={51: tune}))
    sf = SoundFont(path)
    (zone,) = sf.zones(0, 0, 36, 100)
    assert zone.tune_cents == (12000 if tune > 0 else -12000)
    x = render_note(sf, 0, 0, 36, 100, 0.5, SR)
    assert np.all(np.isfinite(x))


def _cli(argv: list[str], env: dict[str, str], timeout: float = 120):
    code = f"import sys\nfrom rmod.cli.library import main\nsys.exit(main({argv!r}))"
    return run_capped(code, timeout=timeout, env=env)


@pytest.mark.parametrize("case", ["rate0", "past", "not_sf2", "loop", "fifo"])
def test_bad_fonts_in_the_environment_are_one_line_errors(tmp_path, case):
    """A broken font, a link loop (``loop.sf2 -> loop.sf2``) or a FIFO in a folder
    $RMOD_SOUNDFONTS names: every built-in-library command stops with one line naming the
    file and the variable (a traceback, exit 3, before), without generating anything."""
    folder = tmp_path / "fonts"
    folder.mkdir()
    bad = folder / f"{case}.sf2"
    if case == "loop":
        bad.symlink_to(bad)
    elif case == "fifo":
        os.mkfifo(bad)
    elif case == "not_sf2":
        bad.write_bytes(b"RIFF\x04\0\0\0sfbk")
    else:
        _kit(bad)
        _patch_sample(bad, 0, **({"rate": 0} if case == "rate0" else {"end": 10**9}))
    env = {"RMOD_SOUNDFONTS": str(folder), "RMOD_CACHE_DIR": str(tmp_path / "cache")}
    proc = _cli(["info"], env)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(bad) in line and "RMOD_SOUNDFONTS" in line, line
    assert not list((tmp_path / "cache").glob("builtin-v*"))


def test_bad_fonts_given_to_rmod_library_soundfont_are_one_line_errors(tmp_path):
    rate0 = _kit(tmp_path / "rate0.sf2")
    _patch_sample(rate0, 0, rate=0)
    loop = tmp_path / "loop.sf2"
    loop.symlink_to(loop)
    for path, words in ((rate0, "declares 0 Hz"), (loop, "symbolic link loop")):
        proc = _cli(["soundfont", str(path), "--out", str(tmp_path / "out")], {})
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert str(path) in line and words in line, line


def test_seeded_mutations_of_a_font_end_in_a_font_or_one_error(tmp_path):
    """300 seeded mutations of a small font's header block and sample headers (byte flips,
    extreme words): each parse ends in a SoundFont whose notes render finite, or in a
    SoundFontError, within a memory cap and a time budget."""
    base = tmp_path / "base.sf2"
    _kit(base)
    code = f"""
import numpy as np, time
from pathlib import Path
from rmod.library.builtin.sf2 import SoundFont, SoundFontError, render_note
data = Path({str(base)!r}).read_bytes()
start = data.index(b"pdta")
rng = np.random.default_rng(20)
ok = refused = 0
slowest = 0.0
for k in range(300):
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        at = int(rng.integers(start, len(buf) - 4))
        if rng.random() < 0.5:
            buf[at] = int(rng.integers(0, 256))
        else:
            buf[at:at + 4] = bytes(rng.choice([b"\\xff\\xff\\xff\\xff", b"\\0\\0\\0\\0",
                                                b"\\xff\\x7f\\0\\0", b"\\0\\x80\\0\\0"]))
    path = Path({str(tmp_path)!r}) / "m.sf2"
    path.write_bytes(bytes(buf))
    t = time.perf_counter()
    try:
        sf = SoundFont(path)
    except SoundFontError as exc:
        assert len(str(exc).splitlines()) == 1 and str(path) in str(exc)
        refused += 1
    else:
        for (bank, program) in sf.names:
            for key in (36, 38, 42):
                x = render_note(sf, bank, program, key, 100, 0.3, 44100)
                assert np.all(np.isfinite(x))
        ok += 1
    slowest = max(slowest, time.perf_counter() - t)
print(ok, refused, slowest)
"""
    proc = run_capped(code, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok, refused, slowest = proc.stdout.split()
    assert int(ok) + int(refused) == 300 and int(ok) > 0 and int(refused) > 0
    assert float(slowest) < 2.0


# ----------------------------------------------------------------------------- fault 11


def _installed(names: tuple[str, ...]) -> list[Path]:
    """Installed soundfonts of these file names: the system folders, plus the files
    $RMOD_TEST_SOUNDFONTS lists (to try sources this machine has not installed)."""
    extra = [Path(p) for p in os.environ.get("RMOD_TEST_SOUNDFONTS", "").split(os.pathsep) if p]
    found = [Path(d) / n for d in SEARCH_DIRS for n in names] + extra
    return [p for p in found if p.is_file() and p.name in names]


KITS = ("Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2")
GM = ("FluidR3_GM.sf2", "MuseScore_General_Full.sf2", "MuseScore_General.sf2")


def _combinations(kits: bool) -> list[tuple[str, list[Path], bool]]:
    """(name, fonts for $RMOD_SOUNDFONTS, espeak on) for the source combinations this
    machine can make: none (pretty_midi's font alone), each General MIDI font, with the AVL
    kits too when ``kits`` (they play drums only), each with espeak-ng on and off when it
    is installed."""
    from rmod.library.builtin.voice import available

    sets = [("none", [])] + [(p.stem, [p]) for p in _installed(GM)]
    avl = _installed(KITS)
    if kits and avl:
        sets += [(f"AVL+{name}" if fonts else "AVL", avl + fonts) for name, fonts in sets]
    return [(n, f, e) for n, f in sets for e in ((False, True) if available() else (False,))]


def _sources(monkeypatch, fonts: list[Path], espeak: bool) -> Sources:
    """The sources of a combination (``RMOD_SOUNDFONTS`` and ``RMOD_ESPEAK`` set, so the
    library's own detection sees them too)."""
    from rmod.library.builtin.fonts import espeak_version

    monkeypatch.setenv("RMOD_SOUNDFONTS", os.pathsep.join(map(str, fonts)))
    monkeypatch.setenv("RMOD_ESPEAK", "1" if espeak else "0")
    return Sources(find_fonts(), espeak_version() if espeak else None)


LOOP_SOURCES = _combinations(kits=False)
ALL_SOURCES = _combinations(kits=True)  # benchmarks/source_combinations.py builds each


def test_the_espeak_switch(monkeypatch, tmp_path):
    monkeypatch.setenv("RMOD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RMOD_SOUNDFONTS", "")
    monkeypatch.setenv("RMOD_ESPEAK", "0")
    off = Sources.detect()
    assert off.espeak is None and "espeak-ng" not in off.record()
    assert [f.name for f in off.fonts] == ["TimGM6mb.sf2"]


def _id(value) -> str:
    return value if isinstance(value, str) else "espeak" if value is True else "-"


@pytest.mark.parametrize(("name", "fonts", "espeak"), LOOP_SOURCES, ids=_id)
def test_loops_have_no_silent_stretch_whatever_the_sources(
    monkeypatch, tmp_path, name, fonts, espeak
):
    """The first 14 vocal and 2 other loops of each melodic source combination this machine
    can make (the AVL kits play no loops) keep every 1 s window within QUIET_WINDOW_DB of the peak, so every second of a
    built-in loop is louder than -45 dBFS (test_builtin's check). Without espeak-ng, vocal
    loops 1, 5 and 13 had a silent second (down to -82 dBFS) with any General MIDI font."""
    monkeypatch.setenv("RMOD_CACHE_DIR", str(tmp_path))
    sources = _sources(monkeypatch, fonts, espeak)
    config = BuiltinConfig()
    for cls in INSTRUMENTS:
        for index in range(14 if cls == "vocal" else 2):
            x = render_item(cls, index, config, sources).audio
            assert quietest_window_db(x, SR) >= -QUIET_WINDOW_DB, (name, cls, index)
            seconds = x[: 4 * SR].astype(np.float64).reshape(4, -1)
            assert np.all(10 * np.log10(np.mean(seconds**2, axis=1)) > -45), (cls, index)


def test_quietest_window_sees_a_gap_anywhere_in_the_loop():
    t = np.arange(5 * SR) / SR
    x = np.sin(2 * np.pi * 220 * t)
    assert quietest_window_db(x, SR) == pytest.approx(-3.0, abs=0.1)
    gap = x.copy()
    gap[int(4.2 * SR) :] = 0
    gap[: int(0.6 * SR)] = 0  # 1.4 s of silence across the loop's end
    assert quietest_window_db(gap, SR) < -100
    assert quietest_window_db(np.zeros(100), SR) == -np.inf
