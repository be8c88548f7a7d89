"""What an evaluation produces, as plain records: the table (Table I's layout) and example clips.

`dose_model.evaluate.table` fills them; `dose_model.evaluate.report` and the writers of
``table.md`` / ``table.csv`` / ``summary.json`` read them. A cell is keyed by
``(dataset, system, metric, drum)``: dataset names are the user's (``--data NAME=DIR``),
systems are row labels in table order (``Reconstruction``, ``LarsNet``, ``DSP baseline``,
``DOSE``, ...), metrics are ``MSS``, ``FAD_vgg``, ``FAD_clap`` (the ones that were computed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

METRICS = ("MSS", "FAD_vgg", "FAD_clap")
CellKey = tuple[str, str, str, str]  # (dataset, system, metric, drum)


@dataclass(frozen=True)
class Cell:
    """One number of the table and what stands behind it.

    ``value``: mean MSS over the rows, or the plain Fréchet distance (``None``: nothing to
    score). ``n``: rows (MSS) or estimate embeddings (FAD) it is computed from.
    FAD only: ``fad_inf`` (extrapolated to infinitely many samples), ``ci_low``/``ci_high``
    (bootstrap interval of FAD∞), ``warning`` (e.g. fewer samples than
    dimensions: the covariance is rank deficient).
    """

    value: float | None
    n: int
    fad_inf: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    warning: str | None = None


@dataclass(frozen=True)
class TableResult:
    """Table I: ``cells[(dataset, system, metric, drum)]``; ``paper`` the published values in
    the same keys (only where the paper has the dataset and system), or empty."""

    datasets: tuple[str, ...]
    systems: tuple[str, ...]
    metrics: tuple[str, ...]
    drums: tuple[str, ...]
    cells: dict[CellKey, Cell]
    paper: dict[CellKey, float] = field(default_factory=dict)

    def cell(self, dataset: str, system: str, metric: str, drum: str) -> Cell | None:
        return self.cells.get((dataset, system, metric, drum))


@dataclass(frozen=True)
class ExampleClip:
    """One example shown in the report: a row of a dataset, one drum, every system's
    one-shot. Paths are relative to the report folder; ``estimates`` maps a system to its
    WAV (a system that produced nothing for this row is absent)."""

    dataset: str
    drum: str
    row_id: str
    mixture: Path
    truth: Path
    estimates: dict[str, Path]
