"""The example engine: draws follow the recipe, renders are exact, finite, reproducible."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from rmod import DRUMS, INSTRUMENTS
from rmod.audio import encode_audio, peak_db
from rmod.example.draw import ExampleError, ExampleParams, draw_example, example_id, example_rng
from rmod.example.pattern import grid_to_samples, midi_bytes, read_midi_grid
from rmod.example.render import layered_oneshot, render_example
from rmod.example.sample_store import SampleStore
from rmod.inspect.example_folder import write_rendered
from rmod.inspect.overview import (
    DRUM_CONTRIBUTION_RANGE_DB,
    ONSET_SNR_MIN_DB,
    contribution_db,
    onset_snr_db,
)
from rmod.recipe.spec import Recipe, load_recipe


def fast_recipe(name: str = "rmod-paper") -> Recipe:
    """The shipped recipe with a 2 s mixture (1 tick per grid point) to keep tests quick."""
    d = load_recipe(name).to_dict()
    d["audio"]["mixture_seconds"] = 2.0
    d["audio"]["target_seconds"] = 1.0
    d["instruments"]["segment_seconds"] = {"choice": [2.0, 1.0]}
    return Recipe.from_dict(d, source="fast")


class OnlyDrums:
    """A library view without loops for some instruments (delegates everything else)."""

    def __init__(self, lib, hide: tuple[str, ...]):
        self.lib, self.hide = lib, hide
        self.fingerprint = lib.fingerprint

    def ids(self, cls, split):
        return () if cls in self.hide else self.lib.ids(cls, split)

    def __getattr__(self, name):
        return getattr(self.lib, name)


@pytest.fixture(scope="module")
def paper():
    return load_recipe(None)


@pytest.fixture(scope="module")
def rendered(paper, small_library):
    params = draw_example(paper, small_library, 5, "train", 3)
    return params, render_example(params, paper, small_library)


def test_example_rng_and_id():
    a = example_rng(1, "train", 7).integers(0, 2**62, 4)
    assert np.array_equal(a, example_rng(1, "train", 7).integers(0, 2**62, 4))
    for other in (
        example_rng(1, "valid", 7),
        example_rng(1, "train", 8),
        example_rng(2, "train", 7),
    ):
        assert not np.array_equal(a, other.integers(0, 2**62, 4))
    assert example_id("train", 42) == "train-00000042"
    with pytest.raises(ExampleError, match="unknown split"):
        example_rng(1, "dev", 0)
    for seed, index in ((-1, 0), (0, -3)):
        with pytest.raises(ExampleError, match="non-negative"):
            example_rng(seed, "train", index)


def test_draws_follow_the_recipe_over_2000_examples(paper, small_library):
    n = 2000
    drops = Counter()
    hits = {c: Counter() for c in DRUMS}
    pairs = Counter()
    semis = {i: Counter() for i in INSTRUMENTS}
    segments = Counter()
    for index in range(n):
        p = draw_example(paper, small_library, 0, "train", index)
        for cls, d in p.drums.items():
            hits[cls][len(d.grid)] += 1
            assert len(set(d.grid)) == len(d.grid)
            assert all(0 <= g < 1920 for g in d.grid)
            assert d.sample_ids[0] != d.sample_ids[1]
            assert all(i in small_library.ids(cls, "train") for i in d.sample_ids)
            pairs[d.weights] += 1
        for name, inst in p.instruments.items():
            drops[name] += inst.dropped
            if inst.plays:
                semis[name][inst.semitones] += 1
                segments[inst.segment_seconds] += 1
                assert name in p.mix
            else:
                assert name not in p.mix
    sigma = math.sqrt(0.3 * 0.7 / n)
    for name in INSTRUMENTS:
        assert abs(drops[name] / n - 0.3) < 4 * sigma, (name, drops[name])
    assert set(hits["kick"]) == {2, 3, 4} and set(hits["snare"]) == {2, 3, 4}
    assert set(hits["hihat"]) == set(range(14, 19))
    for cls, k in (("kick", 3), ("snare", 3), ("hihat", 5)):  # uniform over the range
        sd = math.sqrt((1 / k) * (1 - 1 / k) / n)
        assert all(abs(c / n - 1 / k) < 4 * sd for c in hits[cls].values()), (cls, hits[cls])
    assert set(pairs) == {(0.8, 0.2), (0.7, 0.3), (0.6, 0.4)}
    assert all(abs(c / (3 * n) - 1 / 3) < 0.03 for c in pairs.values())
    assert set(semis["bass"]) == set(range(-6, 3))
    for name in ("piano", "guitar", "vocal"):
        assert set(semis[name]) == set(range(-12, 13))
    assert set(segments) == {4.0, 2.0}


def test_params_round_trip_through_json(paper, small_library):
    p = draw_example(paper, small_library, 9, "valid", 2)
    back = ExampleParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p
    assert back.sources()["kick"] == list(p.drums["kick"].sample_ids)
    with pytest.raises(ValueError, match=r"params.drums.kick.weights"):
        bad = p.to_dict()
        bad["drums"]["kick"]["weights"] = ["a", 0.2]
        ExampleParams.from_dict(bad)


def test_rendered_outputs_are_exact_and_unclipped(paper, rendered):
    params, out = rendered
    assert out.mixture.shape == (2, 176400) and out.mixture.dtype == np.float32
    assert np.isfinite(out.mixture).all()
    assert abs(peak_db(out.mixture) - paper.master.ceiling_dbfs) < 0.01
    assert peak_db(out.mixture) <= paper.master.ceiling_dbfs
    assert set(out.oneshots) == set(DRUMS)
    for shot in out.oneshots.values():  # the small library's sources are mono: so are targets
        assert shot.shape == (1, 88200) and np.isfinite(shot).all() and peak_db(shot) < 0.0
    buses = {f"{name}_bus" for name in ("delay", "reverb") if getattr(params.buses, name).active}
    dry = {f"{c}_dry" for c in DRUMS}
    assert set(out.stems) == set(params.mix) | buses | dry
    assert all(s.shape == (2, 176400) for k, s in out.stems.items() if k not in dry)
    assert all(out.stems[k].shape == (1, 176400) for k in dry)
    assert out.sample_rate == 44100


def test_written_files_flac_and_wav(rendered, tmp_path):
    import soundfile as sf

    params, out = rendered
    files = write_rendered(out, tmp_path, "flac")
    assert {"mixture.flac", "kick.flac", "pattern.mid", "stems/kick_dry.flac"} <= set(files)
    info = sf.info(str(tmp_path / "mixture.flac"))
    assert (info.format, info.subtype, info.channels, info.frames) == ("FLAC", "PCM_16", 2, 176400)
    data, _ = sf.read(str(tmp_path / "mixture.flac"), dtype="int16")
    assert np.abs(data.astype(np.int32)).max() < 32767  # nothing at full scale


def test_dry_drum_onsets_exact_in_render(paper, small_library, rendered):
    params, out = rendered
    for cls in DRUMS:
        pos = grid_to_samples(params.drums[cls].grid, 1920, 176400)
        assert np.array_equal(out.onsets[cls], pos)
        track = out.stems[f"{cls}_dry"]
        assert not track[:, : pos[0]].any()
        shot = layered_oneshot(params.drums[cls], paper, SampleStore(small_library, 44100))
        fade = round(paper.drums.retrigger_fade_ms * 44100 / 1000)
        checked = 0
        for k, p in enumerate(pos):  # each onset starts the layered one-shot at that sample
            end = pos[k + 1] - fade if k + 1 < len(pos) else 176400  # before any retrigger fade
            n = min(64, end - p, shot.shape[1])
            if n > 0:
                np.testing.assert_array_equal(track[:, p : p + n], shot[:, :n])
                checked += 1
        assert checked >= 1
    assert read_midi_grid(midi_bytes(out.midi), {"kick": 36, "snare": 38, "hihat": 42}, 2) == {
        c: params.drums[c].grid for c in DRUMS
    }


def test_same_seed_same_bytes(small_library):
    recipe = fast_recipe()
    a = draw_example(recipe, small_library, 11, "test", 1)
    assert draw_example(recipe, small_library, 11, "test", 1) == a  # a fresh draw, same seed
    b = ExampleParams.from_dict(json.loads(json.dumps(a.to_dict())))
    ra, rb = render_example(a, recipe, small_library), render_example(b, recipe, small_library)
    assert encode_audio(ra.mixture, 44100) == encode_audio(rb.mixture, 44100)
    for cls in DRUMS:
        assert encode_audio(ra.oneshots[cls], 44100) == encode_audio(rb.oneshots[cls], 44100)
    assert ra.mixture.shape == (2, 88200)
    c = draw_example(recipe, small_library, 12, "test", 1)
    assert c != a


def test_missing_drum_class_and_absent_instrument(paper, small_library):
    with pytest.raises(ExampleError, match="no snare one-shots in split 'valid'"):
        draw_example(paper, OnlyDrums(small_library, ("snare",)), 0, "valid", 0)
    lib = OnlyDrums(small_library, ("vocal",))
    p = draw_example(paper, lib, 0, "train", 0)
    assert not p.instruments["vocal"].available and not p.instruments["vocal"].plays
    assert "vocal" not in p.mix and "vocal" not in p.sources()


def test_render_refuses_other_recipe_or_library(paper, small_library):
    p = draw_example(paper, small_library, 0, "train", 0)
    with pytest.raises(ExampleError, match="drawn with recipe"):
        render_example(p, fast_recipe(), small_library)
    other = OnlyDrums(small_library, ())
    other.fingerprint = "0" * 64
    with pytest.raises(ExampleError, match="drawn with library"):
        render_example(p, paper, other)


def test_drums_only_variant(small_library):
    recipe = fast_recipe("rmod-drums-only")
    p = draw_example(recipe, small_library, 3, "train", 0)
    assert p.instruments == {} and tuple(p.mix) == DRUMS
    out = render_example(p, recipe, small_library)
    buses = {f"{name}_bus" for name in ("delay", "reverb") if getattr(p.buses, name).active}
    assert set(out.stems) == set(DRUMS) | buses | {f"{c}_dry" for c in DRUMS}
    drums = contribution_db(out.stems)["drums"]  # the bus returns are the rest of the mix
    assert drums == pytest.approx(0.0, abs=1e-6) if not buses else -3.0 < drums < 0.0


def test_default_levels_keep_drums_audible(paper, builtin_library):
    """Listen-by-proxy on the built-in library: the documented level ranges hold."""
    lo, hi = DRUM_CONTRIBUTION_RANGE_DB["class"]
    d_lo, d_hi = DRUM_CONTRIBUTION_RANGE_DB["drums"]
    for seed in range(4):
        p = draw_example(paper, builtin_library, seed, "train", 0)
        out = render_example(p, paper, builtin_library)
        levels = contribution_db(out.stems)
        for cls in DRUMS:
            assert lo <= levels[cls] <= hi, (seed, cls, levels)
        assert d_lo <= levels["drums"] <= d_hi, (seed, levels)
        snr = onset_snr_db(out.stems, out.onsets, out.sample_rate)
        assert min(snr.values()) >= ONSET_SNR_MIN_DB, (seed, snr)


def test_loud_stems_share_one_gain_and_are_not_clipped(tmp_path):
    import soundfile as sf

    from rmod.example.pattern import build_midi
    from rmod.example.render import Rendered

    n = 4410
    t = np.arange(n) / 44100.0
    tone = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    stems = {"piano": np.stack([1.6 * tone, 1.6 * tone]), "kick": np.stack([0.4 * tone] * 2)}
    rendered = Rendered(
        mixture=np.stack([0.5 * tone] * 2),
        oneshots={"kick": np.stack([0.5 * tone] * 2)},
        stems=stems,
        onsets={},
        midi=build_midi({"kick": (0,)}, {"kick": 36}, 1920, 4.0, 120.0, 480, 100),
        sample_rate=44100,
    )
    write_rendered(rendered, tmp_path)
    piano, _ = sf.read(tmp_path / "stems" / "piano.wav", dtype="int16")
    kick, _ = sf.read(tmp_path / "stems" / "kick.wav", dtype="int16")
    assert int(np.abs(piano).max()) <= 32767
    # only the crests touch full scale; clipping a 1.6x sine would flatten ~29 % of samples
    assert np.count_nonzero(np.abs(piano) >= 32767) < 0.01 * piano.size
    # relative level kept: 0.4 / 1.6 = -12.04 dB
    ratio_db = 20 * np.log10(np.abs(kick).max() / np.abs(piano).max())
    assert abs(ratio_db - 20 * np.log10(0.25)) < 0.01


def test_mixed_mono_and_stereo_sources_render(tmp_path):
    """A library where every class has a mono and a stereo sound: layering a mono with a
    stereo one-shot gives a stereo target, two mono ones a mono target; stereo loops are
    processed in stereo; the mixture is stereo."""
    from rmod.audio import write_audio
    from rmod.library.catalog import Library
    from rmod.library.indexing import IndexLimits, index_library
    from tests.conftest import synth_loop, synth_oneshot

    rng = np.random.default_rng(8)
    src = tmp_path / "src"
    for cls in (*DRUMS, *INSTRUMENTS):
        for k, channels in enumerate((1, 2, 1)):
            make = synth_oneshot if cls in DRUMS else synth_loop
            mono = make(cls, rng, 44100)
            audio = mono if channels == 1 else np.concatenate([mono, 0.5 * mono[:, ::-1]])
            write_audio(src / cls / f"{cls}{k}.wav", audio, 44100)
    limits = IndexLimits(split_fractions=(1.0, 0.0, 0.0))
    lib = Library.load(index_library(src, tmp_path / "lib.jsonl", limits=limits).library_path)
    recipe = fast_recipe()
    seen = set()
    for index in range(12):
        p = draw_example(recipe, lib, 1, "train", index)
        out = render_example(p, recipe, lib)
        assert out.mixture.shape[0] == 2 and np.isfinite(out.mixture).all()
        for cls in DRUMS:
            channels = max(lib.entry(i).channels for i in p.drums[cls].sample_ids)
            assert out.oneshots[cls].shape[0] == channels
            seen.add(channels)
        for name, inst in p.instruments.items():
            if inst.plays:
                assert out.stems[name].shape[0] == 2
    assert seen == {1, 2}
