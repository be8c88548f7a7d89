"""Embeddings of audio files, cached on disk so that scoring again is instant.

One ``.npy`` file (float32 ``[windows, dim]``) per (file content, model): its name is the
SHA-256 of a key that lists, explicitly, everything the embedding depends on:

- ``audio_sha256``: the SHA-256 of the audio file's bytes (not its path or time stamp);
- the embedder's :class:`~dose_model.fad.embedder.EmbedderInfo`: model name, sample rate,
  width, the weight file's SHA-256, the pad rule and every option;
- :data:`CACHE_FORMAT`, bumped when the code computes other numbers for the same key.

Entries are written atomically (:mod:`rmod_dose_common.fileio`: a temporary file in the same
folder, fsynced, renamed over the name, the folder fsynced), so a reader or an interrupted run
never sees half of one. An entry that
cannot be read back, or has another width, is treated as missing and written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dose_model.fad.embedder import EmbedderInfo
from rmod_dose_common.fileio import atomic_writer

CACHE_FORMAT = 1


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` at ``path`` (parents created), atomically and durably
    (:func:`rmod_dose_common.fileio.atomic_writer`). On any error ``path`` is untouched."""
    with atomic_writer(path) as fh:
        np.save(fh, array, allow_pickle=False)


def cache_key(audio_sha256: str, info: EmbedderInfo) -> str:
    """SHA-256 hex digest naming the cache entry of one file's embeddings by one embedder."""
    fields = {"format": CACHE_FORMAT, "audio_sha256": audio_sha256, "embedder": info.to_dict()}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """A folder of cached embeddings for one embedder (``info``)."""

    def __init__(self, folder: str | os.PathLike, info: EmbedderInfo):
        self.folder = Path(folder)
        self.info = info
        self.hits = 0
        self.misses = 0

    def path(self, audio_sha256: str) -> Path:
        """Where the entry of a file with this content hash lives."""
        key = cache_key(audio_sha256, self.info)
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, audio_sha256: str) -> np.ndarray | None:
        """The cached float32 ``[windows, dim]``, or None when absent or unusable."""
        try:
            array = np.load(self.path(audio_sha256), allow_pickle=False)
        except (OSError, ValueError):
            return None
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != self.info.dim:
            return None
        return array.astype(np.float32, copy=False)

    def save(self, audio_sha256: str, embeddings: np.ndarray) -> None:
        """Store float32 ``[windows, dim]`` embeddings of a file with this content hash."""
        atomic_save_npy(self.path(audio_sha256), np.asarray(embeddings, dtype=np.float32))

    def get_or_compute(self, audio_sha256: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached embeddings, or ``compute()``'s, stored before they are returned."""
        found = self.load(audio_sha256)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        embeddings = np.asarray(compute(), dtype=np.float32)
        self.save(audio_sha256, embeddings)
        return embeddings
