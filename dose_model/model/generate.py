"""Autoregressive generation of target tokens (greedy or top-p), with or without a KV cache.

Published mode (as the public code): generation starts from the mixture alone; the first
generated row is the model's prediction for the start position. Our mode: the start token 0 is
given and generation predicts ``target[:, 1:]``. In both, an element ends when a whole row of
``num_codebooks`` tokens is 0 after the first row; later rows of an ended element are 0 (pad).

Uncached generation recomputes the full sequence every step (the published cost); cached
generation keeps keys/values (`KVCache`) and feeds one position per step. Both give the same
tokens (tests/dose_model/test_generate.py). `dose_model.model.decode.StaticDecoder` is the fast engine with
the same results; this module stays the reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dose_model.model.transformer import DoseTransformer, KVCache


@dataclass
class Generation:
    """Generated target sequences.

    tokens: [B, N, K] long; row 0 is the start position (0 in our mode, the model's prediction
        in published mode), rows after an element's end row are 0.
    ended: [B] bool, True where the element produced its all-zero end row.
    mean_log_prob: [B] float32 on the CPU, the confidence score: the mean natural-log
        probability, under the model's untempered distribution, of the tokens the element
        generated (every codebook of every generated row up to and including its end row).
    """

    tokens: torch.Tensor
    ended: torch.Tensor
    mean_log_prob: torch.Tensor | None = None


def nucleus(
    logits: torch.Tensor, top_p: float | torch.Tensor, temperature: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The nucleus of ``logits`` [..., V] at ``temperature``: the probabilities sorted in
    descending order with every token past the smallest set whose mass reaches ``top_p`` set
    to 0 (not renormalised), and the token of each sorted position. ``top_p`` and
    ``temperature`` may be floats or tensors (the static engine's graph inputs)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly more likely tokens
    return sorted_probs.masked_fill(before >= top_p, 0.0), order  # the set already reaches top_p


def sample_tokens(
    logits: torch.Tensor,
    strategy: str = "greedy",
    top_p: float = 0.9,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per codebook.

    Args:
        logits: [B, K, V] float.
        strategy: "greedy" (argmax) or "top-p" (nucleus sampling: the smallest set of most likely
            tokens whose probability reaches ``top_p``, renormalised).
        generator: torch RNG for top-p (on the logits' device).

    Returns:
        [B, K] long tokens.
    """
    if strategy == "greedy":
        return logits.argmax(dim=-1)
    if strategy != "top-p":
        raise ValueError(f"strategy must be 'greedy' or 'top-p', got {strategy!r}")
    sorted_probs, order = nucleus(logits, top_p, temperature)
    flat = sorted_probs.reshape(-1, sorted_probs.shape[-1])
    pick = torch.multinomial(flat, 1, generator=generator).view(*sorted_probs.shape[:-1], 1)
    return order.gather(-1, pick).squeeze(-1)


@torch.no_grad()
def generate(
    model: DoseTransformer,
    mixture: torch.Tensor,
    max_len: int | None = None,
    strategy: str = "greedy",
    top_p: float = 0.9,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    stop_on_end: bool = True,
) -> Generation:
    """Generate target token sequences for a batch of mixtures.

    Args:
        model: a `DoseTransformer` (put it in eval mode for deterministic output).
        mixture: [B, M, K] long mixture tokens.
        max_len: rows of the returned target sequence, start row included (default
            ``model.config.max_target_len``, 183 = 2 s targets).
        strategy, top_p, temperature, generator: see `sample_tokens`.
        use_cache: KV-cache decoding (one position per step) instead of full recomputation.
        stop_on_end: stop once every element has ended (else always produce ``max_len`` rows).

    Returns:
        `Generation` with tokens [B, N, K], N <= max_len.
    """
    cfg = model.config
    max_len = max_len or cfg.max_target_len
    b, m, k = mixture.shape
    device = mixture.device
    rows, context = _start(model, mixture)
    ended = torch.zeros(b, dtype=torch.bool, device=device)
    cache = KVCache(cfg.num_layers, m + max_len) if use_cache else None
    log_prob = torch.zeros(b, dtype=torch.float32, device=device)
    counted = torch.zeros(b, dtype=torch.float32, device=device)
    step_input, offset = context, 0
    while len(rows) < max_len:
        logits = _next_logits(model, context, step_input, cache, offset)  # [B, K, V]
        if cache is not None:
            offset += step_input.shape[1]
        token = sample_tokens(logits, strategy, top_p, temperature, generator)
        token = token.masked_fill(ended[:, None], 0)
        live = ~ended
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, token[..., None])
        log_prob += lp.squeeze(-1).sum(dim=-1) * live
        counted += live.float() * k
        if rows:  # an all-zero row after the first one is the end token
            ended = ended | (token == 0).all(dim=-1)
        rows.append(token)
        if stop_on_end and bool(ended.all()):
            break
        step_input = token[:, None]
        if cache is None:
            context = torch.cat([context, step_input], dim=1)
    mean_log_prob = (log_prob / counted.clamp(min=1)).cpu()
    return Generation(tokens=torch.stack(rows, dim=1), ended=ended, mean_log_prob=mean_log_prob)


def _start(
    model: DoseTransformer, mixture: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The target rows a generation starts with (the all-zero start row; none for a
    published model, which has no start row) and the context they make with the mixture."""
    if model.config.published:
        return [], mixture
    b, _, k = mixture.shape
    start = torch.zeros(b, k, dtype=torch.long, device=mixture.device)
    return [start], torch.cat([mixture, start[:, None]], dim=1)


def _next_logits(
    model: DoseTransformer,
    context: torch.Tensor,
    step_input: torch.Tensor,
    cache: KVCache | None,
    offset: int,
) -> torch.Tensor:
    """Logits [B, K, V] of the next target row: with a KV cache from ``step_input``, the
    positions from ``offset`` on; without one recomputed over the whole ``context``."""
    if cache is not None:
        h = model.hidden(step_input, cache, offset)
    else:
        h = model.hidden(context, keep_from=context.shape[1] - 1)
    return model.logits(h[:, -1])
