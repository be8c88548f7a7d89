"""The built-in library: counts, percussive one-shots, loops, sampler tuning, caching."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from rmod import DRUMS, INSTRUMENTS, SPLITS
from rmod.audio import peak_db, read_audio
from rmod.inspect.quality import high_band_fraction
from rmod.library.builtin import BuiltinConfig, builtin_manifest_path, check_builtin
from rmod.library.builtin.fonts import find_fonts
from rmod.library.builtin.generate import BUILTIN_VERSION, MANIFEST_NAME, Sources, render_item
from rmod.library.builtin.loops import exciter
from rmod.library.builtin.phrases import random_phrase
from rmod.library.builtin.sf2 import load_soundfont, render_zone
from rmod.library.builtin.synth import SYNTHS
from rmod.library.catalog import Library

TINY = BuiltinConfig(n_oneshots=5, n_sf2_oneshots=3, n_loops=2)


def _mono(lib: Library, entry_id: str) -> tuple[np.ndarray, int]:
    audio, sr = read_audio(lib.entry(entry_id).path)
    return audio.mean(axis=0), sr


def _all_ids(lib: Library, cls: str) -> list[str]:
    return [i for s in SPLITS for i in lib.ids(cls, s)]


def test_builtin_counts_and_formats(builtin_library):
    counts = builtin_library.counts()
    for cls in DRUMS:
        assert sum(counts[cls].values()) >= 300, (cls, counts[cls])
    for cls in INSTRUMENTS:
        assert sum(counts[cls].values()) >= 60, (cls, counts[cls])
    for cls in DRUMS + INSTRUMENTS:
        assert all(counts[cls][s] >= 2 for s in SPLITS), (cls, counts[cls])
    hashes = [e.sha256 for e in builtin_library.entries]
    assert len(set(hashes)) == len(hashes)  # distinct sounds
    for e in builtin_library.entries:
        assert (e.sample_rate, e.channels) == (44100, 1)
        if e.cls in INSTRUMENTS:
            assert e.duration >= 4.5, e
        else:
            assert 0.05 <= e.duration <= 2.5, e


def test_builtin_oneshots_are_percussive(builtin_library):
    """Onset in the first 10 ms, a decaying envelope, centroid kick < snare < hi-hat."""
    centroids = {}
    for cls in DRUMS:
        values = []
        for entry_id in _all_ids(builtin_library, cls):
            x, sr = _mono(builtin_library, entry_id)
            a = np.abs(x)
            onset = int(np.argmax(a > 0.1 * a.max()))
            assert onset < 0.010 * sr, (entry_id, onset / sr)
            q = max(1, x.size // 4)
            early = np.sqrt(np.mean(x[:q] ** 2))
            late = np.sqrt(np.mean(x[-q:] ** 2))
            assert late < early * 10 ** (-10 / 20), (entry_id, 20 * np.log10(late / early))
            power = np.abs(np.fft.rfft(x)) ** 2
            freqs = np.fft.rfftfreq(x.size, 1 / sr)
            values.append(float((power * freqs).sum() / power.sum()))
        centroids[cls] = float(np.mean(values))
    assert centroids["kick"] < 400 < centroids["snare"] < 4000 < centroids["hihat"], centroids


def test_builtin_loops_are_sound_all_along(builtin_library):
    """Unclipped, no DC, never silent; bass keeps to the low end while keys, guitars and
    vocals carry a top end (median share of the energy above 5 kHz, listen-by-proxy)."""
    top = {}
    for cls in INSTRUMENTS:
        shares = []
        for entry_id in _all_ids(builtin_library, cls):
            x, sr = _mono(builtin_library, entry_id)
            assert -6.5 <= peak_db(x) <= -0.5, entry_id
            seconds = x[: int(4 * sr)].reshape(4, -1)
            rms = np.sqrt(np.mean(seconds**2, axis=1))
            assert np.all(20 * np.log10(rms + 1e-12) > -45), (entry_id, rms)
            assert abs(np.mean(x)) < 0.01 * np.sqrt(np.mean(x**2)), entry_id  # no DC
            shares.append(high_band_fraction(x[: 1 << 17], sr))  # 3 s: a fast FFT size
        top[cls] = float(np.median(shares))
    assert top["bass"] < 0.01, top
    assert all(top[c] > max(0.01, 3 * top["bass"]) for c in ("piano", "guitar", "vocal")), top
    mono = builtin_library.load_audio(_all_ids(builtin_library, "vocal")[0])
    assert mono.shape[0] == 1 and mono.dtype == np.float32  # the built-in library is mono


def test_exciter_brightens_a_dull_loop():
    """A tone with nothing above 3 kHz gains a top end (harmonics of its upper mids) while
    its body is left alone; seeded, so the same generator gives the same loop."""
    sr = 44100
    t = np.arange(sr) / sr  # 1 s: 220 Hz harmonics up to 2.86 kHz, each 1/k
    x = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 14))
    y = exciter(x, np.random.default_rng(1), sr)
    np.testing.assert_array_equal(y, exciter(x, np.random.default_rng(1), sr))
    assert high_band_fraction(x, sr) < 1e-4
    assert high_band_fraction(y, sr) > 0.03
    added = y - x
    assert high_band_fraction(added, sr, 1000.0) > 0.95  # the body below 1 kHz is untouched
    assert abs(np.mean(y)) < 1e-3 * np.sqrt(np.mean(y**2))  # no DC from the bias


@pytest.mark.parametrize(
    ("program", "key"), [(0, 69), (0, 57), (25, 64), (33, 40), (53, 69), (85, 62)]
)
def test_sampler_plays_in_tune(program, key):
    """Every zone of the note is in tune (layers are checked one by one: two layers a few
    cents apart beat, which moves the peak of their sum)."""
    sf = load_soundfont()
    zones = sf.zones(0, program, key, 100)
    assert zones
    for zone in zones:
        x = render_zone(sf, zone, key, 100, 1.0, 44100)[4410 : 4410 + 32768]
        spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        freqs = np.fft.rfftfreq(x.size, 1 / 44100)
        f0 = 440.0 * 2 ** ((key - 69) / 12)
        band = freqs < 1.5 * f0
        peak = freqs[band][np.argmax(spectrum[band])]
        assert abs(1200 * np.log2(peak / f0)) < 25, (program, key, zone.name, peak, f0)


def test_soundfont_has_the_drum_kits():
    sf = load_soundfont()
    kits = sorted(p for b, p in sf.names if b == 128)
    assert kits == [0, 8, 16, 24, 25, 32, 40, 48]
    assert sf.zones(128, 0, 36) and sf.zones(128, 0, 42)


# (class, index) -> (samples, RMS dB) of TINY's items. When the generator's output changes
# on purpose, bump rmod.library.builtin.generate.BUILTIN_VERSION (or users keep a stale cache) and
# update these values.
# The values are those of the fallback sources (the soundfont pretty_midi ships, no
# espeak-ng), which every machine has. v5 (loops redrawn when they have a silent stretch,
# fonts named by their SHA-256) left these items as v4 made them.
GOLDEN_V5 = {
    ("kick", 0): (4070, -13.126),
    ("snare", 4): (20231, -18.212),
    ("hihat", 1): (3781, -17.599),
    ("bass", 0): (238194, -15.893),
    ("piano", 1): (263247, -20.138),
    ("vocal", 0): (258729, -16.507),
}


def _fallback(monkeypatch) -> Sources:
    monkeypatch.setenv("RMOD_SOUNDFONTS", "")
    return Sources(find_fonts(), None)


def test_generated_audio_matches_the_builtin_version(monkeypatch):
    assert BUILTIN_VERSION == 5, "update GOLDEN_V5 for the new version"
    sources = _fallback(monkeypatch)
    assert [f.name for f in sources.fonts] == ["TimGM6mb.sf2"]
    for (cls, index), (n, rms) in GOLDEN_V5.items():
        x = render_item(cls, index, TINY, sources).audio.astype(np.float64)
        got = (x.size, 10 * np.log10(np.mean(x**2)))
        assert got[0] == n and got[1] == pytest.approx(rms, abs=0.01), (cls, index, got)


def test_synths_and_phrases_are_deterministic():
    for cls, synth in SYNTHS.items():
        a = synth(np.random.default_rng(3))
        b = synth(np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, synth(np.random.default_rng(4))), cls
        assert np.max(np.abs(a)) == pytest.approx(0.9, abs=1e-6)
    for cls in INSTRUMENTS:
        p = random_phrase(cls, np.random.default_rng(11), min_s=4.5)
        assert p == random_phrase(cls, np.random.default_rng(11), min_s=4.5)
        assert p.duration >= 4.5 and p.duration == pytest.approx(p.n_bars * 4 * 60 / p.tempo)
        assert p.notes and all(0 <= n.start < p.duration and n.length > 0 for n in p.notes)
    a, b = render_item("vocal", 1, TINY), render_item("vocal", 1, TINY)
    np.testing.assert_array_equal(a.audio, b.audio)


@pytest.mark.slow
def test_generation_is_deterministic_and_heals(tmp_path, caplog):
    a = builtin_manifest_path(tmp_path / "a", TINY, jobs=2, progress=False)
    b = builtin_manifest_path(tmp_path / "b", TINY, jobs=1, progress=False)
    assert a.name == MANIFEST_NAME and a.parent.name.startswith("builtin-v")
    original = a.read_bytes()
    assert original == b.read_bytes()  # same bytes for any number of workers
    lib = Library.load(a)
    assert sum(sum(v.values()) for v in lib.counts().values()) == 3 * 5 + 4 * 2

    victim = lib.entries[3].path
    with caplog.at_level(logging.WARNING, logger="rmod.library.builtin"):
        (tmp_path / "a" / f".{a.parent.name}.tmp-99999").mkdir()  # debris of a dead process
        Path(victim).unlink()
        assert "lacks" in check_builtin(a)
        assert builtin_manifest_path(tmp_path / "a", TINY, jobs=1, progress=False) == a
    assert "regenerating it" in caplog.text
    assert check_builtin(a) is None and a.read_bytes() == original

    with open(lib.entries[0].path, "ab") as fh:  # a damaged file (size changed)
        fh.write(b"\0" * 10)
    assert "damaged file" in check_builtin(a)
    a.write_text(a.read_text()[:-40])  # a truncated manifest
    assert "damaged manifest" in check_builtin(a)
    builtin_manifest_path(tmp_path / "a", TINY, jobs=1, progress=False)
    assert check_builtin(a) is None and a.read_bytes() == original
    leftovers = [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_concurrent_first_use_generates_once(tmp_path, caplog):
    results = []

    def use():
        results.append(builtin_manifest_path(tmp_path, TINY, jobs=1, progress=False))

    with caplog.at_level(logging.INFO, logger="rmod.library.builtin"):
        threads = [threading.Thread(target=use) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert check_builtin(results[0]) is None
    assert caplog.text.count("generating the built-in library") == 1


def test_load_none_uses_the_cache_dir(monkeypatch, tmp_path, builtin_library):
    assert Library.load(None).fingerprint == builtin_library.fingerprint
    monkeypatch.setenv("RMOD_CACHE_DIR", str(tmp_path))
    from rmod.library.builtin import cache_root

    assert cache_root() == tmp_path


def test_builtin_families_and_sources(builtin_library):
    """Recorded one-shots carry their font and family; no family spans two splits; the
    sources found on this machine are all used."""
    from rmod.library.families import families_span_one_split, source_counts

    assert families_span_one_split(builtin_library) == []
    sources = source_counts(builtin_library)
    for font in find_fonts():
        assert f"sf2:{font.name}" in sources, (font.name, sorted(sources))
    assert set(sources["synth"]) == set(DRUMS)
    for e in builtin_library.entries:
        if e.cls in DRUMS:
            assert e.source.startswith("sf2:") == bool(e.family), e
        else:
            assert e.source and not e.family, e


def test_soundfonts_named_by_the_environment(monkeypatch, tmp_path):
    """$RMOD_SOUNDFONTS replaces the search; a font without bank 128 counts as drum kits,
    and the sources tag (hence the cache folder) changes with the fonts."""
    from tests.sf2_fixture import TPreset, TZone, write_sf2

    kit = tmp_path / "my kit.sf2"
    hit = np.random.default_rng(1).uniform(-0.5, 0.5, 2000) * np.exp(-np.arange(2000) / 300)
    write_sf2(kit, [TPreset("kit", 0, 0, [TZone(hit, root=36, keys=(36, 36))])])
    fallback = _fallback(monkeypatch)
    monkeypatch.setenv("RMOD_SOUNDFONTS", str(tmp_path))
    found = find_fonts()
    assert [(f.name, f.role) for f in found] == [("my kit.sf2", "kits"), ("TimGM6mb.sf2", "gm")]
    with_kit = Sources(found, None)
    assert with_kit.tag() != fallback.tag()
    assert TINY.folder_name(with_kit) != TINY.folder_name(fallback)
    item = render_item("kick", 0, TINY, with_kit)
    assert item.source == "sf2:my kit.sf2" and item.family == "kick/my kit.sf2:0:0:36"
    kit_only = Sources(found[:1], None)
    copy = render_item("kick", 1, TINY, kit_only)  # the only base, detuned
    assert copy.family == item.family  # a copy of the recording shares its family
    assert copy.audio.size != item.audio.size or not np.array_equal(copy.audio, item.audio)


def test_loops_use_the_best_font_that_has_the_class(monkeypatch, tmp_path):
    """A General MIDI font named by $RMOD_SOUNDFONTS plays the classes it has programs for;
    the others fall back to the next font (pretty_midi's)."""
    from tests.sf2_fixture import TPreset, TZone, write_sf2

    tone = np.sin(2 * np.pi * np.arange(100) / 100)
    gm = tmp_path / "bass only.sf2"
    write_sf2(
        gm,
        [
            TPreset("kit", 128, 0, [TZone(tone.repeat(20), root=36, keys=(36, 36))]),
            TPreset("bass", 0, 33, [TZone(tone, root=69, loop=(0, 100))]),
        ],
    )
    monkeypatch.setenv("RMOD_SOUNDFONTS", str(gm))
    sources = Sources(find_fonts(), None)
    assert [(f.name, f.role) for f in sources.fonts] == [
        ("bass only.sf2", "gm"),
        ("TimGM6mb.sf2", "gm"),
    ]
    assert sources.melodic("bass") == str(gm)
    assert sources.melodic("piano").endswith("TimGM6mb.sf2")
    assert render_item("bass", 0, TINY, sources).source == "sf2:bass only.sf2"
