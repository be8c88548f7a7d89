"""Listen-by-proxy: how this engine's mixtures compare with a previous engine's.

Renders the same example indices (paper recipe, built-in library) with this engine and
with the baseline engine (a git worktree of ``--baseline``, as in ``bench_build.py``) and
prints, per engine, the median over examples of:

* each track's level in the pre-master mix (dB, :func:`rmod.inspect.overview.contribution_db`),
  the three drums together, and (this engine) the two bus returns;
* each drum class's level against everything else in the 50 ms after its onsets
  (:func:`rmod.inspect.overview.onset_snr_db`);
* the mixture's energy share below 150 Hz, 150 Hz-5 kHz and above 5 kHz, its spectral
  centroid, and the left/right correlation (1 = mono, 0 = unrelated channels).

Usage: ``python benchmarks/listen_proxy.py [--n 40] [--baseline 5fa67ac]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import REPO, baseline_tree, run_engine  # noqa: E402

MEASURE = r"""
import json, sys
import numpy as np
from rmod.example.draw import draw_example, render_example
from rmod.library.catalog import Library
from rmod.inspect.overview import contribution_db, onset_snr_db
from rmod.recipe.spec import load_recipe
args = json.loads(sys.argv[1])
lib, recipe = Library.load(None), load_recipe(None)
rows = []
for i in range(args["n"]):
    p = draw_example(recipe, lib, 0, "train", i)
    out = render_example(p, recipe, lib)
    m = out.mixture.astype(np.float64)
    spec = np.abs(np.fft.rfft(m.mean(axis=0))) ** 2
    f = np.fft.rfftfreq(m.shape[1], 1 / out.sample_rate)
    total = spec.sum()
    rows.append({
        "levels": {k: v for k, v in contribution_db(out.stems).items() if np.isfinite(v)},
        "onsets": {k: v for k, v in onset_snr_db(out.stems, out.onsets, 44100).items()
                   if np.isfinite(v)},
        "low": spec[f < 150].sum() / total, "mid": spec[(f >= 150) & (f < 5000)].sum() / total,
        "high": spec[f >= 5000].sum() / total, "centroid": (f * spec).sum() / total,
        "lr_corr": float(np.corrcoef(m[0], m[1])[0, 1]),
    })
print(json.dumps(rows))
"""


def medians(rows: list[dict]) -> dict[str, float]:
    """Median of every figure over the examples where it exists."""
    import numpy as np

    values: dict[str, list[float]] = {}
    for row in rows:
        for group in ("levels", "onsets"):
            for k, v in row[group].items():
                values.setdefault(f"{group}.{k}", []).append(v)
        for k in ("low", "mid", "high", "centroid", "lr_corr"):
            values.setdefault(k, []).append(row[k])
    return {k: float(np.median(v)) for k, v in values.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=40, help="examples per engine")
    parser.add_argument("--baseline", default="5fa67ac", help="commit of the baseline engine")
    parser.add_argument("--work", default="/tmp/rmod-bench", help="work folder (kept)")
    args = parser.parse_args(argv)
    old = baseline_tree(args.baseline, Path(args.work))
    res = {
        name: medians(run_engine(tree, MEASURE, {"n": args.n}))
        for name, tree in (("new", REPO), ("old", old))
    }
    print(f"median over {args.n} examples | this engine | {args.baseline}")
    print("--- | --- | ---")
    for key in sorted(set(res["new"]) | set(res["old"])):
        cells = []
        for name in ("new", "old"):
            v = res[name].get(key)
            if v is None:
                cells.append("-")
            elif key in ("low", "mid", "high"):
                cells.append(f"{100 * v:.1f} %")
            elif key == "centroid":
                cells.append(f"{v:.0f} Hz")
            else:
                cells.append(f"{v:.2f}" if key == "lr_corr" else f"{v:+.1f} dB")
        print(f"{key} | {cells[0]} | {cells[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
