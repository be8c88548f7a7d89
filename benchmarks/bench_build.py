"""Benchmark of ``rmod-build``: this engine against a previous one, measured in the same run.

Prints one table (markdown) with, for this engine and the baseline engine (by default
the commit before the speed work, checked out into a git worktree):

* CPU per example, steady state (every source already in the sample store, as in a large
  build) and cold (first use of each source), with this engine's time per stage: draw,
  load (store reads), pitch, chains (per-track chains and sends), buses, master,
  encode (16-bit encoding and checksums), manifest (the row's parameters), other;
* ``rmod-build`` wall time and examples/s with 1 and 2 loky workers and 2 dask workers
  (a ``LocalCluster``), peak worker RSS, bytes per example (WAV and FLAC);
* peak worker RSS with a paper-size library (3,375 kick / 1,801 snare / 1,278 hi-hat
  one-shots and 3,599 loops, written as files derived from the built-in library and
  indexed with ``rmod.library.indexing.index_library``; made once and kept in ``--work``).

Every figure of the baseline comes from the same run on the same machine, and each row
prints the ratio. Usage::

    python benchmarks/bench_build.py [--examples 30] [--build-n 200] [--paper-n 100]
        [--baseline 5fa67ac] [--work /tmp/rmod-bench] [--json out.json]

Each measurement runs in a fresh Python process (``PYTHONPATH`` pointing at the engine's
source tree), so imports and memory do not leak between engines.
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
PAPER_SIZES = {
    "kick": 3375, "snare": 1801, "hihat": 1278,
    "piano": 454, "guitar": 1161, "bass": 1782, "vocal": 202,
}  # fmt: skip

# Runs inside the engine's process: per-example CPU (two passes over the same examples),
# with stage times where the engine has the stage functions of this one.
PER_EXAMPLE = r"""
import json, sys, tempfile, time
from pathlib import Path
args = json.loads(sys.argv[1])
from rmod.library.catalog import Library
from rmod.recipe.spec import load_recipe
from rmod.build.shards import Shard
import rmod.build.fingerprint as fingerprint
import rmod.build.task as task_records
import rmod.build.worker as worker
lib = Library.load(args["library"])
recipe = load_recipe(None)
fields = dict(root="unused", shard=Shard("train", 0, 0, args["n"]), recipe=recipe,
              library_path=args["library"], library_fingerprint=lib.fingerprint, seed=0,
              audio_format="wav", engine_fingerprint=fingerprint.engine_fingerprint())
new = hasattr(worker, "worker_store")
task = task_records.ShardTask(**fields)
if new:
    import rmod.example.sample_store as st
    if hasattr(st, "create_store"):  # the store must be made as rmod-build makes it
        Path(args["store"]).mkdir(parents=True, exist_ok=True)
        st.create_store(args["store"], 10**15, "bench")
        source = st.SampleStore(lib, 44100, folder=Path(args["store"]) / st.STORE_DIR, token="bench")
    else:
        source = st.SampleStore(lib, 44100, folder=args["store"])
else:
    source = lib
stages, active = {}, set()
def timed(module, name, stage):
    fn = getattr(module, name)
    def wrapper(*a, **kw):
        if stage in active:  # a nested call of the same stage is counted once, outside
            return fn(*a, **kw)
        active.add(stage)
        t = time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            active.discard(stage)
            stages[stage] = stages.get(stage, 0.0) + time.process_time() - t
    setattr(module, name, wrapper)
if new:
    import rmod.example.draw as ex, rmod.example.render as rd, rmod.example.sample_store as st
    timed(ex, "draw_example", "draw")
    timed(st, "pitch_shift_loop", "pitch")
    timed(st.SampleStore, "audio", "load")
    timed(st.SampleStore, "loop_segment", "load")
    timed(rd, "process_track", "chains")
    timed(rd, "send", "chains")
    timed(rd, "process_buses", "buses")
    timed(rd, "apply_master", "master")
    timed(worker, "encode_audio_file", "encode")
    timed(ex.ExampleParams, "to_dict", "manifest")
out = Path(tempfile.mkdtemp(dir=args["tmp"]))
result = {}
for label in ("cold", "warm"):
    stages.clear()
    t = time.process_time()
    for i in range(args["n"]):
        worker.build_example(task, source, i, out)
    total = (time.process_time() - t) / args["n"]
    per = {k: v / args["n"] for k, v in stages.items()}
    if "pitch" in per and "load" in per:
        per["load"] -= per["pitch"]  # pitching happens inside store reads
    result[label] = {"total": total, "stages": per}
print(json.dumps(result))
"""

BUILD = r"""
import json, sys
args = json.loads(sys.argv[1])
from rmod.build.run import BuildOptions, build
s = build(BuildOptions(n=args["n"], out=args["out"], library=args["library"], jobs=args["jobs"],
                       backend=args["backend"], audio_format=args["format"], progress=False))
print(json.dumps({"ok": s.ok, "error": s.error, "seconds": s.seconds, "examples": s.rendered,
                  "rss": s.peak_rss_bytes}))
"""


def run_engine(tree: Path, script: str, args: dict, env_extra: dict | None = None) -> dict:
    """Run ``script`` with ``args`` in a fresh process whose ``rmod`` is ``tree``'s."""
    env = dict(os.environ, PYTHONPATH=str(tree), **(env_extra or {}))
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"engine at {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_tree(commit: str, work: Path) -> Path:
    """A git worktree of ``commit`` under ``work`` (made once)."""
    tree = work / f"engine-{commit}"
    if not (tree / "rmod").is_dir():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), commit],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    return tree


def paper_size_library(work: Path) -> Path:
    """Index a library with the paper's class sizes, written as files derived from the
    built-in library (each copy scaled differently, so each is a distinct file)."""
    manifest = work / "paper-size" / "library.jsonl"
    if manifest.exists():
        return manifest
    import numpy as np

    from rmod.audio import write_audio
    from rmod.library.catalog import Library
    from rmod.library.indexing import index_library

    builtin = Library.load(None)
    src = work / "paper-size" / "files"
    shutil.rmtree(src, ignore_errors=True)
    for cls, count in PAPER_SIZES.items():
        ids = [e.id for e in builtin.entries if e.cls == cls]
        for k in range(count):
            audio = builtin.load_audio(ids[k % len(ids)], 44100)
            scaled = audio * np.float32(0.9 - 0.001 * (k // len(ids)))  # distinct content
            write_audio(src / cls / f"{k // 500:02d}" / f"{cls}-{k:05d}.wav", scaled, 44100)
    report = index_library(src, manifest)
    if report.refused:
        raise RuntimeError(f"paper-size library: {len(report.refused)} files refused")
    return manifest


def folder_bytes(folder: Path) -> int:
    """Bytes of the audio and MIDI files under ``folder`` (manifests excluded)."""
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in (".wav", ".flac", ".mid")
    )


def measure(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    old = baseline_tree(args.baseline, work)
    engines = {"new": REPO, "old": old}
    res: dict = {"baseline": args.baseline}
    for name, tree in engines.items():
        store = tmp / f"store-{name}"
        res[f"{name}_example"] = run_engine(
            tree,
            PER_EXAMPLE,
            {"n": args.examples, "library": None, "store": str(store), "tmp": str(tmp)},
        )
        print(f"per example {name}: {res[f'{name}_example']}", file=sys.stderr)
    runs = [("new", 1, "loky", "wav"), ("new", 2, "loky", "wav"), ("new", 2, "dask", "wav")]
    runs += [("old", 2, "loky", "wav"), ("new", 2, "loky", "flac")]
    for name, jobs, backend, fmt in runs:
        out = tmp / f"build-{name}-{jobs}-{backend}-{fmt}"
        r = run_engine(
            engines[name],
            BUILD,
            {"n": args.build_n, "out": str(out), "library": None, "jobs": jobs,
             "backend": backend, "format": fmt},
        )  # fmt: skip
        if not r["ok"]:
            raise RuntimeError(f"build {name} {jobs} {backend} {fmt}: {r['error']}")
        r["bytes_per_example"] = folder_bytes(out) / r["examples"]
        res[f"build_{name}_{jobs}_{backend}_{fmt}"] = r
        print(f"build {name} {jobs} {backend} {fmt}: {r}", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
    paper = paper_size_library(work)
    for name in ("new", "old"):
        out = tmp / f"paper-{name}"
        r = run_engine(
            engines[name],
            BUILD,
            {"n": args.paper_n, "out": str(out), "library": str(paper), "jobs": 2,
             "backend": "loky", "format": "wav"},
        )  # fmt: skip
        res[f"paper_{name}"] = r
        print(f"paper-size library {name}: {r}", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def table(res: dict) -> str:
    """The markdown table of :func:`measure`'s results."""
    ms = 1000.0
    new, old = res["new_example"], res["old_example"]
    b = {k[6:]: v for k, v in res.items() if k.startswith("build_")}
    rate = {k: v["examples"] / v["seconds"] for k, v in b.items()}
    lines = [
        f"| figure (this machine, paper recipe, built-in library) | this engine | "
        f"{res['baseline']} | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| CPU per example, steady state | {new['warm']['total'] * ms:.0f} ms | "
        f"{old['warm']['total'] * ms:.0f} ms | {old['warm']['total'] / new['warm']['total']:.2f}× "
        "| ≤ 80 ms, ≥ 3.5× |",
        f"| CPU per example, cold (first use of each source) | {new['cold']['total'] * ms:.0f} ms"
        f" | {old['cold']['total'] * ms:.0f} ms | "
        f"{old['cold']['total'] / new['cold']['total']:.2f}× | |",
    ]
    order = ("draw", "load", "pitch", "chains", "buses", "master", "encode", "manifest")
    for label in ("warm", "cold"):
        st = new[label]["stages"]
        other = new[label]["total"] - sum(st.get(k, 0.0) for k in order)
        parts = ", ".join(f"{k} {st.get(k, 0.0) * ms:.1f}" for k in order)
        lines.append(
            f"| stages ({'steady' if label == 'warm' else 'cold'}), ms | {parts}, "
            f"other {other * ms:.1f} | | | |"
        )
    n1, n2 = rate["new_1_loky_wav"], rate["new_2_loky_wav"]
    lines += [
        f"| `rmod-build`, 2 loky workers, examples/s | {n2:.1f} | {rate['old_2_loky_wav']:.1f} "
        f"| {n2 / rate['old_2_loky_wav']:.2f}× | |",
        f"| 1 → 2 workers | {n2 / n1:.2f}× | | | ≥ 1.8× |",
        f"| dask LocalCluster vs loky, 2 workers | {rate['new_2_dask_wav'] / n2:.2f}× | | | "
        "≥ 0.90× |",
        f"| peak worker RSS, built-in library | {b['new_2_loky_wav']['rss'] / 2**20:.0f} MiB | "
        f"{b['old_2_loky_wav']['rss'] / 2**20:.0f} MiB | | |",
        f"| peak worker RSS, paper-size library | {res['paper_new']['rss'] / 2**20:.0f} MiB | "
        f"{res['paper_old']['rss'] / 2**20:.0f} MiB | | ≤ 400 MB |",
        f"| disk per example, WAV | {b['new_2_loky_wav']['bytes_per_example'] / 1e6:.3f} MB | "
        f"{b['old_2_loky_wav']['bytes_per_example'] / 1e6:.3f} MB | "
        f"{b['old_2_loky_wav']['bytes_per_example'] / b['new_2_loky_wav']['bytes_per_example']:.2f}× "
        "| ≤ 1.25 MB |",
        f"| disk per example, FLAC | {b['new_2_loky_flac']['bytes_per_example'] / 1e6:.3f} MB | "
        "| | |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--examples", type=int, default=30, help="examples per CPU measurement")
    parser.add_argument("--build-n", type=int, default=200, help="--n of the timed builds")
    parser.add_argument("--paper-n", type=int, default=100, help="--n with the paper-size library")
    parser.add_argument("--baseline", default="5fa67ac", help="commit of the baseline engine")
    parser.add_argument("--work", default="/tmp/rmod-bench", help="work folder (kept)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    res = measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    print(table(res))
    print(f"\n({os.cpu_count()} CPUs, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
