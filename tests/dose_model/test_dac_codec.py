"""DacCodec conformance with the reference package (fixtures), loader checks, encode/decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dose_model.codec.dac_codec import CodecLoadError, DacCodec
from dose_model.codec.dac_network import DacConfig
from tests.dose_fixtures import DAC_44KHZ_SHAPES, DAC_TINY_JSON, DAC_TINY_PTH, DAC_TINY_REFERENCE


@pytest.fixture(scope="module")
def tiny() -> DacCodec:
    return DacCodec.load(DAC_TINY_PTH)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DAC_TINY_REFERENCE) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def mono(reference) -> torch.Tensor:
    """The reference input: mono mean of the stereo mixture, [1, 1, 176400]."""
    return torch.from_numpy(reference["mixture_stereo"]).mean(0)[None, None]


def test_tiny_codec_properties(tiny):
    kwargs = json.loads(DAC_TINY_JSON.read_text())["kwargs"]
    assert tiny.sample_rate == 44100 and tiny.hop_length == 512
    assert tiny.n_codebooks == 9 and tiny.codebook_size == 1024
    assert tiny.kwargs["encoder_dim"] == kwargs["encoder_dim"]
    assert tiny.frames(176400) == 345
    assert tiny.sha256 is not None and len(tiny.sha256) == 64


def test_encode_equals_reference_codes_in_a_batch(tiny, reference, mono):
    """Codes equal the reference exactly, also as element 0 of a batch with another signal."""
    other = torch.flip(mono, dims=[-1]) * 0.5
    codes = tiny.encode(torch.cat([mono, other]))
    assert codes.dtype == torch.long and codes.shape == (2, 9, 345)
    expected = torch.from_numpy(reference["codes"].astype(np.int64))
    mismatches = int((codes[:1] != expected).sum())
    assert mismatches == 0, f"{mismatches} of {expected.numel()} codes differ"
    assert not torch.equal(codes[1], codes[0])


def test_decode_matches_reference_audio(tiny, reference):
    codes = torch.from_numpy(reference["codes"].astype(np.int64))
    audio = tiny.decode(codes)
    expected = torch.from_numpy(reference["decoded"])
    assert audio.shape == expected.shape == (1, 1, 345 * 512)
    rel_l2 = float((audio - expected).norm() / expected.norm())
    assert rel_l2 < 1e-4, rel_l2


def test_encode_pads_like_preprocess(tiny, mono):
    """A length that is not a multiple of the hop is zero-padded on the right."""
    x = mono[..., :5000]
    padded = torch.nn.functional.pad(x, (0, 10 * 512 - 5000))
    codes = tiny.encode(x)
    assert codes.shape == (1, 9, 10)
    assert torch.equal(codes, tiny.encode(padded))


def test_full_44khz_layout_is_accepted():
    """A random state dict with exactly the released 44 kHz keys and shapes loads."""
    shapes = json.loads(DAC_44KHZ_SHAPES.read_text())
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v, generator=gen) for k, v in shapes.items()}
    codec = DacCodec.from_state_dict(state, DacConfig().to_kwargs())
    own = codec.model.state_dict()
    assert set(own) == set(shapes)
    assert all(list(own[k].shape) == v for k, v in shapes.items())
    assert torch.equal(own["decoder.model.0.weight_v"], state["decoder.model.0.weight_v"])
    codes = codec.encode(torch.randn(1, 1, 1024) * 0.1)  # short: keep it cheap
    assert codes.shape == (1, 9, 2)
    assert int(codes.min()) >= 0 and int(codes.max()) < 1024


def _tiny_blob() -> dict:
    return torch.load(DAC_TINY_PTH, map_location="cpu", weights_only=True)


def test_wrong_format_names_the_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(CodecLoadError, match="junk.pth.*not a readable torch"):
        DacCodec.load(junk)
    other = tmp_path / "other.pth"
    torch.save({"model": {}}, other)
    with pytest.raises(CodecLoadError, match="other.pth.*released format"):
        DacCodec.load(other)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        DacCodec.load(tmp_path / "absent.pth")


def test_missing_unexpected_and_misshapen_keys_are_listed(tmp_path):
    blob = _tiny_blob()
    state = blob["state_dict"]
    del state["encoder.block.0.bias"]
    state["encoder.extra.weight"] = torch.zeros(3)
    state["decoder.model.6.weight_v"] = torch.zeros(1, 2, 5)
    path = tmp_path / "broken.pth"
    torch.save(blob, path)
    with pytest.raises(CodecLoadError) as err:
        DacCodec.load(path)
    msg = str(err.value)
    assert "broken.pth" in msg
    assert "1 missing keys: encoder.block.0.bias" in msg
    assert "1 unexpected keys: encoder.extra.weight" in msg
    assert "decoder.model.6.weight_v (1, 2, 5) (expected (1, 2, 7))" in msg


def test_unknown_kwargs_are_refused(tmp_path):
    blob = _tiny_blob()
    blob["metadata"]["kwargs"]["n_heads"] = 4
    path = tmp_path / "kwargs.pth"
    torch.save(blob, path)
    with pytest.raises(CodecLoadError, match="kwargs.pth.*n_heads"):
        DacCodec.load(path)


def test_random_codec_is_seeded_and_saves_in_released_format(tmp_path):
    kwargs = {"encoder_dim": 4, "decoder_dim": 16}
    state = torch.random.get_rng_state()
    a = DacCodec.random(kwargs, seed=3)
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG was touched"
    b = DacCodec.random(kwargs, seed=3)
    c = DacCodec.random(kwargs, seed=4)
    x = torch.randn(2, 1, 4096, generator=torch.Generator().manual_seed(1)) * 0.3
    codes = a.encode(x)
    assert torch.equal(codes, b.encode(x))
    assert not torch.equal(codes, c.encode(x))
    assert len(torch.unique(codes)) > 9  # random weights still spread over the codebook
    path = tmp_path / "weights.pth"
    digest = a.save(path)
    loaded = DacCodec.load(path)
    assert loaded.sha256 == digest
    assert torch.equal(loaded.encode(x), codes)
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"state_dict", "metadata"}
    assert blob["metadata"]["kwargs"]["encoder_dim"] == 4
    assert any(k.endswith("weight_g") for k in blob["state_dict"])


def test_input_checks(tiny):
    with pytest.raises(ValueError, match=r"\[batch, 1, samples\]"):
        tiny.encode(torch.zeros(1, 2, 512))
    with pytest.raises(ValueError, match="float"):
        tiny.encode(torch.zeros(1, 1, 512, dtype=torch.long))
    with pytest.raises(ValueError, match="codes must lie"):
        tiny.decode(torch.full((1, 9, 2), 1024))
    with pytest.raises(ValueError, match="integer codes"):
        tiny.decode(torch.zeros(1, 9, 2))
    with pytest.raises(ValueError, match=r"\[batch, 9, frames\]"):
        tiny.decode(torch.zeros(1, 8, 2, dtype=torch.long))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_encode_agrees_with_cpu(tiny, reference, mono):
    """On a GPU (TF32 off) the codes match the reference nearly everywhere."""
    cuda = DacCodec.load(DAC_TINY_PTH, device="cuda")
    cuda.tf32 = False
    codes = cuda.encode(mono.cuda()).cpu()
    expected = torch.from_numpy(reference["codes"].astype(np.int64))
    agree = float((codes == expected).float().mean())
    assert agree > 0.99, agree
    audio = cuda.decode(expected.cuda()).cpu()
    ref_audio = torch.from_numpy(reference["decoded"])
    assert float((audio - ref_audio).norm() / ref_audio.norm()) < 1e-3
