"""The ``rmod-stats`` plots: one PNG per group of :mod:`rmod.inspect.stats` metrics.

Each metric is a histogram of the dataset's values (fraction per bin) with the recipe's
expected fractions as a red line and its bounds dashed; a metric without a recipe
distribution marks its ``reference`` value (e.g. the output ceiling, the high-band share's
target, the library's mean for the sources) in red and its ``median`` (or else its mean) in
black.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rmod_dose_common.fileio import atomic_writer


def is_log_spec(spec: Any) -> bool:
    """True for log-uniform specs (plotted on a log axis with log-spaced bins)."""
    return isinstance(spec, dict) and "loguniform" in spec


def plot_groups(
    metrics: dict[str, dict[str, Any]], out: Path, groups: tuple[str, ...]
) -> list[Path]:
    """One PNG per group (``{group}.png``): a histogram per metric (fraction of values
    per bin), the recipe's expected fractions as a red line, its bounds dashed.
    Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for group in groups:
        items = [(k, v) for k, v in metrics.items() if v["group"] == group and v["count"]]
        if not items:
            continue
        ncols = min(4, len(items))
        nrows = math.ceil(len(items) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.6 * ncols, 7.2), 2.4 * nrows + 0.6))
        axes = np.atleast_1d(axes).ravel()
        for ax, (name, m) in zip(axes, items, strict=False):
            _plot_metric(ax, name, m)
        for ax in axes[len(items) :]:
            ax.axis("off")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", fontsize=8, ncols=len(labels))
        fig.suptitle(
            f"RMOD {group.replace('_', ' ')}: dataset vs recipe", fontsize=10, x=0.02, ha="left"
        )
        top = 1.0 - 0.55 / (2.4 * nrows + 0.6)
        fig.subplots_adjust(
            left=0.06, right=0.98, bottom=0.08 / nrows, top=top * 0.97, hspace=0.55, wspace=0.3
        )
        path = out / f"{group}.png"
        with atomic_writer(path) as fh:
            fig.savefig(fh, format="png", dpi=60, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def _plot_metric(ax: Any, name: str, m: dict[str, Any]) -> None:
    edges = np.asarray(m["histogram"]["edges"])
    frac = np.asarray(m["histogram"]["counts"], dtype=float) / max(1, m["count"])
    ax.stairs(frac, edges, fill=True, alpha=0.5, color="tab:blue", label="dataset")
    recipe = m.get("recipe")
    if recipe:
        ax.stairs(recipe["expected_fraction"], edges, color="tab:red", lw=1.5, label="recipe")
        for bound in recipe["bounds"] or ():
            ax.axvline(bound, color="tab:red", ls="--", lw=0.8)
        if is_log_spec(recipe["spec"]):
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
    median = m.get("median")
    if m.get("reference") is not None:
        label = m.get("reference_label", "reference")
        ax.axvline(m["reference"], color="tab:red", ls="--", lw=1.2, label=label)
        if median is None:
            ax.axvline(m["mean"], color="black", ls=":", lw=1.2, label="dataset mean")
    title = f"{name} (n={m['count']}, mean {m['mean']:.3g})"
    if median is not None:
        ax.axvline(median, color="black", ls=":", lw=1.2, label="dataset median")
        title = f"{name} (n={m['count']}, median {median:.3g})"
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
