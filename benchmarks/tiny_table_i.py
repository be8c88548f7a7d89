"""Table I end to end on TINY RANDOM models: the shape of the paper's table, not its numbers.

Builds two small RMOD datasets with `rmod-build` (the paper recipe and the drums-only recipe,
built-in library), writes a tiny random DAC and tiny random DOSE models (two sets: "DOSE" and
"DOSE (w/o onset loss)"), and runs `dose-eval` with every system and metric: the narrow
random-weight VGGish, CLAP and LarsNet of `tests/fixtures/reference/` (the released file formats).
Every number it prints is the number of random weights: it shows what the command writes.

    python benchmarks/tiny_table_i.py --out /tmp/tiny-table-i [--rows 4]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dose_fixtures import write_tiny_codec, write_tiny_dose_checkpoint  # noqa: E402

REF = ROOT / "tests" / "fixtures" / "reference"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rows", type=int, default=4, help="rows of each dataset scored")
    args = p.parse_args()
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    for name, recipe in (("rmod", "rmod-paper"), ("drums", "rmod-drums-only")):
        if not (work / name / "build.json").exists():
            subprocess.run(
                ["rmod-build", "--n", str(args.rows), "--out", str(work / name), "--recipe",
                 recipe, "--no-progress"],
                check=True,
            )  # fmt: skip
    codec = write_tiny_codec(work / "tiny-dac.pth", loud=True)
    dose = write_tiny_dose_checkpoint(work / "tiny-dose.ckpt", max_target_len=30)
    ablation = write_tiny_dose_checkpoint(work / "tiny-dose-b.ckpt", max_target_len=30, seed=1)
    argv = [
        "dose-eval",
        "--data",
        f"rmod={work / 'rmod'}",
        "--data",
        f"drums only={work / 'drums'}",
    ]
    argv += ["--split", "train", "--max-rows", str(args.rows), "--codec-weights", str(codec)]
    for drum in ("kick", "snare", "hihat"):
        argv += [f"--{drum}", str(dose), f"--ablation-{drum}", str(ablation)]
    argv += [
        "--fad",
        f"vggish={REF / 'vggish_narrow.pth'}",
        "--fad",
        f"clap={REF / 'clap_narrow.pt'}",
    ]
    argv += ["--larsnet", str(REF / "larsnet_narrow"), "--paper", "--bootstrap", "100"]
    argv += ["--device", "cpu", "--no-progress", "--out", str(work / "eval")]
    argv += ["--embedding-cache", str(work / "embeddings")]
    print("$", " ".join(f"'{a}'" if " " in a else a for a in argv), flush=True)
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    print(f"tiny_table_i: dose-eval took {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
