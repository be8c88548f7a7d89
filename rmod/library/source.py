"""What the engine needs of a sample library, as :class:`typing.Protocol` s.

Drawing an example (:func:`rmod.example.draw.draw_example`) reads a :class:`LibraryIndex`:
the library's fingerprint, the ids of a class in a split and an entry's record (a loop's
duration), never audio. Rendering reads a :class:`LibrarySource`, which decodes audio too,
through a :class:`rmod.example.sample_store.SampleStore` (itself a :class:`LibraryIndex`).
:class:`rmod.library.catalog.Library` is both; a test double needs only these methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from rmod.library.catalog import LibraryEntry


@runtime_checkable
class LibraryIndex(Protocol):
    """A library's ids and entries, without audio (what drawing reads)."""

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the library's content (what an example's parameters record)."""
        ...

    def ids(self, cls: str, split: str) -> tuple[str, ...]:
        """The entry ids of class ``cls`` (``kick``, ``bass``, ...) in ``split``, in a
        fixed order (draws index into it)."""
        ...

    def entry(self, entry_id: str) -> LibraryEntry:
        """The manifest record of ``entry_id`` (``KeyError`` for an unknown id)."""
        ...


@runtime_checkable
class LibrarySource(LibraryIndex, Protocol):
    """A :class:`LibraryIndex` that also decodes its audio (what rendering reads)."""

    def load_audio(self, entry_id: str, sample_rate: int = 44100) -> np.ndarray:
        """The entry's audio, float32 ``[channels, samples]`` at ``sample_rate`` Hz."""
        ...
