"""Sample store benchmark: time per example with the default cap, without a cap, with a tiny
cap and without a store, on a paper-size library; the cost of pitching a loop; whether a
more compact store (float16, zlib) would pay; the projection to 1,000,000 examples.

    python benchmarks/bench_store.py --n 300 --work /tmp/rmod-bench --json store.json

What it does (each build in a fresh process, ``--jobs 1`` so the process's CPU time is the
build's, the same recipe, seed and examples every time):

1. builds with the store unbounded (1 PB), at the default cap (what ``rmod-build`` picks), at a
   tiny cap (``--tiny``) and with no store (``--store-max 0``), and checks that every file
   of every build equals the unbounded one's;
2. renders ``--examples`` examples twice in one process through an unbounded store: the
   first pass pays every decode and pitch (cold), the second reads them all back (warm);
3. times ``pitch_shift_loop`` and the decode of loops of the library, and the compact
   formats on those pitched loops: float16 (its error, and how many 16-bit samples of
   rendered mixtures it would change if the engine rounded every pitched loop through it)
   and zlib (raw and byte-shuffled float32; ratio and time);
4. projects to 1 M examples: the store's working set W (every decoded source and every
   (loop, semitone) pair of the recipe, from the library's lengths), the hit rate of
   pitched loops under a cap C (uniform draws, so a least-recently-used store of C bytes
   holds about (C - decoded) / pitched of them), and the CPU per example that follows:
   warm + pitched loops per example x miss rate x pitch time.

The library is :func:`bench_build.paper_size_library`'s (the paper's class sizes, files
derived from the built-in library: 5.5 s mono loops). Run it on an otherwise idle machine
for the wall times; the CPU times hold on a shared one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bench_build import paper_size_library  # noqa: E402

UNBOUNDED = 10**15
PAPER_N = 1_000_000

# One build, in its own process; prints its figures as JSON.
BUILD = r"""
import json, sys, time
args = json.loads(sys.argv[1])
from rmod.build.run import BuildOptions, build
t = time.process_time()
s = build(BuildOptions(n=args["n"], out=args["out"], library=args["library"], jobs=1,
                       store_max=args["cap"], progress=False, seed=args["seed"]))
cpu = time.process_time() - t
u = s.store
print(json.dumps({"ok": s.ok, "error": s.error, "seconds": s.seconds, "cpu": cpu,
                  "examples": s.rendered, "cap": s.store_cap_bytes, "line": s.line(),
                  "store": u.to_dict() if u else None,
                  "hit_rate": u.hit_rate if u else None}))
"""

# Cold and warm passes over the same examples through one unbounded store.
PASSES = r"""
import json, sys, tempfile, time
from pathlib import Path
args = json.loads(sys.argv[1])
from rmod.build.fingerprint import engine_fingerprint
from rmod.build.shards import Shard
from rmod.build.task import ShardTask
from rmod.build.worker import build_example
from rmod.example.sample_store import SampleStore
from rmod.example.store_folder import STORE_DIR, create_store, read_store_usage
from rmod.library.catalog import Library
from rmod.recipe.spec import load_recipe
lib = Library.load(args["library"])
recipe = load_recipe(None)
task = ShardTask("unused", Shard("train", 0, 0, args["n"]), recipe, args["library"],
                 lib.fingerprint, args["seed"], "wav", engine_fingerprint())
work = Path(tempfile.mkdtemp(dir=args["tmp"]))
create_store(work, 10**15, "bench")
store = SampleStore(lib, 44100, folder=work / STORE_DIR, token="bench")
out = Path(tempfile.mkdtemp(dir=args["tmp"]))
res = {}
for label in ("cold", "warm"):
    t = time.process_time()
    for i in range(args["n"]):
        build_example(task, store, i, out)
    res[label] = (time.process_time() - t) / args["n"]
store.close()
res["usage"] = read_store_usage(work).to_dict()
print(json.dumps(res))
"""


def run(script: str, args: dict) -> dict:
    """``script`` in a fresh process of this tree; its last line as JSON."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def files(root: Path) -> dict[str, str]:
    """SHA-256 of every file of a dataset (``build.json`` included: the cap is not in it).
    Hashes, not bytes: this process stays small (a child's peak RSS starts from its parent's
    size on Linux, so the builds' own figures stay comparable)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def builds(args, library: Path, tmp: Path) -> dict:
    caps = {
        "unbounded": UNBOUNDED,
        "default": None,  # the build's own default
        "tiny": args.tiny,
        "none": 0,
    }
    res, reference = {}, None
    for name, cap in caps.items():
        out = tmp / f"build-{name}"
        r = run(BUILD, {"n": args.n, "out": str(out), "library": str(library), "cap": cap,
                        "seed": args.seed})  # fmt: skip
        if not r["ok"]:
            raise RuntimeError(f"build {name}: {r['error']}")
        got = files(out)
        if reference is None:
            reference = got
        r["same_bytes_as_unbounded"] = got == reference
        r["cpu_per_example"] = r["cpu"] / r["examples"]
        r["wall_per_example"] = r["seconds"] / r["examples"]
        res[name] = r
        print(f"build {name}: {json.dumps(r)}", file=sys.stderr)
        if name != "unbounded":
            subprocess.run(["rm", "-rf", str(out)], check=True)
    res["pitched_per_example"] = pitched_per_example(tmp / "build-unbounded")
    subprocess.run(["rm", "-rf", str(tmp / "build-unbounded")], check=True)
    return res


def pitched_per_example(ds: Path) -> float:
    """Mean number of pitched loops (semitones != 0) per example of a dataset."""
    from rmod.build.manifest import read_manifest

    rows = [
        r
        for s in ("train", "valid", "test")
        for r in read_manifest(ds / "manifests" / f"{s}.jsonl")
    ]
    count = 0
    for r in rows:
        for inst in r.params["instruments"].values():
            if inst.get("loop_id") and inst.get("semitones"):
                count += 1
    return count / len(rows)


def loop_costs(library: Path, loops: int, seed: int) -> dict:
    """Decode and pitch times of ``loops`` loops, and the compact formats on them."""
    import numpy as np

    from rmod.example.pitch import pitch_shift_loop
    from rmod.library.catalog import Library

    lib = Library.load(str(library))
    rng = np.random.default_rng(seed)
    ids = [e.id for e in lib.entries if e.cls in ("bass", "piano", "guitar", "vocal")]
    picked = [ids[int(k)] for k in rng.choice(len(ids), loops, replace=False)]
    decode, pitch, pitched = [], [], []
    for entry_id in picked:
        t = time.process_time()
        audio = lib.load_audio(entry_id, 44100)
        decode.append(time.process_time() - t)
        semitones = int(rng.choice([s for s in range(-12, 13) if s]))
        t = time.process_time()
        pitched.append(pitch_shift_loop(audio, 44100, semitones))
        pitch.append(time.process_time() - t)
    res = {
        "loops": loops,
        "decode_ms": 1000 * float(np.mean(decode)),
        "pitch_ms": 1000 * float(np.mean(pitch)),
        "entry_bytes": float(np.mean([p.nbytes for p in pitched])),
    }
    # float16: the error, in 16-bit steps of full scale
    err = [np.max(np.abs(p.astype(np.float16).astype(np.float32) - p)) for p in pitched]
    rel = [
        np.sqrt(np.mean((p.astype(np.float16).astype(np.float32) - p) ** 2) / np.mean(p**2))
        for p in pitched
    ]
    res["float16"] = {
        "ratio": 0.5,
        "max_error_lsb16": float(np.max(err) * 32768),
        "error_rms_db": float(20 * np.log10(np.mean(rel))),
    }
    for name, shuffle in (("zlib1", False), ("zlib1_shuffled", True)):
        sizes, comp, decomp = [], [], []
        for p in pitched:
            raw = np.ascontiguousarray(p, np.float32)
            data = (
                raw.view(np.uint8).reshape(-1, 4).T.copy().tobytes() if shuffle else raw.tobytes()
            )
            t = time.perf_counter()
            packed = zlib.compress(data, 1)
            comp.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = zlib.decompress(packed)
            if shuffle:
                back = np.frombuffer(back, np.uint8).reshape(4, -1).T.copy().view(np.float32)
            decomp.append(time.perf_counter() - t)
            sizes.append(len(packed) / raw.nbytes)
        res[name] = {
            "ratio": float(np.mean(sizes)),
            "compress_ms": 1000 * float(np.mean(comp)),
            "decompress_ms": 1000 * float(np.mean(decomp)),
        }
    # a slice read from a kept float32 file, as a render does (memory-mapped)
    folder = Path(tempfile.mkdtemp())
    path = folder / "x.f32"
    pitched[0].tofile(path)
    t = time.perf_counter()
    for _ in range(200):
        mm = np.memmap(path, np.float32, "r", shape=pitched[0].shape)
        np.asarray(mm[:, 1000 : 1000 + 4 * 44100]).copy()
        del mm
    res["float32_slice_read_ms"] = 1000 * (time.perf_counter() - t) / 200
    path.unlink()
    folder.rmdir()
    return res


def float16_render_effect(library: Path, n: int, seed: int) -> dict:
    """How many 16-bit samples of ``n`` rendered mixtures change when every pitched loop
    is rounded through float16 (what a float16 store would need the engine to do always)."""
    import io

    import numpy as np
    import soundfile as sf

    import rmod.example.sample_store as st
    from rmod.audio import encode_audio
    from rmod.example.draw import draw_example
    from rmod.example.render import render_example
    from rmod.library.catalog import Library
    from rmod.recipe.spec import load_recipe

    lib = Library.load(str(library))
    recipe = load_recipe(None)
    exact = st.pitch_shift_loop

    def mixtures() -> list[np.ndarray]:
        out = []
        for i in range(n):
            params = draw_example(recipe, st.SampleStore(lib, 44100), seed, "train", i)
            mix = render_example(params, recipe, st.SampleStore(lib, 44100)).mixture
            data, _ = sf.read(io.BytesIO(encode_audio(mix, 44100, "wav")), dtype="int16")
            out.append(data)
        return out

    plain = mixtures()
    st.pitch_shift_loop = lambda *a, **k: exact(*a, **k).astype(np.float16).astype(np.float32)
    try:
        rounded = mixtures()
    finally:
        st.pitch_shift_loop = exact
    changed = sum(int(np.count_nonzero(a != b)) for a, b in zip(plain, rounded, strict=True))
    total = sum(a.size for a in plain)
    worst = max(
        int(np.max(np.abs(a.astype(np.int32) - b))) for a, b in zip(plain, rounded, strict=True)
    )
    return {"examples": n, "samples_changed": changed / total, "max_change_lsb": worst}


def working_set(library: Path) -> dict:
    """Bytes of every decoded source and every (loop, semitone) pair of the paper recipe."""
    from rmod.library.catalog import Library
    from rmod.recipe.spec import load_recipe

    lib = Library.load(str(library))
    recipe = load_recipe(None).to_dict()
    spans = {}
    for name, track in recipe["instruments"]["tracks"].items():
        lo, hi = track["semitones"]["randint"]
        spans[name] = len([s for s in range(lo, hi + 1) if s])
    decoded = pitched = pairs = 0
    for e in lib.entries:
        n = e.channels if e.channels <= 2 else 1
        size = 4 * n * int(round(e.duration * 44100))
        decoded += size
        if e.cls in spans:
            pitched += size * spans[e.cls]
            pairs += spans[e.cls] + 1
    return {"decoded_bytes": decoded, "pitched_bytes": pitched, "loop_semitone_pairs": pairs}


def project(res: dict) -> dict:
    """CPU per example at 1 M examples for a few caps (see the module docstring, step 4)."""
    ws, costs, passes = res["working_set"], res["loop_costs"], res["passes"]
    n_p = res["builds"]["pitched_per_example"]
    warm, t_pitch = passes["warm"], costs["pitch_ms"] / 1000
    out = {}
    total = ws["decoded_bytes"] + ws["pitched_bytes"]
    for label, cap in (("16 GB", 16e9), ("64 GB", 64e9), ("unbounded", total)):
        hit = min(1.0, max(0.0, (cap - ws["decoded_bytes"]) / ws["pitched_bytes"]))
        cpu = warm + n_p * (1 - hit) * t_pitch
        out[label] = {
            "pitched_hit_rate": hit,
            "cpu_per_example_ms": 1000 * cpu,
            "core_hours_at_1M": cpu * PAPER_N / 3600,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="--n of the timed builds")
    p.add_argument("--examples", type=int, default=40, help="examples of the cold/warm passes")
    p.add_argument("--tiny", type=int, default=100_000_000, help="the tiny cap, bytes")
    p.add_argument("--loops", type=int, default=40, help="loops timed for pitch and formats")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/rmod-bench", help="work folder (the library is kept)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    library = paper_size_library(work)
    tmp = Path(tempfile.mkdtemp(dir=work))
    res: dict = {"n": args.n, "tiny_cap": args.tiny}
    res["working_set"] = working_set(library)
    res["loop_costs"] = loop_costs(library, args.loops, args.seed)
    print(f"loop costs: {json.dumps(res['loop_costs'])}", file=sys.stderr)
    res["float16_render"] = float16_render_effect(library, 6, args.seed)
    print(f"float16 render: {json.dumps(res['float16_render'])}", file=sys.stderr)
    res["passes"] = run(PASSES, {"n": args.examples, "library": str(library), "tmp": str(tmp),
                                 "seed": args.seed})  # fmt: skip
    print(f"passes: {json.dumps(res['passes'])}", file=sys.stderr)
    res["builds"] = builds(args, library, tmp)
    res["projection_1M"] = project(res)
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    res["seconds"] = time.perf_counter() - start
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
