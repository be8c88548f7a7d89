"""One split of one dataset scored: every system's one-shot per row and drum, MSS, embeddings.

For every row of the split (``DIR/manifests/<split>.jsonl``) and every drum, each system makes
a one-shot of the drum from the row's 4 s mixture (the reconstruction makes it from the ground
truth), cut to the ground truth's length:

* **Reconstruction**: the ground truth encoded and decoded by the codec: the codec's own
  ceiling, the paper's "Reconstruction" row;
* **LarsNet** (with its checkpoint folder): the drum's LarsNet stem, picked by
  `dose_model.evaluate.baseline.pick_oneshots`;
* **DSP baseline**: harmonic/percussive separation and a band-pass, picked the same way;
* **each model set** (e.g. "DOSE", "DOSE (w/o onset loss)"): the one-shot extracted by
  `Extractor.clips` (the static decode engine; greedy by default; with top-p each row samples
  from its own seeds and the most confident of several candidates is scored), as decoded;
* **Silence**: an all-zero estimate, a floor any system must beat (rows only, not the table).

The ground truth is read as the tokenizer reads it (channel mean, the codec's rate) and cut to
the models' one-shot length (`oneshot_frames`: 2 s at the published sizes). Each estimate is
scored with `mss_distance` against it and, for each embedding model, embedded (`Embedder`:
float32 ``[windows, dim]``) so that `dose_model.evaluate.table` can compute Fréchet distances
between the estimates of a system and the ground truths of the split. Embeddings are cached by
the content of the clip and the embedding model (re-scoring is instant).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dose_model import DRUMS
from dose_model.codec.dac_codec import DacCodec
from dose_model.dataset.audio import RowAudioError, clip, load_mono, mono_at_rate
from dose_model.dataset.manifest import ManifestError, ManifestRow, find_manifests, read_rows
from dose_model.errors import DoseError
from dose_model.evaluate.baseline import baseline_oneshots, larsnet_oneshots
from dose_model.evaluate.metrics import mss_distance
from dose_model.extract.extractor import GREEDY, WINDOW_S, Extractor, Sampling, oneshot_frames
from rmod_dose_common.audio import read_audio

RECONSTRUCTION, LARSNET, DSP, SILENCE = "Reconstruction", "LarsNet", "DSP baseline", "Silence"
PAPER_TARGET_FRAMES = 173
"""One-shot frames scored when no model sets the length (2 s at the published sizes)."""


class EvalError(DoseError, ValueError):
    """The evaluation cannot run as asked; the message names the row, file or option."""


@dataclass
class Systems:
    """What is scored: the codec, the model sets (label -> `Extractor`, all on ``codec``), and
    the baselines. ``drums``: every drum some model set extracts (all three without models)."""

    codec: DacCodec
    models: dict[str, Extractor] = field(default_factory=dict)
    larsnet: Any = None  # dose_model.separate.larsnet.LarsNet
    wiener_alpha: float | None = None
    sampling: Sampling = GREEDY

    @property
    def drums(self) -> tuple[str, ...]:
        have = {d for ex in self.models.values() for d in ex.models}
        return tuple(d for d in DRUMS if d in have) if have else DRUMS

    @property
    def labels(self) -> tuple[str, ...]:
        """Table rows in order (Silence is scored but not a table row)."""
        larsnet = (LARSNET,) if self.larsnet is not None else ()
        return (RECONSTRUCTION, *larsnet, DSP, *self.models)

    def oneshot_samples(self, drum: str) -> int:
        """Ground-truth length of ``drum``: the first model set's one-shot length for it."""
        for ex in self.models.values():
            if drum in ex.models:
                return oneshot_frames(ex.models[drum].config) * self.codec.hop_length
        return PAPER_TARGET_FRAMES * self.codec.hop_length


@dataclass
class SplitScores:
    """What one split gave: ``lines`` (one per row, drum and system: id, drum, system, mss,
    and frames/ended/score for model sets), ``embeddings[name][(system, drum)]`` (a list of
    float32 ``[windows, dim]`` per row; system "truth" for the ground truths), skipped rows
    (``{"id", "path", "reason"}``) and the rows scored."""

    dataset: str
    split: str
    rows: int = 0
    lines: list[dict] = field(default_factory=list)
    embeddings: dict[str, dict[tuple[str, str], list[np.ndarray]]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)


def split_rows(dataset: str | Path, split: str | None, max_rows: int | None) -> tuple[str, list]:
    """(split, rows) of a dataset folder ``DIR`` or one of its manifests: ``split`` defaults
    to "test" for a folder, the file's own split for a manifest file."""
    manifests = find_manifests(dataset)
    if split is None:
        split = next(iter(manifests)) if Path(dataset).is_file() else "test"
    if split not in manifests:
        raise ManifestError(dataset, f"no {split} manifest (found: {sorted(manifests)})")
    return split, read_rows(manifests[split])[:max_rows]


def content_key(audio: np.ndarray, sample_rate: int) -> str:
    """SHA-256 of a clip's rate and float32 samples: names its cached embeddings."""
    h = hashlib.sha256(f"{sample_rate}:{audio.shape}\0".encode())
    h.update(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    return h.hexdigest()


Embed = Callable[[np.ndarray, int], np.ndarray]
"""(mono float32 clip, its rate) -> float32 ``[windows, dim]``; see `dose_model.fad`."""
Keep = Callable[[ManifestRow, str, np.ndarray, np.ndarray, dict[str, np.ndarray]], None]
"""Called with (row, drum, mixture, truth, estimates by system) for every scored row: the
report keeps a few of them."""


def score_split(
    name: str,
    rows: Sequence[ManifestRow],
    split: str,
    systems: Systems,
    embedders: dict[str, Embed] | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: Keep | None = None,
) -> SplitScores:
    """Score every system on ``rows`` (one split of dataset ``name``); see the module text."""
    embedders = embedders or {}
    scores = SplitScores(name, split, embeddings={e: {} for e in embedders})
    first = next(iter(systems.models.values()), None)
    group = max(1, (first.batch_size if first else 8) // systems.sampling.candidates)
    if progress is not None:
        progress(0, len(rows))
    for start in range(0, len(rows), group):
        _score_batch(list(rows[start : start + group]), systems, embedders, scores, keep)
        if progress is not None:
            progress(min(start + group, len(rows)), len(rows))
    return scores


def _reconstruct(codec: DacCodec, audio: np.ndarray) -> np.ndarray:
    """Encode then decode ``audio`` [samples]; the result trimmed to its length."""
    codes = codec.encode(torch.from_numpy(audio)[None, None])
    return codec.decode(codes).cpu().numpy()[0, 0, : audio.shape[0]].astype(np.float32)


def _read_row(row: ManifestRow, systems: Systems) -> tuple[np.ndarray, Any, dict[str, np.ndarray]]:
    """(mono mixture at the codec's rate, stereo 44.1 kHz mixture for LarsNet or None,
    ground truth per drum). Raises `RowAudioError` naming the unreadable file."""
    sr = systems.codec.sample_rate
    window = int(round(WINDOW_S * sr))
    truth = {d: load_mono(row.oneshots[d], sr, systems.oneshot_samples(d)) for d in systems.drums}
    if systems.larsnet is None:
        return load_mono(row.mixture, sr, window), None, truth
    from dose_model.separate.songs import as_stereo

    # LarsNet wants the stereo file: decode it once and make the mono mixture from the same
    # samples, as load_mono would (mono_at_rate is its conversion, fed in the reader's blocks)
    data, rate = read_audio(row.mixture, RowAudioError)
    mixture = clip(mono_at_rate(data.T, rate, sr), 0, window)
    try:
        stereo = as_stereo(data, rate, str(row.mixture))[:, :window]
    except DoseError as err:
        raise RowAudioError(str(row.mixture), str(err).split(": ", 1)[-1]) from None
    return mixture, stereo, truth


def _estimates(
    batch: list[ManifestRow],
    mixtures: list[np.ndarray],
    stereos: list[Any],
    truths: list[dict[str, np.ndarray]],
    systems: Systems,
) -> list[dict[str, dict[str, tuple[np.ndarray, dict]]]]:
    """Per row: system -> drum -> (estimate cut to the truth's length, extra row fields)."""
    codec, sr, drums = systems.codec, systems.codec.sample_rate, systems.drums
    lengths = {d: systems.oneshot_samples(d) for d in drums}
    keys = [row.id for row in batch]  # top-p: each row's own seeds, whatever the batch
    extracted = {
        label: ex.clips(np.stack(mixtures), keys, systems.sampling)
        for label, ex in systems.models.items()
    }
    out = []
    for i, (mixture, stereo, truth) in enumerate(zip(mixtures, stereos, truths, strict=True)):
        per: dict[str, dict[str, tuple[np.ndarray, dict]]] = {
            RECONSTRUCTION: {d: (_reconstruct(codec, truth[d]), {}) for d in drums},
            SILENCE: {d: (np.zeros_like(truth[d]), {}) for d in drums},
        }
        if systems.larsnet is not None:
            separated = larsnet_oneshots(
                systems.larsnet, stereo, sr, drums, lengths, systems.wiener_alpha
            )
            per[LARSNET] = {d: (separated[d], {}) for d in drums}
        per[DSP] = {d: (a, {}) for d, a in baseline_oneshots(mixture, sr, drums, lengths).items()}
        for label, ranked in extracted.items():
            per[label] = {}
            for drum, shots in ranked[i].items():
                best = shots[0]
                extra = {"frames": best.frames, "ended": int(best.ended), "score": best.score}
                per[label][drum] = (clip(best.audio, 0, truth[drum].shape[0]), extra)
        out.append(per)
    return out


def _score_batch(
    batch: list[ManifestRow],
    systems: Systems,
    embedders: dict[str, Embed],
    scores: SplitScores,
    keep: Keep | None,
) -> None:
    sr = systems.codec.sample_rate
    read, mixtures, stereos, truths = [], [], [], []
    for row in batch:
        try:
            mixture, stereo, truth = _read_row(row, systems)
        except RowAudioError as err:
            scores.skipped.append({"id": row.id, "path": str(err.path), "reason": err.reason})
            continue
        read.append(row)
        mixtures.append(mixture)
        stereos.append(stereo)
        truths.append(truth)
    if not read:
        return
    for row, mixture, truth, per in zip(
        read, mixtures, truths, _estimates(read, mixtures, stereos, truths, systems), strict=True
    ):
        scores.rows += 1
        for drum, ref in truth.items():
            for name, embed in embedders.items():
                scores.embeddings[name].setdefault(("truth", drum), []).append(embed(ref, sr))
            for system, by_drum in per.items():
                if drum not in by_drum:
                    continue
                estimate, extra = by_drum[drum]
                line: dict[str, Any] = {"id": row.id, "drum": drum, "system": system}
                line["mss"] = mss_distance(estimate, ref, sr)
                scores.lines.append({**line, **extra})
                if system == SILENCE:
                    continue
                for name, embed in embedders.items():
                    bucket = scores.embeddings[name].setdefault((system, drum), [])
                    bucket.append(embed(estimate, sr))
            if keep is not None:
                keep(row, drum, mixture, ref, {s: e[drum][0] for s, e in per.items() if drum in e})
