"""Training losses: full-length cross-entropy + onset cross-entropy (DOSE paper, SPEC §2).

Which tokens are scored. The target sequence is ``target [B, L, K]`` (row 0 = start token,
rows 1..K = the onset of the delay pattern, ..., last real row = end token, then padding). The
model is fed ``target_in = target[:, :-1]`` and its logits are aligned with
``target[:, first:]`` (`DoseTransformer.target_logits`):

* ``first = 1`` (our mode): the start token is given; rows 1..L-1 are predicted.
* ``first = 0`` (published mode): the last mixture position also predicts the start token,
  as in the published training code.

Full loss: mean CE over every predicted row j >= first and every codebook. Onset loss: the same
over the rows j < ``onset_positions`` (default K + 1 = 10: start + the 9 rows in which codebook
k's first frame appears at row k + 1; the paper's onset window ``t + k <= K + 1``).
``loss = full_weight * full + onset_weight * onset`` (paper: 1:1; ``onset_weight = 0`` is the
ablation without onset loss).

Padding: with ``mask_padding`` (ours) rows where ``target_mask`` is False are not scored; the
published code scores them (``mask_padding=False``). Each example's CE is averaged over its
scored tokens, then examples are averaged, so data-parallel ranks with equal shares of a batch
average to exactly the single-process loss.

Precision: the cross-entropy is computed in fp32 whatever the logits' dtype. With bf16 logits
(autocast) in eager mode, `cross_entropy_fp32` computes it in row chunks and recomputes the
softmax in its backward, so no fp32 copy of all logits ([B, R, K, V]: 0.4 GB at batch 64) is
made or kept; under ``torch.compile`` the plain expression is used (the compiler fuses the
cast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

CHUNK_ROWS = 8192
"""Logit rows (of V values) upcast at once by `cross_entropy_fp32`."""


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy in fp32 of low-precision logits [N, V], chunk by chunk."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # ctx: the context object autograd passes (save_for_backward, saved_tensors)
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        for rows, chunk in zip(lse.split(CHUNK_ROWS), logits.split(CHUNK_ROWS), strict=True):
            rows.copy_(torch.logsumexp(chunk.float(), dim=-1))
        ctx.save_for_backward(logits, target, lse)
        return lse - logits.gather(1, target[:, None])[:, 0].float()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, target, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        parts = (out, logits, target, lse, grad)
        for o, x, t, s, g in zip(*(p.split(CHUNK_ROWS) for p in parts), strict=True):
            p = torch.exp(x.float() - s[:, None])
            p[torch.arange(len(t), device=t.device), t] -= 1.0
            o.copy_(p * g[:, None])
        return out, None


def cross_entropy_fp32(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy ``[N]`` fp32 of logits ``[N, V]`` and class indices ``[N]``,
    computed in fp32 without an fp32 copy of all of ``logits`` when they are bf16/fp16."""
    if logits.dtype == torch.float32 or torch.compiler.is_compiling():
        return F.cross_entropy(logits.float(), target, reduction="none")
    return _ChunkedCrossEntropy.apply(logits, target)


@dataclass
class LossOutput:
    """Scalar tensors: ``loss`` (weighted sum, differentiable), ``full``, ``onset`` (detached
    components), ``accuracy`` (argmax == target over the scored tokens of the full loss)."""

    loss: torch.Tensor
    full: torch.Tensor
    onset: torch.Tensor
    accuracy: torch.Tensor


def _per_example_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """values, weights [B, R, K] -> mean over examples of each example's weighted mean."""
    total = (values * weights).sum(dim=(1, 2))
    count = weights.sum(dim=(1, 2)).clamp_min(1.0)
    return (total / count).mean()


def dose_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    target_mask: torch.Tensor | None = None,
    first: int = 1,
    full_weight: float = 1.0,
    onset_weight: float = 1.0,
    onset_positions: int = 10,
    mask_padding: bool = True,
) -> LossOutput:
    """Full-length + onset cross-entropy.

    Args:
        logits: [B, R, K, V] float, row r predicts ``target[:, first + r]``.
        target: [B, L, K] long target sequence (``R = L - first``).
        target_mask: [B, L] bool, True on real rows (start..end); None = all real.
        first: index of the first predicted target row (0 published, 1 ours).
        full_weight, onset_weight: weights of the two terms.
        onset_positions: target rows ``j < onset_positions`` form the onset window.
        mask_padding: ignore rows where ``target_mask`` is False.

    Returns:
        `LossOutput` of scalar tensors.
    """
    b, r, k, v = logits.shape
    scored = target[:, first : first + r]
    if scored.shape[1] != r:
        raise ValueError(f"logits have {r} rows but target[:, {first}:] has {scored.shape[1]}")
    ce = cross_entropy_fp32(logits.reshape(-1, v), scored.reshape(-1)).view(b, r, k)
    if mask_padding and target_mask is not None:
        weights = target_mask[:, first : first + r, None].expand(b, r, k).to(ce.dtype)
    else:
        weights = torch.ones_like(ce)
    full = _per_example_mean(ce, weights)
    n_onset = max(0, min(r, onset_positions - first))
    if n_onset > 0:
        onset = _per_example_mean(ce[:, :n_onset], weights[:, :n_onset])
    else:
        onset = ce.new_zeros(())
    loss = full_weight * full + onset_weight * onset
    with torch.no_grad():
        hits = (logits.argmax(dim=-1) == scored).to(ce.dtype)
        accuracy = (hits * weights).sum() / weights.sum().clamp_min(1.0)
    return LossOutput(loss=loss, full=full.detach(), onset=onset.detach(), accuracy=accuracy)
