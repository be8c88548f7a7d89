"""Band-limited resampling with resampy's ``kaiser_best`` filter, in numpy (no numba).

VGGish's reference front end (torchvggish, as fadtk and frechet-audio-distance run it)
resamples with ``resampy.resample(x, sr, 16000)``, whose default filter is ``kaiser_best``.
This module computes the same interpolation without the package:

- the filter is the right half of a Kaiser-windowed sinc, tabulated at 2**13 points per zero
  crossing over 50 zero crossings (409,601 values), roll-off 0.9173473712608761 of Nyquist,
  Kaiser beta 12.98458524704002. resampy ships this table precomputed
  (``data/kaiser_best.npz``, version 0.4.3) and its docs round beta to 12.9846; the beta here
  was solved from the shipped table and rebuilds it to within 1.2e-15 absolute;
- when downsampling, the table is scaled by the rate ratio and stepped through at that ratio
  (the filter's cut-off follows the lower Nyquist); between table entries the weight is
  linearly interpolated;
- output sample ``t`` sits at input time ``t * sr_in / sr_out``; the output has
  ``floor(samples * sr_out / sr_in)`` samples; the signal is zero outside its ends.

Because both rates are integers, the fractional input positions repeat every
``sr_out / gcd`` outputs, so the filter weights are computed once per phase and applied as a
matrix product (a polyphase form of the same sum). Sums run in float64 by default. resampy
accumulates in the input's dtype: for a float32 input (what the FAD tools pass) each product is
added to a float32 running sum, left wing first (nearest input sample outwards), then the right
wing. ``float32_sums=True`` reproduces that order and rounding, so float32 audio gives
resampy's float32 output (the float64 sums differ from it by ~1e-7 of full scale, which moves
VGGish's log-mel values by up to ~6e-5 where the band energy is near the 0.01 floor).
"""

from __future__ import annotations

import functools
import math

import numpy as np

KAISER_BEST_ZEROS = 50
"""Zero crossings of the sinc kept on each side."""
KAISER_BEST_PER_ZERO = 2**13
"""Table entries per zero crossing."""
KAISER_BEST_ROLLOFF = 0.9173473712608761
"""Cut-off as a fraction of the (lower) Nyquist frequency."""
KAISER_BEST_BETA = 12.98458524704002
"""Kaiser window shape."""


@functools.lru_cache(maxsize=1)
def kaiser_best_table() -> np.ndarray:
    """The filter's right half, float64 ``[50 * 8192 + 1]``: entry ``j`` is the windowed sinc
    at ``j / 8192`` zero crossings (read-only; the same values as resampy's table)."""
    n = KAISER_BEST_ZEROS * KAISER_BEST_PER_ZERO
    position = np.arange(n + 1) / n  # 0 at the centre, 1 at the window's edge
    taper = np.i0(KAISER_BEST_BETA * np.sqrt(1.0 - position**2)) / np.i0(KAISER_BEST_BETA)
    crossings = np.linspace(0.0, KAISER_BEST_ZEROS, n + 1)
    table = taper * KAISER_BEST_ROLLOFF * np.sinc(KAISER_BEST_ROLLOFF * crossings)
    table.setflags(write=False)
    return table


def _wing(table: np.ndarray, delta: np.ndarray, frac: float, step: int, taps: int) -> np.ndarray:
    """Weights ``[taps]`` of one side of the filter for an output whose distance to the
    nearest input sample on that side is ``frac`` (in scaled table units, ``0 <= frac``)."""
    index = frac * KAISER_BEST_PER_ZERO
    offset = int(index)
    eta = index - offset
    count = (table.size - offset) // step  # taps that stay inside the table
    at = offset + step * np.arange(min(count, taps))
    weights = np.zeros(taps)
    weights[: at.size] = table[at] + eta * delta[at]
    return weights


def resample(x: np.ndarray, sr_in: int, sr_out: int, float32_sums: bool = False) -> np.ndarray:
    """Resample a mono signal with the ``kaiser_best`` filter.

    Args:
        x: ``[samples]`` real signal (any float or int dtype) at ``sr_in`` Hz.
        sr_in, sr_out: sample rates in Hz, positive integers.
        float32_sums: accumulate each output in float32, in resampy's order (what resampy
            does with float32 input; see the module docstring).

    Returns:
        ``[floor(samples * sr_out / sr_in)]`` at ``sr_out`` Hz: float64, or float32 with
        ``float32_sums`` (a copy of ``x`` when the rates are equal).

    Raises:
        ValueError: not 1-D, or a rate that is not a positive integer.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample expects a mono signal [samples], got shape {x.shape}")
    for name, rate in (("sr_in", sr_in), ("sr_out", sr_out)):
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in == sr_out:
        return x.astype(np.float32) if float32_sums else x.copy()
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    n_out = x.shape[0] * up // down
    ratio = sr_out / sr_in
    scale = min(1.0, ratio)
    table = kaiser_best_table() * scale
    delta = np.diff(table, append=table[-1])
    step = int(scale * KAISER_BEST_PER_ZERO)
    taps = table.size // step  # the most taps one side can have
    # Input sample base - taps + 1 .. base + taps around each output, zeros beyond the ends.
    padded = np.concatenate([np.zeros(taps), x, np.zeros(taps)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * taps)
    phases = min(up, n_out)
    weights = np.empty((phases, 2 * taps))  # per phase, over x[base - taps + 1 .. base + taps]
    for phase in range(phases):
        frac = scale * (phase * down % up) / up  # distance to the input sample before
        weights[phase, :taps] = _wing(table, delta, frac, step, taps)[::-1]
        weights[phase, taps:] = _wing(table, delta, scale - frac, step, taps)
    if float32_sums:
        return _float32_sums(windows, weights, up, down, n_out)
    y = np.empty(n_out)
    for phase in range(phases):
        count = len(range(phase, n_out, up))
        base = phase * down // up  # input time of the phase's first output
        y[phase::up] = windows[base + 1 : base + 1 + down * count : down] @ weights[phase]
    return y


def _float32_sums(
    windows: np.ndarray, weights: np.ndarray, up: int, down: int, n_out: int, block: int = 8192
) -> np.ndarray:
    """The outputs summed tap by tap into float32: the nearest input sample first, outwards on
    the left, then the right wing from its nearest sample (resampy's order for float32)."""
    taps = weights.shape[1] // 2
    order = [*range(taps - 1, -1, -1), *range(taps, 2 * taps)]
    y = np.empty(n_out, dtype=np.float32)
    for start in range(0, n_out, block):
        t = np.arange(start, min(start + block, n_out))
        rows = windows[t * down // up + 1]
        w = weights[t % up]
        acc = np.zeros(t.size, dtype=np.float32)
        for j in order:
            acc = (acc + w[:, j] * rows[:, j]).astype(np.float32)
        y[start : start + t.size] = acc
    return y
