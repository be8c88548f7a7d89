"""Table I from one command: every dataset, every system, MSS and FAD per drum, one report.

`evaluate_table` scores each dataset's split (`dose_model.evaluate.split.score_split`), then
computes per (dataset, system, drum) the mean MSS over the rows and, for each embedding model
given (`dose_model.fad`: VGGish -> ``FAD_vgg``, CLAP -> ``FAD_clap``), the Fréchet distance
between the embeddings of the system's one-shots and those of the split's ground truths, with
FAD∞ and a bootstrap interval (`dose_model.fad.frechet.fad`). It writes under ``out``:

* ``table.md``: Table I's layout (rows: dataset, then system; columns MSS / FAD_vgg /
  FAD_clap x kick / snare / hihat), with the paper's values beside ours when asked;
* ``table.csv``: one line per cell (value, n, FAD∞, interval, warning, paper value);
* ``summary.json``: the settings (datasets, split, rows, models' and embedding models' hashes,
  pad rules, picker settings, sampling), every cell, skipped rows;
* ``<dataset>/rows.csv``: one line per row, drum and system (MSS; frames, ended and
  confidence for model sets);
* ``table.png``: the table as bars;
* ``report/index.html``: the table and, per dataset and drum, a few examples to listen to
  (mixture, ground truth, every system) with spectrograms (`dose_model.evaluate.report`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dose_model.dataset.manifest import ManifestRow
from dose_model.evaluate.baseline import PICKER_SETTINGS
from dose_model.evaluate.paper import paper_dataset, paper_values
from dose_model.evaluate.results import Cell, ExampleClip, TableResult
from dose_model.evaluate.split import (
    DSP,
    LARSNET,
    RECONSTRUCTION,
    EvalError,
    SplitScores,
    Systems,
    content_key,
    score_split,
    split_rows,
)
from dose_model.extract.shaping import wav_bytes
from rmod_dose_common.fileio import atomic_write_bytes, atomic_write_text

#: Embedding model name -> its column in Table I.
FAD_METRICS = {"vggish": "FAD_vgg", "clap": "FAD_clap"}
ROW_FIELDS = ("id", "drum", "system", "mss", "frames", "ended", "score")


@dataclass(frozen=True)
class TableOptions:
    """How a Table I evaluation runs (filled once from `dose-eval`'s arguments).

    ``datasets``: (name, dataset folder or manifest) pairs, in table order. ``fad``: embedding
    models as ``vggish=WEIGHTS`` / ``clap=WEIGHTS``. ``clap_pad``/``clap_int16``: CLAP's rule
    for clips under 10 s (`dose_model.fad.clap`). ``embedding_cache``: folder of cached
    embeddings (None: none). ``bootstrap``/``seed``: FAD's interval. ``paper``: put the
    published values beside ours. ``examples``: rows per dataset shown in the report (0: no
    report). ``labels``: how our systems are called in the paper (for ``paper``).
    """

    datasets: tuple[tuple[str, str], ...]
    out: Path
    split: str | None = None
    max_rows: int | None = None
    fad: tuple[str, ...] = ()
    clap_pad: str = "repeat"
    clap_int16: bool = False
    embedding_cache: Path | None = None
    bootstrap: int = 100
    seed: int = 0
    paper: bool = False
    examples: int = 3
    labels: dict[str, str] = field(default_factory=dict)


def slug(name: str) -> str:
    """A file-name-safe form of a dataset or system name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "unnamed"


def check_options(options: TableOptions) -> None:
    """Raise `EvalError` naming the option before any work: no dataset, two datasets with one
    name (or one folder name), an unknown embedding model or a repeated one."""
    if not options.datasets:
        raise EvalError("no dataset to score: give --data NAME=DIR (or --manifest DIR)")
    names = [name for name, _ in options.datasets]
    slugs = [slug(name) for name in names]
    if len(set(slugs)) != len(slugs):
        raise EvalError(f"dataset names must differ (as folder names too): {names}")
    seen = set()
    for spec in options.fad:
        model = spec.split("=", 1)[0]
        if model not in FAD_METRICS:
            raise EvalError(f"--fad {spec!r}: expected vggish=WEIGHTS or clap=WEIGHTS")
        if model in seen:
            raise EvalError(f"--fad {model} given twice")
        seen.add(model)


def load_embedders(options: TableOptions) -> tuple[dict[str, Callable], dict[str, dict]]:
    """(name -> embed function with the cache, name -> the model's info as plain JSON)."""
    from dose_model.fad.cache import EmbeddingCache
    from dose_model.fad.embedder import load_embedder

    embedders, infos = {}, {}
    for spec in options.fad:
        name = spec.split("=", 1)[0]
        extra = {"pad": options.clap_pad, "int16": options.clap_int16} if name == "clap" else {}
        model = load_embedder(spec, **extra)
        cache = None
        if options.embedding_cache is not None:
            cache = EmbeddingCache(Path(options.embedding_cache) / name, model.info)
        embedders[name] = _cached(model, cache)
        infos[name] = model.info.to_dict()
    return embedders, infos


def _cached(model: Any, cache: Any) -> Callable[[np.ndarray, int], np.ndarray]:
    def embed(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        def compute() -> np.ndarray:
            return model.embed(audio[None], sample_rate)

        if cache is None:
            return compute()
        return cache.get_or_compute(content_key(audio, sample_rate), compute)

    return embed


class ExampleKeeper:
    """Writes the report's audio for the first ``per_dataset`` rows of each dataset:
    ``report/audio/<dataset>/<row>.mixture.wav``, ``<row>.<drum>.truth.wav`` and
    ``<row>.<drum>.<system>.wav`` (16-bit WAV), and records them as `ExampleClip`s."""

    def __init__(self, report: Path, per_dataset: int, sample_rate: int):
        self.report, self.per_dataset, self.sample_rate = report, per_dataset, sample_rate
        self.clips: list[ExampleClip] = []
        self._rows: dict[str, list[str]] = {}

    def for_dataset(self, name: str) -> Callable | None:
        if self.per_dataset <= 0:
            return None
        folder = self.report / "audio" / slug(name)
        rows = self._rows.setdefault(name, [])

        def keep(
            row: ManifestRow,
            drum: str,
            mixture: np.ndarray,
            truth: np.ndarray,
            estimates: dict[str, np.ndarray],
        ) -> None:
            if row.id not in rows:
                if len(rows) >= self.per_dataset:
                    return
                rows.append(row.id)
                self._write(folder / f"{slug(row.id)}.mixture.wav", mixture)
            base = f"{slug(row.id)}.{drum}"
            truth_path = self._write(folder / f"{base}.truth.wav", truth)
            paths = {
                system: self._write(folder / f"{base}.{slug(system)}.wav", audio)
                for system, audio in estimates.items()
            }
            mix_path = (folder / f"{slug(row.id)}.mixture.wav").relative_to(self.report)
            self.clips.append(ExampleClip(name, drum, row.id, mix_path, truth_path, paths))

        return keep

    def _write(self, path: Path, audio: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, wav_bytes(audio, self.sample_rate))
        return path.relative_to(self.report)


def fad_cells(scores: SplitScores, systems: tuple[str, ...], options: TableOptions) -> dict:
    """(dataset, system, metric, drum) -> `Cell` of every FAD of one dataset."""
    from dose_model.fad.frechet import fad

    cells = {}
    for name, table in scores.embeddings.items():
        metric = FAD_METRICS[name]
        for drum in {d for (s, d) in table if s == "truth"}:
            ref = np.concatenate(table[("truth", drum)])
            for system in systems:
                if (system, drum) not in table:
                    continue
                est = np.concatenate(table[(system, drum)])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = fad(ref, est, bootstrap=options.bootstrap, seed=options.seed)
                warning = (
                    f"{min(r.n_ref, r.n_eval)} embeddings for {r.dim} dimensions: the covariance "
                    "is rank deficient and FAD is mostly bias; read FAD-inf"
                    if r.rank_deficient
                    else None
                )
                cells[(scores.dataset, system, metric, drum)] = Cell(
                    r.fad, r.n_eval, r.fad_inf, r.ci_low, r.ci_high, warning
                )
    return cells


def mss_cells(scores: SplitScores, systems: tuple[str, ...]) -> dict:
    """(dataset, system, "MSS", drum) -> `Cell`: the mean MSS over the rows."""
    cells = {}
    for system in systems:
        for drum in dict.fromkeys(line["drum"] for line in scores.lines):
            values = [x["mss"] for x in scores.lines if x["system"] == system and x["drum"] == drum]
            if values:
                cells[(scores.dataset, system, "MSS", drum)] = Cell(
                    float(np.mean(values)), len(values)
                )
    return cells


def evaluate_table(
    options: TableOptions,
    systems: Systems,
    settings: dict | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[TableResult, dict]:
    """Score every dataset of ``options`` with ``systems``; write everything under
    ``options.out`` (see the module text). Returns (the table, the summary record)."""
    start = time.perf_counter()
    check_options(options)
    out = Path(options.out)
    planned = [split_rows(path, options.split, options.max_rows) for _, path in options.datasets]
    embedders, infos = load_embedders(options)
    out.mkdir(parents=True, exist_ok=True)
    keeper = ExampleKeeper(out / "report", options.examples, systems.codec.sample_rate)
    labels = systems.labels
    cells: dict = {}
    all_scores = []
    for (name, _), (split, rows) in zip(options.datasets, planned, strict=True):
        step = (lambda done, total, n=name: progress(n, done, total)) if progress else None
        scores = score_split(name, rows, split, systems, embedders, step, keeper.for_dataset(name))
        all_scores.append(scores)
        _write_rows(out / slug(name) / "rows.csv", scores.lines)
        cells.update(mss_cells(scores, labels))
        cells.update(fad_cells(scores, labels, options))
    metrics = ("MSS", *(FAD_METRICS[spec.split("=", 1)[0]] for spec in options.fad))
    paper = {}
    if options.paper:
        paper_names = {RECONSTRUCTION: "Reconstruction", LARSNET: "LarsNet", DSP: None}
        paper_names.update({label: options.labels.get(label) for label in systems.models})
        datasets = {name: paper_dataset(name) for name, _ in options.datasets}
        paper = paper_values(datasets, paper_names)
    table = TableResult(
        tuple(name for name, _ in options.datasets), labels, metrics, systems.drums, cells, paper
    )
    summary = _summary(options, systems, table, all_scores, infos, settings or {}, start)
    _write_outputs(out, table, keeper.clips, summary)
    return table, summary


def _write_rows(path: Path, lines: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for line in lines:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in line.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


def _summary(
    options: TableOptions,
    systems: Systems,
    table: TableResult,
    all_scores: list[SplitScores],
    infos: dict[str, dict],
    settings: dict,
    start: float,
) -> dict:
    first = next(iter(systems.models.values()), None)
    return {
        "datasets": [
            {
                "name": s.dataset,
                "path": str(path),
                "split": s.split,
                "rows": s.rows,
                "skipped": s.skipped,
            }
            for s, (_, path) in zip(all_scores, options.datasets, strict=True)
        ],
        "systems": list(table.systems),
        "metrics": list(table.metrics),
        "drums": list(table.drums),
        "codec_sha256": systems.codec.sha256,
        "embedding_models": infos,
        "fad": {"bootstrap": options.bootstrap, "seed": options.seed, "interval": "of FAD-inf"},
        "picker": PICKER_SETTINGS,
        "larsnet_wiener_alpha": systems.wiener_alpha,
        "sampling": asdict(systems.sampling),
        "precision": first.precision if first else None,
        **settings,
        "cells": [
            {
                "dataset": d,
                "system": s,
                "metric": m,
                "drum": k,
                **asdict(c),
                "paper": table.paper.get((d, s, m, k)),
            }
            for (d, s, m, k), c in table.cells.items()
        ],  # fmt: skip
        "elapsed_s": round(time.perf_counter() - start, 3),
    }


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (strict JSON has neither; FAD-inf
    of a set too small to fit is NaN)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _write_outputs(out: Path, table: TableResult, clips: list[ExampleClip], summary: dict) -> None:
    from dose_model.evaluate import report, tables

    atomic_write_text(out / "table.md", tables.write_table_markdown(table))
    atomic_write_text(out / "table.csv", tables.write_table_csv(table))
    text = json.dumps(_finite(summary), indent=2, allow_nan=False)
    atomic_write_text(out / "summary.json", text + "\n")
    tables.plot_table(table, out / "table.png")
    if clips:
        settings = {k: v for k, v in summary.items() if k != "cells"}
        report.write_report(out / "report", table, clips, settings)
