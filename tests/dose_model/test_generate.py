"""Generation: cached == uncached, end handling, top-p sampling."""

import pytest
import torch

from dose_model.model.generate import generate, sample_tokens
from tests.dose_fixtures import (  # one_thread: an autouse fixture
    TINY_MODEL,
    one_thread,  # noqa: F401
    tiny_mixture,
    tiny_model,
)

TINY = TINY_MODEL


make = tiny_model
mixture = tiny_mixture


@pytest.mark.parametrize("published", [False, True])
def test_cached_equals_uncached_greedy(published):
    model = make(published)
    mix = mixture()
    a = generate(model, mix, max_len=16, use_cache=True, stop_on_end=False)
    b = generate(model, mix, max_len=16, use_cache=False, stop_on_end=False)
    assert a.tokens.shape == (3, 16, 9)
    assert torch.equal(a.tokens, b.tokens)
    if not published:
        assert torch.all(a.tokens[:, 0] == 0)  # start token given


def test_cached_logits_equal_full_forward():
    from dose_model.model.transformer import KVCache

    model = make()
    seq = torch.randint(0, 1025, (2, 20, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model.logits(model.hidden(seq))
        cache = KVCache(model.config.num_layers, 20)
        parts = [model.logits(model.hidden(seq[:, :12], cache, 0))]
        for t in range(12, 20):
            parts.append(model.logits(model.hidden(seq[:, t : t + 1], cache, t)))
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_cached_equals_uncached_top_p():
    model = make()
    mix = mixture()
    outs = [
        generate(
            model,
            mix,
            max_len=16,
            strategy="top-p",
            top_p=0.9,
            use_cache=c,
            generator=torch.Generator().manual_seed(7),
            stop_on_end=False,
        ).tokens
        for c in (True, False)
    ]
    assert torch.equal(outs[0], outs[1])


def test_end_row_stops_and_pads():
    model = make()
    with torch.no_grad():  # make the model always predict token 0 for every codebook
        model.head.bias.zero_()
        model.head.bias.view(9, 1025)[:, 0] = 100.0
    out = generate(model, mixture(), max_len=16)
    assert out.tokens.shape == (3, 2, 9)  # start row + end row, then stop
    assert bool(out.ended.all())
    assert torch.all(out.tokens == 0)


def test_top_p_sampling():
    logits = torch.tensor([[[5.0, 4.0, -10.0, -10.0]]])  # p(0)~0.73, p(1)~0.27
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(logits, "top-p", 0.5, generator=g) for _ in range(50)])
    assert torch.all(draws == 0)  # token 0 alone reaches p = 0.5
    draws = torch.stack([sample_tokens(logits, "top-p", 0.9, generator=g) for _ in range(200)])
    assert set(draws.unique().tolist()) == {0, 1}  # tokens 2, 3 are never drawn
    even = torch.zeros(1, 1, 2)  # p = 0.5, 0.5: one token alone reaches top_p = 0.5
    draws = torch.stack([sample_tokens(even, "top-p", 0.5, generator=g) for _ in range(50)])
    assert len(draws.unique()) == 1
    assert torch.equal(sample_tokens(logits, "greedy"), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="strategy"):
        sample_tokens(logits, "beam")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_cached_equals_uncached_and_bf16_runs():
    model = make().cuda()
    mix = mixture().cuda()
    a = generate(model, mix, max_len=16, use_cache=True, stop_on_end=False)
    b = generate(model, mix, max_len=16, use_cache=False, stop_on_end=False)
    assert torch.equal(a.tokens, b.tokens)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        c = generate(model, mix, max_len=16, use_cache=True, stop_on_end=False)
    assert c.tokens.shape == (3, 16, 9) and c.tokens.dtype == torch.long
