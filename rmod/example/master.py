"""Mastering: the sum of the tracks -> EQ -> Limiter -> output ceiling.

Stages, in order (all ``[2, n]`` float32):

1. the sum is peak-normalized to 0 dBFS, so the limiter threshold means "dB of peak
   reduction" whatever the number of tracks (silence stays silence);
2. EQ (pedalboard low shelf, peaking bands, high shelf; see :mod:`rmod.example.mixing`);
3. our peak limiter (1000:1, 0.01 ms attack compressor, stereo-linked; see
   :mod:`rmod.example.mixing`);
4. the ceiling: the result is scaled so its sample peak is exactly ``ceiling_dbfs``
   (default -1 dBFS). No output sample can reach full scale, so 16-bit files never clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pedalboard

from rmod.example.mixing import (
    EQParams,
    LimiterParams,
    draw_eq,
    draw_limiter,
    eq_plugins,
    linked_limit,
)

if TYPE_CHECKING:  # annotations only
    from rmod.recipe.spec import MasterSpec


@dataclass(frozen=True)
class MasterParams:
    """Every drawn mastering parameter."""

    eq: EQParams
    limiter: LimiterParams


def draw_master(spec: MasterSpec, rng: np.random.Generator) -> MasterParams:
    """Draw mastering parameters from a recipe ``MasterSpec`` (EQ first, then limiter)."""
    eq = draw_eq(spec.eq, rng)
    limiter = draw_limiter(spec.limiter, rng)
    return MasterParams(eq=eq, limiter=limiter)


def peak_normalize(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale ``audio`` so its sample peak is ``peak_dbfs`` (silence is returned unchanged)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0 or not np.isfinite(peak):
        return audio.astype(np.float32, copy=False)
    target = 10.0 ** (peak_dbfs / 20.0)
    gain = np.float32(target / peak)
    out = audio.astype(np.float32, copy=False) * gain
    # float32 rounding may land a hair above the target: lower the gain until it does not.
    while float(np.max(np.abs(out))) > target:
        gain = np.float32(gain * np.float32(1.0 - 1e-6))
        out = audio.astype(np.float32, copy=False) * gain
    return out


def apply_master(
    mix: np.ndarray, params: MasterParams, sample_rate: int, ceiling_dbfs: float
) -> np.ndarray:
    """Master the summed tracks ``[2, n]``; the result peaks exactly at ``ceiling_dbfs``.

    The limiter is stereo-linked (see :func:`rmod.example.mixing.linked_limit`)."""
    if not np.isfinite(mix).all():
        raise ValueError("the mix holds non-finite samples")
    x = peak_normalize(mix, 0.0)
    eq = pedalboard.Pedalboard(eq_plugins(params.eq))(np.ascontiguousarray(x), sample_rate)
    y = linked_limit(eq, params.limiter, sample_rate)
    return peak_normalize(y, ceiling_dbfs)
