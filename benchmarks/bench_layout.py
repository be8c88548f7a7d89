"""Benchmark of ``rmod-build --layout tar`` against the folder layout, in the same run.

Builds the same recipe, library and seed in both layouts (the paper recipe and the built-in
library by default) and prints a markdown table:

* files written and bytes, per layout (audio shards only, then everything);
* ``rmod-build`` wall time and CPU time (the build process and its workers), per layout, each
  repeat alternating which layout goes first; the ratio tar / folder;
* where the difference goes: the shard writers alone, fed the same bytes (the folder build's
  files) shard by shard: folder = plain writes + one ``syncfs`` + a rename; tar = headers,
  streaming SHA-256 of the whole tar, ``fsync`` of tar and index, two renames; in ms per
  example, with the SHA-256 part on its own;
* reading for ``dose-tokenize``: the manifest reader + ``load_mono`` over every row of both
  builds, CPU time (tar members sha256-checked, the default, and not), and ``dose-tokenize``
  itself on the first ``--tokenize-rows`` training rows with a tiny random-weight codec
  (``tests/dose_fixtures.write_tiny_codec``; on a 2-core CPU it still encodes only a few
  audio-seconds per second, hence the subset), wall and CPU time per layout; ratios, and
  whether the tokens are identical.

Usage::

    python benchmarks/bench_layout.py [--n 1000] [--jobs 2] [--repeats 1]
        [--shard-size K] [--tokenize-rows 16] [--work /tmp/rmod-bench-layout] [--json out.json]

``--shard-size`` gives both layouts the same shard size (default: each layout's own default:
N/50 clamped to 1..100 for folders, 500 for tars). On a machine shared with other jobs the
wall times move with the load: the load average is printed before and after.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LAYOUTS = ("folder", "tar")


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def run_timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its waited-for descendants, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def build(layout: str, out: Path, args: argparse.Namespace, env: dict) -> tuple[float, float]:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "rmod.cli.build", "--n", str(args.n), "--out", str(out)]
    cmd += ["--jobs", str(args.jobs), "--seed", "0", "--no-progress", "--layout", layout]
    if args.shard_size:
        cmd += ["--shard-size", str(args.shard_size)]
    wall, cpu, _ = run_timed(cmd, env)
    return wall, cpu


def files_and_bytes(root: Path) -> tuple[int, int, int, int]:
    """(shard files, their bytes, all files, all bytes) of a dataset folder."""
    shard_n = shard_b = all_n = all_b = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.name == ".rmod-build.lock":
            continue
        size = path.stat().st_size
        all_n, all_b = all_n + 1, all_b + size
        if path.relative_to(root).parts[0] in ("train", "valid", "test"):
            shard_n, shard_b = shard_n + 1, shard_b + size
    return shard_n, shard_b, all_n, all_b


def writer_costs(folder_build: Path, work: Path) -> dict[str, float]:
    """ms per example of each shard writer fed the folder build's files (tar shard size),
    and of the whole-tar SHA-256 alone."""
    import hashlib

    from rmod.build.manifest import read_build_info, read_manifest
    from rmod.build.shards import FolderShardWriter, Shard, commit_shard, make_temp_dir
    from rmod.build.tar_layout import DEFAULT_TAR_SHARD_SIZE, TarShardWriter
    from rmod_dose_common.fileio import sync_folder

    rows = read_manifest(folder_build / "manifests" / "train.jsonl")
    info = read_build_info(folder_build)
    members = [  # with their SHA-256, which the worker has from encoding them
        [
            (Path(rel).name, data, hashlib.sha256(data).hexdigest())
            for rel in row.files().values()
            for data in [(folder_build / rel).read_bytes()]
        ]
        for row in rows
    ]
    size = min(DEFAULT_TAR_SHARD_SIZE, len(rows))
    chunks = [members[i : i + size] for i in range(0, len(members), size)]
    out = {"folder": 0.0, "tar": 0.0, "sha256": 0.0}
    for layout in ("folder", "tar"):
        root = work / f"writers-{layout}"
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        for number, chunk in enumerate(chunks):
            shard = Shard("train", number, number * size, number * size + len(chunk), layout)
            if layout == "folder":
                writer = FolderShardWriter(make_temp_dir(root, shard), f"train/{number:06d}")
                for example in chunk:
                    for name, data, _ in example:
                        writer.write(name, data)
                sync_folder(writer.folder)
                commit_shard(root, shard, writer.folder, [])
            else:
                writer = TarShardWriter(root, "train", number)
                for example, row in zip(chunk, rows[number * size :], strict=False):
                    for name, data, sha in example:
                        writer.write(name, data, sha)
                    writer.add_row(row)
                writer.publish()
        out[layout] = (time.perf_counter() - start) * 1000 / len(rows)
        shutil.rmtree(root, ignore_errors=True)
    blob = b"".join(data for example in members for _, data, _ in example)
    start = time.perf_counter()
    hashlib.sha256(blob).hexdigest()
    out["sha256"] = (time.perf_counter() - start) * 1000 / len(rows)
    out["shard_size"] = size
    out["format"] = info.audio_format
    return out


def read_rows_time(root: Path, verify: bool) -> float:
    """CPU seconds of this process to read every row's mixture and one-shots as the
    tokenizer does (manifest reader + ``load_mono``)."""
    from dose_model import DRUMS
    from dose_model.dataset.audio import load_mono
    from dose_model.dataset.manifest import find_manifests, read_rows

    start = time.process_time()
    for path in find_manifests(root).values():
        for row in read_rows(path, verify_members=verify):
            load_mono(row.mixture, 44100, 176400)
            for drum in DRUMS:
                load_mono(row.oneshots[drum], 44100, 88200)
    return time.process_time() - start


def head_manifest(root: Path, rows: int) -> Path:
    """The first ``rows`` training rows as ``DIR/manifests/bench-head.jsonl`` (paths resolve
    against ``DIR`` as the full manifest's do)."""
    lines = (root / "manifests" / "train.jsonl").read_text().splitlines(keepends=True)
    path = root / "manifests" / "bench-head.jsonl"
    path.write_text("".join(lines[:rows]))
    return path


def tokenize(manifest: Path, codec: Path, out: Path, env: dict) -> tuple[float, float]:
    """(wall s, CPU s) of one ``dose-tokenize`` run."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "dose_model.cli.tokenize", "--manifest", str(manifest)]
    cmd += ["--codec-weights", str(codec), "--out", str(out), "--no-progress", "--device", "cpu"]
    wall, cpu, _ = run_timed(cmd, env)
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="training examples per build")
    p.add_argument("--jobs", type=int, default=2, help="build workers")
    p.add_argument("--repeats", type=int, default=1, help="builds per layout (order alternates)")
    p.add_argument("--shard-size", type=int, default=None, help="same shard size for both")
    p.add_argument("--tokenize-rows", type=int, default=16, help="rows dose-tokenize encodes")
    p.add_argument("--work", default="/tmp/rmod-bench-layout", help="scratch folder")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    res: dict = {"n": args.n, "jobs": args.jobs, "load_before": load_average()}
    print(f"# bench_layout: n={args.n}, jobs={args.jobs}, load average {res['load_before']}")
    times = {layout: [] for layout in LAYOUTS}
    for r in range(args.repeats):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            wall, cpu = build(layout, work / layout, args, env)
            times[layout].append((wall, cpu))
            print(f"build {layout} #{r + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    res["builds"] = times
    res["files"] = {layout: files_and_bytes(work / layout) for layout in LAYOUTS}
    res["writers"] = writer_costs(work / "folder", work)
    print(f"writers: {res['writers']}", flush=True)
    for layout in LAYOUTS:  # warm the page cache alike, then alternate, best of 3
        read_rows_time(work / layout, True)
    reads: dict[str, list[float]] = {"folder": [], "tar": [], "tar_unverified": []}
    for _ in range(3):
        reads["folder"].append(read_rows_time(work / "folder", True))
        reads["tar"].append(read_rows_time(work / "tar", True))
        reads["tar_unverified"].append(read_rows_time(work / "tar", False))
    res["read"] = {k: min(v) for k, v in reads.items()}
    print(f"read: {res['read']}", flush=True)
    from tests.dose_fixtures import write_tiny_codec

    codec = write_tiny_codec(work / "tiny-codec.pth", seed=1)
    heads = {layout: head_manifest(work / layout, args.tokenize_rows) for layout in LAYOUTS}
    tok = {layout: [] for layout in LAYOUTS}
    for r in range(2):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            tok[layout].append(tokenize(heads[layout], codec, work / f"tok-{layout}", env))
            print(f"dose-tokenize {layout}: {tok[layout][-1]}", flush=True)
    res["tokenize"] = tok
    same = all(
        (work / "tok-folder" / rel).read_bytes() == p.read_bytes()
        for p in (work / "tok-tar").rglob("*.npy")
        for rel in [p.relative_to(work / "tok-tar")]
    )
    res["tokens_equal"] = same
    res["load_after"] = load_average()
    print_table(res, args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


def row(label: str, folder: str, tar: str, ratio: float | None = None) -> None:
    """One markdown table line."""
    print(f"| {label} | {folder} | {tar} | {'' if ratio is None else f'{ratio:.3f}'} |")


def print_table(res: dict, args: argparse.Namespace) -> None:
    b = res["builds"]
    best = {k: min(w for w, _ in v) for k, v in b.items()}
    cpu = {k: min(c for _, c in v) for k, v in b.items()}
    f, t = res["files"]["folder"], res["files"]["tar"]
    w, rd = res["writers"], res["read"]
    tok = {k: min(w for w, _ in v) for k, v in res["tokenize"].items()}
    tok_cpu = {k: min(c for _, c in v) for k, v in res["tokenize"].items()}
    ms = 1000 / (f[0] // 5)  # per example: a folder build writes 5 files per example
    print()
    print(f"| figure (n = {res['n']} train + valid/test, {res['jobs']} workers) | folder | tar "
          "| tar / folder |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    row("shard files written (audio + MIDI; tars + indexes)", f[0], t[0], t[0] / f[0])
    row("all files (+ manifests, parts, build.json)", f[2], t[2], t[2] / f[2])
    row("shard bytes", f"{f[1] / 1e6:.1f} MB", f"{t[1] / 1e6:.1f} MB", t[1] / f[1])
    row(
        f"rmod-build wall time (best of {args.repeats})",
        f"{best['folder']:.1f} s", f"{best['tar']:.1f} s", best["tar"] / best["folder"],
    )  # fmt: skip
    row(
        "rmod-build CPU time (build process + its workers)",
        f"{cpu['folder']:.1f} s", f"{cpu['tar']:.1f} s", cpu["tar"] / cpu["folder"],
    )  # fmt: skip
    row(
        f"shard writer alone, ms per example ({w['shard_size']} per shard)",
        f"{w['folder']:.2f}", f"{w['tar']:.2f}", w["tar"] / w["folder"],
    )  # fmt: skip
    row("of which the whole-tar SHA-256, ms per example", "", f"{w['sha256']:.2f}")
    row(
        "reading a row as dose-tokenize does (manifest + load_mono), CPU ms, best of 3",
        f"{rd['folder'] * ms:.2f}", f"{rd['tar'] * ms:.2f}", rd["tar"] / rd["folder"],
    )  # fmt: skip
    row(
        "the same, members not sha256-checked (verify_members=False)",
        "", f"{rd['tar_unverified'] * ms:.2f}", rd["tar_unverified"] / rd["folder"],
    )  # fmt: skip
    row(
        f"dose-tokenize of {args.tokenize_rows} rows, tiny codec, wall (best of 2)",
        f"{tok['folder']:.1f} s", f"{tok['tar']:.1f} s", tok["tar"] / tok["folder"],
    )  # fmt: skip
    row(
        "dose-tokenize CPU time (best of 2)",
        f"{tok_cpu['folder']:.1f} s", f"{tok_cpu['tar']:.1f} s", tok_cpu["tar"] / tok_cpu["folder"],
    )  # fmt: skip
    row("tokens identical", "", str(res["tokens_equal"]))
    print()
    print(f"all builds (wall s, CPU s): {res['builds']}; dose-tokenize runs: {res['tokenize']}")
    print(f"load average before {res['load_before']}, after {res['load_after']} (1/5/15 min)")


if __name__ == "__main__":
    main()
