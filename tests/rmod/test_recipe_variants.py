"""The shipped variants differ from the paper recipe only where they say they do."""

from __future__ import annotations

from rmod import DRUMS
from rmod.recipe.spec import load_recipe


def test_drums_only_equals_the_paper_recipe_without_instruments():
    paper = load_recipe("rmod-paper").to_dict()
    drums = load_recipe("rmod-drums-only").to_dict()
    assert drums["instruments"]["tracks"] == {}
    assert set(drums["mixing"]["tracks"]) == set(DRUMS)
    for cls in DRUMS:
        assert drums["mixing"]["tracks"][cls] == paper["mixing"]["tracks"][cls]
    for d in (paper, drums):
        for key in ("name", "description"):
            d.pop(key)
        d["instruments"].pop("tracks")
        d["mixing"].pop("tracks")
    assert drums == paper
