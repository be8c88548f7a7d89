"""The DOSE decoder-only transformer over ``[mixture tokens ; target tokens]``.

Sequence layout (M = ``mixture_len`` = 353, delay-patterned mixture, no start token; the target
sequence is ``[start=0] + delay-patterned frames + [end=0]``)::

    position:   0 ... M-1 | M        M+1 ...
    input:      mixture   | target[0] target[1] ...   (target_in = target[:, :-1])

The output at sequence position p predicts the token at position p + 1, so position
``M - 1 + j`` predicts ``target[:, j]``.

Two modes share the blocks (pre-LayerNorm, causal `scaled_dot_product_attention`, GELU MLP):

* ``published=True`` computes exactly what the public DOSE code computes: the input embedding is
  the sum of the 9 per-codebook embeddings **plus codebook 0's embedding a second time**, no
  position information, and logits at every position (``[B, M + L, 9, V]``). In training the
  published code scores positions ``M-1 ...`` (it also predicts the start token).
* ``published=False`` (our default) embeds each codebook once, adds learned positions, and
  projects to logits only from position ``logits_from`` on (default ``M``: the positions that
  predict ``target[:, 1:]``; the start token is given, not predicted).

A `KVCache` makes incremental decoding possible in both modes (`dose_model.model.generate`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dose_model.model.config import ModelConfig


class KVCache:
    """Preallocated keys/values of every layer for incremental decoding.

    Shapes: ``keys[i]``/``values[i]`` are ``[B, heads, capacity, head_dim]``; ``length`` is the
    number of positions already stored.
    """

    def __init__(self, num_layers: int, capacity: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.length = 0
        self.capacity = capacity

    def store(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H, T, hd] at positions length..length+T-1 of ``layer`` (allocated on
        first use with k's dtype/device); return all keys/values so far [B, H, length+T, hd]."""
        start, t = self.length, k.shape[2]
        if start + t > self.capacity:
            raise ValueError(f"KV cache capacity {self.capacity} exceeded")
        if self.keys[layer] is None:
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys[layer] = k.new_zeros(shape)
            self.values[layer] = v.new_zeros(shape)
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None  # allocated just above on first use
        keys[:, :, start : start + t] = k
        values[:, :, start : start + t] = v
        return keys[:, :, : start + t], values[:, :, : start + t]


class Attention(nn.Module):
    """Causal multi-head self-attention with one fused q/k/v projection (q, k, v in that order)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        queries_from: int = 0,
    ) -> torch.Tensor:
        """x: [B, T, d] -> [B, T - queries_from, d]: the outputs at positions queries_from..T-1,
        each attending to every position up to its own. With a cache, x holds the T newest
        positions (T=1 when the cache already holds positions; any T when it is empty)."""
        b, t, d = x.shape
        if queries_from:
            if cache is not None:
                raise ValueError("queries_from is for teacher-forced passes, not a KV cache")
            # Keys and values of every position, queries of the kept ones only.
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, queries_from:], w[:d], bias[:d])
            k, v = F.linear(x, w[d:], bias[d:]).split(d, dim=-1)
        else:
            q, k, v = self.qkv(x).split(d, dim=-1)
        tq = t - queries_from
        q = q.reshape(b, tq, self.num_heads, -1).transpose(1, 2)
        k, v = (z.reshape(b, t, self.num_heads, -1).transpose(1, 2) for z in (k, v))
        causal = True
        if cache is not None:
            start = cache.length
            if start > 0 and t != 1:
                raise ValueError("a non-empty KV cache takes one new position at a time")
            k, v = cache.store(layer, k, v)
            causal = start == 0
        if queries_from:  # query r is position queries_from + r: it sees keys 0..queries_from+r
            # A plain boolean mask rather than torch's CausalBias: that tensor subclass splits
            # the graph under torch.compile.
            mask = torch.ones(tq, t, dtype=torch.bool, device=q.device).tril(queries_from)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal and t > 1)
        y = y.transpose(1, 2).reshape(b, tq, d)
        return self.drop(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(config)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.mlp_ratio * d)
        self.fc2 = nn.Linear(config.mlp_ratio * d, d)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        keep_from: int = 0,
    ) -> torch.Tensor:
        """x: [B, T, d] -> [B, T - keep_from, d], the outputs at positions keep_from..T-1 (the
        dropped positions still serve as keys and values)."""
        x = x[:, keep_from:] + self.attn(self.ln1(x), cache, layer, queries_from=keep_from)
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class DoseTransformer(nn.Module):
    """Decoder-only transformer predicting DAC target tokens after the mixture tokens.

    Token tensors are ``long`` ``[B, T, num_codebooks]`` with values in ``[0, vocab_size)``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embeddings = nn.ModuleList(
            nn.Embedding(config.vocab_size, d) for _ in range(config.num_codebooks)
        )
        self.positions = nn.Embedding(config.max_len, d) if config.positions == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.num_codebooks * config.vocab_size)
        if not config.published:
            self.apply(_init_weights)
        # published mode keeps PyTorch's default initialisation, as the published code does.

    @property
    def first_predicted(self) -> int:
        """Index j of the first target token scored in training: 0 (published: the start token
        is predicted from the last mixture position) or 1 (ours: the start token is given)."""
        return 0 if self.config.published else 1

    def embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """tokens [B, T, K] -> embeddings [B, T, d] for sequence positions offset..offset+T-1."""
        x = self.embeddings[0](tokens[..., 0])
        if self.config.published:
            x = x + x  # published quirk: codebook 0's embedding is added twice
        for k in range(1, self.config.num_codebooks):
            x = x + self.embeddings[k](tokens[..., k])
        if self.positions is not None:
            t = tokens.shape[1]
            if offset + t > self.config.max_len:
                raise ValueError(
                    f"sequence of {offset + t} positions exceeds model.max_len {self.config.max_len}"
                )
            idx = torch.arange(offset, offset + t, device=tokens.device)
            x = x + self.positions(idx)
        return x

    def hidden(
        self,
        tokens: torch.Tensor,
        cache: KVCache | None = None,
        offset: int = 0,
        keep_from: int = 0,
    ) -> torch.Tensor:
        """tokens [B, T, K] at positions offset.. -> final-LayerNorm hidden states
        [B, T - keep_from, d] of the positions keep_from.. (relative to ``tokens``).

        The last block computes only the kept positions: no later layer reads the others, so
        their queries, attention outputs and MLP rows would be thrown away (in training, the
        353 mixture positions: about 5 % of the model's multiply-adds at the published sizes).
        """
        x = self.drop(self.embed(tokens, offset))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, keep_from=keep_from if i == last else 0)
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.ln_f(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, d] -> logits [B, T, K, V] (codebook-major, as the published head)."""
        out = self.head(h)
        return out.view(*out.shape[:-1], self.config.num_codebooks, self.config.vocab_size)

    def forward(
        self,
        mixture: torch.Tensor,
        target_in: torch.Tensor,
        logits_from: int | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            mixture: [B, M, K] long, delay-patterned mixture tokens.
            target_in: [B, L, K] long, the target sequence without its last position
                (``target[:, :-1]``).
            logits_from: first sequence position to project to logits; default 0 in published
                mode (all ``M + L`` positions, as the published code), ``M`` in ours.

        Returns:
            [B, M + L - logits_from, K, V] float logits; row r predicts the token at sequence
            position ``logits_from + r + 1``, i.e. ``target[:, logits_from + r + 1 - M]``.
        """
        if logits_from is None:
            logits_from = 0 if self.config.published else mixture.shape[1]
        tokens = torch.cat([mixture, target_in], dim=1)
        return self.logits(self.hidden(tokens, keep_from=logits_from))

    def target_logits(self, mixture: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """Logits aligned with ``target[:, first_predicted:]``: [B, L + 1 - first_predicted, K, V].

        Published mode computes logits at every position (faithful cost) and keeps positions
        ``M - 1 ...``; ours projects only positions ``M ...``.
        """
        m = mixture.shape[1]
        if self.config.published:
            return self.forward(mixture, target_in, logits_from=0)[:, m - 1 :]
        return self.forward(mixture, target_in, logits_from=m)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _init_weights(module: nn.Module) -> None:
    """GPT-style initialisation for our mode: N(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
