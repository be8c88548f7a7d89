"""Data-quality figures of a library (default: the built-in one) and of the mixes it makes.

Usage::

    python benchmarks/data_quality.py [--library LIB] [--examples 200] [--recipe rmod-paper]

Prints, per drum class, the distinct sounds (correlation <= 0.99 after alignment, see
:mod:`rmod.leaks`; also among the soundfont-sourced entries alone) and the share of valid/test one-shots with a train near-duplicate
(> 0.95); then, over ``--examples`` rendered train examples, the median, 10th and 90th
percentile of the non-drum share of the mixture's energy above 5 kHz (instrument
tracks' energy above 5 kHz over that of the instrument and drum tracks, each after its
chain, before the master bus; the shared delay/reverb returns, which carry both, are left
out). ``--json`` writes the figures to a file too.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rmod import DRUMS, INSTRUMENTS, SPLITS
from rmod.example import draw_example, render_example
from rmod.leaks import count_distinct, leak_report
from rmod.library import Library
from rmod.recipe import load_recipe


def high_band_energy(x: np.ndarray, sr: int, cutoff_hz: float = 5000.0) -> float:
    """Energy of ``x`` (``[channels, samples]``) above ``cutoff_hz``, summed over channels."""
    spec = np.fft.rfft(np.asarray(x, dtype=np.float64), axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sr)
    return float(np.sum(np.abs(spec[..., freqs >= cutoff_hz]) ** 2))


def high_band_share(lib: Library, recipe_name: str, n: int, seed: int = 0) -> list[float]:
    """Non-drum share of the energy above 5 kHz of ``n`` train examples."""
    recipe = load_recipe(recipe_name)
    shares = []
    for i in range(n):
        params = draw_example(recipe, lib, seed, "train", i)
        out = render_example(params, recipe, lib)
        drum = sum(out.stems[c] for c in DRUMS if c in out.stems)
        # the send buses' returns mix drums and instruments: they count on neither side
        other = [v for k, v in out.stems.items() if k in INSTRUMENTS]
        if not other:
            shares.append(0.0)
            continue
        e_other = high_band_energy(sum(other), out.sample_rate)
        e_drum = high_band_energy(drum, out.sample_rate)
        shares.append(e_other / (e_other + e_drum))
    return shares


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--library", default=None, help="library manifest (default: built-in)")
    p.add_argument("--examples", type=int, default=200, help="examples to render (0: none)")
    p.add_argument("--recipe", default="rmod-paper", help="recipe for the rendered examples")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    t0 = time.perf_counter()
    lib = Library.load(args.library)
    figures: dict = {"library": str(lib.path), "fingerprint": lib.fingerprint, "classes": {}}
    print(f"library {lib.path} ({time.perf_counter() - t0:.1f} s to load or generate)")
    leaks = {r.cls: r for r in leak_report(lib, DRUMS)}
    for cls in DRUMS:
        ids = sorted(i for s in SPLITS for i in lib.ids(cls, s))
        distinct = count_distinct([lib.entry(i).path for i in ids])
        recorded = [i for i in ids if lib.entry(i).source.startswith("sf2:")]
        n_real = count_distinct([lib.entry(i).path for i in recorded]) if recorded else 0
        r = leaks[cls]
        figures["classes"][cls] = {
            "n": len(ids),
            "distinct": distinct,
            "distinct_recorded": n_real,
            "leak_percent": round(r.percent, 2),
            "n_eval": r.n_eval,
            "n_leaking": r.n_leaking,
        }
        print(
            f"{cls:<6} {len(ids)} one-shots, {distinct} distinct ({n_real} from soundfont "
            f"recordings); leak {r.n_leaking}/{r.n_eval} "
            f"valid/test = {r.percent:.1f} %"
        )
    if args.examples > 0:
        shares = np.array(high_band_share(lib, args.recipe, args.examples))
        q10, med, q90 = np.percentile(shares, [10, 50, 90])
        figures["high_band_share"] = {
            "examples": args.examples,
            "median": round(float(med), 4),
            "p10": round(float(q10), 4),
            "p90": round(float(q90), 4),
        }
        print(
            f"non-drum share of energy above 5 kHz over {args.examples} examples: median "
            f"{100 * med:.1f} % (10th pct {100 * q10:.1f} %, 90th {100 * q90:.1f} %)"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
