"""Encode throughput of DacCodec (audio-seconds encoded per wall-clock second).

Full 44.1 kHz DAC architecture with random weights (no weights file needed). For each
mode and batch size it encodes batches of ``--seconds`` of noise-like audio and prints
audio-s/s, the ratio to the baseline measured in the same run (the first device, mode and
batch size: the CPU by default), and the fraction of codes equal to strict-FP32 codes of the
same input.

Modes:
  fp32     PyTorch's defaults (on CUDA: TF32 cuDNN convolutions), what dose-tokenize uses
  strict   FP32 without TF32 (codes as on the CPU; = fp32 on the CPU)
  bf16     bf16 autocast
  compile  fp32 + torch.compile of the encoder

    python benchmarks/bench_codec.py                       # cpu, then cuda if present
    python benchmarks/bench_codec.py --device cpu --batch-sizes 1,4 --repeats 2
    python benchmarks/bench_codec.py --device cuda --batch-sizes 1,16,64 --modes fp32,strict,bf16

Target on one H100/H200: at least 1,000 audio-s/s. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import torch

from dose_model.codec.dac_codec import DacCodec

MODES = ("fp32", "strict", "bf16", "compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``--help``)."""
    p = argparse.ArgumentParser(
        description="DAC encode throughput (audio-seconds per second), full 44 kHz model, "
        "random weights.",
    )
    p.add_argument(
        "--device",
        default="cpu,cuda" if torch.cuda.is_available() else "cpu",
        help="comma-separated torch devices, measured one after the other in this run "
        "(default: cpu,cuda when CUDA is available, else cpu)",
    )
    p.add_argument(
        "--batch-sizes",
        default=None,
        help="comma-separated batch sizes (default: 1,16,64 on cuda, 1,4 on cpu)",
    )
    p.add_argument(
        "--seconds", type=float, default=4.0, help="audio length per item, s (default: %(default)s)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed batches per point (default: 10 cuda, 2 cpu)",
    )
    p.add_argument(
        "--modes",
        default=None,
        help=f"comma-separated modes from {','.join(MODES)} (default: fp32,strict,bf16 on "
        "cuda, fp32 on cpu)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights and audio (default: 0)"
    )
    p.add_argument(
        "--json", default=None, metavar="PATH", help="also write the results as JSON (default: no)"
    )
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    codec: DacCodec, audio: torch.Tensor, repeats: int, mode: str
) -> tuple[float, torch.Tensor]:
    """Mean seconds per batch over ``repeats`` timed calls after one warm-up, and the codes."""
    device = codec.device
    codec.tf32 = False if mode == "strict" else None
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if mode == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        codes = codec.encode(audio)  # warm-up (and compilation)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            codes = codec.encode(audio)
        _sync(device)
    codec.tf32 = None
    return (time.perf_counter() - start) / repeats, codes


def bench_device(
    device: torch.device, args: argparse.Namespace, baseline: float | None
) -> list[dict]:
    """Measure every mode and batch size on one device; ratios are to ``baseline`` (the first
    measurement of the run; None = this device's first)."""
    cuda = device.type == "cuda"
    sizes = [int(b) for b in (args.batch_sizes or ("1,16,64" if cuda else "1,4")).split(",")]
    modes = (args.modes or ("fp32,strict,bf16" if cuda else "fp32")).split(",")
    repeats = args.repeats or (10 if cuda else 2)
    codec = DacCodec.random(seed=args.seed, device=device)
    samples = round(args.seconds * codec.sample_rate)
    gen = torch.Generator().manual_seed(args.seed)
    inputs = {b: ((torch.rand(b, 1, samples, generator=gen) * 2 - 1) * 0.3) for b in sizes}
    name = (
        torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; torch {torch.__version__}; {args.seconds:g} s items; {repeats} repeats")
    strict: dict[int, torch.Tensor] = {}
    if cuda or modes != ["fp32"]:
        codec.tf32 = False
        strict = {b: codec.encode(x.to(device)).cpu() for b, x in inputs.items()}
        codec.tf32 = None
    results = []
    for mode in modes:
        if mode == "compile":
            codec.model.encoder = torch.compile(codec.model.encoder)
        for size in sizes:
            per_batch, codes = measure(codec, inputs[size].to(device), repeats, mode)
            rate = size * args.seconds / per_batch
            baseline = baseline or rate
            agree = float((codes.cpu() == strict[size]).float().mean()) if strict else None
            row = {
                "device": name,
                "mode": mode,
                "batch": size,
                "s_per_batch": per_batch,
                "audio_s_per_s": rate,
                "ratio": rate / baseline,
                "codes_equal_strict_fp32": agree,
            }
            if cuda:
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            results.append(row)
            agree_txt = f"  codes = strict fp32: {agree:.4f}" if agree is not None else ""
            print(
                f"{device.type:>5} {mode:>8} batch {size:>4}: {per_batch * 1000:9.1f} ms/batch  "
                f"{rate:9.1f} audio-s/s  x{rate / baseline:6.2f} vs baseline{agree_txt}"
            )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (2 for an unknown mode or device)."""
    args = parse_args(argv)
    modes = set((args.modes or "fp32").split(","))
    unknown = sorted(modes - set(MODES))
    if unknown:
        print(f"bench_codec: unknown modes {unknown} (choose from {MODES})", file=sys.stderr)
        return 2
    try:
        devices = [torch.device(d) for d in args.device.split(",")]
    except RuntimeError as err:
        print(f"bench_codec: bad --device: {err}", file=sys.stderr)
        return 2
    results: list[dict] = []
    for device in devices:
        results += bench_device(device, args, results[0]["audio_s_per_s"] if results else None)
    first = results[0]
    print(f"baseline: {first['device']}, {first['mode']}, batch {first['batch']}")
    for name in dict.fromkeys(r["device"] for r in results):
        best = max((r for r in results if r["device"] == name), key=lambda r: r["audio_s_per_s"])
        print(
            f"best on {name}: {best['audio_s_per_s']:.1f} audio-s/s ({best['mode']}, batch "
            f"{best['batch']}) = x{best['ratio']:.2f} the baseline"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
