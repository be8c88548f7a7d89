"""Training-step throughput: the published DOSE training step vs ours, same device, one run.

Published replica (faithful to the public training code): published-mode model (codebook 0
embedded twice, no positions, separate q/k/v projections), logits for all 353 + 182 = 535
positions x 9,225, and its three cross-entropies on ``b v s d``-rearranged logits
(mixture-continuation loss over 352 positions computed and logged but not trained on; onset
loss over 10 positions; full loss over 183), Adam. Ours: our-mode model (the last block
computes only target rows), and the REAL training step of `dose_model.train.loop`: batches read by
`BatchLoader` from a token cache on disk (random codes; memory-mapped shards, checksums, whole-
batch delay pattern, background thread, pinned memory on cuda), the learning-rate schedule,
autocast, `dose_model.model.losses.dose_loss`, gradient clipping and fused AdamW (`_optimize`), the
metrics window (no validation or checkpoint writes). Both: dropout 0.1.

    python benchmarks/bench_train.py                      # GPU: published sizes, batch 64
    python benchmarks/bench_train.py --compile            # + both steps under torch.compile
    python benchmarks/bench_train.py --device cpu         # CPU: small model, batch 4

Prints one row per (precision, model, eager/compiled) and, per precision, every row's
examples/s as a ratio to the published replica run eagerly (the published code's own way of
training) in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dose_model.cache.index import FORMAT, VERSION, file_record
from dose_model.model.checkpoints import TrainState
from dose_model.model.config import ModelConfig, TrainConfig
from dose_model.model.transformer import DoseTransformer
from dose_model.train.batches import TokenDataset
from dose_model.train.distributed import DistEnv
from dose_model.train.loader import BatchLoader
from dose_model.train.log import MetricsLog
from dose_model.train.loop import _build, _optimize


class SeparateQKVAttention(torch.nn.Module):
    """The published attention layout: separate query/key/value projections (3 matmuls)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = torch.nn.Linear(d_model, d_model)
        self.key = torch.nn.Linear(d_model, d_model)
        self.value = torch.nn.Linear(d_model, d_model)
        self.proj = torch.nn.Linear(d_model, d_model)
        self.drop = torch.nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, cache=None, layer: int = 0, queries_from: int = 0
    ) -> torch.Tensor:
        """x: [B, T, d] -> [B, T, d], causal (the published model computes every position)."""
        assert queries_from == 0
        b, t, d = x.shape
        q, k, v = (
            lin(x).reshape(b, t, self.num_heads, -1).transpose(1, 2)
            for lin in (self.query, self.key, self.value)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


def published_replica(cfg: ModelConfig) -> DoseTransformer:
    """Published-mode model with the published attention layout in every block."""
    model = DoseTransformer(cfg)
    for block in model.blocks:
        block.attn = SeparateQKVAttention(cfg.d_model, cfg.num_heads, cfg.dropout)
    return model


def published_step_loss(model: DoseTransformer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The published training_step's loss: start + audio CE (dac CE computed, unused)."""
    b, m, k = x.shape
    pred = model(x, y[:, :-1], logits_from=0)  # [B, 535, K, V], all positions
    target = torch.cat([x, y], dim=1)[:, 1:]
    length = y.shape[1]

    def ce(lo: int, hi: int) -> torch.Tensor:
        return F.cross_entropy(pred[:, lo:hi].permute(0, 3, 1, 2), target[:, lo:hi])

    dac = ce(0, m - 1)
    start = ce(m - 1, m - 1 + 10)
    audio = ce(m - 1, m - 1 + length)
    dac.detach()  # the published code logs it
    return start + audio


def write_random_cache(folder: Path, rows: int, target_frames: int, seed: int = 0) -> Path:
    """A token cache (the `dose-tokenize` format, checksums included) of ``rows`` random
    examples: 4 s mixtures (345 frames), one-shots of ``target_frames`` frames."""
    rng = np.random.default_rng(seed)
    shard = folder / "train" / "000000"
    shard.mkdir(parents=True)
    arrays = {"mixture": 345} | {d: target_frames for d in ("kick", "snare", "hihat")}
    files = {}
    for name, frames in arrays.items():
        np.save(shard / f"{name}.npy", rng.integers(0, 1024, (rows, 9, frames), dtype=np.int16))
        files[f"{name}.npy"] = file_record(shard / f"{name}.npy")
    (shard / "meta.json").write_text(json.dumps({"ids": [], "skipped": [], "files": files}))
    codec = {"sample_rate": 44100, "codebook_size": 1024, "n_codebooks": 9}
    config = {"codec": codec, "mixture_seconds": 4.0, "mixture_frames": 345}
    config |= {"oneshot_frames": target_frames, "manifests": {}}
    entry = {"dir": "train/000000", "rows": rows, "files": files}
    index = {"format": FORMAT, "version": VERSION, "complete": True, "config": config}
    index["splits"] = {"train": {"rows": rows, "shards": [entry]}}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def our_real_step(cfg: ModelConfig, precision: str, compiled: bool, args, device) -> tuple:
    """(step function, model) of dose_model.train.loop's own step on a random token cache."""
    total = args.warmup + args.repeats * args.steps
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    rows = max(args.batch_size * 4, 256)
    data = TokenDataset(write_random_cache(tmp / "tok", rows, args.target_frames), "train",
                        "kick")  # fmt: skip
    tcfg = TrainConfig(lr=1e-4, warmup_steps=10, max_steps=total, batch_size=args.batch_size,
                       target_frames=args.target_frames)  # fmt: skip
    state = TrainState(cfg.to_dict(), tcfg.to_dict())
    run = _build(state, DistEnv(), device, compiled, precision=precision, out=tmp)
    run.model.train()
    loader = BatchLoader(data, tcfg, DistEnv(), device)
    args.loaders.append(loader)
    log = MetricsLog(tmp / "metrics.csv", state, DistEnv(), device)
    steps = iter(range(total))

    def step() -> torch.Tensor:
        s = next(steps)
        terms = _optimize(run, loader.get(s), tcfg.lr_at(s))
        log.add(terms, args.batch_size)
        return terms[0]

    return step, run.model


def bench(
    name: str,
    cfg: ModelConfig,
    precision: str,
    compiled: bool,
    args: argparse.Namespace,
    device: torch.device,
) -> dict:
    """Time ``args.repeats`` rounds of ``args.steps`` training steps after ``args.warmup``
    untimed ones; returns a result row for the fastest round."""
    torch.manual_seed(0)
    if not cfg.published:
        step, model = our_real_step(cfg, precision, compiled, args, device)
        return _timed(name, precision, compiled, model, step, args, device)
    model = published_replica(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    fn = torch.compile(published_step_loss) if compiled else published_step_loss
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randint(1, 1025, (args.batch_size, 353, 9), generator=g).to(device)
    y = torch.randint(1, 1025, (args.batch_size, args.target_frames + 10, 9), generator=g)
    y[:, 0] = 0
    y[:, -1] = 0
    y = y.to(device)
    bf16 = precision == "bf16"

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return _timed(name, precision, compiled, model, step, args, device)


def _timed(name, precision, compiled, model, step, args, device) -> dict:
    """Run ``args.warmup`` untimed steps, then the fastest of ``args.repeats`` rounds of
    ``args.steps``; returns the result row."""
    for _ in range(args.warmup):
        step()
    elapsed = float("inf")
    for _ in range(args.repeats):  # best of R rounds: robust to a busy, shared machine
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = min(elapsed, time.perf_counter() - start)
    return {
        "name": name,
        "precision": precision,
        "mode": "compiled" if compiled else "eager",
        "params_m": model.num_parameters() / 1e6,
        "ms_per_step": 1000 * elapsed / args.steps,
        "examples_per_s": args.steps * args.batch_size / elapsed,
        "loss": float(loss.detach()),
    }


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the benchmark (every option with its default)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on cuda, 4 on cpu")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 cuda, 3 cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5 cuda, 1 cpu)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds, best kept (default 3)")
    p.add_argument("--layers", type=int, default=None, help="default 10 cuda (published), 2 cpu")
    p.add_argument("--heads", type=int, default=None, help="default 16 cuda (published), 4 cpu")
    p.add_argument("--d-model", type=int, default=None, help="default 1024 cuda, 128 cpu")
    p.add_argument("--target-frames", type=int, default=173, help="one-shot frames (default 173)")
    p.add_argument(
        "--precisions",
        default=None,
        help="comma list of fp32,bf16 (default: fp32,bf16 on cuda, fp32 on cpu)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time both steps under torch.compile (default: eager rows only)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns 0."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as workdir:
        args.workdir, args.loaders = workdir, []
        try:
            return _run(args)
        finally:
            for loader in args.loaders:
                loader.close()


def _run(args: argparse.Namespace) -> int:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (64 if gpu else 4)
    args.steps = args.steps or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    sizes = {
        "num_layers": args.layers or (10 if gpu else 2),
        "num_heads": args.heads or (16 if gpu else 4),
        "d_model": args.d_model or (1024 if gpu else 128),
        "max_target_len": args.target_frames + 10,
    }
    precisions = (args.precisions or ("fp32,bf16" if gpu else "fp32")).split(",")
    what = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"device: {what}; torch {torch.__version__}; batch {args.batch_size}; sizes {sizes}; "
        f"compile {args.compile}; "
        f"best of {args.repeats} x {args.steps} steps"
    )
    modes = (False, True) if args.compile else (False,)
    rows = []
    for precision in precisions:
        for compiled in modes:
            for name, cfg in (
                ("published", ModelConfig.published_config(**sizes)),
                ("ours", ModelConfig(**sizes)),
            ):
                try:
                    r = bench(name, cfg, precision, compiled, args, device)
                except torch.cuda.OutOfMemoryError:  # report it and go on with the other rows
                    print(f"{name:<10} {precision:<5} out of memory at batch {args.batch_size}")
                    torch.cuda.empty_cache()
                    continue
                rows.append(r)
                print(
                    f"{r['name']:<10} {r['precision']:<5} {r['mode']:<9} {r['params_m']:7.1f} M "
                    f"params {r['ms_per_step']:9.1f} ms/step {r['examples_per_s']:9.1f} examples/s",
                    flush=True,
                )
    for precision in precisions:
        base = next(
            (
                r
                for r in rows
                if (r["name"], r["precision"], r["mode"]) == ("published", precision, "eager")
            ),
            None,
        )
        if base is None:
            continue
        for r in rows:
            if r["precision"] == precision and r is not base:
                ratio = r["examples_per_s"] / base["examples_per_s"]
                print(
                    f"ratio {r['name']} {r['mode']} / published eager ({precision}): {ratio:.2f}x"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
