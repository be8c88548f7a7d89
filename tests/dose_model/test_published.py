"""Conformance with the published DOSE code, via the reference fixture of its tiny checkpoint."""

import numpy as np
import pytest
import torch

from dose_model.model.checkpoints import CheckpointError, load_published
from dose_model.model.generate import generate
from tests.dose_fixtures import (
    REFERENCE_DIR,
    one_thread,  # noqa: F401 (autouse fixture)
)

REF = REFERENCE_DIR
CKPT = REF / "dose_kick_tiny.ckpt"


@pytest.fixture(scope="module")
def reference():
    data = np.load(REF / "dose_kick_tiny_reference.npz")
    return {k: torch.from_numpy(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def model():
    return load_published(CKPT, num_heads=1)


def test_loads_published_layout(model):
    cfg = model.config
    assert (cfg.num_layers, cfg.num_heads, cfg.d_model) == (2, 1, 64)
    assert (cfg.num_codebooks, cfg.vocab_size, cfg.mlp_ratio) == (9, 1025, 4)
    assert cfg.published and cfg.positions == "none"
    assert not model.training


def test_teacher_forced_logits_match_reference(model, reference):
    mix = reference["mixture_tokens"].long()
    tgt = reference["target_tokens"].long()
    with torch.no_grad():
        logits = model(mix, tgt[:, :-1])
    assert logits.shape == (1, 353 + 183 - 1, 9, 1025)
    got = logits[:, 345:375].reshape(1, 30, 9 * 1025)
    want = reference["logits_positions_345_375"].float()
    rel = (got - want).abs().max() / want.abs().max()
    assert rel < 1e-4, f"max relative error {rel:.3g}"
    assert torch.equal(logits.argmax(-1), reference["teacher_forced_argmax"].long())


@pytest.mark.parametrize("use_cache", [False, True])
def test_greedy_generation_matches_reference(model, reference, use_cache):
    mix = reference["mixture_tokens"].long()
    want = reference["greedy_generated"].long()
    out = generate(model, mix, max_len=want.shape[1], use_cache=use_cache)
    assert out.tokens.shape == want.shape
    assert torch.equal(out.tokens, want)
    assert not bool(out.ended.any())  # the reference run did not stop early


def test_full_size_layout_converts(tmp_path):
    """The full-size key layout (incl. unused keys) maps onto a 10-layer, 16-head model."""
    import json

    from dose_model.model.checkpoints import convert_published_state, published_config_from_state
    from dose_model.model.transformer import DoseTransformer

    shapes = json.loads((REF / "dose_official_state_dict_shapes.json").read_text())
    state = {k[len("inst_decoder.") :]: torch.empty(v, device="meta") for k, v in shapes.items()}
    cfg = published_config_from_state(state, num_heads=16)
    assert (cfg.num_layers, cfg.d_model, cfg.mlp_ratio) == (10, 1024, 4)
    converted = convert_published_state(state, cfg)
    with torch.device("meta"):
        model = DoseTransformer(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected


def test_rejects_non_published_files(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"other.weight": torch.zeros(2)}}, bad)
    with pytest.raises(CheckpointError, match="inst_decoder"):
        load_published(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_published(tmp_path / "missing.ckpt")
    data = torch.load(CKPT, weights_only=True)
    data["state_dict"] = {
        k: v for k, v in data["state_dict"].items() if "midi_embedding_layer" not in k
    }
    partial = tmp_path / "partial.ckpt"
    torch.save(data, partial)
    with pytest.raises(CheckpointError, match="midi_embedding_layer"):
        load_published(partial, num_heads=1)
    for change, pattern in (
        ({"inst_decoder.blocks.0.attn.rotary.weight": torch.zeros(2)}, "1 unexpected keys: "),
        ({"inst_decoder.blocks.1.ff.0.weight": torch.zeros(256, 32)}, "size mismatch"),
    ):
        changed = tmp_path / "changed.ckpt"
        torch.save(
            {"state_dict": {**torch.load(CKPT, weights_only=True)["state_dict"], **change}}, changed
        )
        with pytest.raises(CheckpointError, match=f"changed.ckpt: .*{pattern}"):
            load_published(changed, num_heads=1)
    data = torch.load(CKPT, weights_only=True)
    del data["state_dict"]["inst_decoder.blocks.1.attn.key.bias"]
    torch.save(data, partial)
    with pytest.raises(CheckpointError, match="missing key inst_decoder.blocks.1.attn.key.bias"):
        load_published(partial, num_heads=1)
