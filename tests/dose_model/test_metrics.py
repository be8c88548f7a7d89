"""MSS and Fréchet distance (dose_model.evaluate.metrics) against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from dose_model.evaluate.metrics import FFT_SIZES, mss_distance
from dose_model.fad.frechet import frechet_distance

SR = 44100


def _one_shot(rng: np.random.Generator, n: int = 4410) -> np.ndarray:
    """A decaying noise burst + 60 Hz thump: a crude 0.1 s drum hit, peak about 1."""
    t = np.arange(n) / SR
    return np.exp(-t / 0.02) * (0.5 * rng.standard_normal(n) + np.sin(2 * np.pi * 60 * t))


def _mss_by_loops(x: np.ndarray, y: np.ndarray, sizes: tuple[int, ...]) -> float:
    """The module docstring's definition, written out with plain loops and a direct DFT sum."""
    length = max(len(x), len(y))
    x = list(x) + [0.0] * (length - len(x))
    y = list(y) + [0.0] * (length - len(y))
    total = 0.0
    for n in sizes:
        hop = n // 4
        frames = -(-length // hop)  # ceil
        window = [0.5 - 0.5 * math.cos(2 * math.pi * k / n) for k in range(n)]
        squared, count = 0.0, 0
        for f in range(frames):
            for b in range(n // 2 + 1):
                sx = sy = 0j
                for k in range(n):
                    i = f * hop + k
                    if i < length:
                        phase = complex(
                            math.cos(2 * math.pi * b * k / n), -math.sin(2 * math.pi * b * k / n)
                        )
                        sx += x[i] * window[k] * phase
                        sy += y[i] * window[k] * phase
                squared += (abs(sx) - abs(sy)) ** 2
                count += 1
        total += squared / count
    return total


def test_fft_sizes_are_the_papers():
    assert FFT_SIZES == (2048, 1024, 512, 256, 128, 64)


def test_mss_matches_a_hand_written_stft_on_a_tiny_case():
    x = np.array([0.3, -1.0, 0.5, 0.25, 0.0, 0.8, -0.2, 0.1, 0.9, -0.7, 0.4])
    y = np.array([0.1, 0.2, -0.4, 0.6, -0.3, 0.0, 0.7, -0.5, 0.2])
    expected = _mss_by_loops(x, y, (8, 4))
    assert expected > 0.1
    assert mss_distance(x, y, fft_sizes=(8, 4)) == pytest.approx(expected, rel=1e-12)


def test_mss_tiny_case_has_the_value_worked_out_on_paper():
    # n = 4, hop 1, window [0, .5, 1, .5]; x = impulse at sample 1 -> one frame per start
    # position 0 (sees it at k=1, weight .5) and 1 (k=0, weight 0): |X| = .5 on 3 bins in
    # frame 0 and 0 elsewhere. Against silence: MSE = 3 * .25 / (2 frames * 3 bins) = 0.125.
    x = np.array([0.0, 1.0])
    assert mss_distance(x, np.zeros(2), fft_sizes=(4,)) == pytest.approx(0.125, abs=1e-15)


def test_mss_identical_signals_give_zero_and_it_is_symmetric():
    rng = np.random.default_rng(0)
    x, y = _one_shot(rng), _one_shot(rng)
    assert mss_distance(x, x) == 0.0
    d = mss_distance(x, y)
    assert d > 0.0
    assert mss_distance(y, x) == pytest.approx(d, rel=1e-12)


def test_mss_sums_the_per_scale_values():
    rng = np.random.default_rng(1)
    x, y = _one_shot(rng), _one_shot(rng)
    per_scale = [mss_distance(x, y, fft_sizes=(n,)) for n in FFT_SIZES]
    assert mss_distance(x, y) == pytest.approx(sum(per_scale), rel=1e-12)
    assert min(per_scale) > 0.0


def test_mss_is_a_magnitude_mse_that_scales_with_amplitude_squared():
    rng = np.random.default_rng(2)
    x = _one_shot(rng)
    base = mss_distance(x, np.zeros_like(x))
    # |S(2x)| - |S(x)| = |S(x)|, and the distance of 3x to silence is 9 times that of x
    assert mss_distance(2 * x, x) == pytest.approx(base, rel=1e-12)
    assert mss_distance(3 * x, np.zeros_like(x)) == pytest.approx(9 * base, rel=1e-12)
    # magnitude only: a polarity flip is invisible
    assert mss_distance(-x, x) == pytest.approx(0.0, abs=1e-20 + 1e-12 * base)


def test_mss_louder_or_shifted_copy_is_farther_than_a_near_copy():
    rng = np.random.default_rng(3)
    x = _one_shot(rng)
    near = x + 1e-3 * rng.standard_normal(x.size)
    louder = 1.5 * x
    shifted = np.concatenate([np.zeros(441), x[:-441]])  # 10 ms late
    d_near = mss_distance(near, x)
    assert 0.0 < d_near < mss_distance(louder, x) / 100
    assert d_near < mss_distance(shifted, x) / 100
    assert mss_distance(2.0 * x, x) > mss_distance(louder, x)


def test_mss_zero_pads_the_shorter_signal():
    rng = np.random.default_rng(4)
    x, y = _one_shot(rng, 3000), _one_shot(rng, 2000)
    padded = np.concatenate([y, np.zeros(1000)])
    d = mss_distance(x, y)
    assert d == pytest.approx(mss_distance(x, padded), rel=1e-12)
    assert mss_distance(y, x) == pytest.approx(d, rel=1e-12)
    # a signal and itself followed by silence are the same one-shot
    assert mss_distance(y, padded) == 0.0
    # ... and a signal shorter than every window still works
    assert mss_distance(np.array([1.0]), np.array([0.0, 0.0, 1.0])) > 0.0


def test_mss_accepts_float32_and_lists():
    x = np.linspace(-1, 1, 300, dtype=np.float32)
    assert mss_distance(list(x), x.astype(np.float64)) == 0.0


@pytest.mark.parametrize(
    "estimate,reference,kwargs,match",
    [
        (np.zeros(0), np.zeros(10), {}, "estimate is empty"),
        (np.zeros(10), np.zeros(0), {}, "reference is empty"),
        (np.zeros((2, 10)), np.zeros(10), {}, "1-D mono"),
        (np.zeros(10), np.float64(0.0), {}, "1-D mono"),
        (np.array([0.0, np.nan]), np.zeros(2), {}, "NaN or infinite"),
        (np.zeros(2), np.array([np.inf, 0.0]), {}, "NaN or infinite"),
        (np.array(["a", "b"]), np.zeros(2), {}, "real numbers"),
        (np.zeros(8), np.zeros(8), {"sample_rate": 0}, "sample_rate"),
        (np.zeros(8), np.zeros(8), {"fft_sizes": ()}, "fft_sizes is empty"),
        (np.zeros(8), np.zeros(8), {"fft_sizes": (2,)}, "integer >= 4"),
        (np.zeros(8), np.zeros(8), {"fft_sizes": (64.0,)}, "integer >= 4"),
    ],
)
def test_mss_rejects_bad_input(estimate, reference, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mss_distance(estimate, reference, **kwargs)


def _with_exact_moments(
    rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    """n samples whose sample mean and (n - 1)-normalized covariance are exactly mean, cov."""
    z = rng.standard_normal((n, mean.size))
    z -= z.mean(axis=0)
    whitener = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    return z @ whitener.T @ np.linalg.cholesky(cov).T + mean


def test_frechet_of_identical_sets_is_zero():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((200, 16)) @ rng.standard_normal((16, 16))
    scale = np.trace(np.cov(a, rowvar=False))  # the size of each trace term (~250 here)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10 * scale)
    # a permutation of the rows is the same set
    assert frechet_distance(a, a[rng.permutation(200)]) == pytest.approx(0.0, abs=1e-10 * scale)
    assert frechet_distance(a, 1.01 * a) > 1e-6 * scale


def test_frechet_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(6)
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 0.25, 0.5])
    a = _with_exact_moments(rng, 50, mu1, np.diag(s1))
    b = _with_exact_moments(rng, 80, mu2, np.diag(s2))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert expected == pytest.approx(6.0 + 4.0 + 1.0 + 0.0 + 0.5)  # the closed form by hand
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(7)
    d = 6
    m1, m2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    c1, c2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a = _with_exact_moments(rng, 40, mu1, c1)
    b = _with_exact_moments(rng, 60, mu2, c2)
    root = scipy.linalg.sqrtm(c1 @ c2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * np.real(root))
    got = frechet_distance(a, b)
    assert got == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(got, rel=1e-8)


def test_frechet_is_translation_invariant_and_grows_with_the_mean_gap():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((300, 8)), rng.standard_normal((300, 8))
    shift = rng.standard_normal(8)
    d = frechet_distance(a, b)
    assert frechet_distance(a + shift, b + shift) == pytest.approx(d, rel=1e-9)
    assert frechet_distance(a, b + 1.0) > d + 7.0  # mean term grows by about 8


def test_frechet_handles_singular_covariances_and_one_dimension():
    rng = np.random.default_rng(9)
    # rank-1 embeddings in 3-D (fewer distinct directions than dimensions): still real, >= 0
    a = rng.standard_normal((5, 1)) @ np.array([[1.0, 2.0, -1.0]])
    b = rng.standard_normal((5, 1)) @ np.array([[0.0, 1.0, 3.0]])
    value = frechet_distance(a, b)
    assert isinstance(value, float) and math.isfinite(value) and value > 0.0
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    x = np.array([[0.0], [2.0]])  # mean 1, variance 2
    y = np.array([[3.0], [5.0], [7.0]])  # mean 5, variance 4
    expected = 16.0 + (math.sqrt(2.0) - 2.0) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.zeros((1, 4)), np.zeros((5, 4)), "at least 2 rows"),
        (np.zeros((5, 4)), np.zeros((1, 4)), "at least 2 rows"),
        (np.zeros((5, 4)), np.zeros((5, 3)), "dimensions differ"),
        (np.zeros(5), np.zeros((5, 1)), r"\[n, dim\]"),
        (np.zeros((5, 0)), np.zeros((5, 0)), "dimension 0"),
        (np.full((3, 2), np.nan), np.zeros((3, 2)), "NaN or infinite"),
    ],
)
def test_frechet_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)
