"""Full-length + onset cross-entropy: which rows are scored, masking, weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from dose_model.model.losses import dose_loss
from tests.dose_fixtures import one_thread  # noqa: F401 (autouse fixture)


def case(b=3, rows=12, k=9, v=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, v, (b, rows, k), generator=g)
    return target, g


def test_full_and_onset_match_plain_cross_entropy_ours():
    target, g = case()
    logits = torch.randn(3, 11, 9, 7, generator=g)  # predicts target[:, 1:]
    out = dose_loss(logits, target, first=1, onset_positions=10)
    full = F.cross_entropy(logits.reshape(-1, 7), target[:, 1:].reshape(-1))
    onset = F.cross_entropy(logits[:, :9].reshape(-1, 7), target[:, 1:10].reshape(-1))
    assert out.full.item() == pytest.approx(full.item(), rel=1e-6)
    assert out.onset.item() == pytest.approx(onset.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(full.item() + onset.item(), rel=1e-6)


def test_published_scores_start_token_and_ten_onset_rows():
    target, g = case()
    logits = torch.randn(3, 12, 9, 7, generator=g)  # predicts target[:, 0:]
    out = dose_loss(logits, target, first=0, onset_positions=10, mask_padding=False)
    onset = F.cross_entropy(logits[:, :10].reshape(-1, 7), target[:, :10].reshape(-1))
    assert out.onset.item() == pytest.approx(onset.item(), rel=1e-6)


def test_weights_and_ablation():
    target, g = case()
    logits = torch.randn(3, 11, 9, 7, generator=g, requires_grad=True)
    base = dose_loss(logits, target, first=1)
    ablation = dose_loss(logits, target, first=1, onset_weight=0.0)
    weighted = dose_loss(logits, target, first=1, full_weight=2.0, onset_weight=0.5)
    assert ablation.loss.item() == pytest.approx(base.full.item(), rel=1e-6)
    want = 2.0 * base.full.item() + 0.5 * base.onset.item()
    assert weighted.loss.item() == pytest.approx(want, rel=1e-6)
    ablation.loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_padding_rows_are_ignored():
    target, g = case(b=2)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, 8:] = False
    logits = torch.randn(2, 11, 9, 7, generator=g, requires_grad=True)
    out = dose_loss(logits, target, mask, first=1)
    (grad,) = torch.autograd.grad(out.loss, logits)
    assert torch.all(grad[0, 7:] == 0)  # rows 8.. of example 0 are padding
    assert torch.all(grad[0, :7].abs().sum(dim=(-1, -2)) > 0)
    # Changing padded targets does not change the loss; unmasked, it does.
    other = target.clone()
    other[0, 8:] = (other[0, 8:] + 1) % 7
    assert dose_loss(logits, other, mask, first=1).loss.item() == pytest.approx(out.loss.item())
    unmasked = dose_loss(logits, other, mask, first=1, mask_padding=False)
    assert unmasked.loss.item() != pytest.approx(out.loss.item())
    # Per-example means: example 0 averages over its 7 real rows only.
    ce0 = F.cross_entropy(logits[0, :7].reshape(-1, 7), target[0, 1:8].reshape(-1))
    ce1 = F.cross_entropy(logits[1].reshape(-1, 7), target[1, 1:].reshape(-1))
    assert out.full.item() == pytest.approx(((ce0 + ce1) / 2).item(), rel=1e-5)


def test_accuracy_and_perfect_prediction():
    target, _ = case(b=2, v=5)
    logits = F.one_hot(target[:, 1:], 5).float() * 50.0
    out = dose_loss(logits, target, first=1)
    assert out.accuracy.item() == 1.0
    assert out.full.item() < 1e-6
    uniform = dose_loss(torch.zeros_like(logits), target, first=1)
    assert uniform.full.item() == pytest.approx(math.log(5), rel=1e-6)


def test_shape_mismatch_is_an_error():
    target, g = case()
    with pytest.raises(ValueError, match="rows"):
        dose_loss(torch.randn(3, 12, 9, 7, generator=g), target, first=1)


def test_onset_window_holds_the_codes_with_t_plus_k_at_most_k_plus_1():
    """The default onset window (target rows 0..9) is SPEC §2's t + k <= K + 1 (1-based frame t
    and codebook k): each codebook's first frames up to the first complete frame, nothing else."""
    from dose_model.codec.tokens import target_sequence
    from dose_model.model.config import TrainConfig

    k_books, frames = 9, 20
    codes = torch.arange(k_books * frames).reshape(k_books, frames)  # code = k * frames + t
    window = target_sequence(codes)[: TrainConfig().onset_positions]
    found = {divmod(int(tok) - 1, frames) for tok in window.flatten() if tok != 0}
    want = {(k, t) for k in range(k_books) for t in range(frames) if (t + 1) + (k + 1) <= 10}
    assert found == want and len(want) == 45


def test_bf16_logits_give_the_fp32_loss_and_gradient_without_an_fp32_copy(monkeypatch):
    """bf16 logits: the chunked fp32 cross-entropy equals cross_entropy on the upcast logits
    (values and gradients), also across chunk boundaries."""
    import dose_model.model.losses as losses

    monkeypatch.setattr(losses, "CHUNK_ROWS", 5)  # 3 x 11 x 9 rows: many chunks
    target, g = case(v=33)
    base = (torch.randn(3, 11, 9, 33, generator=g) * 4).to(torch.bfloat16)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 7:] = False
    a = base.clone().requires_grad_(True)
    b = base.clone().float().requires_grad_(True)  # the reference: upcast first
    out = dose_loss(a, target, mask)
    ref = dose_loss(b, target, mask)
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)
    assert out.accuracy.item() == ref.accuracy.item()
    out.loss.backward()
    ref.loss.backward()
    assert a.grad.dtype == torch.bfloat16
    torch.testing.assert_close(a.grad.float(), b.grad, rtol=1e-2, atol=1e-5)
