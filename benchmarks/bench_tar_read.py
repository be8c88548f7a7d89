"""Benchmark: reading a ``--layout tar`` build for ``dose-tokenize`` against a folder build,
measured in the same run (issue 21: "dose-tokenize reading tars: no slower than reading
folders").

Builds the same recipe, library and seed in both layouts once (not timed; see
``bench_layout.py`` for build times), then, alternating the layouts each round:

* **reading** as ``dose-tokenize`` reads (manifest reader + ``load_mono`` of every row's
  mixture and one-shots), CPU time of this process per row: folder files; tar members with
  their SHA-256 checked (the default) and without; and, as the baseline of the channel-mean
  change in ``dose_model.dataset.audio`` (``channel_mean``), the same reads through numpy's
  ``mean(axis=1)`` that the reader used before it;
* **``dose-tokenize``** end to end on every training row of each build (a fresh process, a
  tiny random-weight codec as in the tests, the loader threads beside the codec), wall and CPU
  time; whether the two token caches are byte-identical.

Every figure is the best of ``--rounds`` (a shared machine's noise only ever adds time); the
load average is printed before and after.

Usage::

    python benchmarks/bench_tar_read.py [--n 120] [--rounds 3] [--work /tmp/rmod-bench-tar-read]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_layout import load_average, read_rows_time, run_timed  # noqa: E402

LAYOUTS = ("folder", "tar")


def tokenize(manifest: Path, codec: Path, out: Path, env: dict) -> tuple[float, float]:
    """(wall s, CPU s) of one ``dose-tokenize`` run over ``manifest`` (its own defaults)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dose_model.cli.tokenize", "--manifest", str(manifest)]
    cmd += ["--codec-weights", str(codec), "--out", str(out), "--no-progress", "--device", "cpu"]
    wall, cpu, _ = run_timed(cmd, env)
    return wall, cpu


def numpy_mean_reads(root: Path) -> float:
    """`read_rows_time` with the reader's channel mean swapped for numpy's (the baseline)."""
    import numpy as np

    from dose_model.dataset import audio

    fast = audio.channel_mean
    audio.channel_mean = lambda block: block.mean(axis=1, dtype=np.float32)
    try:
        return read_rows_time(root, True)
    finally:
        audio.channel_mean = fast


def same_tree(a: Path, b: Path) -> bool:
    """True when every ``.npy`` file of ``a`` has the same bytes in ``b``, and no other."""
    files = sorted(p.relative_to(a) for p in a.rglob("*.npy"))
    return files == sorted(p.relative_to(b) for p in b.rglob("*.npy")) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=120, help="training examples per build")
    p.add_argument("--rounds", type=int, default=3, help="rounds, layouts alternating")
    p.add_argument("--work", default="/tmp/rmod-bench-tar-read", help="scratch folder")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res: dict = {"n": args.n, "load_before": load_average()}
    print(f"# bench_tar_read: n={args.n}, load average {res['load_before']}", flush=True)
    for layout in LAYOUTS:
        cmd = [sys.executable, "-m", "rmod.cli.build", "--n", str(args.n), "--seed", "0"]
        cmd += ["--out", str(work / layout), "--layout", layout, "--no-progress"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    rows = sum(1 for line in (work / "folder/manifests/train.jsonl").open()) + sum(
        1 for s in ("valid", "test") for _ in (work / f"folder/manifests/{s}.jsonl").open()
    )
    for layout in LAYOUTS:  # warm the page cache alike
        read_rows_time(work / layout, True)
    reads: dict[str, list[float]] = {
        "folder": [], "tar": [], "tar_unverified": [], "folder_numpy_mean": [],
        "tar_numpy_mean": [],
    }  # fmt: skip
    for r in range(args.rounds):
        order = LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]
        for layout in order:
            reads[layout].append(read_rows_time(work / layout, True))
            reads[f"{layout}_numpy_mean"].append(numpy_mean_reads(work / layout))
        reads["tar_unverified"].append(read_rows_time(work / "tar", False))
    res["read_ms_per_row"] = {k: min(v) / rows * 1000 for k, v in reads.items()}
    print(f"read, ms of CPU per row: {res['read_ms_per_row']}", flush=True)

    from tests.dose_fixtures import write_tiny_codec

    codec = write_tiny_codec(work / "tiny-codec.pth", seed=1)
    tok: dict[str, list[tuple[float, float]]] = {layout: [] for layout in LAYOUTS}
    for r in range(args.rounds):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            start = time.perf_counter()
            tok[layout].append(tokenize(work / layout, codec, work / f"tok-{layout}", env))
            print(f"dose-tokenize {layout}: {tok[layout][-1]} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
    res["tokenize"] = tok
    res["tokens_equal"] = same_tree(work / "tok-folder", work / "tok-tar")
    res["load_after"] = load_average()

    ms = res["read_ms_per_row"]
    wall = {k: min(w for w, _ in v) for k, v in tok.items()}
    cpu = {k: min(c for _, c in v) for k, v in tok.items()}
    print(f"\n{rows} rows per layout; best of {args.rounds} rounds, layouts alternating; "
          f"load average {res['load_before']} before, {res['load_after']} after\n")  # fmt: skip
    print("| figure | folder | tar | tar / folder |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| reading a row as dose-tokenize does, ms of CPU (members SHA-256-checked) | "
          f"{ms['folder']:.2f} | {ms['tar']:.2f} | {ms['tar'] / ms['folder']:.3f} |")  # fmt: skip
    print(f"| the same, members not checked | | {ms['tar_unverified']:.2f} | "
          f"{ms['tar_unverified'] / ms['folder']:.3f} |")  # fmt: skip
    print(f"| baseline: the reader's channel mean as numpy's mean(axis=1) | "
          f"{ms['folder_numpy_mean']:.2f} | {ms['tar_numpy_mean']:.2f} | "
          f"{ms['tar_numpy_mean'] / ms['folder_numpy_mean']:.3f} |")  # fmt: skip
    print(f"| dose-tokenize, every row, wall s | {wall['folder']:.2f} | {wall['tar']:.2f} | "
          f"{wall['tar'] / wall['folder']:.3f} |")  # fmt: skip
    print(f"| dose-tokenize, every row, CPU s | {cpu['folder']:.2f} | {cpu['tar']:.2f} | "
          f"{cpu['tar'] / cpu['folder']:.3f} |")  # fmt: skip
    print(f"| tokens | | {'identical' if res['tokens_equal'] else 'DIFFERENT'} | |")
    print(
        f"\nchannel-mean change: folder reads {ms['folder_numpy_mean'] / ms['folder']:.2f}x, "
        f"tar reads {ms['tar_numpy_mean'] / ms['tar']:.2f}x faster than with numpy's mean"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
