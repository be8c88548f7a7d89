"""Small RMOD recipes for fast tests (importable from any test module)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from rmod.recipe.spec import load_recipe


def write_tiny_recipe(
    folder: Path, base: str = "rmod-paper", sample_rate: int | None = None
) -> str:
    """Write a shipped recipe shortened for tests: 1 s mixtures, 0.5 s targets and a
    480-point grid (still 2 MIDI ticks per grid point). With ``sample_rate`` (e.g. the small
    library's 22.05 kHz, so nothing is resampled) the high shelves stay below its Nyquist
    frequency. Returns the YAML path."""
    data = load_recipe(base).to_dict()
    data["name"] = f"{base}-tiny-test"
    data["audio"].update(mixture_seconds=1.0, target_seconds=0.5)
    data["drums"]["grid_points"] = 480
    data["instruments"]["segment_seconds"] = {"choice": [1.0, 0.5]}
    if sample_rate is not None:
        data["audio"]["sample_rate"] = sample_rate
        for eq in (data["mixing"]["eq"], data["master"]["eq"]):
            eq["high_shelf"]["freq_hz"] = {"loguniform": [4000.0, 10000.0]}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{base}-tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def build_tiny(
    folder: Path, library: Path, base: str, n: int, shard_size: int, sample_rate: int | None = None
) -> Path:
    """Build ``n`` training examples (and the splits' minimum) of :func:`write_tiny_recipe`'s
    ``base`` recipe with ``library`` into ``folder/ds``, one worker; returns the dataset."""
    from rmod.build.run import BuildOptions, build

    recipe = write_tiny_recipe(folder, base, sample_rate=sample_rate)
    out = Path(folder) / "ds"
    options = BuildOptions(
        n=n, out=out, recipe=recipe, library=str(library), jobs=1, shard_size=shard_size,
        progress=False,
    )  # fmt: skip
    assert build(options).ok
    return out


@contextlib.contextmanager
def unprivileged(uid: int = 65534) -> Iterator[None]:
    """Run the block with another effective user id when the tests run as root (root reads
    any file, so permission checks would pass); a plain block otherwise."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
