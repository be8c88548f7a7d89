"""What people read of an evaluation: Table I as Markdown, CSV and a figure, and ``index.html``.

Everything here reads the records of :mod:`dose_model.evaluate.results` and computes nothing
new. One display rule serves every writer: three decimals, ``–`` for a missing value, lower is
better, and in each column of a dataset (metric × drum) the best value is bold when at least two
ranked systems have one (ties on the shown digits are all bold). As in the paper's Table I, the
codec reconstruction row is not ranked: it is the ceiling of every codec-based system, not a
competitor (``unranked``, default :data:`UNRANKED`). A published value (``table.paper``) is shown
beside ours, ``3.910 (paper 3.700)``. FAD cells also carry FAD∞ and the bootstrap interval of
the plain value; a cell's warning (e.g. fewer samples than dimensions) is marked ``†``.

:func:`write_report` writes a static ``index.html`` (no server, no network, inline CSS, no
script) with the settings, the table, the figure of :func:`plot_table`, and per dataset and
drum the example clips: an audio player and a mel spectrogram (:func:`write_spectrogram`) for
the mixture, the ground truth and each system. The WAVs are the caller's, named relative to the
report folder; a path that is absolute, leaves the folder or names no file, and a file a
browser cannot play (undecodable, or 64-bit float WAV, which Chromium refuses) stop the report
with :class:`ReportError` naming the example."""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from dose_model.errors import DoseError
from dose_model.evaluate.results import Cell, CellKey, ExampleClip, TableResult
from rmod_dose_common.audio import AudioReadError, read_audio, read_header
from rmod_dose_common.fileio import atomic_write, atomic_write_text

UNRANKED = ("Reconstruction",)
MISSING = "–"
CSV_FIELDS = tuple(
    "dataset system metric drum value n fad_inf ci_low ci_high warning paper".split()
)
SPECTROGRAM_PX = (320, 160)  # width, height of each clip's image
SPECTROGRAM_DB = (-80.0, 0.0)  # colour range, dB re a full-scale sine
MEL_BANDS = 64
TABLE_FIGURE = "table.png"


class ReportError(DoseError, ValueError):
    """The report cannot be written as asked; the message names the cell, example or file."""


class ReportAudioError(AudioReadError, ReportError):
    """A clip of the report cannot be read (``path``, ``reason``)."""


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


def _has_fad_details(cell: Cell | None) -> bool:
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


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_db(audio: np.ndarray, sr: int, bands: int = MEL_BANDS) -> tuple[np.ndarray, int]:
    """Mel power spectrogram in dB of mono ``audio`` ``[samples]`` at ``sr`` Hz: ``[frames,
    bands]`` (HTK mel, 0 Hz to ``sr / 2``; 0 dB = the peak of a full-scale sine), and the hop
    in samples. Window ≈ 46 ms (a power of two), hop an eighth of it, centred frames."""
    n_fft = 1 << max(6, round(math.log2(sr * 0.046)))
    hop = n_fft // 8
    x = np.pad(np.asarray(audio, dtype=np.float64), (n_fft // 2, n_fft // 2))
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = (np.abs(np.fft.rfft(frames * window, axis=1)) * 2 / window.sum()) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    edges = _hz_to_mel(0.0) + np.linspace(0, 1, bands + 2) * _hz_to_mel(sr / 2)
    mel = _hz_to_mel(freqs)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.clip(np.minimum((mel - lo) / (mid - lo), (hi - mel) / (hi - mid)), 0, None)
    for b in np.flatnonzero(weights.sum(axis=1) == 0):  # a band narrower than a bin
        weights[b, np.argmin(np.abs(mel - edges[b + 1]))] = 1.0
    return 10 * np.log10(np.maximum(power @ weights.T, 1e-10)), hop


def write_spectrogram(wav: Path, png: Path) -> Path:
    """A small image (:data:`SPECTROGRAM_PX`) of a sound file's mel spectrogram (channel mean,
    dB re full scale, :data:`SPECTROGRAM_DB`), time in seconds and frequency ticks in Hz."""
    from matplotlib.figure import Figure

    audio, sr = read_audio(wav, ReportAudioError)
    db, hop = mel_db(audio.mean(axis=0), sr)
    w, h = SPECTROGRAM_PX
    fig = Figure(figsize=(w / 100, h / 100), dpi=100)
    ax = fig.add_axes((0.13, 0.16, 0.85, 0.8))
    ax.imshow(
        db.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        interpolation="nearest",
        vmin=SPECTROGRAM_DB[0],
        vmax=SPECTROGRAM_DB[1],
        extent=(0, db.shape[0] * hop / sr, 0, MEL_BANDS),
    )
    top = _hz_to_mel(sr / 2)
    ticks = [(f, lab) for f, lab in ((100, "100"), (1000, "1k"), (10000, "10k")) if f < sr / 2]
    ax.set_yticks([float(_hz_to_mel(f) / top * MEL_BANDS) for f, _ in ticks], [t for _, t in ticks])
    ax.tick_params(labelsize=6, length=2, pad=1)
    ax.set_xlabel("s", fontsize=6, labelpad=0)
    ax.set_ylabel("Hz", fontsize=6, labelpad=0)
    _save_figure(fig, png)
    return png


# ---------------------------------------------------------------------------------------------
# The HTML page

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:110em}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin:1.2em 0 .4em}
table{border-collapse:collapse}
table.t1 th,table.t1 td{padding:.2em .6em;border-bottom:1px solid #ddd;vertical-align:top}
table.t1 thead th{border-bottom:2px solid #444}
table.t1 td.num{text-align:right;white-space:nowrap}
table.t1 tr.first td,table.t1 tr.first th{border-top:2px solid #888}
table.t1 tbody th{vertical-align:middle;max-width:12em;overflow-wrap:anywhere}
.paper{color:#777}.sub{font-size:.8em;color:#555}.warn{color:#b30;cursor:help}
table.settings th{text-align:left;padding:.1em .8em .1em 0;vertical-align:top;font-weight:600}
table.settings td{padding:.1em 0}code{word-break:break-all}
.scroll{overflow-x:auto}
table.ex th,table.ex td{padding:.3em;vertical-align:top;text-align:left}
table.ex figure{margin:0}table.ex img{display:block;width:320px;height:160px}
table.ex audio{width:320px;height:32px}table.ex figcaption{font-size:.8em;color:#555}
img.fig{max-width:100%}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _url(rel: Path) -> str:
    """A relative file path as an attribute-ready relative URL (spaces, ``#``, ``?`` quoted)."""
    return _e(quote(rel.as_posix(), safe="/"))


def _settings_html(value: Any) -> str:
    if isinstance(value, Mapping):
        rows = "".join(
            f"<tr><th>{_e(k)}</th><td>{_settings_html(v)}</td></tr>" for k, v in value.items()
        )
        return f'<table class="settings">{rows}</table>'
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if all(not isinstance(v, Mapping | list | tuple | set | frozenset) for v in items):
            return ", ".join(_settings_html(v) for v in items) or MISSING
        return "<ul>" + "".join(f"<li>{_settings_html(v)}</li>" for v in items) + "</ul>"
    if isinstance(value, str) and len(value) >= 16 and all(c in "0123456789abcdef" for c in value):
        return f"<code>{_e(value)}</code>"  # a hash
    return _e(value)


def _cell_html(table: TableResult, key: CellKey, best: bool) -> str:
    cell, paper = table.cells.get(key), table.paper.get(key)
    text = _e(fmt(cell.value if cell else None))
    if best:
        text = f"<b>{text}</b>"
    tips = []
    if cell is not None:
        tips.append(f"n = {cell.n}")
        if cell.warning:
            text += ' <span class="warn">†</span>'
            tips.append(f"warning: {cell.warning}")
    if paper is not None:
        text += f' <span class="paper">(paper {fmt(paper)})</span>'
    if key[2] != "MSS" and _has_fad_details(cell):
        parts = []
        if cell.fad_inf is not None:
            parts.append(f"FAD∞ {fmt(cell.fad_inf)}")
            tips.append(f"FAD∞ {fmt(cell.fad_inf)}")
        if _interval(cell):
            parts.append(_interval(cell))
            tips.append(f"bootstrap interval {_interval(cell)}")
        if parts:
            text += f'<div class="sub">{"<br>".join(_e(p) for p in parts)}</div>'
    title = f' title="{_e("; ".join(tips))}"' if tips else ""
    return f'<td class="num"{title}>{text}</td>'


def _table_html(table: TableResult, unranked: tuple[str, ...]) -> str:
    head1 = "".join(f'<th colspan="{len(table.drums)}">{_e(m)}</th>' for m in table.metrics)
    head2 = "".join(f"<th>{_e(k)}</th>" for _ in table.metrics for k in table.drums)
    body = []
    for d in table.datasets:
        best = {
            (m, k): best_systems(table, d, m, k, unranked)
            for m in table.metrics
            for k in table.drums
        }
        for i, s in enumerate(table.systems):
            cells = "".join(
                _cell_html(table, (d, s, m, k), s in best[(m, k)])
                for m in table.metrics
                for k in table.drums
            )
            name = f'<th rowspan="{len(table.systems)}">{_e(d)}</th>' if i == 0 else ""
            body.append(
                f'<tr class="{"first" if i == 0 else ""}">{name}<td>{_e(s)}</td>{cells}</tr>'
            )
    note = "Lower is better. Bold: the best of a column within a dataset"
    if unranked:
        note += f" ({_e(', '.join(unranked))} not ranked)"
    note += (
        "; – no value. FAD cells: the plain Fréchet distance, below it FAD∞ (extrapolated to "
        "infinitely many samples) and the bootstrap interval of FAD∞; † a warning "
        "(hover a cell for it and for n)."
    )
    return (
        '<div class="scroll"><table class="t1"><thead>'
        f'<tr><th rowspan="2">Dataset</th><th rowspan="2">System</th>{head1}</tr><tr>{head2}</tr>'
        f'</thead><tbody>{"".join(body)}</tbody></table></div><p class="sub">{note}</p>'
    )


def _resolve_clip(folder: Path, clip: ExampleClip, what: str, rel: Path) -> Path:
    where = f"example {clip.dataset}/{clip.drum}/{clip.row_id}, {what}"
    rel = Path(rel)
    if rel.is_absolute():
        raise ReportError(f"{where}: {rel} must be relative to the report folder {folder}")
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ReportError(f"{where}: {rel} leads out of the report folder {folder}")
    if not path.is_file():
        raise ReportError(f"{where}: {folder / rel} does not exist")
    try:
        subtype = read_header(path, ReportAudioError).subtype
    except ReportAudioError as err:
        raise ReportError(f"{where}: {err}") from None
    if subtype == "DOUBLE":  # Chromium refuses them ("media error 4"); float32 plays
        raise ReportError(f"{where}: {folder / rel} is 64-bit float, which browsers do not play")
    return path


def _clip_html(folder: Path, clip: ExampleClip, what: str, rel: Path, done: set[Path]) -> str:
    wav = _resolve_clip(folder, clip, what, rel)
    img_rel = Path("img") / Path(rel).with_suffix(".png")
    if wav not in done:
        write_spectrogram(wav, folder / img_rel)
        done.add(wav)
    label = _e(f"{what}: {clip.row_id}")
    return (
        f'<td><figure><img src="{_url(img_rel)}" alt="spectrogram, {label}" width="320" '
        f'height="160"><audio controls preload="metadata" src="{_url(Path(rel))}" '
        f'aria-label="{label}"></audio><figcaption>{_e(what)}</figcaption></figure></td>'
    )


def _sections(
    table: TableResult, examples: list[ExampleClip]
) -> list[tuple[str, str, list[ExampleClip]]]:
    order = [(d, k) for d in table.datasets for k in table.drums]
    for ex in examples:
        if (ex.dataset, ex.drum) not in order:
            order.append((ex.dataset, ex.drum))
    groups = [(d, k, [ex for ex in examples if (ex.dataset, ex.drum) == (d, k)]) for d, k in order]
    return [g for g in groups if g[2]]


def _examples_html(folder: Path, table: TableResult, examples: list[ExampleClip]) -> str:
    out, done = [], set()
    last_dataset = None
    for n, (d, k, clips) in enumerate(_sections(table, examples)):
        if d != last_dataset:
            out.append(f"<h2>Examples: {_e(d)}</h2>")
            last_dataset = d
        extra = sorted({s for ex in clips for s in ex.estimates} - set(table.systems))
        systems = [s for s in table.systems if any(s in ex.estimates for ex in clips)] + extra
        head = "".join(f"<th>{_e(s)}</th>" for s in ("Mixture", "Ground truth", *systems))
        rows = []
        for ex in clips:
            cells = [
                _clip_html(folder, ex, "Mixture", ex.mixture, done),
                _clip_html(folder, ex, "Ground truth", ex.truth, done),
            ]
            for s in systems:
                rel = ex.estimates.get(s)
                cells.append(
                    _clip_html(folder, ex, s, rel, done)
                    if rel is not None
                    else f"<td>{MISSING}</td>"
                )
            rows.append(f"<tr><th>{_e(ex.row_id)}</th>{''.join(cells)}</tr>")
        out.append(
            f'<section id="ex-{n}"><h3>{_e(d)}: {_e(k)}</h3><div class="scroll"><table class="ex">'
            f"<thead><tr><th>row</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
        )
    return "\n".join(out)


def write_report(
    folder: Path,
    table: TableResult,
    examples: list[ExampleClip],
    settings: dict,
    unranked: tuple[str, ...] = UNRANKED,
) -> Path:
    """Write ``folder/index.html`` (and ``folder/table.png``, ``folder/img/<wav>.png``) and
    return its path. ``examples`` name WAVs that already exist under ``folder``; ``settings``
    (datasets, split, n, model hashes, embedding models, padding rules, ...) is shown as given,
    nested mappings as nested tables."""
    folder = Path(folder)
    check_table(table)
    folder.mkdir(parents=True, exist_ok=True)
    examples_html = _examples_html(folder, table, examples)  # refuses bad paths before the rest
    plot_table(table, folder / TABLE_FIGURE, unranked)
    title = "DOSE evaluation: Table I"
    nav = " · ".join(
        f'<a href="#ex-{i}">{_e(d)}: {_e(k)}</a>'
        for i, (d, k, _) in enumerate(_sections(table, examples))
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p>Datasets: {_e(", ".join(table.datasets)) or MISSING}</p>
<h2>Table I</h2>
{_table_html(table, unranked)}
<img class="fig" src="{_url(Path(TABLE_FIGURE))}" alt="Table I as bar charts">
<details><summary>Settings</summary>
{_settings_html(settings)}
</details>
<h2>Examples</h2>
<p>Per dataset and drum: the mixture, the ground truth and each system's one-shot; mel
spectrograms in dB re full scale ({SPECTROGRAM_DB[0]:g} to {SPECTROGRAM_DB[1]:g} dB).</p>
<p>{nav or MISSING}</p>
{examples_html}
</body></html>
"""
    index = folder / "index.html"
    atomic_write_text(index, page)
    return index
