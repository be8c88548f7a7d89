"""Families and sources of a library: how many source sounds each class holds, and where
its sounds came from (the summary that ``rmod-library info`` prints)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rmod import CLASSES
from rmod.library.hashing import family_key

if TYPE_CHECKING:  # annotations only: nothing of the catalog runs here
    from rmod.library.catalog import Library


def family_counts(library: Library) -> dict[str, int]:
    """``{cls: number of families}`` (an entry without a family is its own)."""
    seen: dict[str, set[str]] = {c: set() for c in CLASSES}
    for e in library.entries:
        seen[e.cls].add(family_key(e))
    return {c: len(v) for c, v in seen.items()}


def source_counts(library: Library) -> dict[str, dict[str, int]]:
    """``{source: {cls: entries}}``, sources sorted by name (``""`` = user files)."""
    counts: dict[str, Counter[str]] = {}
    for e in library.entries:
        counts.setdefault(e.source, Counter())[e.cls] += 1
    return {s: {c: counts[s][c] for c in CLASSES if counts[s][c]} for s in sorted(counts)}


def families_span_one_split(library: Library) -> list[str]:
    """Families found in more than one split (empty for a library built by this package)."""
    splits: dict[str, set[str]] = {}
    for e in library.entries:
        splits.setdefault(family_key(e), set()).add(e.split)
    return sorted(k for k, v in splits.items() if len(v) > 1)
