"""The Fréchet distance against closed forms, its invariants, the rank-deficiency warning,
FAD∞ removing the 1/n bias, and the bootstrap interval's coverage."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from dose_model.fad.embedder import FadError
from dose_model.fad.frechet import (
    RankDeficiencyWarning,
    fad,
    frechet_distance,
    frechet_from_stats,
    gaussian_stats,
    trace_sqrt_product,
)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def _diagonal_case(d: int):
    """Means, standard deviations and the closed-form distance of two diagonal Gaussians:
    FD = ||mu_a - mu_b||^2 + sum (sigma_a - sigma_b)^2."""
    mu_a, mu_b = np.zeros(d), np.full(d, 0.2)
    sd_a, sd_b = np.linspace(0.5, 1.5, d), np.linspace(0.8, 1.2, d)
    return mu_a, sd_a, mu_b, sd_b, float(np.sum((mu_a - mu_b) ** 2) + np.sum((sd_a - sd_b) ** 2))


@pytest.mark.parametrize("d", [1, 3, 16, 128])
def test_closed_form_for_diagonal_and_commonly_rotated_gaussians(d):
    mu_a, sd_a, mu_b, sd_b, want = _diagonal_case(d)
    got = frechet_from_stats(mu_a, np.diag(sd_a**2), mu_b, np.diag(sd_b**2))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-14)
    q = _rotation(d, 1)  # a rotation of both Gaussians keeps the distance
    rotated = frechet_from_stats(
        q @ mu_a, q @ np.diag(sd_a**2) @ q.T, q @ mu_b, q @ np.diag(sd_b**2) @ q.T
    )
    assert rotated == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_general_covariances_match_an_independent_float64_square_root(seed):
    rng = np.random.default_rng(seed)
    d = 12
    x, y = rng.standard_normal((d, 2 * d)), rng.standard_normal((d, 3 * d))
    cov_a, cov_b = x @ x.T / d, y @ y.T / d
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)  # not symmetric; its trace is what FD needs
    want = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b) - 2 * np.trace(root).real
    assert frechet_from_stats(mu_a, cov_a, mu_b, cov_b) == pytest.approx(want, rel=1e-9)


def test_cholesky_and_eigen_paths_agree_and_singular_matrices_work():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 40))
    cov_a, cov_b = x @ x.T / 40, np.cov(rng.standard_normal((50, 20)), rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root = (vectors * np.sqrt(values)) @ vectors.T
    by_eigen = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov_b @ root), 0, None)))
    assert trace_sqrt_product(cov_a, cov_b) == pytest.approx(by_eigen, rel=1e-10)
    singular = np.cov(rng.standard_normal((5, 20)), rowvar=False)  # rank 4
    assert np.isfinite(trace_sqrt_product(singular, cov_b))
    # the eigenvalue route keeps ~half the digits of near-zero eigenvalues: sqrt(1e-16) each
    assert trace_sqrt_product(singular, singular) == pytest.approx(np.trace(singular), rel=1e-7)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 60),
    m=st.integers(2, 60),
    d=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-3, 1e3),
)
def test_symmetric_nonnegative_and_zero_for_identical_sets(n, m, d, seed, scale):
    rng = np.random.default_rng(seed)
    a = scale * rng.standard_normal((n, d))
    b = scale * (rng.standard_normal((m, d)) + 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        ab, ba = frechet_distance(a, b), frechet_distance(b, a)
        same = frechet_distance(a, a.copy())
    assert ab >= 0.0 and np.isfinite(ab)
    assert ab == pytest.approx(ba, rel=1e-9, abs=1e-9 * scale**2)
    assert same <= 1e-9 * scale**2 * d


@pytest.mark.parametrize(("n", "m", "d"), [(3, 40, 8), (8, 8, 8), (100, 60, 8), (2, 2, 5)])
def test_rows_and_statistics_routes_agree(n, m, d):
    rng = np.random.default_rng(n * m * d)
    a, b = rng.standard_normal((n, d)), 2.0 * rng.standard_normal((m, d)) + 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        from_rows = frechet_distance(a, b)
    from_stats = frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))
    assert from_rows == pytest.approx(from_stats, rel=1e-7)


def test_statistics_are_float64_with_ddof_1():
    x = np.arange(12, dtype=np.float32).reshape(6, 2) ** 1.5
    mu, cov = gaussian_stats(x)
    assert mu.dtype == cov.dtype == np.float64
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False, ddof=1), rtol=1e-12)


def test_a_warning_and_a_flag_when_a_set_has_no_more_rows_than_dimensions():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 16)), rng.standard_normal((16, 16))
    with pytest.warns(RankDeficiencyWarning, match="16 <= 16"):
        frechet_distance(a, b)
    with pytest.warns(RankDeficiencyWarning):
        assert fad(a, b, bootstrap=0).rank_deficient
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n > d: no warning
        result = fad(a, rng.standard_normal((17, 16)), bootstrap=0)
    assert not result.rank_deficient and (result.n_ref, result.n_eval, result.dim) == (40, 17, 16)


def test_bad_inputs_are_named():
    ok = np.zeros((4, 3))
    with pytest.raises(FadError, match="dimensions differ: a has 3, b has 2"):
        frechet_distance(ok, np.zeros((4, 2)))
    with pytest.raises(FadError, match=r"b: 1 embedding row\(s\); .* at least 2 rows"):
        frechet_distance(ok, np.zeros((1, 3)))
    with pytest.raises(FadError, match=r"a: embeddings must be a matrix \[n, dim\]"):
        frechet_distance(np.zeros(4), ok)
    with pytest.raises(FadError, match="dimension 0"):
        frechet_distance(np.zeros((4, 0)), np.zeros((4, 0)))
    with pytest.raises(FadError, match="evaluated: embeddings hold NaN or infinite values"):
        fad(ok, np.full((4, 3), np.nan))


def test_fad_inf_removes_the_bias_that_plain_fad_has_at_small_n():
    """Same two 8-d Gaussians (rotated, so not diagonal), sampled at n rows per set, 64 draws
    each: the plain distance is biased upward about c / n; FAD∞ stays near the truth."""
    d = 8
    mu_a, sd_a, mu_b, sd_b, true = _diagonal_case(d)
    q = _rotation(d, 2)
    bias, error = {}, {}
    for n in (60, 200, 2000):
        plain, inf = [], []
        for draw in range(64):
            rng = np.random.default_rng(1000 * n + draw)
            a = (rng.standard_normal((n, d)) * sd_a + mu_a) @ q.T
            b = (rng.standard_normal((n, d)) * sd_b + mu_b) @ q.T
            result = fad(a, b, bootstrap=0, seed=draw)
            plain.append(result.fad)
            inf.append(result.fad_inf)
        bias[n], error[n] = np.mean(plain) - true, np.mean(inf) - true
    assert bias[60] > 0.5 and bias[60] > bias[200] > bias[2000] > 0  # true is 0.63
    assert abs(error[60]) < 0.3 * bias[60]
    assert abs(error[200]) < 0.3 * bias[200]
    assert abs(error[2000]) < 0.05


def test_the_bootstrap_interval_covers_the_truth_and_is_seeded():
    d = 4
    mu_a, sd_a, mu_b, sd_b, true = _diagonal_case(d)
    covered = 0
    for draw in range(20):
        rng = np.random.default_rng(500 + draw)
        a = rng.standard_normal((300, d)) * sd_a + mu_a
        b = rng.standard_normal((300, d)) * sd_b + mu_b
        result = fad(a, b, bootstrap=40, seed=draw)
        assert result.ci_low < result.ci_high
        covered += result.ci_low <= true <= result.ci_high
    assert covered >= 16  # nominal 95 %: 19 of 20 expected
    again = fad(a, b, bootstrap=40, seed=19)
    assert again == result
    assert fad(a, b, bootstrap=40, seed=7) != result
    none = fad(a, b, bootstrap=0)
    assert none.ci_low is none.ci_high is None and none.fad == result.fad
    assert set(result.to_dict()) >= {"fad", "fad_inf", "ci_low", "ci_high", "rank_deficient"}
