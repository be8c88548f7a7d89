"""Content hashes, entry ids and hash-based splits: how a sound gets its name and its split.

``content_hash`` names decoded audio independently of its file format; ``make_id`` turns it
into a library id; ``split_for_hash`` maps any key (a content hash, ``"family:<name>"``, or
``"midi:" + sha256`` for the Groove variant's MIDI files) to a split, the same on every
machine and every run. The library format (:mod:`rmod.library.catalog`) records these values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rmod import SPLITS

if TYPE_CHECKING:  # annotations only: rmod.library.catalog imports this module
    from rmod.library.catalog import LibraryEntry

DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def content_hash(audio: np.ndarray) -> str:
    """SHA-256 hex digest of decoded audio ``[channels, samples]`` (float32, little endian)."""
    arr = np.ascontiguousarray(audio, dtype="<f4")
    h = hashlib.sha256(arr.tobytes())
    h.update(f"|channels={arr.shape[0]}".encode())
    return h.hexdigest()


def make_id(cls: str, sha256: str) -> str:
    """Stable entry id ``<cls>/<first 16 hex digits of the content hash>``."""
    return f"{cls}/{sha256[:16]}"


def split_key(family: str, sha256: str) -> str:
    """What decides a sound's split: ``"family:<family>"``, or its content hash if none."""
    return f"family:{family}" if family else sha256


def family_key(entry: LibraryEntry) -> str:
    """:func:`split_key` of a library entry."""
    return split_key(entry.family, entry.sha256)


def split_for_hash(sha256: str, fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """Deterministic split of a content hash.

    A number ``u`` in [0, 1) is taken from SHA-256(``"split:" + sha256``) (first 64 bits),
    then ``train`` if ``u < f_train``, ``valid`` if ``u < f_train + f_valid``, else ``test``.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split fractions must be 3 non-negative numbers summing to 1: {fractions}"
        )
    digest = hashlib.sha256(f"split:{sha256}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for name, frac in zip(SPLITS, fractions, strict=True):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]
