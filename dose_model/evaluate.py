"""Evaluation on an RMOD split: MSS of extracted one-shots against the ground truth.

For every row of the split (``DIR/manifests/<split>.jsonl``) and every drum with a model:

* **model**: the one-shot extracted from the row's 4 s mixture (`extract_clips`, greedy by
  default; with top-p each row samples from its own seed, see `element_seed`), against the
  row's ground-truth one-shot;
* **baseline**: the separation-based baseline without learned weights (`dose_model.baseline`:
  harmonic/percussive separation and a band-pass, then the most isolated loud hit);
* **dac**: the ground truth encoded and decoded by the codec, against the ground truth: the
  codec's own ceiling, the paper's "DAC reconstruction" row (Table I);
* **silence**: an all-zero estimate against the ground truth, a floor any model must beat.

The ground truth is read as the tokenizer reads it (channel mean, the codec's rate) and cut to
the model's target length (``max_target_len - 10`` frames: 2 s at the published sizes), the
length the model was trained to produce; `mss_distance` zero-pads whichever signal is shorter.

Written under OUT: ``rows.csv`` (one line per row and drum), ``summary.json`` (per drum: rows
scored, mean and median of each MSS column, rows skipped, settings), and with ``save_audio``
the extracted one-shots as ``audio/<id>.<drum>.wav``. FAD needs an embedding model (VGGish,
CLAP) that this project does not ship; `dose_model.metrics.frechet_distance` computes it from
embeddings made elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dose_model.baseline import baseline_oneshots
from dose_model.codec import DacCodec
from dose_model.extract import WINDOW_S, extract_clips, wav_bytes
from dose_model.fileio import atomic_write_bytes, atomic_write_text
from dose_model.manifest import ManifestError, find_manifests, read_manifest
from dose_model.metrics import mss_distance
from dose_model.model import DoseTransformer
from dose_model.tokenize import RowAudioError, clip, load_mono

SCORES = ("mss_model", "mss_baseline", "mss_dac", "mss_silence")
ROW_FIELDS = ("id", "drum", "frames", "ended", *SCORES)


@dataclass
class EvalSummary:
    """Per drum: ``scores[drum][column] = {"mean", "median"}`` (empty when no row was scored)
    and ``rows[drum]`` scored;
    ``skipped`` lists ``{"id", "path", "reason"}`` of rows whose audio could not be read."""

    split: str
    rows: dict[str, int]
    scores: dict[str, dict[str, dict[str, float]]]
    skipped: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0

    def table(self) -> str:
        """A plain-text table: one line per drum, the mean of each MSS column."""
        widths = (12, 15, 10, 13)
        head = ("MSS model", "MSS baseline", "MSS DAC", "MSS silence")
        lines = [
            f"{'drum':<7}{'rows':>6}"
            + "".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True))
        ]
        for drum, n in self.rows.items():
            s = self.scores[drum]
            cells = [f"{s[c]['mean']:.3f}" if s else "-" for c in SCORES]
            lines.append(
                f"{drum:<7}{n:>6}"
                + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
            )
        return "\n".join(lines)


def _reconstruct(codec: DacCodec, audio: np.ndarray) -> np.ndarray:
    """Encode then decode ``audio`` [samples]; the result trimmed to its length."""
    codes = codec.encode(torch.from_numpy(audio)[None, None])
    return codec.decode(codes).cpu().numpy()[0, 0, : audio.shape[0]].astype(np.float32)


def evaluate_split(
    dataset: str | Path,
    codec: DacCodec,
    models: dict[str, DoseTransformer],
    out: str | Path,
    split: str | None = None,
    max_rows: int | None = None,
    batch_size: int = 8,
    save_audio: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **sampling,
) -> EvalSummary:
    """Score ``models`` on one split of an RMOD dataset and write the results under ``out``.

    Args:
        dataset: the RMOD folder ``DIR`` (or one of its manifests).
        codec: the DAC codec of the models' tokens.
        models: drum -> model (eval mode, on ``codec.device``).
        out: results folder (created).
        split: which manifest to read (default: "test" for a dataset folder, the file's own
            split for a manifest file).
        max_rows: score only the first N rows (file order).
        batch_size: mixtures generated together.
        save_audio: also write the extracted one-shots.
        progress: called with (rows done, rows total) after each batch.
        **sampling: strategy, top_p, temperature, seed for `extract_clips`.

    Raises:
        ManifestError: no such split, or an invalid manifest.
    """
    start = time.perf_counter()
    manifests = find_manifests(dataset)
    if split is None:
        split = next(iter(manifests)) if Path(dataset).is_file() else "test"
    if split not in manifests:
        raise ManifestError(dataset, f"no {split} manifest (found: {sorted(manifests)})")
    rows = read_manifest(manifests[split])[:max_rows]
    sr = codec.sample_rate
    mix_samples = int(round(WINDOW_S * sr))
    shot_samples = {d: (m.config.max_target_len - 10) * codec.hop_length for d, m in models.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[dict] = []
    skipped: list[dict] = []
    if progress is not None:
        progress(0, len(rows))
    for first in range(0, len(rows), batch_size):
        batch, mixtures, truths = [], [], []
        for row in rows[first : first + batch_size]:
            try:
                mixture = load_mono(row.mixture, sr, mix_samples)
                truth = {d: load_mono(row.oneshots[d], sr, n) for d, n in shot_samples.items()}
            except RowAudioError as err:
                skipped.append({"id": row.id, "path": err.path, "reason": err.reason})
                continue
            batch.append(row)
            mixtures.append(mixture)
            truths.append(truth)
        if batch:
            keys = [row.id for row in batch]  # top-p: each row's own seed, whatever the batch
            shots = extract_clips(np.stack(mixtures), codec, models, keys, **sampling)
            for row, mixture, truth, extracted in zip(batch, mixtures, truths, shots, strict=True):
                base = baseline_oneshots(mixture, sr, list(models), shot_samples)
                for drum, shot in extracted.items():
                    ref = truth[drum]
                    estimate = clip(shot.audio, 0, ref.shape[0])
                    lines.append(
                        {
                            "id": row.id,
                            "drum": drum,
                            "frames": shot.frames,
                            "ended": int(shot.ended),
                            "mss_model": mss_distance(estimate, ref, sr),
                            "mss_baseline": mss_distance(base[drum], ref, sr),
                            "mss_dac": mss_distance(_reconstruct(codec, ref), ref, sr),
                            "mss_silence": mss_distance(np.zeros_like(ref), ref, sr),
                        }
                    )
                    if save_audio and shot.frames:
                        path = out / "audio" / f"{row.id}.{drum}.wav"
                        path.parent.mkdir(exist_ok=True)
                        atomic_write_bytes(path, wav_bytes(shot.audio, sr))
        if progress is not None:
            progress(min(first + batch_size, len(rows)), len(rows))
    summary = _summarize(split, models, lines, skipped, time.perf_counter() - start)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for line in lines:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in line.items()})
    atomic_write_text(out / "rows.csv", buf.getvalue())
    record = {
        "dataset": str(dataset),
        "split": split,
        "rows": summary.rows,
        "scores": summary.scores,
        "skipped": skipped,
        "sampling": sampling,
        "batch_size": batch_size,
        "codec_sha256": codec.sha256,
        "elapsed_s": round(summary.elapsed_s, 3),
    }
    atomic_write_text(out / "summary.json", json.dumps(record, indent=2) + "\n")
    return summary


def _summarize(
    split: str,
    models: dict[str, DoseTransformer],
    lines: list[dict],
    skipped: list[dict],
    elapsed: float,
) -> EvalSummary:
    rows: dict[str, int] = {}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for drum in models:
        mine = [line for line in lines if line["drum"] == drum]
        rows[drum] = len(mine)
        scores[drum] = {
            col: {
                "mean": statistics.fmean(x[col] for x in mine),
                "median": statistics.median(x[col] for x in mine),
            }
            for col in SCORES
            if mine
        }
    return EvalSummary(split, rows, scores, skipped, elapsed)
