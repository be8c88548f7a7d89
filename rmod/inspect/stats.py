"""Dataset statistics against the recipe (``rmod-stats``).

Every drawn parameter recorded in the manifests (``row.params``) is matched with the
recipe distribution it was drawn from (read from ``build.json``), so each figure can be
compared with what the recipe asks for:

* ``hits``: hits per drum class (``drums.hits``);
* ``layering``: weight of the first layered one-shot (``drums.layer_weights``);
* ``instruments``: presence of each instrument (``1 - drop`` probability) and the slice
  length of the playing ones (``instruments.segment_seconds``);
* ``semitones``: pitch shift of each playing instrument (``instruments.tracks.*.semitones``);
* ``mixing``: every per-track effect parameter (gain and pan per track; EQ, compressor,
  limiter, delay and reverb pooled over tracks, they share one distribution);
* ``master``: master EQ and limiter;
* ``loudness``: peak and RMS level of the mixture and of each one-shot (no recipe
  distribution; the mixture peak is drawn against the recipe's ``master.ceiling_dbfs``);
* ``sources``: per drum one-shot used, whether it is a soundfont recording (1) or not (0)
  and the size of its family in the library (velocity layers and copies of one sound); only
  when the build's library can be read as it was (the built-in one is never generated for
  this). The library's leak figures: ``rmod-library info --leaks`` and
  ``benchmarks/data_quality.py``;
* ``high_band``: the non-drum share of the mixture's energy above 5 kHz
  (:func:`rmod.inspect.quality.high_band_share`) of the first ``high_band`` examples of the
  splits, re-rendered from their rows' params with the build's recipe and library (a
  build keeps no stems), against the target median (:data:`rmod.inspect.quality.HIGH_BAND_TARGET`);
  skipped, with the reason in ``stats.json``, when the library cannot be read as built.

The expected histogram of a recipe distribution is estimated by drawing
:data:`EXPECTED_DRAWS` values from it with a fixed-seed generator, so it works for every
distribution kind. ``stats.json`` holds, per metric: count, mean, std, min, max, the
recipe spec, its bounds and expected mean, how many values fall outside the bounds, the
observed and expected histograms and their total-variation distance.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

from rmod import SPLITS
from rmod.build.manifest import (
    BUILD_JSON,
    BuildInfo,
    ManifestError,
    ManifestRow,
    iter_manifest,
    manifest_path,
    read_build_info,
)
from rmod.inspect.plots import is_log_spec, plot_groups
from rmod.inspect.quality import HIGH_BAND_TARGET, build_shares, share_summary
from rmod.library.catalog import Library, LibraryEntry, LibraryError
from rmod.library.hashing import family_key
from rmod.recipe.checks import drawn_values
from rmod.recipe.distributions import parse_distribution
from rmod.recipe.spec import Recipe
from rmod_dose_common.fileio import atomic_write_text

EXPECTED_DRAWS = 5000
EXPECTED_SEED = 0
BINS = 24
GROUPS = (
    "hits",
    "layering",
    "instruments",
    "semitones",
    "mixing_tracks",
    "mixing_eq",
    "mixing_dynamics",
    "mixing_sends",
    "master",
    "loudness",
    "sources",
    "high_band",
)


@dataclass
class Metric:
    """Observed values of one quantity and the recipe spec it was drawn from.

    ``transform`` maps a draw of ``spec`` to the recorded value (e.g. the first weight
    of a weight pair, or presence = not dropped). ``reference`` is a value to mark on
    the plot when there is no distribution (e.g. the output ceiling, the high-band target,
    the library's mean for the sources), named by ``reference_label``.
    """

    name: str
    group: str
    spec: Any = None
    transform: Callable[[Any], float] | None = None
    reference: float | None = None
    reference_label: str = "reference"
    values: array = field(default_factory=lambda: array("d"))

    def add(self, value: float | None) -> None:
        """Record one value (``None``, e.g. a silent level, is skipped)."""
        if value is not None:
            self.values.append(float(value))


class Collector:
    """Walks rows' params alongside the recipe dict and accumulates :class:`Metric` s."""

    def __init__(self, recipe: dict[str, Any], library: Library | None = None):
        self.recipe = recipe
        self.metrics: dict[str, Metric] = {}
        self.library = library
        self._family_size: dict[str, int] = {}
        self._expected: dict[str, tuple[float | None, float | None]] = {}
        if library is not None:
            for e in library.entries:
                key = family_key(e)
                self._family_size[key] = self._family_size.get(key, 0) + 1

    def metric(self, name: str, group: str, spec: Any = None, **kw: Any) -> Metric:
        """The metric called ``name``, created on first use."""
        if name not in self.metrics:
            self.metrics[name] = Metric(name, group, spec, **kw)
        return self.metrics[name]

    def add_row(self, row: ManifestRow) -> None:
        """Accumulate the drawn parameters (:func:`rmod.recipe.checks.drawn_values`) and
        the loudness figures of one row."""
        for d in drawn_values(row.params, self.recipe):
            self.metric(d.name, d.group, d.spec, transform=d.transform).add(d.value)
        self._add_sources(row)
        ceiling = self.recipe.get("master", {}).get("ceiling_dbfs")
        for key, value in sorted(row.loudness.items()):
            ref = ceiling if key == "mixture_peak_db" else None
            self.metric(f"loudness.{key}", "loudness", reference=ref).add(value)

    def _add_sources(self, row: ManifestRow) -> None:
        """Per drum one-shot used: recorded (soundfont) or not, and its family's size (the
        velocity layers and copies of its source sound), each against the mean that uniform
        draws from the library's training one-shots of that class would give."""
        if self.library is None:
            return
        for cls, ids in row.sources.items():
            for entry_id in ids if cls in ("kick", "snare", "hihat") else ():
                if entry_id not in self.library:
                    continue
                e = self.library.entry(entry_id)
                recorded, size = self._source_figures(e)
                means = self._expected_sources(cls)
                names = ("recorded", "family_size")
                for name, value, mean in zip(names, (recorded, size), means, strict=True):
                    kw = {"reference": mean, "reference_label": "library mean (uniform draws)"}
                    self.metric(f"sources.{name}.{cls}", "sources", **kw).add(value)

    def _source_figures(self, entry: LibraryEntry) -> tuple[float, float]:
        """(1.0 if recorded from a soundfont else 0.0, the size of the entry's family)."""
        recorded = 1.0 if entry.source.startswith("sf2:") else 0.0
        return recorded, float(self._family_size[family_key(entry)])

    def _expected_sources(self, cls: str) -> tuple[float | None, float | None]:
        """The means of :meth:`_source_figures` over the library's training ``cls`` entries
        (None when it has none)."""
        if cls not in self._expected:
            assert self.library is not None  # _add_sources, the caller, returns without one
            ids = self.library.ids(cls, "train")
            figures = np.array([self._source_figures(self.library.entry(i)) for i in ids])
            means = figures.mean(axis=0) if len(figures) else (None, None)
            # two means: figures is [entries, 2] (recorded, family size)
            self._expected[cls] = cast(
                "tuple[float | None, float | None]",
                tuple(None if m is None else float(m) for m in means),
            )
        return self._expected[cls]


def _library_of(info: BuildInfo) -> Library | None:
    """The build's library when it can be read without generating anything, else None."""
    path: str | os.PathLike | None = info.library_path
    if path is None:
        # here: the built-in library's modules load scipy.signal (~1 s), needed only here
        from rmod.library.builtin import BuiltinConfig, Sources, cache_root, check_builtin
        from rmod.library.builtin.generate import MANIFEST_NAME

        path = cache_root() / BuiltinConfig().folder_name(Sources.detect()) / MANIFEST_NAME
        if check_builtin(path) is not None:
            return None
    try:
        lib = Library.load(path)
    except (LibraryError, OSError):
        return None
    return lib if lib.fingerprint == info.library_fingerprint else None


def expected_draws(metric: Metric) -> np.ndarray | None:
    """:data:`EXPECTED_DRAWS` values from the metric's recipe spec (fixed seed), or None."""
    if metric.spec is None:
        return None
    dist = parse_distribution(metric.spec, metric.name)
    rng = np.random.default_rng(EXPECTED_SEED)
    transform = metric.transform or float
    return np.array([transform(dist.sample(rng)) for _ in range(EXPECTED_DRAWS)], dtype=float)


def bin_edges(values: np.ndarray, expected: np.ndarray | None, spec: Any) -> np.ndarray:
    """Histogram edges covering observed and expected values.

    Integer-valued data get one bin per integer; log-uniform specs get log-spaced bins.
    """
    pool = values if expected is None else np.concatenate([values, expected])
    lo, hi = float(pool.min()), float(pool.max())
    if np.all(pool == np.round(pool)) and hi - lo <= 200:
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.0, 1.0)
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5])
    if is_log_spec(spec) and lo > 0:
        return np.geomspace(lo, hi, BINS + 1)
    return np.linspace(lo, hi, BINS + 1)


def summarize(metric: Metric) -> dict[str, Any]:
    """JSON-ready statistics of one metric (see the module docstring)."""
    values = np.asarray(metric.values, dtype=float)
    out: dict[str, Any] = {"group": metric.group, "count": int(values.size)}
    if values.size == 0:
        return out
    expected = expected_draws(metric)
    edges = bin_edges(values, expected, metric.spec)
    observed, _ = np.histogram(values, edges)
    out.update(
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        histogram={"edges": edges.tolist(), "counts": observed.tolist()},
    )
    if metric.reference is not None:
        out["reference"] = metric.reference
        out["reference_label"] = metric.reference_label
    if expected is not None:
        dist = parse_distribution(metric.spec, metric.name)
        bounds = dist.bounds if metric.transform is None else (expected.min(), expected.max())
        exp_counts, _ = np.histogram(expected, edges)
        exp_frac = exp_counts / max(1, expected.size)
        obs_frac = observed / values.size
        tol = 1e-9 * max(1.0, abs(bounds[0]), abs(bounds[1])) if bounds else 0.0
        out["recipe"] = {
            "spec": metric.spec,
            "bounds": [float(bounds[0]), float(bounds[1])] if bounds else None,
            "expected_mean": float(expected.mean()),
            "expected_fraction": exp_frac.tolist(),
        }
        out["out_of_bounds"] = (
            int(np.sum((values < bounds[0] - tol) | (values > bounds[1] + tol))) if bounds else 0
        )
        out["tv_distance"] = float(0.5 * np.abs(obs_frac - exp_frac).sum())
    return out


def collect(
    root: str | os.PathLike, splits: Iterable[str] = SPLITS, progress: bool = True
) -> tuple[BuildInfo, Collector, dict[str, int]]:
    """Read the manifests of ``splits`` and return ``(build info, Collector, rows per split)``."""
    root = Path(root)
    info = read_build_info(root)
    # the walk below reads the recipe dict as a recipe: refuse one that is not (RecipeError)
    Recipe.from_dict(info.recipe, source=f"{root / BUILD_JSON}: recipe")
    collector = Collector(info.recipe, _library_of(info))
    counts: dict[str, int] = {}
    splits = list(splits)
    total = sum(info.counts.get(s, 0) for s in splits)
    with tqdm(total=total, desc="rmod-stats", unit="row", disable=not progress) as bar:
        for split in splits:
            counts[split] = 0
            path = manifest_path(root, split)
            if not path.is_file():
                raise ManifestError(
                    f"{path}: manifest is missing (after an interrupted build: rerun the same "
                    "rmod-build; or leave the split out with --splits)"
                )
            for row in iter_manifest(path):
                collector.add_row(row)
                counts[split] += 1
                bar.update(1)
    return info, collector, counts


def compute_stats(
    root: str | os.PathLike,
    splits: Iterable[str] = SPLITS,
    out_dir: str | os.PathLike | None = None,
    plots: bool = True,
    progress: bool = True,
    high_band: int = 16,
) -> dict[str, Any]:
    """Write ``stats.json`` (and PNG plots, one per group) into ``out_dir``
    (default ``DIR/stats``); returns the ``stats.json`` content. ``high_band``: examples
    re-rendered for the high-band share (0: none)."""
    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / "stats"
    splits = list(splits)
    info, collector, counts = collect(root, splits, progress)
    shares = build_shares(root, splits, info, collector.library, high_band)
    summary = {"skipped": shares} if isinstance(shares, str) else share_summary(shares)
    for v in () if isinstance(shares, str) else shares:
        collector.metric(
            "high_band.share",
            "high_band",
            reference=HIGH_BAND_TARGET,
            reference_label="target median",
        ).add(v)
    metrics = {name: summarize(m) for name, m in sorted(collector.metrics.items())}
    if "high_band.share" in metrics:
        metrics["high_band.share"]["median"] = summary["median"]
    stats: dict[str, Any] = {
        "dataset": str(root),
        "recipe": info.recipe.get("name"),
        "recipe_fingerprint": info.recipe_fingerprint,
        "rows": counts,
        "expected_draws": EXPECTED_DRAWS,
        "metrics": metrics,
        "high_band": summary,
        "plots": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        stats["plots"] = [p.name for p in plot_groups(metrics, out, GROUPS)]
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=1, allow_nan=False) + "\n")
    return stats


def worst_metrics(stats: dict[str, Any], n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` metrics whose histogram is furthest from the recipe's (TV distance)."""
    scored = [(k, v["tv_distance"]) for k, v in stats["metrics"].items() if "tv_distance" in v]
    return sorted(scored, key=lambda kv: -kv[1])[:n]


__all__ = ["GROUPS", "Collector", "Metric", "compute_stats", "plot_groups", "summarize"]
