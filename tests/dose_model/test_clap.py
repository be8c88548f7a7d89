"""CLAP embedder conformance with LAION-CLAP 1.1.7 (fixtures in tests/fixtures/reference),
config read from the file, pad and int16 rules, windows of long clips, resampling, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dose_model.fad.clap import (
    ClapWeightsError,
    audio_state,
    config_from_shapes,
    int16_round_trip,
    load_clap,
    pad_window,
    resample_to,
    split_windows,
)
from dose_model.fad.htsat import ClapAudioNetwork
from tests.dose_fixtures import REFERENCE_DIR

CLAP_PT = REFERENCE_DIR / "clap_narrow.pt"
CLAP_JSON = REFERENCE_DIR / "clap_narrow.json"
CLAP_REFERENCE = REFERENCE_DIR / "clap_narrow_reference.npz"
SHAPES = {name: REFERENCE_DIR / f"htsat_{name}_state_dict_shapes.json" for name in ("tiny", "base")}
REL_TOL = 2e-5
W = 480_000


def max_rel_error(actual, expected) -> float:
    """max |actual - expected| over max |expected| (float64)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(CLAP_REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def embedders():
    cache = {}

    def get(pad: str = "repeat", int16: bool = False):
        if (pad, int16) not in cache:
            cache[pad, int16] = load_clap(CLAP_PT, pad=pad, int16=int16)
        return cache[pad, int16]

    return get


def test_intermediates_match_reference(embedders, ref):
    network = embedders().network
    wave = torch.from_numpy(ref["long_48k_audio"][:W])[None]
    with torch.inference_mode():
        log_mel = network.audio_branch.log_mel(wave)
        normalized = network.audio_branch.normalize(log_mel)
        image = network.audio_branch.to_image(normalized)
        pooled = network.audio_branch.pool(image)
        projected = network.audio_projection(pooled)
    for name, value in [
        ("long_48k_logmel", log_mel),
        ("long_48k_bn0", normalized),
        ("long_48k_swin_input", image),
        ("long_48k_pooled", pooled),
        ("long_48k_projected", projected),
    ]:
        assert max_rel_error(value.numpy(), ref[name]) < REL_TOL, name


@pytest.mark.parametrize(
    ("audio", "pad", "int16", "expected"),
    [
        ("long_48k_audio", "repeat", False, "long_48k_embedding"),
        ("long_48k_audio", "repeat", True, "long_48k_int16_embedding"),
        ("oneshot_48k_audio", "repeat", False, "oneshot_repeatpad_embedding"),
        ("oneshot_48k_audio", "zero", False, "oneshot_zeropad_embedding"),
        ("oneshot_48k_audio", "zero", True, "oneshot_int16_zeropad_embedding"),
        ("oneshot_48k_audio", "repeat", True, "oneshot_int16_repeatpad_embedding"),
    ],
)
def test_embeddings_match_reference(embedders, ref, audio, pad, int16, expected):
    embedder = embedders(pad, int16)
    rows = embedder.embed(ref[audio][None], 48_000)
    assert rows.dtype == np.float32
    assert rows.shape == ((2 if audio.startswith("long") else 1), 32)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    assert max_rel_error(rows[0], ref[expected]) < REL_TOL


def test_batch_is_one_forward_equal_to_reference(embedders, ref):
    rows = embedders().embed_windows(ref["batch_audio"])
    assert max_rel_error(rows, ref["batch_embedding"]) < REL_TOL
    assert max_rel_error(rows, ref["batch_embedding_single"]) < REL_TOL


def test_long_clip_windows_cover_it_without_padding(embedders, ref):
    """10.5 s: the first 10 s and the final 10 s, both plain audio (nothing tiled)."""
    audio = ref["long_48k_audio"]
    embedder = embedders()
    windows = embedder.windows(audio, 48_000)
    assert windows.shape == (2, W)
    np.testing.assert_array_equal(windows[0], audio[:W])
    np.testing.assert_array_equal(windows[1], audio[-W:])
    rows = embedder.embed(audio, 48_000)
    np.testing.assert_allclose(rows[1], embedder.embed_windows(audio[None, -W:])[0], atol=1e-6)


def test_stereo_is_the_channel_mean(embedders, ref):
    mono = ref["oneshot_48k_audio"]
    stereo = np.stack([mono * 1.5, mono * 0.5])
    np.testing.assert_array_equal(
        embedders().windows(stereo, 48_000), embedders().windows(mono[None], 48_000)
    )


def test_resampled_input_matches_reference(embedders, ref):
    """soxr HQ to 44.1 kHz and back changes this clip's embedding by < 1e-6 (measured 7e-7)."""
    at_44k = resample_to(ref["long_48k_audio"][:W], 48_000, 44_100)
    assert len(at_44k) == 441_000
    rows = embedders().embed(at_44k[None], 44_100)
    assert rows.shape == (1, 32)  # librosa alone would give 480,001 samples, a second window
    assert max_rel_error(rows[0], ref["long_48k_embedding"]) < REL_TOL


@pytest.mark.parametrize(
    ("samples", "rate"), [(441_000, 44_100), (21_000, 44_100), (1, 22_050), (160_000, 16_000)]
)
def test_resample_length_is_exact(samples, rate):
    out = resample_to(np.zeros(samples, np.float32), rate)
    assert out.dtype == np.float32
    assert len(out) == -(-samples * 48_000 // rate)


def test_int16_round_trip_truncates_like_reference():
    checks = json.loads(CLAP_JSON.read_text())["checks"]["float32_to_int16_example"]
    x = np.asarray(checks["x"], dtype=np.float32)
    expected = np.asarray(checks["int16"], dtype=np.float64) / 32767.0
    np.testing.assert_array_equal(int16_round_trip(x), expected.astype(np.float32))


def test_pad_rules():
    clip = np.arange(1, 19_501, dtype=np.float32)
    repeated = pad_window(clip, "repeat")
    assert repeated.shape == (W,)
    np.testing.assert_array_equal(repeated[:468_000], np.tile(clip, 24))
    assert not repeated[468_000:].any()
    zeroed = pad_window(clip, "zero")
    np.testing.assert_array_equal(zeroed[:19_500], clip)
    assert not zeroed[19_500:].any()
    np.testing.assert_array_equal(pad_window(np.ones(1, np.float32), "repeat"), np.ones(W))
    with pytest.raises(ValueError, match="pad rule"):
        pad_window(clip, "reflect")


@pytest.mark.parametrize(
    ("samples", "count"), [(1, 1), (W - 1, 1), (W, 1), (W + 1, 2), (2 * W, 2), (2 * W + 7, 3)]
)
def test_window_count_and_last_window(samples, count):
    audio = np.arange(samples, dtype=np.float32)
    windows = split_windows(audio, "zero")
    assert windows.shape == (count, W)
    if samples >= W:
        np.testing.assert_array_equal(windows[-1], audio[-W:])
        np.testing.assert_array_equal(windows[0], audio[:W])


def test_info_names_model_file_and_rule(embedders):
    info = embedders("zero", True).info
    assert (info.name, info.sample_rate, info.dim) == ("clap", 48_000, 32)
    assert info.weights_sha256 == hashlib.sha256(CLAP_PT.read_bytes()).hexdigest()
    assert info.pad_rule == "zero+int16"
    assert embedders().info.pad_rule == "repeat"
    assert info.options["pad"] == "zero" and info.options["int16"] is True


def _meta_state(shapes_json: Path) -> dict[str, torch.Tensor]:
    entries = json.loads(shapes_json.read_text())["state_dict"]
    return {
        k: torch.empty(v["shape"], dtype=getattr(torch, v["dtype"]), device="meta")
        for k, v in entries.items()
    }


def test_config_read_from_narrow_file(embedders):
    expected = json.loads(CLAP_JSON.read_text())
    config = embedders().network.config
    htsat = expected["htsat"]
    assert config.embed_dim == htsat["embed_dim"]
    assert list(config.depths) == htsat["depths"]
    assert list(config.num_heads) == htsat["num_heads"]
    assert (config.window_size, config.patch_size, config.mlp_ratio) == (8, 4, 4.0)
    assert (config.num_features, config.joint_dim) == (128, expected["clap"]["joint_embed_shape"])
    assert (config.n_fft, config.mel_bins) == (1024, 64)


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_config_and_layout_of_released_models(name):
    """The released tiny/base layouts derive their published shapes and every key fits."""
    meta = json.loads(SHAPES[name].read_text())["meta"]
    state = audio_state(_meta_state(SHAPES[name]), name)
    config = config_from_shapes({k: tuple(v.shape) for k, v in state.items()}, name)
    assert config.embed_dim == meta["htsat"]["embed_dim"]
    assert list(config.depths) == meta["htsat"]["depths"]
    assert list(config.num_heads) == meta["htsat"]["num_heads"]
    assert config.window_size == meta["htsat"]["window_size"]
    assert config.patch_size == meta["htsat"]["patch_size"]
    assert (config.num_features, config.joint_dim) == (meta["htsat"]["num_features"], 512)
    with torch.device("meta"):
        network = ClapAudioNetwork(config)
    ours = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    ours.update({k: tuple(v.shape) for k, v in network.named_buffers()})
    assert ours == {k: tuple(v.shape) for k, v in state.items()}


def test_computed_buffers_equal_the_files(tmp_path):
    """The stored index and shift masks equal ours; a changed mask is refused by name."""
    checkpoint = torch.load(CLAP_PT, weights_only=True)
    key = "module.audio_branch.layers.2.blocks.1.attn_mask"
    checkpoint["state_dict"][key] = torch.zeros_like(checkpoint["state_dict"][key])
    path = tmp_path / "tampered.pt"
    torch.save(checkpoint, path)
    with pytest.raises(
        ClapWeightsError,
        match=r"tampered\.pt: audio_branch\.layers\.2\.blocks\.1\.attn_mask differs",
    ):
        load_clap(path)


def test_file_without_audio_keys_is_one_line_error(tmp_path):
    path = tmp_path / "text_only.pt"
    torch.save({"state_dict": {"module.text_projection.0.weight": torch.zeros(4, 4)}}, path)
    with pytest.raises(ClapWeightsError) as caught:
        load_clap(path)
    message = str(caught.value)
    assert str(path) in message and "audio_branch" in message and "\n" not in message


def test_unreadable_and_missing_files(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(ClapWeightsError, match="broken.pt: cannot be read"):
        load_clap(broken)
    with pytest.raises(ClapWeightsError, match="no such CLAP weights file"):
        load_clap(tmp_path / "absent.pt")
    with pytest.raises(ClapWeightsError, match="pad rule"):
        load_clap(CLAP_PT, pad="reflect")


def test_bad_audio_is_refused(embedders):
    embedder = embedders()
    with pytest.raises(ValueError, match="samples > 0"):
        embedder.embed(np.zeros((1, 0), np.float32), 48_000)
    with pytest.raises(ValueError, match="NaN"):
        embedder.embed(np.full((1, 100), np.nan, np.float32), 48_000)
    with pytest.raises(ValueError, match="sample rate"):
        embedder.embed(np.zeros((1, 100), np.float32), 0)


def test_file_rewritten_by_fadtk_still_loads(tmp_path, ref):
    """fadtk's unpatch stores position_ids as a plain int 0; text keys are never read."""
    checkpoint = torch.load(CLAP_PT, weights_only=True)
    checkpoint["state_dict"]["module.text_branch.embeddings.position_ids"] = 0
    checkpoint["epoch"] = 15
    path = tmp_path / "rewritten.pt"
    torch.save(checkpoint, path)
    rows = load_clap(path).embed_windows(ref["batch_audio"][:1])
    assert max_rel_error(rows, ref["batch_embedding"][:1]) < REL_TOL
