"""Model structure, causality through gradients, config loading and validation."""

import pytest
import torch

from dose_model.model.config import ConfigError, ModelConfig, TrainConfig, load_config
from dose_model.model.transformer import DoseTransformer
from tests.dose_fixtures import one_thread  # noqa: F401 (autouse fixture)

TINY = dict(num_layers=2, num_heads=2, d_model=16, mixture_len=12, max_target_len=10, dropout=0.0)


def tokens(b, t, k=9, v=1025, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, v, (b, t, k), generator=g)


@pytest.mark.parametrize("published", [False, True])
def test_causality_through_gradients(published):
    """d logits at position t / d input embedding at positions > t is exactly zero."""
    cfg = ModelConfig(**TINY, published=published, positions="none" if published else "learned")
    torch.manual_seed(0)
    model = DoseTransformer(cfg).eval()
    seq = tokens(1, 20)
    emb = model.embed(seq).detach().requires_grad_(True)
    x = emb
    for block in model.blocks:
        x = block(x)
    logits = model.logits(model.ln_f(x))  # [1, 20, 9, 1025]
    for t in (0, 7, 13, 19):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), emb, retain_graph=True)
        per_pos = grad[0].abs().sum(dim=-1)
        assert torch.all(per_pos[t + 1 :] == 0), f"position {t} sees the future"
        assert torch.all(per_pos[: t + 1] > 0), f"position {t} ignores its past"


def test_published_embeds_codebook_zero_twice():
    cfg = ModelConfig.published_config(**{**TINY, "positions": "none"})
    model = DoseTransformer(cfg)
    seq = tokens(2, 5)
    want = 2 * model.embeddings[0](seq[..., 0]) + sum(
        model.embeddings[k](seq[..., k]) for k in range(1, 9)
    )
    assert torch.allclose(model.embed(seq), want, atol=1e-6)


def test_our_mode_adds_positions_and_embeds_once():
    model = DoseTransformer(ModelConfig(**TINY))
    seq = tokens(1, 6)
    plain = sum(model.embeddings[k](seq[..., k]) for k in range(9))
    assert torch.allclose(model.embed(seq), plain + model.positions.weight[:6], atol=1e-6)
    shifted = model.embed(seq, offset=3)
    assert torch.allclose(shifted, plain + model.positions.weight[3:9], atol=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        model.embed(tokens(1, 23))


def test_logit_positions_by_mode():
    mix, tgt = tokens(2, 12), tokens(2, 10)
    ours = DoseTransformer(ModelConfig(**TINY)).eval()
    pub = DoseTransformer(ModelConfig.published_config(**{**TINY, "positions": "none"})).eval()
    with torch.no_grad():
        assert ours(mix, tgt[:, :-1]).shape == (2, 9, 9, 1025)  # positions M.. only
        assert ours.target_logits(mix, tgt[:, :-1]).shape == (2, 9, 9, 1025)
        assert ours(mix, tgt[:, :-1], logits_from=0).shape == (2, 21, 9, 1025)
        full = pub(mix, tgt[:, :-1])
        assert full.shape == (2, 21, 9, 1025)  # every position, as the published code
        aligned = pub.target_logits(mix, tgt[:, :-1])
        assert torch.equal(aligned, full[:, 11:])  # M-1.. predicts target[:, 0:]
        part = ours(mix, tgt[:, :-1], logits_from=0)[:, 12:]
        assert torch.allclose(part, ours(mix, tgt[:, :-1]), atol=1e-5)
    assert ours.first_predicted == 1 and pub.first_predicted == 0


def test_last_block_computes_only_kept_positions_with_equal_gradients():
    """The last block skips the rows no logit reads: same logits and same parameter gradients
    as computing every row and slicing, and fewer rows through the last MLP."""
    torch.manual_seed(0)
    model = DoseTransformer(ModelConfig(**TINY)).eval()
    mix, tgt = tokens(2, 12), tokens(2, 10, seed=1)
    rows = []
    hook = model.blocks[-1].fc1.register_forward_hook(lambda m, i, o: rows.append(o.shape[1]))
    grads = []
    for logits_from in (0, 12):
        model.zero_grad()
        logits = model(mix, tgt[:, :-1], logits_from=logits_from)[:, 12 - logits_from :]
        (logits.float() ** 2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    hook.remove()
    assert rows == [21, 9]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="KV cache"):
        from dose_model.model.transformer import KVCache

        model.hidden(mix, KVCache(2, 30), keep_from=3)


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(d_model=30, num_heads=4)
    with pytest.raises(ConfigError, match="model.d_model"):
        ModelConfig(d_model="big")
    with pytest.raises(ConfigError, match="positions: none"):
        ModelConfig(published=True)
    with pytest.raises(ConfigError, match="model.num_heads must be >= 1"):
        ModelConfig(num_heads=0)
    with pytest.raises(ConfigError, match="train.lr"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="train.eval_max_batches must be >= 1 or null"):
        TrainConfig(eval_max_batches=0)  # would validate on nothing: a loss of 0
    good = tmp_path / "c.yaml"
    good.write_text("model: {d_model: 32, num_heads: 2}\ntrain: {lr: 1.0e-3, batch_size: 4}\n")
    model, train = load_config(good)
    assert (model.d_model, model.num_heads, train.lr, train.batch_size) == (32, 2, 1e-3, 4)
    assert ModelConfig.from_dict(model.to_dict()) == model
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_modle: 32}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*model.d_modle"):
        load_config(bad)
    bad.write_text("optim: {}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(bad)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: 0\n", "model must be a mapping, got int"),
        ("train: []\n", "train must be a mapping, got list"),
        ("model: {d_model: 32, num_heads: 2}\ntrain: off\n", "train must be a mapping, got bool"),
    ],
)
def test_a_config_section_that_is_not_a_mapping_is_refused_by_name(tmp_path, capsys, text, message):
    from dose_model.cli.train import main

    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert str(refused.value) == f"{config}: {message}"
    out = tmp_path / "run"
    argv = ["--manifest", str(tmp_path), "--drum", "kick", "--out", str(out), "--config"]
    assert main([*argv, str(config), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"dose-train: error: {config}: {message}\n"
    assert not out.exists()


def test_an_empty_config_section_is_the_defaults(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\ntrain: {}\n")
    assert load_config(config) == (ModelConfig(), TrainConfig())


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1)
    assert cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(60) == pytest.approx(0.55)
    assert cfg.lr_at(110) == pytest.approx(0.1)
    lrs = [cfg.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs[:-1], lrs[1:], strict=True))


def test_recipes_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "recipes"
    paper_model, paper_train = load_config(root / "dose-paper.yaml")
    assert (paper_model.num_layers, paper_model.num_heads, paper_model.d_model) == (10, 16, 1024)
    tiny_model, _ = load_config(root / "dose-tiny.yaml")
    assert tiny_model.d_model <= 64 and tiny_model.num_layers == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_last_block_matches_full_rows():
    """On the GPU, in bf16 autocast (the fused attention kernels, with the kept-rows mask),
    the last-block skip gives the logits of computing every row, within bf16 tolerance."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, num_heads=4, d_model=64, mixture_len=353, dropout=0.0)
    model = DoseTransformer(cfg).cuda().eval()
    mix, tgt = tokens(4, 353).cuda(), tokens(4, 40, seed=1).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        full = model(mix, tgt[:, :-1], logits_from=0)[:, 353:].float()
        kept = model(mix, tgt[:, :-1]).float()
    torch.testing.assert_close(kept, full, rtol=0.05, atol=0.05)
