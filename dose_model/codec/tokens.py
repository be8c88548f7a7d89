"""Token layout of DOSE: codes + 1, token 0 reserved, and the delay pattern.

DAC codes are integers in ``[0, 1024)`` per codebook. As tokens they are stored + 1, so
token 0 (:data:`PAD_ID`) is free for the start row, the end row and padding.

Delay pattern (``K`` = 9 codebooks): codebook ``k`` is shifted right by ``k`` positions,
so position ``p`` holds codebook ``k`` of frame ``p - k``; positions without a frame
hold 0. ``F`` frames take ``F + K - 1`` positions.

- mixture: just the delay pattern, ``[.., T + 8, 9]`` (345 frames -> 353 positions, no
  start token);
- target: ``[start = 0 row] + delay pattern + [end = 0 row]``, ``[.., F + 10, 9]``
  (173 frames -> 183 positions).

Inside a delay pattern of complete frames no row is all zeros (each row holds at least
one code + 1 >= 1). :func:`revert_target` uses that to read generated sequences.
"""

from __future__ import annotations

import torch

PAD_ID = 0
"""Token id of the start row, the end row and padding (codes are stored + 1, so a
codebook's token ids are 0 and 1..CODEBOOK_SIZE)."""
CODEBOOK_SIZE = 1024
FILL_CODE = 0
"""Code that :func:`revert_target` puts where a generated sequence holds token 0 inside a
complete frame (the model stopped one codebook but not the others)."""


def _check_codes(codes: torch.Tensor, name: str) -> int:
    if not torch.is_tensor(codes) or codes.ndim < 2:
        raise ValueError(f"{name} expects codes [..., codebooks, frames], got {codes!r:.60}")
    if codes.is_floating_point():
        raise ValueError(f"{name} expects integer codes, got {codes.dtype}")
    return codes.shape[-2]


def delay(codes: torch.Tensor) -> torch.Tensor:
    """Codes [..., K, F] -> delay-patterned tokens long [..., F + K - 1, K].

    Position ``t + k`` of column ``k`` holds ``codes[..., k, t] + 1``; other positions 0.
    """
    k_books = _check_codes(codes, "delay")
    frames = codes.shape[-1]
    out = codes.new_zeros((*codes.shape[:-2], frames + k_books - 1, k_books), dtype=torch.long)
    for k in range(k_books):
        out[..., k : k + frames, k] = codes[..., k, :].long() + 1
    return out


def undelay(tokens: torch.Tensor, frames: int) -> torch.Tensor:
    """Delay-patterned tokens [..., >= frames + K - 1, K] -> codes + 1 long [..., K, frames].

    The inverse gather of :func:`delay` (no check of the positions it does not read)."""
    k_books = tokens.shape[-1]
    if frames == 0:
        return tokens.new_zeros((*tokens.shape[:-2], k_books, 0), dtype=torch.long)
    if tokens.shape[-2] < frames + k_books - 1:
        raise ValueError(
            f"{tokens.shape[-2]} positions cannot hold {frames} delayed frames "
            f"of {k_books} codebooks"
        )
    cols = [tokens[..., k : k + frames, k] for k in range(k_books)]
    return torch.stack(cols, dim=-2).long()


def mixture_sequence(codes: torch.Tensor) -> torch.Tensor:
    """Mixture codes [..., 9, T] (values 0..1023) -> tokens long [..., T + 8, 9]."""
    return delay(codes)


def target_sequence(codes: torch.Tensor) -> torch.Tensor:
    """One-shot codes [..., 9, F] -> tokens long [..., F + 10, 9]:
    a start row of 0s, the delay pattern (F + 8 rows), an end row of 0s."""
    body = delay(codes)
    edge = body.new_zeros((*body.shape[:-2], 1, body.shape[-1]))
    return torch.cat([edge, body, edge], dim=-2)


def revert_mixture(tokens: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`mixture_sequence`: tokens [..., T + 8, K] -> codes [..., K, T].

    Raises ValueError if a position that must hold a code holds 0 (or a value above the
    vocabulary), or a position outside the pattern is not 0: the input was not made by
    :func:`mixture_sequence`.
    """
    if not torch.is_tensor(tokens) or tokens.ndim < 2:
        raise ValueError("revert_mixture expects tokens [..., positions, codebooks]")
    k_books = tokens.shape[-1]
    frames = tokens.shape[-2] - (k_books - 1)
    if frames < 0:
        raise ValueError(f"{tokens.shape[-2]} positions are fewer than {k_books - 1}")
    plus1 = undelay(tokens, frames)
    if plus1.numel() and (plus1.min() < 1 or plus1.max() > CODEBOOK_SIZE):
        raise ValueError("revert_mixture: a code position holds 0 or a token out of range")
    if not torch.equal(delay(plus1 - 1), tokens.long()):
        raise ValueError("revert_mixture: non-zero tokens outside the delay pattern")
    return plus1 - 1


def target_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """Complete frames in (possibly generated) target sequences [..., L, K] -> long [...].

    The sequence starts with the start row (position 0, ignored). It ends at the first
    all-zero row after the start (the end row), or at the last position when none is
    there (generation stopped at a length limit). ``R`` delayed rows then hold
    ``max(R - (K - 1), 0)`` complete frames: the trailing partial frames are dropped.
    """
    k_books = tokens.shape[-1]
    body = tokens[..., 1:, :]
    n_rows = body.shape[-2]
    if n_rows == 0:
        return torch.zeros(tokens.shape[:-2], dtype=torch.long, device=tokens.device)
    is_end = (body == PAD_ID).all(dim=-1)
    # index of the first all-zero row, or n_rows when there is none
    pos = torch.arange(n_rows, device=tokens.device).expand_as(is_end)
    rows = torch.where(is_end, pos, torch.full_like(pos, n_rows)).amin(dim=-1)
    return (rows - (k_books - 1)).clamp(min=0)


def revert_target(tokens: torch.Tensor, fill_code: int = FILL_CODE) -> torch.Tensor:
    """Target tokens [..., L, K] -> codes long [..., K, F].

    For a sequence made by :func:`target_sequence` this is its exact inverse
    (``F = L - 10``). For generated sequences:

    - the end is the first all-zero row after the start row (see :func:`target_lengths`);
      a sequence that stopped early, or that ran into the length limit, keeps only its
      complete frames;
    - a token 0 inside a complete frame (one codebook "stopped" but not the others) and any
      token above 1024 become ``fill_code`` (default :data:`FILL_CODE` = 0);
    - with leading batch dimensions, ``F`` is the longest element's frame count and the
      frames past an element's own length are ``fill_code``; use :func:`target_lengths`
      to trim each element.
    """
    if not torch.is_tensor(tokens) or tokens.ndim < 2 or tokens.shape[-2] < 1:
        raise ValueError("revert_target expects tokens [..., positions >= 1, codebooks]")
    if not 0 <= fill_code < CODEBOOK_SIZE:
        raise ValueError(f"fill_code must lie in [0, {CODEBOOK_SIZE}), got {fill_code}")
    lengths = target_lengths(tokens)
    frames = int(lengths.max()) if lengths.numel() else 0
    plus1 = undelay(tokens[..., 1:, :], frames)
    codes = plus1 - 1
    bad = (plus1 < 1) | (plus1 > CODEBOOK_SIZE)
    beyond = torch.arange(frames, device=tokens.device) >= lengths[..., None, None]
    return torch.where(bad | beyond, torch.full_like(codes, fill_code), codes)
