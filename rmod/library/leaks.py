"""Near-duplicate one-shots: the leak report across splits and the distinct-sound count.

The measure (used by ``rmod-library info --leaks`` and ``benchmarks/data_quality.py``):

1. a one-shot is mixed to mono, resampled to :data:`RATE` Hz and cut to the
   ``window_s`` seconds (default 0.25 s) from its onset, the first sample whose magnitude
   reaches -20 dB re its peak; shorter sounds are zero-padded; the window is scaled to
   unit energy;
2. the similarity of two one-shots is the largest magnitude of their normalized
   cross-correlation over lags of at most ``max_lag_ms`` (default 5 ms) either way, so a
   copy shifted by a few samples, or with its polarity inverted, still counts as a copy;
3. a valid/test one-shot *leaks* when some train one-shot of the same class has a
   similarity above ``threshold`` (default 0.95);
4. the distinct sounds of a class are counted greedily in id order: a one-shot is new when
   its similarity to every sound kept so far is at most 0.99.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rmod import DRUMS
from rmod.audio import read_audio, resample

if TYPE_CHECKING:
    from rmod.library.catalog import Library

RATE = 44100
LEAK_THRESHOLD = 0.95
DISTINCT_THRESHOLD = 0.99
CHUNK = 128  # stored windows correlated at once


def onset_window(audio: np.ndarray, sr: int, window_s: float = 0.25) -> np.ndarray:
    """Unit-energy mono window of ``window_s`` s from the onset, at :data:`RATE` Hz.

    ``audio``: ``[channels, samples]`` or ``[samples]`` at ``sr`` Hz. A silent input gives
    zeros.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if sr != RATE:
        x = resample(x[None, :], sr, RATE)[0].astype(np.float64)
    n = int(round(window_s * RATE))
    out = np.zeros(n)
    a = np.abs(x)
    if a.size == 0 or a.max() == 0:
        return out
    onset = int(np.argmax(a >= 0.1 * a.max()))
    seg = x[onset : onset + n]
    out[: seg.size] = seg
    energy = np.sqrt(np.sum(out**2))
    return out / energy if energy > 0 else out


class _Spectra:
    """Windows kept as FFTs, for correlation against many others at once."""

    def __init__(self, windows: np.ndarray, max_lag: int):
        self.n = windows.shape[1]
        self.nfft = 1 << int(np.ceil(np.log2(self.n + max_lag + 1)))
        self.max_lag = max_lag
        self.spec = np.fft.rfft(windows, self.nfft, axis=1)

    def add(self, window: np.ndarray) -> None:
        """Store one more window."""
        self.spec = np.vstack([self.spec, np.fft.rfft(window, self.nfft)[None, :]])

    def similarity(self, window: np.ndarray) -> np.ndarray:
        """Max |normalized cross-correlation| of ``window`` with every stored window."""
        q = np.conj(np.fft.rfft(window, self.nfft))
        out = np.zeros(self.spec.shape[0])
        for k in range(0, self.spec.shape[0], CHUNK):  # bounded memory for large libraries
            xc = np.fft.irfft(self.spec[k : k + CHUNK] * q[None, :], self.nfft, axis=1)
            lags = np.concatenate([xc[:, : self.max_lag + 1], xc[:, self.nfft - self.max_lag :]], 1)
            out[k : k + CHUNK] = np.max(np.abs(lags), axis=1)
        return out


def _windows(paths: Sequence[str], window_s: float) -> np.ndarray:
    rows = []
    for p in paths:
        audio, sr = read_audio(p)
        rows.append(onset_window(audio, sr, window_s))
    n = int(round(window_s * RATE))
    return np.array(rows).reshape(len(rows), n)


@dataclass(frozen=True)
class ClassLeaks:
    """Leak figures of one class: valid/test one-shots, how many leak, the worst pairs
    (eval id, train id, similarity), most similar first (at most 5)."""

    cls: str
    n_eval: int
    n_leaking: int
    worst: tuple[tuple[str, str, float], ...]

    @property
    def percent(self) -> float:
        """Share of valid/test one-shots that leak, in percent (0 when there are none)."""
        return 100.0 * self.n_leaking / self.n_eval if self.n_eval else 0.0


def leak_report(
    library: Library,
    classes: Sequence[str] = DRUMS,
    *,
    threshold: float = LEAK_THRESHOLD,
    window_s: float = 0.25,
    max_lag_ms: float = 5.0,
) -> list[ClassLeaks]:
    """Near-duplicates across splits of an :class:`rmod.library.catalog.Library` (module docstring)."""
    max_lag = int(round(max_lag_ms / 1000 * RATE))
    out = []
    for cls in classes:
        train_ids = library.ids(cls, "train")
        eval_ids = library.ids(cls, "valid") + library.ids(cls, "test")
        train = _Spectra(_windows([library.entry(i).path for i in train_ids], window_s), max_lag)
        hits = []
        for entry_id in eval_ids:
            w = onset_window(*read_audio(library.entry(entry_id).path), window_s)
            sim = train.similarity(w)
            if sim.size and sim.max() > threshold:
                k = int(np.argmax(sim))
                hits.append((entry_id, train_ids[k], round(float(sim[k]), 4)))
        hits.sort(key=lambda h: (-h[2], h[0]))
        out.append(ClassLeaks(cls, len(eval_ids), len(hits), tuple(hits[:5])))
    return out


def near_duplicate_groups(
    windows: np.ndarray, *, threshold: float = LEAK_THRESHOLD, max_lag_ms: float = 5.0
) -> list[int]:
    """Group index of each sound, from their :func:`onset_window` rows ``[sounds, samples]``:
    sounds whose similarity exceeds ``threshold`` (directly or through a chain of such
    sounds) share a group, numbered by first appearance."""
    max_lag = int(round(max_lag_ms / 1000 * RATE))
    paths = range(windows.shape[0])
    spectra = _Spectra(windows, max_lag)
    parent = list(range(len(paths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, w in enumerate(windows):
        for j in np.flatnonzero(spectra.similarity(w)[:i] > threshold):
            a, b = sorted((find(i), find(int(j))))
            parent[b] = a
    roots = [find(i) for i in range(len(paths))]
    numbers: dict[int, int] = {}
    return [numbers.setdefault(r, len(numbers)) for r in roots]


def count_distinct(
    paths: Sequence[str],
    *,
    threshold: float = DISTINCT_THRESHOLD,
    window_s: float = 0.25,
    max_lag_ms: float = 5.0,
) -> int:
    """Distinct sounds among the files ``paths`` (greedy, in the given order; see above)."""
    max_lag = int(round(max_lag_ms / 1000 * RATE))
    windows = _windows(paths, window_s)
    kept: list[int] = []
    spectra = _Spectra(windows[:0], max_lag)
    for i, w in enumerate(windows):
        if not kept or spectra.similarity(w).max() <= threshold:
            kept.append(i)
            spectra.add(w)
    return len(kept)
