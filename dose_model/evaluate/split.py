"""Evaluation on an RMOD split: MSS of extracted one-shots against the ground truth.

For every row of the split (``DIR/manifests/<split>.jsonl``) and every drum with a model:

* **model**: the one-shot extracted from the row's 4 s mixture (`Extractor.clips`: the static
  decode engine in the chosen precision, greedy by default; with top-p each row samples from
  its own seeds, see `element_seed`, and with several candidates the most confident one is
  scored), against the row's ground-truth one-shot, as decoded (no trim, fade or peak
  normalization: the score is the model's own);
* **baseline**: the separation-based baseline without learned weights (`dose_model.evaluate.baseline`:
  harmonic/percussive separation and a band-pass, then the most isolated loud hit);
* **dac**: the ground truth encoded and decoded by the codec, against the ground truth: the
  codec's own ceiling, the paper's "DAC reconstruction" row (Table I);
* **silence**: an all-zero estimate against the ground truth, a floor any model must beat.

The ground truth is read as the tokenizer reads it (channel mean, the codec's rate) and cut to
the model's one-shot length (`oneshot_frames`: 2 s at the published sizes), the length the
model was trained to produce; `mss_distance` zero-pads whichever signal is shorter.

Written under OUT: ``rows.csv`` (one line per row and drum), ``summary.json`` (per drum: rows
scored, mean and median of each MSS column, rows skipped, settings), and with ``save_audio``
the extracted one-shots as ``audio/<id>.<drum>.wav`` (a row id that would put its file outside
``audio/``, absolute or with ``..``, stops the run before any work with `EvalError`). FAD needs an embedding model (VGGish,
CLAP) that this project does not ship; `dose_model.evaluate.metrics.frechet_distance` computes it from
embeddings made elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dose_model.codec.dac_codec import DacCodec
from dose_model.dataset.audio import RowAudioError, clip, load_mono
from dose_model.dataset.manifest import ManifestError, find_manifests, read_rows
from dose_model.errors import DoseError
from dose_model.evaluate.baseline import baseline_oneshots
from dose_model.evaluate.metrics import mss_distance
from dose_model.extract.extractor import GREEDY, WINDOW_S, Extractor, Sampling, oneshot_frames
from dose_model.extract.shaping import wav_bytes
from rmod_dose_common.fileio import atomic_write_bytes, atomic_write_text

SCORES = ("mss_model", "mss_baseline", "mss_dac", "mss_silence")
ROW_FIELDS = ("id", "drum", "frames", "ended", "score", *SCORES)


class EvalError(DoseError, ValueError):
    """The evaluation cannot run as asked; the message names the row or file."""


def audio_path(out: Path, row_id: str, drum: str) -> Path:
    """``out/audio/<row_id>.<drum>.wav``; `EvalError` naming the row unless it lies inside
    ``out/audio`` (row ids come from the manifest: untrusted)."""
    folder = (Path(out) / "audio").resolve()
    path = (folder / f"{row_id}.{drum}.wav").resolve()
    if not path.is_relative_to(folder):
        raise EvalError(
            f"row {row_id!r}: its audio file would lie outside {folder}; "
            "rename the row or leave out --save-audio"
        )
    return path


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
    sampling: Sampling = GREEDY

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
    extractor: Extractor,
    out: str | Path,
    split: str | None = None,
    max_rows: int | None = None,
    save_audio: bool = False,
    progress: Callable[[int, int], None] | None = None,
    sampling: Sampling = GREEDY,
) -> EvalSummary:
    """Score the extractor's models on one split of an RMOD dataset; write results under ``out``.

    Args:
        dataset: the RMOD folder ``DIR`` (or one of its manifests).
        extractor: codec, models (drum -> model) and decoders; ``extractor.batch_size`` rows
            x candidates are generated together.
        out: results folder (created).
        split: which manifest to read (default: "test" for a dataset folder, the file's own
            split for a manifest file).
        max_rows: score only the first N rows (file order).
        save_audio: also write the extracted one-shots (checked first: `audio_path`).
        progress: called with (rows done, rows total) after each batch.
        sampling: token choice and candidates per row (the best by confidence is scored).

    Raises:
        ManifestError: no such split, or an invalid manifest.
        EvalError: with ``save_audio``, a row id that would write outside ``out/audio``.
    """
    start = time.perf_counter()
    manifests = find_manifests(dataset)
    if split is None:
        split = next(iter(manifests)) if Path(dataset).is_file() else "test"
    if split not in manifests:
        raise ManifestError(dataset, f"no {split} manifest (found: {sorted(manifests)})")
    rows = read_rows(manifests[split])[:max_rows]
    out = Path(out)
    models = extractor.models
    if save_audio:
        for row in rows:
            for drum in models:
                audio_path(out, row.id, drum)
    out.mkdir(parents=True, exist_ok=True)
    group = max(1, extractor.batch_size // sampling.candidates)
    lines: list[dict] = []
    skipped: list[dict] = []
    if progress is not None:
        progress(0, len(rows))
    for first in range(0, len(rows), group):
        batch = rows[first : first + group]
        lines += _score_rows(batch, extractor, sampling, out if save_audio else None, skipped)
        if progress is not None:
            progress(min(first + group, len(rows)), len(rows))
    summary = _summarize(split, models, lines, skipped, time.perf_counter() - start)
    summary.sampling = sampling
    _write_results(out, lines, {"dataset": str(dataset), "split": split}, summary, extractor)
    return summary


def _write_results(
    out: Path, lines: list[dict], head: dict, summary: EvalSummary, extractor: Extractor
) -> None:
    """``out/rows.csv`` (one line per row and drum) and ``out/summary.json``, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    for line in lines:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in line.items()})
    atomic_write_text(out / "rows.csv", buf.getvalue())
    record = {
        **head,
        "rows": summary.rows,
        "scores": summary.scores,
        "skipped": summary.skipped,
        "sampling": asdict(summary.sampling),
        "precision": extractor.precision,
        "batch_size": extractor.batch_size,
        "codec_sha256": extractor.codec.sha256,
        "elapsed_s": round(summary.elapsed_s, 3),
    }
    atomic_write_text(out / "summary.json", json.dumps(record, indent=2) + "\n")


def _score_rows(
    rows: list,
    extractor: Extractor,
    sampling: Sampling,
    audio_out: Path | None,
    skipped: list[dict],
) -> list[dict]:
    """Score one batch of manifest rows: one line per (row, drum); unreadable rows go to
    ``skipped``; with ``audio_out`` the scored one-shots are written there."""
    codec, sr = extractor.codec, extractor.codec.sample_rate
    mix_samples = int(round(WINDOW_S * sr))
    shot_samples = {
        d: oneshot_frames(m.config) * codec.hop_length for d, m in extractor.models.items()
    }
    batch, mixtures, truths = [], [], []
    for row in rows:
        try:
            mixture = load_mono(row.mixture, sr, mix_samples)
            truth = {d: load_mono(row.oneshots[d], sr, n) for d, n in shot_samples.items()}
        except RowAudioError as err:
            skipped.append({"id": row.id, "path": err.path, "reason": err.reason})
            continue
        batch.append(row)
        mixtures.append(mixture)
        truths.append(truth)
    if not batch:
        return []
    keys = [row.id for row in batch]  # top-p: each row's own seeds, whatever the batch
    ranked = extractor.clips(np.stack(mixtures), keys, sampling)
    lines = []
    for row, mixture, truth, extracted in zip(batch, mixtures, truths, ranked, strict=True):
        base = baseline_oneshots(mixture, sr, list(extractor.models), shot_samples)
        for drum, shots in extracted.items():
            shot, ref = shots[0], truth[drum]
            estimate = clip(shot.audio, 0, ref.shape[0])
            lines.append(
                {
                    "id": row.id,
                    "drum": drum,
                    "frames": shot.frames,
                    "ended": int(shot.ended),
                    "score": shot.score,
                    "mss_model": mss_distance(estimate, ref, sr),
                    "mss_baseline": mss_distance(base[drum], ref, sr),
                    "mss_dac": mss_distance(_reconstruct(codec, ref), ref, sr),
                    "mss_silence": mss_distance(np.zeros_like(ref), ref, sr),
                }
            )
            if audio_out is not None and shot.frames:
                atomic_write_bytes(audio_path(audio_out, row.id, drum), wav_bytes(shot.audio, sr))
    return lines


def _summarize(
    split: str,
    models: dict,
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
