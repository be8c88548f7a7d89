"""The Fréchet distance between two sets of embeddings (FAD), with its bias and spread shown.

``FD = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``: means and
covariances (``ddof=1``) in float64 over every embedding row pooled (all windows of all files).
No complex parts and no ``scipy.linalg.sqrtm``: from two embedding sets, the trace of the
matrix square root is the sum of the singular values of ``F_a F_b^T``, where ``S = F^T F``
(``F``: the centred rows, a Cholesky or a QR factor; accurate to round-off even for singular
covariances); from given covariances (:func:`frechet_from_stats`), the sum of the square roots
of the eigenvalues of a symmetric PSD matrix similar to ``S_a S_b`` (``L^T S_b L`` with the
Cholesky factor ``S_a = L L^T``, or ``S_a^1/2 S_b S_a^1/2`` when ``S_a`` is singular; round-off
negatives set to 0; near-zero eigenvalues keep about half their digits).

The plain value is biased upward by about ``c / n`` for ``n`` rows per set (d = 128: ~96 at
n = 50, ~10 at n = 500 for one distribution), and with ``n <= d`` the covariance cannot be full
rank: then a :class:`RankDeficiencyWarning` is issued and the result says so. Beside it:

- **FAD∞** (fadtk's idea): the distance of random subsets (without replacement) of both sets
  at several fractions ``f`` of their sizes, a least-squares line in ``1 / f``, its intercept
  (the value at infinitely many rows). Both sets are subsampled (fadtk keeps its reference set
  whole), so the reference's own bias goes too; with a large reference the two agree.
- **a bootstrap interval** for FAD∞: both sets resampled with replacement, FAD∞ of each
  resample, and the basic (pivotal) interval around FAD∞ with the bootstrap world's own
  distance (the plug-in one, ``ddof=0``) as its centre. It treats rows as independent, which
  the windows of one file are not quite.

Everything random draws from a ``numpy.random.Generator`` seeded by the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np

from dose_model.errors import DoseError
from dose_model.fad.embedder import FadError

FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Subset sizes for FAD∞, as fractions of each set (the last is the whole set)."""


class RankDeficiencyWarning(DoseError, UserWarning):
    """A set has no more rows than dimensions: its covariance is singular, the distance is
    mostly bias. A package error too, so with warnings turned into errors a command line
    reports it in one line."""


@dataclass(frozen=True)
class FadResult:
    """A Fréchet distance with its context.

    Attributes:
        fad: the plain distance over all rows.
        fad_inf: the extrapolation to infinitely many rows (see the module docstring); nan
            when the evaluated set is too small for two subset sizes (2 rows). Neither it nor
            the interval is clipped at 0: an extrapolation can fall below it.
        fad_inf_slope: ``c`` in ``FAD(f) ~ fad_inf + c / f``, ``f`` the fraction of rows used
            (``c`` is the bias of the plain value).
        ci_low, ci_high: the bootstrap interval of ``fad_inf`` (None without bootstrap).
        ci_level: the interval's coverage (e.g. 0.95).
        bootstrap: resamples drawn (0: no interval).
        seed: the seed of every random draw.
        n_ref, n_eval: rows (windows) in each set; dim: their width.
        rank_deficient: ``min(n_ref, n_eval) <= dim``.
    """

    fad: float
    fad_inf: float
    fad_inf_slope: float
    ci_low: float | None
    ci_high: float | None
    ci_level: float
    bootstrap: int
    seed: int
    n_ref: int
    n_eval: int
    dim: int
    rank_deficient: bool

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of every field."""
        return asdict(self)


def _check(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as float64 ``[n >= 2, dim >= 1]`` of finite real numbers, else FadError."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise FadError(f"{name}: embeddings must be a matrix [n, dim], got shape {list(arr.shape)}")
    if arr.shape[0] < 2:
        raise FadError(
            f"{name}: {arr.shape[0]} embedding row(s); a covariance needs at least 2 rows"
        )
    if arr.shape[1] < 1:
        raise FadError(f"{name}: embeddings of dimension 0")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise FadError(f"{name}: embeddings must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise FadError(f"{name}: embeddings hold NaN or infinite values")
    return arr


def _check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    a, b = _check(a, names[0]), _check(b, names[1])
    if a.shape[1] != b.shape[1]:
        raise FadError(
            f"embedding dimensions differ: {names[0]} has {a.shape[1]}, {names[1]} has "
            f"{b.shape[1]}; use one embedding model for both sets"
        )
    return a, b


def gaussian_stats(x: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean float64 ``[d]`` and covariance float64 ``[d, d]`` of rows ``[n, d]``."""
    x = np.asarray(x, dtype=np.float64)
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, (centred.T @ centred) / (x.shape[0] - ddof)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``tr((S_a^1/2 S_b S_a^1/2)^1/2)`` of two symmetric PSD matrices, from the eigenvalues of
    a symmetric PSD matrix similar to ``S_a S_b``: ``L^T S_b L`` with ``S_a = L L^T``
    (Cholesky) when ``S_a`` is positive definite, else ``S_a^1/2 S_b S_a^1/2`` (eigh)."""
    cov_a = (cov_a + cov_a.T) / 2.0
    try:
        lower = np.linalg.cholesky(cov_a)
        middle = lower.T @ cov_b @ lower
    except np.linalg.LinAlgError:  # singular (e.g. fewer rows than dimensions)
        root = _psd_sqrt(cov_a)
        middle = root @ cov_b @ root
    eigen = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(np.clip(eigen, 0.0, None)).sum())


def frechet_from_stats(
    mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """The Fréchet distance between two Gaussians (float64; >= 0, round-off below 0 clipped)."""
    cov_a = np.asarray(cov_a, dtype=np.float64)
    cov_b = np.asarray(cov_b, dtype=np.float64)
    trace_sqrt = trace_sqrt_product(cov_a, cov_b)
    mean_term = float(np.sum((np.asarray(mu_a, np.float64) - np.asarray(mu_b, np.float64)) ** 2))
    return max(mean_term + float(np.trace(cov_a) + np.trace(cov_b)) - 2.0 * trace_sqrt, 0.0)


def _factor(x: np.ndarray, ddof: int) -> np.ndarray:
    """A matrix ``F`` with ``F^T F`` the covariance of rows ``x [n, d]``: the centred rows
    scaled by ``1 / sqrt(n - ddof)`` when ``n <= d``; else ``L^T`` of the covariance's Cholesky
    factor, or (for a singular covariance) the centred rows' ``[d, d]`` QR factor R."""
    centred = (x - x.mean(axis=0)) / np.sqrt(x.shape[0] - ddof)
    if x.shape[0] <= x.shape[1]:
        return centred
    try:
        return np.linalg.cholesky(centred.T @ centred).T
    except np.linalg.LinAlgError:  # collinear rows: slower, exact
        # mode="r" returns R alone (numpy's stubs say a QRResult)
        return cast(np.ndarray, np.linalg.qr(centred, mode="r"))


def _distance(a: np.ndarray, b: np.ndarray, ddof: int = 1) -> float:
    """The Fréchet distance of two row sets, from factors of their covariances:
    ``tr((S_a^1/2 S_b S_a^1/2)^1/2)`` is the sum of the singular values of ``F_a F_b^T``
    (``S = F^T F``), which stays accurate to round-off when a covariance is singular (the
    eigenvalue route loses about half the digits of its near-zero eigenvalues there)."""
    f_a, f_b = _factor(a, ddof), _factor(b, ddof)
    cross = np.linalg.svd(f_a @ f_b.T, compute_uv=False).sum()
    mean_term = float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2))
    value = mean_term + float(np.sum(f_a**2) + np.sum(f_b**2)) - 2.0 * float(cross)
    return max(value, 0.0)


def _warn_if_rank_deficient(n_a: int, n_b: int, dim: int) -> bool:
    low = min(n_a, n_b)
    if low > dim:
        return False
    warnings.warn(
        f"Fréchet distance from {n_a} and {n_b} rows of {dim} dimensions: a covariance of "
        f"{low} <= {dim} rows is rank-deficient, so the value is mostly bias; use more "
        "windows or compare FAD∞",
        RankDeficiencyWarning,
        stacklevel=3,
    )
    return True


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The plain Fréchet distance of two embedding sets ``[n, d]`` and ``[m, d]`` (n, m >= 2;
    sizes may differ). Symmetric; 0 for identical sets. Warns with
    :class:`RankDeficiencyWarning` when ``min(n, m) <= d``; FadError for other shapes or
    non-finite values."""
    a, b = _check_pair(a, b, ("a", "b"))
    _warn_if_rank_deficient(a.shape[0], b.shape[0], a.shape[1])
    return _distance(a, b)


def fad_infinity(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    fractions: Sequence[float] = FRACTIONS,
) -> tuple[float, float]:
    """(intercept, slope) of the Fréchet distance of random subsets against ``1 / f``; each
    subset keeps ``round(f * n)`` rows of each set (at least 2), drawn without replacement.
    (nan, nan) when the evaluated set is too small for two different subset sizes (2 rows)."""
    xs, ys = [], []
    for f in fractions:
        size_a, size_b = (max(2, round(f * len(x))) for x in (a, b))
        sub_a = a if size_a >= len(a) else a[rng.choice(len(a), size_a, replace=False)]
        sub_b = b if size_b >= len(b) else b[rng.choice(len(b), size_b, replace=False)]
        xs.append(len(b) / size_b)
        ys.append(_distance(sub_a, sub_b))
    if len(set(xs)) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.asarray(xs), np.asarray(ys), 1)
    return float(intercept), float(slope)


def fad(
    ref: np.ndarray,
    evaluated: np.ndarray,
    *,
    bootstrap: int = 100,
    seed: int = 0,
    level: float = 0.95,
    fractions: Sequence[float] = FRACTIONS,
) -> FadResult:
    """FAD, FAD∞ and a bootstrap interval of FAD∞ between a reference and an evaluated set.

    Args:
        ref: ``[n_ref, d]`` reference embeddings (every window of every file).
        evaluated: ``[n_eval, d]`` embeddings to score.
        bootstrap: resamples for the interval (0: none; each costs one FAD∞).
        seed: seeds every random draw (the subsets of FAD∞ and the resamples).
        level: coverage of the interval, in (0, 1).
        fractions: subset sizes for FAD∞ (see :data:`FRACTIONS`).

    Returns:
        :class:`FadResult`; warns with :class:`RankDeficiencyWarning` when
        ``min(n_ref, n_eval) <= d``.
    """
    a, b = _check_pair(ref, evaluated, ("reference", "evaluated"))
    if bootstrap < 0 or not 0.0 < level < 1.0:
        raise FadError(f"bootstrap must be >= 0 and level in (0, 1), got {bootstrap} and {level}")
    deficient = _warn_if_rank_deficient(a.shape[0], b.shape[0], a.shape[1])
    rng = np.random.default_rng(seed)
    value = _distance(a, b)
    inf, slope = fad_infinity(a, b, rng, fractions)
    low = high = None
    if bootstrap:
        world = _distance(a, b, ddof=0)  # the distance between the two empirical distributions
        draws = np.empty(bootstrap)
        for i in range(bootstrap):
            ra = a[rng.integers(0, len(a), len(a))]
            rb = b[rng.integers(0, len(b), len(b))]
            draws[i] = fad_infinity(ra, rb, rng, fractions)[0]
        q_low, q_high = np.quantile(draws - world, [(1 - level) / 2, (1 + level) / 2])
        low, high = inf - float(q_high), inf - float(q_low)
    return FadResult(
        fad=value,
        fad_inf=inf,
        fad_inf_slope=slope,
        ci_low=low,
        ci_high=high,
        ci_level=level,
        bootstrap=bootstrap,
        seed=seed,
        n_ref=a.shape[0],
        n_eval=b.shape[0],
        dim=a.shape[1],
        rank_deficient=deficient,
    )
