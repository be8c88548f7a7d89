"""What the engine needs of a library (rmod.library.source): drawing reads only a
LibraryIndex (fingerprint, ids, entries), rendering only a LibrarySource (those and
load_audio); a Library is both, a SampleStore an index."""

from __future__ import annotations

import numpy as np
import pytest

from rmod.example.draw import draw_example
from rmod.example.render import render_example
from rmod.example.sample_store import SampleStore
from rmod.library.catalog import LibraryEntry
from rmod.library.source import LibraryIndex, LibrarySource
from rmod.recipe.spec import load_recipe


class _Index:
    """Only what a LibraryIndex promises, read from a real library."""

    def __init__(self, library) -> None:
        self._library = library
        self.fingerprint = library.fingerprint

    def ids(self, cls: str, split: str) -> tuple[str, ...]:
        return self._library.ids(cls, split)

    def entry(self, entry_id: str) -> LibraryEntry:
        return self._library.entry(entry_id)


class _Source(_Index):
    """Only what a LibrarySource promises."""

    def load_audio(self, entry_id: str, sample_rate: int = 44100) -> np.ndarray:
        return self._library.load_audio(entry_id, sample_rate)


def test_a_library_is_a_source_and_a_store_an_index(small_library):
    store = SampleStore(small_library, 44100)
    assert isinstance(small_library, LibrarySource) and isinstance(store, LibraryIndex)
    assert not isinstance(store, LibrarySource)  # it reads audio through its library
    assert isinstance(_Source(small_library), LibrarySource)
    assert not isinstance(_Index(small_library), LibrarySource)


@pytest.mark.parametrize("split,index", [("train", 3), ("test", 1)])
def test_drawing_and_rendering_need_nothing_more(small_library, split, index):
    recipe = load_recipe(None)
    params = draw_example(recipe, _Index(small_library), 7, split, index)
    assert params == draw_example(recipe, small_library, 7, split, index)
    ours = render_example(params, recipe, _Source(small_library))
    theirs = render_example(params, recipe, small_library)
    assert np.array_equal(ours.mixture, theirs.mixture)
    assert all(np.array_equal(ours.oneshots[d], theirs.oneshots[d]) for d in theirs.oneshots)
