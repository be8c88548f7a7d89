"""FAD between two sets of audio files: list them, embed each (through the cache), compare.

A set is named by a source string:

- ``DIR``: every ``.wav`` and ``.flac`` file under the folder, recursively (case-insensitive
  suffix, symbolic links to files included, sorted by relative path);
- ``rmod:DIR:SPLIT:DRUM``: the ``DRUM`` one-shots (kick, snare, hihat) of an RMOD dataset
  split, read through its manifest (``DIR/manifests/SPLIT.jsonl[.gz]``), in manifest order.

Each file is read whole as float32 ``[channels, samples]`` at its own rate and handed to the
embedder, which resamples and pads by its own rule. Every window of every file enters the
distance (pooled rows). ``save_dir`` receives ``save_dir/ref/<relative path>.npy`` and
``save_dir/eval/<relative path>.npy`` (float32 ``[windows, dim]``), the relative path being the
file's path inside its folder (for ``rmod:``, inside the dataset folder).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dose_model.dataset.members import MemberError, TarMember
from dose_model.fad.cache import EmbeddingCache, atomic_save_npy
from dose_model.fad.embedder import Embedder, EmbedderInfo, FadError
from dose_model.fad.frechet import FadResult, fad
from rmod_dose_common.audio import AudioReadError
from rmod_dose_common.audio import read_audio as read_bounded
from rmod_dose_common.fileio import sha256_file

AUDIO_SUFFIXES = (".wav", ".flac")
RMOD_PREFIX = "rmod:"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AudioItem:
    """One input file: ``rel`` (its POSIX path inside its source, for saved embeddings) and
    ``path`` (where to read it)."""

    rel: str
    path: Path | TarMember  # a member of an RMOD --layout tar build's shard


def list_audio(source: str) -> list[AudioItem]:
    """The files of a source string (see the module docstring), at least one; FadError
    naming the source otherwise."""
    if source.startswith(RMOD_PREFIX):
        items = _rmod_items(source)
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FadError(f"{source}: no such folder (expected a folder or rmod:DIR:SPLIT:DRUM)")
        items = []
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(AUDIO_SUFFIXES):
                    path = Path(root) / name
                    items.append(AudioItem(path.relative_to(folder).as_posix(), path))
        items.sort(key=lambda item: item.rel)
    if not items:
        raise FadError(f"{source}: no .wav or .flac files")
    return items


def _rmod_items(source: str) -> list[AudioItem]:
    from dose_model import DRUMS
    from dose_model.dataset.manifest import SPLITS, find_manifests, read_rows

    parts = source[len(RMOD_PREFIX) :].rsplit(":", 2)
    if len(parts) != 3 or parts[1] not in SPLITS or parts[2] not in DRUMS:
        raise FadError(
            f"{source}: expected rmod:DIR:SPLIT:DRUM with SPLIT one of {', '.join(SPLITS)} "
            f"and DRUM one of {', '.join(DRUMS)}"
        )
    folder, split, drum = parts
    manifests = find_manifests(folder)
    if split not in manifests:
        raise FadError(f"{source}: the dataset has no {split} manifest")
    root = Path(folder).resolve()
    rows = read_rows(manifests[split])
    return [
        AudioItem(
            shot.relative_to(root).as_posix() if isinstance(shot, Path) else str(shot), shot
        )  # a tar build's member: "{shard}#{member}"
        for shot in (row.oneshots[drum] for row in rows)
    ]


class FadAudioError(AudioReadError, FadError):
    """An audio file of a FAD set cannot be used (``path``, ``reason``)."""


def read_audio(path: Path | TarMember) -> tuple[np.ndarray, int]:
    """float32 ``[channels, samples]`` and the rate of a whole audio file (or a tar member of an
    RMOD tar build), through the bounded reader (`rmod_dose_common.audio`); `FadAudioError`
    naming the file when it is missing, refused, undecodable, empty or holds non-finite
    samples (a member: also when its shard or bytes cannot be trusted)."""
    return read_bounded(path, FadAudioError)


def embed_items(
    items: list[AudioItem],
    embedder: Embedder,
    cache: EmbeddingCache | None = None,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """float32 ``[windows, dim]`` per item, in order (from the cache when it has them)."""
    out = []
    for done, item in enumerate(items, start=1):

        def compute(item: AudioItem = item) -> np.ndarray:
            audio, rate = read_audio(item.path)
            return embedder.embed(audio, rate)

        if cache is None:
            out.append(np.asarray(compute(), dtype=np.float32))
        else:
            if not item.path.is_file():
                raise FadError(f"{item.path}: no such audio file")
            if isinstance(item.path, TarMember):  # its index holds its SHA-256
                try:
                    key = item.path.sha256()
                except MemberError as exc:
                    raise FadError(str(exc)) from None
            else:
                key = sha256_file(item.path)
            out.append(cache.get_or_compute(key, compute))
        if progress is not None:
            progress(done, len(items))
    return out


def save_embeddings(folder: Path, items: list[AudioItem], embeddings: list[np.ndarray]) -> None:
    """``folder/<rel>.npy`` for each item (float32 ``[windows, dim]``), written atomically."""
    base = folder.resolve()
    for item, rows in zip(items, embeddings, strict=True):
        target = (base / f"{item.rel}.npy").resolve()
        if not target.is_relative_to(base):  # a rel is always inside its source; be sure
            raise FadError(f"{item.path}: relative path {item.rel!r} leaves {folder}")
        atomic_save_npy(target, rows)


@dataclass(frozen=True)
class FadReport:
    """The outcome of :func:`score`: the distances, what produced them, and the inputs."""

    result: FadResult
    embedder: EmbedderInfo
    ref: str
    eval: str
    ref_files: int
    eval_files: int
    cache_hits: int
    cache_misses: int
    elapsed_s: float

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``result`` and ``embedder`` as dicts)."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {**fields, "result": self.result.to_dict(), "embedder": self.embedder.to_dict()}

    def lines(self) -> list[str]:
        """The human-readable summary, one line per item."""
        r, info = self.result, self.embedder
        interval = (
            f"{r.ci_level:.0%} interval {r.ci_low:.4f} .. {r.ci_high:.4f} "
            f"({r.bootstrap} bootstrap resamples, seed {r.seed})"
            if r.ci_low is not None
            else "no interval (--bootstrap 0)"
        )
        return [
            f"model      {info.name}, {info.dim}-d, weights sha256 {info.weights_sha256[:16]}",
            f"pad rule   {info.pad_rule}",
            f"reference  {self.ref}: {r.n_ref} windows from {self.ref_files} files",
            f"evaluated  {self.eval}: {r.n_eval} windows from {self.eval_files} files",
            f"FAD        {r.fad:.4f}",
            f"FAD-inf    {r.fad_inf:.4f}  {interval}",
        ]


def score(
    ref: str,
    evaluated: str,
    embedder: Embedder,
    *,
    cache_dir: str | os.PathLike | None = None,
    save_dir: str | os.PathLike | None = None,
    bootstrap: int = 100,
    seed: int = 0,
    progress: Progress | None = None,
) -> FadReport:
    """FAD of the ``evaluated`` source against the ``ref`` source (sources as in the module
    docstring). ``progress(done, total)`` counts files over both sets. Warns with
    :class:`~dose_model.fad.frechet.RankDeficiencyWarning` when a set has no more windows
    than dimensions."""
    start = time.perf_counter()
    ref_items, eval_items = list_audio(ref), list_audio(evaluated)
    cache = None if cache_dir is None else EmbeddingCache(cache_dir, embedder.info)
    total = len(ref_items) + len(eval_items)

    def shifted(offset: int) -> Progress | None:
        return None if progress is None else (lambda done, _: progress(offset + done, total))

    ref_rows = embed_items(ref_items, embedder, cache, shifted(0))
    eval_rows = embed_items(eval_items, embedder, cache, shifted(len(ref_items)))
    if save_dir is not None:
        save_embeddings(Path(save_dir) / "ref", ref_items, ref_rows)
        save_embeddings(Path(save_dir) / "eval", eval_items, eval_rows)
    result = fad(
        np.concatenate(ref_rows), np.concatenate(eval_rows), bootstrap=bootstrap, seed=seed
    )
    return FadReport(
        result=result,
        embedder=embedder.info,
        ref=ref,
        eval=evaluated,
        ref_files=len(ref_items),
        eval_files=len(eval_items),
        cache_hits=0 if cache is None else cache.hits,
        cache_misses=0 if cache is None else cache.misses,
        elapsed_s=time.perf_counter() - start,
    )
