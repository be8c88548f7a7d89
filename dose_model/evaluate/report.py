"""The HTML report of an evaluation: ``index.html`` with the table, the figure and clips.

:func:`write_report` writes a static ``index.html`` (no server, no network, inline CSS, no
script) with the table (the display rules of :mod:`dose_model.evaluate.tables`), the figure of
:func:`~dose_model.evaluate.tables.plot_table`, the settings, and per dataset and drum the
example clips: an audio player and a mel spectrogram (:func:`write_spectrogram`) for the
mixture, the ground truth and each system. The WAVs are the caller's, named relative to the
report folder; a path that is absolute, leaves the folder or names no file, and a file a
browser cannot play (undecodable, or 64-bit float WAV, which Chromium refuses) stop the report
with :class:`ReportError` naming the example."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from dose_model.evaluate.results import CellKey, ExampleClip, TableResult
from dose_model.evaluate.tables import (
    MISSING,
    TABLE_FIGURE,
    UNRANKED,
    ReportError,
    _has_fad_details,
    _interval,
    _save_figure,
    best_systems,
    check_table,
    fmt,
    plot_table,
)
from rmod_dose_common.audio import AudioReadError, read_audio, read_header
from rmod_dose_common.fileio import atomic_write_text

SPECTROGRAM_PX = (320, 160)  # width, height of each clip's image
SPECTROGRAM_DB = (-80.0, 0.0)  # colour range, dB re a full-scale sine
MEL_BANDS = 64


class ReportAudioError(AudioReadError, ReportError):
    """A clip of the report cannot be read (``path``, ``reason``)."""


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
        interval = _interval(cell)
        if interval:
            parts.append(interval)
            tips.append(f"bootstrap interval {interval}")
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
    out: list[str] = []
    done: set[Path] = set()
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
