"""Data-quality figures of a library (default: the built-in one) and of the mixes it makes.

Usage::

    python benchmarks/data_quality.py [--library LIB] [--examples 200] [--recipe rmod-paper]

Prints, per drum class, the distinct sounds (correlation <= 0.99 after alignment, see
:mod:`rmod.library.leaks`; also among the soundfont-sourced entries alone) and the share of
valid/test one-shots with a train near-duplicate (> 0.95); per instrument class, the
loops' median share of energy above 5 kHz and spectral centroid, highest peak and largest
DC offset; then, over ``--examples`` rendered train examples, the median, 10th and 90th
percentile of the non-drum share of the mixture's energy above 5 kHz
(:func:`rmod.inspect.quality.high_band_share`: instrument tracks' energy above 5 kHz over that of
the instrument and drum tracks, each after its chain, before the master bus; the shared
delay/reverb returns, which carry both, are left out), and over the first ``--check`` of
them the drum-audibility check of ``tests/rmod/test_example.py``
(:func:`rmod.inspect.quality.audibility_failures`) and the weakest hi-hat onset ratio.
``--json`` writes the figures to a file too.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rmod import DRUMS, INSTRUMENTS, SPLITS
from rmod.example.draw import draw_example
from rmod.example.render import render_example
from rmod.inspect.overview import onset_snr_db
from rmod.inspect.quality import (
    audibility_failures,
    high_band_fraction,
    high_band_share,
    share_summary,
)
from rmod.library.catalog import Library
from rmod.library.leaks import count_distinct, leak_report
from rmod.recipe.spec import load_recipe


def mix_figures(lib: Library, recipe_name: str, n: int, n_check: int, seed: int = 0) -> dict:
    """High-band shares of ``n`` train examples (:func:`rmod.inspect.quality.high_band_share`) and
    the drum-audibility check (:func:`rmod.inspect.quality.audibility_failures`) of the first
    ``n_check``, with the weakest hi-hat onset ratio among them."""
    recipe = load_recipe(recipe_name)
    shares, failing, weakest = [], 0, float("inf")
    for i in range(n):
        params = draw_example(recipe, lib, seed, "train", i)
        out = render_example(params, recipe, lib)
        shares.append(high_band_share(out.stems, out.sample_rate))
        if i < n_check:
            failing += bool(audibility_failures(out))
            snr = onset_snr_db(out.stems, out.onsets, out.sample_rate)
            weakest = min(weakest, snr.get("hihat", float("inf")))
    return {
        "high_band_share": {k: round(v, 4) for k, v in share_summary(shares).items()},
        "audibility": {
            "examples": min(n, n_check),
            "failing": failing,
            "weakest_hihat_db": weakest,
        },
    }


def loop_figures(lib: Library) -> dict:
    """Listen-by-proxy of the instrument loops, per class: median share of the energy above
    5 kHz and median spectral centroid (Hz), highest sample peak (dBFS) and largest DC
    offset (mean over RMS) of any loop."""
    out = {}
    for cls in INSTRUMENTS:
        top, centroid, peak, dc = [], [], -np.inf, 0.0
        for i in sorted(i for s in SPLITS for i in lib.ids(cls, s)):
            x = lib.load_audio(i).mean(axis=0).astype(np.float64)
            power = np.abs(np.fft.rfft(x)) ** 2
            freqs = np.fft.rfftfreq(x.size, 1.0 / lib.entry(i).sample_rate)
            top.append(high_band_fraction(x, lib.entry(i).sample_rate))
            centroid.append(float((power * freqs).sum() / power.sum()))
            peak = max(peak, float(20 * np.log10(np.max(np.abs(x)))))
            dc = max(dc, abs(float(np.mean(x))) / float(np.sqrt(np.mean(x**2))))
        if top:
            out[cls] = {
                "n": len(top),
                "high_band_fraction_median": round(float(np.median(top)), 4),
                "centroid_hz_median": round(float(np.median(centroid)), 1),
                "peak_dbfs_max": round(peak, 2),
                "dc_over_rms_max": round(dc, 5),
            }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--library", default=None, help="library manifest (default: built-in)")
    p.add_argument("--examples", type=int, default=200, help="examples to render (0: none)")
    p.add_argument(
        "--check", type=int, default=100, help="of them, examples to check for drum audibility"
    )
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
    figures["loops"] = loop_figures(lib)
    for cls, f in figures["loops"].items():
        print(
            f"{cls:<6} {f['n']} loops: median {100 * f['high_band_fraction_median']:.2f} % of "
            f"the energy above 5 kHz, centroid {f['centroid_hz_median']:.0f} Hz; peak <= "
            f"{f['peak_dbfs_max']:.1f} dBFS, DC <= {100 * f['dc_over_rms_max']:.2f} % of RMS"
        )
    if args.examples > 0:
        figures |= mix_figures(lib, args.recipe, args.examples, args.check)
        h, a = figures["high_band_share"], figures["audibility"]
        print(
            f"non-drum share of energy above 5 kHz over {args.examples} examples: median "
            f"{100 * h['median']:.1f} % (10th pct {100 * h['p10']:.1f} %, "
            f"90th {100 * h['p90']:.1f} %; target median {100 * h['target_median']:.0f} %)"
        )
        print(
            f"drum audibility (tests/rmod/test_example.py's checks) over {a['examples']} examples: "
            f"{a['failing']} failing; weakest hi-hat onset ratio {a['weakest_hihat_db']:.1f} dB"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
