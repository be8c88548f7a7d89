"""Listen-by-proxy figures of rendered examples: the high-band share and drum audibility.

The **high-band share** of an example is the non-drum share of its energy above
:data:`HIGH_BAND_HZ`: the instrument tracks' energy above 5 kHz over that of the
instrument and drum tracks, each after its chain and before the master bus. The shared
delay/reverb returns carry both drums and instruments, so they count on neither side.
An example without any instrument has a share of 0. Issue 12's target is a median of at
least :data:`HIGH_BAND_TARGET` over the paper recipe's examples: real songs put
cymbals, sibilance, distorted guitars and synths above 5 kHz, so extracting hi-hats must not
reduce to splitting off the high band.

**Audibility** (:func:`audibility_failures`) checks one example against the level
ranges and the onset check that ``tests/rmod/test_example.py`` asserts
(:data:`rmod.inspect.overview.DRUM_CONTRIBUTION_RANGE_DB`, :data:`rmod.inspect.overview.ONSET_SNR_MIN_DB`).

:func:`render_shares` re-renders examples from their parameters (deterministic: the same
params, recipe and library give the same audio), which is how ``rmod-stats`` measures a
build that keeps no stems.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np

from rmod import DRUMS, INSTRUMENTS
from rmod.build.manifest import iter_manifest, manifest_path
from rmod.errors import RmodError
from rmod.inspect.overview import (
    DRUM_CONTRIBUTION_RANGE_DB,
    ONSET_SNR_MIN_DB,
    contribution_db,
    onset_snr_db,
)
from rmod.recipe.spec import Recipe

if TYPE_CHECKING:  # types only: rmod.example loads pedalboard, needed only to re-render
    from rmod.build.manifest import BuildInfo
    from rmod.example.draw import ExampleParams
    from rmod.example.render import Rendered
    from rmod.example.sample_store import SampleStore
    from rmod.library.source import LibrarySource

HIGH_BAND_HZ = 5000.0
HIGH_BAND_TARGET = 0.10


def high_band_energy(x: np.ndarray, sr: int, cutoff_hz: float = HIGH_BAND_HZ) -> float:
    """Energy of ``x`` (``[channels, samples]`` or ``[samples]``) above ``cutoff_hz``,
    summed over channels (FFT of the whole signal)."""
    x = np.asarray(x, dtype=np.float64)
    spec = np.fft.rfft(x, axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sr)
    return float(np.sum(np.abs(spec[..., freqs >= cutoff_hz]) ** 2))


def high_band_fraction(x: np.ndarray, sr: int, cutoff_hz: float = HIGH_BAND_HZ) -> float:
    """Share of ``x``'s energy above ``cutoff_hz`` (0 for silence)."""
    total = high_band_energy(x, sr, 0.0)  # the same (rfft) scale as the high band
    return high_band_energy(x, sr, cutoff_hz) / total if total > 0 else 0.0


def high_band_share(stems: dict[str, np.ndarray], sr: int) -> float:
    """Non-drum share of the energy above :data:`HIGH_BAND_HZ` of one example's track
    stems (module docstring); 0 when no instrument plays or nothing is above it."""
    other = [v for k, v in stems.items() if k in INSTRUMENTS]
    drums = [v for k, v in stems.items() if k in DRUMS]
    if not other:
        return 0.0
    e_other = high_band_energy(_sum_tracks(other), sr)
    e_drum = high_band_energy(_sum_tracks(drums), sr) if drums else 0.0
    total = e_other + e_drum
    return e_other / total if total > 0 else 0.0


def _sum_tracks(tracks: list[np.ndarray]) -> np.ndarray:
    """The float64 sum of ``[channels, n]`` tracks, ``[channels, n]`` (a sum over axis 0 of
    arrays is an array; numpy's stubs allow a scalar)."""
    return cast(np.ndarray, np.sum(tracks, axis=0, dtype=np.float64))


def audibility_failures(rendered: Rendered) -> list[str]:
    """What makes one rendered example fail the drum-audibility checks (empty: none)."""
    lo, hi = DRUM_CONTRIBUTION_RANGE_DB["class"]
    d_lo, d_hi = DRUM_CONTRIBUTION_RANGE_DB["drums"]
    levels = contribution_db(rendered.stems)
    out = [
        f"{cls} at {levels[cls]:.1f} dB"
        for cls in DRUMS
        if cls in levels and not lo <= levels[cls] <= hi
    ]
    if "drums" in levels and not d_lo <= levels["drums"] <= d_hi:
        out.append(f"drums at {levels['drums']:.1f} dB")
    snr = onset_snr_db(rendered.stems, rendered.onsets, rendered.sample_rate)
    out += [f"{cls} onsets at {v:.1f} dB" for cls, v in snr.items() if v < ONSET_SNR_MIN_DB]
    return out


def render_shares(
    params: Iterable[ExampleParams], recipe: Recipe, library: LibrarySource | SampleStore
) -> list[float]:
    """High-band share of each example (``ExampleParams``), re-rendered with ``recipe`` and
    ``library`` (the ones the params were drawn with)."""
    from rmod.example.render import render_example

    shares = []
    for p in params:
        out = render_example(p, recipe, library)
        shares.append(high_band_share(out.stems, out.sample_rate))
    return shares


def build_shares(
    root: str | os.PathLike,
    splits: Iterable[str],
    info: BuildInfo,
    library: LibrarySource | None,
    n: int,
) -> list[float] | str:
    """High-band shares of a build's first ``n`` examples of ``splits`` (manifest order),
    re-rendered from their rows with the build's recipe (``info``: its
    :class:`rmod.build.manifest.BuildInfo`) and ``library``; or why none were measured."""
    if n <= 0:
        return "not asked for"
    if library is None:
        return "the build's library cannot be read as it was built"
    from rmod.example.draw import ExampleParams  # here: rmod.example.draw loads pedalboard

    params: list[ExampleParams] = []
    try:
        recipe = Recipe.from_dict(info.recipe, source=f"{root}/build.json: recipe")
        for split in splits:
            rows = itertools.islice(iter_manifest(manifest_path(root, split)), n - len(params))
            for row in rows:
                where = f"{manifest_path(root, split)}: row {row.id}: params"
                params.append(ExampleParams.from_dict(row.params, where=where))
        return render_shares(params, recipe, library)
    except (RmodError, OSError) as exc:
        return f"cannot re-render the examples ({exc})"


def share_summary(shares: Iterable[float]) -> dict[str, float | int]:
    """Count, median, 10th and 90th percentile of high-band shares, and the target."""
    values = np.asarray(list(shares), dtype=np.float64)
    if values.size == 0:
        return {"examples": 0, "target_median": HIGH_BAND_TARGET}
    q10, med, q90 = np.percentile(values, [10, 50, 90])
    return {
        "examples": int(values.size),
        "median": float(med),
        "p10": float(q10),
        "p90": float(q90),
        "target_median": HIGH_BAND_TARGET,
    }
