"""Table I as text and a figure: Markdown, CSV and the bars of ``table.png``.

Everything here reads the records of :mod:`dose_model.evaluate.results` and computes nothing
new. One display rule serves every writer (this module's and the HTML report's): three
decimals, ``–`` for a missing value, lower is better, and in each column of a dataset (metric
× drum) the best value is bold when at least two ranked systems have one (ties on the shown
digits are all bold). As in the paper's Table I, the codec reconstruction row is not ranked:
it is the ceiling of every codec-based system, not a competitor (``unranked``, default
:data:`UNRANKED`). A published value (``table.paper``) is shown beside ours,
``3.910 (paper 3.700)``. FAD cells also carry FAD∞ and the bootstrap interval of FAD∞; a
cell's warning (e.g. fewer samples than dimensions) is marked ``†``.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from dose_model.errors import DoseError
from dose_model.evaluate.results import Cell, CellKey, TableResult
from rmod_dose_common.fileio import atomic_write


class ReportError(DoseError, ValueError):
    """The report cannot be written as asked; the message names the cell, example or file."""


UNRANKED = ("Reconstruction",)
MISSING = "–"
CSV_FIELDS = tuple(
    "dataset system metric drum value n fad_inf ci_low ci_high warning paper".split()
)
TABLE_FIGURE = "table.png"


# ---------------------------------------------------------------------------------------------
# Display rules shared by every writer


def fmt(x: float | None) -> str:
    """A table number: three decimals, ``–`` for none, ``nan``/``inf`` as such."""
    if x is None:
        return MISSING
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3f}"


def table_keys(table: TableResult) -> Iterable[CellKey]:
    """Every cell key in table order: dataset, system, metric, drum."""
    for d in table.datasets:
        for s in table.systems:
            for m in table.metrics:
                for k in table.drums:
                    yield (d, s, m, k)


def check_table(table: TableResult) -> None:
    """Refuse a table whose cells lie outside its own axes (they would vanish from the layout)."""
    axes = (table.datasets, table.systems, table.metrics, table.drums)
    for key in table.cells:
        for value, axis, name in zip(
            key, axes, ("dataset", "system", "metric", "drum"), strict=True
        ):
            if value not in axis:
                raise ReportError(
                    f"cell {key!r}: {name} {value!r} is not one of the table's {axis!r}"
                )


def best_systems(
    table: TableResult, dataset: str, metric: str, drum: str, unranked: tuple[str, ...] = UNRANKED
) -> set[str]:
    """The ranked systems with the lowest shown value of one column of a dataset; empty when
    fewer than two ranked systems have a finite value (nothing to compare)."""
    shown: dict[str, float] = {}
    for system in table.systems:
        cell = table.cell(dataset, system, metric, drum)
        if (
            system in unranked
            or cell is None
            or cell.value is None
            or not math.isfinite(cell.value)
        ):
            continue
        shown[system] = float(fmt(cell.value))
    if len(shown) < 2:
        return set()
    low = min(shown.values())
    return {s for s, v in shown.items() if v == low}


def _interval(cell: Cell) -> str | None:
    if cell.ci_low is None and cell.ci_high is None:
        return None
    return f"[{fmt(cell.ci_low)}, {fmt(cell.ci_high)}]"


def _has_fad_details(cell: Cell | None) -> TypeGuard[Cell]:
    return cell is not None and (
        cell.fad_inf is not None or _interval(cell) is not None or cell.warning is not None
    )


# ---------------------------------------------------------------------------------------------
# Markdown and CSV


def _md(text: str) -> str:
    """A user string safe inside a Markdown table cell (no markup, no HTML, no column break)."""
    out = text.replace("\\", "\\\\")
    for ch in "|*_`[]#~":
        out = out.replace(ch, "\\" + ch)
    return html.escape(out, quote=False).replace("\n", " ")


def write_table_markdown(
    table: TableResult,
    show_paper: bool = True,
    unranked: tuple[str, ...] = UNRANKED,
    fad_details: bool = True,
) -> str:
    """Table I in Markdown: a row per dataset and system, a column per metric and drum; the
    paper's values beside ours (``show_paper``), then (``fad_details``) a table of the FAD
    cells' FAD∞, intervals, sample counts and warnings. Returns the text (ends with a newline)."""
    check_table(table)
    cols = [(m, k) for m in table.metrics for k in table.drums]
    lines = [
        "| Dataset | System | " + " | ".join(f"{_md(m)} {_md(k)}" for m, k in cols) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in cols) + " |",
    ]
    details = []
    for d in table.datasets:
        best = {(m, k): best_systems(table, d, m, k, unranked) for m, k in cols}
        for i, s in enumerate(table.systems):
            cells = []
            for m, k in cols:
                cell = table.cell(d, s, m, k)
                text = fmt(cell.value if cell else None)
                if cell and s in best[(m, k)]:
                    text = f"**{text}**"
                if cell and cell.warning:
                    text += " †"
                paper = table.paper.get((d, s, m, k))
                if show_paper and paper is not None:
                    text += f" (paper {fmt(paper)})"
                cells.append(text)
                if m != "MSS" and _has_fad_details(cell):
                    details.append((d, s, m, k, cell))
            name = _md(d) if i == 0 else ""
            lines.append(f"| {name} | {_md(s)} | " + " | ".join(cells) + " |")
    lines.append("")
    note = "Lower is better. Bold: the best of a column within a dataset"
    if unranked:
        note += f" ({', '.join(_md(s) for s in unranked)} not ranked)"
    note += "; – no value; † a warning" + (" (below)." if fad_details else " (in table.md).")
    lines.append(note)
    if details and fad_details:
        lines += [
            "",
            "| Dataset | System | Metric | Drum | FAD | FAD∞ | interval | n | warning |",
            "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for d, s, m, k, c in details:
            lines.append(
                f"| {_md(d)} | {_md(s)} | {_md(m)} | {_md(k)} | {fmt(c.value)} | {fmt(c.fad_inf)} "
                f"| {_interval(c) or MISSING} | {c.n} | {_md(c.warning) if c.warning else ''} |"
            )
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def write_table_csv(table: TableResult) -> str:
    """One line per cell that has a value or a paper value, in table order: ``CSV_FIELDS``,
    numbers at full precision, empty for none. Returns the text."""
    check_table(table)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for key in table_keys(table):
        cell, paper = table.cells.get(key), table.paper.get(key)
        if cell is None and paper is None:
            continue
        if cell is None:
            w.writerow([*key, "", "", "", "", "", "", _num(paper)])
            continue
        w.writerow(
            [
                *key,
                _num(cell.value),
                cell.n,
                _num(cell.fad_inf),
                _num(cell.ci_low),
                _num(cell.ci_high),
                cell.warning or "",
                _num(paper),
            ]
        )
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Figures


def _mpl_text(text: str) -> str:
    """A user string as literal matplotlib text (``$`` would start math mode)."""
    return text.replace("$", r"\$")


def _save_figure(fig: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", metadata={"Software": None}))


def _bars(cells: list[Cell | None]) -> tuple[np.ndarray, np.ndarray | None]:
    """Bar heights (NaN where there is no value) and error bars ``[2, bars]`` from the
    intervals (None when no cell has one)."""
    vals = np.array([np.nan if c is None or c.value is None else c.value for c in cells])
    lo = np.array([np.nan if c is None or c.ci_low is None else c.ci_low for c in cells])
    hi = np.array([np.nan if c is None or c.ci_high is None else c.ci_high for c in cells])
    if np.all(np.isnan(lo) & np.isnan(hi)):
        return vals, None
    return vals, np.nan_to_num(np.clip([vals - lo, hi - vals], 0, None))


def plot_table(table: TableResult, path: Path, unranked: tuple[str, ...] = UNRANKED) -> Path:
    """The table as a figure: a row of panels per dataset, a panel per metric, bars grouped by
    drum with one bar per system (FAD bars with their interval), the paper's values as black
    dashes. Written to ``path`` (PNG); returns it."""
    from matplotlib.figure import Figure

    check_table(table)
    rows, cols = max(1, len(table.datasets)), max(1, len(table.metrics))
    fig = Figure(figsize=(3.6 * cols, 2.5 * rows + 0.6), dpi=100)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    colors = [f"C{i % 10}" for i in range(len(table.systems))]
    width = 0.8 / max(1, len(table.systems))
    x = np.arange(len(table.drums))
    paper_shown = False
    for r, d in enumerate(table.datasets):
        for c, m in enumerate(table.metrics):
            ax = axes[r, c]
            for i, s in enumerate(table.systems):
                pos = x - 0.4 + width * (i + 0.5)
                vals, yerr = _bars([table.cell(d, s, m, k) for k in table.drums])
                label = _mpl_text(s) + (" (not ranked)" if s in unranked else "")
                ax.bar(
                    pos,
                    vals,
                    width,
                    color=colors[i],
                    label=label if r == c == 0 else None,
                    yerr=yerr,
                    error_kw={"elinewidth": 0.8, "capsize": 1.5},
                )
                for p_, v in zip(pos, vals, strict=True):
                    if np.isnan(v):  # a missing value, not a zero
                        ax.text(
                            p_, 0, MISSING, ha="center", va="bottom", fontsize=8, color=colors[i]
                        )
                paper = [table.paper.get((d, s, m, k), np.nan) for k in table.drums]
                if not np.all(np.isnan(paper)):
                    paper_shown = True
                    ax.plot(pos, paper, "k_", ms=max(4.0, 60 * width), mew=1.5)
            ax.set_xticks(x, [_mpl_text(k) for k in table.drums], fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(_mpl_text(m), fontsize=9)
            ax.grid(axis="y", lw=0.4, alpha=0.5)
            ax.set_axisbelow(True)
            if c == 0:
                name = d if len(d) <= 32 else d[:31] + "…"
                ax.set_ylabel(f"{_mpl_text(name)}\n(lower is better)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if paper_shown:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="k", marker="_", ls="none", ms=10, mew=1.5))
        labels.append("paper")
    fig.legend(
        handles, labels, loc="upper center", ncols=min(len(labels), 6), fontsize=8, frameon=False
    )
    fig.subplots_adjust(
        left=0.07,
        right=0.99,
        bottom=0.35 / (2.5 * rows + 0.6) * 2,
        top=1 - 0.6 / (2.5 * rows + 0.6),
        hspace=0.45,
        wspace=0.25,
    )
    _save_figure(fig, Path(path))
    return Path(path)
