"""VGGish equals torchvggish's outputs (network and end to end), the resampler equals resampy's
kaiser_best, the pad rule gives one example per one-shot, and files load with weights_only."""

from __future__ import annotations

import fractions
import json
import sys
import types
import zipfile

import numpy as np
import pytest
import torch

from dose_model.fad import logmel
from dose_model.fad.embedder import FadError, load_embedder
from dose_model.fad.resample import kaiser_best_table, resample
from dose_model.fad.vggish import load_pca, load_vggish
from tests.dose_fixtures import REFERENCE_DIR

REF = REFERENCE_DIR
WEIGHTS = REF / "vggish_narrow.pth"
PCA = REF / "vggish_narrow_pca.pth"
CLIPS = {"long_44k_stereo": 44100, "exact_16k_mono": 16000, "oneshot_44k_mono": 44100}
OUTPUTS = {
    "pre_relu": "embedding_pre_relu",
    "relu": "embedding_relu",
    "postprocessed": "postprocessed",
}
#: How resampy summed each reference clip: float32 audio gives float32 sums (the long clip);
#: the one-shot was resampled from float64. The 16 kHz clip is not resampled.
FLOAT32_SUMS = {"long_44k_stereo": True, "exact_16k_mono": False, "oneshot_44k_mono": False}


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REF / "vggish_narrow_reference.npz"))


@pytest.fixture(scope="module")
def models():
    return {
        output: load_vggish(WEIGHTS, output=output, pca=PCA if output == "postprocessed" else None)
        for output in OUTPUTS
    }


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_kaiser_best_table_has_resampys_values():
    """Entries of resampy 0.4.3's shipped data/kaiser_best.npz (409,601 values)."""
    table = kaiser_best_table()
    assert table.shape == (409601,)
    shipped = {0: 0.9173473712608761, 4096: 0.6308682827433317, 8192: 0.08152330317945146,
               82043: -0.013698770925946954, 307104: 0.0001221049203466254,
               409600: -5.2887095330227954e-08}  # fmt: skip
    for index, value in shipped.items():
        assert table[index] == pytest.approx(value, rel=1e-12, abs=1e-16), index


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("samples", [1, 7, 399, 4410, 20000])
def test_resample_length_and_a_sine_survives(sr_in, samples):
    x = np.sin(2 * np.pi * 1000.0 * np.arange(samples) / sr_in)
    y = resample(x, sr_in, 16000)
    assert y.shape == (samples * 16000 // sr_in,)
    assert np.isfinite(y).all()
    y32 = resample(x.astype(np.float32), sr_in, 16000, float32_sums=True)
    assert y32.dtype == np.float32 and y32.shape == y.shape
    if y.size:
        assert np.abs(y32 - y).max() < 3e-6  # float32 round-off of ~280 summed taps
    # away from the ends (the filter spans ~50 zero crossings), the 1 kHz tone is intact
    inner = slice(200, y.size - 200)
    if y[inner].size > 100:
        want = np.sin(2 * np.pi * 1000.0 * np.arange(y.size) / 16000)
        assert np.abs(y[inner] - want[inner]).max() < 1e-3


def test_resample_removes_what_the_lower_rate_cannot_hold():
    sr = 44100
    x = np.sin(2 * np.pi * 12000.0 * np.arange(sr) / sr)  # above 8 kHz: must vanish
    y = resample(x, sr, 16000)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 1e-4


@pytest.mark.parametrize("clip", CLIPS)
def test_log_mel_examples_equal_the_reference(clip, reference):
    got = logmel.examples(reference[f"{clip}_audio"], CLIPS[clip], float32_sums=FLOAT32_SUMS[clip])
    want = reference[f"{clip}_examples"][:, 0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_network_equals_the_reference(clip, output, reference, models):
    got = models[output].embed_examples(reference[f"{clip}_examples"][:, 0])
    want = reference[f"{clip}_{OUTPUTS[output]}"]
    assert got.dtype == np.float32 and got.shape == want.shape
    if output == "postprocessed":
        np.testing.assert_array_equal(got, want)  # 8-bit levels, all equal
    else:
        assert _relative(got, want) < 1e-5


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("output", ["pre_relu", "relu"])
def test_end_to_end_equals_the_reference(clip, output, reference):
    model = load_vggish(WEIGHTS, output=output, float32_sums=FLOAT32_SUMS[clip])
    got = model.embed(reference[f"{clip}_audio"], CLIPS[clip])
    assert _relative(got, reference[f"{clip}_{OUTPUTS[output]}"]) < 1e-5


def test_the_other_summation_stays_within_1e5_of_the_reference(reference, models):
    """The resampler's float32-vs-float64 sums change a log-mel value by < 2e-4 and the
    embeddings by < 1e-5 relative (the measured effect is ~1e-6)."""
    for clip in ("long_44k_stereo", "oneshot_44k_mono"):
        other = not FLOAT32_SUMS[clip]
        audio = reference[f"{clip}_audio"]
        examples = logmel.examples(audio, CLIPS[clip], float32_sums=other)
        assert np.abs(examples - reference[f"{clip}_examples"][:, 0]).max() < 2e-4
        got = load_vggish(WEIGHTS, float32_sums=other).embed(audio, CLIPS[clip])
        assert _relative(got, reference[f"{clip}_embedding_pre_relu"]) < 1e-5


def test_widths_are_read_from_the_shapes(models):
    widths = [w for w in json.loads((REF / "vggish_narrow.json").read_text())["widths"] if w != "M"]
    info = models["pre_relu"].info
    assert info.options["widths"] == widths and info.options["hidden"] == 48
    assert (info.name, info.dim, info.sample_rate) == ("vggish", 128, 16000)
    assert len(info.weights_sha256) == 64 and "16000 samples" in info.pad_rule


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("seconds", [0.0001, 0.05, 0.4, 0.99])
def test_a_short_clip_gives_one_window_equal_to_its_zero_padded_self(
    rate, channels, seconds, models
):
    rng = np.random.default_rng(3)
    audio = (0.3 * rng.standard_normal((channels, max(1, round(seconds * rate))))).astype(
        np.float32
    )
    rows = models["pre_relu"].embed(audio, rate)
    assert rows.shape == (1, 128) and rows.dtype == np.float32
    at_16k = resample(audio.mean(axis=0, dtype=np.float32), rate, 16000)
    padded = np.zeros(16000)
    padded[: at_16k.size] = at_16k
    # (the 16 kHz path rounds the resampled signal to float32 once: ~1e-6 differences)
    assert _relative(rows, models["pre_relu"].embed(padded[None], 16000)) < 1e-5


@pytest.mark.parametrize(
    ("samples", "windows"), [(15999, 1), (16000, 1), (30959, 1), (30960, 2), (46320, 3)]
)
def test_windows_are_whole_096_s_examples(samples, windows, models):
    audio = np.full((1, samples), 0.1, dtype=np.float32)
    assert models["relu"].embed(audio, 16000).shape == (windows, 128)


def test_pca_loads_with_weights_only_under_both_numpy_module_names(tmp_path):
    vectors, means = load_pca(PCA, 128)
    assert vectors.shape == (128, 128) and means.shape == (128,)
    # The released file was written by numpy 1 (numpy.core.*); rename the globals in a copy.
    old = tmp_path / "pca_numpy1.pth"
    with zipfile.ZipFile(PCA) as src, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    again = load_pca(old, 128)
    np.testing.assert_array_equal(again[0], vectors)
    np.testing.assert_array_equal(again[1], means)


def test_a_file_with_other_globals_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad_pca.pth"
    torch.save({"pca_eigen_vectors": fractions.Fraction(1, 3), "pca_means": 0}, bad)
    with pytest.raises(FadError, match=r"bad_pca\.pth: not a readable VGGish PCA file"):
        load_pca(bad, 128)
    with pytest.raises(FadError, match=r"PCA shapes"):
        load_pca(PCA, 64)


def test_a_state_dict_of_another_layout_is_refused_by_file_and_key(tmp_path):
    state = torch.load(WEIGHTS, weights_only=True)
    missing = {k: v for k, v in state.items() if k != "embeddings.2.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(FadError, match=r"missing\.pth: .*missing \['embeddings\.2\.bias'\]"):
        load_vggish(tmp_path / "missing.pth")
    state["features.3.weight"] = torch.zeros(16, 9, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(
        FadError, match=r"shape\.pth: features\.3\.weight has shape \[16, 9, 3, 3\]"
    ):
        load_vggish(tmp_path / "shape.pth")


def test_options_are_checked(tmp_path):
    with pytest.raises(FadError, match="PCA file"):
        load_vggish(WEIGHTS, output="postprocessed")
    with pytest.raises(FadError, match="output 'mean'"):
        load_vggish(WEIGHTS, output="mean")


def test_load_embedder_reads_the_spec(monkeypatch):
    model = load_embedder(f"vggish={WEIGHTS}", pad=None, int16=None, output="relu")
    assert model.info.options["output"] == "relu"
    for spec, message in [("vggish", "NAME=WEIGHTS"), ("openl3=x.pth", "unknown model 'openl3'")]:
        with pytest.raises(FadError, match=message):
            load_embedder(spec)
    with pytest.raises(FadError, match="--pad"):
        load_embedder(f"vggish={WEIGHTS}", pad="repeat")
    with pytest.raises(FadError, match="--int16"):
        load_embedder(f"vggish={WEIGHTS}", int16=True)
    # clap: the model module is imported only then, with the CLAP options
    calls = []
    fake = types.ModuleType("dose_model.fad.clap")
    fake.load_clap = lambda path, **options: calls.append((path, options)) or "clap model"
    monkeypatch.setitem(sys.modules, "dose_model.fad.clap", fake)
    assert load_embedder("clap=w.pt", pad="zero", int16=True) == "clap model"
    assert calls == [("w.pt", {"pad": "zero", "int16": True})]
    with pytest.raises(FadError, match="unknown option"):
        load_embedder("clap=w.pt", output="relu")
