"""Checks ``rmod-build`` makes before any work: numbers the dataset format can hold, and a
library that can serve every split to be built.

Each raises ``ValueError`` naming the option or recipe field and the limit, before the
build plans shards in memory or writes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmod import DRUMS, SPLITS
from rmod.build.manifest import MAX_PER_SPLIT
from rmod.errors import InputError

if TYPE_CHECKING:
    from rmod.library.catalog import Library

#: Shards per split that shard folder names can hold (6 digits).
MAX_SHARDS_PER_SPLIT = 10**6


def check_numbers(n: int, seed: int, jobs: int | None) -> None:
    """``--n`` (1 .. :data:`rmod.build.manifest.MAX_PER_SPLIT`), ``--seed`` (>= 0), ``--jobs`` (>= 1)."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if n > MAX_PER_SPLIT:
        raise InputError(
            f"--n {n} is too large: at most {MAX_PER_SPLIT} examples per split "
            "(example ids have 8 digits)"
        )
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {seed}")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")


def check_sizes(counts: dict[str, int], shard_size: int) -> None:
    """Refuse (``ValueError`` naming the limit) sizes the dataset format cannot name:
    more than :data:`MAX_PER_SPLIT` examples or :data:`MAX_SHARDS_PER_SPLIT` shards in a
    split. Checked before anything is planned in memory."""
    for split in SPLITS:
        n = counts.get(split, 0)
        if n > MAX_PER_SPLIT:
            source = "--n" if split == "train" else "the recipe's splits.* for valid/test"
            raise InputError(
                f"{split} would hold {n} examples ({source}); at most {MAX_PER_SPLIT} per "
                "split (example ids have 8 digits)"
            )
        if -(-n // shard_size) > MAX_SHARDS_PER_SPLIT:
            raise InputError(
                f"{split} would need {-(-n // shard_size)} shards of --shard-size "
                f"{shard_size}; at most {MAX_SHARDS_PER_SPLIT} per split (shard folders have "
                "6 digits): choose a larger --shard-size"
            )


def check_library_covers(library: Library, counts: dict[str, int]) -> None:
    """Refuse (``ValueError``) a library that lacks a drum class in a split to be built.

    Every example draws two one-shots of each drum class from its own split; instruments
    without loops in a split are left out of its mixtures, so they need nothing. Checked
    before the first shard: a gap found later would waste every shard before it.
    """
    gaps = [
        f"{cls} in {split}"
        for split in SPLITS
        if counts.get(split, 0) > 0
        for cls in DRUMS
        if not library.ids(cls, split)
    ]
    if gaps:
        raise InputError(
            f"the library {library.path} has no one-shots of {', '.join(gaps)}; every split "
            "needs each drum class: add samples (rmod-library index) or use another library"
        )
