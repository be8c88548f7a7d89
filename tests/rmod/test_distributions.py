"""Distribution specs: parsing, validation errors, sampling bounds and frequencies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmod.recipe.distributions import (
    NAMES,
    Bernoulli,
    Choice,
    Constant,
    DistributionError,
    LogUniform,
    Normal,
    RandInt,
    Uniform,
    parse_distribution,
)

SPECS = [
    (3.5, Constant),
    (True, Constant),
    ({"uniform": [-2.0, 4.0]}, Uniform),
    ({"loguniform": [20.0, 2000.0]}, LogUniform),
    ({"randint": [-6, 2]}, RandInt),
    ({"choice": [[0.8, 0.2], [0.7, 0.3]]}, Choice),
    ({"choice": [4.0, 2.0], "p": [0.25, 0.75]}, Choice),
    ({"normal": [-30.0, 12.0], "clip": [-60.0, 0.0]}, Normal),
    ({"bernoulli": 0.3}, Bernoulli),
]


@pytest.mark.parametrize("spec,cls", SPECS)
def test_parse_round_trip_and_bounds(spec, cls):
    dist = parse_distribution(spec, "x")
    assert isinstance(dist, cls)
    assert parse_distribution(dist.to_dict(), "x") == dist
    rng = np.random.default_rng(0)
    values = [dist.sample(rng) for _ in range(300)]
    bounds = dist.bounds
    if bounds is not None and not isinstance(values[0], tuple):
        assert all(bounds[0] <= float(v) <= bounds[1] for v in values)


def test_same_generator_state_gives_same_draws():
    dist = parse_distribution({"loguniform": [1.0, 100.0]}, "x")
    a = [dist.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [dist.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_sample_types_are_plain_python():
    rng = np.random.default_rng(1)
    assert type(parse_distribution({"randint": [0, 3]}, "x").sample(rng)) is int
    assert type(parse_distribution({"uniform": [0, 3]}, "x").sample(rng)) is float
    assert type(parse_distribution({"bernoulli": 0.5}, "x").sample(rng)) is bool
    pair = parse_distribution({"choice": [[0.8, 0.2]]}, "x").sample(rng)
    assert pair == (0.8, 0.2) and isinstance(pair, tuple)


def test_randint_is_inclusive_and_covers_range():
    dist = RandInt(2, 4)
    rng = np.random.default_rng(3)
    assert {dist.sample(rng) for _ in range(200)} == {2, 3, 4}


def test_frequencies_follow_parameters():
    rng = np.random.default_rng(11)
    n = 4000
    hits = sum(Bernoulli(0.3).sample(rng) for _ in range(n))
    assert abs(hits / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    weighted = Choice([4.0, 2.0], p=[0.25, 0.75])
    twos = sum(weighted.sample(rng) == 2.0 for _ in range(n))
    assert abs(twos / n - 0.75) < 4 * math.sqrt(0.25 * 0.75 / n)
    logs = np.log10([LogUniform(10.0, 1000.0).sample(rng) for _ in range(n)])
    # log-uniform: half of the draws below the geometric middle (100)
    assert abs(np.mean(logs < 2.0) - 0.5) < 0.04


def test_normal_is_clipped():
    dist = Normal(0.0, 10.0, clip=(-1.0, 1.0))
    rng = np.random.default_rng(5)
    values = np.array([dist.sample(rng) for _ in range(500)])
    assert values.min() == -1.0 and values.max() == 1.0


@pytest.mark.parametrize(
    "spec,needle",
    [
        ({"uniform": [12, -12]}, "low 12 > high -12"),
        ({"unifrom": [0, 1]}, "unknown distribution 'unifrom'"),
        ({"bernoulli": 1.5}, "probability 1.5 outside [0, 1]"),
        ({"choice": []}, "choice has no options"),
        ({"loguniform": [0, 10]}, "0 < low"),
        ({"randint": [0.5, 3]}, "needs integers"),
        ({"uniform": 3}, "needs a list [low, high]"),
        ({"normal": [0, -1]}, "sigma >= 0"),
        ({"uniform": [0, 1], "clip": [0, 1]}, "'clip' is only allowed with 'normal'"),
        ({"choice": [1, 2], "p": [0.5, 0.6]}, "must sum to 1"),
        ("loud", "expected a number or a distribution"),
        ({"uniform": [0, 1], "randint": [0, 1]}, "exactly one of"),
    ],
)
def test_errors_name_the_field(spec, needle):
    with pytest.raises(DistributionError) as err:
        parse_distribution(spec, "mixing.eq.low_shelf.gain_db")
    assert str(err.value).startswith("mixing.eq.low_shelf.gain_db: ")
    assert needle in str(err.value)


@settings(max_examples=60, deadline=None)
@given(
    lo=st.floats(-1e4, 1e4, allow_nan=False),
    width=st.floats(0, 1e4, allow_nan=False),
    seed=st.integers(0, 2**32 - 1),
)
def test_uniform_stays_in_bounds(lo, width, seed):
    dist = parse_distribution({"uniform": [lo, lo + width]}, "x")
    rng = np.random.default_rng(seed)
    for _ in range(20):
        v = dist.sample(rng)
        assert dist.bounds[0] <= v <= dist.bounds[1]


def test_every_distribution_name_parses():
    """Each documented name has a parser: a minimal valid spec gives a distribution whose
    samples lie in the spec's range."""
    specs = {
        "uniform": {"uniform": [1.0, 2.0]},
        "loguniform": {"loguniform": [1.0, 2.0]},
        "randint": {"randint": [1, 2]},
        "choice": {"choice": [1.0, 2.0], "p": [0.5, 0.5]},
        "normal": {"normal": [1.5, 1.0], "clip": [1.0, 2.0]},
        "bernoulli": {"bernoulli": 1.0},
    }
    assert set(specs) == set(NAMES)
    rng = np.random.default_rng(0)
    for name, spec in specs.items():
        values = [float(parse_distribution(spec, name).sample(rng)) for _ in range(20)]
        assert all(1.0 <= v <= 2.0 for v in values), (name, values)


@pytest.mark.parametrize(
    "spec",
    [10**400, {"uniform": [0, 10**400]}, {"normal": [10**400, 1]}, {"randint": [-(10**400), 3]}],
)
def test_integers_beyond_a_float_are_refused_by_field(spec):
    """YAML reads an integer of any length; one beyond a float's range is a DistributionError
    naming the field, not an OverflowError (found by benchmarks/fuzz.py, render-one seeds
    2093 and 2229)."""
    with pytest.raises(DistributionError, match="mixing.gain_db"):
        parse_distribution(spec, "mixing.gain_db")
