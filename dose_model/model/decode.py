"""Static decode engine: DOSE generation with fixed shapes, for CUDA graphs and torch.compile.

`dose_model.model.generate.generate` (the eager cached path) is the reference; this engine gives the
same greedy tokens (tests/dose_model/test_decode.py) with every per-step decision kept on the device:

* one fixed-size KV cache ``[B, heads, capacity, head_dim]`` per layer, written at a position
  held in a device tensor (``index_copy_``), read whole with a boolean mask ``key <= pos``:
  no Python-int slice changes from one step to the next;
* one fused embedding table ``[K * V, d]`` (codebook k's rows at ``k * V``; in published mode
  codebook 0's rows are doubled, which is exactly the published ``x + x``);
* sampling (greedy argmax, or top-p by inverse CDF on the sorted, truncated distribution) and
  end tracking on the device; the host syncs once every ``check_every`` steps (to stop when
  every row has ended) and once at the end;
* optional bf16 weights and cache (``dtype``); the logits are sampled in float32;
* on CUDA the decode steps are captured in CUDA graphs (``graph_steps`` steps per graph) and
  replayed; on the CPU the same step function runs eagerly. ``compile=True`` wraps the step in
  `torch.compile` first.

Top-p draws its random numbers from a counter-based hash of (row seed, row index, codebook):
a row's tokens depend on its own mixture and seed only, never on the batch size or on its
place in the batch, so extraction can batch clips of many songs.

Confidence: each row also gets its mean token log-probability (natural log, under the model's
untempered distribution, over the 9 tokens of every row it generated up to and including its
end row): `Generation.mean_log_prob`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F

from dose_model.model.generate import Generation, nucleus
from dose_model.model.transformer import Block, DoseTransformer

_MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31: a 32-bit value times one of them stays below 2**63 (no int64
# overflow on any backend).
_HASH_MULTIPLIERS = (0x7FEB352D, 0x5BD1E995, 0x2C1B3C6D)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply rounds) of int64 values in [0, 2**32)."""
    for mult in _HASH_MULTIPLIERS:
        x = x ^ (x >> 16)
        x = (x * mult) & _MASK32
    return x ^ (x >> 16)


def row_uniforms(
    seeds: torch.Tensor, row: torch.Tensor, num_codebooks: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Uniform numbers in [0, 1) ``[B, num_codebooks]``, a pure function of (seed, row,
    codebook): ``seeds`` int64 ``[B]`` (any 63-bit values), ``row`` int64 ``[1]``."""
    book = torch.arange(num_codebooks, device=seeds.device)
    x = _mix32((seeds & _MASK32)[:, None] ^ _mix32(book[None, :] + 0x9E3779B))
    x = _mix32(x ^ ((seeds >> 32) & _MASK32)[:, None])
    x = _mix32(x ^ _mix32(row + 0x632BE5AB)[:, None])
    return (x >> 8).to(dtype) / float(1 << 24)


def top_p_pick(
    logits: torch.Tensor, uniforms: torch.Tensor, top_p: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """Nucleus sampling with given random numbers: logits ``[B, K, V]``, uniforms ``[B, K]``
    -> tokens long ``[B, K]``. The kept set is `dose_model.model.generate.nucleus` (as in
    `dose_model.model.generate.sample_tokens`); the pick is the inverse CDF of the renormalised
    kept set at ``uniforms``."""
    kept, order = nucleus(logits, top_p, temperature)
    cdf = kept.cumsum(dim=-1)
    goal = uniforms[..., None] * cdf[..., -1:]
    pick = (cdf <= goal).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    return order.gather(-1, pick).squeeze(-1)


@dataclass
class _Layer:
    """One block's weights (engine dtype) and its KV cache ``[B, H, capacity, hd]``."""

    ln1: tuple[torch.Tensor, torch.Tensor]
    qkv: tuple[torch.Tensor, torch.Tensor]
    proj: tuple[torch.Tensor, torch.Tensor]
    ln2: tuple[torch.Tensor, torch.Tensor]
    fc1: tuple[torch.Tensor, torch.Tensor]
    fc2: tuple[torch.Tensor, torch.Tensor]
    keys: torch.Tensor
    values: torch.Tensor


def _pair(
    module: torch.nn.Linear | torch.nn.LayerNorm, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight.detach().to(dtype), module.bias.detach().to(dtype)


class StaticDecoder:
    """Fixed-shape generation for one model and a batch of at most ``batch_size`` mixtures.

    Args:
        model: a `DoseTransformer` (either mode); its weights are copied (in ``dtype``).
        batch_size: rows per decode; smaller batches are padded (padding rows never block the
            early stop and are dropped from the result).
        max_len: rows of the target sequence, start row included (default the model's
            ``max_target_len``).
        dtype: weights, activations and cache (torch.float32 or torch.bfloat16).
        cuda_graph: capture the decode steps in CUDA graphs (default: on CUDA devices).
        graph_steps: decode steps per captured graph (default 4 with CUDA graphs, else 1);
            the last group may run past ``max_len``: those rows are masked and dropped.
        compile: run the step through `torch.compile` (CUDA graphs still apply).
    """

    def __init__(
        self,
        model: DoseTransformer,
        batch_size: int,
        max_len: int | None = None,
        dtype: torch.dtype = torch.float32,
        cuda_graph: bool | None = None,
        graph_steps: int | None = None,
        compile: bool = False,
    ) -> None:
        cfg = model.config
        self.cfg, self.batch, self.dtype = cfg, batch_size, dtype
        self.max_len = max_len or cfg.max_target_len
        if batch_size < 1 or not 2 <= self.max_len <= cfg.max_target_len:
            raise ValueError(
                f"batch_size must be >= 1 and max_len in [2, {cfg.max_target_len}], "
                f"got {batch_size}, {self.max_len}"
            )
        self.device = next(model.parameters()).device
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        if self.cuda_graph and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA model")
        self.graph_steps = graph_steps or (4 if self.cuda_graph else 1)
        # Prefill positions: the mixture (published) or the mixture and the start row (ours).
        self.prefill_len = cfg.mixture_len + (0 if cfg.published else 1)
        self.first_row = 0 if cfg.published else 1
        self.steps = self.max_len - 1 - self.first_row
        padded_steps = -(-self.steps // self.graph_steps) * self.graph_steps
        self.capacity = self.prefill_len + padded_steps
        self._copy_weights(model)
        self._allocate_state()
        self._step_fn = torch.compile(self._step, dynamic=False) if compile else self._step
        self._graphs: dict[str, list[torch.cuda.CUDAGraph]] = {}

    def _copy_weights(self, model: DoseTransformer) -> None:
        cfg, dt = self.cfg, self.dtype
        with torch.no_grad():
            embeddings = cast("Iterable[torch.nn.Embedding]", model.embeddings)  # a ModuleList
            table = torch.cat([e.weight.detach() for e in embeddings]).clone()
            if cfg.published:
                table[: cfg.vocab_size] *= 2  # x + x, exactly
            self.table = table.to(dt)
            self.offsets = torch.arange(cfg.num_codebooks, device=self.device) * cfg.vocab_size
            self.positions = (
                model.positions.weight.detach().to(dt) if model.positions is not None else None
            )
            shape = (
                self.batch,
                cfg.num_heads,
                self.capacity,
                cfg.d_model // cfg.num_heads,
            )

            def layer(b: Block) -> _Layer:
                ln1, qkv, proj, ln2, fc1, fc2 = (
                    _pair(m, dt) for m in (b.ln1, b.attn.qkv, b.attn.proj, b.ln2, b.fc1, b.fc2)
                )
                return _Layer(
                    ln1,
                    qkv,
                    proj,
                    ln2,
                    fc1,
                    fc2,
                    keys=torch.zeros(shape, dtype=dt, device=self.device),
                    values=torch.zeros(shape, dtype=dt, device=self.device),
                )

            self.layers = [layer(b) for b in cast("Iterable[Block]", model.blocks)]  # a ModuleList
            self.ln_f = _pair(model.ln_f, dt)
            self.head = _pair(model.head, dt)

    def _allocate_state(self) -> None:
        """Device tensors the steps read and write in place (fixed addresses for the graphs)."""
        b, k, dev = self.batch, self.cfg.num_codebooks, self.device
        rows = self.first_row + 1 + self.capacity - self.prefill_len
        self.tokens = torch.zeros(b, rows, k, dtype=torch.long, device=dev)
        self.token = torch.zeros(b, k, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)  # position of self.token
        self.row = torch.zeros(1, dtype=torch.long, device=dev)  # row self.token was put in
        self.ended = torch.zeros(b, dtype=torch.bool, device=dev)
        self.end_row = torch.zeros(b, dtype=torch.long, device=dev)
        self.log_prob = torch.zeros(b, dtype=torch.float32, device=dev)
        self.counted = torch.zeros(b, dtype=torch.float32, device=dev)
        self.seeds = torch.zeros(b, dtype=torch.long, device=dev)
        self.top_p = torch.full((), 0.9, dtype=torch.float32, device=dev)
        self.temperature = torch.ones((), dtype=torch.float32, device=dev)
        self.key_pos = torch.arange(self.capacity, device=dev)
        self.last_row = torch.full((1,), self.tokens.shape[1] - 1, device=dev)
        self.max_rows = torch.full((1,), self.max_len, device=dev)

    # -- the model, on the engine's own weights ------------------------------------------------

    def _embed(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """tokens [B, T, K], positions long [T] -> [B, T, d] (sum in codebook order)."""
        parts = F.embedding(tokens + self.offsets, self.table)  # [B, T, K, d]
        x = parts[:, :, 0]
        for k in range(1, self.cfg.num_codebooks):
            x = x + parts[:, :, k]
        if self.positions is not None:
            x = x + F.embedding(pos.clamp(max=self.positions.shape[0] - 1), self.positions)
        return x

    def _blocks(self, x: torch.Tensor, pos: torch.Tensor, prefill: bool) -> torch.Tensor:
        """x [B, T, d] at positions ``pos`` [T] -> final-LayerNorm hidden states [B, T, d];
        writes the keys/values of those positions into the caches."""
        b, t, d = x.shape
        heads = self.cfg.num_heads
        mask = None if prefill else (self.key_pos <= pos)[None, :]  # [1, capacity]
        for layer in self.layers:
            h = F.layer_norm(x, (d,), *layer.ln1)
            q, k, v = F.linear(h, *layer.qkv).split(d, dim=-1)
            q, k, v = (z.reshape(b, t, heads, -1).transpose(1, 2) for z in (q, k, v))
            layer.keys.index_copy_(2, pos, k)
            layer.values.index_copy_(2, pos, v)
            if prefill:  # the cache holds exactly these positions: plain causal attention
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, layer.keys, layer.values, attn_mask=mask)
            x = x + F.linear(y.transpose(1, 2).reshape(b, t, d), *layer.proj)
            h = F.layer_norm(x, (d,), *layer.ln2)
            x = x + F.linear(F.gelu(F.linear(h, *layer.fc1)), *layer.fc2)
        return F.layer_norm(x, (d,), *self.ln_f)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """hidden [B, d] -> logits [B, K, V]."""
        return F.linear(h, *self.head).view(h.shape[0], self.cfg.num_codebooks, -1)

    # -- one decode step, all on the device ----------------------------------------------------

    def _choose(self, logits: torch.Tensor, strategy: str) -> None:
        """Sample the next row from ``logits`` [B, K, V], track ends and scores, store it."""
        logits = logits.float()  # once, for the pick and the score
        if strategy == "greedy":
            token = logits.argmax(dim=-1)
        else:
            u = row_uniforms(self.seeds, self.row, self.cfg.num_codebooks)
            token = top_p_pick(logits, u, self.top_p, self.temperature)
        live = ~self.ended & (self.row < self.max_rows)  # rows past max_len: graph padding
        token = token * live[:, None]
        lp = torch.log_softmax(logits, dim=-1).gather(-1, token[..., None])
        self.log_prob.add_(lp.squeeze(-1).sum(dim=-1) * live)
        self.counted.add_(live.float() * self.cfg.num_codebooks)
        is_end = (token == 0).all(dim=-1) & (self.row > 0) & live
        self.end_row.copy_(torch.where(is_end, self.row, self.end_row))
        self.ended.logical_or_(is_end)
        self.tokens.index_copy_(1, self.row.clamp(max=self.last_row), token[:, None])
        self.token.copy_(token)

    def _step(self, strategy: str) -> None:
        """Feed ``self.token`` at ``self.pos``; choose the next row; advance the counters."""
        h = self._blocks(self._embed(self.token[:, None], self.pos), self.pos, prefill=False)
        self.pos.add_(1)
        self.row.add_(1)
        self._choose(self._logits(h[:, 0]), strategy)

    def _steps(self, strategy: str) -> None:
        for _ in range(self.graph_steps):
            self._step_fn(strategy)

    def _capture(self, strategy: str) -> None:
        """Record ``graph_steps`` decode steps as one CUDA graph (after warm-up runs on a side
        stream; the prefill that follows resets every state tensor they touched)."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._steps(strategy)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._steps(strategy)
        self._graphs[strategy] = [graph]

    # -- public ------------------------------------------------------------------------------

    def prepare(self, strategy: str = "greedy") -> None:
        """Capture the CUDA graphs of ``strategy`` now if they are used and not yet captured
        (`generate` does it on first use; callers that generate from several threads call it
        first, from one thread, as a capture must not overlap other CUDA work)."""
        if self.cuda_graph and strategy not in self._graphs:
            self._capture(strategy)

    def _prefill(self, mixture: torch.Tensor, strategy: str) -> None:
        """Encode the mixture (and the start row) into the caches; choose the first row."""
        b, k = self.batch, self.cfg.num_codebooks
        n = mixture.shape[0]
        context = torch.zeros(b, self.prefill_len, k, dtype=torch.long, device=self.device)
        context[:n, : self.cfg.mixture_len] = mixture
        pos = torch.arange(self.prefill_len, device=self.device)
        h = self._blocks(self._embed(context, pos), pos, prefill=True)
        self.tokens.zero_()
        self.token.zero_()
        self.ended.zero_()
        self.ended[n:] = True  # padding rows
        self.end_row.zero_()
        self.log_prob.zero_()
        self.counted.zero_()
        self.pos.fill_(self.prefill_len)
        self.row.fill_(self.first_row)
        self._choose(self._logits(h[:, -1]), strategy)

    @torch.no_grad()
    def generate(
        self,
        mixture: torch.Tensor,
        strategy: str = "greedy",
        top_p: float = 0.9,
        temperature: float = 1.0,
        seeds: Sequence[int] | torch.Tensor | None = None,
        stop_on_end: bool = True,
        check_every: int = 16,
    ) -> Generation:
        """Generate target tokens for ``mixture`` [n <= batch_size, M, K] long.

        Args:
            strategy: "greedy" or "top-p" (``top_p``, ``temperature`` as in
                `dose_model.model.generate.sample_tokens`).
            seeds: one int per row (top-p); default 0 for every row. A row's tokens depend
                only on its mixture and its seed.
            stop_on_end: stop once every row has ended (checked every ``check_every`` steps;
                the result is trimmed as `dose_model.model.generate.generate` trims it).

        Returns:
            `Generation` (tokens [n, N, K], ended [n], mean_log_prob [n]), N <= max_len.
        """
        n = mixture.shape[0]
        if strategy not in ("greedy", "top-p"):
            raise ValueError(f"strategy must be 'greedy' or 'top-p', got {strategy!r}")
        if not 1 <= n <= self.batch or tuple(mixture.shape[1:]) != (
            self.cfg.mixture_len,
            self.cfg.num_codebooks,
        ):
            raise ValueError(
                f"mixture must be [1..{self.batch}, {self.cfg.mixture_len}, "
                f"{self.cfg.num_codebooks}], got {list(mixture.shape)}"
            )
        seeds = torch.as_tensor([0] * n if seeds is None else seeds, dtype=torch.long)
        if seeds.shape != (n,):
            raise ValueError(f"{seeds.numel()} seeds for {n} rows")
        self.seeds.zero_()
        self.seeds[:n] = seeds.to(self.device)
        self.top_p.fill_(top_p)
        self.temperature.fill_(temperature)
        self.prepare(strategy)
        self._prefill(mixture.to(self.device), strategy)
        done = 0
        while done < self.steps:
            if self.cuda_graph:
                self._graphs[strategy][0].replay()
            else:
                self._steps(strategy)
            done += self.graph_steps
            if stop_on_end and check_every and done % check_every < self.graph_steps:
                if bool(self.ended.all()):
                    break
        return self._result(n, stop_on_end)

    def _result(self, n: int, stop_on_end: bool) -> Generation:
        ended = self.ended[:n].clone()
        rows = self.max_len
        if stop_on_end and bool(ended.all()):  # as the eager loop: stop at the last end row
            rows = int(self.end_row[:n].max()) + 1
        return Generation(
            tokens=self.tokens[:n, :rows].clone(),
            ended=ended,
            mean_log_prob=(self.log_prob[:n] / self.counted[:n].clamp(min=1)).cpu(),
        )
