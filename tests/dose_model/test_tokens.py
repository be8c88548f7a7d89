"""Delay pattern and special tokens (dose_model.codec.tokens): layout, exact inverses, generated
sequences that stop early or hold zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dose_model.codec.tokens import (
    CODEBOOK_SIZE,
    FILL_CODE,
    PAD_ID,
    mixture_sequence,
    revert_mixture,
    revert_target,
    target_lengths,
    target_sequence,
)
from tests.dose_fixtures import REFERENCE_DIR

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def code_tensors(draw, min_frames: int = 0, max_frames: int = 24):
    """Random codes [*lead, K, F] with values 0..1023."""
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    k = draw(st.integers(1, 9))
    frames = draw(st.integers(min_frames, max_frames))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, CODEBOOK_SIZE, (*lead, k, frames), generator=gen)


def test_paper_shapes():
    codes = torch.randint(0, CODEBOOK_SIZE, (2, 9, 345))
    assert mixture_sequence(codes).shape == (2, 353, 9)
    shot = torch.randint(0, CODEBOOK_SIZE, (2, 9, 173))
    assert target_sequence(shot).shape == (2, 183, 9)
    assert PAD_ID == 0


def test_layout_by_hand():
    codes = torch.tensor([[5, 6], [7, 8], [0, 1023]])  # K = 3, F = 2
    expected_mix = torch.tensor([[6, 0, 0], [7, 8, 0], [0, 9, 1], [0, 0, 1024]])
    assert torch.equal(mixture_sequence(codes), expected_mix)
    target = target_sequence(codes)
    zero = torch.zeros(1, 3, dtype=torch.long)
    assert torch.equal(target, torch.cat([zero, expected_mix, zero]))


@SETTINGS
@given(code_tensors())
def test_mixture_roundtrip_and_layout(codes):
    seq = mixture_sequence(codes)
    k, frames = codes.shape[-2:]
    assert seq.shape == (*codes.shape[:-2], frames + k - 1, k)
    assert seq.dtype == torch.long
    for kk in range(k):  # codebook kk sits at positions kk .. kk + F - 1, + 1
        assert torch.equal(seq[..., kk : kk + frames, kk], codes[..., kk, :] + 1)
    assert int((seq != PAD_ID).sum()) == codes.numel()  # zeros everywhere else
    assert torch.equal(revert_mixture(seq), codes)


@SETTINGS
@given(code_tensors())
def test_target_roundtrip_and_layout(codes):
    seq = target_sequence(codes)
    k, frames = codes.shape[-2:]
    assert seq.shape == (*codes.shape[:-2], frames + k + 1, k)
    assert (seq[..., 0, :] == PAD_ID).all() and (seq[..., -1, :] == PAD_ID).all()
    assert torch.equal(seq[..., 1:-1, :], mixture_sequence(codes))
    assert torch.equal(revert_target(seq), codes)
    assert (target_lengths(seq) == frames).all()


@SETTINGS
@given(code_tensors(min_frames=1), st.data())
def test_revert_target_of_a_sequence_cut_early(codes, data):
    """A generation stopped at any length keeps exactly its complete frames."""
    seq = target_sequence(codes)
    k, frames = codes.shape[-2:]
    keep = data.draw(st.integers(1, seq.shape[-2] - 1))  # drop at least the end row
    cut = seq[..., :keep, :]
    complete = min(frames, max(keep - 1 - (k - 1), 0))
    assert (target_lengths(cut) == complete).all()
    assert torch.equal(revert_target(cut), codes[..., :complete])


@SETTINGS
@given(code_tensors(min_frames=2), st.data())
def test_revert_target_stops_at_first_all_zero_row(codes, data):
    """Rows after a generated end row (e.g. padding or junk) are ignored."""
    k, frames = codes.shape[-2:]
    stop = data.draw(st.integers(1, frames))
    seq = target_sequence(codes[..., :stop])
    junk = torch.randint(1, CODEBOOK_SIZE + 1, (*seq.shape[:-2], 5, k))
    longer = torch.cat([seq, junk], dim=-2)
    assert torch.equal(revert_target(longer), codes[..., :stop])


def test_zero_inside_a_frame_becomes_fill_code():
    codes = torch.randint(0, CODEBOOK_SIZE, (9, 12))
    seq = target_sequence(codes)
    seq[1 + 4 + 3, 3] = PAD_ID  # codebook 3 of frame 4
    out = revert_target(seq)
    expected = codes.clone()
    expected[3, 4] = FILL_CODE
    assert torch.equal(out, expected)
    assert torch.equal(revert_target(seq, fill_code=77)[3, 4], torch.tensor(77))


def test_batch_with_different_stops_is_padded_and_lengths_tell():
    codes = torch.randint(0, CODEBOOK_SIZE, (2, 9, 10))
    a = target_sequence(codes[0])  # 10 frames, 20 rows
    b = torch.zeros_like(a)
    b[:14] = target_sequence(codes[1, :, :4])  # 4 frames + end row, then padding
    batch = torch.stack([a, b])
    lengths = target_lengths(batch)
    assert lengths.tolist() == [10, 4]
    out = revert_target(batch, fill_code=5)
    assert out.shape == (2, 9, 10)
    assert torch.equal(out[0], codes[0])
    assert torch.equal(out[1, :, :4], codes[1, :, :4])
    assert (out[1, :, 4:] == 5).all()


def test_only_start_row_or_empty_gives_no_frames():
    assert revert_target(torch.zeros(1, 9, dtype=torch.long)).shape == (9, 0)
    assert revert_target(torch.zeros(3, 5, 9, dtype=torch.long)).shape == (3, 9, 0)


def test_revert_mixture_rejects_malformed():
    seq = mixture_sequence(torch.randint(0, CODEBOOK_SIZE, (9, 6)))
    holes = seq.clone()
    holes[3, 1] = 0
    with pytest.raises(ValueError, match="holds 0"):
        revert_mixture(holes)
    stray = seq.clone()
    stray[0, 8] = 5  # outside the pattern
    with pytest.raises(ValueError, match="outside"):
        revert_mixture(stray)
    with pytest.raises(ValueError):
        revert_target(seq, fill_code=CODEBOOK_SIZE)


def test_mixture_layout_matches_the_published_reference():
    """The published code's mixture tokens (reference fixture) are our delay pattern."""
    ref = np.load(REFERENCE_DIR / "dose_kick_tiny_reference.npz")
    tokens = torch.from_numpy(ref["mixture_tokens"].astype(np.int64))
    codes = revert_mixture(tokens)
    assert codes.shape == (1, 9, 345)
    assert torch.equal(mixture_sequence(codes), tokens)
