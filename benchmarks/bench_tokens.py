"""Benchmark of ``rmod-build --tokens`` against build-then-tokenize, measured in the same run.

Both paths build the same examples (recipe, library, seed, shard size, workers):

* **build-then-tokenize**: ``rmod-build`` writes the audio and MIDI files, then
  ``dose-tokenize`` reads the audio back and encodes it (``--shard-size`` = the build's);
* **--tokens**: ``rmod-build --tokens`` renders on the CPU workers and encodes each shard in
  the worker (the DAC token sink), writing the token cache and the manifests, no audio.

Printed (markdown): wall time and examples/s of each path, bytes written per example (dataset
folder, token cache), files written, whether the two token caches hold the same codes; then
the projection to the paper's size (1,000,000 train + 10,000 valid + 10,000 test examples):
disk in TB, and hours of encoding at 1,100 audio-s/s per GPU (SPEC §3, DAC 44 kHz, fp32).

The codec: by default a tiny random DAC (``encoder_dim`` 1; hop, codebooks and rate as the
real one), so the CPU measures rendering, writing and reading rather than a 76 M-parameter
encoder on 2 cores; the GPU side of the projection uses the measured 1,100 audio-s/s. Give
``--codec-weights`` (e.g. the released weights) to encode with a real codec instead.

Usage::

    python benchmarks/bench_tokens.py [--n 48] [--jobs 2] [--recipe rmod-paper]
        [--library LIB] [--codec-weights W] [--work /tmp/rmod-bench-tokens] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAPER_EXAMPLES = 1_000_000 + 10_000 + 10_000
GPU_AUDIO_S_PER_S = 1100.0  # SPEC §3: DAC 44 kHz encode on one H200, fp32, batch 16-64
TINY_CODEC = {"encoder_dim": 1, "decoder_dim": 16}


def folder_bytes(root: Path, skip: tuple[str, ...] = (".rmod-build.lock",)) -> tuple[int, int]:
    """(bytes, files) of every file under ``root``."""
    files = [p for p in root.rglob("*") if p.is_file() and p.name not in skip]
    return sum(p.stat().st_size for p in files), len(files)


def same_codes(a: Path, b: Path) -> bool:
    """True when two token caches hold the same codes for every split and drum."""
    from dose_model.cache.index import read_index

    ia, ib = read_index(a), read_index(b)
    if ia["splits"].keys() != ib["splits"].keys():
        return False
    for split, entry in ia["splits"].items():
        for name in ("mixture.npy", "kick.npy", "snare.npy", "hihat.npy"):
            mine = [np.load(a / s["dir"] / name) for s in entry["shards"]]
            theirs = [np.load(b / s["dir"] / name) for s in ib["splits"][split]["shards"]]
            if not np.array_equal(np.concatenate(mine), np.concatenate(theirs)):
                return False
    return True


def run_cli(module: str, *args: str) -> tuple[float, float]:
    """Run ``python -m module args`` with one thread per numeric pool; its wall time and the
    CPU time (user + system) of it and every process it waited for (its workers), s."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{module} failed:\n{proc.stderr.decode()[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu


def run_cli_code(code: str) -> tuple[float, float]:
    """As :func:`run_cli` for ``python -c code``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def read_audio_seconds(tokdir: Path) -> float:
    """Audio seconds a token cache encodes (mixture + 3 one-shots per row)."""
    from dose_model.cache.index import read_index

    index = read_index(tokdir)
    config = index["config"]
    per_row = config["mixture_seconds"] + 3 * config["oneshot_seconds"]
    return per_row * sum(s["rows"] for s in index["splits"].values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=48, help="training examples (+ valid/test)")
    p.add_argument("--jobs", type=int, default=2, help="rendering workers")
    p.add_argument("--recipe", default=None, help="recipe (default: rmod-paper)")
    p.add_argument("--library", default=None, help="library (default: the built-in one)")
    p.add_argument("--shard-size", type=int, default=4)
    p.add_argument("--codec-weights", default=None, help="DAC weights (default: tiny random)")
    p.add_argument("--work", default="/tmp/rmod-bench-tokens")
    p.add_argument("--repeat", type=int, default=2, help="runs of each path (fastest counts)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from dose_model.codec.dac_codec import DacCodec
    from rmod.build.manifest import read_build_info
    from rmod.recipe.spec import load_recipe

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    weights = args.codec_weights
    if weights is None:
        weights = str(work / "tiny-dac.pth")
        DacCodec.random(TINY_CODEC, seed=0).save(weights)
    build = ["--n", str(args.n), "--seed", "0", "--jobs", str(args.jobs), "--shard-size",
             str(args.shard_size), "--no-progress"]  # fmt: skip
    build += ["--recipe", args.recipe] if args.recipe else []
    build += ["--library", args.library] if args.library else []

    # every step in a fresh process, as a user runs it: each pays its own imports. The
    # paths alternate, --repeat times; the fastest of each counts (a shared machine's noise
    # only ever adds time)
    runs: dict[str, list[tuple[float, float]]] = {"build": [], "tokenize": [], "tokens": []}
    for k in range(args.repeat):
        for path in (work / "stored", work / "stored-tok", work / "direct", work / "tok"):
            shutil.rmtree(path, ignore_errors=True)
        first = k % 2 == 0  # which path goes first alternates too
        for step in ("a", "b") if first else ("b", "a"):
            if step == "a":
                runs["build"].append(
                    run_cli("rmod.cli.build", *build, "--out", str(work / "stored"))
                )
                runs["tokenize"].append(run_cli(
                    "dose_model.cli.tokenize", "--manifest", str(work / "stored"),
                    "--codec-weights", weights, "--out", str(work / "stored-tok"),
                    "--shard-size", str(args.shard_size), "--workers", str(args.jobs),
                    "--no-progress",
                ))  # fmt: skip
            else:
                runs["tokens"].append(run_cli(
                    "rmod.cli.build", *build, "--out", str(work / "direct"), "--tokens",
                    str(work / "tok"), "--codec-weights", weights,
                ))  # fmt: skip
    pairs = [
        (b[0] + t[0], b[1] + t[1], b, t)
        for b, t in zip(runs["build"], runs["tokenize"], strict=True)
    ]
    # what one process pays before it encodes: import torch and dose_model, load the codec,
    # a first encode (dose-tokenize pays it once; --tokens in the build's process and in
    # every worker)
    warm = (
        "import torch; torch.set_num_threads(1); import dose_model.cache.sink as s; "
        f"c = s._load_codec({weights!r}, 'cpu'); c.encode(torch.zeros(4, 1, 176400)); "
        "c.encode(torch.zeros(12, 1, 88200))"
    )
    startup = min(run_cli_code(warm)[1] for _ in range(args.repeat))
    _, _, (t_build, c_build), (t_tokenize, c_tokenize) = min(pairs)
    t_direct = min(w for w, _ in runs["tokens"])
    c_direct = min(c for _, c in runs["tokens"])
    c_build_min = min(b[1] + t[1] for _, _, b, t in pairs)
    counts = read_build_info(work / "stored").counts
    tok_summary_s = read_audio_seconds(work / "stored-tok")

    examples = sum(counts.values())
    ds_a, files_a = folder_bytes(work / "stored")
    tok_a, tok_files_a = folder_bytes(work / "stored-tok")
    ds_b, files_b = folder_bytes(work / "direct")
    tok_b, tok_files_b = folder_bytes(work / "tok")
    equal = same_codes(work / "stored-tok", work / "tok")
    recipe = load_recipe(args.recipe)
    audio_s = recipe.audio.mixture_seconds + 3 * recipe.audio.target_seconds  # per example
    gpu_hours = PAPER_EXAMPLES * audio_s / GPU_AUDIO_S_PER_S / 3600
    per_a = (c_build_min - startup) / examples  # CPU s per example, start-ups left out
    per_b = (c_direct - (1 + args.jobs) * startup) / examples
    per = {
        "examples": examples,
        "startup_cpu_s": startup,
        "cpu_s_per_example_net": {"build_then_tokenize": per_a, "tokens": per_b},
        "jobs": args.jobs,
        "codec": "tiny random DAC (encoder_dim 1)" if args.codec_weights is None else weights,
        "build_then_tokenize": {
            "build_s": t_build, "tokenize_s": t_tokenize, "wall_s": t_build + t_tokenize,
            "cpu_s": c_build_min,
            "examples_per_s": examples / (t_build + t_tokenize),
            "dataset_bytes_per_example": ds_a / examples, "token_bytes_per_example": tok_a / examples,
            "files": files_a + tok_files_a,
        },
        "tokens": {
            "wall_s": t_direct, "examples_per_s": examples / t_direct, "cpu_s": c_direct,
            "dataset_bytes_per_example": ds_b / examples, "token_bytes_per_example": tok_b / examples,
            "files": files_b + tok_files_b,
        },
        "same_codes": equal,
        "all_runs": runs,
        "audio_seconds_per_example": audio_s,
        "projection_1M": {
            "examples": PAPER_EXAMPLES,
            "build_then_tokenize_TB": (ds_a + tok_a) / examples * PAPER_EXAMPLES / 1e12,
            "tokens_TB": (ds_b + tok_b) / examples * PAPER_EXAMPLES / 1e12,
            "gpu_hours_at_1100": gpu_hours,
            "cpu_hours_build_then_tokenize": per_a * PAPER_EXAMPLES / 3600,
            "cpu_hours_tokens": per_b * PAPER_EXAMPLES / 3600,
        },
    }  # fmt: skip
    a, b, proj = per["build_then_tokenize"], per["tokens"], per["projection_1M"]
    print(f"{examples} examples ({args.n} train), {args.jobs} workers, codec: {per['codec']}, "
          f"fastest of {args.repeat} alternating runs of each path")  # fmt: skip
    print(f"(the tokenize step read {tok_summary_s:.0f} audio-s back)\n")
    print("| | build-then-tokenize | --tokens |")
    print("| --- | ---: | ---: |")
    print(
        f"| wall time, s | {a['wall_s']:.1f} ({t_build:.1f} + {t_tokenize:.1f}) | {t_direct:.1f} |"
    )
    print(f"| examples/s | {a['examples_per_s']:.2f} | {b['examples_per_s']:.2f} |")
    print(f"| CPU s/example (all processes) | {a['cpu_s'] / examples:.3f} | "
          f"{b['cpu_s'] / examples:.3f} |")  # fmt: skip
    print(f"| CPU s/example without start-ups | {per_a:.3f} | {per_b:.3f} |")
    print(f"| dataset bytes/example | {a['dataset_bytes_per_example']:,.0f} | "
          f"{b['dataset_bytes_per_example']:,.0f} |")  # fmt: skip
    print(f"| token bytes/example | {a['token_bytes_per_example']:,.0f} | "
          f"{b['token_bytes_per_example']:,.0f} |")  # fmt: skip
    print(f"| files written | {a['files']} | {b['files']} |")
    print(f"| same codes | {equal} | |")
    print(f"\nStart-up of a process that encodes (import torch and dose_model, load the codec, "
          "encode once): "
          f"{startup:.1f} CPU-s; dose-tokenize pays it once, --tokens {1 + args.jobs} times "
          f"(the build and each of its {args.jobs} workers).")  # fmt: skip
    if per_a > per_b:
        even = args.jobs * startup / (per_a - per_b)
        print(f"--tokens spends less CPU from about {even:,.0f} examples up.")
    print(f"\nProjection to {PAPER_EXAMPLES:,} examples ({audio_s:g} audio-s each):")
    print(f"- disk: {proj['build_then_tokenize_TB']:.2f} TB build-then-tokenize, "
          f"{proj['tokens_TB']:.3f} TB with --tokens")  # fmt: skip
    gpu_ms = audio_s / GPU_AUDIO_S_PER_S * 1000
    print(
        f"- encoding: {gpu_hours:.1f} GPU-hours at {GPU_AUDIO_S_PER_S:,.0f} audio-s/s either "
        f"way. Build-then-tokenize runs it as a second pass after the build, reading "
        f"{proj['build_then_tokenize_TB'] - proj['tokens_TB']:.2f} TB of audio back; "
        f"--tokens spends {gpu_ms:.0f} ms of GPU per example inside the build, beside "
        f"{c_build / examples:.2f} CPU-s of rendering measured here (the build alone)"
    )
    print(f"- CPU without start-ups (this machine, all processes, tiny codec on the CPU): "
          f"{proj['cpu_hours_build_then_tokenize']:,.0f} core-hours build-then-tokenize, "
          f"{proj['cpu_hours_tokens']:,.0f} with --tokens")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(per, indent=1) + "\n")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
