"""16-bit PCM, the one way both packages quantize audio and read it back.

``rmod`` writes every audio file through :func:`to_pcm16`; ``dose_model``'s token sink
quantizes rendered audio with the same function and reads it back with
:func:`pcm16_as_float`, which gives the samples libsndfile gives for a 16-bit file read as
float32. So tokens encoded straight from a render equal tokens encoded from the files a
build would have written (``rmod-build --tokens``, docs/scale-tokens.md).
"""

from __future__ import annotations

import numpy as np

PCM16_SCALE = 32767.0
"""Full scale of :func:`to_pcm16`: 1.0 becomes 32767."""
PCM16_READ_SCALE = np.float32(1.0 / 32768.0)
"""What libsndfile multiplies a 16-bit sample by when it reads a file as float (exact: a
power of two)."""


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Quantize float ``[channels, samples]`` to int16 ``[samples, channels]``.

    Scale is 32767 with round-half-to-even; values beyond [-1, 1] saturate. This is
    the one place where float audio becomes 16-bit, so equal floats give equal bytes.
    """
    scaled = np.round(np.asarray(audio, dtype=np.float64) * PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16).T.copy()


def pcm16_as_float(pcm: np.ndarray) -> np.ndarray:
    """int16 ``[samples, channels]`` as float32 in [-1, 1): what ``soundfile.read(path,
    dtype="float32", always_2d=True)`` returns for a 16-bit WAV or FLAC file holding those
    samples (libsndfile scales by 1/32768)."""
    return np.asarray(pcm, dtype=np.int16).astype(np.float32) * PCM16_READ_SCALE
