"""Generation throughput: the published generate vs our eager cached path vs the static engine.

Rows, all on one device in one run, random weights and random mixture tokens, every one-shot
running all ``max_len - 1`` decode steps (random weights rarely end; the stop is disabled so
each method does the same work):

* ``published``: a replica of the public code's loop: the whole sequence through the model at
  every step (no cache), logits at every position, the last one sampled (greedy); the model is
  our published-mode `DoseTransformer` (one fused q/k/v matmul where the public code has
  three: a little faster than the original);
* ``eager``: `dose_model.model.generate.generate` with its KV cache (bf16 through autocast);
* ``static``: `dose_model.model.decode.StaticDecoder` (fixed cache, device-side sampling; CUDA graphs
  on CUDA; bf16 as bf16 weights and cache).

For each (precision, method, batch): one-shots per second, ms per one-shot, the token
agreement with eager fp32 on the same mixtures (greedy; the first ``--agree-rows`` rows), and
the one-shots/s as a ratio to the published fp32 batch-1 row of the same run.

    python benchmarks/bench_generate.py                    # GPU: published sizes, b 1/64/256/1024
    python benchmarks/bench_generate.py --device cpu       # CPU: a small model, ~1 min
    python benchmarks/bench_generate.py --json out.json    # also write the rows as JSON
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

from dose_model.device import resolve_device
from dose_model.model.config import ModelConfig
from dose_model.model.decode import StaticDecoder
from dose_model.model.generate import generate
from dose_model.model.transformer import DoseTransformer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@torch.no_grad()
def published_generate(model: DoseTransformer, mixture: torch.Tensor, rows: int) -> torch.Tensor:
    """The public code's loop: full forward of [mixture ; rows so far] every step, logits at
    every position, argmax of the last. Published mode: the first row is predicted."""
    context, out = mixture, []
    for _ in range(rows):
        logits = model.logits(model.hidden(context))  # [B, T, K, V], every position
        token = logits[:, -1].argmax(dim=-1)
        out.append(token)
        context = torch.cat([context, token[:, None]], dim=1)
    return torch.stack(out, dim=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _runner(method, models, precision, batch, max_len, device, compile_):
    """A callable that generates for a [batch, M, K] mixture and returns tokens."""
    model = models[method == "published"]
    if method == "published":

        def run(mix):
            with _autocast(device, precision):
                return published_generate(model, mix, max_len)

    elif method == "eager":

        def run(mix):
            with _autocast(device, precision):
                return generate(model, mix, max_len=max_len, stop_on_end=False).tokens

    else:
        engine = StaticDecoder(model, batch, max_len, dtype=DTYPES[precision], compile=compile_)

        def run(mix):
            return engine.generate(mix, stop_on_end=False).tokens

    return run


def measure(run, mixture, device, repeats):
    """Best wall time of ``repeats`` runs after one warm-up (which also captures graphs)."""
    tokens = run(mixture)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run(mixture)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, tokens


def bench_row(args, method, precision, batch, models, mixtures, reference) -> dict:
    """Measure one (method, precision, batch) row: speed and agreement with eager fp32."""
    device = mixtures.device
    run = _runner(method, models, precision, batch, reference["max_len"], device, args.compile)
    seconds, tokens = measure(run, mixtures[:batch], device, args.repeats)
    want = reference[method == "published"][:batch]
    agreement = float((tokens[: want.shape[0]] == want).float().mean())
    del run
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return dict(
        precision=precision,
        method=method,
        batch=batch,
        oneshots_per_s=batch / seconds,
        ms_per_oneshot=1000 * seconds / batch,
        agreement=agreement,
    )


def print_row(row: dict) -> None:
    ratio = row["ratio_to_published"]
    print(
        f"{row['precision']:<10}{row['method']:<11}{row['batch']:>6}"
        f"{row['oneshots_per_s']:>13.2f}{row['ms_per_oneshot']:>13.2f}{row['agreement']:>11.4f}"
        + (f"{ratio:>12.2f}x" if ratio else f"{'-':>13}"),
        flush=True,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:N")
    p.add_argument("--batches", default=None, help="default 1,64,256,1024 on cuda, 1,4 on cpu")
    p.add_argument("--precisions", default="fp32,bf16", help="default fp32,bf16")
    p.add_argument("--methods", default="published,eager,static", help="rows to measure")
    p.add_argument(
        "--published-batches", default="1", help="batches of the slow published loop (1)"
    )
    p.add_argument("--eager-max-batch", type=int, default=1024, help="largest eager batch")
    p.add_argument("--layers", type=int, default=None, help="default 10 cuda (published), 2 cpu")
    p.add_argument("--heads", type=int, default=None, help="default 16 cuda, 4 cpu")
    p.add_argument("--d-model", type=int, default=None, help="default 1024 cuda, 64 cpu")
    p.add_argument("--max-len", type=int, default=None, help="target rows (183 cuda, 32 cpu)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs, best kept (default 2)")
    p.add_argument("--agree-rows", type=int, default=4, help="rows compared for agreement")
    p.add_argument("--compile", action="store_true", help="static engine under torch.compile")
    p.add_argument("--json", default=None, help="write the rows here (after every row)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    batches = [int(b) for b in (args.batches or ("1,64,256,1024" if cuda else "1,4")).split(",")]
    sizes = dict(
        num_layers=args.layers or (10 if cuda else 2),
        num_heads=args.heads or (16 if cuda else 4),
        d_model=args.d_model or (1024 if cuda else 64),
        dropout=0.0,
    )
    max_len = args.max_len or (183 if cuda else 32)
    torch.manual_seed(0)
    ours = DoseTransformer(ModelConfig(**sizes)).to(device).eval()
    published = DoseTransformer(ModelConfig.published_config(**sizes)).to(device).eval()
    models = {False: ours, True: published}
    cfg = ours.config
    gen = torch.Generator().manual_seed(1)
    mixtures = torch.randint(1, 1025, (max(batches), cfg.mixture_len, 9), generator=gen).to(device)
    agree_n = min(args.agree_rows, max(batches))
    reference: dict = {
        pub: generate(models[pub], mixtures[:agree_n], max_len=max_len, stop_on_end=False).tokens
        for pub in (False, True)
    }
    reference["max_len"] = max_len
    print(
        f"device {torch.cuda.get_device_name(device) if cuda else 'cpu'}; torch "
        f"{torch.__version__}; {sizes['num_layers']} layers, d_model {sizes['d_model']}, "
        f"{max_len - 1} decode steps per one-shot",
        flush=True,
    )
    header = f"{'precision':<10}{'method':<11}{'batch':>6}{'one-shots/s':>13}{'ms/one-shot':>13}"
    print(header + f"{'agreement':>11}{'x published':>13}", flush=True)
    rows, base = [], None
    for precision in args.precisions.split(","):
        for method in args.methods.split(","):
            for batch in batches:
                if method == "published" and str(batch) not in args.published_batches.split(","):
                    continue
                if method == "eager" and batch > args.eager_max_batch:
                    continue
                row = bench_row(args, method, precision, batch, models, mixtures, reference)
                if method == "published" and precision == "fp32" and batch == 1:
                    base = row["oneshots_per_s"]
                row["ratio_to_published"] = row["oneshots_per_s"] / base if base else None
                rows.append(row)
                print_row(row)
                if args.json:
                    Path(args.json).write_text(json.dumps({"sizes": sizes, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
