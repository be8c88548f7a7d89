"""Fréchet audio distance for one-shots: embedding models from local weight files, the
distance with its bias and spread, and an embedding cache.

- :mod:`dose_model.fad.embedder`: :class:`EmbedderInfo`, the :class:`Embedder` protocol,
  :func:`load_embedder` (``"vggish=PATH"``, ``"clap=PATH"``), :class:`FadError`;
- :mod:`dose_model.fad.vggish`: VGGish from torchvggish's release file, with
  :mod:`~dose_model.fad.logmel` (its front end) and :mod:`~dose_model.fad.resample`
  (resampy's ``kaiser_best`` in numpy);
- :mod:`dose_model.fad.frechet`: :func:`frechet_distance`, :func:`fad` -> :class:`FadResult`
  (FAD, FAD∞, bootstrap interval, rank-deficiency flag);
- :mod:`dose_model.fad.cache`: embeddings per (file content, model, options) on disk;
- :mod:`dose_model.fad.score`: two sets of files (folders or RMOD splits) -> a FAD report
  (what ``dose-fad`` runs).

Importing this package loads numpy only; the models load torch when they are built.
"""

from dose_model.fad.embedder import Embedder, EmbedderInfo, FadError, load_embedder
from dose_model.fad.frechet import FadResult, RankDeficiencyWarning, fad, frechet_distance

__all__ = [
    "Embedder",
    "EmbedderInfo",
    "FadError",
    "FadResult",
    "RankDeficiencyWarning",
    "fad",
    "frechet_distance",
    "load_embedder",
]
